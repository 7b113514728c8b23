"""CPU time of the pipeline trainer's cache build (``motionguide train pipeline --cache-only``), one process
against several under ``torchrun`` (gloo), and against the build before the sharded cache (``--before DIR``).

The tiny random Wan image-to-video pipeline (``motionguide.testing.save_tiny_pipeline("wan")``) is written to a
temporary folder; ``--clips`` clips of ``--frames`` frames at ``--size`` are cut from
``../shared/data/videos`` (both videos; the run stops with a message when the data is missing) and cached
with every layout (between with the ``auto`` interpolator: IFNet when RIFE weights are installed, extend and
first with DIS). Each process times its own build (wall clock and CPU seconds, from before the pipeline
loads to the end of its share) and prints one JSON line; this script collects them.

``--before DIR``: DIR holds the package before the sharded cache (e.g. ``git archive 7e9d1b2 | tar -x -C
DIR``); its ``prepare_data`` builds the same clips in one process with torch's default threads, as a run did.

Under ``--ranks N`` each process gets ``cores // N`` torch threads (at least 1). The target line compares the
slowest process's CPU seconds (its wall time on an otherwise idle machine) with the one-process build's; wall
times are printed too (on a shared machine they carry the other jobs' load).

Usage::

    python benchmarks/cache_build.py [--size 416x240] [--frames 33] [--clips 8] [--ranks 2] [--before DIR]
                                     [--json OUT]
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
# benchmarks/flow.py would shadow the flow package: the package comes from PYTHONPATH (this checkout, or --before)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data")) / "videos"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _worker(args) -> None:
    """One process of a build: prints ``{"rank", "wall", "cpu", "clips"}`` as one JSON line."""
    import torch

    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    t0, c0 = time.time(), time.process_time()
    if args.worker == "before":
        from motionguide.finetune.cache import Cache
        from motionguide.finetune.folder import check_pipeline_folder, load_pipeline
        from motionguide.finetune.objectives import make_objective
        from motionguide.finetune.prepare import prepare_data
        from motionguide.finetune.videos import find_videos, plan_clips

        folder = check_pipeline_folder(args.pipeline)
        specs = plan_clips(find_videos(args.videos), frames=args.frames, stride=1, clips=args.clips,
                           notice=lambda m: None)
        pipe = load_pipeline(folder)
        obj = make_objective(pipe, "wan", height=h, width=w, num_frames=args.frames)
        prepare_data(pipe, obj, folder, specs, Cache(Path(args.out) / "cache"), size=(h, w),
                     layouts=("between", "extend", "first"), flow="dis", interpolator="auto", last_frame=False,
                     prompt="", dtype="float32", validate=False, device=torch.device("cpu"),
                     notice=lambda m: None, log=lambda m: None)
        rank, n = 0, len(specs)
    else:
        from motionguide.finetune import PipelineTrainConfig, train_pipeline

        cfg = PipelineTrainConfig(pipeline=args.pipeline, videos=args.videos, steps=1, out=args.out, frames=args.frames,
                                  size=(h, w), clips=args.clips, cache_only=True, progress=False)
        res = train_pipeline(cfg, log=lambda m: None, notice=lambda m: None)
        rank, n = int(os.environ.get("RANK", 0)), res["clips"]
    print(json.dumps({"rank": rank, "wall": time.time() - t0, "cpu": time.process_time() - c0, "clips": n}), flush=True)


def _run(cmd: list[str], env: dict) -> list[dict]:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{res.stderr[-3000:]}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{\"rank\"")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="416x240", help="WxH of the clips [416x240]")
    ap.add_argument("--frames", type=int, default=33, help="frames per clip (4k+1) [33]")
    ap.add_argument("--clips", type=int, default=8, help="clips [8]")
    ap.add_argument("--ranks", type=int, default=2, help="processes of the sharded build [2]")
    ap.add_argument("--before", default=None, metavar="DIR", help="a checkout of the package before the sharded cache")
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    for hidden in ("--pipeline", "--videos", "--out"):
        ap.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args)
    if not DATA.is_dir():
        raise SystemExit(f"the evaluation videos are not at {DATA} (set MOTIONGUIDE_DATA)")
    sys.path.insert(0, str(REPO))
    from motionguide import testing

    tmp = Path(tempfile.mkdtemp(prefix="cache_build_"))
    testing.save_tiny_pipeline("wan", tmp / "wan")
    cores = os.cpu_count() or 1
    common = ["--size", args.size, "--frames", str(args.frames), "--clips", str(args.clips), "--pipeline",
              str(tmp / "wan"), "--videos", str(DATA)]
    me = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rows = {}
    if args.before:
        benv = {**os.environ, "PYTHONPATH": str(Path(args.before).resolve())}
        rows["before, 1 process"] = _run(me + ["--worker", "before", *common, "--out", str(tmp / "b")], benv)
    rows["now, 1 process"] = _run(me + ["--worker", "now", *common, "--out", str(tmp / "n1")], env)
    rows[f"now, {args.ranks} processes"] = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.ranks), *me[1:],
         "--worker", "now", *common, "--out", str(tmp / "nr"), "--threads", str(max(1, cores // args.ranks))], env)
    print(f"cache build: {args.clips} clips of {args.size} x {args.frames} frames, tiny Wan I2V, layouts "
          f"between/extend/first; {cores} cores")
    print(f"{'build':<22}{'slowest CPU s':>15}{'total CPU s':>13}{'wall s':>9}")
    summary = {}
    for name, rs in rows.items():
        slow, total, wall = max(r["cpu"] for r in rs), sum(r["cpu"] for r in rs), max(r["wall"] for r in rs)
        summary[name] = {"slowest_cpu_s": slow, "total_cpu_s": total, "wall_s": wall, "processes": len(rs)}
        print(f"{name:<22}{slow:>15.1f}{total:>13.1f}{wall:>9.1f}")
    ref = summary.get("before, 1 process")
    if ref:
        got = summary[f"now, {args.ranks} processes"]
        ratio = got["slowest_cpu_s"] / ref["slowest_cpu_s"]
        print(f"target: the {args.ranks}-process build's slowest process takes {ratio:.2f} of the one-process build "
              f"before (target <= 0.25): {'met' if ratio <= 0.25 else 'NOT met'}; wall {got['wall_s'] / ref['wall_s']:.2f}")
        summary["ratio_slowest_cpu"] = ratio
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "frames": args.frames, "clips": args.clips,
                                               "cores": cores, **summary}, indent=2))


if __name__ == "__main__":
    main()
