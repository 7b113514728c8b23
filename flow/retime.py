"""Retime videos by flow-based interpolation, streaming: fps conversion, slow motion, speed-up, exact length.

::

    from flow.retime import retime_video
    result = retime_video("in.mp4", "out.mp4", fps=60)          # or speed=0.25 (4x slow motion), frames=49
    print(result.summary())

How output frames map to input time (input frames sit at positions 0, 1, ..., N-1):

* ``fps=F``: output frame k sits at input position ``k * fps_in / F`` and plays at F fps (same duration).
* ``speed=S`` (0.25 .. 4): position ``k * S``, played at the input fps (S = 0.25: 4x slow motion, 4x longer;
  S = 2: twice as fast). Integer S only drops frames.
* ``frames=M``: exactly M frames spread evenly over the clip (position ``k (N-1)/(M-1)``); the fps becomes
  ``fps_in (M-1)/(N-1)`` so that the duration stays the same.

Positions never go past the last input frame, so ``fps=30`` on a 10 fps clip of N frames gives ``3N - 2``
frames. A position that falls on an input frame copies it; one between frames i and i+1 is interpolated at
``t = position - i`` (the times of one pair :data:`CHUNK` per call). Positions are exact fractions, so no
frame is lost or doubled by rounding (:mod:`flow.retime_plan`).

Scene cuts: a pair whose colour histograms differ a lot, or whose pixel difference jumps far above the
recent ones, is a cut (:class:`~flow.scene_cuts.SceneCutDetector`); frames between the two sides of a cut
are duplicates of the nearer side, never blends.

Bounds on work: the output rate is at most :data:`MAX_RATE_FACTOR` (16) times the input's and at most
:data:`MAX_FPS` (1000) fps; for more, retime in steps (retime the output again).

Memory stays flat in the video length and in the number of in-betweens per pair: two decoded frames, at
most :data:`CHUNK` interpolated frames at a time, and the encoder (``benchmarks/memory_retime.py`` shows 100
vs 1000 frames at 720p). Audio is not carried over (a notice says so); a variable-frame-rate input is
refused with the command that converts it.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .atomic import check_outputs
from .interpolate import Interpolator, get_interpolator
from .retime_plan import MAX_FPS, MAX_RATE_FACTOR, SPEED_RANGE, RetimePlan, check_target, plan_retime
from .scene_cuts import SceneCutDetector
from .video import WRITE_SUFFIXES, VideoReader, VideoWriter

__all__ = [
    "RetimePlan", "RetimeResult", "SceneCutDetector", "plan_retime", "retime_video", "retime_frames", "check_retime_paths",
    "check_target", "SPEED_RANGE", "MAX_RATE_FACTOR", "MAX_FPS", "CHUNK",
]

CHUNK = 8  # in-betweens of one pair interpolated per call: bounds memory, and is IFNet's batch


@dataclass
class RetimeResult:
    """What a retime did.

    Attributes:
        output: the written file (None for :func:`retime_frames`).
        in_frames, out_frames: frame counts.
        in_fps, out_fps: frame rates.
        interpolated: output frames synthesised between two input frames.
        copied: output frames that are input frames.
        duplicated: output frames between the two sides of a scene cut (copies of the nearer side).
        cuts: input indices i with a scene cut between frames i and i+1.
        backend: description of the interpolator.
        audio_dropped: the input had audio that was not carried over.
        seconds: wall time.
    """

    output: Path | None
    in_frames: int
    out_frames: int
    in_fps: float
    out_fps: float
    interpolated: int = 0
    copied: int = 0
    duplicated: int = 0
    cuts: list[int] = field(default_factory=list)
    backend: str = ""
    audio_dropped: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        cuts = f", {len(self.cuts)} scene cut(s) at input frames {self.cuts[:10]}" if self.cuts else ""
        return (
            f"{self.in_frames} frames @ {self.in_fps:g} fps -> {self.out_frames} frames @ {self.out_fps:g} fps "
            f"({self.interpolated} interpolated, {self.copied} copied, {self.duplicated} duplicated at cuts{cuts}) "
            f"in {self.seconds:.1f} s with {self.backend}"
        )


def check_retime_paths(src: str | os.PathLike, dst: str | os.PathLike, *, option: str = "-o") -> tuple[Path, Path]:
    """The input must be an existing file; the output a video file name (.mp4/.mkv/.mov/.m4v) in an existing,
    writable folder, not the input (:func:`flow.atomic.check_outputs`; each error says which and how to fix
    it)."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"input video {src} does not exist; check the path")
    if src.is_dir():
        raise ValueError(f"input video {src} is a folder; expected a video file (mp4, avi, mkv, mov, ...)")
    check_outputs({option: dst}, inputs=[src], kinds={option: WRITE_SUFFIXES})
    return src, dst


def _count_frames(path: Path) -> int:
    """Exact number of decodable video frames (decoded without colour conversion)."""
    import av

    n = 0
    with av.open(str(path)) as c:
        for _ in c.decode(c.streams.video[0]):
            n += 1
    return n


def _resolve_interpolator(interpolator, backend, weights, device, options) -> tuple[Interpolator, str | None]:
    """The interpolator to run and why ``auto`` chose it (None for one given or named)."""
    if interpolator is not None:
        if not isinstance(interpolator, Interpolator) and callable(interpolator):
            interpolator = interpolator()  # a factory: built now that the input is known to be good
        if not isinstance(interpolator, Interpolator):
            raise TypeError(f"interpolator: expected a flow.interpolate.Interpolator, got {type(interpolator).__name__}")
        return interpolator, None
    return get_interpolator(backend, weights=weights, device=device, with_reason=True, **options)


def retime_frames(
    frames,
    in_fps: float,
    *,
    fps: float | None = None,
    speed: float | None = None,
    frames_out: int | None = None,
    in_frames: int | None = None,
    interpolator=None,
    backend: str = "auto",
    weights: str | None = None,
    device: str = "cpu",
    tta: bool = False,
    cut_detector: SceneCutDetector | bool | None = True,
    result: RetimeResult | None = None,
    **options,
) -> Iterator[torch.Tensor]:
    """Retime a stream of frames; yields output frames one at a time (the streaming core of retime_video).

    Args:
        frames: an iterable of ``(3, H, W)`` float [0, 1] frames (e.g. a :class:`~flow.video.VideoReader`).
        in_fps: the input frame rate.
        fps, speed, frames_out: exactly one target (see :func:`plan_retime`; ``frames_out`` needs ``in_frames``).
        in_frames: the exact input frame count (needed for ``frames_out``).
        interpolator: a ready :class:`~flow.interpolate.Interpolator`; else built from ``backend``/``weights``.
        tta: flip test-time augmentation (2x cost).
        cut_detector: True for a default :class:`SceneCutDetector`, False/None for none, or an instance.
        result: a :class:`RetimeResult` whose counters are filled in as frames go.

    Yields:
        ``(3, H, W)`` float32 frames in [0, 1].

    >>> clip = [torch.full((3, 8, 8), v) for v in (0.0, 0.5, 1.0)]
    >>> out = list(retime_frames(clip, 10, fps=20, backend="dis", cut_detector=False))
    >>> len(out), [round(float(f.mean()), 2) for f in out]
    (5, [0.0, 0.25, 0.5, 0.75, 1.0])
    """
    plan = plan_retime(in_fps, in_frames, fps=fps, speed=speed, frames=frames_out)
    interp, _ = _resolve_interpolator(interpolator, backend, weights, device, options)
    det = SceneCutDetector() if cut_detector is True else (cut_detector or None)
    return _stream(frames, plan, interp, tta, det, result)


def _stream(frames, plan: RetimePlan, interp, tta: bool, det, result: RetimeResult | None) -> Iterator[torch.Tensor]:
    res = result if result is not None else RetimeResult(None, 0, 0, float(plan.in_fps), float(plan.out_fps))
    res.backend = interp.description
    k = 0  # index of the next output frame; it sits at input position k * plan.step
    prev, i = None, -1  # the previous input frame and its index
    for cur in frames:
        cur = _check_frame(cur, prev)
        i += 1
        is_cut = det.update(cur) if det is not None else False
        if prev is not None:
            if is_cut:
                res.cuts.append(i - 1)
            # Every output whose position lies in [i-1, i): t = 0 copies frame i-1, the others (increasing t)
            # are between, made CHUNK at a time so that memory does not grow with the in-betweens per pair.
            ts = []
            while k * plan.step < i:
                ts.append(float(k * plan.step - (i - 1)))
                k += 1
            if ts and ts[0] == 0.0:
                res.copied += 1
                res.out_frames += 1
                yield prev
            inner = [t for t in ts if t > 0.0]
            for j in range(0, len(inner), CHUNK):
                chunk = inner[j:j + CHUNK]
                if is_cut:  # never blend across a cut: the nearer side's frame instead
                    made = [prev if t < 0.5 else cur for t in chunk]
                    res.duplicated += len(chunk)
                else:
                    made = [f[0] for f in interp.interpolate(prev[None], cur[None], chunk, tta=tta)]
                    res.interpolated += len(chunk)
                for f in made:
                    res.out_frames += 1
                    yield f
                del made
        prev = cur
        res.in_frames = i + 1
    if prev is None:
        raise ValueError("the input has no frames; nothing to retime")
    if i < 1:
        raise ValueError("the input has a single frame; retiming needs at least 2 frames")
    if k * plan.step == i:  # a position lands exactly on the last input frame
        res.copied += 1
        res.out_frames += 1
        yield prev


def _check_frame(cur, prev) -> torch.Tensor:
    if not isinstance(cur, torch.Tensor) or cur.ndim != 3 or cur.shape[0] != 3:
        got = tuple(cur.shape) if isinstance(cur, torch.Tensor) else type(cur).__name__
        raise ValueError(f"frames: expected (3, H, W) float tensors in [0, 1], got {got}")
    if not cur.is_floating_point():
        cur = cur.float() / 255.0
    if prev is not None and cur.shape != prev.shape:
        raise ValueError(f"frames: all frames must share one size, got {tuple(prev.shape)} then {tuple(cur.shape)}")
    return cur


def retime_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    fps: float | None = None,
    speed: float | None = None,
    frames: int | None = None,
    interpolator=None,
    backend: str = "auto",
    weights: str | None = None,
    device: str = "cpu",
    tta: bool = False,
    scene_cuts: bool = True,
    progress: bool = True,
    crf: int = 18,
    notify: Callable[[str], None] | None = None,
    **options,
) -> RetimeResult:
    """Retime the video ``src`` into ``dst`` (H.264 .mp4/.mkv/.mov/.m4v), streaming and atomically.

    Args:
        src: input video (anything FFmpeg reads), constant frame rate, at least 2 frames.
        dst: output path; its folder must exist and be writable; must differ from ``src``.
        fps, speed, frames: exactly one target (module docstring; ``speed`` in 0.25 .. 4; at most 16x the
            input's rate and 1000 fps).
        interpolator: a ready :class:`~flow.interpolate.Interpolator`, or a callable returning one (called
            once the input and target are checked, so that their errors come before a network loads); else
            built from ``backend``, ``weights``, ``device`` and ``options`` by
            :func:`flow.interpolate.get_interpolator` (``auto``: the best installed).
        tta: flip test-time augmentation (2x the interpolation cost).
        scene_cuts: detect cuts and duplicate instead of blending across them.
        progress: tqdm bar over output frames.
        crf: x264 quality (18 = visually near-lossless).
        notify: where notices go (the plan, the backend, audio dropped, the time estimate); default: stderr,
            on their own lines above the progress bar.

    Returns:
        A :class:`RetimeResult`.

    Raises:
        ValueError: bad target, variable frame rate, fewer than 2 frames, output = input.
        FileNotFoundError / PermissionError: missing input, missing or unwritable output folder, or
            ``backend="ifnet"`` without a checkpoint (says where it looked and how to install one).

    Nothing is left under ``dst`` when it fails.
    """
    bar = None
    pending: list[str] | None = []  # notices wait until the first pair is done: a bad input gets one line

    def say(msg: str) -> None:
        if pending is not None:
            pending.append(msg)
        elif notify is not None:
            notify(msg)
        elif bar is not None:
            bar.write(msg, file=sys.stderr)  # above the bar, never on its line
        else:
            print(msg, file=sys.stderr)

    def flush() -> None:
        """Print the queued notices, then start the progress bar below them."""
        nonlocal pending, bar
        if pending is None:
            return
        queued, pending = pending, None
        for msg in queued:
            say(msg)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=plan.out_frames, initial=result.out_frames, unit="frame", desc=f"retime ({interp.name})",
                       file=sys.stderr)

    src, dst = check_retime_paths(src, dst)
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf: expected 0 .. 51, got {crf}")
    check_target(fps=fps, speed=speed, frames=frames)
    t_start = time.perf_counter()
    with VideoReader(src) as vr:
        vr.require_constant_rate("retime")
        if not math.isfinite(vr.fps) or vr.fps <= 0:
            raise ValueError(f"{src}: the video stream states no frame rate; cannot place frames in time")
        n = vr.num_frames
        if frames is not None:
            if n is not None:  # the header's count first: refuse a runaway target before decoding anything
                plan_retime(vr.fps, max(n, 2), frames=frames)
            n = _count_frames(src)  # --frames spreads exactly: the header count can be off by a frame or two
        if n is not None and n < 2:
            raise ValueError(f"{src} has {n} frame(s); retiming needs at least 2 frames")
        plan = plan_retime(vr.fps, n, fps=fps, speed=speed, frames=frames)
        interp, reason = _resolve_interpolator(interpolator, backend, weights, device, options)
        say(f"retime: {n if n is not None else '?'} frames @ {vr.fps:g} fps, {vr.width}x{vr.height} (WxH) -> "
            f"{plan.out_frames if plan.out_frames is not None else '?'} frames @ {float(plan.out_fps):g} fps, "
            f"{vr.width}x{vr.height}")
        say(f"retime: backend {interp.name}: {interp.description}" + (f" (auto: {reason})" if reason else ""))
        if vr.has_audio:
            say(f"retime: note: {src} has audio; it is not carried over (the output is video only)")
        for line in vr.notices():
            say(f"retime: note: {line}")
        result = RetimeResult(dst, 0, 0, float(plan.in_fps), float(plan.out_fps), audio_dropped=vr.has_audio)
        try:
            with VideoWriter(dst, float(plan.out_fps), crf=crf, notify=lambda m: say(f"retime: note: {m}")) as vw:
                det = SceneCutDetector() if scene_cuts else None
                t_work, estimated = time.perf_counter(), False
                for out in _stream(vr, plan, interp, tta, det, result):
                    vw.write(out)
                    if bar is not None:
                        bar.update(1)
                    if not estimated and result.in_frames >= 2:
                        # The first pair is done: the input decodes, and its pace tells how long the rest takes.
                        estimated = True
                        flush()  # the bar starts here, counting the frames written so far
                        if plan.out_frames and result.interpolated:
                            left = (time.perf_counter() - t_work) / result.out_frames * (plan.out_frames - result.out_frames)
                            say(f"retime: estimated time: about {_duration(left)} for the remaining "
                                f"{plan.out_frames - result.out_frames} frames (at the pace of the first pair)")
                flush()
        finally:
            if bar is not None:
                bar.close()
                bar = None
    result.seconds = time.perf_counter() - t_start
    return result


def _duration(seconds: float) -> str:
    """A rough, readable duration: '40 s', '3 min', '1.5 h'.

    >>> _duration(12.3), _duration(200), _duration(5400)
    ('12 s', '3.3 min', '1.5 h')
    """
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.2g} min"
    return f"{seconds / 3600:.2g} h"
