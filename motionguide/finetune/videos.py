"""The user's videos: which are readable, where the training clips are cut, and their frames at the
pipeline's size.

* :func:`find_videos`: the readable videos of a folder (each opened and its first frame decoded), each with
  its caption: the UTF-8 text file of the same name beside it (``clip.mp4`` + ``clip.txt``), as the peers'
  folder datasets; or the videos a manifest names with their captions (:mod:`.captions`: a CSV or JSONL
  file). None readable is a one-line :class:`~motionguide.errors.UserError` that says what the folder holds.
* :func:`plan_clips`: ``clips`` windows of ``frames`` frames (``stride`` apart), spread evenly over the
  videos long enough for them, from the frame counts the containers state (no decoding); videos that are
  all too short are an error naming the longest. The held-out ones sit at the end of the last videos, after
  every training window of their video, so that no held-out frame is trained on.
* :func:`read_clips`: decode each video once, up to its last needed frame, and fit every frame to the
  pipeline's ``(H, W)``: scaled to cover it and center-cropped (:func:`fit_frame`), with one notice per video
  whose frames are smaller than that size or of another aspect.

Clips are ``(3, N, H, W)`` float in [0, 1].
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from flow.video import VIDEO_SUFFIXES, VideoReader

from ..errors import UserError
from .captions import is_manifest, read_caption, read_manifest

__all__ = ["VideoInfo", "ClipSpec", "find_videos", "plan_clips", "read_clips", "fit_frame"]

#: frames kept clear of a container's stated end (headers can overstate the count by a frame or two)
_MARGIN = 2


@dataclass(frozen=True)
class VideoInfo:
    """A readable video: its path, file size and time (cache keys), frame size, stated frame count and rate,
    and its caption (None: the run's ``--prompt``)."""

    path: str
    bytes: int
    mtime_ns: int
    width: int
    height: int
    num_frames: int | None
    fps: float
    caption: str | None = None


@dataclass(frozen=True)
class ClipSpec:
    """One training clip: frames ``indices`` of ``video``, in resolution bucket ``bucket``."""

    video: VideoInfo
    indices: tuple[int, ...]
    bucket: int = 0

    def key(self) -> dict:
        v = self.video
        return {"video": v.path, "bytes": v.bytes, "mtime_ns": v.mtime_ns, "indices": list(self.indices)}


def find_videos(folder: str | os.PathLike) -> list[VideoInfo]:
    """The readable videos directly in ``folder`` (sorted by name) with their ``.txt`` captions, or those a
    manifest file (``.csv``, ``.jsonl``) names, in its order."""
    p = Path(folder).expanduser()
    if p.is_file() and is_manifest(p):
        listed = read_manifest(p)
        files, captions = [f for f, _ in listed], {str(f): c for f, c in listed}
    elif not p.is_dir():
        raise UserError(f"--videos {folder}: not a folder or a manifest (.csv, .jsonl); pass the folder that holds "
                        f"your training videos, or a manifest naming them with their captions")
    else:
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        captions = {str(f): read_caption(f.with_suffix(".txt")) for f in files
                    if f.suffix.lower() in VIDEO_SUFFIXES and f.with_suffix(".txt").is_file()}
    found, bad = [], []
    for f in files:
        if f.suffix.lower() not in VIDEO_SUFFIXES:
            continue
        try:
            with VideoReader(f) as vr:
                next(iter(vr))  # the first frame decodes
                st = f.stat()
                found.append(VideoInfo(str(f.resolve()), st.st_size, st.st_mtime_ns, vr.width, vr.height,
                                       vr.num_frames, vr.fps, captions.get(str(f))))
        except (ValueError, OSError, StopIteration):
            bad.append(f.name)
    if not found:
        what = (f"{len(bad)} video file(s) that cannot be decoded ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})"
                if bad else f"{len(files)} file(s), none a video ({', '.join(VIDEO_SUFFIXES)})")
        raise UserError(f"--videos {folder} holds no readable video: {what}; pass a folder of videos FFmpeg can read")
    return found


def plan_clips(videos: list[VideoInfo], *, frames: int, stride: int, clips: int,
               notice: Callable[[str], None], bucket: int = 0, held: int = 0) -> list[ClipSpec]:
    """``clips`` windows of ``frames`` frames, ``stride`` apart, spread evenly over the long-enough videos; the
    last ``held`` of them (held out of training) at the end of the last videos, one per video from the last,
    past every training window of their video."""
    span = (frames - 1) * stride + 1
    usable = [v for v in videos if v.num_frames is not None and v.num_frames >= span]
    if not usable:
        longest = max(videos, key=lambda v: v.num_frames or 0)
        raise UserError(f"every video is shorter than a training clip of {frames} frames"
                        + (f" {stride} apart ({span} frames)" if stride > 1 else "")
                        + f": the longest, {Path(longest.path).name}, has {longest.num_frames or 'an unstated number of'} "
                        f"frames; pass longer videos or a smaller --frames")
    short = [Path(v.path).name for v in videos if v not in usable]
    if short:
        notice(f"skipping {len(short)} video(s) shorter than {span} frames: {', '.join(short[:5])}")
    n_train = clips - held
    per = [n_train // len(usable) + (1 if i < n_train % len(usable) else 0) for i in range(len(usable))]
    hold = [held // len(usable) + (1 if i < held % len(usable) else 0) for i in range(len(usable))][::-1]
    train, out_held = [], []
    for v, k, h in zip(usable, per, hold):
        last = max(0, v.num_frames - span - _MARGIN)
        room = last - h * span  # the last start of a training window: its frames end before the held ones
        if h and (room < 0 if k else last < (h - 1) * span):
            raise UserError(f"--validation-clips {held}: {Path(v.path).name} has {v.num_frames} frames, too few for "
                            f"{k} training and {h} held-out clip(s) of {span} frames that share none; pass longer "
                            f"or more videos, or fewer --clips or --validation-clips")
        out_held += [ClipSpec(v, tuple(last - j * span + i * stride for i in range(frames)), bucket) for j in range(h)]
        for j in range(k):
            start = round(j * room / (k - 1)) if k > 1 else room // 2
            train.append(ClipSpec(v, tuple(start + i * stride for i in range(frames)), bucket))
    return train + out_held


def fit_frame(frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(3, h, w)`` -> ``(3, H, W)``: scaled (antialiased bilinear) to cover ``size``, then center-cropped."""
    h, w = frame.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return frame
    s = max(th / h, tw / w)
    nh, nw = max(th, round(h * s)), max(tw, round(w * s))
    x = F.interpolate(frame[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[:, top:top + th, left:left + tw].clamp(0, 1)


def _fit_notice(v: VideoInfo, size: tuple[int, int]) -> str | None:
    th, tw = size
    name = Path(v.path).name
    smaller = v.height < th or v.width < tw
    aspect = abs(v.width * th - v.height * tw) > max(v.width, tw)  # aspects differ by more than a pixel
    if smaller:
        return (f"{name} is {v.width}x{v.height} (WxH), smaller than the pipeline's {tw}x{th}: its frames are "
                f"upscaled{' and center-cropped' if aspect else ''} (training on upscaled frames teaches blur)")
    if aspect:
        return f"{name} is {v.width}x{v.height} (WxH), the pipeline makes {tw}x{th}: its frames are scaled and center-cropped"
    return None


def read_clips(specs: list[ClipSpec], size: tuple[int, int], *,
               notice: Callable[[str], None]) -> list[torch.Tensor | None]:
    """The frames of each clip, ``(3, N, H, W)`` float in [0, 1]; None where the video ended early."""
    out: list[torch.Tensor | None] = [None] * len(specs)
    by_video: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        by_video.setdefault(s.video.path, []).append(i)
    for path, idx in by_video.items():
        v = specs[idx[0]].video
        msg = _fit_notice(v, size)
        if msg:
            notice(msg)
        wanted = {f for i in idx for f in specs[i].indices}
        last = max(wanted)
        frames: dict[int, torch.Tensor] = {}
        with VideoReader(path) as vr:
            for j, fr in enumerate(vr):
                if j in wanted:
                    frames[j] = fit_frame(fr, size)
                if j >= last:
                    break
        for i in idx:
            ind = specs[i].indices
            if all(f in frames for f in ind):
                out[i] = torch.stack([frames[f] for f in ind], dim=1)
        missing = sum(out[i] is None for i in idx)
        if missing:
            notice(f"{Path(path).name} ended before its stated {v.num_frames} frames: {missing} clip(s) dropped")
    return out
