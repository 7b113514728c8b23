"""Training recipes of the embedded model: ``base`` (image-to-video) and ``adapters`` (MoG guidance).

One loop serves both, on one CPU process or, unchanged, under ``accelerate launch`` on several GPUs:
``accelerate.Accelerator`` places the model, wraps the optimizer and averages gradients; every rank
draws its own clips from a seed that depends on (seed, step, rank), so a resumed run sees exactly the
clips the interrupted one would have seen (no data-loader state to save).

Every ``checkpoint_every`` steps (and at the end) the run writes, atomically:

* ``OUT/checkpoint/``: trainable weights, EMA weights, optimizer state, step and loss history (resume);
* ``OUT/model/`` (base) or ``OUT/adapters/`` (adapters): the EMA weights in the shipped format;
* ``OUT/loss.png``: the loss curve.

A second run with the same ``OUT`` resumes from ``OUT/checkpoint`` (``--no-resume`` starts afresh).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .model import EmbeddedConfig, EmbeddedVideoModel, load_embedded, save_embedded

__all__ = ["TrainConfig", "train", "plot_losses"]

#: what ``train`` can train: the base model, its MoG adapters, the adapters' blend or fusion head alone
KINDS = ("base", "adapters", "blend", "fusion")
#: the slow-motion factors of the blend head's training clips (in-betweens at t = 1/2, 1/3, 1/4 ...)
BLEND_FACTORS = (0.5, 1 / 3, 0.25)
#: the fusion head's training layouts, group by group (estimated_guidance kinds and known positions):
#: continuation after 1 (reference motion) and 2-4 known frames (extension; 4, the benchmark's, twice)
FUSION_LAYOUTS = (("first", (0,)), ("extend", (0, 1, 2, 3)), ("extend", (0, 1, 2)), ("extend", (0, 1, 2, 3)),
                  ("extend", (0, 1)))


@dataclass
class TrainConfig:
    """What to train and how; validated. ``model`` sizes a fresh base model (``kind="base"``)."""

    kind: str = "base"
    steps: int = 1000
    out: str = "runs/base"
    batch_size: int = 8
    lr: float = 5e-4
    warmup: int | None = None  # default: min(100, steps // 10)
    ema: float = 0.995
    seed: int = 0
    checkpoint_every: int = 100
    resume: bool = True
    threads: int | None = None
    motion_scale_range: tuple[float, float] = (0.5, 2.5)
    base: str | None = None  # adapters: the base model folder (default: shipped assets)
    init: str | None = None  # base: start from the transformer weights of this model folder (warm start)
    estimated_flow_p: float = 0.5  # adapters: share of batches guided by DIS-estimated flow
    guided_t_p: float = 0.75  # adapters: share of batches with timesteps scaled into guided sampling's range
    matched_p: float = 0.0  # adapters: share of batches noised from the guided reference, as sampling starts
    matched_t: tuple[float, float] = (0.05, 0.3)  # adapters: their timesteps (GUIDED_START = 0.1 inside)
    matched_loss: str = "velocity"  # adapters: loss of those batches, "velocity" or "psnr" (per-frame log MSE)
    extend_share: float | None = None  # adapters: share of the continuation layouts (default 0.20, see _LAYOUT_P)
    blend_pool: int = 400  # blend: held-in-memory training clips (slow motion at BLEND_FACTORS, DIS flow)
    fusion_pool: int = 960  # fusion: training clips the model generates once (FUSION_LAYOUTS; DIS / true flow)
    model: dict = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        recipe_init = {"blend": "runs/adapters_ft/adapters", "fusion": "runs/adapters_head/adapters"}
        if self.kind in recipe_init and not self.init:
            raise ValueError(f"training the {self.kind} head needs the adapters it is added to: pass --init "
                             f"DIR/adapters (init=; the recipe uses {recipe_init[self.kind]})")
        if self.blend_pool < 1 or self.fusion_pool < 1:
            raise ValueError(f"blend_pool and fusion_pool must be >= 1, got {self.blend_pool}, {self.fusion_pool}")
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError(f"steps, batch_size and checkpoint_every must be >= 1, got {self.steps}, "
                             f"{self.batch_size}, {self.checkpoint_every}")
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
        if not (self.lr > 0 and 0 <= self.ema < 1):
            raise ValueError(f"lr must be > 0 and ema in [0, 1), got {self.lr}, {self.ema}")
        if self.warmup is None:
            self.warmup = max(1, min(100, self.steps // 10))


def plot_losses(losses: list[float], path: str | os.PathLike, title: str = "loss") -> None:
    """Raw loss (light) and its running mean over 50 steps; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flow.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    x = list(range(1, len(losses) + 1))
    ax.plot(x, losses, color="#9ecae1", lw=0.6, label="per step")
    k = 50
    if len(losses) >= 2:
        run, acc = [], 0.0
        for i, v in enumerate(losses):
            acc += v
            if i >= k:
                acc -= losses[i - k]
            run.append(acc / min(i + 1, k))
        ax.plot(x, run, color="#08519c", lw=1.5, label=f"mean of {k}")
    if min(losses, default=1.0) > 0:  # log-MSE losses (blend, PSNR loss) go below 0: linear axis then
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _save_dir_atomic(folder: Path, write: Callable[[Path], None]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(tmp)
        old = folder.with_name(folder.name + ".old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _lr_at(cfg: TrainConfig, step: int) -> float:
    # linear warm-up, then cosine to 10% over the run
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


class _Recipe:
    """What differs between base and adapter training: the model, its trainable parameters, the loss,
    and how the result is exported."""

    model: EmbeddedVideoModel

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        raise NotImplementedError

    def loss(self, step: int, rank: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def export(self, folder: Path, metrics: dict) -> None:
        raise NotImplementedError


class _BaseRecipe(_Recipe):
    def __init__(self, cfg: TrainConfig):
        from .data import ClipDataset

        self.cfg = cfg
        self.model = EmbeddedVideoModel(EmbeddedConfig.from_dict(cfg.model) if cfg.model else EmbeddedConfig())
        if cfg.init:
            # warm start: same architecture, weights of an earlier run (the config's sampler fields may differ)
            src = load_embedded(cfg.init)
            try:
                self.model.transformer.load_state_dict(src.transformer.state_dict())
            except RuntimeError as e:
                raise ValueError(f"--init {cfg.init} does not match the model being trained ({str(e).splitlines()[0]})") from None
        mc = self.model.config
        self.data = ClipDataset(
            "train", length=2**31 - 1, num_frames=mc.num_frames, size=(mc.height, mc.width),
            motion_scale_range=cfg.motion_scale_range, with_flow=False,
        )

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


#: known-frame layouts of adapter training, as the jobs use them: generation from a first frame (transfer),
#: continuation after 2-4 known frames (extend), and in-betweening (speed: real frames every 2nd/3rd/4th/7th)
_LAYOUTS = (
    ("first", (0,)),
    ("extend", (0, 1)), ("extend", (0, 1, 2)), ("extend", (0, 1, 2, 3)),
    ("between", (0, 2, 4, 6)), ("between", (0, 3, 6)), ("between", (0, 4)), ("between", (0, 7)),
)
_LAYOUT_P = (0.35, 0.06, 0.06, 0.08, 0.13, 0.1, 0.1, 0.12)


def layout_probs(extend_share: float | None = None) -> torch.Tensor:
    """The layouts' probabilities, with the continuation layouts (``extend``) rescaled to ``extend_share`` of
    the batches and the others keeping their ratios (None: :data:`_LAYOUT_P` as it is)."""
    if extend_share is None:
        return torch.tensor(_LAYOUT_P)  # float32, as the draws of earlier runs
    p = torch.tensor(_LAYOUT_P, dtype=torch.float64)
    ext = torch.tensor([k == "extend" for k, _ in _LAYOUTS])
    p[ext] *= extend_share / float(p[ext].sum())
    p[~ext] *= (1 - extend_share) / float(p[~ext].sum())
    return p.float()


def true_guidance(clips: list, positions: tuple[int, ...], num_frames: int, fill_back: int = 3):
    """A :class:`~motionguide.guidance.Guidance` from the exact flows of rendered clips (one batch).

    Unknown frame ``k`` takes the known frames before (``a``) and after (``b``) it as sources, weighted
    ``(1 - tau)`` and ``tau`` (``tau = (k - a) / (b - a)``) times their visibility (occluded and out-of-frame
    points get 0, the model fills them); after the last known frame ``a`` and, where ``a`` does not see, the
    known frame up to ``fill_back`` before it (as :func:`motionguide.guidance.extension`). Layout as the
    plugin's builders.
    """
    from .guidance import Guidance

    frames = torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips])  # (B, 3, T, H, W)
    b, _, _, h, w = frames.shape
    pos = list(positions)
    sources = torch.full((num_frames, 2), -1, dtype=torch.long)
    flows = frames.new_zeros(b, num_frames, 2, 2, h, w)
    weights = frames.new_zeros(b, num_frames, 2, 1, h, w)
    for i, p in enumerate(pos):
        sources[p, 0] = i
        weights[:, p, 0] = 1.0
    for k in range(num_frames):
        if k in pos:
            continue
        before = [i for i, p in enumerate(pos) if p < k]
        after = [i for i, p in enumerate(pos) if p > k]
        fill = before[-1 - min(fill_back, len(before) - 1)] if not after else before[-1]
        ends = [(before[-1], 1.0)] if not after else [
            (before[-1], (pos[after[0]] - k) / (pos[after[0]] - pos[before[-1]])),
            (after[0], (k - pos[before[-1]]) / (pos[after[0]] - pos[before[-1]]))]
        tot = 0
        for j, (i, wt) in enumerate(ends):
            sources[k, j] = i
            for n, c in enumerate(clips):
                f, occ, out = c.scene.flow(c.times[k], c.times[pos[i]])
                flows[n, k, j] = f
                weights[n, k, j] = wt * (1 - torch.clamp(occ + out, max=1))
        tot = weights[:, k].sum(1, keepdim=True)
        weights[:, k] = torch.where(tot > 0, weights[:, k] / tot.clamp(min=1e-6), weights[:, k])
        if fill != before[-1]:  # continuation: an earlier frame fills what the last one does not see
            sources[k, 1] = fill
            for n, c in enumerate(clips):
                f, occ, out = c.scene.flow(c.times[k], c.times[pos[fill]])
                flows[n, k, 1] = f
                weights[n, k, 1] = (1 - weights[n, k, 0]) * (1 - torch.clamp(occ + out, max=1))
    return Guidance(frames[:, :, pos], tuple(pos), num_frames, sources, flows, weights)


def estimated_guidance(frames: torch.Tensor, kind: str, positions: tuple[int, ...], estimator):
    """The same layouts built by the plugin's builders from flow estimated on the known frames (what a
    user has): reference motion for ``first`` (the clip itself is the reference), extension from the last
    known frame at constant velocity, keyframe in-betweening. ``frames: (B, 3, T, H, W)``."""
    import motionguide as mg

    t = frames.shape[2]
    if kind == "first":
        return mg.reference_motion(frames[:, :, 0], frames, estimator=estimator)
    if kind == "extend":
        return mg.extension(frames[:, :, : len(positions)], t - len(positions), estimator=estimator)
    return mg.keyframes(frames[:, :, list(positions)], list(positions), t, estimator=estimator)


class _AdapterRecipe(_Recipe):
    """MoG selective fine-tuning: the plugin's latent adapter and feature gates, a LoRA on the blocks and
    the reference gate train; the base weights stay frozen. Half of the batches are guided by flow
    estimated with DIS on the true frames, so the model learns to correct flow errors."""

    def __init__(self, cfg: TrainConfig):
        from flow.estimators import get_estimator

        from .data import ClipDataset
        from .model import attach_adapters

        self.cfg = cfg
        self.model = load_embedded(cfg.base) if cfg.base else load_embedded()
        self.model.train()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if cfg.init:
            # warm start from adapters trained earlier (loading applies the plugin, LoRA and gates)
            from .model import load_adapters

            try:
                load_adapters(self.model, cfg.init)
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"--init {cfg.init} does not hold adapters for this model ({e})") from None
            self._per_level_gates()
            if getattr(self.model, "gate_head", None) is None:  # older adapters: a fresh (zero-output) head
                from .model import GateHead

                self.model.gate_head = GateHead()
        else:
            attach_adapters(self.model)
        mc = self.model.config
        self.data = ClipDataset("train", length=2**31 - 1, num_frames=mc.num_frames, size=(mc.height, mc.width),
                                motion_scale_range=cfg.motion_scale_range)
        self.estimator = get_estimator("dis")

    def _per_level_gates(self) -> None:
        """Older adapters' gates (one scalar each, session 2) seed the per-trust-level ones: the reference
        gate goes to all three levels; the old correction gate never applied where nothing is trusted
        (it was scaled by the mask), so that level starts at 0 and the other two take it."""
        from .model import TRUST_LEVELS

        m = self.model
        g = m.prior_gate.detach().flatten()
        if g.numel() != TRUST_LEVELS:
            g = torch.stack([g[0], g[-1], g[-1]])
            m.prior_gate = torch.nn.Parameter(g.clone())
        c = getattr(m, "correction_gate", None)
        c = torch.zeros(1) if c is None else c.detach().flatten()
        if c.numel() != TRUST_LEVELS:
            m.correction_gate = torch.nn.Parameter(torch.stack([torch.zeros(()), c[-1], c[-1]]).clone())

    def trainable(self):
        import motionguide as mg

        ids = {id(p) for p in mg.trainable_parameters(self.model.transformer, blocks=(), lora=True)}
        return [(n, p) for n, p in self.model.named_parameters() if id(p) in ids or n in ("prior_gate", "correction_gate")
                or n.startswith("gate_head.")]

    def loss(self, step, rank, generator):
        import motionguide as mg

        from .data import make_clip
        from .model import ADAPTER_T_MAX, EmbeddedVideoModel, guided_reference_and_scale, latent_guidance_of

        mc = self.model.config
        b = self.cfg.batch_size
        start = (self.cfg.seed * 1_000_003 + (step * 64 + rank) * b + 500_000_000) % (2**31 - 1 - b)
        clips = [make_clip(i, split="train", num_frames=mc.num_frames, size=(mc.height, mc.width),
                           motion_scale=self.data.motion_scale(i), with_prev_flow=False) for i in range(start, start + b)]
        li = int(torch.multinomial(layout_probs(self.cfg.extend_share), 1, generator=generator))
        kind, positions = _LAYOUTS[li]
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
        # matched_p of the batches train exactly that start (x_t made from the reference), of the rest most
        # train the times below ADAPTER_T_MAX on noised true clips, the others the whole range (strength < 1
        # starts higher).
        matched = float(torch.rand(1, generator=generator)) < self.cfg.matched_p
        t_max = ADAPTER_T_MAX if float(torch.rand(1, generator=generator)) < self.cfg.guided_t_p else 1.0
        mg.set_guidance(self.model.transformer, lg)
        try:
            return self.model.loss(frames, known, generator=generator, ref=ref, t_max=t_max,
                                   out_scale=out_scale,
                                   noised=ref if matched else None, t_range=tuple(self.cfg.matched_t),
                                   frame_psnr=matched and self.cfg.matched_loss == "psnr")
        finally:
            mg.set_guidance(self.model.transformer, None)

    def export(self, folder, metrics):
        from .model import save_adapters

        save_adapters(self.model, folder, metrics=metrics)


class _HeadRecipe(_Recipe):
    """Shared by the recipes that train one small head of the adapters alone (``blend``, ``fusion``): the base
    model with the ``--init`` adapters; only ``PREFIX`` parameters train; the export is the whole adapters."""

    PREFIX = ""
    INPUTS: tuple[str, ...] = ()  # the pool entries the head takes, in order

    def _load(self, cfg: TrainConfig) -> None:
        from .model import load_adapters

        self.cfg = cfg
        self.model = load_embedded(cfg.base) if cfg.base else load_embedded()
        try:
            load_adapters(self.model, cfg.init)
        except (ValueError, RuntimeError) as e:
            raise ValueError(f"--init {cfg.init} does not hold adapters for this model ({e})") from None

    def trainable(self):
        return [(n, p) for n, p in self.model.named_parameters() if n.startswith(self.PREFIX)]

    def _apply(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The head's frames ``(N, 3, H, W)`` from the pool entries named by ``INPUTS``."""
        raise NotImplementedError

    def loss(self, step, rank, generator):
        """Per-frame log MSE (the PSNR the benchmark reports) of ``8 x batch_size`` pool frames."""
        idx = torch.randint(0, self.pool["truth"].shape[0], (8 * self.cfg.batch_size,), generator=generator)
        p = next(p for n, p in self.model.named_parameters() if n.startswith(self.PREFIX))
        out = self._apply(*(self.pool[k][idx].to(p) for k in self.INPUTS))
        mse = ((out - self.pool["truth"][idx].to(p)) ** 2).mean(dim=(1, 2, 3))
        return torch.log(mse + 1e-5).mean()

    def export(self, folder, metrics):
        from .model import save_adapters

        save_adapters(self.model, folder, metrics=metrics)


class _BlendRecipe(_HeadRecipe):
    """The adapters' :class:`~motionguide.model.BlendHead` alone, on the blended warp: the network never runs,
    so a step costs milliseconds and a fixed pool of in-between frames, rendered once from ``blend_pool``
    training clips (slow motion at :data:`BLEND_FACTORS`, flow estimated by DIS on the real frames, as the
    speed job builds it), replaces fresh clips per step. Loss: per-frame log MSE (the PSNR the benchmark
    reports) of the blend against the true in-between frame. Everything else in the adapters stays as it is."""

    PREFIX = "blend_head."
    INPUTS = ("warps", "weights", "flows")

    def __init__(self, cfg: TrainConfig):
        from flow.estimators import get_estimator

        from .model import BlendHead

        self._load(cfg)
        if getattr(self.model, "blend_head", None) is None:
            self.model.blend_head = BlendHead()
        self.pool = self._pool(get_estimator("dis"))

    def _pool(self, estimator) -> dict[str, torch.Tensor]:
        import motionguide as mg
        from tqdm.auto import tqdm

        from .data import make_clip
        from .model import source_warps

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
            g = mg.speed(truth[:, :, real], factor, estimator=estimator)  # ends at the last real frame
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
        return self.model.blend_head.blend(*inputs)


class _FusionRecipe(_HeadRecipe):
    """The adapters' :class:`~motionguide.model.FusionHead` alone, on the model's own outputs: the model (with
    the ``--init`` adapters, no fusion) generates the continuation frames of ``fusion_pool`` training clips
    once (:data:`FUSION_LAYOUTS`, default sampling; guidance from DIS flow on the known frames, as the jobs
    build it, for half the clips, from the true flow for the other half: a head that only ever saw
    estimated flow, which leaves few holes, pulls a true-flow output toward the warp inside the holes and
    loses 1.1 dB on held-out extend); each step fuses ``8 x batch_size`` of them with their warps. Loss:
    per-frame log MSE against the true frames. Everything else in the adapters stays as it is."""

    PREFIX = "fusion_head."
    INPUTS = ("out", "warp", "weight", "flow", "ahead")

    def __init__(self, cfg: TrainConfig):
        from flow.estimators import get_estimator

        from .model import FusionHead

        self._load(cfg)
        head = getattr(self.model, "fusion_head", None)
        self.model.fusion_head = None  # the pool is the network's output before any fusion
        self.pool = self._pool(get_estimator("dis"))
        self.model.fusion_head = head if head is not None else FusionHead()

    def _pool(self, estimator) -> dict[str, torch.Tensor]:
        from tqdm.auto import tqdm

        from .data import make_clip
        from .jobs import generate_windows
        from .model import flow_only, fusion_inputs

        mc = self.model.config
        group = 16
        parts: dict[str, list] = {k: [] for k in self.INPUTS + ("truth",)}
        start = (self.cfg.seed * 1_000_003 + 800_000_000) % (2**31 - 1 - self.cfg.fusion_pool)
        bar = tqdm(total=self.cfg.fusion_pool, desc="fusion clips", disable=not self.cfg.progress, dynamic_ncols=True)
        with torch.no_grad():
            for i in range(0, self.cfg.fusion_pool, group):
                j = i // group
                kind, positions = FUSION_LAYOUTS[j % len(FUSION_LAYOUTS)]
                exact = (j // len(FUSION_LAYOUTS)) % 2 == 1  # every other round of layouts: the true flow
                seeds = range(start + i, start + min(i + group, self.cfg.fusion_pool))
                clips = [make_clip(s, split="train", num_frames=mc.num_frames, size=(mc.height, mc.width),
                                   with_flow=exact) for s in seeds]
                truth = torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips])
                g = (true_guidance(clips, positions, mc.num_frames) if exact
                     else estimated_guidance(truth, kind, positions, estimator))
                out = generate_windows(self.model, g, mode="both", seed=i)
                frames, x = fusion_inputs(g, out, flow_only(g, getattr(self.model, "blend_head", None)))
                for k, v in zip(self.INPUTS, x):
                    parts[k].append(v)
                parts["truth"].append(torch.cat([truth[:, :, t] for t in frames]))
                bar.update(len(seeds))
        bar.close()
        return {k: torch.cat(v) for k, v in parts.items()}

    def _apply(self, *inputs):
        return self.model.fusion_head.fuse(*inputs)


def _make_recipe(cfg: TrainConfig) -> _Recipe:
    return {"base": _BaseRecipe, "adapters": _AdapterRecipe, "blend": _BlendRecipe,
            "fusion": _FusionRecipe}[cfg.kind](cfg)


def train(cfg: TrainConfig, *, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) a training recipe; returns ``{"step", "loss", "out"}``."""
    from accelerate import Accelerator
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    recipe = _make_recipe(cfg)
    named = recipe.trainable()
    params = [p for _, p in named]
    for p in recipe.model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    ema = {n: p.detach().clone() for n, p in named}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    model, opt = accelerator.prepare(recipe.model, opt)
    recipe.model = accelerator.unwrap_model(model)
    ckpt = out / "checkpoint"
    step, losses = 0, []
    if cfg.resume and (ckpt / "state.json").is_file():
        state = json.loads((ckpt / "state.json").read_text())
        if state.get("kind") != cfg.kind:
            raise ValueError(f"{ckpt} holds a {state.get('kind')!r} run, not {cfg.kind!r}; use another --out "
                             f"or --no-resume")
        cur = load_file(ckpt / "trainable.safetensors")
        emas = load_file(ckpt / "ema.safetensors")
        names = {n for n, _ in named}
        if set(cur) != names:
            raise ValueError(f"{ckpt} does not match this model (parameters differ); use another --out or --no-resume")
        with torch.no_grad():
            for n, p in named:
                p.copy_(cur[n])
                ema[n].copy_(emas[n])
        opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        step, losses = int(state["step"]), list(state["losses"])
        log(f"resumed {cfg.kind} training from {ckpt} at step {step}")
    if step >= cfg.steps:
        log(f"{ckpt} is already at step {step} >= --steps {cfg.steps}; nothing to do")
        return {"step": step, "loss": losses[-1] if losses else float("nan"), "out": str(out)}

    def checkpoint():
        if not accelerator.is_main_process:
            return

        def write(tmp: Path):
            save_file({n: p.detach().cpu().contiguous() for n, p in named}, tmp / "trainable.safetensors")
            save_file({n: v.cpu().contiguous() for n, v in ema.items()}, tmp / "ema.safetensors")
            torch.save(opt.state_dict(), tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({"kind": cfg.kind, "step": step, "losses": losses,
                                                         "config": {k: v for k, v in cfg.__dict__.items()}}, default=str))

        _save_dir_atomic(ckpt, write)
        # export the EMA weights (swap in, export, swap back)
        with torch.no_grad():
            cur = {n: p.detach().clone() for n, p in named}
            for n, p in named:
                p.copy_(ema[n])
            recent = losses[-50:]
            metrics = {"step": step, "train_loss_mean_last_50": sum(recent) / max(1, len(recent))}
            recipe.export(out / ("model" if cfg.kind == "base" else "adapters"), metrics)
            for n, p in named:
                p.copy_(cur[n])
        if losses:
            plot_losses(losses, out / "loss.png", title=f"{cfg.kind} training loss")

    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.kind}", disable=not (cfg.progress and accelerator.is_main_process),
               dynamic_ncols=True)
    model.train()
    t0 = time.time()
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 7919 + step * 97 + accelerator.process_index)
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        loss = recipe.loss(step, accelerator.process_index, g)
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))  # short runs: EMA warms up
            for n, p in named:
                ema[n].lerp_(p.detach(), 1 - d)
        lv = float(accelerator.gather(loss.detach()[None]).mean())
        if not math.isfinite(lv):
            raise RuntimeError(f"loss became {lv} at step {step}; lower --lr or resume from the last checkpoint")
        losses.append(lv)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}", lr=f"{_lr_at(cfg, step - 1):.1e}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint()
            log(f"step {step}: loss(mean 50) {sum(losses[-50:]) / len(losses[-50:]):.4f}, "
                f"{(time.time() - t0) / 60:.1f} min, checkpoint in {ckpt}")
    bar.close()
    accelerator.wait_for_everyone()
    return {"step": step, "loss": losses[-1], "out": str(out)}
