"""The training layouts, one per job, and their guidance built by the flow core on the clip's real frames.

* ``between`` (in-betweening, the speed job): the first and last frames are known; every frame between
  them is guided by the intermediate flows to both, from the interpolation core
  (``flow.interpolate.get_interpolator``, IFNet when RIFE weights are installed), as MoG builds its guidance
  (:func:`motionguide.guidance.keyframes`).
* ``extend`` (continuation, the extend job): the first ``known`` frames are known; the rest continue the
  last known frame's motion, estimated by the chosen flow estimator (:func:`motionguide.guidance.extension`).
* ``first`` (first frame plus the clip's own motion, the transfer job): frame 0 is known and every frame is
  guided by frame 0 warped with the clip's own flow to it (:func:`motionguide.guidance.reference_motion`).

What the pipeline itself is conditioned on follows each pipeline's call: the first frame (Wan I2V,
CogVideoX I2V, LTX), and for ``between`` with ``last_frame`` also the last one (Wan FLF2V, called with
``last_image``). The other known frames reach the model through the guidance only, as in the jobs.
"""
from __future__ import annotations

from typing import Any

import torch

from ..guidance import Guidance, extension, keyframes, reference_motion

__all__ = ["LAYOUTS", "layout_guidance", "known_frames", "conditioning"]

LAYOUTS = ("between", "extend", "first")


def known_frames(num_frames: int) -> int:
    """How many first frames the ``extend`` layout knows: 4 (as the jobs' continuation windows), fewer in
    short clips (at least 2, so the last motion can be estimated)."""
    return max(2, min(4, num_frames - 1))


def conditioning(layout: str, last_frame: bool) -> str:
    """Which frames the pipeline's own conditioning sees: ``first`` or ``ends`` (first and last)."""
    return "ends" if layout == "between" and last_frame else "first"


def layout_guidance(layout: str, clip: torch.Tensor, *, estimator: Any, interpolator: Any) -> Guidance:
    """The guidance of ``layout`` for ``clip: (1, 3, N, H, W)`` float in [0, 1] (N >= 3)."""
    if not isinstance(clip, torch.Tensor) or clip.ndim != 5 or clip.shape[:2] != (1, 3) or clip.shape[2] < 3:
        raise ValueError(f"clip: expected (1, 3, N >= 3, H, W), got {tuple(getattr(clip, 'shape', ()))}")
    n = clip.shape[2]
    if layout == "between":
        return keyframes(clip[:, :, [0, n - 1]], [0, n - 1], intermediate=interpolator)
    if layout == "extend":
        k = known_frames(n)
        return extension(clip[:, :, :k], n - k, estimator=estimator)
    if layout == "first":
        return reference_motion(clip[:, :, 0], clip, estimator=estimator)
    raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
