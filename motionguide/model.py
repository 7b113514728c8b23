"""The embedded base model: a small image-to-video diffusion transformer the project trains and ships.

Why this shape (issue 5; choices measured on this 2-core CPU):

* **Class**: a real ``diffusers.WanTransformer3DModel`` with a tiny config, so the guidance plugin's
  Wan path (patch embedding, blocks, hooks) is exercised exactly as on a pretrained Wan.
* **Latent space = pixels** in [-1, 1] at 32x32, 8 frames. A learned autoencoder would cost training time we
  do not have on a CPU, and pixels make "warped source latents" exactly "warped source frames".
* **Image-to-video conditioning as Wan I2V does it**: the model input is the noisy clip (3 channels)
  concatenated on channels with a per-frame *known* mask (1) and the known frames (3, zeros where unknown).
  Training draws which frames are known (always the first; sometimes the last, or the first 2-4 frames),
  so one model does generation from a first frame, in-betweening and continuation.
* **Flow matching like Wan**: ``x_t = (1 - t) x_0 + t * noise``, velocity ``noise - x_0``, timesteps drawn
  logit-normal and shifted, an Euler sampler from t = 1 to 0 on a shifted schedule.
* **x0 predicted as a correction on top of a reference clip** (a lever named in issue 5): the transformer's
  output is ``x_0 - ref``, where ``ref`` is the nearest known frame (static) for the base model. Motion
  guidance moves ``ref`` toward the flow-only warp through a gate initialised to zero, so copying the warp
  costs the model nothing and its capacity goes to corrections and disocclusions. The loss is the velocity
  loss ``v = (x_t - x0_hat) / t`` with ``t`` clamped away from 0 (x-prediction with a v-loss, as JiT).
  ``prediction="edm"`` is the EDM-preconditioned alternative (``x0_hat = ref + c_skip y_t + c_out F`` with
  ``y_t = x_t - (1 - t) ref``, Karras et al. 2022). Measured in session 2 by scratch runs (2000 steps
  warm-started from the x0 model): as a one-shot denoiser it is far better at low noise (39.3 dB from an input at t = 0.02, where
  the x0 model returns 18.2 dB: it ignores the detail in ``x_t``), but sampled clips stay noisy (SSIM 0.34
  against 0.59 on the speed job, unguided): the tiny network cannot remove noise off the training
  distribution, while the x0 model's blurrier, mean-like estimates score better in PSNR and SSIM. The
  shipped model therefore uses ``x0`` (see docs/README_embedded.md).

Shapes (kornia style): clips are ``(B, 3, T, H, W)`` float in [0, 1] at the API; ``known``: ``(B, T)`` bool.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

__all__ = [
    "EmbeddedConfig",
    "EmbeddedVideoModel",
    "build_transformer",
    "DEFAULT_ASSETS",
    "load_embedded",
    "save_embedded",
    "CheckpointError",
    "count_parameters",
    "MODES",
    "attach_adapters",
    "save_adapters",
    "load_adapters",
    "set_lora_scale",
    "latent_guidance_of",
    "guided_reference",
    "correction_scale",
    "PRIOR_KINDS",
    "known_of",
    "flow_only",
    "generate_guided",
]

#: where the shipped weights live: ``assets/embedded`` of the checkout (``MOTIONGUIDE_ASSETS`` overrides)
DEFAULT_ASSETS = Path(os.environ.get("MOTIONGUIDE_ASSETS", Path(__file__).resolve().parents[1] / "assets" / "embedded"))


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or corrupt (message says where and how to fix)."""


@dataclass
class EmbeddedConfig:
    """Size of the embedded model and its sampler defaults (validated; ``to_dict``/``from_dict``)."""

    height: int = 32
    width: int = 32
    num_frames: int = 8
    patch_size: tuple[int, int, int] = (1, 4, 4)
    num_layers: int = 4
    num_heads: int = 4
    head_dim: int = 24
    ffn_dim: int = 384
    text_dim: int = 16
    freq_dim: int = 64
    shift: float = 2.0  # timestep shift of the sampler and of training (Wan uses 3-5 at 480p; less at 32 px)
    steps: int = 20  # default sampling steps
    prediction: str = "x0"  # "x0": x0 - ref directly (shipped); "edm": preconditioned (tried, see docstring)
    t_min: float = 0.05  # "x0": clamp of t in the velocity loss (it divides by t)
    residual_std: float = 0.5  # "edm": s of the preconditioning, std of x0 - ref in [-1, 1] units

    def __post_init__(self):
        self.patch_size = tuple(int(p) for p in self.patch_size)
        if len(self.patch_size) != 3:
            raise ValueError(f"patch_size must be 3 integers (t, h, w), got {self.patch_size}")
        pt, ph, pw = self.patch_size
        if self.height % ph or self.width % pw or self.num_frames % pt:
            raise ValueError(
                f"height x width x frames {self.height}x{self.width}x{self.num_frames} must be divisible by "
                f"patch_size {self.patch_size}"
            )
        if self.head_dim % 2 or self.head_dim < 12:
            raise ValueError(f"head_dim must be even and >= 12 (Wan splits it for 3-axis RoPE), got {self.head_dim}")
        if self.prediction not in ("x0", "edm"):
            raise ValueError(f"prediction must be 'x0' or 'edm', got {self.prediction!r}")
        if not self.residual_std > 0:
            raise ValueError(f"residual_std must be > 0, got {self.residual_std}")
        if self.num_layers < 1 or self.num_heads < 1 or self.steps < 1 or self.shift <= 0:
            raise ValueError(f"num_layers, num_heads, steps must be >= 1 and shift > 0, got {self}")

    @property
    def in_channels(self) -> int:
        return 3 + 1 + 3  # noisy clip, known mask, known frames

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EmbeddedConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown EmbeddedConfig keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)


def build_transformer(cfg: EmbeddedConfig) -> "torch.nn.Module":
    """A ``WanTransformer3DModel`` sized by ``cfg`` (random init)."""
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=cfg.patch_size,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_channels,
        out_channels=3,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=256,
    )


def _check_clip(x: torch.Tensor, name: str, cfg: EmbeddedConfig | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[1] != 3:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be (B, 3, T, H, W) float in [0, 1], got {got}")
    if cfg is not None and tuple(x.shape[2:]) != (cfg.num_frames, cfg.height, cfg.width):
        raise ValueError(
            f"{name} must have T, H, W = {cfg.num_frames}, {cfg.height}, {cfg.width} for this model, got "
            f"{tuple(x.shape[2:])}; resize the frames or run the jobs, which window and resize for you"
        )


class EmbeddedVideoModel(nn.Module):
    """Wan transformer + conditioning + flow-matching loss and sampler.

    Attributes:
        transformer: the ``WanTransformer3DModel`` (the guidance plugin hooks into this one).
        config: :class:`EmbeddedConfig`.
    """

    def __init__(self, config: EmbeddedConfig | None = None, transformer: nn.Module | None = None):
        super().__init__()
        self.config = config or EmbeddedConfig()
        self.transformer = transformer if transformer is not None else build_transformer(self.config)
        # The "text" of the text-conditioned Wan blocks: a single zero token. Cross-attention to it adds a
        # learned constant; kept so the class stays the stock Wan (no text encoder is shipped).
        self.register_buffer("_text", torch.zeros(1, 1, self.config.text_dim), persistent=False)

    # ------------------------------------------------------------------------------------------------
    @staticmethod
    def reference(known_frames: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """The static reference clip: every frame is the nearest known frame (earlier one on ties).

        known_frames: ``(B, 3, T, H, W)`` in [-1, 1] or [0, 1]; known: ``(B, T)`` bool with at least one True.
        """
        b, _, t = known_frames.shape[:3]
        if not bool(known.any(dim=1).all()):
            raise ValueError("every clip needs at least one known frame (the first frame, at least)")
        idx = torch.arange(t, device=known.device).float()
        # distance from each frame to each known frame; unknown ones pushed far away
        dist = (idx[None, :, None] - idx[None, None, :]).abs().expand(b, t, t).clone()
        dist = dist + (~known[:, None, :]).float() * 1e6 + idx[None, None, :] * 1e-3
        nearest = dist.argmin(dim=2)  # (B, T)
        gather = nearest[:, None, :, None, None].expand(-1, 3, -1, *known_frames.shape[3:])
        return torch.gather(known_frames, 2, gather)

    def _inputs(self, x_t, known_frames, known):
        m = known[:, None, :, None, None].to(x_t.dtype).expand(-1, 1, -1, *x_t.shape[3:])
        return torch.cat([x_t, m, known_frames * m], dim=1)

    def denoise(
        self, x_t: torch.Tensor, t: torch.Tensor, known_frames: torch.Tensor, known: torch.Tensor,
        ref: torch.Tensor | None = None, out_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict ``x_0`` ``(B, 3, T, H, W)`` in [-1, 1] space.

        x_t: noisy clip ``(B, 3, T, H, W)``; t: ``(B,)`` in [0, 1]; known_frames: ``(B, 3, T, H, W)`` in
        [-1, 1]; known: ``(B, T)`` bool; ref: the reference clip the output corrects (default: static).
        """
        if ref is None:
            ref = self.reference(known_frames, known)
        inp = self._inputs(x_t, known_frames, known)
        out = self.transformer(
            hidden_states=inp, timestep=t * 1000.0, encoder_hidden_states=self._text.expand(x_t.shape[0], -1, -1),
            return_dict=False,
        )[0]
        if out_scale is not None:  # guided: the correction damped where the guidance is trusted
            out = out * out_scale
        if self.config.prediction == "x0":
            return ref + out
        c_skip, c_out = self.precond(t.to(x_t.dtype))
        return ref + c_skip * (x_t - (1 - t.to(x_t.dtype)).view(-1, 1, 1, 1, 1) * ref) + c_out * out

    def precond(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """EDM scalings ``(c_skip, c_out)``, each ``(B, 1, 1, 1, 1)``, for times ``t: (B,)``."""
        s = self.config.residual_std
        a = 1 - t
        den = a * a * s * s + t * t
        c_skip = a * s * s / den
        c_out = t * s / den.sqrt()
        return c_skip.view(-1, 1, 1, 1, 1), c_out.view(-1, 1, 1, 1, 1)

    # ------------------------------------------------------------------------------------------------
    def sample_t(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training timesteps ``(n,)``: logit-normal (SD3), then the same shift as the sampler."""
        u = torch.sigmoid(torch.randn(n, generator=generator))
        return self.shift_t(u)

    def shift_t(self, t: torch.Tensor) -> torch.Tensor:
        s = self.config.shift
        return s * t / (1 + (s - 1) * t)

    @staticmethod
    def draw_known(b: int, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Which frames are given in training ``(B, T)`` bool: first always; 25% also the last;
        20% the first 2-4 (continuation)."""
        known = torch.zeros(b, t, dtype=torch.bool)
        known[:, 0] = True
        r = torch.rand(b, generator=generator)
        k = torch.randint(2, max(3, min(5, t)), (b,), generator=generator)
        for i in range(b):
            if r[i] < 0.25 and t > 1:
                known[i, -1] = True
            elif r[i] < 0.45 and t > 2:
                known[i, : int(k[i])] = True
        return known

    def loss(
        self, clip: torch.Tensor, known: torch.Tensor, *, generator: torch.Generator | None = None,
        ref: torch.Tensor | None = None, extra_inputs: Callable | None = None, t_max: float = 1.0,
        out_scale: torch.Tensor | None = None, noised: torch.Tensor | None = None,
        t_range: tuple[float, float] | None = None, frame_psnr: bool = False,
    ) -> torch.Tensor:
        """Flow-matching velocity loss on a clip ``(B, 3, T, H, W)`` in [0, 1]; known ``(B, T)`` bool.

        ref: optional reference clip in [-1, 1] (guided training passes the gated warp).
        t_max: timesteps are drawn as usual, then scaled into ``[0, t_max]`` (adapter training passes
        ``ADAPTER_T_MAX`` for most batches: guided sampling starts below it, at ``GUIDED_START``).
        out_scale: optional factor on the network's correction (see :func:`correction_scale`).
        noised: optional clip in [-1, 1] that ``x_t`` is made from instead of the true one, with ``t`` drawn
        uniformly in ``t_range``: "train as you sample". Guided sampling starts from the guided reference
        noised to ``GUIDED_START`` (SDEdit-style), not from a noised true clip, so adapter training passes the
        reference here for part of its batches and the network learns to turn that start into the true clip
        (as diffusion restorers trained from the degraded input do, e.g. ResShift, Yue et al. 2023).
        frame_psnr: the loss is the mean over unknown frames of ``log(MSE)`` of ``x0_hat`` (minus PSNR up to
        a factor, the "PSNR loss" of image restorers such as NAFNet) instead of the velocity loss: every frame
        counts by its relative error, as per-frame PSNR counts it, so easy frames (next to a known one) are
        not spoiled to gain on hard ones.
        """
        _check_clip(clip, "clip", self.config)
        x0 = clip * 2 - 1
        b = x0.shape[0]
        if noised is not None:
            lo, hi = t_range if t_range is not None else (0.0, float(t_max))
            t = (lo + (hi - lo) * torch.rand(b, generator=generator)).to(x0)
        else:
            t = (self.sample_t(b, generator) * float(t_max)).to(x0)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        tt = t[:, None, None, None, None]
        x_t = (1 - tt) * (x0 if noised is None else noised.to(x0)) + tt * noise
        known_frames = x0 * known[:, None, :, None, None]
        x0_hat = self.denoise(x_t, t, known_frames, known, ref=ref, out_scale=out_scale)
        if frame_psnr:
            mse = ((x0_hat - x0) ** 2).mean(dim=(1, 3, 4))  # (B, T)
            unknown = ~known.to(mse.device)
            if not bool(unknown.any()):
                raise ValueError("frame_psnr scores the generated frames, but every frame of the clip is known; "
                                 "leave at least one frame unknown (known[:, t] = False)")
            return torch.log(mse[unknown] + 1e-6).mean()
        if self.config.prediction == "x0":
            # velocity loss with x0 prediction (as JiT, Li & He 2025): v = (x_t - x0) / t, t clamped
            tc = tt.clamp(min=self.config.t_min)
            return ((((x_t - x0_hat) - (x_t - x0)) / tc) ** 2).mean()
        _, c_out = self.precond(t)
        return (((x0_hat - x0) / c_out.clamp(min=1e-3)) ** 2).mean()

    # ------------------------------------------------------------------------------------------------
    def timesteps(self, steps: int) -> torch.Tensor:
        """Sampler times ``(steps + 1,)`` from 1 to 0 on the shifted schedule."""
        return self.shift_t(torch.linspace(1.0, 0.0, steps + 1))

    @torch.no_grad()
    def generate(
        self,
        known_frames: torch.Tensor,
        known: torch.Tensor,
        *,
        steps: int | None = None,
        seed: int = 0,
        ref: torch.Tensor | None = None,
        ref_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        out_scale: torch.Tensor | None = None,
        callback: Callable[[int, float, torch.Tensor], torch.Tensor | None] | None = None,
        progress: Callable[[int], None] | None = None,
        t_start: float = 1.0,
    ) -> torch.Tensor:
        """Sample a clip ``(B, 3, T, H, W)`` in [0, 1] with known frames kept exactly.

        t_start < 1 starts from the reference clip noised to ``t_start`` (SDEdit-style) and runs only the
        schedule's steps below it; 1 is ordinary sampling from pure noise.

        known_frames: ``(B, 3, T, H, W)`` in [0, 1] (values at unknown frames are ignored);
        known: ``(B, T)`` bool; steps: Euler steps (default ``config.steps``); seed: the noise seed.
        ref / ref_fn: the reference clip in [-1, 1] (or a function of the static reference giving it).
        out_scale: optional ``(B, 1, T, H, W)`` factor on the network's correction (guided sampling).
        callback(i, t_next, x) may return a replacement for the latents after step ``i`` (training-free
        guidance does this, like diffusers' ``callback_on_step_end``). progress(i) is called after each step.
        """
        _check_clip(known_frames, "known_frames", self.config)
        if known.shape != known_frames.shape[:1] + known_frames.shape[2:3]:
            raise ValueError(f"known must be (B, T) = {tuple(known_frames.shape[:1] + known_frames.shape[2:3])}, got {tuple(known.shape)}")
        steps = int(steps or self.config.steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        p = next(self.transformer.parameters())
        kf = (known_frames.to(p) * 2 - 1) * known[:, None, :, None, None].to(p)
        known = known.to(p.device)
        if ref is None:
            ref = self.reference(kf, known)
            if ref_fn is not None:
                ref = ref_fn(ref)
        if not 0.0 < float(t_start) <= 1.0:
            raise ValueError(f"t_start must be in (0, 1], got {t_start}")
        g = torch.Generator().manual_seed(int(seed))
        x = torch.randn(kf.shape, generator=g).to(p)
        ts = self.timesteps(steps).to(p)
        if t_start < 1.0:
            ts = torch.cat([ts.new_tensor([float(t_start)]), ts[ts < float(t_start) - 1e-6]])
            x = (1 - ts[0]) * ref + ts[0] * x
        for i in range(len(ts) - 1):
            t, t_next = ts[i], ts[i + 1]
            x0_hat = self.denoise(x, t.expand(x.shape[0]), kf, known, ref=ref, out_scale=out_scale)
            if float(t_next) <= 0:
                x = x0_hat
            else:
                v = (x - x0_hat) / t
                x = x + (t_next - t) * v
            if callback is not None:
                y = callback(i, float(t_next), x)
                if y is not None:
                    x = y
            if progress is not None:
                progress(i)
        x = torch.where(known[:, None, :, None, None], kf, x)
        return ((x + 1) / 2).clamp(0, 1)


# ---------------------------------------------------------------------------------------------------
# Weights are data: where the shipped checkpoint lives, how it is checked, and the error when it is not.

_WEIGHTS = "diffusion_pytorch_model.safetensors"
_MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_embedded(model: EmbeddedVideoModel, folder: str | os.PathLike, *, metrics: dict | None = None) -> Path:
    """Save the transformer (diffusers ``save_pretrained``: config.json + safetensors), the model config and
    a manifest with checksums, input range and metrics. Written to a temporary folder, then renamed."""
    import shutil
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.transformer.save_pretrained(tmp, safe_serialization=True)
        (tmp / "embedded_config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
        manifest = {
            "class": type(model.transformer).__name__,
            "input_range": "frames float [0, 1] at the API; [-1, 1] inside",
            "files": {n: _sha256(tmp / n) for n in (_WEIGHTS, "config.json", "embedded_config.json")},
            "metrics": metrics or {},
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2))
        if folder.exists():
            old = folder.with_name(folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_embedded(folder: str | os.PathLike | None = None, *, verify: bool = True) -> EmbeddedVideoModel:
    """Load the embedded model (default: the shipped ``assets/embedded/base``), checking its checksums.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the folder and the fix when files are missing
    or do not match the manifest.
    """
    folder = Path(folder) if folder is not None else DEFAULT_ASSETS / "base"
    fix = (
        "reinstall motionguide from a full checkout (git lfs is not used; the weights are plain files), or "
        "train one with `motionguide train base --out DIR` and pass it with --model DIR"
    )
    missing = [n for n in (_WEIGHTS, "config.json", "embedded_config.json") if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"embedded model checkpoint in {folder} is missing {missing}; {fix}")
    if verify and (folder / _MANIFEST).is_file():
        manifest = json.loads((folder / _MANIFEST).read_text())
        for n, digest in manifest.get("files", {}).items():
            if (folder / n).is_file() and _sha256(folder / n) != digest:
                raise CheckpointError(f"embedded model file {folder / n} is corrupt (checksum mismatch); {fix}")
    try:
        d = json.loads((folder / "embedded_config.json").read_text())
        d.setdefault("prediction", "x0")  # written before the field existed: session 1's x0 models
        cfg = EmbeddedConfig.from_dict(d)
        from diffusers import WanTransformer3DModel

        transformer = WanTransformer3DModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"embedded model checkpoint in {folder} could not be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); {fix}") from e
    model = EmbeddedVideoModel(cfg, transformer=transformer)
    model.eval()
    return model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def clip_seconds_estimate(model: EmbeddedVideoModel, steps: int | None = None) -> float:
    """Rough wall time of one clip: time one forward pass and multiply (used by ``--help`` texts/tests)."""
    import time

    cfg = model.config
    x = torch.zeros(1, 3, cfg.num_frames, cfg.height, cfg.width)
    known = torch.zeros(1, cfg.num_frames, dtype=torch.bool)
    known[:, 0] = True
    with torch.no_grad():
        t0 = time.perf_counter()
        model.denoise(x, torch.ones(1), x, known)
        dt = time.perf_counter() - t0
    return dt * int(steps or cfg.steps)


def _isfinite(x: float) -> bool:
    return math.isfinite(x)


# ---------------------------------------------------------------------------------------------------
# Motion guidance on the embedded model: the guidance plugin's adapters (latent channels + feature
# gates), a LoRA on the blocks (selective fine-tuning, saved with the adapter), and the reference gate.

#: the embedded model works on pixels: its "VAE" is the identity
PIXEL_VAE_KW = dict(spatial=1, temporal=1, first_frame_alone=False)
#: the reference gate is ``PRIOR_SCALE * p`` with ``p`` initialised to 0, so Adam moves it at a useful rate
PRIOR_SCALE = 25.0
#: the per-pixel trust levels of the guidance (see :func:`trust_levels`)
TRUST_LEVELS = 3
MODES = ("unguided", "latent", "feature", "both", "training_free", "flow_only")
_PRIOR_FILE = "reference_gate.safetensors"
#: the gate head's weights sit in _PRIOR_FILE under this prefix
_HEAD_PREFIX = "gate_head."
#: the blend head's weights sit in _PRIOR_FILE under this prefix
_BLEND_PREFIX = "blend_head."
#: the fusion head's weights sit in _PRIOR_FILE under this prefix
_FUSION_PREFIX = "fusion_head."
#: where guided sampling starts (see generate_guided); 1.0 = from pure noise
GUIDED_START = 0.1
#: adapter training draws most timesteps below this (the guided sampler never starts above it at strength 1)
ADAPTER_T_MAX = 0.6
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "net.0.proj", "net.2")


def pixel_vae():
    from .registry import VAECompression

    return VAECompression(**PIXEL_VAE_KW)


def attach_adapters(model: EmbeddedVideoModel, *, lora_rank: int = 16, mode: str = "trained") -> None:
    """Apply the guidance plugin to ``model.transformer`` (latent + feature levels) and, in trained mode, a
    LoRA on every block plus the zero-initialised reference gate ``model.prior_gate``.

    Everything new starts at zero (LoRA B matrices, latent adapter, gates), so the attached model still
    computes exactly the base model until trained.
    """
    import motionguide as mg

    cfg = mg.MotionGuidanceConfig(mode=mode, latent=True, feature=True, vae=pixel_vae())
    mg.apply_motion_guidance(model.transformer, cfg)
    if mode == "trained":
        try:
            mg.add_lora(model.transformer, rank=lora_rank, blocks="all", targets=LORA_TARGETS)
        except BaseException:
            mg.remove_motion_guidance(model.transformer)
            raise
        # one value per trust level (see trust_levels): no source, one source, two or more
        model.prior_gate = nn.Parameter(torch.zeros(TRUST_LEVELS))
        model.prior_kind = "warp"
        model.correction_gate = nn.Parameter(torch.zeros(TRUST_LEVELS))
        model.gate_head = GateHead()


def set_lora_scale(model: EmbeddedVideoModel, scale: float) -> None:
    """Scale every LoRA layer of the transformer (0 = exactly the base weights' output)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft optional; then there is no LoRA to scale
        return
    for m in model.transformer.modules():
        if isinstance(m, BaseTunerLayer):
            for name in list(getattr(m, "scaling", {})):
                m.set_scale(name, float(scale))


def save_adapters(model: EmbeddedVideoModel, folder: str | os.PathLike, *, metrics: dict | None = None) -> Path:
    """Save the plugin adapter (+ LoRA) with ``motionguide.save_motion_guidance`` and the reference gate,
    with a manifest of checksums."""
    import motionguide as mg
    from safetensors.torch import save_file

    from flow.atomic import atomic_path

    folder = Path(folder)
    mg.save_motion_guidance(model.transformer, folder)
    with atomic_path(folder / _PRIOR_FILE) as tmp:
        gates = {"prior_gate": model.prior_gate}
        if getattr(model, "correction_gate", None) is not None:
            gates["correction_gate"] = model.correction_gate
        if getattr(model, "gate_head", None) is not None:
            gates.update({_HEAD_PREFIX + k: v for k, v in model.gate_head.state_dict().items()})
        if getattr(model, "blend_head", None) is not None:
            gates.update({_BLEND_PREFIX + k: v for k, v in model.blend_head.state_dict().items()})
        if getattr(model, "fusion_head", None) is not None:
            gates.update({_FUSION_PREFIX + k: v for k, v in model.fusion_head.state_dict().items()})
        save_file({k: v.detach().cpu().contiguous() for k, v in gates.items()}, str(tmp))
    files = {n: _sha256(folder / n) for n in ("motion_guidance.safetensors", "motion_guidance.json", _PRIOR_FILE)}
    with atomic_path(folder / _MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps({"files": files, "metrics": metrics or {}, "prior_scale": PRIOR_SCALE,
                                          "prior_kind": getattr(model, "prior_kind", "masked")}, indent=2))
    return folder


def _head_from(gates: dict, prefix: str, cls: type, what: str, folder: Path, fix: str) -> nn.Module | None:
    """The frozen head of class ``cls`` whose weights sit in ``gates`` under ``prefix`` (None when there are
    none); a head of another shape raises :class:`CheckpointError` naming ``what``."""
    state = {k[len(prefix):]: v for k, v in gates.items() if k.startswith(prefix)}
    if not state:
        return None
    try:
        head = cls(hidden=int(state["net.0.weight"].shape[0]))
        head.load_state_dict(state)
    except (KeyError, RuntimeError, IndexError) as e:
        raise CheckpointError(f"adapters in {folder}: the {what} does not match this version's {cls.__name__} "
                              f"({cls.IN_CHANNELS} input features; {type(e).__name__}: {e}); {fix}") from e
    return head.requires_grad_(False)


def load_adapters(model: EmbeddedVideoModel, folder: str | os.PathLike | None = None, *, verify: bool = True) -> None:
    """Load adapters saved by :func:`save_adapters` onto ``model`` (default: the shipped ones)."""
    import motionguide as mg
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else DEFAULT_ASSETS / "adapters"
    fix = "train them with `motionguide train adapters --out DIR` and pass --adapters DIR/adapters"
    need = ("motion_guidance.safetensors", "motion_guidance.json", _PRIOR_FILE)
    missing = [n for n in need if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"motion-guidance adapters in {folder} are missing {missing}; {fix}")
    if verify and (folder / _MANIFEST).is_file():
        for n, digest in json.loads((folder / _MANIFEST).read_text()).get("files", {}).items():
            if (folder / n).is_file() and _sha256(folder / n) != digest:
                raise CheckpointError(f"adapter file {folder / n} is corrupt (checksum mismatch); {fix}")
    # validate everything before the transformer is touched: a refused folder leaves the model as it was
    try:
        gates = load_file(str(folder / _PRIOR_FILE))
        gate = gates["prior_gate"]
        kind = "masked"  # adapters saved before the field existed
        if (folder / _MANIFEST).is_file():
            kind = json.loads((folder / _MANIFEST).read_text()).get("prior_kind", "masked")
    except (OSError, RuntimeError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"adapters in {folder} could not be read ({type(e).__name__}: {e}); {fix}") from e
    head = _head_from(gates, _HEAD_PREFIX, GateHead, "gate head", folder, fix)
    blend = _head_from(gates, _BLEND_PREFIX, BlendHead, "blend head", folder, fix)
    fusion = _head_from(gates, _FUSION_PREFIX, FusionHead, "fusion head", folder, fix)
    for name, v in gates.items():
        if name.startswith((_HEAD_PREFIX, _BLEND_PREFIX, _FUSION_PREFIX)):
            continue
        if v.numel() not in (1, TRUST_LEVELS):
            raise CheckpointError(f"adapters in {folder}: {name} has {v.numel()} values, expected 1 or one per trust "
                                  f"level ({TRUST_LEVELS}); {fix}")
    if kind not in PRIOR_KINDS:
        raise CheckpointError(f"adapters in {folder} have an unknown prior_kind {kind!r}; expected one of {PRIOR_KINDS}; {fix}")
    try:
        mg.load_motion_guidance(model.transformer, folder)
    except (OSError, RuntimeError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"adapters in {folder} could not be read ({type(e).__name__}: {e}); {fix}") from e
    model.prior_gate = nn.Parameter(gate.clone(), requires_grad=False)
    model.correction_gate = (nn.Parameter(gates["correction_gate"].clone(), requires_grad=False)
                             if "correction_gate" in gates else None)
    model.gate_head = head
    model.blend_head = blend
    model.fusion_head = fusion
    model.prior_kind = kind


def latent_guidance_of(guidance, *, strength: float | None = None, latent: bool = True, feature: bool = True):
    """The plugin's :class:`~motionguide.latent.LatentGuidance` for the embedded model (latents = pixels in
    [-1, 1]); ``latent=False`` zeroes the latent level, ``feature=False`` drops the flows."""
    import motionguide as mg
    from .latent import LatentGuidance

    lg = mg.latent_guidance(guidance.with_latents(guidance.frames * 2 - 1), vae=pixel_vae(), strength=strength)
    if not latent:
        lg = LatentGuidance(torch.zeros_like(lg.latents), torch.zeros_like(lg.mask), lg.sources, lg.flows, lg.weights, lg.strength)
    if not feature:
        lg = LatentGuidance(lg.latents, lg.mask, strength=lg.strength)
    return lg


#: how the reference clip follows the guidance. "warp" (session 2): toward the whole flow-only warp
#: (:func:`flow_only`, every pixel, the first source where the blend weights vanish); "masked" (session 1's
#: adapters): toward the plugin's latent guidance times its mask, so partly guided pixels stayed between the
#: static frame and the warp (0.85 dB below the warp on held-out transfer clips).
PRIOR_KINDS = ("warp", "masked")


def guided_reference(model: EmbeddedVideoModel, static: torch.Tensor, lg, strength: float,
                     warp: torch.Tensor | None = None, *, maps: tuple | None = None) -> torch.Tensor:
    """The reference clip moved toward the guidance by the learned gate ``g = strength * gate``:
    ``static + g * (warp - static)`` (``model.prior_kind == "warp"``) or
    ``static + g * mask * (latents - static)`` (``"masked"``).

    The gate (see :func:`gate_maps`) is one scalar (session 1-2 adapters), one per pixel's
    :func:`trust_levels` (no source sees it, one does, two or more agree: session 3), or that plus the
    per-pixel correction of a :class:`GateHead` (session 4). Where sources see the pixel the warp is usually
    right and the reference should be all warp, where none does the warp is a border smear and the static
    frame may be the better start, and an in-between blended from two sources is more reliable than a
    one-sided extrapolation.

    static: ``(B, 3, T, H, W)`` in [-1, 1]; lg: LatentGuidance on the same grid; warp: the flow-only clip in
    [-1, 1] (``flow_only(guidance) * 2 - 1``), needed for ``"warp"`` (and for a gate head); maps: the
    :func:`gate_maps` of this call when the caller already has them (the correction scale needs them too).
    """
    if getattr(model, "prior_gate", None) is None:
        return static
    g = (maps if maps is not None else gate_maps(model, static, lg, warp))[0] * float(strength)
    if getattr(model, "prior_kind", "masked") == "warp":
        if warp is None:
            raise ValueError("this adapter's reference follows the flow-only warp: pass warp=flow_only(guidance) * 2 - 1")
        return static + g * (warp.to(static) - static)
    return static + g * lg.mask.to(static) * (lg.latents.to(static) - static)


def correction_scale(model: EmbeddedVideoModel, lg, strength: float, static: torch.Tensor | None = None,
                     warp: torch.Tensor | None = None, *, maps: tuple | None = None) -> torch.Tensor | None:
    """``1 - strength * c`` ``(B, 1, T, H, W)``: the factor on the network's correction of the reference, with
    ``c`` the learned correction gate (0 at initialisation: no change) from :func:`gate_maps` (session-2
    adapters: one ``c`` times the guidance's confidence ``mask``). Why: the tiny network's corrections carry
    4x4-patch noise; where the flow is right the warp alone is better, so training learns how much to damp
    them there, and leaves disocclusions free. None when the adapters have no correction gate (session 1's).
    static / warp / maps: as for :func:`guided_reference` (static and warp are needed when the model has a
    :class:`GateHead` and no maps are given)."""
    if getattr(model, "correction_gate", None) is None:
        return None
    return 1.0 - float(strength) * (maps if maps is not None else gate_maps(model, static, lg, warp))[1]


class GateHead(nn.Module):
    """Per-pixel corrections of the two per-trust-level gates, from what the guidance shows about a pixel.

    Why: one gate per trust level must compromise between pixels where the warp is nearly exact (flat
    texture, content a pixel past the border that border padding repeats well, frames next to their
    source) and pixels where it is wrong (motion boundaries, wide holes, far extrapolations): on held-out
    extension clips the level-wise gates left the model 0.1 dB below plain warping (23.33 vs 23.43 dB, six
    clips, estimated flow), while an oracle choosing per pixel between the two scores 23.77. A few 3x3
    convolutions per frame over the warp, the static frame, their difference, the trust level, whether the
    sample falls outside the source frame, the flow and the distance in frames to the source see those
    cues. The last layer starts at zero: a fresh head
    leaves the level-wise gates exactly as they were.

    Input: :func:`gate_features` ``(B, IN_CHANNELS, T, H, W)``; output ``(B, 2, T, H, W)``: additions to the
    reference gate and the correction gate (in the units of ``PRIOR_SCALE * gate``).
    """

    IN_CHANNELS = 3 + 3 + 1 + TRUST_LEVELS + 1 + 2 + 1

    def __init__(self, hidden: int = 24):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(self.IN_CHANNELS, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, 2, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = feats.shape
        if c != self.IN_CHANNELS:
            raise ValueError(f"GateHead expects {self.IN_CHANNELS} feature channels (gate_features), got {c}")
        y = self.net(feats.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, 2, h, w).transpose(1, 2)


def gate_features(static: torch.Tensor, warp: torch.Tensor, lg, levels: torch.Tensor | None = None) -> torch.Tensor:
    """The :class:`GateHead`'s inputs ``(B, GateHead.IN_CHANNELS, T, H, W)``: warp and static clip ([-1, 1]),
    their mean absolute difference, the trust level one-hot, whether the first source's sample falls outside
    its frame (border padding repeats the edge there), that source's flow / 8 and the distance in frames
    from the target to it / T (0 where no source). levels: :func:`trust_levels` when the caller has them."""
    b, _, t, h, w = static.shape
    levels = (trust_levels(lg) if levels is None else levels).to(static.device)  # (B, 1, T, H, W)
    onehot = torch.zeros(b, TRUST_LEVELS, t, h, w, dtype=static.dtype, device=static.device)
    onehot.scatter_(1, levels, 1.0)
    flow = static.new_zeros(b, 2, t, h, w)
    outside = static.new_zeros(b, 1, t, h, w)
    dist = static.new_zeros(b, 1, t, h, w)
    if lg.flows is not None:
        for k in range(t):
            first = next(((j, int(x)) for j, x in enumerate(lg.sources[k].tolist()) if int(x) >= 0), None)
            if first is None:
                continue
            f = lg.flows[:, k, first[0]].to(static)
            flow[:, :, k] = f / 8.0
            outside[:, :, k] = _outside(f)
            dist[:, :, k] = abs(k - first[1]) / t
    diff = (warp - static).abs().mean(1, keepdim=True)
    return torch.cat([warp, static, diff, onehot, outside, flow, dist], 1)


def _outside(flow: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)``: 1 where the backward flow ``(B, 2, H, W)`` samples outside the source frame (border
    padding repeats the edge there)."""
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    x, y = xs + flow[:, 0], ys + flow[:, 1]
    return ((x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)).to(flow.dtype)[:, None]


class _PixelHead(nn.Module):
    """Four 3x3 convolutions (the second dilated) from ``IN_CHANNELS`` per-pixel features to one logit per
    pixel; the last layer starts at zero, so a fresh head changes nothing. Subclasses set ``IN_CHANNELS``
    and ``FEATURES`` (the function that builds their input)."""

    IN_CHANNELS = 0
    FEATURES = ""

    def __init__(self, hidden: int = 24):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(self.IN_CHANNELS, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim != 4 or feats.shape[1] != self.IN_CHANNELS:
            raise ValueError(f"{type(self).__name__} expects (N, {self.IN_CHANNELS}, H, W) features ({self.FEATURES}), "
                             f"got {tuple(feats.shape)}")
        return self.net(feats)


class BlendHead(_PixelHead):
    """A learned per-pixel blend of the two warped sources of an in-between frame (speed, keyframes).

    Why: flow-only warping blends the two sources with fixed weights (time, and the holes flow reversal
    leaves); where the estimated flow of one side is wrong (motion boundaries, fast or thin objects, content
    at the border) the blend shows both versions. Which side is right shows in the two warps themselves
    (they disagree there), in their flows and in which sample falls outside its frame: on held-out speed
    clips with DIS flow (seeds 100-123), a per-pixel oracle choosing between the two warps scores 36.4 dB
    against the fixed blend's 34.1; this head, trained on the blended warp alone (``motionguide train
    blend``), scores 35.2 (the ``learned_blend`` line of ``python benchmarks/motion.py --clips 24 --seed
    100``). MoG's interpolation network predicts the same kind of mask M.

    Input: :func:`blend_features` ``(N, IN_CHANNELS, H, W)``; output ``(N, 1, H, W)``: a correction of the
    logit of source 0's weight. The last layer starts at zero: a fresh head blends exactly as
    :func:`flow_only` does.
    """

    IN_CHANNELS = 3 + 3 + 1 + 2 + 4 + 2
    FEATURES = "blend_features"

    def blend(self, warps: torch.Tensor, weights: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """The blended frame ``(N, 3, H, W)`` from two sources: ``warps (N, 2, 3, H, W)`` in [0, 1] (each
        source warped to the target), ``weights (N, 2, 1, H, W)`` the guidance's blend weights, ``flows
        (N, 2, 2, H, W)`` the backward flows to the sources. Where both weights are positive source 0 gets
        ``sigmoid(log w0 - log w1 + head)``; elsewhere the weights stay as they are (the first source alone
        where both vanish, as :func:`flow_only`)."""
        w0, w1 = weights[:, 0], weights[:, 1]
        both = (w0 > 0) & (w1 > 0)
        logit = torch.log(w0.clamp(min=1e-4)) - torch.log(w1.clamp(min=1e-4))
        a = torch.sigmoid(logit + self(blend_features(warps, weights, flows)))
        fixed = torch.where(w0 + w1 > 1e-6, w0 / (w0 + w1).clamp(min=1e-6), torch.ones_like(w0))  # as flow_only
        a = torch.where(both, a, fixed)
        return a * warps[:, 0] + (1 - a) * warps[:, 1]


def blend_features(warps: torch.Tensor, weights: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """The :class:`BlendHead`'s inputs ``(N, BlendHead.IN_CHANNELS, H, W)``: both warps (in [-1, 1]), how much
    they disagree (mean absolute difference x 4), both blend weights, both flows / 8 and whether each sample
    falls outside its source frame. Shapes as :meth:`BlendHead.blend`."""
    wc = warps.clamp(0, 1)
    diff = (wc[:, 0] - wc[:, 1]).abs().mean(1, keepdim=True) * 4
    return torch.cat([wc[:, 0] * 2 - 1, wc[:, 1] * 2 - 1, diff, weights[:, 0], weights[:, 1], flows[:, 0] / 8.0,
                      flows[:, 1] / 8.0, _outside(flows[:, 0]), _outside(flows[:, 1])], 1)


class FusionHead(_PixelHead):
    """A learned per-pixel fusion of the network's output with the warp on continuation frames (generated
    frames after the last known one: extension, reference motion).

    Why: the :class:`GateHead` decides how much to trust the warp before the network runs; this head sees
    the output itself and where it strays from the warp without reason (its errors there show as a
    difference to a warp whose source is in frame and trusted) pulls it back, per pixel:
    ``fused = out + strength * (1 - a) * (warp - out)`` with ``a = sigmoid(head + 4)`` (a fresh head keeps
    98 % of the output; strength 0 keeps it all, so strength 0 is still exactly unguided). Trained alone on
    the model's own outputs (``motionguide train fusion``). With it, extend with estimated flow scores
    +0.09 / +0.06 dB per clip above plain warping (``python benchmarks/motion.py --clips 24 [--seed 100]``);
    without it, +0.046 / -0.015 (scratch, docs/README_embedded.md).

    Input: :func:`fusion_features` ``(N, IN_CHANNELS, H, W)``; output ``(N, 1, H, W)``: the logit of the
    output's share, before the +4 start.
    """

    IN_CHANNELS = 3 + 3 + 3 + 1 + 1 + 2 + 1
    FEATURES = "fusion_features"
    START = 4.0

    def fuse(self, out: torch.Tensor, warp: torch.Tensor, weight: torch.Tensor, flow: torch.Tensor,
             ahead: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """The fused frame ``(N, 3, H, W)`` in [0, 1]: ``out``, ``warp`` ``(N, 3, H, W)`` in [0, 1] (the
        network's frame and the warp it was guided by), ``weight (N, 1, H, W)`` the guidance's summed source
        weight, ``flow (N, 2, H, W)`` the first source's backward flow, ``ahead (N,)`` frames since the last
        known frame."""
        a = torch.sigmoid(self(fusion_features(out, warp, weight, flow, ahead)) + self.START)
        return (out + float(strength) * (1 - a) * (warp - out)).clamp(0, 1)


def fusion_features(out: torch.Tensor, warp: torch.Tensor, weight: torch.Tensor, flow: torch.Tensor,
                    ahead: torch.Tensor) -> torch.Tensor:
    """The :class:`FusionHead`'s inputs ``(N, FusionHead.IN_CHANNELS, H, W)``: output and warp (in [-1, 1]),
    their difference x 4, the source weight, whether the first source's sample falls outside its frame, its
    flow / 8, and the frames since the last known one / 4. Shapes as :meth:`FusionHead.fuse`."""
    o, f = out.clamp(0, 1), warp.clamp(0, 1)
    dist = (ahead.to(o) / 4.0).view(-1, 1, 1, 1).expand_as(weight)
    return torch.cat([o * 2 - 1, f * 2 - 1, (o - f) * 4, weight, _outside(flow), flow / 8.0, dist], 1)


def continuation_frames(guidance) -> list[tuple[int, int]]:
    """``[(t, frames since the last known frame)]`` for the generated frames after the last known frame that
    have a source (the frames the :class:`FusionHead` fuses)."""
    known = [p for p in guidance.positions if p is not None]
    last = max(known)
    return [(t, t - last) for t in range(last + 1, guidance.num_frames)
            if t not in known and bool((guidance.sources[t] >= 0).any())]


def fusion_inputs(guidance, out: torch.Tensor, warp: torch.Tensor) -> tuple[list[int], tuple[torch.Tensor, ...]]:
    """``(frames, (out, warp, weight, flow, ahead))`` of the continuation frames of a clip ``out`` and its
    warp ``warp`` (both ``(B, 3, T, H, W)`` in [0, 1]), stacked over frames and batch as
    :meth:`FusionHead.fuse` takes them."""
    cont = continuation_frames(guidance)
    if not cont:
        return [], ()
    b = out.shape[0]
    cols = [(out[:, :, t], warp[:, :, t], guidance.weights[:, t].sum(1), guidance.flows[:, t, 0],
             torch.full((b,), float(d))) for t, d in cont]
    return [t for t, _ in cont], tuple(torch.cat(x).to(out) for x in zip(*cols))


def fuse_continuation(model: EmbeddedVideoModel, guidance, out: torch.Tensor, strength: float,
                      warp: torch.Tensor | None = None) -> torch.Tensor:
    """``out (B, 3, T, H, W)`` with its continuation frames fused with the warp by ``model.fusion_head``
    (unchanged without one). warp: the call's :func:`flow_only` clip in [0, 1] when the caller has it
    (computing it again costs about 12 % of a clip's generation)."""
    head = getattr(model, "fusion_head", None)
    if head is None:
        return out
    with torch.no_grad():
        if warp is None:
            warp = flow_only(guidance, getattr(model, "blend_head", None))
        warp = warp.to(out)
        frames, x = fusion_inputs(guidance, out, warp)
        if not frames:
            return out
        p = next(head.parameters())
        fused = head.fuse(*(v.to(p) for v in x), strength=strength).to(out)
        res = out.clone()
        b = out.shape[0]
        for i, t in enumerate(frames):
            res[:, :, t] = fused[i * b:(i + 1) * b]
    return res


def source_warps(guidance, t: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``[(warped (B, 3, H, W), weight (B, 1, H, W), flow (B, 2, H, W))]`` for each source of output frame
    ``t`` of a Guidance, in source order (border padding)."""
    from flow.warp import backward_warp

    out = []
    for k in range(guidance.sources.shape[1]):
        s = int(guidance.sources[t, k])
        if s >= 0:
            flow = guidance.flows[:, t, k]
            out.append((backward_warp(guidance.frames[:, :, s], flow), guidance.weights[:, t, k], flow))
    return out


def gate_maps(model: EmbeddedVideoModel, static: torch.Tensor | None, lg,
              warp: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(reference gate, correction gate)``, each ``(B, 1, T, H, W)`` (or broadcastable), in units of
    ``PRIOR_SCALE * gate`` before the strength: the per-trust-level gates looked up per pixel plus the
    :class:`GateHead`'s per-pixel corrections when the model has one (then ``static`` and ``warp`` are
    needed). Scalar gates (session-2 adapters): the reference gate as it is and the correction gate times
    the guidance's mask."""
    mask = lg.mask
    levels = trust_levels(lg).to(mask.device)

    def per_level(v: torch.Tensor, scalar_mask: bool) -> torch.Tensor:
        v = v.to(mask)
        if v.numel() > 1:
            return PRIOR_SCALE * v[levels]
        return PRIOR_SCALE * v * (mask if scalar_mask else 1.0)

    ref = per_level(model.prior_gate, False)
    c = getattr(model, "correction_gate", None)
    corr = per_level(c, True) if c is not None else None
    head = getattr(model, "gate_head", None)
    if head is not None:
        if static is None or warp is None:
            raise ValueError("this model's gates have a per-pixel head: pass static= (the static reference) and "
                             "warp= (flow_only(guidance) * 2 - 1)")
        d = head(gate_features(static.to(mask), warp.to(mask), lg, levels))
        ref = ref + d[:, :1]
        corr = corr + d[:, 1:] if corr is not None else None
    return ref, corr


def trust_levels(lg) -> torch.Tensor:
    """``(B, 1, F, h, w)`` long: how many sources guide each cell with a real weight (> 0.05), capped at 2:
    0 = none (disoccluded, out of frame: the model invents), 1 = one source (transfer, extension),
    2 = two or more blended (in-betweens). Without per-source weights (the latent level alone) it falls
    back to the mask: 1 where it is above 0.5."""
    if lg.weights is None:
        return (lg.mask > 0.5).long()
    n = (lg.weights > 0.05).sum(2)  # (B, F, 1, h, w)
    return n.permute(0, 2, 1, 3, 4).clamp(max=TRUST_LEVELS - 1).long()


def known_of(guidance) -> tuple[torch.Tensor, torch.Tensor]:
    """``(known_frames (B, 3, T, H, W) in [0, 1], known (B, T) bool)`` from a Guidance's placed frames."""
    b, _, _, h, w = guidance.frames.shape
    t = guidance.num_frames
    kf = guidance.frames.new_zeros(b, 3, t, h, w)
    known = torch.zeros(b, t, dtype=torch.bool)
    for i, p in enumerate(guidance.positions):
        if p is not None:
            kf[:, :, p] = guidance.frames[:, :, i]
            known[:, p] = True
    if not bool(known.any()):
        raise ValueError("guidance places no known frame in the clip; the embedded model needs at least one")
    return kf, known


def flow_only(guidance, blend: BlendHead | None = None) -> torch.Tensor:
    """Plain warping without the model ``(B, 3, T, H, W)`` in [0, 1]: each target frame is the weighted blend
    of its warped sources (border padding), the first source alone where the weights vanish.

    blend: a trained :class:`BlendHead` (the adapters' ``model.blend_head``) blends frames with two sources
    per pixel instead of with the guidance's fixed weights; None (the flow-only baseline) keeps them.
    """
    kf, known = known_of(guidance)
    out = kf.clone()
    for t in range(guidance.num_frames):
        if bool(known[0, t]):
            continue
        srcs = source_warps(guidance, t)
        if not srcs:  # no source at all: hold the nearest known frame
            out[:, :, t] = kf[:, :, int(torch.nonzero(known[0, : t + 1])[-1])]
            continue
        if blend is not None and len(srcs) == 2:
            warps, weights, flows = (torch.stack(x, 1) for x in zip(*srcs))
            out[:, :, t] = blend.blend(warps.to(kf), weights.to(kf), flows.to(kf))
            continue
        acc = sum(wt * warped for warped, wt, _ in srcs)
        wsum = sum(wt for _, wt, _ in srcs)
        out[:, :, t] = torch.where(wsum > 1e-6, acc / wsum.clamp(min=1e-6), srcs[0][0])
    return out.clamp(0, 1)


def guided_reference_and_scale(model: EmbeddedVideoModel, guidance, lg, static: torch.Tensor,
                               strength: float) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(reference, correction scale, warp)`` of one guided call, as generation and adapter training both
    need them: the warp when the adapters use it (:func:`flow_only` in [0, 1], through their learned
    :class:`BlendHead` when they have one; no gradient: the blend trains alone; None when unused), the
    :func:`gate_maps` once, then :func:`guided_reference` and :func:`correction_scale`. static: the static
    reference ``(B, 3, T, H, W)`` in [-1, 1]."""
    need_warp = getattr(model, "prior_kind", "masked") == "warp" or getattr(model, "gate_head", None) is not None
    warp01 = warp = None
    if need_warp:
        with torch.no_grad():
            warp01 = flow_only(guidance, getattr(model, "blend_head", None))
            warp = (warp01 * 2 - 1).to(static)
    maps = gate_maps(model, static, lg, warp)
    return (guided_reference(model, static, lg, strength, warp, maps=maps),
            correction_scale(model, lg, strength, maps=maps), warp01)


def generate_guided(
    model: EmbeddedVideoModel,
    guidance,
    *,
    mode: str = "both",
    strength: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    start: float = GUIDED_START,
) -> torch.Tensor:
    """Generate the clip a :class:`~motionguide.guidance.Guidance` describes ``(B, 3, T, H, W)`` in [0, 1].

    start: with the latent level on (``latent``/``both``), sampling starts from the guided reference noised
    to ``t = 1 - strength * (1 - start)`` (SDEdit-style; 1 = from pure noise). ``python benchmarks/motion.py
    --start S`` (6 held-out clips per job, session-2 adapters, estimated flow): PSNR rises as the
    start goes down, 0.6 -> 0.3 -> 0.1: transfer 19.30 / 20.00 / 20.46 dB, speed 28.86 / 29.47 / 30.24,
    extend 21.46 / 21.81 / 22.21: the network's corrections cost more than they gain where the warp is
    right, so the default starts low (0.1). With the session-3 adapters, trained from exactly that start
    over t in [0.05, 0.3], the choice hardly matters: ``--start 0.3`` gives 21.14 / 33.61 / 23.32 dB against
    21.15 / 33.62 / 23.33 at 0.1. Strength 0 gives t = 1: exactly the unguided sampler.

    mode: ``unguided`` (the base model), ``latent`` / ``feature`` / ``both`` (trained adapters with one or
    both levels; needs :func:`attach_adapters`/:func:`load_adapters`), ``training_free`` (needs a model with
    a ``training_free`` adapter), ``flow_only`` (warping alone). ``strength`` defaults to the guidance's.
    """
    import motionguide as mg

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    from .guidance import check_strength

    s = check_strength(guidance.strength if strength is None else strength)
    cfg = model.config
    if (guidance.num_frames, *guidance.size) != (cfg.num_frames, cfg.height, cfg.width):
        raise ValueError(
            f"guidance is {guidance.num_frames} frames of {guidance.size[0]}x{guidance.size[1]}, the model makes "
            f"{cfg.num_frames} frames of {cfg.height}x{cfg.width}; the jobs window and resize for you"
        )
    if mode == "flow_only":
        return flow_only(guidance)
    kf, known = known_of(guidance)
    adapter = getattr(model.transformer, "motion_guidance", None)
    if mode == "unguided":
        if adapter is not None:
            mg.set_guidance(model.transformer, None)
        set_lora_scale(model, 0.0)
        return model.generate(kf, known, steps=steps, seed=seed, progress=progress)
    if adapter is None:
        raise ValueError(f"mode {mode!r} needs motion-guidance adapters on the model (attach_adapters/load_adapters)")
    want = "training_free" if mode == "training_free" else "trained"
    if adapter.config.mode != want:
        raise ValueError(f"mode {mode!r} needs a {want} adapter, the model carries a {adapter.config.mode} one")
    lg = latent_guidance_of(guidance, strength=s, latent=mode in ("latent", "both"),
                            feature=mode in ("feature", "both", "training_free"))
    p = next(model.transformer.parameters())
    lg = lg.to(p.device, p.dtype)
    callback = None
    ref = None
    out_scale = None
    warp = None
    if mode == "training_free":
        set_lora_scale(model, 0.0)
        lo, hi = adapter.config.pull_steps
        n = int(steps or cfg.steps)
        g = torch.Generator().manual_seed(int(seed) + 1)
        noise = torch.randn(lg.latents.shape, generator=g).to(p)
        target, mask = lg.latents, lg.mask

        def callback(i, t_next, x):  # the plugin's LatentPull rule on our own Euler sampler
            if s == 0 or not (lo <= i / n < hi) or t_next <= 0:
                return None
            renoised = (1 - t_next) * target + t_next * noise
            return x + s * mask * (renoised - x)
    else:
        set_lora_scale(model, s)
        if mode in ("latent", "both"):
            kn = known.to(p.device)
            static = EmbeddedVideoModel.reference((kf.to(p) * 2 - 1) * kn[:, None, :, None, None], kn)  # as generate's
            ref, out_scale, warp = guided_reference_and_scale(model, guidance, lg, static, s)
    t_start = 1.0 - s * (1.0 - float(start)) if mode in ("latent", "both") else 1.0
    try:
        mg.set_guidance(model.transformer, lg)
        out = model.generate(kf, known, steps=steps, seed=seed, ref=ref, out_scale=out_scale, callback=callback,
                             progress=progress, t_start=t_start)
        return fuse_continuation(model, guidance, out, s, warp) if mode == "both" else out
    finally:
        mg.set_guidance(model.transformer, None)
        set_lora_scale(model, 1.0)
