"""Peak memory of ``retime`` at 720p for a short and a long video: it must not grow with the length.

Builds 1280x720 videos of 100 and 1000 frames from ../shared/data/videos/bigbuckbunny.mp4 (132 frames,
played forwards then backwards, again and again: real motion and no cut at the turns), then retimes each in
a fresh subprocess (25 -> 50 fps: one interpolated frame per input pair) and reads that process's peak
resident memory (``ru_maxrss``).

Usage::

    python benchmarks/memory_retime.py [--frames 100,1000] [--backend dis] [--preset ultrafast] [--keep DIR]

The default backend settings (DIS ultrafast, linear reversal) keep the 1000-frame run to a few minutes on
this CPU; the streaming structure (two decoded frames, one pair's outputs, the encoder) is the same for
every backend, and ``--backend``/``--preset`` choose another one.
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))

# Runs in the child: retime, then print the peak RSS of this process (Linux ru_maxrss is in KiB).
_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
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

_MAKE = r"""
import sys
sys.path.insert(0, {repo!r})
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", default="100,1000", help="comma-separated input lengths (default 100,1000)")
    ap.add_argument("--backend", default="dis")
    ap.add_argument("--preset", default="ultrafast", help="dis preset for the run (default ultrafast)")
    ap.add_argument("--reversal", default="linear", help="dis/farneback reversal (default linear)")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the made videos in DIR")
    ap.add_argument("--json", default=None, metavar="OUT")
    ap.add_argument("--data", default=None, metavar="DIR",
                    help=f"evaluation data folder, laid out as ../shared/data (default: {DATA})")
    args = ap.parse_args(argv)
    data = Path(args.data) if args.data else DATA
    if not (data / "videos" / "bigbuckbunny.mp4").is_file():
        print(f"skip: {data / 'videos' / 'bigbuckbunny.mp4'} not found (pass --data DIR)")
        return 0
    lengths = [int(x) for x in args.frames.split(",")]
    opts = {}
    if args.backend in ("dis", "farneback"):
        opts["reversal"] = args.reversal
    if args.backend == "dis":
        opts["preset"] = args.preset
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for n in lengths:
            src, dst = folder / f"bbb720_{n}.mp4", folder / f"bbb720_{n}_50fps.mp4"
            t = time.perf_counter()
            # In a child too: the parent stays small, and nothing of the making is counted in the retime.
            subprocess.run([sys.executable, "-c", _MAKE.format(repo=str(REPO), path=str(src), n=n, data=str(data))], check=True)
            print(f"made {src.name} ({n} frames, 1280x720) in {time.perf_counter() - t:.0f} s", flush=True)
            code = _CHILD.format(repo=str(REPO), src=str(src), dst=str(dst), backend=args.backend, opts=opts)
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            row = {"frames": n, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"retimed {n} -> {row['out_frames']} frames in {row['seconds']:.0f} s, peak RSS {row['peak_rss_mb']:.0f} MB",
                  flush=True)
    print(f"\nretime 1280x720, 25 -> 50 fps, backend {args.backend} {opts}")
    print("| input frames | output frames | peak RSS MB | seconds |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['frames']} | {r['out_frames']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"peak memory {b['frames']} vs {a['frames']} frames: {b['peak_rss_mb'] - a['peak_rss_mb']:+.0f} MB "
              f"({b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x) for {b['frames'] / a['frames']:.0f}x the length")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "backend": args.backend, "options": opts}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
