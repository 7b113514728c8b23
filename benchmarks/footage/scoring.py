"""Scoring a method's output against a task's real frames at the input's and the model's size (PSNR, SSIM,
stability, transfer's motion EPE, and PSNR inside the pixels the model fills or no source sees), running
every method on every task of every clip, and the means and paired per-clip differences over clips."""
from __future__ import annotations

import contextlib
import io
import math
import re
import statistics
import sys
import time
from typing import Callable

try:  # ``_common`` with benchmarks/ on sys.path (a script run from there), else ``benchmarks._common``
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from flow.estimators import get_estimator  # noqa: E402
from flow.metrics import epe, psnr, ssim  # noqa: E402
from flow.warp import backward_warp, resize_flow  # noqa: E402
from motionguide.warping import unseen_of  # noqa: E402

from .clips import Clip  # noqa: E402
from .tasks import (APPLIES, FILL_MODES, JOBS, MODEL_MODES, MODES, Method, SharedInterpolator, Task,  # noqa: E402
                    job_method, make_tasks)

SIZES = ("input", "model")
PSNR_CAP = 100.0


def _q8(x: torch.Tensor) -> torch.Tensor:
    return (x.float().clamp(0, 1) * 255 + 0.5).floor() / 255


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    """Frames to ``size``: area when shrinking, bicubic (clamped) when enlarging."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


class Truth:
    """A task's true frames at both scoring sizes, and what every method is measured with.

    ``frames[size]``: ``(T, 3, h, w)``; ``back[size]``: ``(T-1, 2, h, w)`` DIS flow F(t+1 -> t) of the true
    frames (at the model's size: the input-resolution flow resized, magnitudes rescaled), for stability;
    ``motion[size]``: the motion meter on the true frames (transfer's motion EPE)."""

    def __init__(self, task: Task, estimator, model_size, clip_back: torch.Tensor | None = None):
        self.task, self.est, self.model_size = task, estimator, tuple(model_size)
        n = task.truth.shape[0]
        full = clip_back[: n - 1] if clip_back is not None else estimator(task.truth[1:], task.truth[:-1])
        self.sizes = {"input": tuple(task.truth.shape[-2:]), "model": self.model_size}
        self.frames = {s: _resize(task.truth, hw) for s, hw in self.sizes.items()}
        self.back = {"input": full, "model": resize_flow(full, self.model_size)}
        self.motion = {}
        if task.job == "transfer":
            self.motion = {"input": full, "model": self.meter(self.frames["model"][1:], self.frames["model"][:-1])}

    def meter(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """DIS a -> b at the model's size, on frames upsampled 4x (DIS's 8 px patches cover a quarter of a
        32 px frame), the flow area-averaged back (``benchmarks/motion.py``'s meter)."""
        up = lambda x: F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)  # noqa: E731
        return F.interpolate(self.est(up(a), up(b)), size=a.shape[-2:], mode="area") / 4

    def stability(self, frames: torch.Tensor, size: str) -> float:
        """Mean |backward_warp(o_t, F_true(t+1 -> t)) - o_t+1| in 8-bit levels over the pairs that hold a
        generated frame."""
        g = self.task.generated
        pairs = [i for i in range(frames.shape[0] - 1) if i in g or i + 1 in g]
        warped = backward_warp(frames[pairs], self.back[size][pairs])
        return float((warped - frames[[i + 1 for i in pairs]]).abs().mean()) * 255

    def fill_scores(self, out: torch.Tensor, extra: dict, size: str = "input") -> dict:
        """Where the job's confidence sent pixels to the model (weight 1 - confidence, generated frames, at
        ``size``, the size the job made its output at): ``psnr_fill`` of the output there, ``psnr_fill_warp``
        of the job's own flow-only warp there, ``fill_weight`` the mean weight; and the job's
        ``model_share``. Empty when the job reports no confidence at that size or the model supplied nothing."""
        conf, warped, share = extra.get("confidence"), extra.get("warped"), extra.get("model_share")
        t, g = self.frames[size], self.task.generated
        if conf is None or warped is None or not share or tuple(conf.shape[-2:]) != tuple(t.shape[-2:]):
            return {}
        w = (1 - conf[g].float().clamp(0, 1)).expand(-1, 3, -1, -1)
        if float(w.sum()) < 1:
            return {}

        def wpsnr(x):
            mse = float(((_q8(x[g]) - t[g]) ** 2 * w).sum() / w.sum())
            return min(10 * math.log10(1 / max(mse, 1e-10)), PSNR_CAP)

        return {"psnr_fill": wpsnr(out), "psnr_fill_warp": wpsnr(warped), "fill_weight": float(w.mean()),
                "model_share": float(share)}

    def unseen_score(self, out: torch.Tensor, unseen: torch.Tensor, key: str = "unseen") -> dict:
        """``psnr_<key>``: PSNR of output ``(T, 3, H, W)`` at the input's size inside the pixels no source
        of the job's guidance sees (``unseen (T, 1, H, W)`` bool, generated frames), and ``<key>_share``: their
        fraction of the generated frames' pixels. Empty when there are none."""
        g = self.task.generated
        m = unseen[g].expand(-1, 3, -1, -1)
        if tuple(out.shape[-2:]) != tuple(m.shape[-2:]) or not bool(m.any()):
            return {}
        o, t = _q8(_resize(out, self.sizes["input"]))[g], self.frames["input"][g]
        mse = float(((o - t) ** 2)[m].mean())
        return {f"psnr_{key}": min(10 * math.log10(1 / max(mse, 1e-10)), PSNR_CAP),
                f"{key}_share": float(m.float().mean())}

    def score(self, out: torch.Tensor, size: str) -> dict:
        """PSNR, SSIM (generated frames), stability of output ``(T, 3, h, w)`` at ``size`` (``input`` /
        ``model``); transfer: also ``motion_epe``."""
        # rounded to 8 bits on the grid it is scored on, as if saved at that size: a warp made at the input's
        # size and area-downscaled would otherwise be more precise than any 8-bit output at the model's size
        o, t, g = _q8(_resize(out, self.sizes[size])), self.frames[size], self.task.generated
        res = {"psnr": min(psnr(o[g], t[g]), PSNR_CAP), "ssim": ssim(o[g], t[g]), "stability": self.stability(o, size)}
        if self.task.job == "transfer":
            fo = self.est(o[1:], o[:-1]) if size == "input" else self.meter(o[1:], o[:-1])
            res["motion_epe"] = epe(fo, self.motion[size])
        return res


# -------------------------------------------------------------------------------------------------- run
@contextlib.contextmanager
def _collect_notices(seen: set):
    """The jobs' notices (stderr) once each, not once per call (they would break the progress bar)."""
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        yield
    for line in buf.getvalue().splitlines():
        key = re.sub(r"\d+", "#", line)  # one per kind, not per input size
        if line.strip() and key not in seen:
            seen.add(key)
            common.notice(line.removeprefix("notice: "))


def run_benchmark(clips: list[Clip], methods: dict[str, Method], model_size, *, jobs_=JOBS,
                  progress: bool = True, shared: SharedInterpolator | None = None,
                  on_clip: Callable[[list], None] | None = None) -> dict:
    """Every method on every task of every clip; returns ``{"per_clip": [...], "truth_stability": {...}}``.
    Methods are interleaved per task (load changes on a shared machine hit all of them alike); each gets
    ``task.inputs`` only. ``on_clip(per_clip)``: called after each clip with the rows so far."""
    est = get_estimator("dis")
    per_clip: list[dict] = []
    floor: dict = {}
    seen: set = set()
    for clip in tqdm(clips, desc="clips", unit="clip", disable=not progress, file=sys.stderr):
        if shared is not None:
            shared.clear()
        with torch.inference_mode():
            back = est(clip.frames[1:], clip.frames[:-1])  # the true frames' flow, shared by the tasks
        for job, task in make_tasks(clip.frames, clip.name, jobs_).items():
            unseen = None
            if any(name in FILL_MODES for name in methods):  # the pixels no source of the job's guidance sees
                with _collect_notices(seen), torch.inference_mode():
                    g = job_method(None, shared=shared, mode="flow_only")(job, task.inputs)[1]["guidance"]
                    unseen = unseen_of(g)[0].transpose(0, 1)  # (T, 1, H, W)
                    entering = unseen_of(g, outside=True)[0].transpose(0, 1)  # the samples leave the frame
                if shared is not None:
                    shared.charge()
            with torch.inference_mode():
                truth = Truth(task, est, model_size, back)
                for s in SIZES:
                    floor.setdefault((job, s), []).append(truth.stability(truth.frames[s], s))
            for name, fn in methods.items():
                mode, _, only = name.partition("@")
                if job not in APPLIES[mode]:
                    continue
                t0 = time.perf_counter()
                with _collect_notices(seen), torch.inference_mode():
                    out = fn(job, task.inputs)
                sec = time.perf_counter() - t0 + (shared.charge() if shared is not None else 0.0)
                out, extra = out if isinstance(out, tuple) else (out, {})
                if out.shape[0] != task.truth.shape[0]:
                    raise RuntimeError(f"{name} on {job}: {out.shape[0]} output frames, expected {task.truth.shape[0]}")
                out = _q8(out)
                for s in (only,) if only else SIZES:
                    with torch.inference_mode():
                        m = truth.score(out, s)
                        m.update(truth.fill_scores(out, extra, s))
                        if unseen is not None and s == "input":
                            m.update(truth.unseen_score(out, unseen))
                            m.update(truth.unseen_score(out, entering, "entering"))
                    per_clip.append({"clip": clip.name, "job": job, "mode": mode, "size": s,
                                     "out_size": list(out.shape[-2:]), "input_size": list(task.truth.shape[-2:]),
                                     **{k: round(v, 4) for k, v in m.items()},
                                     "seconds_per_frame": round(sec / len(task.generated), 4)})
        if on_clip is not None:
            on_clip(per_clip)
    return {"per_clip": per_clip,
            "truth_stability": {f"{j}/{s}": round(statistics.fmean(v), 4) for (j, s), v in floor.items()}}


def finite_mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return round(statistics.fmean(xs), 4) if xs else None


def summarise(per_clip: list[dict], modes=MODES) -> list[dict]:
    """One row per (job, mode, size): means over clips (issue 17's row schema; transfer adds motion_epe)."""
    rows = []
    for job in JOBS:
        for mode in modes:
            for s in SIZES:
                rr = [r for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, mode, s)]
                if not rr:
                    continue
                row = {"job": job, "mode": mode, "size": s,
                       **{k: finite_mean(r[k] for r in rr) for k in ("psnr", "ssim", "stability", "seconds_per_frame")}}
                if job == "transfer":
                    row["motion_epe"] = finite_mean(r.get("motion_epe") for r in rr)
                rows.append(row)
    return rows


def paired(per_clip: list[dict], job: str, a: str, b: str, size: str, key: str = "psnr") -> dict | None:
    """Mean per-clip difference a - b of ``key`` and its standard error (None with fewer than 2 clips)."""
    va = {r["clip"]: r[key] for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, a, size)}
    vb = {r["clip"]: r[key] for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, b, size)}
    d = [va[c] - vb[c] for c in va if c in vb]
    if not d:
        return None
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) >= 2 else None
    return {"job": job, "a": a, "b": b, "size": size, "mean": round(statistics.fmean(d), 4),
            "se": None if se is None else round(se, 4)}


PAIRS = ([(m, "flow_only") for m in MODEL_MODES]
         + [("default", p) for p in ("ifnet_retime", "minterpolate", "average", "constant_velocity", "repeat_last")]
         + [("flow_only", p) for p in ("ifnet_retime", "minterpolate", "constant_velocity")])
#: informational pairs (not in issue 17's schema: JSON "extra_paired"): against the warp at the model's grid,
#: and the model's own clip against the warp
EXTRA_PAIRS = [(m, "flow_only_grid") for m in ("both", "training_free")] + [("both_raw", "flow_only")]


def fill_summary(per_clip: list[dict]) -> list[dict]:
    """Per (job, mode) at the input's size, where the job reports a confidence and the model supplied
    pixels: mean ``psnr_fill`` (the output inside the model's pixels, weight 1 - confidence), mean
    ``psnr_fill_warp`` (the job's warp there), their paired per-clip difference and SE, the mean
    ``fill_weight`` and ``model_share``."""
    out = []
    for job in JOBS:
        for mode in MODES:
            rr = [r for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, mode, "input") and "psnr_fill" in r]
            if not rr:
                continue
            d = [r["psnr_fill"] - r["psnr_fill_warp"] for r in rr]
            se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) >= 2 else None
            out.append({"job": job, "mode": mode, "clips": len(rr), "psnr_fill": finite_mean(r["psnr_fill"] for r in rr),
                        "psnr_fill_warp": finite_mean(r["psnr_fill_warp"] for r in rr), "mean": round(statistics.fmean(d), 4),
                        "se": None if se is None else round(se, 4), "fill_weight": finite_mean(r["fill_weight"] for r in rr),
                        "model_share": finite_mean(r["model_share"] for r in rr)})
    return out


def unseen_summary(per_clip: list[dict], base: str = "fill_clamp") -> list[dict]:
    """Per (job, mode) at the input's size, where the run measured the pixels no source sees (the fill rows
    ran): mean ``psnr_unseen`` (inside those pixels) and ``psnr`` (whole generated frames), each paired per
    clip against ``base`` (the border clamp: the warp as it is) with its SE, and ``unseen_share``."""
    out = []
    for job in JOBS:
        for mode in MODES:
            rr = [r for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, mode, "input") and "psnr_unseen" in r]
            if not rr:
                continue
            row = {"job": job, "mode": mode, "clips": len(rr), "psnr_unseen": finite_mean(r["psnr_unseen"] for r in rr),
                   "psnr_entering": finite_mean(r.get("psnr_entering") for r in rr), "psnr": finite_mean(r["psnr"] for r in rr),
                   "unseen_share": finite_mean(r["unseen_share"] for r in rr),
                   "entering_share": finite_mean(r.get("entering_share", 0.0) for r in rr)}
            for key in ("psnr_unseen", "psnr_entering", "psnr"):
                p = paired([r for r in per_clip if key in r], job, mode, base, "input", key)
                row[f"{key}_vs_{base}"] = None if p is None else {"mean": p["mean"], "se": p["se"]}
            out.append(row)
    return out


def all_paired(per_clip: list[dict], pairs=PAIRS, sizes=SIZES) -> list[dict]:
    out = []
    for job in JOBS:
        for a, b in pairs:
            if job in APPLIES[a] and job in APPLIES[b]:
                for s in sizes:
                    p = paired(per_clip, job, a, b, s)
                    if p is not None:
                        out.append(p)
    return out

