"""The printed tables, the target lines of issue 17 and the JSON document of a real-footage run."""
from __future__ import annotations

import statistics
import time

import torch

from .clips import CLIP_FRAMES, Clip
from .scoring import EXTRA_PAIRS, SIZES, all_paired, fill_summary, paired, summarise, unseen_summary
from .tasks import EXTRA_MODES, JOBS, MODES, N_EXTEND

#: issue 17's targets that this benchmark measures
TARGET_IFNET_MARGIN = 0.05  # speed default >= ifnet_retime - 0.05 dB (input size)
TARGET_TRAINING_FREE_MARGIN = 0.3  # training_free >= flow_only - 0.3 dB (model size)
TARGET_EXTEND_SECONDS = 10.0  # extending a 480x360 clip by 4 frames
TARGET_SLOWMO_RATIO = 2.0  # 2x slow motion in at most 2x the time of retime


def _f(x, spec="6.2f"):
    return "n/a" if x is None else format(x, spec)


def _pm(p: dict | None, unit: bool = True) -> str:
    if p is None:
        return "n/a"
    return f"{p['mean']:+.2f} +- {_f(p['se'], '.2f')}" + (" dB" if unit else "")


def format_tables(result: dict) -> list[str]:
    """The rows (input and model size side by side) and the paired differences, as printed."""
    per_clip = result["per_clip"]
    n_clips = len({r["clip"] for r in per_clip})
    ms = "x".join(map(str, result["meta"]["model_size"][::-1]))
    lines = [f"Real footage, {n_clips} clips. PSNR dB / SSIM of the generated frames against the held-out real ones; "
             f"stab: mean |warp(o_t) - o_t+1| in 8-bit levels with the true frames' DIS flow (lower = steadier); "
             f"s/fr: seconds per generated frame. in: at the input's resolution (outputs smaller than the input "
             f"upsampled bicubic to it); mdl: output and truth area-resized to the model's {ms}. out: the method's "
             f"output size. * = informational row (the warp at the model's grid; the model's own clip), not in issue 17's rows.", "",
             "| job | mode | out | PSNR in | PSNR mdl | SSIM in | SSIM mdl | stab in | stab mdl | s/fr | motion EPE in/mdl |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r["job"], r["mode"], r["size"]): r for r in result["rows"] + result.get("extra_rows", [])}
    for job in JOBS:
        for mode in MODES + EXTRA_MODES:
            ri, rm = by.get((job, mode, "input")), by.get((job, mode, "model"))
            if ri is None or rm is None:
                continue
            outs = []
            for size in SIZES:
                mine = [x for x in per_clip if (x["job"], x["mode"], x["size"]) == (job, mode, size)]
                outs.append("input" if all(x["out_size"] == x["input_size"] for x in mine) else
                            "/".join(sorted({"x".join(map(str, x["out_size"][::-1])) for x in mine})))
            out = outs[0] if outs[0] == outs[1] else " / ".join(outs)
            epe_ = f"{_f(ri.get('motion_epe'), '.2f')} / {_f(rm.get('motion_epe'), '.2f')}" if job == "transfer" else "-"
            lines.append(f"| {job} | {mode}{'*' if mode in EXTRA_MODES else ''} | {out} | {_f(ri['psnr'])} | "
                         f"{_f(rm['psnr'])} | {_f(ri['ssim'], '.4f')} | {_f(rm['ssim'], '.4f')} | "
                         f"{_f(ri['stability'], '.2f')} | {_f(rm['stability'], '.2f')} | "
                         f"{_f(ri['seconds_per_frame'], '.3f')} | {epe_} |")
    floor = result.get("truth_stability", {})
    if floor:
        lines.append("stab of the true frames themselves (warp and flow error alone), in / mdl: " + ", ".join(
            f"{j} {_f(floor.get(f'{j}/input'), '.2f')} / {_f(floor.get(f'{j}/model'), '.2f')}"
            for j in JOBS if f"{j}/input" in floor))
    if result.get("fill"):
        lines += ["", "Inside the pixels the job's confidence gives the model (weight 1 - confidence, generated frames, "
                  "input's size): PSNR of the output there vs the job's warp there, paired per clip (dB):"]
        lines += [f"  {f['job']:9s} {f['mode']:13s} output {_f(f['psnr_fill'])} vs warp {_f(f['psnr_fill_warp'])}: "
                  f"{_pm(f)}; those pixels are {100 * f['fill_weight']:.1f}% of the frames (model share "
                  f"{100 * f['model_share']:.1f}%)" for f in result["fill"]]
    if result.get("unseen"):
        lines += ["", "Where no source of the job's guidance sees a pixel (generated frames, input's size): PSNR inside "
                  "those pixels, in those of them whose every sample leaves the frame (entering: content coming into "
                  "view) and over the whole frames, each paired per clip against fill_clamp (the warp's border "
                  "clamp) (dB):"]
        lines += [f"  {u['job']:9s} {u['mode']:17s} unseen {_f(u['psnr_unseen'])} ({_pm(u['psnr_unseen_vs_fill_clamp'], False)})"
                  f"; of them entering {_f(u['psnr_entering'])} ({_pm(u['psnr_entering_vs_fill_clamp'], False)}); frame "
                  f"{_f(u['psnr'])} ({_pm(u['psnr_vs_fill_clamp'], False)}); {100 * u['unseen_share']:.2f}% / "
                  f"{100 * u['entering_share']:.2f}% of the pixels" for u in result["unseen"]]
    lines += ["", "Paired per-clip PSNR differences a - b, mean +- SE (dB), in / mdl:"]
    pairs = result["paired"] + result.get("extra_paired", [])
    keys = list(dict.fromkeys((p["job"], p["a"], p["b"]) for p in pairs))
    pk = {(p["job"], p["a"], p["b"], p["size"]): p for p in pairs}
    for job in JOBS:
        cells = [f"{a} - {b}: " + " / ".join(_pm(pk[(j, a, b, s)], unit=False) if (j, a, b, s) in pk else "-"
                                             for s in SIZES) for j, a, b in keys if j == job]
        for i in range(0, len(cells), 3):
            lines.append(f"  {job if i == 0 else '':9s} " + "; ".join(cells[i:i + 3]))
    return lines


def format_targets(result: dict) -> list[str]:
    """One line per target of issue 17 that this run measures: its verdict over every job, then each job's
    paired per-clip figure and verdict. Verdicts go by the paired mean (the SE says how sure it is)."""
    per_clip, rows = result["per_clip"], result["rows"]
    present = {(r["job"], r["mode"]) for r in rows}
    lines = ["", "Issue 17 targets (this run's footage; met / not met by the paired per-clip mean, +- its SE):"]

    def say(oks, text):
        verdict = "not measured" if not oks else "met" if all(oks) else "not met"
        lines.append(f"- [{verdict}] {text}")

    def pair_target(what, a, b, size, margin, jobs_=JOBS):
        cells, oks = [], []
        for job in jobs_:
            if (job, a) in present and (job, b) in present:
                p = paired(per_clip, job, a, b, size)
                oks.append(p["mean"] >= -margin)
                cells.append(f"{job} {_pm(p, unit=False)} {'met' if oks[-1] else 'NOT met'}")
        bound = f"{-margin:+.2f}" if margin else "0"
        say(oks, f"{what} ({a} - {b} at the {size} size >= {bound} dB): " + ("; ".join(cells) or "not in this run"))

    pair_target("every job's default >= flow_only at the input's resolution", "default", "flow_only", "input", 0.0)
    pair_target("speed's default >= IFNet retime - 0.05 dB", "default", "ifnet_retime", "input", TARGET_IFNET_MARGIN,
                ("speed0.5", "speed0.25"))
    pair_target("both >= flow_only at the model's size", "both", "flow_only", "model", 0.0)
    pair_target("training_free >= flow_only - 0.3 dB at the model's size", "training_free", "flow_only", "model",
                TARGET_TRAINING_FREE_MARGIN)
    for mode in ("both", "training_free"):
        fill = [f for f in result.get("fill", []) if f["mode"] == mode]
        say([f["mean"] >= 0 for f in fill],
            f"where the confidence sends pixels to the model ({mode}, fill model), the output beats the warp there "
            f"(PSNR inside them, output vs warp): " + ("; ".join(
                f"{f['job']} {_f(f['psnr_fill'], '.2f')} vs {_f(f['psnr_fill_warp'], '.2f')}, {_pm(f, unit=False)} "
                f"{'met' if f['mean'] >= 0 else 'NOT met'}" for f in fill) or "no model-filled pixels in this run"))
    # time targets, on the 480x360 clips of this run
    sec = lambda job, mode: [r["seconds_per_frame"] for r in per_clip  # noqa: E731
                             if (r["job"], r["mode"], r["size"]) == (job, mode, "input") and r["input_size"] == [360, 480]]
    ext = sec("extend", "default")
    s = statistics.fmean(ext) * N_EXTEND if ext else None
    say([s <= TARGET_EXTEND_SECONDS] if ext else [], f"extending a 480x360 clip by {N_EXTEND} frames in <= "
        f"{TARGET_EXTEND_SECONDS:g} s: " + (f"{s:.2f} s (default, mean of {len(ext)} clips)" if ext else "no 480x360 clip"))
    a, b = sec("speed0.5", "default"), sec("speed0.5", "ifnet_retime")
    r = statistics.fmean(a) / statistics.fmean(b) if a and b else None
    say([r <= TARGET_SLOWMO_RATIO] if r else [], f"2x slow motion of 480x360 clips in <= {TARGET_SLOWMO_RATIO:g}x "
        f"IFNet retime's time: " + (f"{statistics.fmean(a):.3f} vs {statistics.fmean(b):.3f} s per generated frame, "
                                    f"{r:.2f}x (5 kept frames -> 9 here)" if r else "no 480x360 clip or no IFNet row"))
    lines.append("- [not measured here] benchmarks/motion.py's steering targets")
    return lines


def build_result(res: dict, clips: list[Clip], model_size, *, seed: int = 0, seconds: float | None = None) -> dict:
    """The JSON document (issue 17's ``rows`` and ``paired``, plus ``extra_rows``, ``extra_paired``,
    ``per_clip``, ``truth_stability``, ``targets`` and ``meta``); ``_lines``: the printed tables."""
    result = {"rows": summarise(res["per_clip"]), "paired": all_paired(res["per_clip"]),
              "extra_rows": summarise(res["per_clip"], EXTRA_MODES),
              "extra_paired": all_paired(res["per_clip"], EXTRA_PAIRS, ("model",)),
              "fill": fill_summary(res["per_clip"]), "unseen": unseen_summary(res["per_clip"]),
              "per_clip": res["per_clip"], "truth_stability": res["truth_stability"],
              "meta": {"clips": [c.name for c in clips], "clip_frames": CLIP_FRAMES, "model_size": list(model_size),
                       "seed": seed, "threads": torch.get_num_threads(),
                       "seconds": None if seconds is None else round(seconds, 1),
                       "upsampling": "outputs smaller than the input are upsampled bicubic (clamped) for size 'input'",
                       "date": time.strftime("%Y-%m-%d %H:%M:%S")}}
    lines = format_tables(result) + format_targets(result)
    result["targets"] = [ln[2:] for ln in lines if ln.startswith("- [")]
    result["_lines"] = lines
    return result

