"""Flow visualisation: Middlebury colour wheel and side-by-side PNG strips.

* :func:`flow_to_color`: ``(B, 2, H, W)`` flow -> ``(B, 3, H, W)`` float RGB in [0, 1] (hue = direction,
  saturation = magnitude), through ``torchvision.utils.flow_to_image`` (Baker et al.'s Middlebury wheel).
* :func:`save_strip`: rows of frames, flows and masks, tiled in columns into one PNG (optional row and column
  labels), written atomically.

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


#: grey of the line drawn around each tile (when the gap leaves room for it)
OUTLINE = 0.6


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)  # Pillow's bundled scalable font (FreeType builds)
    except (TypeError, OSError, ValueError):
        return ImageFont.load_default()  # the fixed bitmap font otherwise


def _annotate(img: torch.Tensor, row_y: list, row_h: list, col_x: list, col_w: list, labels, col_labels,
              gap: int) -> torch.Tensor:
    """``img`` with ``labels`` written left of each row and ``col_labels`` above each column (black on white)."""
    from PIL import Image, ImageDraw

    px = max(12, min(48, round(min(row_h) * 0.1)))
    font = _font(px)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = lambda s: measure.textbbox((0, 0), s, font=font)[2]  # noqa: E731
    left = max((width(s) for s in labels or [] if s), default=0)
    left = left + 2 * gap + px // 2 if left else 0
    top = px + 2 * gap if col_labels and any(col_labels) else 0
    arr = (img.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    canvas = Image.new("RGB", (arr.shape[1] + left, arr.shape[0] + top), "white")
    canvas.paste(Image.fromarray(arr), (left, top))
    draw = ImageDraw.Draw(canvas)
    for y, h, s in zip(row_y, row_h, labels or []):
        if s:
            draw.text((gap, top + y + h // 2), s, fill="black", font=font, anchor="lm")
    for x, w, s in zip(col_x, col_w, col_labels or []):
        if s:
            draw.text((left + x + w // 2, gap), s, fill="black", font=font, anchor="mt")
    out = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(canvas.height, canvas.width, 3)
    return out.permute(2, 0, 1).float() / 255


def make_strip(rows: Sequence[Sequence[torch.Tensor | None]], *, gap: int = 4, max_flow: float | None = None,
               labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None) -> torch.Tensor:
    """Tile ``rows`` (lists of frames ``(3, H, W)``, flows ``(2, H, W)``, masks ``(1, H, W)``) into one image.

    Tiles sit in columns: tile ``j`` of every row starts at the same x (columns as wide as their widest
    tile), rows are stacked; ``None`` leaves its slot empty (white), so a row can skip the columns it has
    nothing for. Tiles of different sizes are top-left aligned on a white background, separated by ``gap``
    white pixels, each outlined in grey when ``gap >= 2``. labels: one text per row, written left of it;
    col_labels: one text per column, written above it (Pillow's default font, sized to the rows).
    Returns ``(3, H_total, W_total)`` float [0, 1].
    """
    if isinstance(rows, torch.Tensor) or not rows or any(isinstance(r, torch.Tensor) for r in rows):
        raise ValueError("save_strip: expected rows as a list of lists of tensors, e.g. [[frame0, frame1, flow]]")
    tiles = [[None if t is None else _to_tile(t, max_flow) for t in r] for r in rows]
    if any(all(t is None for t in r) for r in tiles):
        raise ValueError("save_strip: every row needs at least one tile")
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"save_strip: expected one label per row ({len(rows)}), got {len(labels)}")
    n_col = max(len(r) for r in tiles)
    if col_labels is not None and len(col_labels) != n_col:
        raise ValueError(f"save_strip: expected one column label per column ({n_col}), got {len(col_labels)}")
    col_w = [max((r[j].shape[2] for r in tiles if j < len(r) and r[j] is not None), default=0) for j in range(n_col)]
    row_h = [max(t.shape[1] for t in r if t is not None) for r in tiles]
    col_x = [sum(col_w[:j]) + gap * j for j in range(n_col)]
    row_y = [sum(row_h[:i]) + gap * i for i in range(len(rows))]
    used = [j for j in range(n_col) if col_w[j]]
    out = torch.ones(3, row_y[-1] + row_h[-1], col_x[used[-1]] + col_w[used[-1]])
    for r, y in zip(tiles, row_y):
        for t, x in zip(r, col_x):
            if t is None:
                continue
            if gap >= 2:  # a grey outline in the gap, so white tiles (no motion, full confidence) still show
                th, tw = t.shape[1:]
                out[:, max(0, y - 1) : y + th + 1, max(0, x - 1) : x + tw + 1] = OUTLINE
            out[:, y : y + t.shape[1], x : x + t.shape[2]] = t
    if labels is not None or col_labels is not None:
        out = _annotate(out, row_y, row_h, col_x, col_w, labels, col_labels, gap)
    return out


def save_strip(
    path: str | os.PathLike, rows: Sequence[Sequence[torch.Tensor | None]], *, gap: int = 4,
    max_flow: float | None = None, labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None
) -> None:
    """Write :func:`make_strip` of ``rows`` as an image (PNG recommended), atomically.

    Example: ``save_strip("pair.png", [[frame0, frame1, flow01]], labels=["pair"])``.
    """
    from .io import write_image

    write_image(path, make_strip(rows, gap=gap, max_flow=max_flow, labels=labels, col_labels=col_labels))
