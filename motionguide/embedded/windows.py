"""Cutting a job's guidance into the embedded model's windows.

A job builds one :class:`~motionguide.guidance.Guidance` for its whole output at the input's resolution;
its :meth:`~motionguide.guidance.Guidance.resized` fits it to the model's size, and :func:`generate_windows`
generates it window by window of the model's length: a window starts just before the first frame still missing, so its first
frames are known (input frames or frames the previous window generated) and the rest is generated under
the guidance. Frames that are real input frames are kept exactly.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..warping import flow_only
from .generation import generate_guided
from .network import EmbeddedVideoModel

__all__ = ["generate_windows", "count_windows"]


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
    (:func:`~motionguide.embedded.generation.generate_guided`); None: each window's own warp at ``g``'s grid
    (:func:`~motionguide.warping.flow_only`, made once per window).
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
        wg = g.window(w0, win, generated)
        kw = {} if start is None else {"start": start}
        ww = flow_only(wg)  # the window's own warp: known frames and frames past the end as it has them
        if warp is not None and mode != "flow_only":
            known_w = {p for p in wg.positions if p is not None}
            for j in range(win):
                if w0 + j < t_out and j not in known_w:
                    ww[:, :, j] = warp[:, :, w0 + j]
        out = generate_guided(model, wg, warp=ww, mode=mode, strength=strength, steps=steps, seed=seed + 1000 * n,
                              progress=progress, latent_from_warp=warp is not None, **kw) if mode != "flow_only" else ww
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
