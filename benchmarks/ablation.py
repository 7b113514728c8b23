"""Does each part of the embedded model pay its way on real footage? One part off at a time, same clips.

Every variant is the shipped model (``assets/embedded``) in mode ``both`` with one part taken out:

* ``one_gate``: each per-trust-level gate replaced by the mean of its levels (one value for every pixel);
* ``latent_only`` / ``feature_only``: mode ``latent`` / ``feature`` (one guidance level of the plugin);
* ``training_free``: no trained part at all (the plugin's training-free mode on the base model).

Rows: ``<variant>@model``: the job's output at the model's size (``output_size="model"``: the warp, area-
downscaled, where the confidence trusts it, the model where it does not), scored at the model's size;
``<variant>@input``: at the input's size with the model filling what the confidence does not trust
(``fill="model"``). Each is scored over the generated frames (``psnr``) and inside the pixels the model
supplies (``psnr_fill``, weight 1 - confidence; the confidence depends on the guidance alone, so every
variant fills the same pixels). The clips, tasks and scoring are those of ``benchmarks/real_footage.py``
(the library ``benchmarks/footage/``: its hold-out tasks, its 8-bit rounding).

The table prints, per job and size, each variant's paired per-clip difference ``full - variant`` with its
standard error: positive means the part lifts the score (it pays), negative means the model is better
without it. A part pays when, inside the pixels the model supplies at its size, it lifts at least one job by
0.1 dB or more at two standard errors and loses none by more than two (a part acts only there: elsewhere
the output is the warp); the shipped parts were chosen on synthetic clips, and these
clips were not used to choose them. The parts that did not pay are not in the model, and their rows were
measured before they were taken out: a learned blend of two warps, a learned mix of the output with the
warp, a LoRA on every block and the extension's second source in ``benchmarks/results/ablation_removed.json``;
a per-pixel gate head (corrections of the per-trust-level gates from the warp, the flow and the distance to
the source) as ``no_gate_head`` in the ``benchmarks/results/ablation.json`` of commit 0528308.

    python benchmarks/ablation.py [--clips 4] [--json OUT] [--videos DIR] [--variants ...] [--jobs ...]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

try:  # _common first: it sets OMP_WAIT_POLICY before torch loads
    import _common as common
    import footage
except ModuleNotFoundError:
    from benchmarks import _common as common, footage

import torch  # noqa: E402

from motionguide import jobs  # noqa: E402

VARIANTS = ("full", "one_gate", "latent_only", "feature_only", "training_free")
#: (size, key) of each paired column: all generated pixels and the pixels the model supplies, at both sizes
COLUMNS = (("model", "psnr_fill"), ("model", "psnr"), ("input", "psnr_fill"), ("input", "psnr"))
#: the mode each variant generates in
_MODE = {"latent_only": "latent", "feature_only": "feature", "training_free": "training_free"}


def variant_model(name: str):
    """The shipped model with one part taken out (module docstring)."""
    model = jobs.load_models(mode=_MODE.get(name, "both"))
    g = model.gates
    if name == "one_gate":
        with torch.no_grad():
            g.reference_gate.fill_(float(g.reference_gate.mean()))
            g.correction_gate.fill_(float(g.correction_gate.mean()))
    return model


def build(variants, seed: int, shared) -> dict:
    methods = {"flow_only": footage.job_method(None, seed, shared, mode="flow_only")}
    for v in variants:
        model = variant_model(v)
        mode = _MODE.get(v, "both")
        footage.APPLIES[v] = footage.JOBS
        methods[f"{v}@model"] = footage.job_method(model, seed, shared, mode=mode, output_size="model")
        methods[f"{v}@input"] = footage.job_method(model, seed, shared, mode=mode, output_size="input", fill="model")
    return methods


def _paired(per_clip, job, a, b, size, key):
    va = {r["clip"]: r.get(key) for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, a, size)}
    vb = {r["clip"]: r.get(key) for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, b, size)}
    d = [va[c] - vb[c] for c in va if c in vb and va[c] is not None and vb[c] is not None]
    if len(d) < 2:
        return None
    return {"job": job, "a": a, "b": b, "size": size, "key": key, "clips": len(d),
            "mean": round(statistics.fmean(d), 4), "se": round(statistics.stdev(d) / math.sqrt(len(d)), 4)}


def summarise(per_clip, variants) -> dict:
    rows, pairs = [], []
    for job in footage.JOBS:
        for v in ("flow_only",) + tuple(variants):
            for size in footage.SIZES:
                rr = [r for r in per_clip if (r["job"], r["mode"], r["size"]) == (job, v, size)]
                if rr:
                    rows.append({"job": job, "mode": v, "size": size, "clips": len(rr),
                                 **{k: footage.finite_mean(r.get(k) for r in rr)
                                    for k in ("psnr", "psnr_fill", "psnr_fill_warp", "model_share", "seconds_per_frame")}})
        for v in variants:
            if v == "full":
                continue
            for size, key in COLUMNS:
                p = _paired(per_clip, job, "full", v, size, key)
                if p is not None:
                    pairs.append(p)
        for a, b in (("full", "flow_only"),):
            for size in footage.SIZES:
                p = _paired(per_clip, job, a, b, size, "psnr")
                if p is not None:
                    pairs.append(p)
    return {"rows": rows, "paired": pairs}


def format_table(result: dict, variants) -> list[str]:
    cols = COLUMNS
    head = "| job | variant | " + " | ".join(f"full - variant, {s} {k}" for s, k in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols))]
    by = {(p["job"], p["b"], p["size"], p["key"]): p for p in result["paired"] if p["a"] == "full"}
    for job in footage.JOBS:
        for v in variants:
            cells = [by.get((job, v, s, k)) for s, k in cols]
            if v == "full" or not any(cells):
                continue
            lines.append(f"| {job} | {v} | " + " | ".join(
                "-" if c is None else f"{c['mean']:+.2f} +- {c['se']:.2f}" for c in cells) + " |")
    return lines


@common.cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default=None, metavar="DIR", help="folder of videos (default: ../shared/data)")
    ap.add_argument("--clips", type=int, default=4, metavar="N", help="clips per video (default 4: 9 clips)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-size", type=int, default=footage.MAX_SIZE, metavar="PX")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    ap.add_argument("--jobs", default=",".join(footage.JOBS), help="comma-separated subset of the jobs")
    ap.add_argument("--json", default=None, metavar="OUT")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    jobs_ = tuple(j.strip() for j in args.jobs.split(",") if j.strip())
    bad = [v for v in variants if v not in VARIANTS] + [j for j in jobs_ if j not in footage.JOBS]
    if bad:
        raise common.UserError(f"unknown variant(s) or job(s) {bad}; variants: {list(VARIANTS)}, jobs: {list(footage.JOBS)}")
    if "full" not in variants:
        variants.insert(0, "full")
    if args.videos is None and not footage.DATA.is_dir():
        print(f"evaluation data not found at {footage.DATA}; nothing to measure")
        return 0
    common.set_threads(None)
    t0 = time.perf_counter()
    sources = footage.find_sources(Path(args.videos) if args.videos else None)
    clips = [c for s in sources for c in footage.read_clips(s, args.clips, args.seed, max_size=args.max_size)]
    shared = footage.SharedInterpolator()
    methods = build(variants, args.seed, shared)
    probe = jobs.load_models(mode="unguided")
    model_size = (probe.config.height, probe.config.width)
    print(f"{len(clips)} clips: {', '.join(c.name for c in clips)}; variants: {', '.join(variants)}")
    res = footage.run_benchmark(clips, methods, model_size, jobs_=jobs_, progress=not args.no_progress, shared=shared)
    result = {**summarise(res["per_clip"], variants), "per_clip": res["per_clip"],
              "meta": {"clips": [c.name for c in clips], "variants": variants, "model_size": list(model_size),
                       "seed": args.seed, "seconds": round(time.perf_counter() - t0, 1),
                       "date": time.strftime("%Y-%m-%d %H:%M:%S")}}
    print("\n".join(format_table(result, variants)))
    for p in result["paired"]:
        if p["a"] != "full" or p["b"] == "flow_only":
            print(f"{p['job']:10s} {p['size']:6s} {p['a']} - {p['b']}: {p['mean']:+.2f} +- {p['se']:.2f} dB")
    print(f"\nrun time {result['meta']['seconds']:.0f} s ({len(clips)} clips)")
    if args.json:
        common.write_json(args.json, result, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
