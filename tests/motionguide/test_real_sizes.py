"""Real sizes, checked without the weights: the published transformer configs built on the ``meta`` device.

For Wan2.1-T2V-1.3B, Wan2.1-I2V-14B-480P, CogVideoX-5B-I2V and LTX-Video 2B (configs in
``motionguide.testing.REAL_CONFIGS``, pinned here against the published ``transformer/config.json`` numbers):

* apply and remove trained latent + feature guidance; the adapter's parameters follow the formula
  ``D * ((C + 1) * pt * ph * pw + n_guided)`` and stay <= 2 % of the model's;
* activation memory at the pipeline's default video (Wan 480x832, 81 frames = 21 x 30 x 52 tokens): what
  autograd saves in one training forward, the model's own against the guidance's.

How the activation memory is computed (no values exist on ``meta``, only shapes):

* model: one forward of the full ``meta`` model in bf16 (its float32 modules kept float32, as
  ``from_pretrained(torch_dtype=torch.bfloat16)`` loads it) under ``torch.autograd.graph.saved_tensors_hooks``;
  the bytes of every distinct storage autograd saves, parameters and buffers excluded. SDPA is counted as
  the flash / memory-efficient kernels save (q, k, v, out and a float32 logsumexp): on ``meta`` SDPA would
  take the math path, which keeps the N x N attention matrix no GPU kernel keeps.
* guidance: the hooks themselves cannot run on ``meta`` (the root hook reads the timestep's value, the feature
  hook the source frames' indices), so their two
  computations run on ``meta`` tensors of the real shapes under the same counter: the latent adapter on the
  ``[latents, mask]`` input, and ``motionguide.feature.blend_tokens`` (the feature hook's whole computation)
  once per guided block (default: the first half) on the real token grid. Two
  layouts: ``ref`` = every frame guided by frame 0 (reference motion, continuation; K = 1, P = F' - 1 pairs),
  ``inb`` = in-betweening from the first and last frames (K = 2, P = 2 (F' - 2) pairs).
* without checkpointing: guidance share = guidance bytes / model bytes. With block-level gradient
  checkpointing (``enable_gradient_checkpointing``, the trainer's default) the model keeps each block's input
  (``L * N * D * 2`` bytes) plus what lies outside the blocks, and recomputes one block at a time; the guidance
  then adds one guided block's blend: share = (blend_one_block + latent) / (outside + L * N * D * 2 + one_block).

``pytest -s`` prints the table (``docs/README_training.md`` quotes it).
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import motionguide as mg
from motionguide import testing
from motionguide.feature import blend_tokens
from motionguide.testing import SavedBytes, flash_attention_saved, layout_pairs, real_grid, real_inputs
from motionguide.registry import get_spec

torch.set_flush_denormal(True)
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_bench.py"

# The published numbers, from each model's transformer/config.json on the Hugging Face hub (diffusers format):
#   Wan-AI/Wan2.1-T2V-1.3B-Diffusers        huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers/blob/main/transformer/config.json
#   Wan-AI/Wan2.1-I2V-14B-480P-Diffusers    huggingface.co/Wan-AI/Wan2.1-I2V-14B-480P-Diffusers/blob/main/transformer/config.json
#   THUDM/CogVideoX-5b-I2V                  huggingface.co/THUDM/CogVideoX-5b-I2V/blob/main/transformer/config.json
#   Lightricks/LTX-Video (0.9.0/0.9.1, 2B)  huggingface.co/Lightricks/LTX-Video/blob/main/transformer/config.json
# The Wan numbers agree with the Wan2.1 model card's table (1.3B: dim 1536, 12 heads, 30 layers, ffn 8960;
# 14B: dim 5120, 40 heads, 40 layers, ffn 13824; in/out 16, I2V in 36 = 16 noise + 4 mask + 16 image latents).
# ``nominal`` is the size in the model's name; the count built here must land within 20 % of it.
PUBLISHED = {
    "Wan2.1-T2V-1.3B": dict(width=1536, heads=12, head_dim=128, layers=30, ffn=8960, in_channels=16, out_channels=16,
                            patch=(1, 2, 2), text_dim=4096, nominal=1.3e9),
    "Wan2.1-I2V-14B-480P": dict(width=5120, heads=40, head_dim=128, layers=40, ffn=13824, in_channels=36,
                                out_channels=16, patch=(1, 2, 2), text_dim=4096, image_dim=1280, nominal=14e9),
    "CogVideoX-5B-I2V": dict(width=3072, heads=48, head_dim=64, layers=42, in_channels=32, out_channels=16,
                             patch=(1, 2, 2), text_dim=4096, text_len=226, nominal=5e9),
    "LTX-Video-2B": dict(width=2048, heads=32, head_dim=64, layers=28, in_channels=128, out_channels=128,
                         patch=(1, 1, 1), text_dim=4096, cross_dim=2048, nominal=2e9),
}
NAMES = list(PUBLISHED)
GIB = 2 ** 30


@pytest.fixture(scope="module")
def table():
    rows: dict[str, dict] = {}
    yield rows
    if rows:
        print("\nreal sizes on meta (bf16, batch 1, pipeline default video; activation = bytes autograd saves)")
        print(f"{'config':22} {'params':>7} {'adapter':>9} {'adapter%':>9} {'tokens':>14} {'model GiB':>9} "
              f"{'ref %':>6} {'inb %':>6} {'ckpt ref %':>10} {'ckpt inb %':>10}")
        for name, r in rows.items():
            if not {"params", "ref_pct", "inb_pct"} <= set(r):
                continue  # a test of this config failed or was deselected
            print(f"{name:22} {r['params'] / 1e9:6.2f}B {r['adapter_params']:9d} {r['adapter_pct']:9.4f} "
                  f"{'x'.join(map(str, r['tokens'])):>14} {r['model_gib']:9.1f} {r['ref_pct']:6.2f} {r['inb_pct']:6.2f} "
                  f"{r['ckpt_ref_pct']:10.2f} {r['ckpt_inb_pct']:10.2f}")


@pytest.fixture(scope="module", params=NAMES)
def model(request):
    return request.param, testing.real_config(request.param)


# ---- tests -----------------------------------------------------------------------------------------------
def test_wan_480p_token_grid_arithmetic():
    # 480 x 832 pixels / (8 VAE x 2 patch) = 30 x 52 tokens; 81 frames -> (81 - 1) / 4 + 1 = 21 latent frames
    assert real_grid("Wan2.1-T2V-1.3B") == ((21, 60, 104), (21, 30, 52))
    assert real_grid("CogVideoX-5B-I2V") == ((13, 60, 90), (13, 30, 45))      # 480x720, 49 frames
    assert real_grid("LTX-Video-2B") == ((21, 16, 22), (21, 16, 22))          # 512x704 / 32, (161 - 1) / 8 + 1


def test_published_numbers(model):
    name, m = model
    pub, entry = PUBLISHED[name], testing.REAL_CONFIGS[name]
    c, spec = m.config, get_spec(m)
    assert type(m).__name__ == entry["cls"] and all(p.device.type == "meta" for p in m.parameters())
    assert spec.hidden_dim(m) == pub["width"] == pub["heads"] * pub["head_dim"]
    assert (c.num_attention_heads, c.attention_head_dim) == (pub["heads"], pub["head_dim"])
    assert len(spec.block_list(m)) == c.num_layers == pub["layers"]
    assert (c.in_channels, c.out_channels) == (pub["in_channels"], pub["out_channels"])
    assert spec.patch_size(m) == pub["patch"]
    assert (c.get("text_dim") or c.get("text_embed_dim") or c.get("caption_channels")) == pub["text_dim"]
    for key, cfg_key in (("ffn", "ffn_dim"), ("image_dim", "image_dim"), ("text_len", "max_text_seq_length"),
                         ("cross_dim", "cross_attention_dim")):
        if key in pub:
            assert c[cfg_key] == pub[key], key
    n = sum(p.numel() for p in m.parameters())
    assert abs(n / pub["nominal"] - 1) < 0.2 or (name == "Wan2.1-I2V-14B-480P" and 14e9 <= n < 17e9), n
    # Wan I2V-14B counts 16.4 B: its 14 B backbone plus the image cross-attention (image_dim 1280 -> 40 x k/v 5120)


def test_apply_and_remove_on_meta(model, table):
    name, m = model
    spec = get_spec(m)
    before = ({k: (v.shape, v.dtype) for k, v in m.state_dict().items()},
              [n for n, mod in m.named_modules() if hasattr(mod, "_diffusers_hook") or "forward" in mod.__dict__])
    n_model = sum(p.numel() for p in m.parameters())
    adapter = mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="trained", latent=True, feature=True))
    try:
        d, c, (pt, ph, pw) = spec.hidden_dim(m), spec.latent_channels(m), spec.patch_size(m)
        n_layers = len(spec.block_list(m))
        assert adapter.guided_blocks == tuple(range(n_layers // 2))  # MoG: the encoder half = the first blocks
        n_adapter = sum(p.numel() for p in adapter.parameters())
        assert n_adapter == d * ((c + 1) * pt * ph * pw + n_layers // 2)
        assert sum(p.numel() for p in m.parameters()) == n_model + n_adapter  # it is a submodule
        nbytes = sum(p.numel() * p.element_size() for p in adapter.parameters())
        assert nbytes == 2 * n_adapter  # bf16, the model's own dtype
        assert n_adapter / n_model <= 0.02
    finally:
        mg.remove_motion_guidance(m)
    after = ({k: (v.shape, v.dtype) for k, v in m.state_dict().items()},
             [n for n, mod in m.named_modules() if hasattr(mod, "_diffusers_hook") or "forward" in mod.__dict__])
    assert after == before and not hasattr(m, "motion_guidance")
    table.setdefault(name, {}).update(params=n_model, adapter_params=n_adapter, adapter_bytes=nbytes,
                                      adapter_pct=100 * n_adapter / n_model)


@pytest.fixture(scope="module")
def activation(model):
    """Bytes autograd saves at the default video: the model's forward and the guidance's two computations."""
    name, m = model
    with flash_attention_saved():  # (the feature hook's warp, backward_warp_many, reads no values: meta runs it)
        return name, _activation(name, m)


def _activation(name, m) -> dict:
    spec = get_spec(m)
    (f, h, w), tokens = real_grid(name)
    d, blocks = spec.hidden_dim(m), spec.block_list(m)
    marks: dict[int, int] = {}
    frozen = list(m.parameters()) + list(m.buffers())
    for p in m.parameters():
        p.requires_grad_(True)  # a training forward: every op that feeds a trainable weight saves its input
    try:
        with SavedBytes(exclude=frozen) as model_saved:
            # block 1, not 0: block 0 is the first to save what every block shares (temb, text, RoPE tables)
            hooks = [blocks[1].register_forward_pre_hook(lambda *a: marks.__setitem__(0, model_saved.total)),
                     blocks[1].register_forward_hook(lambda *a: marks.__setitem__(1, model_saved.total))]
            try:
                out = m(**real_inputs(name, m))[0]
            finally:
                for hk in hooks:
                    hk.remove()
    finally:
        for p in m.parameters():
            p.requires_grad_(False)
    assert out.device.type == "meta" and out.dtype == torch.bfloat16
    one_block = marks[1] - marks[0]
    outside = model_saved.total - len(blocks) * one_block  # every block saves the same shapes
    assert outside >= 0

    adapter = mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="trained"))
    try:
        params = list(adapter.parameters())
        for p in params:
            p.requires_grad_(True)
        x = torch.empty(1, spec.latent_channels(m) + 1, f, h, w, device="meta")  # [warped latents, mask], float32
        with SavedBytes(exclude=params) as latent_saved:
            emb = adapter.latent(x)
        assert math.prod(emb.shape) == math.prod(tokens) * d  # one embedding row per token
        gate = next(iter(adapter.gates.values()))
        blend = {}
        for layout in ("ref", "inb"):
            h5 = torch.empty(1, *tokens, d, device="meta", dtype=torch.bfloat16, requires_grad=True)
            with SavedBytes(exclude=[gate]) as s:
                assert blend_tokens(h5, layout_pairs(tokens, layout), gate).shape == h5.shape
            blend[layout] = s.total
        n_guided = len(adapter.guided_blocks)
    finally:
        mg.remove_motion_guidance(m)
    kept_inputs = len(blocks) * math.prod(tokens) * d * 2  # checkpointing keeps each block's bf16 input
    return dict(tokens=tokens, model=model_saved.total, one_block=one_block, outside=outside, kept_inputs=kept_inputs,
                latent=latent_saved.total, blend=blend, n_guided=n_guided,
                share={k: (n_guided * b + latent_saved.total) / model_saved.total for k, b in blend.items()},
                ckpt={k: (b + latent_saved.total) / (outside + kept_inputs + one_block) for k, b in blend.items()})


# (config, layout) whose computed share exceeds 5 % today. The bulk of the feature hook's saved bytes is one
# float32 copy of the source frame per (target, source) pair (``blend_tokens`` gathers, then warps): in-betweening
# has two pairs per frame, and CogVideoX's blocks save less per token than Wan's, so the same blend weighs more.
# Warping each distinct source frame once, with its pairs' sampling grids stacked along the output height
# (``grid_sample`` takes any output size), would keep one copy per source instead. An entry that starts to pass
# fails the test: drop it then.
OVER_5_PERCENT: set[tuple[str, str]] = set()  # (config, layout) pairs known to exceed 5 %: none since
# the feature hook warps each source frame once for all its targets (flow.warp.backward_warp_many)


@pytest.mark.parametrize("layout", ["ref", "inb"])
def test_activation_memory_share(activation, layout, table):
    name, a = activation
    row = table.setdefault(name, {})
    row.update(tokens=a["tokens"], model_gib=a["model"] / GIB, **{f"{layout}_pct": 100 * a["share"][layout],
               f"ckpt_{layout}_pct": 100 * a["ckpt"][layout]})
    # the model saves far more than its block outputs (Wan: ~48x the bf16 hidden states per block)
    assert a["model"] > 10 * a["kept_inputs"] and a["blend"][layout] > 0 and a["latent"] > 0
    share = a["share"][layout]
    if (name, layout) in OVER_5_PERCENT:
        assert share > 0.05, f"{name} {layout}: {share:.2%} is now within 5 %; drop it from OVER_5_PERCENT"
        pytest.xfail(f"{name} {layout}: guidance saves {share:.2%} of the model's activations (> 5 %)")
    assert share <= 0.05, f"{name} {layout}: guidance saves {share:.2%} of the model's activations"
    if name.startswith("Wan"):  # the target: Wan at 480p, 81 frames, also under checkpointing
        assert a["ckpt"][layout] <= 0.05


@pytest.mark.slow
def test_guided_forward_at_real_width_on_cpu():
    """Wan2.1-T2V-1.3B at real width (1536 = 12 x 128, ffn 8960, text 4096), 2 blocks, bf16, on the CPU.

    One guided forward and backward on a 2 x 8 x 8 latent grid (5 frames of 64 x 64 pixels): the shapes and
    dtypes hold at real width, the trained adapter moves the output and receives gradients, strength 0 is the
    plain model, and removal restores it.
    """
    torch.manual_seed(0)
    m = testing.real_config("Wan2.1-T2V-1.3B", device="cpu", dtype=torch.bfloat16, num_layers=2)
    assert get_spec(m).hidden_dim(m) == 1536 and m.blocks[0].ffn.net[0].proj.out_features == 8960
    g = torch.Generator().manual_seed(1)
    f, h, w = 2, 8, 8
    x = torch.randn(1, 16, f, h, w, generator=g).to(torch.bfloat16)
    kw = dict(hidden_states=x, timestep=torch.tensor([500.0]), return_dict=False,
              encoder_hidden_states=torch.randn(1, 16, 4096, generator=g).to(torch.bfloat16))
    with torch.no_grad():
        plain = m(**kw)[0]
    assert plain.shape == x.shape and plain.dtype == torch.bfloat16 and torch.isfinite(plain).all()

    adapter = mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="trained"))
    assert adapter.guided_blocks == (0,) and adapter.latent.proj.weight.dtype == torch.bfloat16
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.05)
    flows = torch.zeros(1, f, 1, 2, h, w)
    flows[:, 1, 0, 0] = -1.0  # latent frame 1 shows frame 0 moved right by one cell
    lg = mg.LatentGuidance.from_sources(torch.randn(1, 16, 1, h, w, generator=g), torch.zeros(f, 1, dtype=torch.long),
                                        flows, torch.ones(1, f, 1, 1, h, w), clip_index=[0])
    mg.set_guidance(m, lg)
    params = mg.trainable_parameters(m)
    guided = m(**kw)[0]
    assert guided.shape == x.shape and guided.dtype == torch.bfloat16 and torch.isfinite(guided).all()
    assert (guided.float() - plain.float()).abs().max() > 1e-2
    guided.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == p.dtype and torch.isfinite(p.grad).all() for p in params)
    assert all(not p.requires_grad for n, p in m.named_parameters() if not n.startswith("motion_guidance."))
    with torch.no_grad(), mg.guidance_context(m, lg, strength=0.0):
        assert torch.equal(m(**kw)[0], plain)
    mg.remove_motion_guidance(m)
    with torch.no_grad():
        assert torch.equal(m(**kw)[0], plain)


# ---- the prepared GPU run, at tiny sizes on the CPU -----------------------------------------------------
def _bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_bench_tiny_writes_every_section(tmp_path):
    bench = _bench()
    out = tmp_path / "gpu_bench.json"
    bench.run(tiny=True, out=out, log=lambda m: None)
    data = json.loads(out.read_text())
    assert data["errors"] == {} and data["environment"]["tiny"] is True and data["seconds"]["total"] > 0
    assert set(data["sections"]) == {"guidance", "activation", "ifnet"}  # the trainer: benchmarks/gpu_trainer.py
    g = data["sections"]["guidance"]
    assert g["model"] == "Wan2.1-T2V-1.3B" and g["tokens"] == [3, 4, 4] and g["guided_blocks"] == 1
    assert set(g["ms"]) == {"unhooked", "plain", "ref", "inb"} and all(v > 0 for v in g["ms"].values())
    assert set(g["overhead"]) == {"ref", "inb"} and set(g["peak_above_weights_gib"]) == {"unhooked", "plain", "ref", "inb"}
    assert set(g["guidance_state_gib"]) == {"ref", "inb"} and g["max_abs_change_ref"] > 0  # the adapters act
    a = data["sections"]["activation"]
    assert set(a["predicted_gib"]) == {"plain", "ref", "inb"} and a["measured_gib"] is None  # measured on CUDA only
    assert a["predicted_gib"]["ref"] > a["predicted_gib"]["plain"] > 0
    i = data["sections"]["ifnet"]
    assert i["size"] == [64, 96] and {(r["version"], r["who"]) for r in i["rows"]} >= {("v4.25", "ours"), ("v3.6", "ours")}
    assert all(r["fps"] > 0 and r["ms_per_frame"] > 0 for r in i["rows"])


def test_gpu_bench_runs_the_rife_peer_in_half_precision():
    bench = _bench()
    from benchmarks.rife_peers import peer_unavailable

    if peer_unavailable("v3.6"):
        pytest.skip(peer_unavailable("v3.6"))
    res = bench.ifnet_section(True, torch.device("cpu"), 1, lambda m: None, dtype=torch.float16, versions=("v3.6",),
                              warmup=1)
    assert res["dtype"] == "float16" and res["peer_dtype_v3.6"] == "float16"  # RIFE's --fp16 way, no fallback
    assert res["max_abs_diff_v3.6"] < 0.05 and {r["who"] for r in res["rows"]} == {"ours", "peer"}
    assert torch.get_default_dtype() == torch.float32  # restored


def test_gpu_script_is_valid_bash_and_calls_the_benchmark():
    script = BENCH.with_name("gpu.sh")
    import subprocess

    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "script=benchmarks/gpu_$part.py" in text and '--out "$OUT/gpu_bench.json"' in text
    assert 'OUT="${OUT:-./gpu_out}"' in text
