"""``motionguide retime``: change a video's frame rate or speed by flow-based interpolation, streaming.

``motionguide retime IN.mp4 -o OUT.mp4 (--fps F | --speed S | --frames N) [--backend ...] [--weights PATH]``

Every argument is checked (:func:`_check_arguments`) before a frame is decoded or a network loads; the
bounds that need the input's frame rate are checked from its header, still before any work.
"""
from __future__ import annotations

import argparse

_EPILOG = """\
examples:
  # frame-rate conversion (same duration): 10 fps -> 30 fps gives 3 frames per input frame (minus the last two)
  motionguide retime vtest.avi -o vtest30.mp4 --fps 30
  motionguide retime clip_24.mp4 -o clip_60.mp4 --fps 60
  motionguide retime clip_30.mp4 -o clip_25.mp4 --fps 25

  # 4x slow motion (same fps, 4x longer), or twice as fast
  motionguide retime clip.mp4 -o slow.mp4 --speed 0.25
  motionguide retime clip.mp4 -o fast.mp4 --speed 2

  # exactly 49 frames over the same duration (e.g. for a video model)
  motionguide retime clip.mp4 -o clip49.mp4 --frames 49

  # the fast weight-free backend, one CPU thread (often faster on a busy machine)
  motionguide retime clip.mp4 -o out.mp4 --fps 60 --backend dis --threads 1

input: one video file FFmpeg reads (mp4, avi, mkv, mov, webm, ...), constant frame rate, at least 2 frames.
output: an H.264 video (.mp4, .mkv, .mov or .m4v) at the input's resolution (W x H); --fps F: F fps, same
duration; --speed S: the input's fps, duration / S; --frames N: N frames, same duration. The command prints
the output's frame count, fps and size before it starts, and an estimate of the time after the first pair.

limits: at most 16x the input's frame rate and at most 1000 fps per run (for more, retime the output again);
--speed 0.25 .. 4.

notes: frames are never blended across a scene cut (the nearer side is repeated instead); audio is not
carried over (a notice says so); variable-frame-rate input is refused with the ffmpeg command that
converts it; memory does not grow with the video's length. The output is written atomically (nothing is
left behind on error, Ctrl-C or SIGTERM).
"""


def register(subparsers) -> None:
    from ._outputs import add_overwrite_argument
    from .interpolate_cmd import add_backend_arguments

    p = subparsers.add_parser(
        "retime",
        help="change a video's frame rate or speed (slow motion) by interpolation",
        description=(
            "Retime a video by flow-based frame interpolation, streaming (memory flat in video length).\n"
            "  --fps F      new frame rate, same duration (at most 16x the input's, at most 1000)\n"
            "  --speed S    0.25 .. 4: motion speed at the same frame rate (0.25 = 4x slow motion)\n"
            "  --frames N   exactly N frames over the same duration"
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN", help="input video (mp4, avi, mkv, mov, ...), constant frame rate")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output video (.mp4, .mkv, .mov, .m4v)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--fps", type=float, metavar="F", help="output frame rate (duration unchanged)")
    target.add_argument("--speed", type=float, metavar="S", help="speed factor 0.25 .. 4 (fps unchanged)")
    target.add_argument("--frames", type=int, metavar="N", help="exact output frame count (duration unchanged)")
    add_backend_arguments(p)
    add_overwrite_argument(p)
    p.add_argument("--no-scene-cuts", action="store_true", help="do not detect scene cuts (always interpolate)")
    p.add_argument("--crf", type=int, default=18, metavar="Q", help="x264 quality 0 .. 51 (default: 18, near-lossless)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check_arguments(args):
    """Every check that needs no decoding: paths, target, quality, backend. Returns (src, dst)."""
    from pathlib import Path

    from flow.atomic import check_outputs
    from flow.retime_plan import check_target

    from ._inputs import check_video_file
    from .interpolate_cmd import check_backend_arguments

    src, dst = Path(args.input), Path(args.output)
    check_video_file(src, "input video")
    check_outputs({"-o": dst}, inputs=[src], kinds={"-o": "video"}, overwrite=args.overwrite)
    check_target(fps=args.fps, speed=args.speed, frames=args.frames)
    if not 0 <= args.crf <= 51:
        raise ValueError(f"--crf must be 0 .. 51, got {args.crf}")
    check_backend_arguments(args)
    return src, dst


def _inbetweens_per_pair(args, fps_in: float, n_in: int | None) -> int:
    """The most frames one interpolation call makes (at most flow.retime.CHUNK), for the memory estimate."""
    import math

    from flow.retime import CHUNK

    if args.fps is not None:
        ratio = args.fps / fps_in if fps_in > 0 else CHUNK
    elif args.speed is not None:
        ratio = 1.0 / args.speed
    else:
        ratio = (args.frames - 1) / max(1, (n_in or 2) - 1)
    if not math.isfinite(ratio):  # no rate in the header: retime_video refuses it with its own message
        return CHUNK
    return max(1, min(CHUNK, math.ceil(ratio)))


def _bounded(args, width: int, height: int, n_t: int, built: list):
    """The interpolator factory, with the memory bound checked once the interpolator is built (appended to
    ``built`` with why auto chose it, for the messages)."""
    from motionguide.commands.interpolate_cmd import build_interpolator, check_memory_bound

    def make():
        interp, reason = build_interpolator(args, announce=False)
        check_memory_bound(args, interp, width, height, n_t)
        built.append((interp, reason))
        return interp

    return make


def _notices(args, built: list):
    """retime_video's notices, with its backend line in the options' words."""
    import sys

    from tqdm.auto import tqdm

    from .interpolate_cmd import backend_line

    def say(msg: str) -> None:
        if msg.startswith("retime: backend ") and built:
            msg = "retime: " + backend_line(args, *built[-1])
        tqdm.write(msg, file=sys.stderr)  # above a progress bar, never on its line

    return say


def run(args) -> int:
    src, dst = _check_arguments(args)  # before the libraries load: an argument error prints at once
    from flow.retime import retime_video
    from flow.video import VideoReader

    built: list = []  # (the interpolator, why auto chose it), once retime_video has built it
    with VideoReader(src) as vr:  # the header only: frame size and rate for the memory bound
        width, height, fps_in, n_in = vr.width, vr.height, vr.fps, vr.num_frames
    result = retime_video(
        src,
        dst,
        fps=args.fps,
        speed=args.speed,
        frames=args.frames,
        # Built by retime_video once the input's header has passed its checks (cheap errors first).
        interpolator=_bounded(args, width, height, _inbetweens_per_pair(args, fps_in, n_in), built),
        notify=_notices(args, built),
        tta=args.tta,
        scene_cuts=not args.no_scene_cuts,
        progress=not args.no_progress,
        crf=args.crf,
    )
    if built:
        from .interpolate_cmd import short_name

        result.backend = short_name(built[-1][0])
    print(f"{dst}: {result.summary()}")
    return 0
