"""The pipeline trainer at real size on a GPU (benchmarks/gpu.sh): adapter-training steps per second and peak
memory of Wan2.1 T2V 1.3B and I2V 14B layers with and without gradient checkpointing, and the cache build's
clips per second.

* ``steps``: the step ``motionguide train pipeline`` runs once its cache is built (flow-matching loss at
  sigma 0.5, AdamW on the MoG adapters' float32 parameters, the bf16 transformer frozen, bf16 autocast), on
  the published transformer configs (``motionguide.testing.REAL_CONFIGS``, random weights) at 480 x 832 x 81
  frames (21 x 30 x 52 = 32760 tokens), batch 1, reference-motion guidance. Rows: each model with
  ``--blocks`` blocks (default 4) with and without the transformer's gradient checkpointing, and Wan 1.3B at
  its full depth (30) with checkpointing. A row's per-block time times the full depth is given as
  ``extrapolated_full_depth_s_per_step`` (labelled: extrapolated, linear in blocks). A row that runs out of
  memory is recorded with its error and the next one runs.
* ``cache``: ``motionguide.finetune.train_pipeline`` with ``steps=1`` on a Wan I2V pipeline folder whose VAE
  is the real ``AutoencoderKLWan`` (random weights; the transformer and text encoder tiny: they take no part
  in the cache), ``--cache-clips`` videos of 81 frames at 832 x 480 (a smooth random texture panning 2 px per
  frame, written with PyAV), the trainer's own defaults for flow and interpolator. The time of the trainer's
  cache step (``build_cache``, or ``prepare_data`` in older trainers: every clip's flow, guidance and VAE
  latents) gives clips per second.

    python benchmarks/gpu_trainer.py [--out gpu_out/gpu_trainer.json] [--sections steps cache] [--blocks 4]
    python benchmarks/gpu_trainer.py --tiny     # the same code at tiny sizes on the CPU (tests run this)
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the repository first, so this checkout's flow and motionguide packages are the ones imported
sys.path[:] = [str(REPO)] + [p for p in sys.path if p not in (str(REPO), str(REPO / "benchmarks"))]
from benchmarks import _common as common  # noqa: E402  (the repository root is on sys.path now)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import motionguide as mg  # noqa: E402
from motionguide import testing  # noqa: E402

SECTIONS = ("steps", "cache")
T2V, I2V = "Wan2.1-T2V-1.3B", "Wan2.1-I2V-14B-480P"
GIB = 2 ** 30
#: --tiny: the same layouts scaled down (2 heads x 16; the I2V one with CLIP image attention of width 32)
TINY = {T2V: dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32, freq_dim=32),
        I2V: dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32, freq_dim=32, image_dim=32,
                  added_kv_proj_dim=32)}


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def rows(tiny: bool, blocks: int) -> list[tuple[str, int, bool]]:
    """``(model, blocks, checkpointing)`` of each row, cheapest first."""
    full = 2 if tiny else testing.REAL_CONFIGS[T2V]["config"]["num_layers"]
    out = [(name, blocks, ckpt) for name in (T2V, I2V) for ckpt in (True, False)]
    if full != blocks:
        out.insert(2, (T2V, full, True))
    return out


def train_steps(name: str, n_blocks: int, ckpt: bool, *, tiny: bool, device: torch.device, repeats: int) -> dict:
    """Seconds per adapter-training step and peak memory of ``name`` cut to ``n_blocks`` blocks."""
    latent_grid = (3, 8, 8) if tiny else testing.real_grid(name)[0]
    tokens = testing.real_grid(name)[1] if not tiny else (3, 4, 4)
    model = testing.real_config(name, device=device, dtype=torch.bfloat16, num_layers=n_blocks,
                                **(TINY[name] if tiny else {})).requires_grad_(False)
    if ckpt:
        model.enable_gradient_checkpointing()
    kw = testing.real_inputs(name, model, latent_grid, device=device)
    if tiny:
        kw["encoder_hidden_states"] = kw["encoder_hidden_states"][:, :8]
        if "encoder_hidden_states_image" in kw:
            kw["encoder_hidden_states_image"] = kw["encoder_hidden_states_image"][:, :4]
    mg.apply_motion_guidance(model, mg.MotionGuidanceConfig(mode="trained", latent=True, feature=True))
    params = mg.trainable_parameters(model)
    for p in params:
        p.data = p.data.float()  # trained in float32 under bf16 weights, as the trainer does
    opt = torch.optim.AdamW(params, lr=1e-4)
    x0 = kw["hidden_states"]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(x0)
    target = noise[:, :16] - x0[:, :16]  # the flow-matching velocity of the noisy latents (I2V: + mask, image)
    mg.set_guidance(model, testing.layout_guidance("ref", latent_grid, 16, device=device, seed=1))
    model.train()

    def step():
        sigma = 0.5
        inp = dict(kw, hidden_states=((1 - sigma) * x0 + sigma * noise).to(x0.dtype))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(**inp)[0]
        loss = ((out.float() - target.float()) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        resident = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
        _, times = common.device_times(step, repeats, device)  # the first call warms up: optimizer state, kernels
        med = statistics.median(times)
        full = testing.REAL_CONFIGS[name]["config"]["num_layers"]
        res = {"model": name, "blocks": n_blocks, "full_depth": full, "gradient_checkpointing": ckpt,
               "tokens": list(tokens), "num_tokens": math.prod(tokens), "repeats": repeats,
               "trainable_parameters": sum(p.numel() for p in params), "s_per_step": med, "steps_per_s": 1 / med,
               "s_per_step_all": times}
        if n_blocks != full:
            res["extrapolated_full_depth_s_per_step"] = med * full / n_blocks
            res["extrapolation"] = "linear in blocks (embeddings and the head are counted once per block: an overestimate)"
        if device.type == "cuda":
            res["peak_gib"] = torch.cuda.max_memory_allocated(device) / GIB
            res["weights_and_inputs_gib"] = resident / GIB
        return res
    finally:
        mg.remove_motion_guidance(model)
        del model, opt


def steps_section(tiny: bool, device: torch.device, blocks: int, repeats: int, deadline: float, log) -> dict:
    out = {"rows": [], "errors": []}
    for name, n, ckpt in rows(tiny, blocks):
        label = f"{name} x {n} blocks, checkpointing {'on' if ckpt else 'off'}"
        if time.perf_counter() > deadline:
            out["errors"].append(f"{label}: skipped: the time budget was spent")
            continue
        try:
            r = train_steps(name, n, ckpt, tiny=tiny, device=device, repeats=repeats)
            out["rows"].append(r)
            log(f"steps: {label}: {r['steps_per_s']:.3f} steps/s" +
                (f", peak {r['peak_gib']:.1f} GiB" if "peak_gib" in r else ""))
        except Exception as e:  # out of memory, say: recorded, the next row runs
            out["errors"].append(f"{label}: {_error(e)}")
            log(f"steps: {label}: failed: {_error(e)}")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def _pan_frames(num_frames: int, h: int, w: int, seed: int, step: int = 2) -> torch.Tensor:
    """``(T, 3, H, W)``: a smooth random texture panning right by ``step`` px per frame."""
    g = torch.Generator().manual_seed(seed)
    wide = w + step * num_frames
    tex = torch.nn.functional.interpolate(torch.rand(1, 3, max(2, h // 16), max(2, wide // 16), generator=g),
                                          size=(h, wide), mode="bicubic").clamp(0, 1)[0]
    x0 = step * num_frames
    return torch.stack([tex[..., x0 - step * k: x0 - step * k + w] for k in range(num_frames)])


def cache_section(tiny: bool, clips: int, log) -> dict:
    """Clips per second of the trainer's cache build (its own cache step, timed from outside)."""
    import diffusers

    from flow.video import write_video
    from motionguide.finetune import PipelineTrainConfig, recipe, train_pipeline

    h, w, n = (32, 32, 9) if tiny else (480, 832, 81)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pipe = testing.tiny_pipeline("wan")
        if not tiny:  # the real VAE (the part of the pipeline the cache runs); random weights, float32
            pipe.register_modules(vae=diffusers.AutoencoderKLWan().eval())
        pipe.save_pretrained(tmp / "pipe", safe_serialization=True)
        del pipe
        (tmp / "videos").mkdir()
        for i in range(clips):
            write_video(tmp / "videos" / f"clip{i}.mp4", _pan_frames(n, h, w, seed=i), fps=16.0)
        timed: list[float] = []
        # the recipe's cache step: build_cache (each process's share) or, in older trainers, prepare_data
        hook = "build_cache" if hasattr(recipe, "build_cache") else "prepare_data"
        orig = getattr(recipe, hook)

        def prepare(*a, **kw):
            t0 = time.perf_counter()
            got = orig(*a, **kw)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            timed.append(time.perf_counter() - t0)
            return got

        logs: list[str] = []
        setattr(recipe, hook, prepare)
        try:
            cfg = PipelineTrainConfig(pipeline=str(tmp / "pipe"), videos=str(tmp / "videos"), steps=1,
                                      out=str(tmp / "run"), frames=n, size=(h, w), clips=clips, progress=False,
                                      checkpoint_every=10 ** 6)
            t0 = time.perf_counter()
            train_pipeline(cfg, log=logs.append, notice=logs.append)
            wall = time.perf_counter() - t0
        finally:
            setattr(recipe, hook, orig)
    if not timed:
        raise RuntimeError(f"the trainer did not call {hook}; the cache build could not be timed")
    sec, entries = timed[0], clips  # each video holds one clip of n frames
    res = {"clips": entries, "timed": f"motionguide.finetune.recipe.{hook}", "size": [h, w], "frames": n, "vae": "AutoencoderKLWan (tiny)" if tiny else
           "AutoencoderKLWan (real size, random weights)", "cache_s": sec, "clips_per_s": entries / sec,
           "s_per_clip": sec / entries, "train_pipeline_wall_s": wall, "cuda": torch.cuda.is_available(),
           "trainer_log": logs[:40]}
    log(f"cache: {entries} clips of {n} frames at {w}x{h} in {sec:.1f} s ({entries / sec:.3f} clips/s)")
    return res


def run(*, tiny: bool = False, out=None, sections=SECTIONS, blocks: int | None = None, repeats: int | None = None,
        cache_clips: int | None = None, device: str | None = None, budget_s: float = 240.0, log=print) -> dict:
    torch.set_flush_denormal(True)
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # the cache section saves and loads a pipeline folder
    transformers.utils.logging.disable_progress_bar()
    dev = torch.device(device or ("cpu" if tiny else "cuda"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_trainer: no CUDA device; run with --tiny for the CPU check")
    path = Path(out) if out else Path(os.environ.get("OUT", "gpu_out")) / "gpu_trainer.json"
    t0 = time.perf_counter()
    data = {"environment": {"tiny": tiny, "device": str(dev), "torch": torch.__version__,
                            "diffusers": diffusers.__version__, "python": platform.python_version(),
                            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None},
            "sections": {}, "errors": {}, "seconds": {}}
    fns = {"steps": lambda: steps_section(tiny, dev, blocks or (1 if tiny else 4), repeats or (1 if tiny else 3),
                                          t0 + budget_s, log),
           "cache": lambda: cache_section(tiny, cache_clips or 2, log)}
    common.run_sections(fns, sections, data, path, t0=t0, budget_s=budget_s, log=log)
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (checks the code; figures mean nothing)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/gpu_trainer.json)")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--blocks", type=int, default=None, help="blocks of each model's rows (default 4; tiny 1)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per row after a warm-up (default 3)")
    ap.add_argument("--cache-clips", type=int, default=None, help="clips the cache build encodes (default 2)")
    ap.add_argument("--device", default=None, help="default cuda (cpu with --tiny)")
    ap.add_argument("--budget-s", type=float, default=240.0, help="start no row or section after this many s")
    args = ap.parse_args(argv)
    data = run(tiny=args.tiny, out=args.out, sections=args.sections, blocks=args.blocks, repeats=args.repeats,
               cache_clips=args.cache_clips, device=args.device, budget_s=args.budget_s,
               log=lambda m: print(m, flush=True))
    failed = list(data["errors"].values()) + data["sections"].get("steps", {}).get("errors", [])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
