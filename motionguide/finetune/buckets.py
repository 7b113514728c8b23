"""Resolution and frame-count buckets: each video trains at the bucket of the nearest aspect ratio among those
whose frame count it holds, and a step's batch comes from one bucket (its clips share a shape), as the peers
bucket (finetrainers' ``--video_resolution_buckets``, musubi-tuner's aspect buckets).

:func:`plan_buckets` assigns the videos, spreads ``clips`` over the buckets by their share of the videos, and
cuts each bucket's clips with :func:`~motionguide.finetune.videos.plan_clips`. A bucket that gets no video, or
fewer clips than a batch, is a one-line :class:`~motionguide.errors.UserError` naming it and the fix.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

from ..errors import UserError
from .videos import ClipSpec, VideoInfo, plan_clips

__all__ = ["assign_buckets", "plan_buckets", "bucket_text"]


def bucket_text(b: tuple[int, int, int]) -> str:
    """``(H, W, F)`` -> ``"WxHxF"`` (as ``--buckets`` writes it)."""
    return f"{b[1]}x{b[0]}x{b[2]}"


def assign_buckets(videos: Sequence[VideoInfo], buckets: Sequence[tuple[int, int, int]], *,
                   stride: int) -> list[list[VideoInfo]]:
    """Per bucket ``(H, W, F)``, the videos that train in it: among the buckets whose ``F`` frames (``stride``
    apart) the video holds, the one of the nearest aspect ratio (log scale), then the longest clips."""
    out: list[list[VideoInfo]] = [[] for _ in buckets]
    for v in videos:
        n = v.num_frames or 0
        fits = [i for i, (_, _, f) in enumerate(buckets) if n >= (f - 1) * stride + 1]
        if not fits:
            continue
        aspect = math.log(v.width / v.height)
        best = min(fits, key=lambda i: (round(abs(aspect - math.log(buckets[i][1] / buckets[i][0])), 6), -buckets[i][2]))
        out[best].append(v)
    return out


def plan_buckets(videos: Sequence[VideoInfo], buckets: Sequence[tuple[int, int, int]], *, stride: int, clips: int,
                 batch_size: int, notice: Callable[[str], None], held: int = 0) -> list[ClipSpec]:
    """``clips`` clips over the buckets (each clip's ``bucket`` set), at least ``batch_size`` training clips
    each; the last ``held`` (held out of training) from the last bucket, sharing no frame with its training
    clips (:func:`~motionguide.finetune.videos.plan_clips`)."""
    groups = assign_buckets(videos, buckets, stride=stride)
    for b, g in zip(buckets, groups):
        if not g:
            raise UserError(f"--buckets: the bucket {bucket_text(b)} gets no clip (no video is nearer its aspect "
                            f"{b[1]}:{b[0]} among the buckets it is long enough for: {b[2]} frames); drop it from "
                            f"--buckets or add such videos")
    used = sum(len(g) for g in groups)
    short = [Path(v.path).name for v in videos if not any(v in g for g in groups)]
    if short:
        notice(f"skipping {len(short)} video(s) shorter than every bucket's clip: {', '.join(short[:5])}")
    # clips per bucket by share of the videos (largest remainders), each at least a batch
    raw = [clips * len(g) / used for g in groups]
    per = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - per[i], reverse=True)[: clips - sum(per)]:
        per[i] += 1
    out: list[ClipSpec] = []
    for i, (b, g, k) in enumerate(zip(buckets, groups, per)):
        h = held if i == len(buckets) - 1 else 0
        if k - h < batch_size:
            raise UserError(f"--buckets: the bucket {bucket_text(b)} gets {k - h} of the {clips - held} training "
                            f"clips, fewer than --batch-size {batch_size} (a batch comes from one bucket); raise "
                            f"--clips or drop it")
        out += plan_clips(g, frames=b[2], stride=stride, clips=k, notice=notice, bucket=i, held=h)
    return out
