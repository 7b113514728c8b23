"""The pipeline path at real size on a GPU (benchmarks/gpu.sh): a random-weight Wan2.1 I2V 14B pipeline, guided
against plain, for each offload mode and with ``torch.compile``: wall time and peak memory.

The pipeline: ``diffusers.WanImageToVideoPipeline`` with the published Wan2.1-I2V-14B-480P transformer
(``motionguide.testing.REAL_CONFIGS``: 40 blocks of width 5120, bf16, random weights; ``--blocks`` builds
fewer), a random ``AutoencoderKLWan`` of the real size and a random CLIP ViT-H/14 image encoder (the
``CLIPVisionModel`` shape of Wan's ``image_encoder``: 32 layers of width 1280, 257 tokens), both in float32 as
Wan keeps them, the flow-matching scheduler, and the text embeddings (512 x 4096) given as random tensors
(the UMT5-XXL encoder runs once per call and is not what this measures; the pipeline refuses image embeddings
given beside the image, so the image encoder runs). The call: 480 x 832, 81 frames,
classifier-free guidance (scale 5), ``output_type="latent"`` (the VAE decode is the same for plain and guided).
Guided: ``motionguide.generate_with_guidance`` with its default (training-free) injection and a reference-
motion guidance of a pan (frame 0 known, every frame guided from it).

Modes, in this order (each a freshly built pipeline, so that one mode's hooks never meet another's): ``none``
(all on the GPU), ``model`` (``enable_model_cpu_offload``), ``group`` (``enable_group_offload``, block level,
one block per group, with a CUDA stream on CUDA), ``sequential`` (``enable_sequential_cpu_offload``) and
``compile`` (all on the GPU, ``transformer.compile_repeated_blocks(fullgraph=True)``). A mode or variant that
fails is recorded with its error line and the others still run.

Time: 50 steps of the 14B model take minutes per variant, so ``--steps`` (default 2) steps are run and the
wall time of ``--target-steps`` (default 50) is extrapolated from them: the call's fixed part (encoding the
condition video, setting guidance; wall minus the steps) + its first step + (N - 1) x the median of the later
steps (the first step also pays compilation and first-use costs; plain runs first in each mode, so its fixed
part also holds the mode's first-use costs: ``guided_over_plain_step`` compares the later steps alone). The
JSON says which figures are measured and which extrapolated.

    python benchmarks/gpu_pipeline.py [--out gpu_out/gpu_pipeline.json] [--modes none model group sequential compile]
                                      [--steps 2] [--target-steps 50] [--blocks 40] [--frames 81] [--budget-s 300]
    python benchmarks/gpu_pipeline.py --tiny     # the same code at tiny sizes on the CPU (tests run this)
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
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

MODEL = "Wan2.1-I2V-14B-480P"
MODES = ("none", "model", "group", "sequential", "compile")  # compile last: the longest (compilation)
GIB = 2 ** 30
#: --tiny: the same classes and call at tiny sizes (2 blocks of 2 heads x 16, CLIP image embeddings of width 32)
TINY_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32, freq_dim=32,
                        num_layers=2, image_dim=32, added_kv_proj_dim=32, rope_max_seq_len=64)
TINY_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
#: Wan2.1 I2V's image encoder (CLIPVisionModel, ViT-H/14 at 224: 16 x 16 patches + 1 = 257 tokens of 1280)
CLIP_REAL = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
                 patch_size=14, projection_dim=1024, hidden_act="gelu")
CLIP_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                 patch_size=8, projection_dim=32)
TINY_CALL = dict(height=32, width=32, num_frames=9)
REAL_CALL = dict(height=480, width=832, num_frames=81)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def build(tiny: bool, device: torch.device, *, blocks: int | None, seed: int = 0):
    """``(pipe, embeds)``: a fresh random-weight Wan I2V pipeline on ``device`` and its call's embeddings."""
    import diffusers

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bf16 directly: a float32 14B would need 56 GB first
    try:
        kw = dict(TINY_TRANSFORMER) if tiny else {}
        if blocks is not None:
            kw["num_layers"] = blocks
        transformer = testing.real_config(MODEL, device=device, dtype=torch.bfloat16, seed=seed, **kw)
    finally:
        torch.set_default_dtype(default)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    with torch.device(device):  # float32, as Wan keeps its VAE and image encoder
        vae = diffusers.AutoencoderKLWan(**(TINY_VAE if tiny else {})).eval()
        clip = CLIPVisionModel(CLIPVisionConfig(**(CLIP_TINY if tiny else CLIP_REAL))).eval()
    side = clip.config.image_size
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    pipe = diffusers.WanImageToVideoPipeline(
        tokenizer=None, text_encoder=None, image_encoder=clip, image_processor=processor, vae=vae,
        transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.set_progress_bar_config(disable=True)
    c, entry = transformer.config, testing.REAL_CONFIGS[MODEL]
    g = torch.Generator().manual_seed(seed)
    text_len = 8 if tiny else entry["text_len"]
    embeds = {"prompt_embeds": torch.randn(1, text_len, c.text_dim, generator=g),
              "negative_prompt_embeds": torch.randn(1, text_len, c.text_dim, generator=g)}
    return pipe, {k: v.to(device, torch.bfloat16) for k, v in embeds.items()}


def pan_guidance(height: int, width: int, num_frames: int, step: float = 2.0):
    """``(image (1, 3, H, W), Guidance)``: frame 0 of a smooth random texture panning right by ``step`` px per
    frame, and the reference-motion guidance of that pan (every frame guided from frame 0)."""
    g = torch.Generator().manual_seed(0)
    pad = int(step * num_frames) + 1
    tex = torch.nn.functional.interpolate(torch.rand(1, 3, max(2, height // 8), max(2, (width + pad) // 8), generator=g),
                                          size=(height, width + pad), mode="bicubic").clamp(0, 1)
    image = tex[..., pad:pad + width]

    def shift(f0, f1):  # consecutive frames of the pan: the backward flow is a constant shift
        out = torch.zeros(f0.shape[0], 2, *f0.shape[-2:])
        out[:, 0] = -step
        return out

    clip = image[:, :, None].expand(1, 3, num_frames, height, width)  # the estimator ignores content
    return image, mg.reference_motion(image, clip, estimator=shift)


def _offload(pipe, mode: str, device: torch.device, compile_backend: str) -> None:
    if mode in ("none", "compile"):
        pipe.to(device)
        if mode == "compile":
            pipe.transformer.compile_repeated_blocks(fullgraph=True, backend=compile_backend)
    elif mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif mode == "group":
        pipe.to("cpu")
        pipe.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                  offload_type="block_level", num_blocks_per_group=1,
                                  use_stream=device.type == "cuda")
    else:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")


def timed_call(fn, device: torch.device, steps: int, target: int) -> dict:
    """Run ``fn(callback)`` (a pipeline call with ``steps`` steps), timing each step; figures for ``target``."""
    marks: list[float] = []

    def callback(pipe, i, t, kw):
        common.sync(device)
        marks.append(time.perf_counter())
        return kw

    common.sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    t0 = time.perf_counter()
    out = fn(callback)
    common.sync(device)
    wall = time.perf_counter() - t0
    if len(marks) != steps:
        raise RuntimeError(f"expected {steps} step callbacks, got {len(marks)}")
    # the steps after the first, end to end; the first step's start is not seen, so it stays in the fixed part
    step_s = [b - a for a, b in zip(marks, marks[1:])]
    later = statistics.median(step_s) if step_s else None
    res = {"measured_steps": steps, "wall_s": wall, "later_step_s": step_s, "median_step_s": later}
    if later is None:  # one step: the step cannot be told from the fixed part; extrapolate the whole call
        res["extrapolated_wall_s"] = wall * target / steps
        res["extrapolation"] = "one measured step: wall x target steps (upper bound)"
    else:
        fixed_and_first = marks[0] - t0 + (wall - (marks[-1] - t0))
        res["fixed_and_first_step_s"] = fixed_and_first
        res["extrapolated_wall_s"] = fixed_and_first + (target - 1) * later
        res["extrapolation"] = f"fixed part + first step (measured) + {target - 1} x median later step"
    if device.type == "cuda":
        res["peak_gib"] = torch.cuda.max_memory_allocated(device) / GIB
        res["resident_before_gib"] = before / GIB
    res["_out"] = out.frames if hasattr(out, "frames") else out[0]
    return res


def run_mode(mode: str, *, tiny: bool, device: torch.device, blocks: int | None, call: dict, steps: int, target: int,
             guidance_scale: float, compile_backend: str, image, guidance, reference: dict, log,
             save=lambda res: None) -> dict:
    """One mode's plain and guided calls; ``save(res)`` after each, so a run stopped mid-mode keeps them."""
    res: dict = {}
    t0 = time.perf_counter()
    pipe, embeds = build(tiny, device, blocks=blocks)  # random init is fastest on the GPU; offload moves it
    res["build_s"] = time.perf_counter() - t0
    try:
        _offload(pipe, mode, device, compile_backend)
    except Exception as e:
        res["error"] = f"offload: {_error(e)}"
        log(f"{mode}: {res['error']}")
        return res
    common = dict(**embeds, **call, num_inference_steps=steps, guidance_scale=guidance_scale, output_type="latent",
                  callback_on_step_end_tensor_inputs=["latents"])
    variants = {
        "plain": lambda cb: pipe(image=image, generator=torch.Generator().manual_seed(0), callback_on_step_end=cb,
                                 **common),
        "guided": lambda cb: mg.generate_with_guidance(pipe, guidance, generator=torch.Generator().manual_seed(0),
                                                       callback_on_step_end=cb, **common),
    }
    for name, fn in variants.items():
        try:
            r = timed_call(fn, device, steps, target)
            out = r.pop("_out").float().cpu()
            ref = reference.setdefault(name, out)  # the first mode that ran (none, when it ran) is the reference
            r["max_abs_diff_vs_first_mode"] = float((out - ref).abs().max())
            if name == "guided" and "plain" in res and "_plain" in reference:
                r["max_abs_change_vs_plain"] = float((out - reference["_plain"]).abs().max())
            if name == "plain":
                reference["_plain"] = out
            res[name] = r
            log(f"{mode} {name}: {r['wall_s']:.1f} s for {steps} steps, {target} steps ~ {r['extrapolated_wall_s']:.0f} s"
                + (f", peak {r['peak_gib']:.1f} GiB" if "peak_gib" in r else ""))
        except Exception as e:  # recorded; the other variants and modes still run
            res[name] = {"error": _error(e)}
            log(f"{mode} {name}: failed: {_error(e)}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        save(res)
    if "error" not in res.get("plain", {"error": 1}) and "error" not in res.get("guided", {"error": 1}):
        p, g = res["plain"], res["guided"]
        res["guided_over_plain_wall"] = g["extrapolated_wall_s"] / p["extrapolated_wall_s"]
        if p["median_step_s"] and g["median_step_s"]:  # per denoising step: free of the plain call's first-use costs
            res["guided_over_plain_step"] = g["median_step_s"] / p["median_step_s"]
        if "peak_gib" in p:
            res["guided_minus_plain_peak_gib"] = g["peak_gib"] - p["peak_gib"]
    del pipe
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def _environment(device: torch.device, tiny: bool) -> dict:
    import diffusers

    env = {"tiny": tiny, "device": str(device), "torch": torch.__version__, "diffusers": diffusers.__version__,
           "python": platform.python_version(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gib=p.total_memory / GIB, cuda=torch.version.cuda)
    return env


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    common.write_json(path, data)  # atomic, through the project's one writer


def run(*, tiny: bool = False, out: str | Path | None = None, modes=MODES, steps: int = 2, target_steps: int = 50,
        blocks: int | None = None, frames: int | None = None, guidance_scale: float = 5.0,
        compile_backend: str | None = None, device: str | None = None, budget_s: float = 300.0, log=print) -> dict:
    """Run the modes in order until ``budget_s`` is spent; the JSON is rewritten after each mode."""
    torch.set_flush_denormal(True)
    dev = torch.device(device or ("cpu" if tiny else "cuda"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_pipeline: no CUDA device; run with --tiny for the CPU check")
    if steps < 1 or target_steps < steps:
        raise SystemExit(f"gpu_pipeline: --steps must be >= 1 and <= --target-steps, got {steps} and {target_steps}")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f"gpu_pipeline: --modes: expected some of {', '.join(MODES)}, got {', '.join(bad)}")
    call = dict(TINY_CALL if tiny else REAL_CALL)
    if frames is not None:
        call["num_frames"] = frames
    backend = compile_backend or ("eager" if dev.type == "cpu" else "inductor")
    path = Path(out) if out else Path(os.environ.get("OUT", "gpu_out")) / "gpu_pipeline.json"
    t0 = time.perf_counter()
    image, guidance = pan_guidance(call["height"], call["width"], call["num_frames"])
    data = {"environment": _environment(dev, tiny),
            "settings": {"model": MODEL, "blocks": blocks or (TINY_TRANSFORMER["num_layers"] if tiny else
                                                             testing.REAL_CONFIGS[MODEL]["config"]["num_layers"]),
                         **call, "guidance_scale": guidance_scale, "cfg": guidance_scale > 1,
                         "measured_steps": steps, "target_steps": target_steps, "compile_backend": backend,
                         "output_type": "latent", "guidance": "reference motion of a 2 px/frame pan, training-free",
                         "note": f"wall times of {target_steps} steps are extrapolated from {steps} measured steps "
                                 f"(extrapolated_wall_s); wall_s and peak_gib are measured"},
            "modes": {}, "seconds": {}}
    reference: dict = {}
    for mode in modes:
        if time.perf_counter() - t0 > budget_s:
            data["modes"][mode] = {"error": f"skipped: the {budget_s:.0f} s budget was spent"}
            continue
        s0 = time.perf_counter()
        try:
            data["modes"][mode] = run_mode(mode, tiny=tiny, device=dev, blocks=blocks, call=call, steps=steps,
                                           target=target_steps, guidance_scale=guidance_scale, compile_backend=backend,
                                           image=image, guidance=guidance, reference=reference, log=log,
                                           save=lambda res: (data["modes"].__setitem__(mode, res), _write(path, data)))
        except Exception as e:  # a build that fails (out of memory, say): recorded, the next mode runs
            data["modes"][mode] = {"error": _error(e)}
            log(f"{mode}: failed: {_error(e)}")
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        data["seconds"][mode] = time.perf_counter() - s0
        _write(path, data)
    data["seconds"]["total"] = time.perf_counter() - t0
    _write(path, data)
    log(f"wrote {path} ({data['seconds']['total']:.0f} s)")
    return data


def failures(data: dict) -> list[str]:
    """``mode variant: error`` for every failed mode or variant of a result."""
    out = []
    for mode, r in data["modes"].items():
        if "error" in r:
            out.append(f"{mode}: {r['error']}")
        out += [f"{mode} {k}: {r[k]['error']}" for k in ("plain", "guided") if "error" in r.get(k, {})]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (checks the code; figures mean nothing)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/gpu_pipeline.json)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), help=f"offload modes, in order (default {' '.join(MODES)})")
    ap.add_argument("--steps", type=int, default=2, help="denoising steps measured per call (default 2)")
    ap.add_argument("--target-steps", type=int, default=50, help="steps the wall time is extrapolated to (default 50)")
    ap.add_argument("--blocks", type=int, default=None, help="transformer blocks (default all 40; tiny 2)")
    ap.add_argument("--frames", type=int, default=None, help="frames (4k + 1; default 81, tiny 9)")
    ap.add_argument("--guidance-scale", type=float, default=5.0, help="classifier-free guidance scale (default 5)")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; eager on the CPU)")
    ap.add_argument("--device", default=None, help="default cuda (cpu with --tiny)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="start no mode after this many seconds")
    args = ap.parse_args(argv)
    data = run(tiny=args.tiny, out=args.out, modes=args.modes, steps=args.steps, target_steps=args.target_steps,
               blocks=args.blocks, frames=args.frames, guidance_scale=args.guidance_scale,
               compile_backend=args.compile_backend, device=args.device, budget_s=args.budget_s,
               log=lambda m: print(m, flush=True))
    bad = failures(data)
    for line in bad:
        print(f"gpu_pipeline: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
