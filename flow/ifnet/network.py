"""The IFNet base class: the inference driver shared by every version.

What it does around the network of a version (:mod:`flow.ifnet.v3`, :mod:`flow.ifnet.v4`): checks the frames
and times, zero-pads the frames right/bottom to the multiple the reference drivers use, runs the version's
padded pass, crops, and averages with the frames flipped in both axes for test-time augmentation.

Flow convention (the project's, :mod:`flow.warp`): ``flow_t0`` (B, 2, H, W) pixels, ch0 = dx right, ch1 = dy
down; the frame at t is sampled from frame0 at ``x + flow_t0(x)``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_frames, check_same_size, check_times
from ..rife_weights import RifeCheckpoint

__all__ = ["IFNet", "VERSIONS", "SCALES"]

VERSIONS = ("v3.6", "v4.25")
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # the reference drivers' allowed `scale` values (sizes stay integral)

# version -> the IFNet subclass that implements it (filled by IFNet.__init_subclass__).
_ARCHITECTURES: dict[str, type] = {}


class IFNet(nn.Module):
    """RIFE-compatible intermediate-flow network (base class; build with :func:`load_ifnet` or :meth:`random`).

    Attributes:
        version: ``"v3.6"`` or ``"v4.25"``.
        supports_arbitrary_t: False for v3.6 (t = 0.5 per pass; other t by recursive bisection).
        supports_spread: True for v3.6: ``intermediate(..., spread=True)`` also says where it is unsure.
        checkpoint: the registry entry (:class:`~flow.rife_weights.RifeCheckpoint`) of the loaded file, if known.
        source: path of the loaded file (None for random init).
        max_batch: at most this many (frame pair, t) items go through the network in one batch.
    """

    version: str = ""
    supports_arbitrary_t: bool = False
    supports_spread: bool = False
    pad_base: int = 32
    block_scales: tuple[float, ...] = ()

    def __init__(self):
        super().__init__()
        self.checkpoint: RifeCheckpoint | None = None
        self.source: Path | None = None
        self.max_batch = 8

    # -- construction ------------------------------------------------------------------------------------

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.version:  # each version's subclass registers itself for build()
            _ARCHITECTURES[cls.version] = cls

    @staticmethod
    def build(version: str) -> "IFNet":
        """An uninitialised-weights network of ``version`` (PyTorch default init)."""
        if version not in _ARCHITECTURES:
            raise ValueError(f"unknown IFNet version {version!r}; expected one of {VERSIONS}")
        return _ARCHITECTURES[version]()

    @classmethod
    def random(cls, version: str, *, seed: int = 0, device="cpu", dtype: torch.dtype = torch.float32) -> "IFNet":
        """A randomly initialised network (deterministic in ``seed``) for shape tests; no checkpoint needed."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cls.build(version)
        return net.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def warp_dtype(self) -> torch.dtype:
        """Frames, flows, warps and blending stay float32 under a float16/bfloat16 model: half-precision pixel
        coordinates are 1 px apart beyond x = 1024, so only the convolutions run in the low precision."""
        return torch.float32 if self.dtype in (torch.float16, torch.bfloat16) else self.dtype

    def pad_multiple(self, scale: float = 1.0) -> int:
        """Frames are zero-padded (right/bottom) to a multiple of this, as the reference drivers do."""
        return max(self.pad_base, int(self.pad_base / scale))

    def extra_repr(self) -> str:
        return f"version={self.version!r}, source={str(self.source) if self.source else None!r}"

    # -- the raw network on padded tensors ---------------------------------------------------------------

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor | None = None, *, scale: float = 1.0,
                warp_frames: bool = True):
        """Run the network on padded frames.

        Args:
            img0, img1: (N, 3, H, W) float RGB in [0, 1], H and W multiples of :meth:`pad_multiple` (zero-pad
                right/bottom as the reference drivers; the public methods below do it for you).
            t: (N,) times in (0, 1) (v4.25; ignored and must be None or all 0.5 for v3.6).
            scale: processing scale (0.5 for 4K: the blocks see half-size frames).
            warp_frames: also return both frames warped to t (the last warp; skip it for flows only).

        Returns:
            ``(flow, mask_logit, warped)``: flow (N, 4, H, W) pixels, channels [dx_t0, dy_t0, dx_t1, dy_t1];
            mask_logit (N, 1, H, W) (sigmoid gives frame0's weight); warped (2N, 3, H, W) = [frame0 at t;
            frame1 at t] or None.
        """
        raise NotImplementedError

    def _check_scale(self, scale: float) -> float:
        scale = float(scale)
        if scale not in SCALES:
            raise ValueError(f"scale: expected one of {SCALES} (as the RIFE drivers; 0.5 for 4K), got {scale}")
        return scale

    # -- public API on frames of any size -----------------------------------------------------------------

    def _prepare(self, frame0, frame1):
        check_frames(frame0, "frame0", channels=(3,))
        check_frames(frame1, "frame1", channels=(3,))
        check_same_size(frame0, frame1)
        for name, f in (("frame0", frame0), ("frame1", frame1)):
            if not f.is_floating_point():
                raise TypeError(
                    f"{name}: expected float RGB in [0, 1], got dtype {f.dtype}; convert at the edge with "
                    "flow.checks.to_float_frames (uint8 / 255)"
                )
        hi = float(torch.maximum(frame0.amax(), frame1.amax()))
        if not math.isfinite(hi) or hi > 1.5:
            raise ValueError(
                f"frames: expected values in [0, 1], got max {hi:g}; divide 0..255 images by 255 "
                "(flow.checks.to_float_frames) and replace NaN/inf"
            )
        return frame0.to(self.device, self.warp_dtype), frame1.to(self.device, self.warp_dtype)

    def _pad(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        m = self.pad_multiple(scale)
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        return F.pad(x, (0, pw, 0, ph)) if ph or pw else x

    @torch.no_grad()
    def intermediate(self, frame0: torch.Tensor, frame1: torch.Tensor, ts: Sequence[float], *, scale: float = 1.0,
                     spread: bool = False):
        """Intermediate flows and blend masks for each time in ``ts``.

        Args:
            frame0, frame1: (B, 3, H, W) float RGB in [0, 1], any H, W (padded internally, outputs cropped).
            ts: times in (0, 1); all are batched through the network at once (v4.25).
            scale: 0.25 .. 4; use 0.5 for 4K input (coarser flow, faster).
            spread: v3.6 only: also return, per t, ``spread`` (B, 1, H, W) pixels: half the distance between the
                finest block's flow estimates from the two frame orders (v3.6 runs every block on both), at
                the t = 0.5 pass between the two frames; large where the network is unsure. Free: no extra pass.

        Returns:
            One ``(flow_t0, flow_t1, mask)`` (with ``spread``: ``(flow_t0, flow_t1, mask, spread)``) per t:
            flow_t0, flow_t1 (B, 2, H, W) float pixels (backward flows: frame t is frame0 sampled at
            ``x + flow_t0(x)``), mask (B, 1, H, W) in [0, 1], frame0's blend weight.
            For v3.6 and t != 0.5 the flows are composed along the bisection chain (see README_ifnet.md).
        """
        ts = check_times(ts)
        scale = self._check_scale(scale)
        out_dtype, out_device = frame0.dtype, frame0.device
        f0, f1 = self._prepare(frame0, frame1)
        h, w = f0.shape[-2:]
        p0, p1 = self._pad(f0, scale), self._pad(f1, scale)
        crop = lambda x: x[..., :h, :w].to(out_device, out_dtype)  # noqa: E731
        if spread:
            if not self.supports_spread:
                raise ValueError(f"spread=True: IFNet {self.version} runs each block once, so it has no second "
                                 "estimate to compare (v3.6 has)")
            results = self._intermediate_padded(p0, p1, ts, scale, spread=True)
            return [(crop(fl[:, :2]), crop(fl[:, 2:4]), crop(m), crop(sp)) for fl, m, sp in results]
        results = self._intermediate_padded(p0, p1, ts, scale)
        return [(crop(fl[:, :2]), crop(fl[:, 2:4]), crop(m)) for fl, m in results]

    @torch.no_grad()
    def interpolate(self, frame0: torch.Tensor, frame1: torch.Tensor, ts: Sequence[float], *, scale: float = 1.0,
                    tta: bool = False):
        """Frames at each time in ``ts``: both frames warped by the intermediate flows, blended by the mask.

        Args:
            frame0, frame1: (B, 3, H, W) float RGB in [0, 1], any size.
            ts: times in (0, 1). v3.6 reaches t != 0.5 by recursive bisection (stopping within 0.01 of t, at
                most 8 levels: the reference ``inference_img.py --ratio`` rule); v4.25 runs each t directly.
            scale: see :meth:`intermediate`.
            tta: test-time augmentation: also run on the frames flipped in both axes and average (2x cost).

        Returns:
            One (B, 3, H, W) frame per t, clamped to [0, 1], in frame0's dtype and device.
        """
        ts = check_times(ts)
        scale = self._check_scale(scale)
        out_dtype, out_device = frame0.dtype, frame0.device
        f0, f1 = self._prepare(frame0, frame1)
        outs = self._interpolate_unpadded(f0, f1, ts, scale)
        if tta:
            flipped = self._interpolate_unpadded(f0.flip(2, 3), f1.flip(2, 3), ts, scale)
            outs = [(a + b.flip(2, 3)) * 0.5 for a, b in zip(outs, flipped)]
        return [o.clamp_(0.0, 1.0).to(out_device, out_dtype) for o in outs]

    def _interpolate_unpadded(self, f0, f1, ts, scale):
        h, w = f0.shape[-2:]
        p0, p1 = self._pad(f0, scale), self._pad(f1, scale)
        return [o[..., :h, :w] for o in self._interpolate_padded(p0, p1, ts, scale)]

    # Implemented per version: lists aligned with ts; masks are frame0's weight in [0, 1].
    def _intermediate_padded(self, p0, p1, ts, scale) -> list[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def _interpolate_padded(self, p0, p1, ts, scale) -> list[torch.Tensor]:
        raise NotImplementedError
