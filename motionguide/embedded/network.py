"""The embedded base model: a small image-to-video diffusion transformer the project trains and ships.

* **Class**: a real ``diffusers.WanTransformer3DModel`` with a tiny config, so the guidance plugin's Wan
  path (patch embedding, blocks, hooks) runs exactly as on a pretrained Wan.
* **Latent space = pixels** in [-1, 1]: no autoencoder to train, and "warped source latents" are exactly
  "warped source frames".
* **Image-to-video conditioning as Wan I2V does it**: the model input is the noisy clip (3 channels)
  concatenated on channels with a per-frame *known* mask (1) and the known frames (3, zeros where unknown).
  Training draws which frames are known (always the first; sometimes the last, or the first 2-4 frames),
  so one model does generation from a first frame, in-betweening and continuation.
* **Flow matching like Wan**: ``x_t = (1 - t) x_0 + t * noise``, velocity ``noise - x_0``, timesteps drawn
  logit-normal and shifted, an Euler sampler from t = 1 to 0 on a shifted schedule.
* **x0 predicted as a correction on top of a reference clip**: the transformer's output is ``x_0 - ref``,
  where ``ref`` is the nearest known frame (static) for the base model; motion guidance moves ``ref``
  toward the warp (:mod:`motionguide.embedded.generation`), so copying the warp costs the model nothing and
  its capacity goes to corrections and disocclusions. The loss is the velocity loss
  ``v = (x_t - x0_hat) / t`` with ``t`` clamped away from 0 (x-prediction with a v-loss, as JiT).

Shapes (kornia style): clips are ``(B, 3, T, H, W)`` float in [0, 1] at the API; ``known``: ``(B, T)`` bool.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from diffusers import WanTransformer3DModel

__all__ = ["EmbeddedConfig", "EmbeddedVideoModel", "build_transformer", "check_clip"]


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
    t_min: float = 0.05  # clamp of t in the velocity loss (it divides by t)

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
        if not 0 < self.t_min < 1:
            raise ValueError(f"t_min must be in (0, 1), got {self.t_min}")
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


def check_clip(x: torch.Tensor, name: str, cfg: EmbeddedConfig | None = None) -> None:
    """Raise ValueError unless ``x`` is a clip ``(B, 3, T, H, W)``, of the model's T, H, W when ``cfg`` is given."""
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
        gates: the adapters' per-trust-level gates, or None.
    """

    def __init__(self, config: EmbeddedConfig | None = None, transformer: nn.Module | None = None):
        super().__init__()
        self.config = config or EmbeddedConfig()
        self.transformer = transformer if transformer is not None else build_transformer(self.config)
        # The "text" of the text-conditioned Wan blocks: a single zero token. Cross-attention to it adds a
        # learned constant; kept so the class stays the stock Wan (no text encoder is shipped).
        self.register_buffer("_text", torch.zeros(1, 1, self.config.text_dim), persistent=False)
        #: the guidance gates (:class:`~motionguide.embedded.adapters.GuidanceGates`) once trained
        #: adapters are attached or loaded; None on the base model
        self.gates: nn.Module | None = None

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
        return ref + out

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
        ref: torch.Tensor | None = None, t_max: float = 1.0,
        out_scale: torch.Tensor | None = None, noised: torch.Tensor | None = None,
        t_range: tuple[float, float] | None = None, frame_psnr: bool = False,
    ) -> torch.Tensor:
        """Flow-matching velocity loss on a clip ``(B, 3, T, H, W)`` in [0, 1]; known ``(B, T)`` bool.

        ref: optional reference clip in [-1, 1] (guided training passes the gated warp).
        t_max: timesteps are drawn as usual, then scaled into ``[0, t_max]`` (adapter training passes
        a bound for most batches, since guided sampling starts low).
        out_scale: optional factor on the network's correction (guided training passes the correction scale).
        noised: optional clip in [-1, 1] that ``x_t`` is made from instead of the true one, with ``t`` drawn
        uniformly in ``t_range``: "train as you sample". Guided sampling starts from the guided reference
        noised to a low time (SDEdit-style), not from a noised true clip, so adapter training passes the
        reference here for part of its batches and the network learns to turn that start into the true clip
        (as diffusion restorers trained from the degraded input do, e.g. ResShift, Yue et al. 2023).
        frame_psnr: the loss is the mean over unknown frames of ``log(MSE)`` of ``x0_hat`` (minus PSNR up to
        a factor, the "PSNR loss" of image restorers such as NAFNet) instead of the velocity loss: every frame
        counts by its relative error, as per-frame PSNR counts it, so easy frames (next to a known one) are
        not spoiled to gain on hard ones.
        """
        check_clip(clip, "clip", self.config)
        # batches are rendered on the CPU; the model may train on an accelerator
        dev = next(self.transformer.parameters()).device
        x0 = clip.to(dev) * 2 - 1
        known = known.to(dev)
        ref, out_scale = (None if x is None else x.to(x0) for x in (ref, out_scale))
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
        # velocity loss with x0 prediction (as JiT, Li & He 2025): v = (x_t - x0) / t, t clamped
        tc = tt.clamp(min=self.config.t_min)
        return ((((x_t - x0_hat) - (x_t - x0)) / tc) ** 2).mean()

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
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample a clip ``(B, 3, T, H, W)`` in [0, 1] with known frames kept exactly.

        t_start < 1 starts from the reference clip (or ``init``, in [-1, 1]) noised to ``t_start``
        (SDEdit-style) and runs only the schedule's steps below it; 1 is ordinary sampling from pure noise.

        known_frames: ``(B, 3, T, H, W)`` in [0, 1] (values at unknown frames are ignored);
        known: ``(B, T)`` bool; steps: Euler steps (default ``config.steps``); seed: the noise seed.
        ref / ref_fn: the reference clip in [-1, 1] (or a function of the static reference giving it).
        out_scale: optional ``(B, 1, T, H, W)`` factor on the network's correction (guided sampling).
        callback(i, t_next, x) may return a replacement for the latents after step ``i`` (training-free
        guidance does this, like diffusers' ``callback_on_step_end``). progress(i) is called after each step.
        """
        check_clip(known_frames, "known_frames", self.config)
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
            x = (1 - ts[0]) * (ref if init is None else init.to(ref)) + ts[0] * x
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
