"""An ensemble in flow space: :class:`FusionInterpolator` averages the intermediate flows of several."""
from __future__ import annotations

from typing import Sequence

from .base import Intermediate, Interpolator

__all__ = ["FusionInterpolator"]


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

    def _intermediate(self, f0, f1, ts):
        acc = None
        for w, m in zip(self.weights, self.members):
            res = m._intermediate(f0, f1, ts)
            res = [Intermediate(*(x.float() * w for x in r)) for r in res]
            acc = res if acc is None else [Intermediate(*(a + b for a, b in zip(ra, rb))) for ra, rb in zip(acc, res)]
        return acc
