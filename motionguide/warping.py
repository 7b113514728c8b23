"""Flow-based synthesis from a :class:`~motionguide.guidance.Guidance`: every target frame is its sources
backward-warped by the guidance flows and blended by the guidance weights, at whatever resolution the
guidance is. It is the flow-only baseline of every job, the warp that guided generation starts from, and
the input of the per-pixel confidence (:mod:`motionguide.compositing`).

Shapes: clips ``(B, 3, T, H, W)`` float in [0, 1]; flows in pixels, the convention of :mod:`flow.warp`.
"""
from __future__ import annotations

import torch

from flow.warp import backward_warp

__all__ = ["source_warps", "known_of", "flow_only"]


def source_warps(guidance, t: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``[(warped (B, 3, H, W), weight (B, 1, H, W), flow (B, 2, H, W))]`` for each source of output frame
    ``t`` of a Guidance, in source order (border padding)."""
    out = []
    for k in range(guidance.sources.shape[1]):
        s = int(guidance.sources[t, k])
        if s >= 0:
            flow = guidance.flows[:, t, k]
            out.append((backward_warp(guidance.frames[:, :, s], flow), guidance.weights[:, t, k], flow))
    return out


def known_of(guidance) -> tuple[torch.Tensor, torch.Tensor]:
    """``(known_frames (B, 3, T, H, W) in [0, 1], known (B, T) bool)`` from a Guidance's placed frames."""
    b, _, _, h, w = guidance.frames.shape
    t = guidance.num_frames
    kf = guidance.frames.new_zeros(b, 3, t, h, w)
    known = torch.zeros(b, t, dtype=torch.bool)
    for i, p in enumerate(guidance.positions):
        if p is not None:
            kf[:, :, p] = guidance.frames[:, :, i]
            known[:, p] = True
    if not bool(known.any()):
        raise ValueError("guidance places no known frame in the clip; the embedded model needs at least one")
    return kf, known


def flow_only(guidance) -> torch.Tensor:
    """Plain warping without the model ``(B, 3, T, H, W)`` in [0, 1]: each target frame is the weighted blend
    of its warped sources (border padding), the first source alone where the weights vanish."""
    kf, known = known_of(guidance)
    out = kf.clone()
    for t in range(guidance.num_frames):
        if bool(known[0, t]):
            continue
        srcs = source_warps(guidance, t)
        if not srcs:  # no source at all: hold the nearest known frame
            out[:, :, t] = kf[:, :, int(torch.nonzero(known[0, : t + 1])[-1])]
            continue
        acc = sum(wt * warped for warped, wt, _ in srcs)
        wsum = sum(wt for _, wt, _ in srcs)
        out[:, :, t] = torch.where(wsum > 1e-6, acc / wsum.clamp(min=1e-6), srcs[0][0])
    return out.clamp(0, 1)
