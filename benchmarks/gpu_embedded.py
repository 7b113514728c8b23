"""A larger embedded model trained on one GPU (benchmarks/gpu_embedded.sh): every stage of the shipped recipe at
128 x 128 pixels, sized to a time budget, exported as a shippable checkpoint, scored against the shipped 32 x 32.

What it does, in order (one JSON file, rewritten after every step, so a run cut short keeps what it finished):

1. ``probe``: each stage of ``motionguide.embedded.recipes.SHIPPED_RECIPE`` (referenced by name, so the script
   follows it when stages change) runs ``--probe-steps`` steps into ``OUT/probe``, through ``run_recipe``
   unchanged. The loop's log lines are timed: seconds per step (the second half of the probe, one checkpoint
   included, so an overestimate) and the set-up (model load) of every stage.
2. ``plan`` / ``train``: one factor ``s`` scales every stage's steps (``stage.steps * s``) so that the
   measured costs fill the training budget; the stages then run in ``OUT/train`` one by one, and before each one the factor is
   solved again for the time actually left.
3. ``checkpoint``: ``OUT/checkpoint/base`` (the base stage's model) and ``OUT/checkpoint/adapters`` (the last
   stage's adapters), the layout of ``assets/embedded``; when the float32 files exceed the asset budget
   (``--asset-mb``, 20) both are stored in bfloat16 (``motionguide.embedded.checkpoint.cast_weights``). The
   checkpoint is loaded back with ``load_embedded`` / ``load_adapters`` on the CPU and generates one held-out
   synthetic clip (shape checked, PSNR against its truth, CPU seconds per 8-frame window).
4. ``score`` (if time is left and real footage is found, ``../shared/data`` or ``--videos``): the trained
   model against the shipped one on real clips with the tasks and scoring of benchmarks/footage/ (those of
   benchmarks/real_footage.py), on the CPU as the jobs ship: ``out`` (``footage.raw_model_method``: the model's
   own clip under the jobs' guidance, every pixel its own, scored at the input's size, upsampled, and at the
   shipped model's 32 x 32 grid) and ``fill`` (``fill="model"``: the warp at the input's size with the model
   where the confidence does not trust it), plus ``flow_only``; paired per-clip PSNR differences with their SE.
   Without footage it says so and skips.

    python benchmarks/gpu_embedded.py [--out gpu_out/gpu_embedded.json] [--budget-s 420] [--total-s 540]
    python benchmarks/gpu_embedded.py --tiny     # the same code at tiny sizes on the CPU (tests run this)
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from unittest import mock

try:  # footage first: through _common it sets OMP_WAIT_POLICY before torch loads
    import footage
except ModuleNotFoundError:
    from benchmarks import footage

import torch  # noqa: E402

from flow.estimators import get_estimator  # noqa: E402
from flow.io import write_image  # noqa: E402
from flow.metrics import psnr  # noqa: E402
from motionguide import jobs  # noqa: E402
from motionguide.embedded.adapters import load_adapters  # noqa: E402
from motionguide.embedded.checkpoint import cast_weights, count_parameters, folder_bytes, load_embedded  # noqa: E402
from motionguide.embedded.data import estimated_guidance, make_clip  # noqa: E402
from motionguide.embedded.network import EmbeddedConfig  # noqa: E402
from motionguide.embedded.recipes import SHIPPED_RECIPE, TrainConfig, run_recipe  # noqa: E402
from motionguide.embedded.windows import generate_windows  # noqa: E402

#: the model trained on the GPU: 128 x 128, 8 frames, 4 x 4 patches (32 x 32 x 8 = 8192 tokens), 6 blocks of
#: width 256 (8 heads x 32): 6.9 M parameters and 0.66 M in the adapters, 30 MB in float32, 15 MB in bfloat16
GPU_MODEL = {"height": 128, "width": 128, "num_frames": 8, "num_layers": 6, "num_heads": 8, "head_dim": 32,
             "ffn_dim": 1024}
#: --tiny: a non-square, non-default size with a one-block model (checks the code; figures mean nothing)
TINY_MODEL = {"height": 48, "width": 64, "num_frames": 8, "num_layers": 1, "num_heads": 2, "head_dim": 12,
              "ffn_dim": 32, "text_dim": 8, "freq_dim": 16, "steps": 2}
ASSET_MB = 20.0
MB = 1e6
#: steps are scaled by at most this (the shipped step counts, doubled)
MAX_SCALE = 2.0


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


class StageClock:
    """A ``log`` for ``run_recipe`` that times its lines: ``start`` (the ``stage ...`` line, before set-up) and
    the ``step k: ...`` lines the loop writes after each checkpoint."""

    def __init__(self, echo):
        self.echo, self.start, self.steps = echo, None, []

    def __call__(self, msg: str) -> None:
        now = time.perf_counter()
        if msg.startswith("stage ") and self.start is None:
            self.start = now
        elif msg.startswith("step "):
            self.steps.append((int(msg.split()[1].rstrip(":")), now))
        self.echo(msg)


def probe_costs(clock: StageClock, end: float) -> dict:
    """``{"step_s", "setup_s"}`` from a probe timed by ``clock`` with two checkpoints (at k and 2k steps):
    seconds per step over the second half (one checkpoint included), set-up = time to the first checkpoint
    less its steps."""
    (k1, t1), (k2, t2) = clock.steps[0], clock.steps[-1]
    step_s = (t2 - t1) / max(1, k2 - k1) if k2 > k1 else (t2 - clock.start) / max(1, k2)
    return {"step_s": step_s, "setup_s": max(0.0, t1 - clock.start - k1 * step_s), "total_s": end - clock.start}


def plan_stage(stage, scale: float, min_steps: int) -> dict:
    """Steps of ``stage`` at step factor ``scale`` (never below the probe's)."""
    return {"steps": max(min_steps, round(stage.steps * scale))}


def predict(costs: dict, plan: dict) -> float:
    """Seconds a stage takes with ``plan``, from its probe ``costs``."""
    return costs["fixed_s"] + plan["steps"] * costs["step_s"]


def solve_scale(stages, costs: dict, seconds: float, min_steps: int) -> float:
    """The largest step factor (at most MAX_SCALE) whose predicted time for ``stages`` fits ``seconds``
    (bisection; the smallest factor when nothing fits)."""
    def total(s):
        return sum(predict(costs[st.name], plan_stage(st, s, min_steps)) for st in stages)

    lo, hi = 0.0, MAX_SCALE
    if total(hi) <= seconds:
        return hi
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(mid) <= seconds else (lo, mid)
    return lo


def cost_model(probe: dict) -> dict:
    """Probe figures -> ``{"step_s", "fixed_s"}`` (the set-up is charged once per stage)."""
    return {"step_s": probe["step_s"], "fixed_s": probe["setup_s"]}


# ------------------------------------------------------------------------------------------ training
def train_all(data: dict, path: Path, root: Path, *, model: dict, tiny: bool, budget_s: float, probe_steps: int,
              t0: float, log) -> None:
    """Probe every stage, then train them all into ``root/train`` within ``budget_s`` (from ``t0``)."""
    common = {"model": model, "progress": False}
    if "mixed_precision" in {f.name for f in dataclasses.fields(TrainConfig)} and torch.cuda.is_available():
        common["mixed_precision"] = "bf16"
    if tiny:
        common["threads"] = min(2, os.cpu_count() or 1)
    data["training"] = {"recipe": [s.name for s in SHIPPED_RECIPE], "model": EmbeddedConfig.from_dict(model).to_dict(),
                        "overrides": {k: v for k, v in common.items() if k != "model"}, "probe": {}, "stages": {}}
    tr = data["training"]
    costs = {}
    for stage in SHIPPED_RECIPE:  # 1. probe
        clock = StageClock(log)
        over = {**common, "checkpoint_every": max(1, probe_steps // 2)}
        with contextlib.redirect_stderr(io.StringIO()):
            run_recipe(root / "probe", (stage,), steps_scale=probe_steps / stage.steps, overrides=over, log=clock)
        tr["probe"][stage.name] = probe_costs(clock, time.perf_counter())
        costs[stage.name] = cost_model(tr["probe"][stage.name])
        _write(path, data)
    shutil.rmtree(root / "probe", ignore_errors=True)
    for i, stage in enumerate(SHIPPED_RECIPE):  # 2. plan and train, the factor solved again before each stage
        left = budget_s - (time.perf_counter() - t0)
        scale = solve_scale(SHIPPED_RECIPE[i:], costs, left, probe_steps)
        plan = plan_stage(stage, scale, probe_steps)
        predicted = predict(costs[stage.name], plan)
        log(f"plan {stage.name}: factor {scale:.3f} of the shipped steps -> {plan} (predicted {predicted:.0f} s of "
            f"{left:.0f} s left)")
        clock = StageClock(log)
        over = {**common, **plan, "checkpoint_every": plan["steps"]}
        over.pop("steps")
        res = run_recipe(root / "train", (stage,), steps_scale=plan["steps"] / stage.steps, overrides=over,
                         log=clock)[stage.name]
        took = time.perf_counter() - clock.start
        tr["stages"][stage.name] = {"kind": stage.kind, "scale": scale, **plan, "predicted_s": predicted,
                                    "seconds": took, "steps_per_s": plan["steps"] / took, "final_loss": res["loss"],
                                    "out": res["out"]}
        tr["scale_of_shipped_steps"] = scale if i == 0 else tr.get("scale_of_shipped_steps")
        _write(path, data)


# ----------------------------------------------------------------------------------------- checkpoint
def export_checkpoint(root: Path, asset_mb: float) -> dict:
    """``root/checkpoint/{base,adapters}`` from the trained stages, cast to bfloat16 when float32 is over
    ``asset_mb``; sizes and parameter counts."""
    base_src = root / "train" / SHIPPED_RECIPE[0].name / "model"
    last = next(s for s in reversed(SHIPPED_RECIPE) if s.kind != "base")
    ad_src = root / "train" / last.name / "adapters"
    dst = root / "checkpoint"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(base_src, dst / "base")
    shutil.copytree(ad_src, dst / "adapters")
    fp32 = {k: folder_bytes(dst / k) for k in ("base", "adapters")}
    res = {"base": str(dst / "base"), "adapters": str(dst / "adapters"), "from_stage": last.name,
           "fp32_mb": {k: v / MB for k, v in fp32.items()}, "fp32_total_mb": sum(fp32.values()) / MB,
           "asset_budget_mb": asset_mb, "dtype": "float32"}
    if sum(fp32.values()) > asset_mb * MB:
        for k in ("base", "adapters"):
            cast_weights(dst / k, torch.bfloat16)
        res["dtype"] = "bfloat16"
    size = {k: folder_bytes(dst / k) for k in ("base", "adapters")}
    res.update(mb={k: v / MB for k, v in size.items()}, total_mb=sum(size.values()) / MB)
    res["fits_budget"] = res["total_mb"] <= asset_mb
    return res


def check_checkpoint(ck: dict, seed: int = 0) -> dict:
    """Load the checkpoint on the CPU and generate a held-out in-between clip at the model's size: its shape,
    PSNR of the generated frames against the truth (and of the flow-only warp), CPU seconds per window."""
    model = load_embedded(ck["base"])
    load_adapters(model, ck["adapters"])
    cfg = model.config
    clip = make_clip(seed, split="heldout", num_frames=cfg.num_frames, size=(cfg.height, cfg.width))
    frames = clip.frames.permute(1, 0, 2, 3)[None]
    positions = (0, cfg.num_frames - 1)
    g = estimated_guidance(frames, "between", positions, get_estimator("dis"))
    with torch.inference_mode():
        generate_windows(model, g, mode="both", seed=seed)  # warm-up
        t = time.perf_counter()
        out = generate_windows(model, g, mode="both", seed=seed)
        sec = time.perf_counter() - t
        warp = generate_windows(None, g, mode="flow_only")
    gen = [i for i in range(cfg.num_frames) if i not in positions]
    return {"config": cfg.to_dict(), "parameters": {"base": count_parameters(model.transformer)},
            "out_shape": list(out.shape), "psnr_both": psnr(out[0][:, gen].transpose(0, 1), frames[0][:, gen].transpose(0, 1)),
            "psnr_flow_only": psnr(warp[0][:, gen].transpose(0, 1), frames[0][:, gen].transpose(0, 1)),
            "cpu_seconds_per_window": sec, "cpu_threads": torch.get_num_threads()}


# -------------------------------------------------------------------------------------------- scoring
def score(data: dict, path: Path, ck: dict, *, videos: str | None, clips_per_video: int, max_size: int, jobs_,
          deadline: float, log) -> None:
    """The trained model against the shipped one on real clips (benchmarks/footage/, the scoring of
    benchmarks/real_footage.py), clip by clip until ``deadline``; rows, paired differences and the verdict
    written after each clip."""
    data["score"] = sc = {"jobs": list(jobs_), "max_size": max_size}
    if videos is None and not footage.DATA.is_dir():
        sc["skipped"] = f"no real footage at {footage.DATA} (set MOTIONGUIDE_DATA or pass --videos DIR); not scored"
        log(sc["skipped"])
        return
    with contextlib.redirect_stderr(io.StringIO()):
        sources = footage.find_sources(Path(videos) if videos else None)
        clips = [c for s in sources for c in footage.read_clips(s, clips_per_video, 0, max_size=max_size)]
    if not clips:
        sc["skipped"] = "no clip of 9 frames in the footage; not scored"
        log(sc["skipped"])
        return
    large = jobs.load_models(ck["base"], ck["adapters"])
    shipped = jobs.load_models()
    common = (shipped.config.height, shipped.config.width)
    shared = footage.SharedInterpolator()
    methods = {"large": footage.raw_model_method(large, 0, shared),
               "shipped": footage.raw_model_method(shipped, 0, shared),
               "large_fill@input": footage.job_method(large, 0, shared, mode="both", output_size="input",
                                                      fill="model"),
               "shipped_fill@input": footage.job_method(shipped, 0, shared, mode="both", output_size="input",
                                                        fill="model"),
               "flow_only@input": footage.job_method(None, 0, shared, mode="flow_only")}
    sc.update(rows_mean="per (job, mode, size): mean over clips", common_grid=list(common), clips=[], per_clip=[],
              modes={"large": "trained model, its own clip", "shipped": "assets/embedded, its own clip",
                     "large_fill": "trained model, fill model at the input's size",
                     "shipped_fill": "shipped model, fill model", "flow_only": "the job's warp"},
              sizes={"input": "the input's resolution (outputs upsampled bicubic)",
                     "model": f"the shipped model's {common[1]}x{common[0]} grid (area-resized)"})
    applies = {m: tuple(jobs_) for m in ("large", "shipped", "large_fill", "shipped_fill")}
    for clip in clips:
        if time.perf_counter() > deadline:
            sc["stopped"] = f"time budget spent after {len(sc['clips'])} of {len(clips)} clips"
            break
        with mock.patch.dict(footage.APPLIES, applies), contextlib.redirect_stderr(io.StringIO()):
            res = footage.run_benchmark([clip], methods, common, jobs_=tuple(jobs_), progress=False, shared=shared)
        sc["per_clip"] += res["per_clip"]
        sc["clips"].append(clip.name)
        sc["rows"] = footage.summarise(sc["per_clip"], tuple(sc["modes"]))
        sc["paired"] = [p for job in jobs_ for a, b, s in (("large", "shipped", "input"), ("large", "shipped", "model"),
                                                            ("large_fill", "shipped_fill", "input"),
                                                            ("large_fill", "flow_only", "input"))
                        if (p := footage.paired(sc["per_clip"], job, a, b, s)) is not None]
        wins = [p["mean"] > 0 for p in sc["paired"] if p["b"] == "shipped" or p["b"] == "shipped_fill"]
        sc["beats_shipped"] = bool(wins) and all(wins)
        sc["cpu_seconds_per_clip"] = {m: statistics_mean([r["seconds_per_frame"] * _generated(r["job"])
                                                          for r in sc["per_clip"] if r["mode"] == m and r["size"] == "input"])
                                      for m in sc["modes"]}
        log(f"score: {len(sc['clips'])} clip(s); " + "; ".join(
            f"{p['job']} {p['a']}-{p['b']}@{p['size']} {p['mean']:+.2f}" for p in sc["paired"]))
        _write(path, data)


def statistics_mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def _generated(job: str) -> int:
    return {"speed0.5": 4, "speed0.25": 6, "extend": footage.N_EXTEND, "transfer": footage.TRANSFER_FRAMES - 1}[job]


# --------------------------------------------------------------------------------------- GPU transport
def pack_checkpoint(folder: Path, archive: Path) -> dict:
    """``folder`` (``base/`` and ``adapters/``) as ``archive`` (.tar.gz; ``tar xzf`` gives ``checkpoint/``)."""
    import tarfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(folder, arcname="checkpoint")
    os.replace(tmp, archive)
    return {"archive": str(archive), "archive_mb": archive.stat().st_size / MB}


def pack_clips(dest: Path, *, clips_per_video: int = 1, max_size: int = 640, log=print) -> dict:
    """The scoring clips of the default footage (``../shared/data``, as :func:`score` picks them) as folders of
    PNG frames in ``dest`` (replaced), which ``--videos dest`` scores on a machine without the footage or PyAV.

    Each clip: ``footage.read_clips(source, clips_per_video, seed 0, max_size)``, written losslessly as
    8-bit PNG (the frames are 8-bit video frames, area-resized to ``max_size``: the PNGs hold them to within
    half a grey level).
    """
    if not footage.DATA.is_dir():
        raise SystemExit(f"gpu_embedded: no footage at {footage.DATA} to pack (set MOTIONGUIDE_DATA)")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = []
    with contextlib.redirect_stderr(io.StringIO()):
        clips = [c for src in footage.find_sources(None)
                 for c in footage.read_clips(src, clips_per_video, 0, max_size=max_size)]
    for c in clips:
        name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in c.name.replace("@", "_at_")).strip("_")
        (tmp / name).mkdir()
        for i, f in enumerate(c.frames):
            write_image(tmp / name / f"frame_{i:03d}.png", f)
        names.append(name)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    log(f"packed {len(names)} clips ({', '.join(names)}) into {dest}: {size / 2 ** 20:.1f} MiB")
    return {"clips": names, "mib": size / 2 ** 20}


# ------------------------------------------------------------------------------------------------ run
def _environment(tiny: bool) -> dict:
    import diffusers

    env = {"tiny": tiny, "torch": torch.__version__, "diffusers": diffusers.__version__,
           "python": platform.python_version(), "host": platform.node(), "cpus": os.cpu_count(),
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=p.total_memory / 2**30, cuda_version=torch.version.cuda)
    return env


def run(*, tiny: bool = False, out: str | Path | None = None, budget_s: float | None = None,
        total_s: float | None = None,
        model: dict | None = None, probe_steps: int | None = None,
        asset_mb: float = ASSET_MB, videos: str | None = None, clips_per_video: int | None = None,
        max_size: int | None = None, jobs_=None, score_real: bool = True, work: str | Path | None = None,
        archive: str | Path | None = None, log=print) -> dict:
    """Train, export, check and score; returns the results (also written to ``out`` after every step).

    ``work``: the folder of the runs and the checkpoint (default: ``out``'s folder's ``embedded/``);
    ``archive``: also pack the checkpoint into this ``.tar.gz`` (one file where a GPU run's ``$OUT`` takes few).
    """
    torch.set_flush_denormal(True)
    if not tiny and not torch.cuda.is_available():
        raise SystemExit("gpu_embedded: no CUDA device; run with --tiny for the CPU check")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    t0 = time.perf_counter()
    budget_s = budget_s or (25.0 if tiny else 420.0)
    total_s = total_s or (75.0 if tiny else 540.0)
    path = Path(out) if out else Path(os.environ.get("OUT", "gpu_out")) / "gpu_embedded.json"
    root = Path(work) if work else path.parent / "embedded"
    model = dict(model or (TINY_MODEL if tiny else GPU_MODEL))
    EmbeddedConfig.from_dict(model)  # a bad size fails now
    data = {"environment": _environment(tiny), "budget_s": budget_s, "total_s": total_s, "errors": {},
            "seconds": {}}
    steps = [("train", lambda: train_all(data, path, root, model=model, tiny=tiny, budget_s=budget_s,
                                         probe_steps=probe_steps or (2 if tiny else 8), t0=t0, log=log)),
             ("checkpoint", lambda: data.__setitem__("checkpoint", export_checkpoint(root, asset_mb))),
             ("check", lambda: data.__setitem__("check", check_checkpoint(data["checkpoint"])))]
    if archive:
        steps.append(("archive", lambda: data["checkpoint"].update(pack_checkpoint(root / "checkpoint", Path(archive)))))
    if score_real:
        steps.append(("score", lambda: score(
            data, path, data["checkpoint"], videos=videos, clips_per_video=clips_per_video or 1,
            max_size=max_size or (96 if tiny else 640), jobs_=jobs_ or (("speed0.5",) if tiny else
                                                                       ("speed0.5", "speed0.25", "extend", "transfer")),
            deadline=t0 + total_s, log=log)))
    for name, fn in steps:
        s0 = time.perf_counter()
        try:
            fn()
        except Exception as e:  # keep what finished; the error is part of the record
            data["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"{name}: failed: {type(e).__name__}: {e}")
            if tiny:
                raise
            if name != "score":
                break
        finally:
            data["seconds"][name] = time.perf_counter() - s0
            _write(path, data)
    data["seconds"]["total"] = time.perf_counter() - t0
    _write(path, data)
    log(f"wrote {path} ({data['seconds']['total']:.0f} s); checkpoint in {archive or root / 'checkpoint'}")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: OUT=gpu_out python benchmarks/gpu_embedded.py; "
                                        "python benchmarks/gpu_embedded.py --tiny --out /tmp/tiny/gpu_embedded.json")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (checks the code; figures mean nothing)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/gpu_embedded.json, OUT defaults to ./gpu_out); "
                                                "the runs and the checkpoint go to its folder's embedded/")
    ap.add_argument("--budget-s", type=float, default=None, help="seconds of training, probes included (default 420; "
                                                                 "tiny 25)")
    ap.add_argument("--total-s", type=float, default=None, help="no scoring clip starts after this many s (default 540; "
                                                                "tiny 75)")
    ap.add_argument("--model", default=None, metavar="JSON", help=f"EmbeddedConfig fields (default {GPU_MODEL})")
    ap.add_argument("--probe-steps", type=int, default=None, help="steps of each stage's probe (default 8; tiny 2)")
    ap.add_argument("--asset-mb", type=float, default=ASSET_MB, help="asset budget: bfloat16 above it (default 20)")
    ap.add_argument("--videos", default=None, metavar="DIR", help="real footage (default ../shared/data)")
    ap.add_argument("--clips", type=int, default=None, help="clips per video for scoring (default 1)")
    ap.add_argument("--max-size", type=int, default=None, help="longer side of the scored clips (default 640; tiny 96)")
    ap.add_argument("--jobs", default=None, help="comma-separated jobs to score (default all four; tiny speed0.5)")
    ap.add_argument("--no-score", action="store_true", help="skip the real-footage scoring")
    ap.add_argument("--work", default=None, help="folder of the runs and the checkpoint (default OUT's embedded/)")
    ap.add_argument("--archive", default=None, help="also pack the checkpoint into this .tar.gz")
    ap.add_argument("--pack-data", default=None, metavar="DIR", help="only pack the scoring clips of ../shared/data "
                                                                     "into DIR as PNG folders (for a GPU run)")
    args = ap.parse_args(argv)
    if args.pack_data:
        pack_clips(Path(args.pack_data), clips_per_video=args.clips or 1,
                   max_size=args.max_size or (96 if args.tiny else 640))
        return 0
    data = run(tiny=args.tiny, out=args.out, budget_s=args.budget_s, total_s=args.total_s,
               model=json.loads(args.model) if args.model else None, probe_steps=args.probe_steps,
               asset_mb=args.asset_mb, videos=args.videos, clips_per_video=args.clips, max_size=args.max_size,
               jobs_=tuple(args.jobs.split(",")) if args.jobs else None, score_real=not args.no_score,
               work=args.work, archive=args.archive, log=lambda m: print(m, flush=True))
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
