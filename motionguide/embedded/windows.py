"""Cutting a job's guidance into the embedded model's windows, and fitting guidance to another grid.

A job builds one :class:`~motionguide.guidance.Guidance` for its whole output at the input's resolution;
:func:`resize_guidance` fits it to the model's size, and :func:`generate_windows` generates it window by
window of the model's length: a window starts just before the first frame still missing, so its first
frames are known (input frames or frames the previous window generated) and the rest is generated under
the guidance. Frames that are real input frames are kept exactly.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from flow.warp import resize_flow

from ..guidance import Guidance
from .generation import flow_only, generate_guided
from .network import EmbeddedVideoModel

__all__ = ["resize_guidance", "resize_clip", "window", "generate_windows", "count_windows"]


def resize_guidance(g, size: tuple[int, int]):
    """The same Guidance at another pixel size: frames area-resized, flows resized with their magnitudes
    rescaled (:func:`flow.warp.resize_flow`), weights area-averaged."""
    h, w = size
    if tuple(g.size) == (h, w):
        return g
    b, _, n, hh, ww = g.frames.shape
    t, k = g.flows.shape[1:3]
    mode = "area" if h <= hh and w <= ww else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    frames = resize_clip(g.frames, size)
    flows = resize_flow(g.flows.reshape(b * t * k, 2, hh, ww), (h, w)).reshape(b, t, k, 2, h, w)
    weights = F.interpolate(g.weights.reshape(b * t * k, 1, hh, ww), size=(h, w), mode=mode, **kw)
    weights = weights.reshape(b, t, k, 1, h, w).clamp(0, 1)
    tot = weights.sum(2, keepdim=True)
    weights = torch.where(tot > 1, weights / tot.clamp(min=1e-6), weights)
    return Guidance(frames, g.positions, g.num_frames, g.sources, flows, weights, g.motion_scale, g.strength)


def resize_clip(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, T, H, W)`` frames at another size: area when shrinking, bilinear when enlarging, in [0, 1]."""
    b, c, t, hh, ww = x.shape
    h, w = size
    if (hh, ww) == (h, w):
        return x
    mode = "area" if h <= hh and w <= ww else "bilinear"
    y = F.interpolate(x.transpose(1, 2).reshape(b * t, c, hh, ww), size=(h, w), mode=mode,
                      **({} if mode == "area" else {"align_corners": False}))
    return y.reshape(b, t, c, h, w).transpose(1, 2).clamp(0, 1)


def window(g, start: int, length: int, generated: dict[int, torch.Tensor]):
    """The part of ``g`` for output frames ``start .. start+length-1`` (frames past the end are free),
    with frames generated so far (``generated[t]: (B, 3, H, W)``) known."""
    frames = [g.frames[:, :, i] for i in range(g.frames.shape[2])]
    positions: list = [p - start if p is not None and start <= p < start + length else None for p in g.positions]
    for t in sorted(generated):
        if start <= t < start + length and (t - start) not in positions:
            frames.append(generated[t])
            positions.append(t - start)
    b, _, _, h, w = g.frames.shape
    k = g.sources.shape[1]
    sources = torch.full((length, k), -1, dtype=torch.long)
    flows = g.flows.new_zeros(b, length, k, 2, h, w)
    weights = g.flows.new_zeros(b, length, k, 1, h, w)
    for j in range(length):
        t = start + j
        if j in positions:
            sources[j, 0] = positions.index(j)
            weights[:, j, 0] = 1.0
        elif t < g.num_frames:
            sources[j] = g.sources[t]
            flows[:, j] = g.flows[:, t]
            weights[:, j] = g.weights[:, t]
    return Guidance(torch.stack(frames, 2), tuple(positions), length, sources, flows, weights, g.motion_scale, g.strength)


def generate_windows(
    model: EmbeddedVideoModel | None,
    g,
    *,
    mode: str = "both",
    strength: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    context: int = 2,
    progress: Callable[[int], None] | None = None,
    start: float | None = None,
    warp: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate every frame of Guidance ``g`` (batch B, any length) window by window: ``(B, 3, T, H, W)``.

    ``start``: where guided sampling starts (:func:`~motionguide.embedded.generation.generate_guided`;
    None = its default).

    ``mode='flow_only'`` needs no model (warping alone). ``context``: known frames kept before the first
    missing frame of each window. ``warp``: ``(B, 3, T, H, W)``, the guidance's flow-based synthesis made at a
    higher resolution and downscaled to ``g``'s, for the frames each window generates
    (:func:`~motionguide.embedded.generation.generate_guided`); None: each window warps at ``g``'s grid.
    """
    if warp is not None and tuple(warp.shape) != (g.frames.shape[0], 3, g.num_frames, *g.size):
        raise ValueError(f"warp: expected {(g.frames.shape[0], 3, g.num_frames, *g.size)} (B, 3, T, H, W), got "
                         f"{tuple(warp.shape)}")
    t_out = g.num_frames
    win = model.config.num_frames if model is not None else max(t_out, 1)
    have = {p for p in g.positions if p is not None}
    if 0 not in have:
        raise ValueError("the first output frame must be known (an input frame); got a guidance without it")
    generated: dict[int, torch.Tensor] = {}
    n = 0
    while True:
        missing = [t for t in range(t_out) if t not in have]
        if not missing:
            break
        first = missing[0]
        w0 = max(0, min(first - min(first, context), t_out - win))  # the window's first frame
        wg = window(g, w0, win, generated)
        kw = {} if start is None else {"start": start}
        if warp is not None and mode != "flow_only":
            ww = flow_only(wg)  # known frames and frames past the end as the window's own warp has them
            known_w = {p for p in wg.positions if p is not None}
            for j in range(win):
                if w0 + j < t_out and j not in known_w:
                    ww[:, :, j] = warp[:, :, w0 + j]
            kw["warp"] = ww
        out = generate_guided(model, wg, mode=mode, strength=strength, steps=steps, seed=seed + 1000 * n,
                              progress=progress, **kw) if mode != "flow_only" else flow_only(wg)
        for j in range(win):
            t = w0 + j
            if t < t_out and t not in have:
                generated[t] = out[:, :, j]
                have.add(t)
        n += 1
    b, _, _, h, w = g.frames.shape
    clip = g.frames.new_zeros(b, 3, t_out, h, w)
    for i, p in enumerate(g.positions):
        if p is not None:
            clip[:, :, p] = g.frames[:, :, i]
    for t, f in generated.items():
        clip[:, :, t] = f
    return clip


def count_windows(g, win: int, context: int = 2) -> int:
    """How many windows :func:`generate_windows` runs for ``g`` (for progress bars)."""
    have = {p for p in g.positions if p is not None}
    n = 0
    while True:
        missing = [t for t in range(g.num_frames) if t not in have]
        if not missing:
            return n
        first = missing[0]
        start = max(0, min(first - min(first, context), g.num_frames - win))
        have |= set(range(start, min(start + win, g.num_frames)))
        n += 1
