"""Training recipes of the embedded model, and the stages that make the shipped weights.

Each kind of run is a :class:`~motionguide.training.Recipe` on the shared loop
(:func:`motionguide.training.run_training`):

* ``base``: the image-to-video model, on clips with known motion rendered from photographs;
* ``adapters``: MoG selective fine-tuning on top of a frozen base: the plugin's latent adapter and feature
  gates, a LoRA on the blocks, and the :class:`~motionguide.embedded.adapters.GuidanceGates` (their blend
  and continuation heads stay frozen);
* ``blend``: the adapters' :class:`~motionguide.embedded.heads.BlendHead` alone, on warps (no network);
* ``continuation``: the adapters' :class:`~motionguide.embedded.heads.ContinuationHead` alone, on the
  model's own outputs.

:data:`SHIPPED_RECIPE` lists the stages, in order, that produce ``assets/embedded``; :func:`run_recipe`
runs them (``motionguide train recipe --out DIR``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from flow.estimators import get_estimator

from ..adapter import set_guidance
from ..adapter_weights import trainable_parameters
from ..guidance import speed as speed_guidance
from ..training import LoopConfig, Recipe, run_training
from .adapters import attach_adapters, load_adapters, save_adapters
from .checkpoint import load_embedded, save_embedded
from .data import ClipDataset, estimated_guidance, make_clip, true_guidance
from .generation import flow_only, guided_reference_and_scale, latent_guidance_of, source_warps, continuation_inputs
from .heads import BlendHead, ContinuationHead
from .network import EmbeddedConfig, EmbeddedVideoModel
from .windows import generate_windows

__all__ = ["KINDS", "DEFAULT_LR", "TrainConfig", "train", "Stage", "SHIPPED_RECIPE", "run_recipe",
           "stage_command", "LAYOUTS", "LAYOUT_P", "layout_probs", "CONTINUATION_LAYOUTS", "BLEND_FACTORS",
           "ADAPTER_T_MAX"]

KINDS = ("base", "adapters", "blend", "continuation")
#: peak learning rate of each kind when none is given
DEFAULT_LR = {"base": 5e-4, "adapters": 1e-3, "blend": 1e-2, "continuation": 3e-3}
#: adapter training draws most timesteps below this (guided sampling never starts above it at strength 1)
ADAPTER_T_MAX = 0.6
#: the slow-motion factors of the blend head's training clips (in-betweens at t = 1/2, 1/3, 1/4 ...)
BLEND_FACTORS = (0.5, 1 / 3, 0.25)
#: the continuation head's training layouts, group by group (estimated_guidance kinds and known positions):
#: continuation after 1 (reference motion) and 2-4 known frames (extension; 4, as the jobs use, twice)
CONTINUATION_LAYOUTS = (("first", (0,)), ("extend", (0, 1, 2, 3)), ("extend", (0, 1, 2)),
                        ("extend", (0, 1, 2, 3)), ("extend", (0, 1)))
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
    base: str | None = None  # adapters, heads: the base model folder (default: shipped assets)
    init: str | None = None  # base: warm start from this model folder; adapters: from these adapters;
    #                          blend, continuation: the adapters the head is added to (required)
    estimated_flow_p: float = 0.5  # adapters: share of batches guided by DIS-estimated flow
    guided_t_p: float = 0.75  # adapters: share of batches with timesteps scaled into guided sampling's range
    matched_p: float = 0.0  # adapters: share of batches noised from the guided reference, as sampling starts
    matched_t: tuple[float, float] = (0.05, 0.3)  # adapters: their timesteps (GUIDED_START = 0.1 inside)
    matched_loss: str = "velocity"  # adapters: loss of those batches, "velocity" or "psnr" (per-frame log MSE)
    extend_share: float | None = None  # adapters: share of the continuation layouts (default: LAYOUT_P's 0.20)
    blend_pool: int = 400  # blend: held-in-memory training clips (slow motion at BLEND_FACTORS, DIS flow)
    continuation_pool: int = 960  # continuation: clips the model generates once (CONTINUATION_LAYOUTS)
    model: dict = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ("blend", "continuation") and not self.init:
            raise ValueError(f"training the {self.kind} head needs the adapters it is added to: pass --init "
                             f"DIR/adapters (the shipped recipe uses the previous stage's adapters)")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.kind]
        if self.blend_pool < 1 or self.continuation_pool < 1 or self.batch_size < 1:
            raise ValueError(f"blend_pool, continuation_pool and batch_size must be >= 1, got {self.blend_pool}, "
                             f"{self.continuation_pool}, {self.batch_size}")
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
    """MoG selective fine-tuning: the plugin's latent adapter and feature gates, a LoRA on the blocks and
    the gates train; the base weights stay frozen. ``estimated_flow_p`` of the batches are guided by flow
    estimated with DIS on the true frames, so the model learns to correct flow errors."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        if cfg.init:
            self.model = _adapted_model(cfg)  # warm start: loading applies the plugin, LoRA and gates
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
        ids = {id(p) for p in trainable_parameters(self.model.transformer, blocks=(), lora=True)}
        own = ("gates.reference_gate", "gates.correction_gate")
        return [(n, p) for n, p in self.model.named_parameters()
                if id(p) in ids or n in own or n.startswith("gates.gate_head.")]

    def loss(self, step, rank, generator):
        mc = self.model.config
        b = self.cfg.batch_size
        start = (self.cfg.seed * 1_000_003 + (step * 64 + rank) * b + 500_000_000) % (2**31 - 1 - b)
        clips = [make_clip(i, split="train", num_frames=mc.num_frames, size=(mc.height, mc.width),
                           motion_scale=self.data.motion_scale(i), with_prev_flow=False) for i in range(start, start + b)]
        li = int(torch.multinomial(layout_probs(self.cfg.extend_share), 1, generator=generator))
        kind, positions = LAYOUTS[li]
        frames = torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips])
        if float(torch.rand(1, generator=generator)) < self.cfg.estimated_flow_p:
            guidance = estimated_guidance(frames, kind, positions, self.estimator)
        else:
            guidance = true_guidance(clips, positions, mc.num_frames)
        lg = latent_guidance_of(guidance, strength=1.0)
        known = torch.zeros(b, mc.num_frames, dtype=torch.bool)
        known[:, list(positions)] = True
        x0 = frames * 2 - 1
        static = EmbeddedVideoModel.reference(x0 * known[:, None, :, None, None], known)
        ref, out_scale, _ = guided_reference_and_scale(self.model, guidance, lg, static, 1.0)
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


class _HeadRecipe(Recipe):
    """One small head of the ``--init`` adapters trains alone, on a pool of frames built once; only the
    parameters under ``PREFIX`` train; the export is the whole adapters."""

    PREFIX = ""
    INPUTS: tuple[str, ...] = ()  # the pool entries the head takes, in order

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.model = _adapted_model(cfg)
        self.estimator = get_estimator("dis")

    def trainable(self):
        return [(n, p) for n, p in self.model.named_parameters() if n.startswith(self.PREFIX)]

    def _apply(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The head's frames ``(N, 3, H, W)`` from the pool entries named by ``INPUTS``."""
        raise NotImplementedError

    def loss(self, step, rank, generator):
        """Per-frame log MSE (the PSNR the benchmarks report) of ``8 x batch_size`` pool frames."""
        idx = torch.randint(0, self.pool["truth"].shape[0], (8 * self.cfg.batch_size,), generator=generator)
        p = next(p for n, p in self.model.named_parameters() if n.startswith(self.PREFIX))
        out = self._apply(*(self.pool[k][idx].to(p) for k in self.INPUTS))
        mse = ((out - self.pool["truth"][idx].to(p)) ** 2).mean(dim=(1, 2, 3))
        return torch.log(mse + 1e-5).mean()

    def export(self, folder, metrics):
        save_adapters(self.model, folder, metrics=metrics)


class BlendRecipe(_HeadRecipe):
    """The :class:`~motionguide.embedded.heads.BlendHead` on the blended warp: the network never runs, so a
    step costs milliseconds. The pool: the in-between frames of ``blend_pool`` training clips in slow motion
    at :data:`BLEND_FACTORS`, with flow estimated by DIS on the real frames, as the speed job builds it."""

    PREFIX = "gates.blend_head."
    INPUTS = ("warps", "weights", "flows")

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        if self.model.gates.blend_head is None:
            self.model.gates.blend_head = BlendHead()
        self.pool = self._pool()

    def _pool(self) -> dict[str, torch.Tensor]:
        mc = self.model.config
        n_out, group = 15, 16
        parts: dict[str, list] = {"warps": [], "weights": [], "flows": [], "truth": []}
        start = (self.cfg.seed * 1_000_003 + 900_000_000) % (2**31 - 1 - self.cfg.blend_pool)
        bar = tqdm(total=self.cfg.blend_pool, desc="blend clips", disable=not self.cfg.progress, dynamic_ncols=True)
        for i in range(0, self.cfg.blend_pool, group):
            factor = BLEND_FACTORS[(i // group) % len(BLEND_FACTORS)]
            seeds = range(start + i, start + min(i + group, self.cfg.blend_pool))
            clips = [make_clip(s, split="train", num_frames=mc.num_frames, size=(mc.height, mc.width),
                               times=[factor * j for j in range(n_out)], with_flow=False) for s in seeds]
            truth = torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips])
            real = [j for j in range(n_out) if abs(factor * j - round(factor * j)) < 1e-6]
            g = speed_guidance(truth[:, :, real], factor, estimator=self.estimator)  # ends at the last real frame
            for t in range(g.num_frames):
                srcs = source_warps(g, t) if t not in real else []
                if len(srcs) == 2:
                    for key, v in zip(("warps", "weights", "flows"), zip(*srcs)):
                        parts[key].append(torch.stack(v, 1))
                    parts["truth"].append(truth[:, :, t])
            bar.update(len(seeds))
        bar.close()
        return {k: torch.cat(v) for k, v in parts.items()}

    def _apply(self, *inputs):
        return self.model.gates.blend_head.blend(*inputs)


class ContinuationRecipe(_HeadRecipe):
    """The :class:`~motionguide.embedded.heads.ContinuationHead` on the model's own outputs: the model (the
    ``--init`` adapters without a continuation head) generates the continuation frames of
    ``continuation_pool`` training clips once (:data:`CONTINUATION_LAYOUTS`, default sampling), guided by
    DIS flow on the known frames (as the jobs build it) for half the clips and by the true flow for the
    other half, since a head that only ever saw estimated flow, which leaves few holes, pulls a true-flow
    output toward the warp inside the holes."""

    PREFIX = "gates.continuation_head."
    INPUTS = ("out", "warp", "weight", "flow", "ahead")

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        head = self.model.gates.continuation_head
        self.model.gates.continuation_head = None  # the pool is the network's output before any mix
        self.pool = self._pool()
        self.model.gates.continuation_head = head if head is not None else ContinuationHead()

    def _pool(self) -> dict[str, torch.Tensor]:
        mc = self.model.config
        group = 16
        parts: dict[str, list] = {k: [] for k in self.INPUTS + ("truth",)}
        start = (self.cfg.seed * 1_000_003 + 800_000_000) % (2**31 - 1 - self.cfg.continuation_pool)
        bar = tqdm(total=self.cfg.continuation_pool, desc="continuation clips", disable=not self.cfg.progress,
                   dynamic_ncols=True)
        with torch.no_grad():
            for i in range(0, self.cfg.continuation_pool, group):
                j = i // group
                kind, positions = CONTINUATION_LAYOUTS[j % len(CONTINUATION_LAYOUTS)]
                exact = (j // len(CONTINUATION_LAYOUTS)) % 2 == 1  # every other round of layouts: true flow
                seeds = range(start + i, start + min(i + group, self.cfg.continuation_pool))
                clips = [make_clip(s, split="train", num_frames=mc.num_frames, size=(mc.height, mc.width),
                                   with_flow=exact) for s in seeds]
                truth = torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips])
                g = (true_guidance(clips, positions, mc.num_frames) if exact
                     else estimated_guidance(truth, kind, positions, self.estimator))
                out = generate_windows(self.model, g, mode="both", seed=i)
                frames, x = continuation_inputs(g, out, flow_only(g, self.model.gates.blend_head))
                for k, v in zip(self.INPUTS, x):
                    parts[k].append(v)
                parts["truth"].append(torch.cat([truth[:, :, t] for t in frames]))
                bar.update(len(seeds))
        bar.close()
        return {k: torch.cat(v) for k, v in parts.items()}

    def _apply(self, *inputs):
        return self.model.gates.continuation_head.mix(*inputs)


_RECIPES = {"base": BaseRecipe, "adapters": AdapterRecipe, "blend": BlendRecipe, "continuation": ContinuationRecipe}


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
    Stage("blend", "blend", 1200, base="base", init="adapters_ft", options={"batch_size": 6}),
    Stage("adapters_head", "adapters", 1000, base="base", init="blend",
          options={"seed": 1, "matched_p": 0.9, "matched_loss": "psnr", "lr": 5e-4}),
    Stage("continuation", "continuation", 1500, base="base", init="adapters_head", options={"batch_size": 6}),
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
