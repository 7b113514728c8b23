"""Flow visualisation: Middlebury colour wheel and side-by-side PNG strips.

* :func:`flow_to_color`: ``(B, 2, H, W)`` flow -> ``(B, 3, H, W)`` float RGB in [0, 1] (hue = direction,
  saturation = magnitude), through ``torchvision.utils.flow_to_image`` (Baker et al.'s Middlebury wheel).
* :func:`save_strip`: rows of frames, flows and masks, tiled into one PNG, written atomically.

>>> f = torch.zeros(1, 2, 2, 2); f[:, 0] = 1.0
>>> c = flow_to_color(f)
>>> tuple(c.shape), bool((c >= 0).all() and (c <= 1).all())
((1, 3, 2, 2), True)
"""
from __future__ import annotations

import os
from typing import Sequence

import torch

from .checks import check_flow

__all__ = ["flow_to_color", "save_strip", "make_strip"]


def flow_to_color(flow: torch.Tensor, *, max_flow: float | None = None) -> torch.Tensor:
    """Colour-code a flow with the Middlebury wheel.

    Args:
        flow: ``(B, 2, H, W)`` float, pixels, channel 0 = dx, channel 1 = dy. ``(2, H, W)`` also accepted.
        max_flow: magnitude shown at full saturation. ``None``: each image is scaled by its own largest
            motion (the usual display). Give a number to compare several flows on one scale; larger
            motions are clipped to it.

    Returns:
        ``(B, 3, H, W)`` float32 RGB in [0, 1] (``(3, H, W)`` for unbatched input), on the input's device.
    """
    from torchvision.utils import flow_to_image

    unbatched = isinstance(flow, torch.Tensor) and flow.ndim == 3
    f = flow[None] if unbatched else flow
    check_flow(f)
    f = f.float()
    if max_flow is not None:
        if not max_flow > 0:
            raise ValueError(f"max_flow: expected a positive number of pixels, got {max_flow}")
        mag = f.pow(2).sum(1, keepdim=True).sqrt()
        f = f * (max_flow / mag.clamp_min(max_flow))  # clip magnitudes to max_flow, keep directions
        # flow_to_image normalises by the largest magnitude it sees; one extra column holding a vector of
        # exactly max_flow pins that normaliser, and is cropped away afterwards.
        pin = torch.zeros_like(f[..., :1])
        pin[:, 0] = max_flow
        f = torch.cat((f, pin), dim=-1)
    # torchvision normalises by the batch maximum: colour each image on its own (or pinned) scale.
    out = torch.cat([flow_to_image(fi[None]) for fi in f]).float().div_(255.0)
    if max_flow is not None:
        out = out[..., :-1]
    return out[0] if unbatched else out


def _to_tile(item: torch.Tensor, max_flow: float | None) -> torch.Tensor:
    """One strip tile as (3, H, W) float [0, 1]: frames pass, flows are colour-coded, masks are grey."""
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"save_strip: expected tensors in rows, got {type(item).__name__}")
    t = item.detach().cpu()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"save_strip: expected one image per tile, got a batch of shape {tuple(t.shape)}")
        t = t[0]
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ValueError(f"save_strip: expected (C, H, W) tiles, got shape {tuple(item.shape)}")
    c = t.shape[0]
    if c == 2:
        return flow_to_color(t.float(), max_flow=max_flow)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    t = t.float()
    if c == 1:
        return t.clamp(0, 1).expand(3, -1, -1)
    if c == 3:
        return t.clamp(0, 1)
    if c == 4:
        return t[:3].clamp(0, 1)
    raise ValueError(
        f"save_strip: a tile must have 3 channels (frame), 2 (flow) or 1 (mask), got shape {tuple(item.shape)}"
    )


def make_strip(rows: Sequence[Sequence[torch.Tensor]], *, gap: int = 4, max_flow: float | None = None) -> torch.Tensor:
    """Tile ``rows`` (lists of frames ``(3, H, W)``, flows ``(2, H, W)``, masks ``(1, H, W)``) into one image.

    Tiles in a row sit side by side; rows are stacked. Tiles of different sizes are top-left aligned on a
    white background, separated by ``gap`` white pixels. Returns ``(3, H_total, W_total)`` float [0, 1].
    """
    if isinstance(rows, torch.Tensor) or not rows or any(isinstance(r, torch.Tensor) for r in rows):
        raise ValueError("save_strip: expected rows as a list of lists of tensors, e.g. [[frame0, frame1, flow]]")
    tiles = [[_to_tile(t, max_flow) for t in r] for r in rows]
    if any(len(r) == 0 for r in tiles):
        raise ValueError("save_strip: every row needs at least one tile")
    row_h = [max(t.shape[1] for t in r) for r in tiles]
    row_w = [sum(t.shape[2] for t in r) + gap * (len(r) - 1) for r in tiles]
    out = torch.ones(3, sum(row_h) + gap * (len(rows) - 1), max(row_w))
    y = 0
    for r, h in zip(tiles, row_h):
        x = 0
        for t in r:
            out[:, y : y + t.shape[1], x : x + t.shape[2]] = t
            x += t.shape[2] + gap
        y += h + gap
    return out


def save_strip(
    path: str | os.PathLike, rows: Sequence[Sequence[torch.Tensor]], *, gap: int = 4, max_flow: float | None = None
) -> None:
    """Write :func:`make_strip` of ``rows`` as an image (PNG recommended), atomically.

    Example: ``save_strip("pair.png", [[frame0, frame1, flow01]])``.
    """
    from .io import write_image

    write_image(path, make_strip(rows, gap=gap, max_flow=max_flow))
