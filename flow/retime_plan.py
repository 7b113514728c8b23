"""Where retimed frames sit in input time, and the bounds on a retime: :func:`plan_retime`, :func:`check_target`.

Input frames sit at positions 0, 1, ..., N-1; output frame k at ``k * step`` (an exact fraction):

* ``fps=F``: step = fps_in / F, played at F fps (same duration);
* ``speed=S`` (0.25 .. 4): step = S, played at the input fps;
* ``frames=M``: step = (N-1)/(M-1), fps_in (M-1)/(N-1) (same duration).

Bounds: at most :data:`MAX_RATE_FACTOR` (16) times the input's frame rate and at most :data:`MAX_FPS`
(1000) fps; each refusal says how to get further in steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

__all__ = ["MAX_FPS", "MAX_RATE_FACTOR", "SPEED_RANGE", "RetimePlan", "check_target", "plan_retime"]

SPEED_RANGE = (0.25, 4.0)
MAX_RATE_FACTOR = 16  # at most this many output frames per input frame interval
MAX_FPS = 1000


def _fraction(x: float, what: str) -> Fraction:
    try:
        xf = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{what}: expected a number, got {x!r}") from None
    if not math.isfinite(xf) or xf <= 0:
        raise ValueError(f"{what}: expected a positive finite number, got {x!r}")
    # 1001 keeps NTSC rates (30000/1001) exact; decimal inputs such as 0.3 become 3/10.
    return Fraction(xf).limit_denominator(1001)


@dataclass(frozen=True)
class RetimePlan:
    """Where output frames sit in input time.

    Attributes:
        step: input frames advanced per output frame (exact fraction).
        out_fps: the output's frame rate.
        in_fps: the input's frame rate.
        out_frames: number of output frames for a clip of ``in_frames`` frames (None when unknown).
        in_frames: number of input frames the plan was made for (None when unknown).
    """

    step: Fraction
    out_fps: Fraction
    in_fps: Fraction
    in_frames: int | None = None

    @property
    def out_frames(self) -> int | None:
        if self.in_frames is None:
            return None
        return math.floor((self.in_frames - 1) / self.step) + 1

    def positions(self, last: int | None = None) -> Iterator[Fraction]:
        """Input positions ``k * step`` of the output frames, up to ``last`` (default ``in_frames - 1``)."""
        last = self.in_frames - 1 if last is None else last
        k = 0
        while k * self.step <= last:
            yield k * self.step
            k += 1


def plan_retime(
    in_fps: float,
    in_frames: int | None = None,
    *,
    fps: float | None = None,
    speed: float | None = None,
    frames: int | None = None,
) -> RetimePlan:
    """Make a :class:`RetimePlan` from exactly one of ``fps``, ``speed`` or ``frames``.

    >>> p = plan_retime(10, 795, fps=30)
    >>> p.step, p.out_frames, float(p.out_fps)
    (Fraction(1, 3), 2383, 30.0)
    >>> plan_retime(25, 100, speed=0.25).out_frames
    397
    >>> plan_retime(24, 100, frames=50).out_frames
    50
    """
    check_target(fps=fps, speed=speed, frames=frames)
    fin = _fraction(in_fps, "input fps")
    if in_frames is not None and int(in_frames) < 2:
        raise ValueError(f"retiming needs at least 2 input frames, got {in_frames}")
    if fps is not None:
        fo = _fraction(fps, "fps")
        _check_rate(fin / fo, fo, fin, f"fps: {float(fps):g}")
        return RetimePlan(step=fin / fo, out_fps=fo, in_fps=fin, in_frames=in_frames)
    if speed is not None:
        s = _fraction(speed, "speed")
        return RetimePlan(step=s, out_fps=fin, in_fps=fin, in_frames=in_frames)
    if in_frames is None:
        raise ValueError("frames: the input frame count must be known to spread an exact number of frames")
    step = Fraction(int(in_frames) - 1, int(frames) - 1)
    _check_rate(step, fin / step, fin, f"frames: {int(frames)} from {int(in_frames)} input frames")
    return RetimePlan(step=step, out_fps=fin / step, in_fps=fin, in_frames=in_frames)


def check_target(*, fps=None, speed=None, frames=None) -> None:
    """Check a retime target without the input: exactly one of them, each in its own range.

    The bounds that need the input's rate (at most :data:`MAX_RATE_FACTOR` times it) are checked by
    :func:`plan_retime`.

    >>> check_target(fps=60)
    >>> check_target(fps=5000)
    Traceback (most recent call last):
    ...
    ValueError: fps: 5000 is above the limit of 1000 fps; ask for at most 1000 (for slow motion, use speed, e.g. 0.25)
    """
    given = [n for n, v in (("fps", fps), ("speed", speed), ("frames", frames)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of fps, speed or frames; got {given or 'none'}")
    if fps is not None:
        fo = _fraction(fps, "fps")
        if fo > MAX_FPS:
            raise ValueError(f"fps: {float(fps):g} is above the limit of {MAX_FPS} fps; ask for at most {MAX_FPS} "
                             "(for slow motion, use speed, e.g. 0.25)")
    if speed is not None:
        s = _fraction(speed, "speed")
        lo, hi = SPEED_RANGE
        if not lo <= s <= hi:
            raise ValueError(f"speed: expected {lo} .. {hi} (0.25 = 4x slow motion, 4 = 4x faster), got {speed}; "
                             "for slower motion, retime in steps (0.25, then 0.25 again on the output)")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or int(frames) < 2):
        raise ValueError(f"frames: expected an integer >= 2 (the output frame count), got {frames!r}")


def _check_rate(step: Fraction, out_fps: Fraction, in_fps: Fraction, what: str) -> None:
    """Refuse an output rate above MAX_RATE_FACTOR x the input's or above MAX_FPS (the message says how to
    get there in steps)."""
    factor = 1 / step
    if factor > MAX_RATE_FACTOR:
        top = float(in_fps) * MAX_RATE_FACTOR
        raise ValueError(
            f"{what} asks for {float(factor):.4g}x the input's {float(in_fps):g} fps; one retime makes at most "
            f"{MAX_RATE_FACTOR}x ({top:g} fps). For more, retime in steps: first to {min(top, MAX_FPS):g} fps, "
            "then retime that output again"
        )
    if out_fps > MAX_FPS:
        raise ValueError(f"{what} gives {float(out_fps):g} fps, above the limit of {MAX_FPS} fps; ask for fewer "
                         "frames (or use speed for slow motion at the input's frame rate)")
