"""Training recipes of the embedded model, and the stages that make the shipped weights.

Each kind of run is a :class:`~motionguide.training.Recipe` on the shared loop
(:func:`motionguide.training.run_training`):

* ``base``: the image-to-video model, on clips with known motion rendered from photographs;
* ``adapters``: MoG fine-tuning on top of a frozen base: the plugin's latent adapter and feature gates,
  and the per-trust-level :class:`~motionguide.embedded.adapters.GuidanceGates`.

:data:`SHIPPED_RECIPE` lists the stages, in order, that produce ``assets/embedded``; :func:`run_recipe`
runs them (``motionguide train recipe --out DIR``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from flow.estimators import get_estimator

from ..adapter import set_guidance
from ..adapter_weights import trainable_parameters
from ..training import LoopConfig, Recipe, run_training
from ..warping import flow_only
from .adapters import attach_adapters, load_adapters, save_adapters
from .checkpoint import load_embedded, save_embedded
from .data import ClipDataset, estimated_guidance, make_clip, true_guidance
from .generation import guided_reference_and_scale, latent_guidance_of, with_warp
from .network import EmbeddedConfig, EmbeddedVideoModel
from ..windows import resize_clip

__all__ = ["KINDS", "DEFAULT_LR", "TrainConfig", "train", "Stage", "SHIPPED_RECIPE", "run_recipe",
           "stage_command", "LAYOUTS", "LAYOUT_P", "layout_probs", "ADAPTER_T_MAX"]

KINDS = ("base", "adapters")
#: peak learning rate of each kind when none is given
DEFAULT_LR = {"base": 5e-4, "adapters": 1e-3}
#: adapter training draws most timesteps below this (guided sampling never starts above it at strength 1)
ADAPTER_T_MAX = 0.6
#: known-frame layouts of adapter training, as the jobs use them: generation from a first frame (transfer),
#: continuation after 2-4 known frames (extend), and in-betweening (speed: real frames every 2nd/3rd/4th/7th)
LAYOUTS = (
    ("first", (0,)),
    ("extend", (0, 1)), ("extend", (0, 1, 2)), ("extend", (0, 1, 2, 3)),
    ("between", (0, 2, 4, 6)), ("between", (0, 3, 6)), ("between", (0, 4)), ("between", (0, 7)),
)
LAYOUT_P = (0.35, 0.06, 0.06, 0.08, 0.13, 0.1, 0.1, 0.12)


@dataclass
class TrainConfig:
    """What to train and how; validated. ``model`` sizes a fresh base model (``kind="base"``)."""

    kind: str = "base"
    steps: int = 1000
    out: str = "runs/base"
    batch_size: int = 8
    lr: float | None = None  # default: DEFAULT_LR[kind]
    warmup: int | None = None  # default: min(100, steps // 10)
    ema: float = 0.995
    seed: int = 0
    checkpoint_every: int = 100
    resume: bool = True
    threads: int | None = None
    motion_scale_range: tuple[float, float] = (0.5, 2.5)
    base: str | None = None  # adapters: the base model folder (default: shipped assets)
    init: str | None = None  # base: warm start from this model folder; adapters: from these adapters
    estimated_flow_p: float = 0.5  # adapters: share of batches guided by DIS-estimated flow
    guided_t_p: float = 0.75  # adapters: share of batches with timesteps scaled into guided sampling's range
    matched_p: float = 0.0  # adapters: share of batches noised from the guided reference, as sampling starts
    matched_t: tuple[float, float] = (0.05, 0.3)  # adapters: their timesteps (GUIDED_START = 0.1 inside)
    matched_loss: str = "velocity"  # adapters: loss of those batches, "velocity" or "psnr" (per-frame log MSE)
    extend_share: float | None = None  # adapters: share of the continuation layouts (default: LAYOUT_P's 0.20)
    guide_scale: int = 1  # adapters: clips rendered and guided at this many times the model's size, then the
    #                       guidance and its warp downscaled, as the jobs guide the model from the input's size
    model: dict = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.kind]
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if isinstance(self.guide_scale, bool) or not isinstance(self.guide_scale, int) or not 1 <= self.guide_scale <= 16:
            raise ValueError(f"guide_scale must be an int in 1 .. 16, got {self.guide_scale!r}")
        if not (0 <= self.estimated_flow_p <= 1 and 0 <= self.guided_t_p <= 1 and 0 <= self.matched_p <= 1):
            raise ValueError(f"estimated_flow_p, guided_t_p and matched_p must be in [0, 1], got "
                             f"{self.estimated_flow_p}, {self.guided_t_p}, {self.matched_p}")
        if self.matched_loss not in ("velocity", "psnr"):
            raise ValueError(f"matched_loss must be 'velocity' or 'psnr', got {self.matched_loss!r}")
        if self.extend_share is not None and not 0 <= self.extend_share < 1:
            raise ValueError(f"extend_share must be in [0, 1), got {self.extend_share}")
        lo, hi = self.matched_t
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"matched_t must be (lo, hi) with 0 < lo <= hi <= 1, got {self.matched_t}")
        if self.model:
            EmbeddedConfig.from_dict(self.model)  # an unknown or invalid size fails now, not after set-up
        self.loop = LoopConfig(kind=self.kind, steps=self.steps, out=self.out, lr=self.lr, warmup=self.warmup,
                               ema=self.ema, seed=self.seed, checkpoint_every=self.checkpoint_every,
                               resume=self.resume, threads=self.threads, progress=self.progress,
                               export_name="model" if self.kind == "base" else "adapters")
        self.warmup = self.loop.warmup


def layout_probs(extend_share: float | None = None) -> torch.Tensor:
    """The layouts' probabilities, with the continuation layouts (``extend``) rescaled to ``extend_share`` of
    the batches and the others keeping their ratios (None: :data:`LAYOUT_P` as it is)."""
    if extend_share is None:
        return torch.tensor(LAYOUT_P)
    p = torch.tensor(LAYOUT_P, dtype=torch.float64)
    ext = torch.tensor([k == "extend" for k, _ in LAYOUTS])
    p[ext] *= extend_share / float(p[ext].sum())
    p[~ext] *= (1 - extend_share) / float(p[~ext].sum())
    return p.float()


def _adapted_model(cfg: TrainConfig) -> EmbeddedVideoModel:
    """The base model (``cfg.base`` or the shipped one) with the ``cfg.init`` adapters loaded."""
    model = load_embedded(cfg.base) if cfg.base else load_embedded()
    try:
        load_adapters(model, cfg.init)
    except ValueError as e:
        raise ValueError(f"--init {cfg.init} does not hold adapters for this model ({e})") from None
    return model


class BaseRecipe(Recipe):
    """The image-to-video model from a random initialisation (or warm-started from ``--init``): every
    parameter trains."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.model = EmbeddedVideoModel(EmbeddedConfig.from_dict(cfg.model) if cfg.model else EmbeddedConfig())
        if cfg.init:
            src = load_embedded(cfg.init)
            try:
                self.model.transformer.load_state_dict(src.transformer.state_dict())
            except RuntimeError as e:
                raise ValueError(f"--init {cfg.init} does not match the model being trained "
                                 f"({str(e).splitlines()[0]})") from None
        mc = self.model.config
        self.data = ClipDataset("train", length=2**31 - 1, num_frames=mc.num_frames, size=(mc.height, mc.width),
                                motion_scale_range=cfg.motion_scale_range, with_flow=False)

    def trainable(self):
        return list(self.model.named_parameters())

    def batch_ids(self, step: int, rank: int) -> list[int]:
        b = self.cfg.batch_size
        start = (self.cfg.seed * 1_000_003 + (step * 64 + rank) * b) % (2**31 - 1 - b)
        return list(range(start, start + b))

    def loss(self, step, rank, generator):
        items = [self.data[i] for i in self.batch_ids(step, rank)]
        frames = torch.stack([it["frames"] for it in items])
        known = self.model.draw_known(frames.shape[0], frames.shape[2], generator)
        return self.model.loss(frames, known, generator=generator)

    def export(self, folder, metrics):
        save_embedded(self.model, folder, metrics=metrics)


class AdapterRecipe(Recipe):
    """MoG fine-tuning: the plugin's latent adapter and feature gates and the per-trust-level gates
    train; the base weights stay frozen. ``estimated_flow_p`` of the batches are guided by flow
    estimated with DIS on the true frames, so the model learns to correct flow errors."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        if cfg.init:
            self.model = _adapted_model(cfg)  # warm start: loading applies the plugin and the gates
        else:
            self.model = load_embedded(cfg.base) if cfg.base else load_embedded()
            for p in self.model.parameters():
                p.requires_grad_(False)
            attach_adapters(self.model)
        self.model.train()
        mc = self.model.config
        self.data = ClipDataset("train", length=2**31 - 1, num_frames=mc.num_frames, size=(mc.height, mc.width),
                                motion_scale_range=cfg.motion_scale_range)
        self.estimator = get_estimator("dis")

    def trainable(self):
        ids = {id(p) for p in trainable_parameters(self.model.transformer, blocks=(), lora=False)}
        own = ("gates.reference_gate", "gates.correction_gate")
        return [(n, p) for n, p in self.model.named_parameters() if id(p) in ids or n in own]

    def loss(self, step, rank, generator):
        mc = self.model.config
        b = self.cfg.batch_size
        start = (self.cfg.seed * 1_000_003 + (step * 64 + rank) * b + 500_000_000) % (2**31 - 1 - b)
        gs = self.cfg.guide_scale
        clips = [make_clip(i, split="train", num_frames=mc.num_frames, size=(mc.height * gs, mc.width * gs),
                           motion_scale=self.data.motion_scale(i), with_prev_flow=False)
                 for i in range(start, start + b)]
        li = int(torch.multinomial(layout_probs(self.cfg.extend_share), 1, generator=generator))
        kind, positions = LAYOUTS[li]
        frames = torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips])
        if float(torch.rand(1, generator=generator)) < self.cfg.estimated_flow_p:
            guidance = estimated_guidance(frames, kind, positions, self.estimator)
        else:
            guidance = true_guidance(clips, positions, mc.num_frames)
        warp = None
        if gs > 1:  # what the jobs give the model: the guidance and its warp made large, then downscaled
            size = (mc.height, mc.width)
            warp = resize_clip(flow_only(guidance), size)
            guidance, frames = guidance.resized(size), resize_clip(frames, size)
        # the batch is rendered and guided on the CPU; the gates and the network may sit on an accelerator
        dev = next(self.model.transformer.parameters()).device
        lg = latent_guidance_of(guidance, strength=1.0).to(dev)
        if warp is not None:
            warp = warp.to(dev)
            lg = with_warp(lg, warp)
        known = torch.zeros(b, mc.num_frames, dtype=torch.bool, device=dev)
        known[:, list(positions)] = True
        frames = frames.to(dev)
        x0 = frames * 2 - 1
        static = EmbeddedVideoModel.reference(x0 * known[:, None, :, None, None], known)
        ref, out_scale, _ = guided_reference_and_scale(self.model, guidance, lg, static, 1.0,
                                                       flow_only(guidance) if warp is None else warp)
        # Guided sampling starts low (GUIDED_START at strength 1) from the guided reference noised there:
        # matched_p of the batches train exactly that start (x_t made from the reference); of the rest, most
        # train the times below ADAPTER_T_MAX on noised true clips, the others the whole range (a strength
        # below 1 starts higher).
        matched = float(torch.rand(1, generator=generator)) < self.cfg.matched_p
        t_max = ADAPTER_T_MAX if float(torch.rand(1, generator=generator)) < self.cfg.guided_t_p else 1.0
        set_guidance(self.model.transformer, lg)
        try:
            return self.model.loss(frames, known, generator=generator, ref=ref, t_max=t_max, out_scale=out_scale,
                                   noised=ref if matched else None, t_range=tuple(self.cfg.matched_t),
                                   frame_psnr=matched and self.cfg.matched_loss == "psnr")
        finally:
            set_guidance(self.model.transformer, None)

    def export(self, folder, metrics):
        save_adapters(self.model, folder, metrics=metrics)


_RECIPES = {"base": BaseRecipe, "adapters": AdapterRecipe}


def train(cfg: TrainConfig, *, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) one recipe; returns ``{"step", "loss", "out"}``."""
    config = {k: v for k, v in dataclasses.asdict(cfg).items()}
    return run_training(cfg.loop, lambda: _RECIPES[cfg.kind](cfg), config=config, log=log)


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe: train ``kind`` for ``steps`` into ``OUT/name``, on the base model of stage
    ``base`` and starting from the adapters of stage ``init`` (names of earlier stages), with ``options``
    (other :class:`TrainConfig` fields)."""

    name: str
    kind: str
    steps: int
    base: str | None = None
    init: str | None = None
    options: dict = field(default_factory=dict)


#: the stages, in order, that make the shipped weights (``assets/embedded/base`` = ``base/model``,
#: ``assets/embedded/adapters`` = the last stage's ``adapters``)
SHIPPED_RECIPE = (
    Stage("base", "base", 1000),
    Stage("adapters", "adapters", 1000, base="base"),
    # the fine-tune that trains where guided sampling starts, with the per-frame PSNR loss
    Stage("adapters_ft", "adapters", 1200, base="base", init="adapters",
          options={"matched_p": 0.9, "matched_loss": "psnr", "lr": 5e-4}),
)


def _stage_config(stage: Stage, out: Path, steps_scale: float, overrides: dict) -> TrainConfig:
    base = str(out / stage.base / "model") if stage.base else None
    init = str(out / stage.init / "adapters") if stage.init else None
    steps = max(1, round(stage.steps * steps_scale))
    opts = {**stage.options, **overrides}
    if stage.kind != "base":
        opts.pop("model", None)
    return TrainConfig(kind=stage.kind, steps=steps, out=str(out / stage.name), base=base, init=init, **opts)


def stage_command(stage: Stage, out: str = "runs") -> str:
    """The ``motionguide train`` command line that runs ``stage`` alone (for ``--help`` and the docs)."""
    parts = [f"motionguide train {stage.kind} --steps {stage.steps} --out {out}/{stage.name}"]
    if stage.base:
        parts.append(f"--base {out}/{stage.base}/model")
    if stage.init:
        parts.append(f"--init {out}/{stage.init}/adapters")
    for k, v in stage.options.items():
        parts.append(f"--{k.replace('_', '-')} {v}")
    return " ".join(parts)


def run_recipe(out: str | Path, stages: tuple[Stage, ...] = SHIPPED_RECIPE, *, steps_scale: float = 1.0,
               overrides: dict | None = None, log: Callable[[str], None] = print) -> dict[str, dict]:
    """Run ``stages`` in order into ``out/<stage name>`` (each resumes if interrupted); returns each stage's
    :func:`train` result. steps_scale multiplies every stage's steps (a quick trial run); overrides sets
    :class:`TrainConfig` fields of every stage (e.g. ``{"batch_size": 2}``)."""
    if not steps_scale > 0:
        raise ValueError(f"steps_scale must be > 0, got {steps_scale}")
    out = Path(out)
    cfgs = [(s, _stage_config(s, out, steps_scale, overrides or {})) for s in stages]  # all validated first
    results = {}
    for i, (stage, cfg) in enumerate(cfgs):
        log(f"stage {i + 1}/{len(cfgs)}: {stage.name} ({stage.kind}, {cfg.steps} steps)")
        results[stage.name] = train(cfg, log=log)
    return results
