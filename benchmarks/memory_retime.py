"""Peak memory and time of interpolation by frame size, and of ``retime`` by video length.

1. Sizes (issue 15): one interpolated frame at 640x480, 1280x720, 1920x1080 and 3840x2160 with the default
   backend (``get_interpolator("auto")``, what ``motionguide interpolate`` runs), each in a fresh process on
   synthetic frames (a smooth random texture and the same moved 3 x 5 px): peak resident memory (VmHWM),
   seconds, and the estimate of ``flow.interpolate.memory`` the commands check against ``--max-memory``. Then
   a 4K retime with the default backend (a 4-frame synthetic clip, 25 -> 50 fps).
2. Length: 1280x720 videos of 100 and 1000 frames from ../shared/data/videos/bigbuckbunny.mp4 (132 frames,
   played forwards then backwards: real motion and no cut at the turns), each retimed in a fresh process
   (25 -> 50 fps). DIS ultrafast with linear reversal keeps the 1000-frame run to minutes; the streaming
   structure (two decoded frames, one pair's outputs, the encoder) is the same for every backend.

Usage::

    python benchmarks/memory_retime.py [--sizes 480p,720p,1080p,4k] [--frames 100,1000] [--backend dis]
                                       [--preset ultrafast] [--keep DIR] [--json OUT] [--data DIR]

``--sizes ''`` or ``--frames ''`` skips that part.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

REPO = Path(__file__).resolve().parents[1]

DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))

# Runs in the child: retime, then print the peak RSS of this process (Linux ru_maxrss is in KiB).
_CHILD = r"""
import json, resource, time
import torch, cv2
torch.set_num_threads(1); cv2.setNumThreads(1)
from flow.retime import retime_video
opts = {opts!r}
t = time.perf_counter()
r = retime_video({src!r}, {dst!r}, fps=50, backend={backend!r}, progress=False, notify=lambda m: None, **opts)
def peak_mb():
    # VmHWM: the peak RSS of this process image. (ru_maxrss would not do: Linux keeps it across execve, so
    # a child started from a big parent reports the parent's size.)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"in_frames": r.in_frames, "out_frames": r.out_frames, "seconds": time.perf_counter() - t,
                  "peak_rss_mb": peak_mb()}}))
"""

# Runs in the child: one interpolated frame of h x w with the default backend; peak RSS, seconds, estimate.
_SIZE = r"""
import json, os, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
torch.set_flush_denormal(True)
from flow.interpolate import get_interpolator
from flow.interpolate.memory import estimate_bytes
h, w = {h}, {w}
interp = get_interpolator("auto")
g = torch.Generator().manual_seed(0)
f0 = torch.nn.functional.interpolate(torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g), size=(h, w),
                                     mode="bicubic", align_corners=False).clamp(0, 1)
f1 = torch.roll(f0, (3, 5), dims=(2, 3))
t = time.perf_counter()
interp.interpolate(f0, f1, [0.5])
sec = time.perf_counter() - t
peak = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({{"h": h, "w": w, "seconds": sec, "peak_rss_mb": peak, "estimate_mb": estimate_bytes(interp, h, w) / 2 ** 20,
                  "backend": interp.description}}))
"""

# Runs in the child: a 4-frame synthetic h x w clip, retimed 25 -> 50 fps with the default backend.
_RETIME_SIZE = r"""
import json, os, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
torch.set_flush_denormal(True)
from flow.retime import retime_video
t = time.perf_counter()
r = retime_video({src!r}, {dst!r}, fps=50, progress=False, notify=lambda m: None)
peak = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({{"in_frames": r.in_frames, "out_frames": r.out_frames, "seconds": time.perf_counter() - t,
                  "interpolated": r.interpolated, "peak_rss_mb": peak}}))
"""

_MAKE_SYNTH = r"""
import torch
from flow.video import VideoWriter
h, w = {h}, {w}
g = torch.Generator().manual_seed(0)
base = torch.nn.functional.interpolate(torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g), size=(h, w),
                                       mode="bicubic", align_corners=False).clamp(0, 1)[0]
with VideoWriter({path!r}, 25, crf=18, preset="ultrafast") as vw:
    for i in range(4):
        vw.write(torch.roll(base, (i, 4 * i), dims=(1, 2)))
"""

SIZES = {"480p": (480, 640), "720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}

_MAKE = r"""
from pathlib import Path
from benchmarks.memory_retime import make_video
make_video(Path({path!r}), {n}, Path({data!r}))
"""


def make_video(path: Path, n: int, data: Path = DATA) -> None:
    """``n`` frames of bigbuckbunny at 25 fps, ping-pong looped, written as H.264 (fast preset)."""
    import torch

    from flow.video import VideoReader, VideoWriter

    with VideoReader(data / "videos" / "bigbuckbunny.mp4") as vr:
        src = [(f * 255 + 0.5).floor().to(torch.uint8) for f in vr]  # 132 x 2.7 MB as uint8
    order = list(range(len(src))) + list(range(len(src) - 2, 0, -1))
    with VideoWriter(path, 25, crf=23, preset="ultrafast") as vw:
        for i in range(n):
            vw.write(src[order[i % len(order)]])


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh process, run in the repository root (``-c`` puts the working folder
    first on ``sys.path``, so the child imports this checkout's ``flow`` and ``benchmarks``)."""
    return subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, **kw)


def _child(code: str) -> dict:
    out = _python(code, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sizes_table(names: list[str], folder: Path) -> dict:
    """Peak memory and seconds of one interpolated frame per size, then a 4K retime (default backend)."""
    rows = []
    for name in names:
        h, w = SIZES[name]
        row = {"size": name, **_child(_SIZE.format(h=h, w=w))}
        rows.append(row)
        print(f"{name} {w}x{h}: {row['seconds']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB "
              f"(estimate {row['estimate_mb']:.0f} MB)", flush=True)
    retime = None
    if "4k" in names:
        src, dst = folder / "synth4k.mp4", folder / "synth4k_50fps.mp4"
        _python(_MAKE_SYNTH.format(h=2160, w=3840, path=str(src)))
        retime = _child(_RETIME_SIZE.format(src=str(src), dst=str(dst)))
    if rows:
        print(f"\none interpolated frame, default backend: {rows[0]['backend']}")
        print("| size | W x H | seconds per frame | peak RSS MB | estimate MB (--max-memory checks this) |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['size']} | {r['w']}x{r['h']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['estimate_mb']:.0f} |")
        big = [r for r in rows if r["size"] == "4k"]
        if big:
            ok = big[0]["peak_rss_mb"] <= 8 * 1024
            print(f"[{'PASS' if ok else 'FAIL'}] one 4K interpolated frame: peak {big[0]['peak_rss_mb'] / 1024:.2f} GB "
                  "(<= 8 GB on CPU)")
    if retime:
        print(f"retime 3840x2160, 4 -> {retime['out_frames']} frames (25 -> 50 fps, default backend): "
              f"{retime['seconds'] / max(1, retime['interpolated']):.1f} s per interpolated frame, "
              f"peak RSS {retime['peak_rss_mb']:.0f} MB")
    return {"sizes": rows, "retime_4k": retime}


def length_table(lengths: list[int], folder: Path, data: Path, backend: str, opts: dict) -> list[dict]:
    rows = []
    for n in lengths:
        src, dst = folder / f"bbb720_{n}.mp4", folder / f"bbb720_{n}_50fps.mp4"
        t = time.perf_counter()
        # In a child too: the parent stays small, and nothing of the making is counted in the retime.
        _python(_MAKE.format(path=str(src), n=n, data=str(data)))
        print(f"made {src.name} ({n} frames, 1280x720) in {time.perf_counter() - t:.0f} s", flush=True)
        row = {"frames": n, **_child(_CHILD.format(src=str(src), dst=str(dst), backend=backend, opts=opts))}
        rows.append(row)
        print(f"retimed {n} -> {row['out_frames']} frames in {row['seconds']:.0f} s, peak RSS {row['peak_rss_mb']:.0f} MB",
              flush=True)
    print(f"\nretime 1280x720, 25 -> 50 fps, backend {backend} {opts}")
    print("| input frames | output frames | peak RSS MB | seconds |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['frames']} | {r['out_frames']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"peak memory {b['frames']} vs {a['frames']} frames: {b['peak_rss_mb'] - a['peak_rss_mb']:+.0f} MB "
              f"({b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x) for {b['frames'] / a['frames']:.0f}x the length")
    return rows


@common.cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="480p,720p,1080p,4k", help=f"comma-separated subset of {','.join(SIZES)} ('' skips)")
    ap.add_argument("--frames", default="100,1000", help="comma-separated input lengths (default 100,1000; '' skips)")
    ap.add_argument("--backend", default="dis", help="backend of the length runs (default dis)")
    ap.add_argument("--preset", default="ultrafast", help="dis preset of the length runs (default ultrafast)")
    ap.add_argument("--reversal", default="linear", help="dis/farneback reversal of the length runs (default linear)")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the made videos in DIR")
    ap.add_argument("--json", default=None, metavar="OUT")
    ap.add_argument("--data", default=None, metavar="DIR",
                    help=f"evaluation data folder, laid out as ../shared/data (default: {DATA})")
    args = ap.parse_args(argv)
    data = (Path(args.data) if args.data else DATA).resolve()  # the children run in the repository root
    sizes = [x.strip().lower() for x in args.sizes.split(",") if x.strip()]
    bad = [x for x in sizes if x not in SIZES]
    if bad:
        raise common.UserError(f"unknown size(s) {bad}; expected some of {list(SIZES)}")
    lengths = [int(x) for x in args.frames.split(",") if x.strip()]
    opts = {}
    if args.backend in ("dis", "farneback"):
        opts["reversal"] = args.reversal
    if args.backend == "dis":
        opts["preset"] = args.preset
    result = {"backend": args.backend, "options": opts}
    with tempfile.TemporaryDirectory() as tmp:
        folder = (Path(args.keep) if args.keep else Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        if sizes:
            result.update(sizes_table(sizes, folder))
        if lengths:
            if not (data / "videos" / "bigbuckbunny.mp4").is_file():
                print(f"skip the length runs: {data / 'videos' / 'bigbuckbunny.mp4'} not found (pass --data DIR)")
            else:
                result["rows"] = length_table(lengths, folder, data, args.backend, opts)
    if args.json:
        common.write_json(args.json, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
