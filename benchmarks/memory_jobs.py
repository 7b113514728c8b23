"""Peak memory of the jobs (transfer, speed, extend) by frame size, against the estimate they check.

Each run is the command line itself (``motionguide.cli.main``) in a fresh process on a synthetic video this
script renders with PyAV (a smooth random texture moving 3 px right and 2 px down per frame): peak resident
memory (VmHWM), seconds, and :func:`motionguide.memory.estimate_job_bytes`, the estimate the jobs check
against ``--max-memory`` before a frame is decoded. The estimate is meant as an upper bound: the table prints
measured / estimated, which stays below 1. Then a 4K job under the bound (its peak), and one above it: the
seconds until it is refused, cold (main() imports what the command needs, as for a user) and warm (the
libraries imported before the clock starts: the check itself).

Usage::

    python benchmarks/memory_jobs.py [--cases 480p,1080p] [--calibrate] [--json OUT] [--threads 1]

``--calibrate`` adds the runs the estimate's coefficients were fitted on (more frame counts and both fills).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # first: benchmarks/flow.py beside this script must not shadow the flow package

SIZES = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920), "4k": (2160, 3840)}

# Runs in the child: the command line, then the peak RSS of this process image (VmHWM; ru_maxrss would carry
# the parent's size across execve).
_CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import torch, cv2
torch.set_num_threads({threads}); cv2.setNumThreads({threads})
from motionguide.cli import main
for name in {preload!r}:  # imported before the clock starts: the check's own time, without import time
    __import__(name)
t = time.perf_counter()
rc = main({argv!r})
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
print("MEMJSON " + json.dumps({{"rc": rc, "seconds": time.perf_counter() - t, "peak_rss_mb": peak_mb()}}))
"""


def render(path: Path, h: int, w: int, n: int, fps: int = 24) -> Path:
    """A synthetic ``n``-frame video of ``w x h``: a smooth random texture moving 3 px right, 2 px down a frame."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    small = rng.random((h // 8 + 8, w // 8 + 8, 3)).astype(np.float32)
    import cv2

    tex = cv2.resize(small, (w + 8 * n + 64, h + 8 * n + 64), interpolation=cv2.INTER_CUBIC)
    tex = (np.clip(tex, 0, 1) * 255).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(n):
            frame = np.ascontiguousarray(tex[32 + 2 * i:32 + 2 * i + h, 32 + 3 * i:32 + 3 * i + w][:, ::-1])
            for pk in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(pk)
        for pk in s.encode(None):
            c.mux(pk)
    return path


def job_argv(job: str, video: Path, image: Path, out: Path, extra: list[str], new_frames: int = 4) -> list[str]:
    if job == "transfer":
        return ["transfer", "--reference", str(video), "--image", str(image), "-o", str(out), "--no-progress", *extra]
    if job == "speed":
        return ["speed", str(video), "--factor", "0.5", "-o", str(out), "--no-progress", *extra]
    return ["extend", str(video), "--frames", str(new_frames), "-o", str(out), "--no-progress", *extra]


def run_child(argv: list[str], threads: int, preload: tuple[str, ...] = ()) -> dict:
    code = _CHILD.format(repo=str(REPO), argv=argv, threads=threads, preload=list(preload))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = next((x for x in p.stdout.splitlines() if x.startswith("MEMJSON ")), None)
    if line is None:
        raise RuntimeError(f"child failed ({p.returncode}): {p.stderr[-2000:]}")
    return {**json.loads(line[len("MEMJSON "):]), "stderr_tail": p.stderr.strip().splitlines()[-1:]}


def estimate_mb(job: str, h: int, w: int, n: int, fill: str, compare: bool, new_frames: int = 4) -> float:
    from motionguide.memory import estimate_job_bytes, job_frames

    t_in, t_out = job_frames(job, n, factor=0.5, frames=new_frames if job == "extend" else None)
    return estimate_job_bytes(job, h, w, t_in, t_out, fill=fill, compare=compare) / 2 ** 20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="480p,1080p", help="sizes to run the three jobs at (480p, 720p, 1080p)")
    ap.add_argument("--calibrate", action="store_true", help="also the fitting runs (frame counts, --fill model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from flow.io import write_image
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plan = []
        for size in [s for s in args.cases.split(",") if s]:
            n = 8 if SIZES[size][0] <= 720 else 4
            plan += [(job, size, n, "warp", True) for job in ("transfer", "speed", "extend")]
        if args.calibrate:
            plan += [(job, "480p", 16, "warp", False) for job in ("transfer", "speed", "extend")]
            plan += [(job, "480p", 8, "model", False) for job in ("transfer", "speed", "extend")]
            plan += [("speed", "720p", 8, "warp", False)]
        for job, size, n, fill, compare in plan:
            h, w = SIZES[size]
            video = tmp / f"{size}_{n}.mp4"
            if not video.exists():
                render(video, h, w, n)
            image = tmp / f"{size}.png"
            if not image.exists():
                write_image(image, torch.rand(3, h, w))
            out = tmp / f"{job}_{size}_{n}_{fill}.mp4"
            extra = ["--fill", fill] + (["--compare", str(out.with_suffix(".png"))] if compare else [])
            r = run_child(job_argv(job, video, image, out, extra), args.threads)
            est = estimate_mb(job, h, w, n, fill, compare)
            rows.append({"job": job, "size": f"{w}x{h}", "in_frames": n, "fill": fill, "compare": compare, **r,
                         "estimate_mb": est, "measured_over_estimate": r["peak_rss_mb"] / est})
            print(f"{job:8s} {w}x{h} {n:3d} frames fill {fill:5s}{' +compare' if compare else '         '}: "
                  f"peak {r['peak_rss_mb']:7.0f} MB, estimate {est:7.0f} MB, measured/estimate "
                  f"{r['peak_rss_mb'] / est:.2f}, {r['seconds']:.1f} s, rc {r['rc']}", flush=True)
        # 4K under the bound: extend a 2-frame clip by 1 frame
        h, w = SIZES["4k"]
        video = render(tmp / "4k_2.mp4", h, w, 2)
        r = run_child(job_argv("extend", video, tmp / "none.png", tmp / "extend_4k.mp4", [], new_frames=1), args.threads)
        est = estimate_mb("extend", h, w, 2, "warp", False, new_frames=1)
        rows.append({"job": "extend", "size": f"{w}x{h}", "in_frames": 2, "fill": "warp", "compare": False, **r,
                     "estimate_mb": est, "measured_over_estimate": r["peak_rss_mb"] / est})
        print(f"extend   {w}x{h}   2 frames (+1) fill warp          : peak {r['peak_rss_mb']:7.0f} MB, estimate "
              f"{est:7.0f} MB, measured/estimate {r['peak_rss_mb'] / est:.2f}, {r['seconds']:.1f} s, rc {r['rc']}",
              flush=True)
        # 4K above the bound (65 frames, 2x slow motion): refused from the header, before any decoding; cold (as a
        # user runs it: main() imports what the command needs) and warm (the libraries already imported)
        video = render(tmp / "4k_65.mp4", h, w, 65)
        for preload in ((), ("motionguide.jobs",)):
            t0 = time.perf_counter()
            r = run_child(job_argv("speed", video, tmp / "none.png", tmp / "speed_4k.mp4", []), args.threads, preload)
            wall = time.perf_counter() - t0
            rows.append({"job": "speed", "size": f"{w}x{h}", "in_frames": 65, "refusal": True, "warm": bool(preload),
                         **r, "wall_seconds": wall, "estimate_mb": estimate_mb("speed", h, w, 65, "warp", False)})
            print(f"speed    {w}x{h}  65 frames ({'warm' if preload else 'cold'}): rc {r['rc']}, refused "
                  f"{r['seconds']:.2f} s after main() started ({wall:.1f} s with the interpreter's start-up and "
                  f"torch's import), peak {r['peak_rss_mb']:.0f} MB, estimate {rows[-1]['estimate_mb']:.0f} MB: "
                  f"{' '.join(r['stderr_tail'])[:400]}", flush=True)
    ok = [r for r in rows if not r.get("refusal")]
    print(f"target: measured/estimate below 1 in every run: {'yes' if all(r['measured_over_estimate'] < 1 for r in ok) else 'NO'} "
          f"(max {max(r['measured_over_estimate'] for r in ok):.2f}); 4K refused (warm) in {rows[-1]['seconds']:.2f} s "
          f"< 3 s: {'yes' if rows[-1]['rc'] == 2 and rows[-1]['seconds'] < 3 else 'NO'} (cold: {rows[-2]['seconds']:.2f} s "
          f"in main(), import time included)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
