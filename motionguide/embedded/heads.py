"""The adapters' small per-pixel heads: where to trust the warp, how to blend two warps, how to mix the
network's output with the warp. Each is a few convolutions whose last layer starts at zero, so a fresh head
changes nothing; each is trained alone by its recipe stage (:mod:`motionguide.embedded.recipes`).

* :class:`GateHead`: per-pixel corrections of the reference and correction gates (before the network runs);
* :class:`BlendHead`: the blend of an in-between frame's two warped sources;
* :class:`ContinuationHead`: the mix of the generated continuation frames with their warp (after it runs).
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["TRUST_LEVELS", "GateHead", "gate_features", "outside_mask", "BlendHead", "blend_features",
           "ContinuationHead", "continuation_features", "trust_levels"]

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


class _PixelHead(nn.Module):
    """Four 3x3 convolutions (the second dilated) from ``IN_CHANNELS`` per-pixel features to one logit per
    pixel; the last layer starts at zero, so a fresh head changes nothing. Subclasses set ``IN_CHANNELS``
    and ``FEATURES`` (the function that builds their input)."""

    IN_CHANNELS = 0
    FEATURES = ""

    def __init__(self, hidden: int = 24):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(self.IN_CHANNELS, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim != 4 or feats.shape[1] != self.IN_CHANNELS:
            raise ValueError(f"{type(self).__name__} expects (N, {self.IN_CHANNELS}, H, W) features ({self.FEATURES}), "
                             f"got {tuple(feats.shape)}")
        return self.net(feats)


class BlendHead(_PixelHead):
    """A learned per-pixel blend of the two warped sources of an in-between frame (speed, keyframes).

    Why: flow-only warping blends the two sources with fixed weights (time, and the holes flow reversal
    leaves); where the estimated flow of one side is wrong (motion boundaries, fast or thin objects, content
    at the border) the fixed blend shows both versions. Which side is right shows in the two warps
    themselves (they disagree there), in their flows and in which sample falls outside its frame. MoG's
    interpolation network predicts the same kind of mask M. Trained alone on the blended warp
    (``motionguide train blend``); its effect is the ``learned_blend`` line of ``benchmarks/motion.py``.

    Input: :func:`blend_features` ``(N, IN_CHANNELS, H, W)``; output ``(N, 1, H, W)``: a correction of the
    logit of source 0's weight. The last layer starts at zero: a fresh head blends exactly as
    :func:`~motionguide.embedded.generation.flow_only` does.
    """

    IN_CHANNELS = 3 + 3 + 1 + 2 + 4 + 2
    FEATURES = "blend_features"

    def blend(self, warps: torch.Tensor, weights: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """The blended frame ``(N, 3, H, W)`` from two sources: ``warps (N, 2, 3, H, W)`` in [0, 1] (each
        source warped to the target), ``weights (N, 2, 1, H, W)`` the guidance's blend weights, ``flows
        (N, 2, 2, H, W)`` the backward flows to the sources. Where both weights are positive source 0 gets
        ``sigmoid(log w0 - log w1 + head)``; elsewhere the weights stay as they are (the first source alone
        where both vanish, as flow-only warping)."""
        w0, w1 = weights[:, 0], weights[:, 1]
        both = (w0 > 0) & (w1 > 0)
        logit = torch.log(w0.clamp(min=1e-4)) - torch.log(w1.clamp(min=1e-4))
        a = torch.sigmoid(logit + self(blend_features(warps, weights, flows)))
        fixed = torch.where(w0 + w1 > 1e-6, w0 / (w0 + w1).clamp(min=1e-6), torch.ones_like(w0))  # as flow-only warping
        a = torch.where(both, a, fixed)
        return a * warps[:, 0] + (1 - a) * warps[:, 1]


def blend_features(warps: torch.Tensor, weights: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """The :class:`BlendHead`'s inputs ``(N, BlendHead.IN_CHANNELS, H, W)``: both warps (in [-1, 1]), how much
    they disagree (mean absolute difference x 4), both blend weights, both flows / 8 and whether each sample
    falls outside its source frame. Shapes as :meth:`BlendHead.blend`."""
    wc = warps.clamp(0, 1)
    diff = (wc[:, 0] - wc[:, 1]).abs().mean(1, keepdim=True) * 4
    return torch.cat([wc[:, 0] * 2 - 1, wc[:, 1] * 2 - 1, diff, weights[:, 0], weights[:, 1], flows[:, 0] / 8.0,
                      flows[:, 1] / 8.0, outside_mask(flows[:, 0]), outside_mask(flows[:, 1])], 1)


class ContinuationHead(_PixelHead):
    """A learned per-pixel mix of the network's output with the warp on continuation frames (generated
    frames after the last known one: extension, reference motion).

    Why: the :class:`GateHead` decides how much to trust the warp before the network runs; this head sees
    the output itself, and where it strays from a warp whose source is in frame and trusted, pulls it back:
    ``mixed = out + strength * (1 - a) * (warp - out)`` with ``a = sigmoid(head + START)`` (a fresh head keeps
    98 % of the output; strength 0 keeps all of it, so strength 0 is still exactly unguided). Trained alone
    on the model's own outputs (``motionguide train continuation``).

    Input: :func:`continuation_features` ``(N, IN_CHANNELS, H, W)``; output ``(N, 1, H, W)``: the logit of
    the output's share, before the ``START`` offset.
    """

    IN_CHANNELS = 3 + 3 + 3 + 1 + 1 + 2 + 1
    FEATURES = "continuation_features"
    START = 4.0

    def mix(self, out: torch.Tensor, warp: torch.Tensor, weight: torch.Tensor, flow: torch.Tensor,
             ahead: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """The mixed frame ``(N, 3, H, W)`` in [0, 1]: ``out``, ``warp`` ``(N, 3, H, W)`` in [0, 1] (the
        network's frame and the warp it was guided by), ``weight (N, 1, H, W)`` the guidance's summed source
        weight, ``flow (N, 2, H, W)`` the first source's backward flow, ``ahead (N,)`` frames since the last
        known frame."""
        a = torch.sigmoid(self(continuation_features(out, warp, weight, flow, ahead)) + self.START)
        return (out + float(strength) * (1 - a) * (warp - out)).clamp(0, 1)


def continuation_features(out: torch.Tensor, warp: torch.Tensor, weight: torch.Tensor, flow: torch.Tensor,
                    ahead: torch.Tensor) -> torch.Tensor:
    """The :class:`ContinuationHead`'s inputs ``(N, ContinuationHead.IN_CHANNELS, H, W)``: output and warp (in [-1, 1]),
    their difference x 4, the source weight, whether the first source's sample falls outside its frame, its
    flow / 8, and the frames since the last known one / 4. Shapes as :meth:`ContinuationHead.mix`."""
    o, f = out.clamp(0, 1), warp.clamp(0, 1)
    dist = (ahead.to(o) / 4.0).view(-1, 1, 1, 1).expand_as(weight)
    return torch.cat([o * 2 - 1, f * 2 - 1, (o - f) * 4, weight, outside_mask(flow), flow / 8.0, dist], 1)
