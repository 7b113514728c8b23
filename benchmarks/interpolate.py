"""Frame interpolation, side by side: motionguide's backends against RIFE, ffmpeg and simple baselines.

One run, on the evaluation footage in ``../shared/data`` (never copied; skipped with a message when absent):

* ``middlebury``: the 6 "other" sequences, frame10 + frame11 -> the true middle frame frame10i11.
* ``sintel``: hold-out triplets of sintel_frames (frames i-1, i+1 -> i), 1024x436.
* ``vtest``: hold-out triplets of videos/vtest.avi (480x360, 10 fps, pedestrians).
* ``bbb``: hold-out triplets of videos/bigbuckbunny.mp4 (1280x720, 25 fps): also the 720p timing.

Methods (all in the same process, same thread count, each output rounded to 8 bits as if saved):

* ``average``: (frame0 + frame1) / 2.
* ``ffmpeg-minterpolate``: the ffmpeg bundled with imageio-ffmpeg, ``minterpolate=fps=2:mi_mode=mci`` with
  its other defaults, fed ``a, b, b`` as 1 fps PNGs (two frames give no output); time = the whole call.
* ``rife-v3.6``, ``rife-v4.25``: the peers, run through the wheels' own code (benchmarks/rife_peers.py).
* ``plain-dis``: OpenCV DIS PRESET_MEDIUM both ways, linear intermediate-flow approximation, backward warp,
  linear blend (the baseline of issue 4).
* ``mg-auto``: exactly what ``motionguide interpolate a.png b.png`` runs by default (``get_interpolator("auto")``:
  RIFE v3.6 with its flip ensemble when installed).
* ``mg-*``: motionguide (flow.interpolate): ``mg-dis`` (the weight-free backend), its ablations
  ``mg-dis-linear`` (linear reversal only) and ``mg-dis-splat`` (splatting reversal only), ``mg-farneback``,
  ``mg-ifnet-v3.6`` / ``mg-ifnet-v4.25`` (our IFNet with each checkpoint), ``mg-ifnet-v3.6-tta`` (flip TTA),
  ``mg-ifnet-v3.6+dis`` (v3.6's and dis's intermediate flows averaged), ``mg-raft_small`` / ``mg-raft_large`` (only when torchvision's RAFT weights are cached).

Usage::

    python benchmarks/interpolate.py [--data DIR] [--json OUT] [--datasets middlebury,sintel,vtest,bbb]
                                     [--max-triplets 4] [--methods ...] [--threads 0] [--reps 1]

Threads: torch's and OpenCV's defaults (``--threads 0``, here 2), with ``OMP_WAIT_POLICY=PASSIVE`` set before
torch loads (unless already set). Why: this CPU is shared by several processes, and OpenMP threads that
spin while waiting for a descheduled partner made every small torch op 10-20x slower (the weight-free
pipeline at 720p took 4.2 s instead of 0.26 s with 2 spinning threads); passive waiting removes that and
changes nothing for an idle machine. ``--threads 1`` gives the single-thread figures.

Prints per-sequence rows, a summary table (mean PSNR / SSIM per dataset, median seconds per frame at native
size and at 1280x720), motionguide-to-peer ratios, and the issue 4 and issue 15 targets with pass/fail.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

try:  # _common first: it sets OMP_WAIT_POLICY before torch loads (see "Threads" above)
    import _common as common
    import rife_peers
except ModuleNotFoundError:
    from benchmarks import _common as common, rife_peers

import numpy as np  # noqa: E402
import torch  # noqa: E402

from flow.io import read_image, write_image  # noqa: E402
from flow.metrics import psnr, ssim  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))
DATASETS = ("middlebury", "sintel", "vtest", "bbb")
MIDDLEBURY = ("Dimetrodon", "Grove2", "Hydrangea", "RubberWhale", "Urban2", "Venus")
PEERS = ("average", "ffmpeg-minterpolate", "rife-v3.6", "rife-v4.25", "plain-dis")


# --------------------------------------------------------------------------------------------- data


def _video_triplets(path: Path, centres: list[int]) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Hold-out triplets (i-1, i+1 -> i) for the given centre indices, streaming through the file once."""
    from flow.video import VideoReader

    want = {c + d for c in centres for d in (-1, 0, 1)}
    got: dict[int, torch.Tensor] = {}
    with VideoReader(path) as vr:
        for i, f in enumerate(vr):
            if i in want:
                got[i] = f
            if i >= max(want):
                break
    return [(f"frame{c:04d}", got[c - 1][None], got[c + 1][None], got[c][None]) for c in centres if c + 1 in got]


def load_dataset(name: str, max_triplets: int):
    """[(sequence, frame0, frame1, truth)], each (1, 3, H, W) float [0, 1]; [] with a message when absent."""
    if name == "middlebury":
        root = DATA / "middlebury"
        if not root.is_dir():
            print(f"skip middlebury: {root} not found")
            return []
        return [
            (s, read_image(root / s / "frame10.png")[None], read_image(root / s / "frame11.png")[None],
             read_image(root / s / "frame10i11.png")[None])
            for s in MIDDLEBURY
        ]
    if name == "sintel":
        root = DATA / "sintel_frames"
        if not root.is_dir():
            print(f"skip sintel: {root} not found")
            return []
        centres = list(range(17, 25, 2))[:max_triplets]  # 17, 19, 21, 23: triplets that share no frame
        return [
            (f"frame_{c:04d}", read_image(root / f"frame_{c - 1:04d}.png")[None],
             read_image(root / f"frame_{c + 1:04d}.png")[None], read_image(root / f"frame_{c:04d}.png")[None])
            for c in centres
        ]
    path = DATA / "videos" / ("vtest.avi" if name == "vtest" else "bigbuckbunny.mp4")
    if not path.is_file():
        print(f"skip {name}: {path} not found")
        return []
    # Spread over the clip (vtest: 795 frames; bbb: 132 frames).
    span = (100, 700) if name == "vtest" else (20, 110)
    centres = [int(round(x)) for x in np.linspace(span[0], span[1], max(max_triplets, 1))][:max_triplets]
    return _video_triplets(path, centres)


# ------------------------------------------------------------------------------------------ methods


def _ffmpeg_minterpolate() -> Callable:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()

    def run(f0, f1):
        with tempfile.TemporaryDirectory() as d:
            for i, f in enumerate((f0, f1, f1)):  # a, b, b: minterpolate needs a frame after b to emit a->b
                write_image(Path(d) / f"in{i}.png", f[0])
            # 1 fps in, 2 fps out: out1 = a, out2 = t 0.5, out3 = b. Filter defaults otherwise (obmc, bilat,
            # epzs, 16 px blocks, scd=fdiff); ffmpeg negotiates yuv444p for it from rgb24 (no chroma loss).
            subprocess.run(
                [exe, "-v", "error", "-framerate", "1", "-i", str(Path(d) / "in%d.png"),
                 "-vf", "minterpolate=fps=2:mi_mode=mci", "-pix_fmt", "rgb24", str(Path(d) / "out%d.png")],
                check=True, capture_output=True,
            )
            return read_image(Path(d) / "out2.png")[None]

    return run


def _plain_dis() -> Callable:
    """The baseline of issue 4, written out here so that it stays what it is whatever flow.interpolate does."""
    import cv2

    from flow.warp import backward_warp

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def grey(f):
        u8 = (f[0].clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8).permute(1, 2, 0).numpy()
        return cv2.cvtColor(np.ascontiguousarray(u8), cv2.COLOR_RGB2GRAY)

    def run(f0, f1, t=0.5):
        g0, g1 = grey(f0), grey(f1)
        f01 = torch.from_numpy(dis.calc(g0, g1, None)).permute(2, 0, 1)[None]
        f10 = torch.from_numpy(dis.calc(g1, g0, None)).permute(2, 0, 1)[None]
        ft0 = -(1 - t) * t * f01 + t * t * f10
        ft1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10
        return (1 - t) * backward_warp(f0, ft0) + t * backward_warp(f1, ft1)

    return run


def _peer(version: str) -> Callable | str:
    why = rife_peers.peer_unavailable(version)
    if why:
        return why

    def run(f0, f1):
        with torch.no_grad():
            return rife_peers.run_peer(version, f0, f1, 0.5)

    return run


def _mg(backend: str, tta: bool = False, **kw) -> Callable | str:
    from flow.interpolate import get_interpolator

    try:
        interp = get_interpolator(backend, **kw)
    except FileNotFoundError as e:
        return str(e).split(". ")[0]

    def run(f0, f1):
        return interp.interpolate(f0, f1, [0.5], tta=tta)[0]

    run.description = interp.description
    return run


def build_methods(names: list[str] | None) -> dict[str, Callable]:
    """name -> callable(frame0, frame1) -> (1, 3, H, W); unavailable ones are reported and left out."""
    from flow.estimators import find_raft_weights

    makers: dict[str, Callable[[], Callable | str]] = {
        "average": lambda: (lambda f0, f1: (f0 + f1) * 0.5),
        "ffmpeg-minterpolate": _ffmpeg_minterpolate,
        "rife-v3.6": lambda: _peer("v3.6"),
        "rife-v4.25": lambda: _peer("v4.25"),
        "plain-dis": _plain_dis,
        "mg-auto": lambda: _mg("auto"),
        "mg-dis": lambda: _mg("dis"),
        "mg-dis-half": lambda: _mg("dis", scale=0.5),  # flow at 1/2 instead of the automatic 1/3 on 720p
        "mg-dis-linear": lambda: _mg("dis", reversal="linear"),
        "mg-dis-splat": lambda: _mg("dis", reversal="splat"),
        "mg-farneback": lambda: _mg("farneback"),
        "mg-ifnet-v3.6": lambda: _mg("ifnet", weights="v3.6"),
        "mg-ifnet-v4.25": lambda: _mg("ifnet", weights="v4.25"),
        "mg-ifnet-v3.6-tta": lambda: _mg("ifnet", weights="v3.6", tta=True),
        "mg-ifnet-v3.6+dis": lambda: _mg("ifnet+dis", weights="v3.6"),
    }
    for variant in ("raft_small", "raft_large"):
        if find_raft_weights(variant) is not None:
            makers[f"mg-{variant}"] = (lambda v=variant: _mg(v))
        elif names and f"mg-{variant}" in names:
            makers[f"mg-{variant}"] = (lambda v=variant: f"no cached torchvision weights for {v}")
    wanted = names or list(makers)
    unknown = [n for n in wanted if n not in makers]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; expected some of {list(makers)}")
    methods = {}
    for n in wanted:
        m = makers[n]()
        if isinstance(m, str):
            print(f"skip {n}: {m}")
        else:
            methods[n] = m
    return methods


# ---------------------------------------------------------------------------------------------- run


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return (x.float().clamp(0, 1) * 255 + 0.5).floor() / 255


def run_benchmark(datasets, methods, reps: int, max_triplets: int) -> list[dict]:
    rows = []
    warm = torch.rand(1, 3, 64, 96)
    for name, fn in methods.items():  # first calls build caches / lazy objects: not part of any timing
        fn(warm, warm.roll(2, dims=3))
    for ds in datasets:
        items = load_dataset(ds, max_triplets)
        for seq, f0, f1, gt in items:
            # Methods interleaved per item: load changes on this shared machine hit all methods alike.
            for name, fn in methods.items():
                times = []
                for _ in range(reps):
                    t = time.perf_counter()
                    with torch.inference_mode():
                        out = fn(f0, f1)
                    times.append(time.perf_counter() - t)
                out = _quantise(out)
                row = {"method": name, "dataset": ds, "sequence": seq, "psnr": round(psnr(out, gt), 4),
                       "ssim": round(ssim(out, gt), 5), "seconds": round(statistics.median(times), 4)}
                rows.append(row)
                print(f"  {ds:10s} {seq:12s} {name:20s} {row['psnr']:7.3f} dB  {row['ssim']:.4f}  {row['seconds']:7.3f} s",
                      flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    """method -> {dataset: (mean psnr, mean ssim)}, plus 'native_s' (median over Middlebury, else all
    non-720p rows) and '720p_s' (median over bbb rows)."""
    out: dict[str, dict] = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == m]
        s: dict = {}
        for ds in DATASETS:
            rr = [r for r in mine if r["dataset"] == ds]
            if rr:
                s[ds] = (statistics.fmean(r["psnr"] for r in rr), statistics.fmean(r["ssim"] for r in rr))
        native = [r["seconds"] for r in mine if r["dataset"] == "middlebury"] or [
            r["seconds"] for r in mine if r["dataset"] != "bbb"]
        s["native_s"] = statistics.median(native) if native else None
        hd = [r["seconds"] for r in mine if r["dataset"] == "bbb"]
        s["720p_s"] = statistics.median(hd) if hd else None
        out[m] = s
    return out


def _fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def print_tables(rows: list[dict]) -> list[str]:
    """Print the summary, ratio and target tables; return the target lines (for the JSON)."""
    summ = summarise(rows)
    ds_present = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    print("\nMean PSNR dB / SSIM per dataset; median seconds per interpolated frame (native: Middlebury; 720p: bbb)")
    head = f"| {'method':20s} | " + " | ".join(f"{d:>16s}" for d in ds_present) + " | native s | 720p s |"
    print(head)
    print("|" + "---|" * (len(ds_present) + 3))
    for m, s in summ.items():
        cells = " | ".join(f"{s[d][0]:7.2f} / {s[d][1]:.4f}" if d in s else f"{'n/a':>16s}" for d in ds_present)
        print(f"| {m:20s} | {cells} | {_fmt(s['native_s'], '8.3f')} | {_fmt(s['720p_s'], '6.3f')} |")

    peers = [p for p in PEERS if p in summ]
    mine = [m for m in summ if m.startswith("mg-")]
    if peers and mine:
        print("\nmotionguide vs each peer: PSNR difference in dB per dataset (mg - peer), time ratio at 720p (mg / peer)")
        print(f"| {'motionguide':20s} | {'peer':20s} | " + " | ".join(f"{d:>10s}" for d in ds_present) + " | time x |")
        print("|" + "---|" * (len(ds_present) + 3))
        for m in mine:
            for p in peers:
                d = " | ".join(
                    f"{summ[m][ds][0] - summ[p][ds][0]:+10.2f}" if ds in summ[m] and ds in summ[p] else f"{'n/a':>10s}"
                    for ds in ds_present)
                tm, tp = summ[m]["720p_s"], summ[p]["720p_s"]
                ratio = tm / tp if tm and tp else None
                print(f"| {m:20s} | {p:20s} | {d} | {_fmt(ratio, '6.2f')} |")
    return print_targets(rows, summ)


def print_targets(rows, summ) -> list[str]:
    lines = []

    def say(ok, text):
        line = f"[{'PASS' if ok else 'FAIL'}] {text}"
        lines.append(line)
        print(line)

    print("\nIssue 4 targets")
    mb = lambda m: summ.get(m, {}).get("middlebury", (None,))[0]  # noqa: E731
    for v in ("v3.6", "v4.25"):
        ours, peer = f"mg-ifnet-{v}", f"rife-{v}"
        if ours in summ and peer in summ and "middlebury" in summ[ours]:
            diffs = [abs(a["psnr"] - b["psnr"]) for a in rows for b in rows
                     if a["method"] == ours and b["method"] == peer and a["dataset"] == b["dataset"] == "middlebury"
                     and a["sequence"] == b["sequence"]]
            t_ours = summ[ours]["720p_s"] or summ[ours]["native_s"]
            t_peer = summ[peer]["720p_s"] or summ[peer]["native_s"]
            say(max(diffs) <= 0.05, f"IFNet {v} reproduces the peer on every Middlebury sequence: max |dPSNR| = {max(diffs):.3f} dB (<= 0.05)")
            say(t_ours <= t_peer, f"IFNet {v} at least as fast as the peer: {t_ours:.3f} s vs {t_peer:.3f} s per frame")
    rife = [p for p in ("rife-v3.6", "rife-v4.25") if mb(p) is not None]
    if rife:
        best_peer = max(rife, key=mb)
        slower = max(rife, key=lambda p: summ[p]["720p_s"] or summ[p]["native_s"])
        t_slow = summ[slower]["720p_s"] or summ[slower]["native_s"]
        mg = [m for m in summ if m.startswith("mg-") and mb(m) is not None]
        tsec = lambda m: summ[m]["720p_s"] or summ[m]["native_s"]  # noqa: E731
        good = [m for m in mg if mb(m) - mb(best_peer) >= 0.3 and tsec(m) <= 2 * tsec(slower)]
        for m in sorted(mg, key=mb, reverse=True)[:3]:
            print(f"  {m}: {mb(m):.2f} dB ({mb(m) - mb(best_peer):+.2f} vs {best_peer}), {tsec(m):.2f} s per frame "
                  f"({tsec(m) / tsec(slower):.2f}x the slower peer {slower})")
        if good:
            best = max(good, key=mb)
            say(True, f"best setting {best}: {mb(best):.2f} dB vs best peer {best_peer} {mb(best_peer):.2f} dB on "
                      f"Middlebury ({mb(best) - mb(best_peer):+.2f} dB >= +0.3) at {tsec(best):.2f} s per frame "
                      f"<= 2 x {slower} ({2 * tsec(slower):.2f} s)")
        else:
            say(False, f"no motionguide setting beats {best_peer} ({mb(best_peer):.2f} dB) by 0.3 dB within 2x {slower}'s time")
    if mb("mg-dis") is not None and mb("plain-dis") is not None:
        say(mb("mg-dis") - mb("plain-dis") >= 0.3,
            f"weight-free mg-dis {mb('mg-dis'):.2f} dB vs plain-dis {mb('plain-dis'):.2f} dB on Middlebury: "
            f"{mb('mg-dis') - mb('plain-dis'):+.2f} dB (>= +0.3)")
        t = summ["mg-dis"]["720p_s"]
        tp = summ["plain-dis"]["720p_s"]
        if t is not None:
            say(t <= 0.2, f"mg-dis {t:.3f} s per 720p frame (<= 0.2; plain-dis {_fmt(tp, '.3f')} s in this run)")
    if "mg-dis" in summ and "ffmpeg-minterpolate" in summ:
        cells = [(ds, summ["mg-dis"][ds][0], summ["ffmpeg-minterpolate"][ds][0]) for ds in DATASETS
                 if ds in summ["mg-dis"] and ds in summ["ffmpeg-minterpolate"]]
        say(all(a > b for _, a, b in cells),
            "mg-dis beats ffmpeg minterpolate on every dataset: " + ", ".join(f"{d} {a - b:+.2f} dB" for d, a, b in cells))
    print_auto_targets(rows, summ, say)
    return lines


def _paired_ratio(rows, a: str, b: str, dataset: str) -> float | None:
    """Median over the frames of ``dataset`` of a's time / b's time on the same frame (measured back to back)."""
    tb = {r["sequence"]: r["seconds"] for r in rows if r["method"] == b and r["dataset"] == dataset}
    ratios = [r["seconds"] / tb[r["sequence"]] for r in rows
              if r["method"] == a and r["dataset"] == dataset and tb.get(r["sequence"])]
    return statistics.median(ratios) if ratios else None


def print_auto_targets(rows, summ, say) -> None:
    """Issue 15: the default (mg-auto) ahead of RIFE v3.6 by 0.3 dB on Middlebury, within RIFE v3.6's time."""
    if "mg-auto" not in summ or "rife-v3.6" not in summ:
        return
    print("\nIssue 15 targets (mg-auto = what `motionguide interpolate a.png b.png` runs by default)")
    mine, peer = summ["mg-auto"], summ["rife-v3.6"]
    held = [d for d in DATASETS if d != "middlebury" and d in mine and d in peer]
    if held:
        print("  mg-auto - rife-v3.6 on the hold-out sets: " +
              ", ".join(f"{d} {mine[d][0] - peer[d][0]:+.2f} dB" for d in held))
    if "middlebury" in mine and "middlebury" in peer:
        d = mine["middlebury"][0] - peer["middlebury"][0]
        say(d >= 0.3, f"mg-auto {mine['middlebury'][0]:.2f} dB vs rife-v3.6 {peer['middlebury'][0]:.2f} dB on Middlebury: "
                      f"{d:+.2f} dB (>= +0.3)")
    if mine["720p_s"] and peer["720p_s"]:
        ratio = mine["720p_s"] / peer["720p_s"]
        paired = _paired_ratio(rows, "mg-auto", "rife-v3.6", "bbb")
        say(ratio <= 1.0, f"mg-auto {mine['720p_s']:.2f} s vs rife-v3.6 {peer['720p_s']:.2f} s per 720p frame: "
                          f"{ratio:.2f}x (<= 1.0; median of per-frame ratios {_fmt(paired, '.2f')})")


@common.cli
def main(argv=None) -> int:
    global DATA  # --data replaces it for load_dataset
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, metavar="DIR",
                    help=f"evaluation data folder, laid out as ../shared/data (default: $MOTIONGUIDE_DATA or {DATA})")
    ap.add_argument("--json", default=None, metavar="OUT", help="write the rows (and the target lines) as JSON")
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated subset of {','.join(DATASETS)}")
    ap.add_argument("--max-triplets", type=int, default=4, metavar="N", help="hold-out triplets per sintel/video dataset (default 4)")
    ap.add_argument("--methods", default=None, help="comma-separated method names (default: all available)")
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions per frame (median; default 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (default 0 = their defaults)")
    args = ap.parse_args(argv)
    if args.data is not None:
        DATA = Path(args.data)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in datasets if d not in DATASETS]
    if bad:
        raise common.UserError(f"unknown dataset(s) {bad}; expected some of {DATASETS}")
    if not DATA.is_dir():
        print(f"evaluation data not found at {DATA} (pass --data DIR); nothing to benchmark")
        return 0
    common.set_threads(args.threads)
    methods = build_methods([m.strip() for m in args.methods.split(",")] if args.methods else None)
    print(f"threads={torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"methods: {', '.join(methods)}")
    for n, fn in methods.items():
        if getattr(fn, "description", None):
            print(f"  {n}: {fn.description}")
    t0 = time.perf_counter()
    rows = run_benchmark(datasets, methods, args.reps, args.max_triplets)
    targets = print_tables(rows)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        meta = {"threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "reps": args.reps, "max_triplets": args.max_triplets,
                "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        common.write_json(args.json, {"rows": rows, "targets": targets, "meta": meta}, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
