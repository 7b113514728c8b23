"""``motionguide retime``: change a video's frame rate or speed by flow-based interpolation, streaming.

``motionguide retime IN.mp4 -o OUT.mp4 (--fps F | --speed S | --frames N) [--backend ...] [--weights PATH]``
"""
from __future__ import annotations

import argparse
import sys

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

notes: frames are never blended across a scene cut (the nearer side is repeated instead); audio is not
carried over (a notice says so); variable-frame-rate input is refused with the ffmpeg command that
converts it; memory does not grow with the video's length. Output: H.264 (.mp4/.mkv/.mov), written
atomically (nothing is left behind on error or Ctrl-C).
"""


def register(subparsers) -> None:
    from motionguide.commands.interpolate_cmd import add_backend_arguments

    p = subparsers.add_parser(
        "retime",
        help="change a video's frame rate or speed (slow motion) by interpolation",
        description=(
            "Retime a video by flow-based frame interpolation, streaming (memory flat in video length).\n"
            "  --fps F      new frame rate, same duration\n"
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
    p.add_argument("--no-scene-cuts", action="store_true", help="do not detect scene cuts (always interpolate)")
    p.add_argument("--crf", type=int, default=18, metavar="Q", help="x264 quality 0 .. 51 (default 18, near-lossless)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from flow.retime import check_retime_paths, plan_retime, retime_video
    from motionguide.commands.interpolate_cmd import build_interpolator

    src, dst = check_retime_paths(args.input, args.output)  # before the network loads (cheap errors first)
    if dst.suffix.lower() not in (".mp4", ".mkv", ".mov", ".m4v"):
        raise ValueError(f"-o {dst}: expected a video file name ending in .mp4, .mkv, .mov or .m4v")
    if not 0 <= args.crf <= 51:
        raise ValueError(f"--crf must be 0 .. 51, got {args.crf}")
    # Validate the target before loading a network (cheap errors first).
    plan_retime(25.0, 100, fps=args.fps, speed=args.speed, frames=args.frames)
    interp = build_interpolator(args, announce=False)  # retime_video announces it
    result = retime_video(
        src,
        dst,
        fps=args.fps,
        speed=args.speed,
        frames=args.frames,
        interpolator=interp,
        tta=args.tta,
        scene_cuts=not args.no_scene_cuts,
        progress=not args.no_progress,
        crf=args.crf,
        notify=lambda msg: print(msg, file=sys.stderr),
    )
    print(f"{dst}: {result.summary()}")
    return 0
