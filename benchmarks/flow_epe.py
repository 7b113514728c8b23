"""Flow accuracy and speed on the Sintel pairs with ground truth, every estimator of this run side by side.

For each of the three MPI-Sintel pairs in ``--data``/sintel_clean_gtflow (easy / medium / hard = alley_1 / cave_2 / market_5,
mean motion about 3 / 15 / 32 px): frame_0002 -> frame_0003 against ``gt/frame_0002.flo``,

* ``epe``: mean endpoint error over valid pixels (``gt/invalid`` excluded);
* ``epe_noc``: the same over valid, non-occluded pixels (``gt/occlusions`` excluded);
* ``seconds``: median wall time per pair over ``--repeat`` runs (OpenCV uses all cores it sees).

Rows: the project's estimators through ``flow.get_estimator`` (every DIS preset, Farneback; RAFT only when
pretrained weights are on this machine: random weights say nothing about accuracy), and the peer, OpenCV
DIS used directly (``cv2.DISOpticalFlow_create(PRESET_MEDIUM).calc`` on ``cv2.imread`` grey images, the
reference of issue 3) plus OpenCV's ULTRAFAST. A second table times the DIS presets and Farneback on
1280x720 frames of ``videos/bigbuckbunny.mp4`` (no ground truth; speed only).

    python benchmarks/flow_epe.py [--data ../shared/data] [--json OUT.json] [--repeat 3]

``--data DIR`` is the evaluation folder, laid out as ``../shared/data`` (``sintel_clean_gtflow/``,
``videos/``); the Sintel folder itself is accepted too.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from pathlib import Path

try:
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

import numpy as np  # noqa: E402
import torch  # noqa: E402

from flow.estimators import DIS_PRESETS, find_raft_weights, get_estimator  # noqa: E402
from flow.io import read_flo, read_image  # noqa: E402
from flow.metrics import flow_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SEQUENCES = ("easy", "medium", "hard")
DEFAULT_DATA = REPO.parent / "shared" / "data"
PEER = "opencv DIS MEDIUM (direct)"


def _load_pair(root: Path, seq: str):
    import cv2

    d = root / seq
    f0, f1 = read_image(d / "frame_0002.png"), read_image(d / "frame_0003.png")
    gt = read_flo(d / "gt" / "frame_0002.flo")
    occ = torch.from_numpy(cv2.imread(str(d / "gt" / "occlusions" / "frame_0002.png"), cv2.IMREAD_GRAYSCALE) > 0)
    inv = torch.from_numpy(cv2.imread(str(d / "gt" / "invalid" / "frame_0002.png"), cv2.IMREAD_GRAYSCALE) > 0)
    grey = [cv2.cvtColor(cv2.imread(str(d / n)), cv2.COLOR_BGR2GRAY) for n in ("frame_0002.png", "frame_0003.png")]
    return f0[None], f1[None], gt, occ, inv, grey


def _opencv_direct(preset_name: str):
    import cv2

    preset = getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset_name}")

    def run(g0, g1):
        f = cv2.DISOpticalFlow_create(preset).calc(g0, g1, None)
        return torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1)))

    return run


def _candidates(args):
    """(label, callable(pair) -> (2, H, W) flow, note). Built once: model loading is not timed."""
    out = []
    for preset in ("balanced", "swift", "quality", "ultrafast", "fast", "medium"):
        est = get_estimator("dis", preset=preset)
        label = f"dis {preset}" + (" (default)" if preset == "balanced" else "")
        out.append((label, lambda p, e=est: e(p[0], p[1])[0], DIS_PRESETS[preset].doc))
    fb = get_estimator("farneback")
    out.append(("farneback", lambda p: fb(p[0], p[1])[0], "OpenCV Farneback, 5 levels"))
    for variant, given in (("raft_small", args.raft_small), ("raft_large", args.raft_large)):
        weights = given or find_raft_weights(variant)
        if weights is None:
            common.notice(f"{variant} skipped: no pretrained weights in {Path(torch.hub.get_dir()) / 'checkpoints'} "
                          f"(pass --{variant.replace('_', '-')} PATH); random weights would say nothing about accuracy")
            continue
        est = get_estimator(variant, weights=str(weights), device=args.device, num_flow_updates=args.raft_updates)
        out.append((f"{variant} ({args.raft_updates} updates)", lambda p, e=est: e(p[0], p[1])[0], str(weights)))
    for preset in ("MEDIUM", "ULTRAFAST"):
        fn = _opencv_direct(preset)
        out.append((f"opencv DIS {preset} (direct)", lambda p, fn=fn: fn(*p[5]), "peer: cv2 on cv2.imread grey"))
    if args.methods:
        keep = [m.strip() for m in args.methods.split(",")]
        out = [c for c in out if any(c[0].startswith(k) for k in keep) or c[0] == PEER]
    return out


def _speed_720p(args):
    """Median seconds per 1280x720 pair for the OpenCV estimators (what interpolation pays per pair)."""
    video = args.root / "videos" / "bigbuckbunny.mp4"
    if not video.exists():
        common.notice(f"720p timing skipped: {video} not found")
        return []
    from flow.video import read_video

    frames, _ = read_video(video, max_frames=12)
    f0, f1 = frames[10:11], frames[11:12]
    rows = []
    for preset in ("ultrafast", "swift", "fast", "medium", "balanced", "quality"):
        est = get_estimator("dis", preset=preset)
        est(f0, f1)  # warm-up: first call builds the OpenCV objects
        _, sec = common.timed(lambda: est(f0, f1), args.repeat)
        rows.append({"method": f"dis {preset}", "size": "1280x720", "seconds": sec})
    fb = get_estimator("farneback")
    _, sec = common.timed(lambda: fb(f0, f1), args.repeat)
    rows.append({"method": "farneback", "size": "1280x720", "seconds": sec})
    return rows


@common.cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, metavar="DIR",
                    help=f"evaluation data folder, laid out as ../shared/data (default: {DEFAULT_DATA})")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per pair (median reported)")
    ap.add_argument("--methods", default=None, help="comma-separated label prefixes to run (the peer always runs)")
    ap.add_argument("--raft-small", default=None, metavar="PATH", help="raft_small checkpoint (default: torch hub cache)")
    ap.add_argument("--raft-large", default=None, metavar="PATH", help="raft_large checkpoint (default: torch hub cache)")
    ap.add_argument("--raft-updates", type=int, default=24, help="RAFT num_flow_updates (default 24)")
    ap.add_argument("--device", default="cpu", help="RAFT device")
    ap.add_argument("--no-720p", action="store_true", help="skip the 1280x720 timing table")
    args = ap.parse_args(argv)

    explicit = args.data is not None
    args.root = (args.data or DEFAULT_DATA).resolve()
    # DIR/sintel_clean_gtflow, or DIR itself when it is the Sintel folder
    args.data = args.root if (args.root / SEQUENCES[0]).is_dir() else args.root / "sintel_clean_gtflow"
    if args.data == args.root:
        args.root = args.root.parent
    missing = [s for s in SEQUENCES if not (args.data / s / "gt" / "frame_0002.flo").exists()]
    if missing:
        msg = (f"Sintel pairs with ground truth not found under {args.data} (missing: {', '.join(missing)}); pass "
               "--data DIR holding sintel_clean_gtflow/easy, medium, hard with frame_0002.png, frame_0003.png and gt/")
        if explicit:
            raise common.UserError(msg)
        print(f"SKIPPED: {msg}")
        return 0
    common.set_threads(None)

    pairs = {s: _load_pair(args.data, s) for s in SEQUENCES}
    cands = _candidates(args)
    rows = []
    for label, fn, note in cands:
        for seq in SEQUENCES:
            p = pairs[seq]
            fn(p)  # warm-up (lazy OpenCV objects, first-call allocations)
            flow, sec = common.timed(lambda: fn(p), args.repeat)
            m = flow_metrics(flow, p[2], occlusion=p[3], invalid=p[4])
            rows.append({"method": label, "sequence": seq, "epe": m["epe"], "epe_noc": m["epe_noc"],
                         "px3": m["px3"], "seconds": sec, "note": note})

    peer = {r["sequence"]: r["epe"] for r in rows if r["method"] == PEER}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nSintel clean, frame_0002 -> frame_0003 (1024x436); EPE in px over valid pixels; "
          f"median of {args.repeat} timed runs; {os.cpu_count()} CPUs, load average {load:.1f}")
    head = f"| {'method':32s} | {'sequence':8s} | {'EPE':>7s} | {'EPE noc':>7s} | {'>3px':>6s} | {'s/pair':>7s} | {'EPE / MEDIUM':>12s} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        ratio = r["epe"] / peer[r["sequence"]] if r["sequence"] in peer else math.nan
        print(f"| {r['method']:32s} | {r['sequence']:8s} | {r['epe']:7.3f} | {r['epe_noc']:7.3f} | "
              f"{100 * r['px3']:5.1f}% | {r['seconds']:7.3f} | {ratio:12.3f} |")

    # Mean over the three pairs, and whether each project method is no worse than the peer on every pair.
    print(f"\n| {'method':32s} | {'mean EPE':>8s} | {'mean s/pair':>11s} | {'<= MEDIUM on all 3':>18s} |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 13}|{'-' * 20}|")
    summary = []
    for label, _, _ in cands:
        rs = [r for r in rows if r["method"] == label]
        ok = all(r["epe"] <= peer[r["sequence"]] for r in rs)
        mean_epe, mean_s = statistics.mean(r["epe"] for r in rs), statistics.mean(r["seconds"] for r in rs)
        summary.append({"method": label, "mean_epe": mean_epe, "mean_seconds": mean_s, "no_worse_than_medium": ok})
        print(f"| {label:32s} | {mean_epe:8.3f} | {mean_s:11.3f} | {'yes' if ok else 'no':>18s} |")

    speed = [] if args.no_720p else _speed_720p(args)
    if speed:
        print(f"\n1280x720 pair (bigbuckbunny.mp4 frames 10 -> 11), median of {args.repeat}:")
        print(f"| {'method':16s} | {'s/pair':>7s} |\n|{'-' * 18}|{'-' * 9}|")
        for r in speed:
            print(f"| {r['method']:16s} | {r['seconds']:7.3f} |")
    if not any(r["method"].startswith("raft") for r in rows):
        print("\nRAFT rows: not measured in this run (no pretrained weights on this machine, see the notice above).")

    if args.json:
        payload = {"rows": rows, "summary": summary, "speed_720p": speed,
                   "machine": {"cpus": os.cpu_count(), "load_average": load, "torch": torch.__version__}}
        common.write_json(args.json, payload, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
