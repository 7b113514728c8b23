"""Peak memory of a job (transfer, speed, extend), estimated from the video's header before a frame is decoded,
and the check that refuses what will not fit in ``--max-memory``.

A job holds its whole input and output at the input's resolution: the decoded clip, the guidance (a flow
field, weights and a warp per output frame and source), the composited output and the encoder's copy.
So its peak is a fixed part (Python, torch, OpenCV, diffusers; the embedded model) plus bytes per pixel per
input and output frame, and a one-off part per pixel (the flow estimator, the interpolator). The
coefficients are measured peak RSS of the command line in a fresh process (``python
benchmarks/memory_jobs.py --calibrate``: 854x480 with 8 and 16 frames and both fills, 1280x720, 1920x1080 with
4) fitted, then rounded up with a margin, so the estimate is an upper bound of every measured run (measured /
estimated 0.6 .. 0.8, and at most 0.9 with the base's run-to-run spread).

>>> job_frames("speed", 9, factor=0.5)
(9, 17)
>>> round(estimate_job_bytes("speed", 480, 854, 9, 17) / 2 ** 20) > 0
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from flow.limits import DEFAULT_LIMIT_GB, GB, MemoryLimitError
from flow.video import VideoReader

__all__ = ["DEFAULT_LIMIT_GB", "JOBS", "JobVideo", "MemoryLimitError", "check_job_memory", "estimate_job_bytes",
           "job_frames", "probe_video"]

JOBS = ("transfer", "speed", "extend")

# Peak RSS of the command line in a fresh process (benchmarks/memory_jobs.py --calibrate, 1 thread), fitted
# as base + pixels x (one-off + per frame x (input + output frames)) and rounded up; _MARGIN on the work.
# Fitted: base 1063 MB (torch, OpenCV, diffusers, the command line); one-off 150 .. 210 B/px (the flow
# estimator, the interpolator); per frame 24 B/px (transfer, extend), 72 B/px (speed: two sources per
# in-between, the interpolator's flows and masks); --fill model 85 .. 140 B/px per output frame. Repeated
# runs of one job differ by up to 10 % (1331 .. 1404 MB at 480p, 2044 .. 2264 MB at 1080p), hence the base
# of 1280 MB (+20 %) and the margin.
_BASE = 1280 * 2 ** 20
_ONE_OFF = {"transfer": 250, "speed": 100, "extend": 250}
_PER_FRAME = {"transfer": 30, "speed": 85, "extend": 30}
_FILL_MODEL_PER_OUT = 170  # --fill model: the model's output upsampled and the compositing pyramid
_COMPARE = 64 * 2 ** 20  # the --compare strip, bounded (motionguide.jobs.save_compare: cells of at most 512 px)
_MARGIN = 1.25
_IMAGE_PER_PX = 40  # transfer's --image: its bytes, uint8 and float copies, the resized copy


@dataclass(frozen=True)
class JobVideo:
    """What the header of a job's input says: size as shown (after rotation), rate and frame count."""

    height: int
    width: int
    fps: float
    frames: int | None


def probe_video(path, job: str) -> JobVideo:
    """Open ``path``'s header only: refuse a variable frame rate (the rule of every command that reads video,
    :meth:`flow.video.VideoReader.require_constant_rate`) and return its size, rate and frame count."""
    with VideoReader(path) as vr:
        vr.require_constant_rate(job)
        return JobVideo(vr.height, vr.width, vr.fps, vr.num_frames)


def job_frames(job: str, in_frames: int, *, factor: float | None = None, frames: int | None = None) -> tuple[int, int]:
    """``(input frames held, output frames)`` of a job on a clip of ``in_frames``: transfer holds ``frames``
    (default all) reference frames and the image and writes ``frames``; speed writes
    ``floor((n - 1) / factor) + 1``; extend writes ``n + frames``."""
    n = int(in_frames)
    if job == "transfer":
        t_out = min(n, frames) if frames else n
        return t_out + 1, t_out
    if job == "speed":
        return n, math.floor((n - 1) / float(factor)) + 1
    if job == "extend":
        return n, n + int(frames)
    raise ValueError(f"job: expected one of {JOBS}, got {job!r}")


def estimate_job_bytes(job: str, height: int, width: int, in_frames: int, out_frames: int, *,
                       fill: str = "warp", compare: bool = False, image_px: int = 0) -> int:
    """Estimated peak resident memory (bytes) of ``job`` on ``in_frames`` frames of ``width x height`` making
    ``out_frames`` frames at that size (``fill="model"``: the model's output blended in; ``compare``: the
    ``--compare`` strip; ``image_px``: the pixels of transfer's ``--image``, decoded and resized)."""
    if job not in JOBS:
        raise ValueError(f"job: expected one of {JOBS}, got {job!r}")
    px = int(height) * int(width)
    per_px = (_ONE_OFF[job] + _PER_FRAME[job] * (in_frames + out_frames)
              + (_FILL_MODEL_PER_OUT * out_frames if fill == "model" else 0))
    return int(_BASE + _MARGIN * (px * per_px + _IMAGE_PER_PX * int(image_px)) + (_COMPARE if compare else 0))


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def check_job_memory(job: str, video: JobVideo, in_frames: int, *, factor: float | None = None,
                     frames: int | None = None, limit_gb: float = DEFAULT_LIMIT_GB, fill: str = "warp",
                     compare: bool = False, image_px: int = 0) -> int:
    """Raise :class:`MemoryLimitError` when :func:`estimate_job_bytes` of ``job`` on ``in_frames`` frames of
    ``video`` (with its ``factor`` / ``frames``, as :func:`job_frames`) is above ``limit_gb``; else return it.

    The message names the limit (``--max-memory``) and what fits: fewer frames (``--frames`` for transfer
    and extend, else an input cut shorter) and a smaller input (the largest height at this length, with the
    ffmpeg command that makes it).
    """
    if not (isinstance(limit_gb, (int, float)) and math.isfinite(limit_gb) and limit_gb > 0):
        raise ValueError(f"--max-memory: expected a positive number of GB, got {limit_gb!r}")
    h, w, limit = video.height, video.width, limit_gb * GB

    def need(n: int, k: int | None) -> int:
        return estimate_job_bytes(job, h, w, *job_frames(job, n, factor=factor, frames=k), fill=fill, compare=compare,
                                  image_px=image_px)

    est = need(in_frames, frames)
    if est <= limit:
        return est
    t_in, t_out = job_frames(job, in_frames, factor=factor, frames=frames)
    head = (f"{job} on {t_in - (job == 'transfer')} frames of {w}x{h} (WxH) making {t_out} needs about {_gb(est)}, "
            f"above the memory limit of {limit_gb:g} GB (--max-memory {limit_gb:g})")
    fits = []
    if image_px:
        head = head.replace(" making ", f" and an --image of {image_px / 1e6:.0f} megapixels, making ", 1)
        if estimate_job_bytes(job, h, w, t_in, t_out, fill=fill, compare=compare, image_px=h * w) <= limit:
            fits.append(f"the --image resized to the reference's {w}x{h} fits")
    if job == "transfer" and not fits:
        k = next((k for k in range(t_out - 1, 1, -1) if need(in_frames, k) <= limit), None)
        fits += [f"--frames {k} fits"] if k else []
    elif job == "extend":
        k = next((k for k in range(frames - 1, 0, -1) if need(in_frames, k) <= limit), None)
        fits += [f"--frames {k} fits"] if k else []
    if not fits:
        n = next((n for n in range(in_frames - 1, 1, -1) if need(n, frames) <= limit), None)
        fits += [f"an input cut to {'its last ' if job == 'extend' else ''}{n} frames fits"] if n else []
    fixed = _BASE + (_COMPARE if compare else 0) + _MARGIN * _IMAGE_PER_PX * image_px
    small_h = int(h * math.sqrt(max(0.0, limit - fixed) / max(1.0, est - fixed))) // 2 * 2
    if small_h >= 16:
        fits.append(f"a smaller input of height {small_h} fits (e.g. `ffmpeg -i IN -vf scale=-2:{small_h} small.mp4`)")
    tail = "; ".join(fits) + ", or raise --max-memory" if fits else "raise --max-memory or use a smaller, shorter input"
    raise MemoryLimitError(f"{head}; {tail}")
