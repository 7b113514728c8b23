"""The adapter's LoRA beside a user's own LoRAs, merged or separate, and with fp8 layerwise casting."""
from __future__ import annotations


import pytest
import torch
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer

import motionguide as mg
from motionguide import testing

GRID = (3, 8, 8)
WAN = "WanTransformer3DModel"


def guidance():
    f, h, w = GRID
    flows = torch.zeros(1, f, 1, 2, h, w)
    flows[:, 1:, 0, 0] = -1.5
    return mg.LatentGuidance.from_sources(torch.randn(1, 4, 1, h, w, generator=torch.Generator().manual_seed(0)),
                                          torch.zeros(f, 1, dtype=torch.long), flows, torch.ones(1, f, 1, 1, h, w),
                                          clip_index=[0])


def run(m, kw):
    with torch.no_grad():
        return m(**kw)[0]


def peft_state(m):
    """Every peft layer's active adapters, scalings and requires_grad flags."""
    return [(n, list(l.active_adapters), dict(l.scaling), [(k, p.requires_grad) for k, p in l.named_parameters() if "lora_" in k])
            for n, l in m.named_modules() if isinstance(l, BaseTunerLayer)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An adapter with non-zero weights and a non-zero LoRA on blocks 0 and 1 (to_q, to_k, to_v, to_out.0)."""
    m = testing.build(WAN)
    mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="trained"))
    mg.add_lora(m, rank=2, blocks=(0, 1))
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in mg.trainable_parameters(m):
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return mg.save_motion_guidance(m, tmp_path_factory.mktemp("lora") / "ad")


@pytest.fixture(scope="module")
def user_lora(tmp_path_factory):
    """A user's LoRA file (to_q and ffn of every block, non-zero), written by diffusers' save_lora_adapter."""
    m = testing.build(WAN)
    m.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "ffn.net.2"]), adapter_name="user_style")
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    folder = tmp_path_factory.mktemp("user_lora")
    m.save_lora_adapter(folder, adapter_name="user_style")
    return folder


def with_user_lora(folder, weight=0.7):
    """A tiny Wan with the user's LoRA loaded as ``user_style`` (diffusers' load_lora_adapter) at ``weight``,
    and a second one ``user_off`` loaded but inactive."""
    m = testing.build(WAN)
    m.load_lora_adapter(folder, adapter_name="user_style", prefix=None,
                        weight_name="pytorch_lora_weights.safetensors", use_safetensors=True)
    m.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q"]), adapter_name="user_off")
    m.set_adapters(["user_style"], weights=[weight])
    return m


def test_user_lora_stays_active_beside_the_adapter_and_is_restored_exactly(folder, user_lora):
    m = with_user_lora(user_lora)
    kw = testing.inputs(m, 2, GRID)
    user_only = run(m, kw)
    assert (user_only - run(testing.build(WAN), kw)).abs().max() > 1e-3  # the user's LoRA acts
    before, tree = peft_state(m), [n for n, _ in m.named_modules()]
    ad = mg.load_motion_guidance(m, folder)
    assert set(m.active_adapters()) == {"user_style", "motionguide_lora"}
    q = m.blocks[0].attn1.to_q  # a layer with both: both active, the user's weight kept
    assert q.active_adapters == ["user_style", "motionguide_lora"] and q.scaling["user_style"] == pytest.approx(0.7)
    mg.set_guidance(m, guidance())
    both = run(m, kw)
    # the same adapter on the model without the user's LoRA gives another output: the user's LoRA acts
    alone = testing.build(WAN)
    mg.load_motion_guidance(alone, folder)
    mg.set_guidance(alone, guidance())
    assert (run(alone, kw) - both).abs().max() > 1e-3
    params = mg.trainable_parameters(m)  # the adapter's own LoRA, never the user's
    assert params and not any(p is q.lora_A["user_style"].weight for p in params)
    assert ad.lora["name"] == "motionguide_lora"
    mg.remove_motion_guidance(m)
    assert set(m.peft_config) == {"user_style", "user_off"}
    assert peft_state(m) == before and [n for n, _ in m.named_modules()] == tree
    assert torch.equal(run(m, kw), user_only)


def test_merged_lora_equals_separate_and_removal_restores(folder, user_lora):
    m = with_user_lora(user_lora)
    kw = testing.inputs(m, 2, GRID)
    user_only = run(m, kw)
    weights = {k: v.clone() for k, v in m.state_dict().items()}
    mg.load_motion_guidance(m, folder)
    mg.set_guidance(m, guidance())
    separate = run(m, kw)
    mg.remove_motion_guidance(m)
    mg.load_motion_guidance(m, folder, lora="merged")
    assert set(m.peft_config) == {"user_style", "user_off"}  # no LoRA layers of ours
    mg.set_guidance(m, guidance())
    assert (run(m, kw) - separate).abs().max() <= 1e-5
    mg.remove_motion_guidance(m)
    assert all(torch.equal(v, weights[k]) for k, v in m.state_dict().items())
    assert torch.equal(run(m, kw), user_only)
    with pytest.raises(ValueError, match="lora: expected 'separate' or 'merged'"):
        mg.load_motion_guidance(m, folder, lora="fused")


def test_merged_adapter_saves_back_its_lora(folder, tmp_path):
    m = testing.build(WAN)
    kw = testing.inputs(m, 2, GRID)
    mg.load_motion_guidance(m, folder, lora="merged")
    mg.set_guidance(m, guidance())
    want = run(m, kw)
    mg.save_motion_guidance(m, tmp_path / "again")
    mg.remove_motion_guidance(m)
    mg.load_motion_guidance(m, tmp_path / "again")  # separate this time
    mg.set_guidance(m, guidance())
    assert (run(m, kw) - want).abs().max() <= 1e-5
    mg.remove_motion_guidance(m)


def test_fp8_layerwise_casting_with_the_adapter(folder):
    m = testing.build(WAN)
    m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    kw = testing.inputs(m, 2, GRID)
    fp8_plain = run(m, kw)
    ad = mg.load_motion_guidance(m, folder)
    q = m.blocks[0].attn1.to_q
    assert q.base_layer.weight.dtype == torch.float8_e4m3fn  # the model stays in fp8 storage
    assert q.lora_A["motionguide_lora"].weight.dtype == torch.float32  # ours never
    assert all(p.dtype == torch.float32 for p in ad.parameters())
    mg.set_guidance(m, guidance())
    out = run(m, kw)
    assert torch.isfinite(out).all() and (out - fp8_plain).abs().max() > 1e-3
    mg.remove_motion_guidance(m)
    assert torch.equal(run(m, kw), fp8_plain)
    # a merge would round the LoRA away in float8: refused, the model untouched
    with pytest.raises(mg.MotionGuidanceError, match="float8.*lora='separate'"):
        mg.load_motion_guidance(m, folder, lora="merged")
    assert not hasattr(m, "motion_guidance") and torch.equal(run(m, kw), fp8_plain)


def test_layerwise_casting_enabled_after_apply_leaves_the_adapter_weights_alone():
    m = testing.build(WAN)
    ad = mg.apply_motion_guidance(m, mg.MotionGuidanceConfig(mode="trained"))
    mg.add_lora(m, rank=2)
    m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in ad.parameters())
    assert m.blocks[0].attn1.to_q.lora_B["motionguide_lora"].weight.dtype == torch.float32
    mg.set_guidance(m, guidance())
    assert torch.isfinite(run(m, testing.inputs(m, 2, GRID))).all()
    mg.remove_motion_guidance(m)
