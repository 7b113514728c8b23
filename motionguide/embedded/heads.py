"""The adapters' per-pixel head: where to trust the warp. :class:`GateHead` is a few convolutions whose
last layer starts at zero, so a fresh head changes nothing; it trains with the adapters
(:mod:`motionguide.embedded.recipes`). Its effect on real footage is a row of ``benchmarks/ablation.py``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["TRUST_LEVELS", "GateHead", "gate_features", "outside_mask", "trust_levels"]

#: the per-pixel trust levels of the guidance (see :func:`trust_levels`)
TRUST_LEVELS = 3


def trust_levels(lg) -> torch.Tensor:
    """``(B, 1, F, h, w)`` long: how many sources guide each cell of a LatentGuidance ``lg`` with a real
    weight (> 0.05), capped at 2: 0 = none (disoccluded, out of frame: the model invents), 1 = one source
    (transfer, extension), 2 = two or more blended (in-betweens). Without per-source weights (the latent
    level alone) it falls back to the mask: 1 where it is above 0.5."""
    if lg.weights is None:
        return (lg.mask > 0.5).long()
    n = (lg.weights > 0.05).sum(2)  # (B, F, 1, h, w)
    return n.permute(0, 2, 1, 3, 4).clamp(max=TRUST_LEVELS - 1).long()


class GateHead(nn.Module):
    """Per-pixel corrections of the two per-trust-level gates, from what the guidance shows about a pixel.

    Why: one gate per trust level compromises between pixels where the warp is nearly exact (flat texture,
    content just past the border, frames next to their source) and pixels where it is wrong (motion
    boundaries, wide holes, far extrapolations). A few 3x3 convolutions per frame over the warp, the static
    frame, their difference, the trust level, whether the sample falls outside the source frame, the flow
    and the distance in frames to the source see those cues. The last layer starts at zero: a fresh head
    leaves the level-wise gates exactly as they were.

    Input: :func:`gate_features` ``(B, IN_CHANNELS, T, H, W)``; output ``(B, 2, T, H, W)``: additions to the
    reference gate and the correction gate (in the units of ``GATE_SCALE * gate``).
    """

    IN_CHANNELS = 3 + 3 + 1 + TRUST_LEVELS + 1 + 2 + 1

    def __init__(self, hidden: int = 24):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(self.IN_CHANNELS, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, 2, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = feats.shape
        if c != self.IN_CHANNELS:
            raise ValueError(f"GateHead expects {self.IN_CHANNELS} feature channels (gate_features), got {c}")
        y = self.net(feats.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, 2, h, w).transpose(1, 2)


def gate_features(static: torch.Tensor, warp: torch.Tensor, lg, levels: torch.Tensor | None = None) -> torch.Tensor:
    """The :class:`GateHead`'s inputs ``(B, GateHead.IN_CHANNELS, T, H, W)``: warp and static clip ([-1, 1]),
    their mean absolute difference, the trust level one-hot, whether the first source's sample falls outside
    its frame (border padding repeats the edge there), that source's flow / 8 and the distance in frames
    from the target to it / T (0 where no source). levels: :func:`trust_levels` when the caller has them."""
    b, _, t, h, w = static.shape
    levels = (trust_levels(lg) if levels is None else levels).to(static.device)  # (B, 1, T, H, W)
    onehot = torch.zeros(b, TRUST_LEVELS, t, h, w, dtype=static.dtype, device=static.device)
    onehot.scatter_(1, levels, 1.0)
    flow = static.new_zeros(b, 2, t, h, w)
    outside = static.new_zeros(b, 1, t, h, w)
    dist = static.new_zeros(b, 1, t, h, w)
    if lg.flows is not None:
        for k in range(t):
            first = next(((j, int(x)) for j, x in enumerate(lg.sources[k].tolist()) if int(x) >= 0), None)
            if first is None:
                continue
            f = lg.flows[:, k, first[0]].to(static)
            flow[:, :, k] = f / 8.0
            outside[:, :, k] = outside_mask(f)
            dist[:, :, k] = abs(k - first[1]) / t
    diff = (warp - static).abs().mean(1, keepdim=True)
    return torch.cat([warp, static, diff, onehot, outside, flow, dist], 1)


def outside_mask(flow: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)``: 1 where the backward flow ``(B, 2, H, W)`` samples outside the source frame (border
    padding repeats the edge there)."""
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    x, y = xs + flow[:, 0], ys + flow[:, 1]
    return ((x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)).to(flow.dtype)[:, None]
