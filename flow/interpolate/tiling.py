"""Frames larger than memory allows, in overlapping tiles: :class:`TiledInterpolator`.

The intermediate flows and masks of each tile are blended across the overlaps with linear ramps; the frame is
then synthesised from the whole frames, so a motion that crosses a tile border still finds its pixels. The
flows are in pixels, so a tile's flow is the frame's flow there: only motion reaching past the overlap into a
neighbour's content is lost at the tile borders. Size-dependent choices of the inner interpolator (IFNet's
``scale="auto"``, dis's work size) are those of the whole frame, not of a tile.
"""
from __future__ import annotations

import torch

from .base import Intermediate, Interpolator

__all__ = ["TiledInterpolator", "tile_starts"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``size`` with at least ``overlap`` shared pixels;
    the last tile ends at the edge.

    >>> tile_starts(1000, 512, 64), tile_starts(400, 512, 64), tile_starts(1024, 512, 0)
    ([0, 244, 488], [0], [0, 512])
    """
    if size <= tile:
        return [0]
    step = tile - overlap
    n = -(-(size - overlap) // step)  # tiles needed
    return [round(i * (size - tile) / (n - 1)) for i in range(n)]


def _ramp(length: int, lo_fade: int, hi_fade: int, device) -> torch.Tensor:
    """1 inside, rising linearly over the first ``lo_fade`` and falling over the last ``hi_fade`` samples."""
    r = torch.ones(length, device=device)
    if lo_fade:
        r[:lo_fade] = torch.arange(1, lo_fade + 1, device=device) / (lo_fade + 1)
    if hi_fade:
        r[length - hi_fade:] = torch.arange(hi_fade, 0, -1, device=device) / (hi_fade + 1)
    return r


class TiledInterpolator(Interpolator):
    """Run ``inner`` on overlapping tiles of at most ``tile`` x ``tile`` pixels.

    Args:
        inner: any :class:`Interpolator`.
        tile: the tile side in pixels (at least 64).
        overlap: pixels shared by neighbouring tiles (default ``tile // 8``), blended with linear ramps.

    Memory of the network part is that of one tile; the blended flows and masks (5 channels per t) and the
    synthesis stay at the frame's size (``flow.interpolate.memory`` counts both).
    """

    def __init__(self, inner: Interpolator, tile: int = 1024, overlap: int | None = None):
        if not isinstance(inner, Interpolator):
            raise TypeError(f"inner: expected an Interpolator, got {type(inner).__name__}")
        tile = int(tile)
        if tile < 64:
            raise ValueError(f"tile: expected at least 64 pixels, got {tile}")
        overlap = tile // 8 if overlap is None else int(overlap)
        if not 0 <= overlap <= tile // 2:
            raise ValueError(f"overlap: expected 0 .. {tile // 2} pixels (half a tile), got {overlap}")
        self.inner, self.tile, self.overlap = inner, tile, overlap
        self.name = inner.name

    @property
    def description(self) -> str:
        return f"{self.inner.description}, tiles of {self.tile} px (overlap {self.overlap})"

    def fixed_for(self, h: int, w: int) -> Interpolator:
        return self

    def _intermediate(self, f0, f1, ts):
        b, _, h, w = f0.shape
        inner = self.inner.fixed_for(h, w)
        if h <= self.tile and w <= self.tile:
            return inner._intermediate(f0, f1, ts)
        acc = [torch.zeros(b, 5, h, w, device=f0.device) for _ in ts]
        total = torch.zeros(1, 1, h, w, device=f0.device)
        ys, xs = tile_starts(h, self.tile, self.overlap), tile_starts(w, self.tile, self.overlap)
        for iy, y in enumerate(ys):
            th = min(self.tile, h)
            for ix, x in enumerate(xs):
                tw = min(self.tile, w)
                # Fade only where a neighbour overlaps; the frame's own borders keep full weight.
                fy = _ramp(th, ys[iy - 1] + th - y if iy else 0, y + th - ys[iy + 1] if iy + 1 < len(ys) else 0, f0.device)
                fx = _ramp(tw, xs[ix - 1] + tw - x if ix else 0, x + tw - xs[ix + 1] if ix + 1 < len(xs) else 0, f0.device)
                wgt = (fy[:, None] * fx[None, :])[None, None]
                res = inner._intermediate(f0[..., y:y + th, x:x + tw], f1[..., y:y + th, x:x + tw], ts)
                for a, r in zip(acc, res):
                    a[..., y:y + th, x:x + tw] += torch.cat([v.float() for v in r], 1) * wgt
                total[..., y:y + th, x:x + tw] += wgt
                del res
        out = []
        for a in acc:
            a /= total
            out.append(Intermediate(a[:, 0:2], a[:, 2:4], a[:, 4:5]))
        return out
