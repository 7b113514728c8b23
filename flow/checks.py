"""Shape and value checks shared by the flow package (kornia-style: the error names expected and actual).

Every public function of ``flow`` validates its tensor arguments on entry with these helpers, so that a
wrong input fails with a message that says what was expected, what came, and how to fix it.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["check_flow", "check_frames", "check_same_size", "check_finite", "check_times", "to_float_frames"]


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_flow(flow: torch.Tensor, name: str = "flow") -> None:
    """Check ``flow`` is a float tensor of shape (B, 2, H, W) with finite values.

    >>> check_flow(torch.zeros(1, 2, 4, 4))
    >>> check_flow(torch.zeros(1, 3, 4, 4))
    Traceback (most recent call last):
    ...
    ValueError: flow: expected shape (B, 2, H, W) (channel 0 = dx, channel 1 = dy), got (1, 3, 4, 4)
    """
    if not isinstance(flow, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, 2, H, W), got {type(flow).__name__}")
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"{name}: expected shape (B, 2, H, W) (channel 0 = dx, channel 1 = dy), got {_shape(flow)}"
        )
    if not flow.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor (pixels), got dtype {flow.dtype}")
    check_finite(flow, name)


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise if ``t`` holds NaN or inf (a flow with NaN would silently poison every warp)."""
    if not t.is_floating_point() or t.numel() == 0:
        return
    # One pass first: any NaN or inf makes the sum non-finite, and a reduction costs a fraction of
    # isfinite().all() (which allocates a bool tensor and reads it again): 720p flows are checked often.
    # A non-finite sum may also be overflow of huge finite values, so then count exactly.
    if math.isfinite(float(t.detach().sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32))):
        return
    if not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name}: expected finite values, got {n_bad} NaN/inf entries of {t.numel()}; "
            "replace them (e.g. torch.nan_to_num) or mask those pixels out before warping"
        )


def check_frames(img: torch.Tensor, name: str = "img", channels: Sequence[int] | None = None) -> None:
    """Check ``img`` is a (B, C, H, W) tensor, optionally with C in ``channels``.

    >>> check_frames(torch.zeros(2, 3, 8, 8), channels=(3,))
    >>> check_frames(torch.zeros(3, 8, 8))
    Traceback (most recent call last):
    ...
    ValueError: img: expected shape (B, C, H, W), got (3, 8, 8); add a batch dimension with img[None]
    """
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, C, H, W), got {type(img).__name__}")
    if img.ndim != 4:
        hint = "; add a batch dimension with img[None]" if img.ndim == 3 else ""
        raise ValueError(f"{name}: expected shape (B, C, H, W), got {_shape(img)}{hint}")
    if channels is not None and img.shape[1] not in tuple(channels):
        raise ValueError(
            f"{name}: expected {' or '.join(map(str, channels))} channels in dim 1 of (B, C, H, W), "
            f"got {img.shape[1]} (shape {_shape(img)}); convert grey to RGB with img.expand(-1, 3, -1, -1) "
            "or drop alpha with img[:, :3]"
        )


def check_same_size(a: torch.Tensor, b: torch.Tensor, name_a: str = "frame0", name_b: str = "frame1") -> None:
    """Check two (B, C, H, W) tensors share batch and spatial size."""
    if a.shape[0] != b.shape[0] or a.shape[-2:] != b.shape[-2:]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same batch size and height x width: got "
            f"{_shape(a)} and {_shape(b)}; resize one of them first (e.g. torch.nn.functional.interpolate)"
        )


def to_float_frames(img: torch.Tensor, name: str = "img") -> torch.Tensor:
    """Return ``img`` as float in [0, 1], RGB, (B, 3, H, W).

    Integer images (uint8 0..255, uint16 0..65535) are converted, not refused; 1-channel images are
    expanded to RGB; 4-channel images lose alpha. Anything else raises.

    >>> to_float_frames(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)).shape
    torch.Size([1, 3, 2, 2])
    """
    check_frames(img, name)
    if not img.is_floating_point():
        if img.dtype == torch.uint8:
            img = img.float() / 255.0
        elif img.dtype in (torch.int16, torch.int32, torch.int64, torch.uint16 if hasattr(torch, "uint16") else torch.int16):
            img = img.float() / (65535.0 if int(img.max()) > 255 else 255.0)
        elif img.dtype == torch.bool:
            img = img.float()
        else:
            raise TypeError(f"{name}: unsupported dtype {img.dtype}; pass float in [0, 1] or uint8")
    c = img.shape[1]
    if c == 1:
        img = img.expand(-1, 3, -1, -1)
    elif c == 4:
        img = img[:, :3]
    elif c != 3:
        raise ValueError(
            f"{name}: expected 1 (grey), 3 (RGB) or 4 (RGBA) channels in dim 1, got {c} (shape {_shape(img)})"
        )
    return img


def check_times(ts) -> list[float]:
    """Validate interpolation times: a float or a non-empty sequence (or tensor) of floats inside (0, 1).

    The one check of times for every interpolator of the package (:mod:`flow.interpolate`, :mod:`flow.ifnet`).

    >>> check_times(0.5)
    [0.5]
    >>> check_times([0.0, 0.5])
    Traceback (most recent call last):
    ...
    ValueError: ts: every t must lie strictly between 0 and 1 (0 = frame0, 1 = frame1), got [0.0]; the end frames themselves need no interpolation
    """
    if isinstance(ts, torch.Tensor):
        ts = ts.flatten().tolist()
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        ts = [ts]  # a single time is accepted as [t]; the result is still a list
    try:
        ts = [float(t) for t in ts]
    except TypeError:
        raise TypeError(f"ts: expected a float or a sequence of floats in (0, 1), got {type(ts).__name__}") from None
    if not ts:
        raise ValueError("ts: expected at least one time in (0, 1), got an empty sequence")
    bad = [t for t in ts if not (0.0 < t < 1.0) or not math.isfinite(t)]
    if bad:
        raise ValueError(
            f"ts: every t must lie strictly between 0 and 1 (0 = frame0, 1 = frame1), got {bad}; "
            "the end frames themselves need no interpolation"
        )
    return ts
