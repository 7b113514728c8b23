"""Real footage cut into clips: the videos and frame folders to read, and non-overlapping clips of
``CLIP_FRAMES`` consecutive frames that never cross a scene cut, area-resized to ``MAX_SIZE`` at most."""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

try:  # ``_common`` with benchmarks/ on sys.path (a script run from there), else ``benchmarks._common``
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from flow.io import IMAGE_SUFFIXES, list_frames, read_image  # noqa: E402
from flow.retime import SceneCutDetector  # noqa: E402
from flow.video import VideoReader  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: the evaluation data (``../shared/data`` beside the checkout unless ``MOTIONGUIDE_DATA`` names it)
DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))
CLIP_FRAMES = 9  # speed: 5 / 3 kept frames -> 9; extend: K + N
FRAME_FOLDER_FPS = 24.0
#: clips per video by default: with the Sintel sequence's one, 5 clips from the default footage, enough for a
#: standard error while the run stays near 15 minutes on a shared 2-core CPU (a 640x360 clip costs 1.5-3 min:
#: 9 job runs per speed job at the input's size, the IFNet peer, scoring)
CLIPS = 2
#: the longer side clips are area-resized to at most by default: the jobs' guidance runs at the input's
#: resolution (the speed job's IFNet pass costs about 10 CPU-seconds per 1280x720 pair here), so 720p clips
#: would take most of the run's time budget
MAX_SIZE = 640


@dataclass
class Source:
    """A video file or a folder of frames (``frames`` = its image paths)."""

    name: str
    path: Path
    fps: float
    frames: list | None = None  # image paths of a frame folder; None for a video file

    def iter_frames(self) -> Iterator[torch.Tensor]:
        """``(3, H, W)`` float [0, 1] frames in order."""
        if self.frames is not None:
            for p in self.frames:
                yield read_image(p)
            return
        with VideoReader(self.path) as vr:
            yield from vr


@dataclass
class Clip:
    """``frames``: ``(CLIP_FRAMES, 3, H, W)`` consecutive real frames of ``source`` from frame ``start``."""

    source: str
    start: int
    fps: float
    frames: torch.Tensor

    @property
    def name(self) -> str:
        return f"{self.source}@{self.start}"


def _probe_video(path: Path) -> Source | str:
    """A Source for a readable video, else the reason it is not one."""
    try:
        with VideoReader(path) as vr:
            fps = vr.fps
            if vr.variable_frame_rate:
                common.notice(f"{path.name}: variable frame rate; frames are taken as decoded (timestamps ignored)")
    except (ValueError, OSError) as e:
        return str(e).split("\n")[0]
    return Source(path.name, path, fps if math.isfinite(fps) and fps > 0 else FRAME_FOLDER_FPS)


def find_sources(folder: Path | None) -> list[Source]:
    """The videos and frame folders to cut clips from: the default footage (``folder=None``) or every video
    file, and every folder of images, in ``folder`` (the folder itself when it holds images)."""
    def frame_folder(d: Path) -> Source | None:
        try:
            files = list_frames(d)
        except (ValueError, FileNotFoundError):
            return None
        return Source(d.name + "/", d, FRAME_FOLDER_FPS, files)

    if folder is None:
        out = []
        vids = DATA / "videos"
        for p in sorted(vids.iterdir()) if vids.is_dir() else []:
            s = _probe_video(p)
            out.append(s) if isinstance(s, Source) else common.notice(f"skip {p}: {s}")
        s = frame_folder(DATA / "sintel_frames")
        if s is not None:
            out.append(s)
        return out
    folder = Path(folder)
    if not folder.is_dir():
        raise common.UserError(f"--videos {folder}: not a folder; expected a folder of videos or of frame folders")
    out = []
    here = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in here):
        s = frame_folder(folder)
        if s is not None:
            out.append(s)
    for p in here:
        if p.is_dir():
            s = frame_folder(p)
            if s is not None:
                out.append(s)
            else:
                common.notice(f"skip {p.name}/: no image files in it")
        elif p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES:
            s = _probe_video(p)
            out.append(s) if isinstance(s, Source) else common.notice(f"skip {p.name}: not a readable video ({s})")
    if not out:
        raise common.UserError(f"--videos {folder}: no readable video or frame folder in it; expected video files "
                        f"(.mp4, .avi, .mkv, ...) or folders of frames (.png, .jpg, ...)")
    return out


def choose_starts(num_frames: int, cuts: set[int], length: int, n: int, seed: int) -> list[int]:
    """Up to ``n`` non-overlapping clip starts in a video of ``num_frames`` frames, no clip across a cut
    (``c`` in ``cuts``: a cut between frames c-1 and c). Seed 0: nearest the middle of ``n`` equal parts;
    other seeds: random places.

    >>> choose_starts(40, set(), 9, 4, 0)
    [0, 10, 20, 30]
    >>> choose_starts(20, {10}, 9, 4, 0)
    [0, 10]
    """
    valid = [s for s in range(num_frames - length + 1) if not any(s < c < s + length for c in cuts)]
    n = min(n, num_frames // length)
    if seed == 0:
        targets = [(i + 0.5) * num_frames / n - length / 2 for i in range(n)] if n else []
    else:
        rng = random.Random(seed)
        targets = [rng.uniform(0, num_frames - length) for _ in range(n)]
    chosen: list[int] = []
    for t in targets:
        free = [s for s in valid if all(abs(s - c) >= length for c in chosen)]
        if not free:
            break
        chosen.append(min(free, key=lambda s: (abs(s - t), s)))
    return sorted(chosen)


def read_clips(src: Source, n: int, seed: int, length: int = CLIP_FRAMES, max_size: int = 0,
               starts: list[int] | None = None) -> list[Clip]:
    """``n`` clips of ``length`` frames from ``src`` (two passes: count frames and find cuts, then read the
    chosen frames only, so a long video never has to fit in memory). Short videos give none (a notice).
    ``max_size`` > 0: frames whose longer side exceeds it are area-resized to fit (a notice). ``starts``: the
    clips' first frames, given (``n`` and ``seed`` unused); one past the end or across a cut is a UserError."""
    det = SceneCutDetector()
    cuts: set[int] = set()
    count, size, size_change = 0, None, None
    try:
        for i, f in enumerate(src.iter_frames()):
            if size is None:
                size = tuple(f.shape)
            elif tuple(f.shape) != size and size_change is None:
                size_change = i
            if det.update(f):
                cuts.add(i)
            count = i + 1
    except ValueError as e:
        common.notice(f"{src.name}: {e}; using the {count} frames before it")
    if size_change is not None:
        common.notice(f"{src.name}: the frame size changes at frame {size_change}; only the frames before it are used")
        count = size_change
    if count < length:
        common.notice(f"skip {src.name}: {count} frames, fewer than a clip's {length}")
        return []
    if starts is not None:
        bad = [s for s in starts if s < 0 or s + length > count or any(s < c < s + length for c in cuts)]
        if bad:
            raise common.UserError(f"--starts {src.name}={','.join(map(str, bad))}: a clip of {length} frames there "
                                   f"runs past the {count} frames or across a scene cut {sorted(cuts)}")
        starts = sorted(set(starts))
    else:
        starts = choose_starts(count, cuts, length, n, seed)
    if cuts:
        common.notice(f"{src.name}: scene cut(s) before frame(s) {sorted(cuts)}; no clip crosses one")
    if not starts:
        common.notice(f"skip {src.name}: no {length} consecutive frames without a scene cut")
        return []
    want = {s + d for s in starts for d in range(length)}
    got: dict[int, torch.Tensor] = {}
    for i, f in enumerate(src.iter_frames()):
        if i in want:
            got[i] = f
        if i >= max(want):
            break
    clips = [Clip(src.name, s, src.fps, torch.stack([got[s + d] for d in range(length)])) for s in starts]
    h, w = clips[0].frames.shape[-2:]
    if max_size and max(h, w) > max_size:
        size = (max(2, round(h * max_size / max(h, w))), max(2, round(w * max_size / max(h, w))))
        common.notice(f"{src.name}: {w}x{h} frames area-resized to {size[1]}x{size[0]} (WxH), the input of every method "
                f"(--max-size 0 keeps them)")
        for c in clips:
            c.frames = F.interpolate(c.frames, size=size, mode="area")
    return clips

