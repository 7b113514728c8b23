"""Write docs/BENCHMARKS.md (and the figures block of README.md) from the benchmarks' JSON output.

The benchmarks print their tables and write JSON (``--json``); the JSON of the runs the docs quote lives in
``benchmarks/results/``. This script is the only writer of the figures in the docs, so a printed table, the
benchmark page and the README cannot drift apart. ``--check`` exits 1 when the docs differ from what the
JSON gives (a test runs it).

    python benchmarks/motion.py --clips 6 --json benchmarks/results/motion.json   # (and the others)
    python benchmarks/make_docs.py            # rewrite docs/BENCHMARKS.md and the README block
    python benchmarks/make_docs.py --check    # are they up to date?
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

try:
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "docs" / "BENCHMARKS.md"
README = REPO / "README.md"
START, END = "<!-- benchmarks:start (written by benchmarks/make_docs.py) -->", "<!-- benchmarks:end -->"


def _f(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def real_footage(d: dict) -> list[str]:
    rows = sorted(d["rows"], key=lambda r: (r["job"], r["size"], -(r["psnr"] if r["psnr"] == r["psnr"] else -1e9)))
    lines = _table(["job", "mode", "size", "PSNR", "SSIM", "stability (lower is steadier)", "s / frame"],
                   [[r["job"], r["mode"], r["size"], _f(r["psnr"]), _f(r["ssim"], 3), _f(r["stability"], 4),
                     _f(r["seconds_per_frame"], 3)] for r in rows])
    paired = d.get("paired", []) + d.get("extra_paired", [])
    if paired:
        lines += ["", "Paired per-clip differences (a - b, dB PSNR, +- standard error; `flow_only_grid` is the warp "
                  "at the model's 32x32 grid):", ""]
        lines += _table(["job", "size", "a", "b", "mean", "SE"],
                        [[p["job"], p["size"], p["a"], p["b"], f"{p['mean']:+.2f}", _f(p["se"])] for p in paired])
    if d.get("fill"):
        lines += ["", "Inside the pixels the confidence gives the model (`--fill model`), PSNR of the output and of "
                  "the warp there:", ""]
        lines += _table(["job", "mode", "output", "warp", "difference", "SE", "share of pixels"],
                        [[f["job"], f["mode"], _f(f["psnr_fill"]), _f(f["psnr_fill_warp"]), f"{f['mean']:+.2f}",
                          _f(f["se"]), f"{100 * f['fill_weight']:.1f} %"] for f in d["fill"]])
    meta = d.get("meta", {})
    if meta.get("clips"):
        lines += ["", f"Clips ({len(meta['clips'])}, {meta.get('clip_frames')} frames each): "
                  + ", ".join(meta["clips"]) + f"; {meta.get('seconds')} s in all."]
    lines += ["", "Targets (issue 17):", ""] + [f"- {t}" for t in d.get("targets", [])]
    return lines


def motion(d: dict) -> list[str]:
    lines = _table(["job", "mode", "PSNR", "SSIM", "PSNR free", "EPE (px)", "EPE from last known"],
                   [[r["job"], r["mode"], _f(r["psnr"]), _f(r["ssim"], 3), _f(r["psnr_free"]), _f(r["epe"]),
                     _f(r["epe_anchor"])] for r in d["rows"]])
    ms = d.get("motion_scale", {})
    extra = [f"motion scale {k}: guided ratio {_f(v.get('guided'), 3)}, flow-only {_f(v.get('flow_only'), 3)}"
             for k, v in ms.items() if isinstance(v, dict)]
    lines += ["", f"{d['clips']} held-out synthetic clips per job, {d['steps']} steps; strength 0 differs from "
              f"unguided by at most {d['noop_maxdiff']:.1e}; one clip (batch 1) generates in {d['clip_seconds']} s."]
    lines += [f"- {e}" for e in extra]
    return lines


def guidance(d: dict) -> list[str]:
    return _table(["class", "no-op max diff", "after remove", "guided changes output", "overhead, mid size (median)"],
                  [[r["architecture"].replace("Transformer3DModel", ""), f"{r['noop_maxdiff']:.0e}",
                    f"{r['removed_maxdiff']:.0e}", "yes" if r["guided_changes"] else "no", _f(r["overhead"], 3)]
                   for r in d["rows"]])


def flow(d: dict) -> list[str]:
    by = defaultdict(dict)
    secs = defaultdict(list)
    for r in d["rows"]:
        by[r["method"]][r["sequence"]] = r["epe"]
        secs[r["method"]].append(r["seconds"])
    seqs = sorted({r["sequence"] for r in d["rows"]}, key=lambda q: (["easy", "medium", "hard", q].index(q), q))
    ok = {r["method"]: r["no_worse_than_medium"] for r in d.get("summary", [])}
    lines = _table(["method", *[f"{s} EPE" for s in seqs], "median s / pair", "<= OpenCV MEDIUM on every pair"],
                   [[m, *[_f(by[m].get(s), 3) for s in seqs], _f(statistics.median(secs[m]), 2),
                     {True: "yes", False: "no"}.get(ok.get(m), "-")] for m in by])
    if d.get("speed_720p"):
        lines += ["", "One 1280x720 pair (bigbuckbunny.mp4, frames 10 -> 11), median seconds:", ""]
        lines += _table(["method", "s / pair"], [[r["method"], _f(r["seconds"], 3)] for r in d["speed_720p"]])
    return lines


def memory(d: dict) -> list[str]:
    """Peak resident memory (VmHWM) and time of one interpolated frame per size, against the estimate the
    commands check; a 4K retime; retimes of videos of different lengths."""
    lines = []
    if d.get("sizes"):
        desc = d["sizes"][0].get("backend", "-")
        backend = desc.split(" (")[0] + (", with dis where it is unsure" if "unsure" in desc else "")  # no paths
        lines += [f"One interpolated frame with the default backend ({backend}), each "
                  "size in a fresh process; peak resident memory (VmHWM) against the estimate the commands check:", ""]
        lines += _table(["size", "W x H", "s / frame", "peak RSS MB", "estimate MB (`--max-memory` checks it)"],
                        [[r["size"], f"{r['w']}x{r['h']}", _f(r["seconds"], 1), f"{r['peak_rss_mb']:.0f}",
                          f"{r['estimate_mb']:.0f}"] for r in d["sizes"]])
    r = d.get("retime_4k")
    if r:
        lines += ["", f"Retime of a 3840x2160 clip, {r['in_frames']} -> {r['out_frames']} frames (25 -> 50 fps, default "
                  f"backend): {r['seconds'] / max(1, r['interpolated']):.1f} s per interpolated frame, peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB."]
    if d.get("rows"):
        opts = ", ".join(f"{k} {v}" for k, v in d.get("options", {}).items())
        lines += ["", f"Retime of 1280x720 videos, 25 -> 50 fps, backend {d.get('backend')} ({opts}):", ""]
        lines += _table(["input frames", "output frames", "peak RSS MB", "seconds"],
                        [[x["frames"], x["out_frames"], f"{x['peak_rss_mb']:.0f}", f"{x['seconds']:.0f}"]
                         for x in d["rows"]])
    return lines


def interpolate(d: dict) -> list[str]:
    psnr = defaultdict(lambda: defaultdict(list))
    secs = defaultdict(list)
    for r in d["rows"]:
        psnr[r["method"]][r["dataset"]].append(r["psnr"])
        if r.get("seconds") is not None:
            secs[r["method"]].append(r["seconds"])
    sets = sorted({r["dataset"] for r in d["rows"]})
    lines = _table(["method", *[f"{s} PSNR" for s in sets], "median s / frame"],
                   [[m, *[_f(statistics.mean(psnr[m][s])) if psnr[m][s] else "-" for s in sets],
                     _f(statistics.median(secs[m]), 2) if secs[m] else "-"] for m in psnr])
    return lines + [""] + [f"- {t}" for t in d.get("targets", [])]


#: what each ablation variant takes out, and why the model keeps it or not (None: it is taken out)
_KEPT_ANYWAY = ("kept although it does not pay at 32x32: it is the plugin's MoG mechanism, which the pipeline "
                "trainer gives users' DiTs; the larger embedded model (benchmarks/gpu_embedded.sh) decides it again")
_ABLATED = {"no_gate_head": ("the gate head", None),
            "one_gate": ("the per-trust-level gates (one value)", "in the model"),
            "latent_only": ("the feature level", _KEPT_ANYWAY), "feature_only": ("the latent level", "in the model"),
            "training_free": ("every trained part (training-free mode)", _KEPT_ANYWAY),
            "no_blend_head": ("the learned blend of two warps", None),
            "no_continuation_head": ("the learned mix of the output with the warp", None),
            "no_lora": ("the LoRA on every block", None), "no_fill_source": ("the extension's second source", None)}


#: the runs that measured the parts taken out, each with the model that still had them: results file ->
#: the variants it decided
_REMOVED_IN = {"ablation_removed_head": ("no_gate_head",),
               "ablation_removed": ("no_blend_head", "no_continuation_head", "no_lora", "no_fill_source")}


def ablation(d: dict) -> list[str]:
    """full - variant per job and size; a part pays when it lifts one job by >= 0.1 dB at >= 2 SE at the
    model's size and loses none by more than 2 SE (benchmarks/ablation.py). Each part taken out is shown
    from the run that decided it (``_REMOVED_IN``), the model still having it."""
    lines = _ablation_table(d, {v: x for v, x in _ABLATED.items() if x[1] is not None})
    for name, variants in _REMOVED_IN.items():
        removed = _load(name)
        if removed:
            lines += ["", f"Taken out after the run in `benchmarks/results/{name}.json` (the model still had "
                      f"the part then):", ""]
            lines += _ablation_table(removed, {v: _ABLATED[v] for v in variants})
    return lines


def _ablation_table(d: dict, variants: dict) -> list[str]:
    by = {(p["job"], p["b"], p["size"], p["key"]): p for p in d["paired"] if p["a"] == "full"}
    jobs_ = [j for j in ("speed0.5", "speed0.25", "extend", "transfer") if any(k[0] == j for k in by)]
    # the rule's measure: inside the pixels the model supplies at its size; a results file without that
    # column (ablation_removed.json, whose model-size rows are the model's own clip) is judged on all pixels
    key = "psnr_fill" if any(k[2:] == ("model", "psnr_fill") for k in by) else "psnr"
    cell = lambda p: "-" if p is None else f"{p['mean']:+.2f} +- {p['se']:.2f}"  # noqa: E731
    rows, verdicts = [], []
    for v, (what, kept) in variants.items():
        model = [by.get((j, v, "model", key)) for j in jobs_]
        if not any(model):
            continue
        every = [by.get((j, v, "model", "psnr")) for j in jobs_] if key != "psnr" else []
        rows.append([what, *[cell(p) for p in model], *[cell(p) for p in every]])
        ms = [p for p in model if p]
        pays = any(p["mean"] >= 0.1 and p["mean"] >= 2 * p["se"] for p in ms) and not any(
            p["mean"] < -2 * p["se"] for p in ms + [p for p in every if p])
        verdicts.append(f"- {what}: {'pays' if pays else 'does not pay'}; {kept or 'taken out'}")
    where = ("inside the pixels the model supplies (the warp elsewhere), then over all generated pixels"
             if key != "psnr" else "the model's own clip over all generated pixels")
    lines = [f"Paired per-clip PSNR differences, full model minus the model without the part (dB, +- SE; "
             f"{len(d['meta']['clips'])} clips; positive: the part lifts the score), at the model's size: {where}. "
             f"{d['meta'].get('note', '')}", ""]
    head = [f"{j} (in its pixels)" if key != "psnr" else f"{j} (model size)" for j in jobs_]
    head += [f"{j} (all)" for j in jobs_] if key != "psnr" else []
    lines += _table(["part taken out", *head], rows)
    return lines + ["", "A part pays when it lifts at least one job by 0.1 dB or more at two standard errors at the "
                    "model's size (" + ("inside its pixels" if key != "psnr" else "its own clip") + ") and loses "
                    "none by more than two:", ""] + verdicts


SECTIONS = [
    ("real_footage", "Jobs on real footage", "python benchmarks/real_footage.py --json benchmarks/results/real_footage.json",
     real_footage),
    ("ablation", "Each part of the embedded model on real footage",
     "python benchmarks/ablation.py --clips 4 --json benchmarks/results/ablation.json", ablation),
    ("motion", "Steering on synthetic clips (mechanism, not quality; its seeds chose the model's parts, so they "
               "are a validation set)", "python benchmarks/motion.py --clips 6 --json benchmarks/results/motion.json",
     motion),
    ("guidance", "The guidance plugin on tiny configs of every class",
     "python benchmarks/guidance.py --json benchmarks/results/guidance.json", guidance),
    ("flow_epe", "Optical flow on Sintel pairs with ground truth",
     "python benchmarks/flow_epe.py --json benchmarks/results/flow_epe.json", flow),
    ("interpolate", "Frame interpolation", "python benchmarks/interpolate.py --json benchmarks/results/interpolate.json",
     interpolate),
    ("memory_retime", "Memory and time by frame size and video length",
     "python benchmarks/memory_retime.py --frames 100,300 --json benchmarks/results/memory_retime.json", memory),
]


def page() -> str:
    out = ["# Benchmarks", "",
           "Written by `python benchmarks/make_docs.py` from the JSON in `benchmarks/results/`; do not edit by "
           "hand. Every figure was measured on the 2-core CPU this project is developed on, shared and noisy, "
           "with peers run in the same run; times are medians.", ""]
    for name, title, cmd, fn in SECTIONS:
        d = _load(name)
        out += [f"## {title}", "", f"`{cmd}`", ""]
        out += fn(d) if d else ["Not measured yet: run the command above."]
        out.append("")
    return "\n".join(out)


def readme_block() -> str:
    lines = [START, ""]
    d = _load("real_footage")
    if d:
        lines += ["The jobs on real footage (clips cut from `../shared/data`, scored against held-out real frames), "
                  "mean PSNR (dB) at the input's resolution:", ""]
        rows = {(r["job"], r["mode"]): r for r in d["rows"] if r["size"] == "input"}
        jobs_ = sorted({j for j, _ in rows})
        modes = ["default", "flow_only", "both", "training_free", "ifnet_retime", "minterpolate", "constant_velocity",
                 "repeat_last", "average", "unguided"]
        modes = [m for m in modes if any((j, m) in rows for j in jobs_)]
        lines += _table(["job", *modes], [[j, *[_f(rows[(j, m)]["psnr"]) if (j, m) in rows else "-" for m in modes]]
                                          for j in jobs_])
        small = {(r["job"], r["mode"]): r for r in d["rows"] + d.get("extra_rows", []) if r["size"] == "model"}
        mm = [m for m in ("flow_only", "both", "training_free", "both_raw", "flow_only_grid", "unguided")
              if any((j, m) in small for j in jobs_)]
        if mm:
            lines += ["", "At the embedded model's 32x32 (output and truth area-resized to it; `both_raw` is the "
                      "model's own clip, every pixel its own; `flow_only_grid` the warp made at the 32 px grid):", ""]
            lines += _table(["job", *mm], [[j, *[_f(small[(j, m)]["psnr"]) if (j, m) in small else "-" for m in mm]]
                                           for j in jobs_])
        lines += ["", "Targets:", ""] + [f"- {t}" for t in d.get("targets", [])] + [""]
    d = _load("interpolate")
    if d:
        lines += ["Interpolation targets:", ""] + [f"- {t}" for t in d.get("targets", [])] + [""]
    lines += ["Every table, with the command that prints it: [docs/BENCHMARKS.md](docs/BENCHMARKS.md).", "", END]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the docs are not what the JSON gives")
    args = ap.parse_args(argv)
    new_page = page()
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README.md has no benchmark block ({START} ... {END})", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    new_readme = head + readme_block() + rest.split(END, 1)[1]
    if args.check:
        stale = [p.name for p, new in ((PAGE, new_page), (README, new_readme)) if not p.is_file() or p.read_text() != new]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python benchmarks/make_docs.py", file=sys.stderr)
            return 1
        return 0
    common.write_text(PAGE, new_page)
    common.write_text(README, new_readme)
    print(f"wrote {PAGE.relative_to(REPO)} and the README block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
