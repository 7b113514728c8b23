"""The interpolator interface: two frames and times in (0, 1) in, intermediate flows, masks and frames out.

For every t an :class:`Intermediate`:

* ``flow_t0``: ``(B, 2, H, W)`` float, pixels, the backward flow from time t to frame 0 (the frame at t is
  frame 0 sampled at ``x + flow_t0(x)``; convention of :mod:`flow.warp`),
* ``flow_t1``: ``(B, 2, H, W)`` the same towards frame 1,
* ``mask``: ``(B, 1, H, W)`` in [0, 1], frame 0's blend weight.

:func:`synthesize` turns them into the frame at t (``mask * warp(frame0) + (1 - mask) * warp(frame1)``).
Every :class:`Interpolator` takes ``tta=True`` (test-time augmentation: the frames flipped in both axes are
run too, the flows mapped back and averaged; 2x the cost).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..checks import check_finite, check_flow, check_frames, check_same_size, check_times, to_float_frames
from ..warp import _warp

__all__ = ["Intermediate", "Interpolator", "synthesize"]


class Intermediate(NamedTuple):
    """Intermediate flows and blend mask for one time t (unpacks as ``flow_t0, flow_t1, mask``).

    Attributes:
        flow_t0: ``(B, 2, H, W)`` float pixels: frame at t = frame0 sampled at ``x + flow_t0(x)``.
        flow_t1: ``(B, 2, H, W)`` float pixels: frame at t = frame1 sampled at ``x + flow_t1(x)``.
        mask: ``(B, 1, H, W)`` in [0, 1]: frame0's weight in the blend.
    """

    flow_t0: torch.Tensor
    flow_t1: torch.Tensor
    mask: torch.Tensor


def _check_pair(frame0: torch.Tensor, frame1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) float [0, 1] (uint8 converted) of the same size, finite, else a clear error."""
    f0 = to_float_frames(frame0, "frame0")
    f1 = to_float_frames(frame1, "frame1")
    if f0.shape[-2:] != f1.shape[-2:]:
        raise ValueError(
            f"frame0 and frame1 must have the same height x width: got {tuple(f0.shape[-2:])} and "
            f"{tuple(f1.shape[-2:])}; resize one of them first (e.g. torch.nn.functional.interpolate)"
        )
    check_same_size(f0, f1)
    check_finite(f0, "frame0")
    check_finite(f1, "frame1")
    if f0.shape[-2] < 2 or f0.shape[-1] < 2:
        raise ValueError(f"frames must be at least 2x2 pixels, got {tuple(f0.shape[-2:])}")
    return f0, f1


def synthesize(frame0: torch.Tensor, frame1: torch.Tensor, inter: Intermediate | Sequence[torch.Tensor]) -> torch.Tensor:
    """The frame at t: both frames backward-warped by the intermediate flows and blended by the mask.

    Args:
        frame0, frame1: ``(B, C, H, W)`` float (frames in [0, 1], or latents/features).
        inter: ``(flow_t0, flow_t1, mask)``: ``(B, 2, H, W)``, ``(B, 2, H, W)``, ``(B, 1, H, W)`` in [0, 1].

    Returns:
        ``(B, C, H, W)`` = ``mask * frame0(x + flow_t0) + (1 - mask) * frame1(x + flow_t1)``.

    >>> f0 = torch.zeros(1, 3, 4, 4); f1 = torch.ones(1, 3, 4, 4); z = torch.zeros(1, 2, 4, 4)
    >>> synthesize(f0, f1, (z, z, torch.full((1, 1, 4, 4), 0.25)))[0, 0, 0, 0].item()
    0.75
    """
    flow_t0, flow_t1, mask = inter
    check_frames(frame0, "frame0")
    check_frames(frame1, "frame1")
    check_same_size(frame0, frame1)
    check_frames(mask, "mask", channels=(1,))
    for f, name in ((flow_t0, "flow_t0"), (flow_t1, "flow_t1")):
        check_flow(f, name)
        if f.shape[-2:] != frame0.shape[-2:]:
            raise ValueError(f"{name} size {tuple(f.shape[-2:])} differs from the frames' {tuple(frame0.shape[-2:])}; "
                             "resize it with flow.warp.resize_flow(flow, size)")
    return synthesize_unchecked(frame0, frame1, (flow_t0, flow_t1, mask))


def synthesize_unchecked(frame0, frame1, inter):
    """:func:`synthesize` without the checks, for the interpolators' own (checked or self-made) tensors."""
    flow_t0, flow_t1, mask = inter
    w0 = _warp(frame0, flow_t0)
    w1 = _warp(frame1, flow_t1)
    mask = mask.to(w0.dtype)
    return w1 + (w0 - w1) * mask


def _flip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-2, -1)


def _unflip(inter: Intermediate) -> Intermediate:
    """Map results computed on frames flipped in both axes back: flip, and negate both flow components."""
    return Intermediate(-_flip(inter.flow_t0), -_flip(inter.flow_t1), _flip(inter.mask))


def _average(a: Intermediate, b: Intermediate) -> Intermediate:
    return Intermediate(*((x + y) * 0.5 for x, y in zip(a, b)))


# ------------------------------------------------------------------------------------------- interface


class Interpolator:
    """Base class: two frames and times in (0, 1) -> intermediate flows, masks, frames.

    Subclasses implement :meth:`_intermediate` on checked input (``(B, 3, H, W)`` float [0, 1] frames of one
    size, a list of valid times). :meth:`interpolate` synthesises from it unless a subclass has a better way.

    Attributes:
        name: backend name (``"dis"``, ``"ifnet"``, ...).
        description: what exactly runs (estimator preset, checkpoint path), for logs and reports.
    """

    name: str = "interpolator"

    @property
    def description(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"

    def fixed_for(self, h: int, w: int) -> "Interpolator":
        """This interpolator with its size-dependent choices (network scale, flow work size) fixed to those of
        ``h x w`` frames: tiles of a large frame then run as the whole frame would (:mod:`.tiling`)."""
        return self

    def intermediate(self, frame0: torch.Tensor, frame1: torch.Tensor, ts, *, tta: bool = False) -> list[Intermediate]:
        """Intermediate flows and blend masks for each time in ``ts``.

        Args:
            frame0, frame1: ``(B, 3, H, W)`` float RGB in [0, 1] (uint8 converted), the same size.
            ts: a time or a sequence of times, each strictly inside (0, 1).
            tta: also run on both frames flipped in both axes, map the result back and average (2x cost).

        Returns:
            One :class:`Intermediate` ``(flow_t0 (B, 2, H, W), flow_t1 (B, 2, H, W), mask (B, 1, H, W))`` per
            t, on ``frame0``'s device, float32.
        """
        ts = check_times(ts)
        f0, f1 = _check_pair(frame0, frame1)
        with torch.inference_mode():
            out = self._intermediate(f0, f1, ts)
            if tta:
                flipped = self._intermediate(_flip(f0), _flip(f1), ts)
                out = [_average(a, _unflip(b)) for a, b in zip(out, flipped)]
        return [Intermediate(*(x.to(frame0.device, torch.float32) for x in r)) for r in out]

    def interpolate(self, frame0: torch.Tensor, frame1: torch.Tensor, ts, *, tta: bool = False) -> list[torch.Tensor]:
        """The frames at each time in ``ts``.

        Args:
            frame0, frame1: ``(B, 3, H, W)`` float RGB in [0, 1] (uint8 converted), the same size.
            ts: a time or a sequence of times in (0, 1).
            tta: flip test-time augmentation (see :meth:`intermediate`).

        Returns:
            One ``(B, 3, H, W)`` float32 frame in [0, 1] per t.
        """
        ts = check_times(ts)
        f0, f1 = _check_pair(frame0, frame1)
        with torch.inference_mode():
            frames = self._interpolate(f0, f1, ts, tta)
        return [f.clamp(0.0, 1.0).to(frame0.device, torch.float32) for f in frames]

    __call__ = interpolate

    def _interpolate(self, f0, f1, ts, tta):
        out = self._intermediate(f0, f1, ts)
        if tta:
            flipped = self._intermediate(_flip(f0), _flip(f1), ts)
            out = [_average(a, _unflip(b)) for a, b in zip(out, flipped)]
        return [synthesize_unchecked(f0, f1, r) for r in out]

    def _intermediate(self, f0: torch.Tensor, f1: torch.Tensor, ts: list[float]) -> list[Intermediate]:  # pragma: no cover
        raise NotImplementedError
