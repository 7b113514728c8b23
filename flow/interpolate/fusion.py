"""Ensembles in flow space: :class:`FusionInterpolator` averages the intermediate flows of several;
:class:`ConfidenceFusion` blends a second interpolator into the network's flows where the network is unsure."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .base import Intermediate, Interpolator
from .ifnet_adapter import IFNetInterpolator

__all__ = ["ConfidenceFusion", "FusionInterpolator"]


class FusionInterpolator(Interpolator):
    """Average the intermediate flows and masks of several interpolators (an ensemble in flow space).

    Why flows and not frames: two good but different estimates of the motion average into a better one,
    and the frame is then warped once, sharply; averaging the frames instead blurs where they disagree.
    ``python benchmarks/interpolate.py`` prints the ``ifnet+dis`` backend (row ``mg-ifnet-v3.6+dis``) next to
    each of its members.

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

    def fixed_for(self, h: int, w: int) -> "FusionInterpolator":
        return FusionInterpolator([m.fixed_for(h, w) for m in self.members], self.weights)

    def _intermediate(self, f0, f1, ts):
        acc = None
        for w, m in zip(self.weights, self.members):
            res = m._intermediate(f0, f1, ts)
            res = [Intermediate(*(x.float() * w for x in r)) for r in res]
            acc = res if acc is None else [Intermediate(*(a + b for a, b in zip(ra, rb))) for ra, rb in zip(acc, res)]
        return acc


class ConfidenceFusion(Interpolator):
    """The network's intermediate flows and mask, with a second interpolator's blended in where it is unsure.

    RIFE v3.6 runs every block on both frame orders and averages the two estimates; half the distance
    between those of its finest block (``spread`` of :meth:`flow.ifnet.IFNet.intermediate`, pixels, no extra
    pass) says where the network is unsure of the motion. There, per pixel, the ``fallback`` gets the weight

        ``w = u / (2 (u + mean(u)))``,  ``u`` = the spread averaged over 5 x 5 pixels,

    measured against the network's own typical spread over the frame, so no constant in pixels is involved;
    ``w < 1/2`` everywhere (the fallback never outweighs the network) and ``w = 1/4`` at the typical spread.
    ``python benchmarks/interpolate.py`` prints it as the row ``mg-auto`` (the default backend), next to
    ``mg-ifnet-v3.6`` and ``mg-ifnet-v3.6+dis`` (the plain average).

    Args:
        network: an :class:`IFNetInterpolator` whose network gives a spread (v3.6).
        fallback: any :class:`Interpolator` (the default backend uses ``dis``: weight-free, 4% of the
            network's time at 720p).
    """

    def __init__(self, network: IFNetInterpolator, fallback: Interpolator):
        if not isinstance(network, IFNetInterpolator) or not network.net.supports_spread:
            raise ValueError("network: expected an IFNetInterpolator whose network reports its spread (RIFE v3.6); "
                             f"got {network!r}")
        if not isinstance(fallback, Interpolator):
            raise ValueError(f"fallback: expected an Interpolator, got {fallback!r}")
        self.network, self.fallback = network, fallback
        self.name = network.name

    @property
    def description(self) -> str:
        return f"{self.network.description}; where it is unsure, blended with [{self.fallback.description}]"

    def fixed_for(self, h: int, w: int) -> "ConfidenceFusion":
        return ConfidenceFusion(self.network.fixed_for(h, w), self.fallback.fixed_for(h, w))

    def _intermediate(self, f0, f1, ts):
        res, spread = self.network._intermediate_and_spread(f0, f1, ts)
        other = self.fallback._intermediate(f0, f1, ts)
        u = F.avg_pool2d(spread.float(), 5, 1, 2, count_include_pad=False)
        w = u / (2.0 * (u + u.mean(dim=(1, 2, 3), keepdim=True)) + 1e-12)
        return [Intermediate(*(torch.lerp(a.float(), b.float(), w) for a, b in zip(r, o))) for r, o in zip(res, other)]
