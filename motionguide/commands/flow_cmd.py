"""``motionguide flow``: optical flow between two frames, or between every consecutive pair of a clip.

Two forms:

* ``motionguide flow FRAME0 FRAME1 -o OUT.flo``: one flow (frame 0 -> frame 1), written as Middlebury
  ``.flo`` (or ``.npy``), optionally a ``--viz`` PNG (frames, frame 1 warped back onto frame 0, flow colours).
* ``motionguide flow CLIP -o DIR``: CLIP is a video file or a folder of frames; DIR receives
  ``flow_000000.flo`` (frame 0 -> 1), ``flow_000001.flo`` (1 -> 2), ...; frames are streamed, never all held
  in memory. DIR appears complete or not at all (written under a temporary name, renamed at the end).

Every argument is checked (:func:`_check_arguments`) before a frame is decoded or a network loads. Every
output is written atomically: on any error the command exits non-zero and leaves no partial file.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
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

inputs: two images of the same size (.png, .jpg, .bmp, .tif, .webp, .ppm, .pgm; grey, RGB or RGBA: alpha is
dropped with a notice; 16-bit is read at full precision with a notice), or one video (anything FFmpeg reads)
or one folder of images (natural order: frame_2 before frame_10).

output: flow files at the frames' resolution (W x H): (2, H, W) float32 pixels, channel 0 = dx (right),
channel 1 = dy (down); frame 0 at x matches frame 1 at x + flow(x). Read them with flow.io.read_flow. A pair
writes one file (and the --viz PNG, 2W x 2H); a clip of N frames writes N-1 files flow_000000 .. (and N-1
back_ files with --bidirectional) into a new folder.
"""


def register(subparsers) -> None:
    from ._choices import DEFAULT_DIS_PRESET, DIS_PRESETS, ESTIMATORS
    from ._outputs import add_overwrite_argument

    p = subparsers.add_parser(
        "flow",
        help="optical flow between two frames, or between consecutive frames of a video",
        description=(
            "Estimate optical flow, at the frames' resolution.\n"
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
    p.add_argument("--method", default="dis", choices=ESTIMATORS, help="flow estimator (default: dis)")
    p.add_argument("--preset", default=None, choices=DIS_PRESETS,
                   help=f"dis only: accuracy/speed preset (default: {DEFAULT_DIS_PRESET})")
    p.add_argument("--weights", default=None, metavar="PATH|random|default",
                   help="raft_* only: a local checkpoint (.pth/.safetensors), 'default' or 'random' (untrained, "
                        "for testing) (default: 'default' = torchvision's cached weights)")
    p.add_argument("--num-flow-updates", type=int, default=None, metavar="N",
                   help="raft_* only: refinement iterations, 1 .. 100; 24-32 for best accuracy (default: 12)")
    p.add_argument("--device", default="cpu", help="raft_* only: torch device, e.g. cuda (default: cpu)")
    p.add_argument("--viz", default=None, metavar="PNG",
                   help="pair only: also write a picture: frame 0, frame 1, frame 1 warped onto frame 0, flow colours")
    p.add_argument("--bidirectional", action="store_true",
                   help="clip only: also write the backward flows back_NNNNNN.flo (frame N+1 -> N)")
    p.add_argument("--format", default=None, choices=("flo", "npy"), help="clip only: flow file type (default: flo)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="clip only: read at most N frames")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="clip only: pairs per estimator call (default: 4)")
    p.add_argument("--no-progress", action="store_true", help="clip only: no progress bar")
    add_overwrite_argument(p, "output files (-o, --viz; a folder -o must still be new or empty)")
    p.set_defaults(func=run)


_MAX_FLOW_UPDATES = 100


def _check_arguments(args) -> tuple[list[Path], dict[str, Path]]:
    """Every check of the command, before a frame is decoded or a network loads: (inputs, outputs)."""
    from flow.atomic import FOLDER, check_outputs

    from ._choices import IMAGE_SUFFIXES
    from ._inputs import check_image_file, check_raft_weights, check_video_file

    inputs = [Path(p) for p in args.inputs]
    if len(inputs) > 2:
        raise ValueError(
            f"expected FRAME0 FRAME1 (two images) or one VIDEO/FOLDER, got {len(inputs)} inputs; "
            "for many frames pass their folder"
        )
    for p in inputs:
        if not p.exists():
            raise FileNotFoundError(f"input {p} does not exist; check the path")
    # Options of one estimator only.
    if args.method != "dis" and args.preset is not None:
        raise ValueError(f"--preset applies to --method dis only (got --method {args.method}); drop --preset")
    if args.method.startswith("raft"):
        if args.num_flow_updates is not None and not 1 <= args.num_flow_updates <= _MAX_FLOW_UPDATES:
            raise ValueError(f"--num-flow-updates must be 1 .. {_MAX_FLOW_UPDATES} (24-32 is RAFT's most accurate), "
                             f"got {args.num_flow_updates}")
        check_raft_weights(args.method, args.weights)
    else:
        if args.num_flow_updates is not None:
            raise ValueError(f"--num-flow-updates applies to raft_* methods only (got --method {args.method})")
        if args.weights is not None:
            raise ValueError(f"--weights applies to raft_* methods only; {args.method} needs no weights (drop --weights)")
        if args.device != "cpu":
            raise ValueError(f"{args.method} runs in OpenCV on the CPU; --device {args.device} needs a raft_* method")
    if len(inputs) == 2:
        for p in inputs:
            if p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(
                    f"two inputs are read as two image frames, but {p} is "
                    f"{'a folder' if p.is_dir() else 'not an image (' + (p.suffix or 'no suffix') + ')'}; "
                    f"expected image files ({', '.join(IMAGE_SUFFIXES)}), or pass one video/folder for the clip form"
                )
            check_image_file(p, "FRAME0" if p == inputs[0] else "FRAME1")
        for name, given in (("--bidirectional", args.bidirectional), ("--max-frames", args.max_frames is not None),
                            ("--format", args.format is not None), ("--batch-size", args.batch_size is not None)):
            if given:
                hint = "; the -o name's ending (.flo or .npy) chooses the type" if name == "--format" else ""
                raise ValueError(f"{name} applies to the clip form (one VIDEO or FOLDER input) only{hint}")
        if Path(args.output).suffix.lower() not in (".flo", ".npy"):
            raise ValueError(f"-o {args.output}: expected a .flo or .npy file for a pair of frames, got "
                             f"{Path(args.output).suffix or 'no suffix'!r}")
        outputs = check_outputs({"-o": args.output, "--viz": args.viz}, inputs=inputs,
                                kinds={"-o": "flow", "--viz": "image"}, overwrite=args.overwrite)
        return inputs, outputs
    src = inputs[0]
    if src.is_file() and src.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(
            f"one input is read as a clip, but {src} is a single image; pass FRAME0 FRAME1 for a pair of images"
        )
    if src.is_file():
        check_video_file(src, "input")
    if args.viz is not None:
        raise ValueError("--viz applies to a pair of frames only; for a clip, look at single pairs")
    if args.max_frames is not None and args.max_frames < 2:
        raise ValueError(f"--max-frames must be at least 2 (a flow needs two frames), got {args.max_frames}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if Path(args.output).suffix.lower() in (".flo", ".npy"):
        raise ValueError(
            f"-o {args.output}: one input is a clip, whose flows go into a folder; name a folder (e.g. -o flows/), "
            "or pass FRAME0 FRAME1 for a single flow file"
        )
    return inputs, check_outputs({"-o": args.output}, inputs=inputs, kinds={"-o": FOLDER}, overwrite=args.overwrite)


def _build_estimator(args):
    from flow.estimators import get_estimator

    options = {}
    if args.method == "dis" and args.preset is not None:
        options["preset"] = args.preset
    if args.method.startswith("raft") and args.num_flow_updates is not None:
        options["num_flow_updates"] = args.num_flow_updates
    weights = args.weights if args.method.startswith("raft") else None
    return get_estimator(args.method, weights=weights, device=args.device, **options)


def run(args) -> int:
    inputs, outputs = _check_arguments(args)
    if len(inputs) == 2:
        return _run_pair(args, inputs[0], inputs[1], outputs["-o"], outputs.get("--viz"))
    return _run_clip(args, inputs[0], outputs["-o"])


# ------------------------------------------------------------------------------------------- pair


def _run_pair(args, p0: Path, p1: Path, out: Path, viz: Path | None) -> int:
    from flow.atomic import atomic_group
    from flow.io import read_image, write_flow
    from flow.viz import save_strip
    from flow.warp import backward_warp

    est = _build_estimator(args)  # before reading: a missing-weights error should come first
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    f0, f1 = read_image(p0, notify=say), read_image(p1, notify=say)
    if f0.shape != f1.shape:
        raise ValueError(
            f"{p0} is {f0.shape[2]}x{f0.shape[1]} but {p1} is {f1.shape[2]}x{f1.shape[1]} (WxH); "
            "the two frames must have the same size (resize one of them first)"
        )
    t = time.perf_counter()
    flow = est(f0[None], f1[None])
    dt = time.perf_counter() - t
    with atomic_group([out, viz]) as (tmp_out, tmp_viz):  # the flow and its picture: both or neither
        write_flow(tmp_out, flow[0])
        if viz is not None:
            warped = backward_warp(f1[None], flow)[0]
            save_strip(tmp_viz, [[f0, f1], [warped, flow[0]]])
    mag = flow[0].norm(dim=0)
    print(
        f"{out}: {f0.shape[2]}x{f0.shape[1]} (WxH) flow, {_describe(est)}, "
        f"mean |flow| {float(mag.mean()):.2f} px, max {float(mag.max()):.2f} px, {dt:.2f} s"
    )
    if viz is not None:
        print(f"{viz}: frame 0 | frame 1 / frame 1 warped onto frame 0 | flow colours")
    return 0


def _describe(est) -> str:
    """The estimator in the words of the options: its --method and, for dis, its --preset."""
    preset = getattr(est, "preset", None)
    return est.name + (f" (--preset {preset})" if isinstance(preset, str) else "")


# ------------------------------------------------------------------------------------------- clip


def _frame_source(src: Path, max_frames: int | None, notify):
    """(context, iterator of (3, H, W) frames, frame count or None, description)."""
    from flow.io import list_frames, read_image
    from flow.video import VideoReader

    if src.is_dir():
        files = list_frames(src)
        if max_frames is not None:
            files = files[:max_frames]
        first = read_image(files[0], notify=notify)  # the size for the plan line, before any work

        def it():
            yield first
            for f in files[1:]:
                img = read_image(f, notify=notify)
                if img.shape != first.shape:
                    raise ValueError(
                        f"{f}: frame size {img.shape[2]}x{img.shape[1]} differs from the first frame's "
                        f"{first.shape[2]}x{first.shape[1]} (WxH); all frames of a clip must share one size"
                    )
                yield img

        size = f"{first.shape[2]}x{first.shape[1]}"
        return contextlib.nullcontext(), it(), len(files), f"{len(files)} frames in {src}, {size} (WxH)"
    vr = VideoReader(src)
    if vr.variable_frame_rate:  # the one variable-frame-rate rule of every command that reads video
        vr.close()
        vr.require_constant_rate("flow")
    for line in vr.notices():
        notify(f"note: {line}")
    n = vr.num_frames
    if max_frames is not None:
        n = min(n, max_frames) if n is not None else max_frames

    def it():
        for i, frame in enumerate(vr):
            if max_frames is not None and i >= max_frames:
                break
            yield frame

    return vr, it(), n, f"{src} ({vr.width}x{vr.height} WxH, {vr.fps:.3g} fps, {vr.num_frames or '?'} frames)"


class _Notices:
    """Notices above the progress bar (never on its line), each kind once per clip.

    They wait until :meth:`start` (the first batch of flows is written), so that an input that fails to
    decode gets its one error line and nothing else; the bar starts below them.
    """

    def __init__(self):
        self.bar = None
        self._pending: list[str] | None = []
        self._seen: set[str] = set()

    def __call__(self, msg: str) -> None:
        kind = msg.split(" ", 2)[-1]  # "note: NAME has ...": one notice per kind, not per frame
        if kind in self._seen:
            return
        self._seen.add(kind)
        if self._pending is not None:
            self._pending.append(msg)
        elif self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    def start(self, make_bar=None) -> None:
        if self._pending is None:
            return
        queued, self._pending = self._pending, None
        for msg in queued:
            print(msg, file=sys.stderr)
        if make_bar is not None:
            self.bar = make_bar()


def _run_clip(args, src: Path, out: Path) -> int:
    import torch

    from flow.atomic import atomic_dir
    from flow.estimators import bidirectional_flow
    from flow.io import write_flow

    batch_size = args.batch_size or 4
    est = _build_estimator(args)
    ext = "." + (args.format or "flo")
    say = _Notices()
    reader, frames, n, desc = _frame_source(src, args.max_frames, say)
    say(f"flow: {(n - 1) if n else '?'} flows ({est.name}) from {desc} into {out}/")
    written = 0

    def make_bar():
        from tqdm.auto import tqdm

        return tqdm(total=(n - 1) if n else None, initial=written, unit="pair", desc=f"flow {est.name}",
                    file=sys.stderr)

    # Everything goes into a hidden sibling folder, renamed to OUT only when the whole clip is done.
    with atomic_dir(out) as tmp, reader:
        try:
            prev = None
            batch0, batch1 = [], []
            t0 = time.perf_counter()

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
                if say.bar is not None:
                    say.bar.update(fw.shape[0])
                say.start(None if args.no_progress else make_bar)  # after the first batch: notices, then the bar
                if written == fw.shape[0] and n and n - 1 > written:  # after the first batch: its pace
                    left = (time.perf_counter() - t0) / written * (n - 1 - written)
                    say(f"flow: estimated time: about {math.ceil(left)} s for the remaining {n - 1 - written} pairs")
                batch0.clear()
                batch1.clear()

            for frame in frames:
                if prev is not None:
                    if frame.shape != prev.shape:
                        raise ValueError(
                            f"frame {written + len(batch0) + 1} of {src} is {frame.shape[2]}x{frame.shape[1]}, the "
                            f"previous {prev.shape[2]}x{prev.shape[1]} (WxH); all frames must share one size"
                        )
                    batch0.append(prev)
                    batch1.append(frame)
                    if len(batch0) == batch_size:
                        flush()
                prev = frame
            if batch0:
                flush()
        finally:
            if say.bar is not None:
                say.bar.close()
                say.bar = None
        if written == 0:
            raise ValueError(f"{src}: fewer than two frames could be read, so there is no flow to write")
        say.start()
    print(f"{out}: {written} flows ({est.name}) from {desc}" + ("; forward and backward" if args.bidirectional else ""))
    return 0
