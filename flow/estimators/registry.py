"""The estimator registry: :func:`get_estimator` builds a flow estimator by name."""
from __future__ import annotations

import os
from typing import Any, Callable

import torch

from .base import FlowEstimator, canonical_name
from .opencv import DISEstimator, FarnebackEstimator
from .raft import RAFTEstimator

__all__ = ["available_estimators", "get_estimator"]


def _make_dis(weights, device, dtype, **options):
    return DISEstimator(**options)


def _make_farneback(weights, device, dtype, **options):
    return FarnebackEstimator(**options)


def _make_raft(variant: str) -> Callable[..., FlowEstimator]:
    def make(weights, device, dtype, **options):
        return RAFTEstimator(variant, weights=weights, device=device, dtype=dtype, **options)

    return make


_REGISTRY: dict[str, tuple[Callable[..., FlowEstimator], bool]] = {
    # name -> (factory, takes weights)
    "dis": (_make_dis, False),
    "farneback": (_make_farneback, False),
    "raft_small": (_make_raft("raft_small"), True),
    "raft_large": (_make_raft("raft_large"), True),
}


def available_estimators() -> list[str]:
    """Names accepted by :func:`get_estimator`.

    >>> available_estimators()
    ['dis', 'farneback', 'raft_small', 'raft_large']
    """
    return list(_REGISTRY)


def get_estimator(
    name: str = "dis",
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    **options: Any,
) -> FlowEstimator:
    """Build a flow estimator by name.

    Args:
        name: one of :func:`available_estimators` (case-insensitive; ``raft-small`` works too).
        weights: RAFT only: ``None``/``"default"``, an enum member name, a checkpoint path, or ``"random"``.
        device: RAFT only (OpenCV estimators run on the CPU and return flows on the input's device).
        dtype: RAFT only: the network's float type.
        **options: estimator options (``preset=`` for dis, ``num_flow_updates=`` for RAFT, ...).

    >>> get_estimator("dis", preset="medium")
    DISEstimator(preset='medium', stages=[('MEDIUM', {})], variational_refinement=False)
    >>> get_estimator("lucas")
    Traceback (most recent call last):
    ...
    ValueError: unknown flow method 'lucas'; expected one of ['dis', 'farneback', 'raft_small', 'raft_large']
    """
    key = canonical_name(name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown flow method {name!r}; expected one of {available_estimators()}")
    factory, takes_weights = _REGISTRY[key]
    if not takes_weights:
        if weights is not None:
            raise ValueError(f"{key} has no weights (got weights={str(weights)!r}); drop --weights or use a raft_* method")
        if dtype is not None and dtype != torch.float32:
            raise ValueError(f"{key} runs in OpenCV on uint8 images; dtype={dtype} is not supported")
        if torch.device(device).type != "cpu":
            raise ValueError(f"{key} runs in OpenCV on the CPU; device={device!r} is not supported (use raft_*)")
    return factory(weights, device, dtype, **options)
