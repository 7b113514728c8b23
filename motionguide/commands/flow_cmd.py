"""``motionguide flow``: optical flow between two frames, or between every consecutive pair of a clip.

Two forms:

* ``motionguide flow FRAME0 FRAME1 -o OUT.flo``: one flow (frame 0 -> frame 1), written as Middlebury
  ``.flo`` (or ``.npy``), optionally a ``--viz`` PNG (frames, frame 1 warped back onto frame 0, flow colours).
* ``motionguide flow CLIP -o DIR``: CLIP is a video file or a folder of frames; DIR receives
  ``flow_000000.flo`` (frame 0 -> 1), ``flow_000001.flo`` (1 -> 2), ...; frames are streamed, never all held
  in memory. DIR appears complete or not at all (written under a temporary name, renamed at the end).

Every output is written atomically: on any error the command exits non-zero and leaves no partial file.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

_EPILOG = """\
examples:
  # one pair, default method (DIS 'balanced'), with a picture to check it
  motionguide flow frame_0002.png frame_0003.png -o flow.flo --viz flow.png

  # OpenCV's own DIS MEDIUM, or the fast two-pass preset used for interpolation
  motionguide flow a.png b.png -o ab.flo --method dis --preset medium
  motionguide flow a.png b.png -o ab.flo --preset swift

  # RAFT (torchvision): cached pretrained weights, a local checkpoint, or random weights (testing only)
  motionguide flow a.png b.png -o ab.flo --method raft_large --num-flow-updates 24
  motionguide flow a.png b.png -o ab.flo --method raft_small --weights raft_small_C_T_V2-01064c6d.pth

  # every consecutive pair of a video (or a folder of frames) into a folder, with a progress bar
  motionguide flow clip.mp4 -o clip_flows/ --max-frames 100
  motionguide flow frames_dir/ -o flows/ --bidirectional --format npy

DIS presets (all OpenCV, CPU): ultrafast, fast, medium = OpenCV's presets unchanged; swift = ULTRAFAST then
FAST with 4x4 patches (fast, for interpolation); balanced (default) = ULTRAFAST then MEDIUM with 4x4
patches, better than MEDIUM on all Sintel test pairs, large motions most; quality = balanced down to full
resolution plus variational refinement (slowest, most accurate).

flow files: (2, H, W) float32 pixels, channel 0 = dx (right), channel 1 = dy (down); frame 0 at x matches
frame 1 at x + flow(x). Read them with flow.io.read_flow.
"""

_IMAGE = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def register(subparsers) -> None:
    from flow.estimators import DEFAULT_DIS_PRESET, DIS_PRESETS, available_estimators

    p = subparsers.add_parser(
        "flow",
        help="optical flow between two frames, or between consecutive frames of a video",
        description=(
            "Estimate optical flow.\n"
            "  two images:             the flow FRAME0 -> FRAME1 into one .flo/.npy file\n"
            "  one video or folder:    one flow file per consecutive pair, into a new folder\n"
            "Outputs are written atomically: on error the command exits non-zero and leaves nothing behind."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="FRAME0 FRAME1 (two images), or one VIDEO or FRAME FOLDER")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="pair: the flow file (.flo or .npy); clip: a new (or empty) folder")
    p.add_argument("--method", default="dis", choices=available_estimators(), help="flow estimator (default: dis)")
    p.add_argument("--preset", default=None, choices=sorted(DIS_PRESETS),
                   help=f"dis only: accuracy/speed preset (default: {DEFAULT_DIS_PRESET})")
    p.add_argument("--weights", default=None, metavar="PATH|random|default",
                   help="raft_* only: a local checkpoint (.pth/.safetensors), 'default' = torchvision's cached "
                        "weights (the default), or 'random' (untrained, for testing)")
    p.add_argument("--num-flow-updates", type=int, default=None, metavar="N",
                   help="raft_* only: refinement iterations (default 12; 24-32 for best accuracy)")
    p.add_argument("--device", default="cpu", help="raft_* only: torch device, e.g. cuda (default: cpu)")
    p.add_argument("--viz", default=None, metavar="PNG",
                   help="pair only: also write a picture: frame 0, frame 1, frame 1 warped onto frame 0, flow colours")
    p.add_argument("--bidirectional", action="store_true",
                   help="clip only: also write the backward flows back_NNNNNN.flo (frame N+1 -> N)")
    p.add_argument("--format", default="flo", choices=("flo", "npy"), help="clip only: flow file type (default: flo)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="clip only: read at most N frames")
    p.add_argument("--batch-size", type=int, default=4, metavar="N", help="clip only: pairs per estimator call (default: 4)")
    p.add_argument("--no-progress", action="store_true", help="clip only: no progress bar")
    p.set_defaults(func=run)


def _user_error(msg: str) -> Exception:
    from motionguide.cli import UserError

    return UserError(msg)


def _build_estimator(args):
    from flow.estimators import get_estimator

    options = {}
    if args.method == "dis":
        if args.preset is not None:
            options["preset"] = args.preset
    elif args.preset is not None:
        raise _user_error(f"--preset applies to --method dis only (got --method {args.method}); drop --preset")
    if args.method.startswith("raft"):
        if args.num_flow_updates is not None:
            options["num_flow_updates"] = args.num_flow_updates
    else:
        if args.num_flow_updates is not None:
            raise _user_error(f"--num-flow-updates applies to raft_* methods only (got --method {args.method})")
        if args.weights is not None:
            raise _user_error(
                f"--weights applies to raft_* methods only; {args.method} needs no weights (drop --weights)"
            )
        if args.device != "cpu":
            raise _user_error(f"{args.method} runs in OpenCV on the CPU; --device {args.device} needs a raft_* method")
    weights = args.weights if args.method.startswith("raft") else None
    return get_estimator(args.method, weights=weights, device=args.device, **options)


def run(args) -> int:
    inputs = [Path(p) for p in args.inputs]
    if len(inputs) > 2:
        raise _user_error(
            f"expected FRAME0 FRAME1 (two images) or one VIDEO/FOLDER, got {len(inputs)} inputs; "
            "for many frames pass their folder"
        )
    for p in inputs:
        if not p.exists():
            raise FileNotFoundError(f"input {p} does not exist; check the path")
    if len(inputs) == 2:
        return _run_pair(args, inputs[0], inputs[1])
    return _run_clip(args, inputs[0])


# ------------------------------------------------------------------------------------------- pair


def _run_pair(args, p0: Path, p1: Path) -> int:
    from flow.atomic import check_output_path
    from flow.io import read_image, write_flow
    from flow.viz import save_strip
    from flow.warp import backward_warp

    for p in (p0, p1):
        if p.is_dir() or p.suffix.lower() not in _IMAGE:
            raise _user_error(
                f"two inputs are read as two image frames, but {p} is "
                f"{'a folder' if p.is_dir() else 'not an image (' + (p.suffix or 'no suffix') + ')'}; "
                f"expected image files ({', '.join(_IMAGE)}), or pass one video/folder for the clip form"
            )
    for name, flag in (("--bidirectional", args.bidirectional), ("--max-frames", args.max_frames is not None)):
        if flag:
            raise _user_error(f"{name} applies to the clip form (one VIDEO or FOLDER input) only")
    out = Path(args.output)
    if out.suffix.lower() not in (".flo", ".npy"):
        raise _user_error(f"-o {out}: expected a .flo or .npy file for a pair of frames, got {out.suffix or 'no suffix'!r}")
    check_output_path(out, inputs=(p0, p1))
    if args.viz is not None:
        viz = Path(args.viz)
        if viz.suffix.lower() not in _IMAGE:
            raise _user_error(f"--viz {viz}: expected an image file name such as flow.png")
        check_output_path(viz, inputs=(p0, p1))
        if viz.resolve() == out.resolve():
            raise _user_error("--viz and -o name the same file; choose two names")

    est = _build_estimator(args)  # before reading: a missing-weights error should come first
    f0, f1 = read_image(p0), read_image(p1)
    if f0.shape != f1.shape:
        raise _user_error(
            f"{p0} is {f0.shape[2]}x{f0.shape[1]} but {p1} is {f1.shape[2]}x{f1.shape[1]} (W x H); "
            "the two frames must have the same size (resize one of them first)"
        )
    t = time.perf_counter()
    flow = est(f0[None], f1[None])
    dt = time.perf_counter() - t
    write_flow(out, flow[0])
    mag = flow[0].norm(dim=0)
    print(
        f"{out}: flow {f0.shape[2]}x{f0.shape[1]} ({est.name}{'/' + est.preset if hasattr(est, 'preset') else ''}), "
        f"mean |flow| {float(mag.mean()):.2f} px, max {float(mag.max()):.2f} px, {dt:.2f} s"
    )
    if args.viz is not None:
        warped = backward_warp(f1[None], flow)[0]
        save_strip(args.viz, [[f0, f1], [warped, flow[0]]])
        print(f"{args.viz}: frame 0 | frame 1 / frame 1 warped onto frame 0 | flow colours")
    return 0


# ------------------------------------------------------------------------------------------- clip


def _frame_source(src: Path, max_frames: int | None):
    """(iterator of (3, H, W) frames, frame count or None, description)."""
    from flow.io import list_frames, read_image
    from flow.video import VideoReader

    if src.is_dir():
        files = list_frames(src)
        if max_frames is not None:
            files = files[:max_frames]

        def it():
            first = None
            for f in files:
                img = read_image(f)
                if first is None:
                    first = img.shape
                elif img.shape != first:
                    raise ValueError(
                        f"{f}: frame size {tuple(img.shape[-2:])} differs from the first frame's {tuple(first[-2:])}"
                    )
                yield img

        return contextlib.nullcontext(), it(), len(files), f"{len(files)} frames in {src}"
    if src.suffix.lower() in _IMAGE:
        raise _user_error(
            f"one input is read as a clip, but {src} is a single image; pass FRAME0 FRAME1 for a pair of images"
        )
    vr = VideoReader(src)
    n = vr.num_frames
    if max_frames is not None:
        n = min(n, max_frames) if n is not None else max_frames

    def it():
        for i, frame in enumerate(vr):
            if max_frames is not None and i >= max_frames:
                break
            yield frame

    return vr, it(), n, f"{src} ({vr.width}x{vr.height}, {vr.fps:.3g} fps, {vr.num_frames or '?'} frames)"


def _run_clip(args, src: Path) -> int:
    import torch

    from flow.estimators import bidirectional_flow
    from flow.io import write_flow

    if args.viz is not None:
        raise _user_error("--viz applies to a pair of frames only; for a clip, look at single pairs")
    if args.max_frames is not None and args.max_frames < 2:
        raise _user_error(f"--max-frames must be at least 2 (a flow needs two frames), got {args.max_frames}")
    if args.batch_size < 1:
        raise _user_error(f"--batch-size must be positive, got {args.batch_size}")
    out = Path(args.output)
    if out.suffix.lower() in (".flo", ".npy"):
        raise _user_error(
            f"-o {out}: one input is a clip, whose flows go into a folder; name a folder (e.g. -o flows/), "
            "or pass FRAME0 FRAME1 for a single flow file"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise _user_error(f"-o {out}: exists and is not an empty folder; choose a new folder name or remove it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"-o {out}: parent folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"-o {out}: parent folder {parent} is not writable")
    with contextlib.suppress(ValueError):
        if src.is_dir() and out.resolve().is_relative_to(src.resolve()):
            raise _user_error(f"-o {out} is inside the input folder {src}; choose a folder outside it")

    est = _build_estimator(args)
    ext = "." + args.format
    reader, frames, n, desc = _frame_source(src, args.max_frames)
    # Everything goes into a hidden sibling folder, renamed to OUT only when the whole clip is done.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=parent))
    bar = None
    written = 0
    try:
        with reader:
            if not args.no_progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=(n - 1) if n else None, unit="pair", desc=f"flow {est.name}", file=sys.stderr)
            prev = None
            batch0, batch1 = [], []

            def flush():
                nonlocal written
                a, b = torch.stack(batch0), torch.stack(batch1)
                if args.bidirectional:
                    fw, bw = bidirectional_flow(est, a, b)
                else:
                    fw, bw = est(a, b), None
                for k in range(fw.shape[0]):
                    write_flow(tmp / f"flow_{written:06d}{ext}", fw[k])
                    if bw is not None:
                        write_flow(tmp / f"back_{written:06d}{ext}", bw[k])
                    written += 1
                if bar is not None:
                    bar.update(fw.shape[0])
                batch0.clear()
                batch1.clear()

            for frame in frames:
                if prev is not None:
                    if frame.shape != prev.shape:
                        raise ValueError(
                            f"frame {written + len(batch0) + 1} of {src} is {tuple(frame.shape[-2:])}, the previous "
                            f"{tuple(prev.shape[-2:])}; all frames must share one size"
                        )
                    batch0.append(prev)
                    batch1.append(frame)
                    if len(batch0) == args.batch_size:
                        flush()
                prev = frame
            if batch0:
                flush()
        if bar is not None:
            bar.close()
            bar = None
        if written == 0:
            raise ValueError(f"{src}: fewer than two frames could be read, so there is no flow to write")
        if out.exists():
            out.rmdir()  # an empty folder the user made beforehand
        os.replace(tmp, out)
    except BaseException:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{out}: {written} flows ({est.name}) from {desc}" + ("; forward and backward" if args.bidirectional else ""))
    return 0
