"""Peak memory of one interpolation call, estimated before the work, and the check that refuses what won't fit.

:func:`estimate_bytes` gives the peak resident memory of a process that interpolates ``n_t`` frames between
two ``h x w`` frames on the CPU with a given interpolator: a fixed part (Python, torch, OpenCV, a loaded
network) plus bytes per pixel for each part of the work, measured with ``python benchmarks/memory_retime.py``
(peak RSS of a fresh process per size; the figures below are those measurements rounded up).
:func:`check_memory` raises :class:`MemoryLimitError` when the estimate is above the limit, naming the limit
and the network scale or tile size that fits.
"""
from __future__ import annotations

import copy
import math

from ..limits import DEFAULT_LIMIT_GB, GB, MemoryLimitError
from .base import Interpolator
from .from_flow import FlowInterpolator
from .fusion import ConfidenceFusion, FusionInterpolator
from .ifnet_adapter import IFNetInterpolator
from .tiling import TiledInterpolator

__all__ = ["DEFAULT_LIMIT_GB", "MemoryLimitError", "check_memory", "estimate_bytes", "with_settings"]


# Measured peak RSS (benchmarks/memory_retime.py), rounded up. Process with torch, OpenCV and a network loaded:
_BASE = 800 * 2 ** 20
# IFNet v3.6 / v4.25, bytes per input pixel: full-size tensors (frames, flows, warps) + network activations,
# which scale with (network scale)^2 per item of a network batch (measured 4K: scale 1 515 B/px, 0.5 285 B/px;
# 720p 610, 1080p 570 B/px at scale 1, with the dis fallback of the default backend).
_IFNET_FULL, _IFNET_NET = 200, 420
_PER_EXTRA_T = 160  # each further t of one call: its frame, flows, mask and splats at full size
_FLOW_FULL, _FLOW_WORK = 150, 600  # dis/farneback: full-size synthesis + work-size flow (x work scale^2)
_TILE_FULL = 130  # tiled: blended flows and masks, weights and the synthesis at the frame's size
_UNKNOWN = 1000  # another Interpolator: a conservative guess


def _items(interp: IFNetInterpolator, h: int, w: int, n_t: int) -> int:
    """Items per network batch: 1 for one t = 0.5 (or any single t of v4.25), else the batch bound."""
    if n_t == 1:
        return 1
    return min(interp.batch_items(h, w), n_t if interp.net.supports_arbitrary_t else max(1, n_t - 1))


def _working(interp: Interpolator, h: int, w: int, n_t: int) -> float:
    p = h * w
    if isinstance(interp, TiledInterpolator):
        inner = interp.inner.fixed_for(h, w)
        th, tw = min(interp.tile, h), min(interp.tile, w)
        return _working(inner, th, tw, n_t) + p * (_TILE_FULL + 20 * n_t)
    if isinstance(interp, ConfidenceFusion):
        return _working(interp.network, h, w, n_t) + _working(interp.fallback, h, w, n_t) * 0.5
    if isinstance(interp, FusionInterpolator):
        return sum(_working(m, h, w, n_t) for m in interp.members)
    if isinstance(interp, IFNetInterpolator):
        s = interp.scale_for(h, w)
        return p * (_IFNET_FULL + _IFNET_NET * s * s * _items(interp, h, w, n_t) + _PER_EXTRA_T * (n_t - 1))
    if isinstance(interp, FlowInterpolator):
        k = interp.work_scale(h, w)
        return p * (_FLOW_FULL + _FLOW_WORK * k * k + 40 * (n_t - 1))
    return p * _UNKNOWN * n_t


def estimate_bytes(interp: Interpolator, h: int, w: int, n_t: int = 1, *, tta: bool = False) -> int:
    """Estimated peak resident memory (bytes) of a process interpolating ``n_t`` frames between two
    ``h x w`` frames with ``interp`` (``tta``: the flipped pass runs after the first, whose frames it keeps).

    >>> from flow.interpolate import get_interpolator
    >>> round(estimate_bytes(get_interpolator("dis"), 720, 1280) / 2 ** 20)
    990
    """
    extra = 12 * n_t * h * w if tta else 0
    return int(_BASE + _working(interp, h, w, max(1, int(n_t))) + extra)


def with_settings(interp: Interpolator, *, scale: float | None = None, tile: int | None = None) -> Interpolator:
    """A copy of ``interp`` with its network scale set (every IFNet inside it) and/or run in tiles."""
    if scale is not None:
        interp = _with_scale(interp, scale)
    return TiledInterpolator(interp, tile) if tile else interp


def _with_scale(interp, scale):
    if isinstance(interp, TiledInterpolator):
        return TiledInterpolator(_with_scale(interp.inner, scale), interp.tile, interp.overlap)
    if isinstance(interp, ConfidenceFusion):
        return ConfidenceFusion(_with_scale(interp.network, scale), interp.fallback)
    if isinstance(interp, FusionInterpolator):
        return FusionInterpolator([_with_scale(m, scale) for m in interp.members], interp.weights)
    if isinstance(interp, IFNetInterpolator):
        out = copy.copy(interp)
        out.scale = float(scale)
        return out
    return interp


def _has_ifnet(interp) -> bool:
    if isinstance(interp, TiledInterpolator):
        return _has_ifnet(interp.inner)
    if isinstance(interp, ConfidenceFusion):
        return True
    if isinstance(interp, FusionInterpolator):
        return any(_has_ifnet(m) for m in interp.members)
    return isinstance(interp, IFNetInterpolator)


def _network_scale(interp, h, w) -> float | None:
    if isinstance(interp, TiledInterpolator):
        return _network_scale(interp.inner, h, w)
    if isinstance(interp, ConfidenceFusion):
        return interp.network.scale_for(h, w)
    if isinstance(interp, FusionInterpolator):
        return next((s for s in (_network_scale(m, h, w) for m in interp.members) if s is not None), None)
    return interp.scale_for(h, w) if isinstance(interp, IFNetInterpolator) else None


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def check_memory(interp: Interpolator, h: int, w: int, *, n_t: int = 1, tta: bool = False,
                 limit_gb: float = DEFAULT_LIMIT_GB, scale_option: str = "scale", tile_option: str = "tile",
                 limit_option: str = "limit_gb") -> int:
    """Raise :class:`MemoryLimitError` when :func:`estimate_bytes` is above ``limit_gb``; else return it.

    The message names the limit (``limit_option``) and the first setting that fits: a coarser network scale
    (``scale_option``, 0.5 then 0.25, for IFNet backends), else tiles (``tile_option``: 2048, 1024, 512 px).
    The option names let a command line name its own flags.
    """
    if not (isinstance(limit_gb, (int, float)) and math.isfinite(limit_gb) and limit_gb > 0):
        raise ValueError(f"{limit_option}: expected a positive number of GB, got {limit_gb!r}")
    need = estimate_bytes(interp, h, w, n_t, tta=tta)
    limit = limit_gb * GB
    if need <= limit:
        return need
    what = f"{interp.name}"
    scale = _network_scale(interp, h, w)
    if scale is not None:
        what += f" at network scale {scale:g}"
    tile = getattr(interp, "tile", None)
    if tile:
        what += f" in tiles of {tile} px"
    tries = []
    if _has_ifnet(interp) and scale is not None:
        tries += [(f"{scale_option} {s:g}", with_settings(interp, scale=s)) for s in (0.5, 0.25) if s < scale]
    base = interp.inner if isinstance(interp, TiledInterpolator) else interp
    tries += [(f"{tile_option} {t}", TiledInterpolator(base, t)) for t in (2048, 1024, 512)
              if t < max(h, w) and (not tile or t < tile)]
    fits = [(name, est) for name, est in ((n, estimate_bytes(i, h, w, n_t, tta=tta)) for n, i in tries) if est <= limit]
    head = (f"frames of {w}x{h} (WxH) need about {_gb(need)} with {what}, above the memory limit of "
            f"{limit_gb:g} GB ({limit_option} {limit_gb:g})")
    if fits:
        name, est = fits[0]
        raise MemoryLimitError(f"{head}; {name} fits (about {_gb(est)}), or raise {limit_option}")
    smallest = min((estimate_bytes(i, h, w, n_t, tta=tta) for _, i in tries), default=need)
    raise MemoryLimitError(f"{head}; even the smallest setting needs about {_gb(smallest)}: raise {limit_option} "
                           "or use smaller frames")
