"""The trust levels the adapters' gates are looked up by: per pixel, how many sources of the guidance see
it (:func:`trust_levels`). :class:`~motionguide.embedded.adapters.GuidanceGates` holds one reference gate
and one correction gate per level; each level's effect on real footage is a row of
``benchmarks/ablation.py`` (``one_gate``).
"""
from __future__ import annotations

import torch

__all__ = ["TRUST_LEVELS", "trust_levels"]

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
