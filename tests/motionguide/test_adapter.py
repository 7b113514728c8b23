"""apply / remove / set / save / load on tiny random-init configs of all five supported classes."""
from __future__ import annotations

import json

import pytest
import torch

import motionguide as mg
from motionguide import testing
from motionguide.adapter import MotionGuidanceConfig, MotionGuidanceError
from motionguide.latent import LatentGuidance

GRID = (3, 8, 8)  # latent (F, h, w)
ARCHS = testing.ARCHITECTURES


@pytest.fixture(scope="module")
def models():
    """One tiny model per class with fixed inputs (batch 2) and its plain output."""
    out = {}
    for name in ARCHS:
        m = testing.build(name)
        kw = testing.inputs(m, 2, GRID)
        with torch.no_grad():
            base = m(**kw)[0]
        out[name] = (m, kw, base)
    return out


def make_guidance(model, *, batch=1, strength=None, shift=1.5, seed=0) -> LatentGuidance:
    """Frame 0 known; frames 1, 2 = frame 0 moved right by shift, 2*shift latent cells."""
    c = mg.get_spec(model).latent_channels(model)
    f, h, w = GRID
    src = torch.randn(batch, c, 1, h, w, generator=torch.Generator().manual_seed(seed))
    flows = torch.zeros(batch, f, 1, 2, h, w)
    for t in range(1, f):
        flows[:, t, 0, 0] = -shift * t
    weights = torch.ones(batch, f, 1, 1, h, w)
    return LatentGuidance.from_sources(src, torch.zeros(f, 1, dtype=torch.long), flows, weights,
                                       clip_index=[0], strength=strength)


def perturb(adapter, std=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def run(m, kw):
    with torch.no_grad():
        return m(**kw)[0]


def snapshot(m):
    """Everything remove must restore: parameters, buffers, module tree, hook attributes."""
    return (
        {k: v.clone() for k, v in m.state_dict().items()},
        [n for n, _ in m.named_modules()],
        [n for n, mod in m.named_modules() if hasattr(mod, "_diffusers_hook") or "forward" in mod.__dict__],
    )


def same_snapshot(a, b):
    return a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1:] == b[1:]


@pytest.mark.parametrize("name", ARCHS)
def test_noop_guided_remove(models, name):
    m, kw, base = models[name]
    before = snapshot(m)
    adapter = mg.apply_motion_guidance(m, MotionGuidanceConfig())
    try:
        assert adapter.latent is not None and len(adapter.gates) == 1  # first half of 2 blocks
        mg.set_guidance(m, make_guidance(m))
        # untrained (zero-init) adapters: the full path runs and changes nothing
        assert (run(m, kw) - base).abs().max() <= 1e-5
        perturb(adapter)
        guided = run(m, kw)
        assert (guided - base).abs().max() > 1e-3
        # strength 0: no-op
        mg.set_guidance(m, make_guidance(m, strength=0.0))
        assert (run(m, kw) - base).abs().max() <= 1e-5
        # guidance cleared: base model
        mg.set_guidance(m, None)
        assert torch.equal(run(m, kw), base)
        # same guidance with batch 2 (explicit) equals batch-1 broadcast
        g1, g2 = make_guidance(m), make_guidance(m, batch=1)
        g2 = LatentGuidance(g2.latents.repeat(2, 1, 1, 1, 1), g2.mask.repeat(2, 1, 1, 1, 1), g2.sources,
                            g2.flows.repeat(2, 1, 1, 1, 1, 1), g2.weights.repeat(2, 1, 1, 1, 1, 1))
        mg.set_guidance(m, g1)
        o1 = run(m, kw)
        mg.set_guidance(m, g2)
        assert torch.allclose(o1, run(m, kw), atol=1e-6)
        assert torch.allclose(o1, guided, atol=1e-6)
    finally:
        mg.remove_motion_guidance(m)
    assert torch.equal(run(m, kw), base)
    assert same_snapshot(before, snapshot(m))


@pytest.mark.parametrize("name", ARCHS)
def test_feature_and_latent_levels_each_act(models, name):
    m, kw, base = models[name]
    for cfg in (MotionGuidanceConfig(latent=False), MotionGuidanceConfig(feature=False)):
        adapter = mg.apply_motion_guidance(m, cfg)
        try:
            perturb(adapter, std=0.2)
            mg.set_guidance(m, make_guidance(m))
            assert (run(m, kw) - base).abs().max() > 1e-4, cfg
        finally:
            mg.remove_motion_guidance(m)
    # training-free: no new weights, the feature gate is the strength
    adapter = mg.apply_motion_guidance(m, MotionGuidanceConfig(mode="training_free", blocks=(0, -1)))
    try:
        assert not list(adapter.parameters()) and adapter.guided_blocks == (0, 1)
        mg.set_guidance(m, make_guidance(m, strength=0.0))
        assert (run(m, kw) - base).abs().max() <= 1e-5
        mg.set_guidance(m, make_guidance(m, strength=0.8))
        assert (run(m, kw) - base).abs().max() > 1e-3
    finally:
        mg.remove_motion_guidance(m)
    assert torch.equal(run(m, kw), base)


@pytest.mark.parametrize("name", ARCHS)
def test_save_load_round_trip(models, name, tmp_path):
    m, kw, base = models[name]
    adapter = mg.apply_motion_guidance(m, MotionGuidanceConfig(blocks=(0, 1), strength=0.7))
    try:
        perturb(adapter, seed=3)
        mg.set_guidance(m, make_guidance(m))
        guided = run(m, kw)
        assert (guided - base).abs().max() > 1e-3  # the adapter changes the output ...
        mg.save_motion_guidance(m, tmp_path / "ad")
    finally:
        mg.remove_motion_guidance(m)
    meta = json.loads((tmp_path / "ad" / "motion_guidance.json").read_text())
    assert meta["architecture"] == name and meta["config"]["strength"] == 0.7
    fresh = testing.build(name)  # same seed: same pretrained weights
    loaded = mg.load_motion_guidance(fresh, tmp_path / "ad")
    assert loaded.config.blocks == (0, 1)
    mg.set_guidance(fresh, make_guidance(fresh))
    assert torch.allclose(run(fresh, kw), guided, atol=1e-6)  # ... and the reload reproduces it
    mg.remove_motion_guidance(fresh)


def test_bad_usage(models, tmp_path):
    m, kw, base = models["WanTransformer3DModel"]
    with pytest.raises(MotionGuidanceError, match="no motion guidance is applied"):
        mg.remove_motion_guidance(m)
    with pytest.raises(MotionGuidanceError, match="apply_motion_guidance"):
        mg.set_guidance(m, make_guidance(m))
    with pytest.raises(ValueError, match="unsupported transformer class Linear; supported: CogVideoX"):
        mg.apply_motion_guidance(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="out of range"):
        mg.apply_motion_guidance(m, MotionGuidanceConfig(blocks=(5,)))
    assert not hasattr(m, "motion_guidance") and not hasattr(m, "_diffusers_hook")
    mg.apply_motion_guidance(m)
    try:
        with pytest.raises(MotionGuidanceError, match="already applied"):
            mg.apply_motion_guidance(m)
        with pytest.raises(ValueError, match="strength"):
            mg.set_guidance(m, make_guidance(m), strength=1.5)
        with pytest.raises(ValueError, match="channels"):
            g = make_guidance(m)
            mg.set_guidance(m, LatentGuidance(g.latents[:, :2], g.mask))
        # guidance grid differs from the model input grid
        mg.set_guidance(m, make_guidance(m))
        kw_other = testing.inputs(m, 2, (3, 8, 10))
        with pytest.raises(ValueError, match=r"latent grid \(F, h, w\) = \(3, 8, 10\)"):
            run(m, kw_other)
        # batch not divisible
        g = make_guidance(m)
        g3 = LatentGuidance(g.latents.repeat(3, 1, 1, 1, 1), g.mask.repeat(3, 1, 1, 1, 1))
        mg.set_guidance(m, g3)
        with pytest.raises(ValueError, match="not a multiple of the guidance batch 3"):
            run(m, kw)
        mg.set_guidance(m, make_guidance(m))
        mg.save_motion_guidance(m, tmp_path / "wan")
    finally:
        mg.remove_motion_guidance(m)
    # adapter saved for another architecture / another size
    cog = models["CogVideoXTransformer3DModel"][0]
    with pytest.raises(MotionGuidanceError, match="saved for WanTransformer3DModel, this model is CogVideoX"):
        mg.load_motion_guidance(cog, tmp_path / "wan")
    assert not hasattr(cog, "motion_guidance")
    bigger = testing.build("WanTransformer3DModel", channels=8)
    with pytest.raises(MotionGuidanceError, match="latent_channels: saved 4 vs model 8"):
        mg.load_motion_guidance(bigger, tmp_path / "wan")
    assert not hasattr(bigger, "motion_guidance") and not hasattr(bigger, "_diffusers_hook")
    with pytest.raises(FileNotFoundError, match="save_motion_guidance"):
        mg.load_motion_guidance(bigger, tmp_path / "nowhere")


def test_never_half_modified(models, monkeypatch):
    """A failure while attaching (here: the second block hook) leaves the model exactly as it was."""
    from motionguide import adapter as adapter_mod

    m, kw, base = models["HunyuanVideoTransformer3DModel"]
    before = snapshot(m)
    calls = {"n": 0}
    real = adapter_mod.FeatureGuidanceHook

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated failure mid-apply")
        return real(*a, **k)

    monkeypatch.setattr(adapter_mod, "FeatureGuidanceHook", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        mg.apply_motion_guidance(m, MotionGuidanceConfig(blocks=(0, 1)))
    assert same_snapshot(before, snapshot(m)) and not hasattr(m, "motion_guidance")
    assert torch.equal(run(m, kw), base)


def test_config_round_trip_and_validation():
    cfg = MotionGuidanceConfig(mode="training_free", blocks=[0, 2], strength=0.5, timestep_range=(0.5, 1.0),
                               vae=mg.VAECompression(1, 1, False))
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert MotionGuidanceConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        MotionGuidanceConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="mode"):
        MotionGuidanceConfig(mode="fancy")
    with pytest.raises(ValueError, match="strength"):
        MotionGuidanceConfig(strength=-0.1)
    with pytest.raises(ValueError, match="both False"):
        MotionGuidanceConfig(latent=False, feature=False)
    with pytest.raises(ValueError, match="timestep_range"):
        MotionGuidanceConfig(timestep_range=(0.8, 0.2))
    assert MotionGuidanceConfig().resolve_blocks(5) == (0, 1)
    assert MotionGuidanceConfig(blocks=(-1,)).resolve_blocks(5) == (4,)


def test_trainable_parameters_and_gradients(models):
    m, kw, base = models["WanTransformer3DModel"]
    adapter = mg.apply_motion_guidance(m)
    try:
        params = mg.trainable_parameters(m)
        assert {id(p) for p in params} == {id(p) for p in adapter.parameters()}
        assert sum(p.requires_grad for p in m.parameters()) == len(params)
        with_block = mg.trainable_parameters(m, blocks="guided")
        assert len(with_block) == len(params) + len(list(m.blocks[0].parameters()))
        mg.trainable_parameters(m)  # back to adapters only
        mg.set_guidance(m, make_guidance(m))
        out = m(**kw)[0]
        out.square().mean().backward()
        # zero-initialised weights still receive gradients (the path is live)
        assert adapter.latent.proj.weight.grad.abs().sum() > 0
        assert adapter.gates["0"].grad.abs().sum() > 0
    finally:
        mg.remove_motion_guidance(m)
        for p in m.parameters():
            p.requires_grad_(True)
            p.grad = None


def test_timestep_schedule(models):
    m, kw, base = models["LTXVideoTransformer3DModel"]
    adapter = mg.apply_motion_guidance(m, MotionGuidanceConfig(timestep_range=(0.8, 1.0)))
    try:
        perturb(adapter)
        mg.set_guidance(m, make_guidance(m))
        assert torch.equal(run(m, kw), base)  # inputs use t = 500 -> 0.5, outside [0.8, 1]
        kw_late = dict(kw, timestep=torch.full((2,), 900.0))
        assert adapter.state.timestep == 500.0 and not adapter.state.active
        run(m, kw_late)
        assert adapter.state.active
    finally:
        mg.remove_motion_guidance(m)


def test_lora_save_load(models, tmp_path):
    m = testing.build("WanTransformer3DModel")
    kw = testing.inputs(m, 2, GRID)
    base = run(m, kw)
    before = snapshot(m)
    assert not mg.has_motion_guidance(m)
    adapter = mg.apply_motion_guidance(m)
    assert mg.has_motion_guidance(m) and adapter.lora is None and adapter.trained_blocks == ()
    name = mg.add_lora(m, rank=2)
    assert adapter.lora == {"name": "motionguide_lora", "rank": 2, "alpha": 2, "blocks": [0], "targets":
                            ["to_q", "to_k", "to_v", "to_out.0"]}
    params = mg.trainable_parameters(m)
    assert any("lora_" in n for n, p in m.named_parameters() if p.requires_grad)
    assert len(params) > len(list(adapter.parameters()))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    mg.set_guidance(m, make_guidance(m))
    out = run(m, kw)
    assert (out - base).abs().max() > 1e-4
    mg.save_motion_guidance(m, tmp_path / "lora")
    fresh = testing.build("WanTransformer3DModel")
    mg.load_motion_guidance(fresh, tmp_path / "lora")
    mg.set_guidance(fresh, make_guidance(fresh))
    assert torch.allclose(run(fresh, kw), out, atol=1e-6)
    assert name == "motionguide_lora"
    mg.remove_motion_guidance(m)  # LoRA layers go too
    assert same_snapshot(before, snapshot(m)) and torch.equal(run(m, kw), base) and not mg.has_motion_guidance(m)


def test_guidance_context_sets_for_the_block_and_restores_the_previous_guidance(models):
    """``guidance_context`` guides the calls inside the block (as set_guidance), and afterwards restores the
    guidance that was set before it, also when the block raises."""
    m, kw, base = models["WanTransformer3DModel"]
    adapter = mg.apply_motion_guidance(m, MotionGuidanceConfig(mode="trained"))
    try:
        perturb(adapter)
        outer, inner = make_guidance(m, batch=2, seed=1), make_guidance(m, batch=2, seed=2, shift=3.0)
        mg.set_guidance(m, inner)
        want_inner = run(m, kw)
        mg.set_guidance(m, outer)
        want_outer = run(m, kw)
        assert not torch.allclose(want_inner, want_outer)
        with mg.guidance_context(m, inner) as lg:
            assert isinstance(lg, LatentGuidance)
            assert torch.equal(run(m, kw), want_inner)
        assert torch.equal(run(m, kw), want_outer)
        with pytest.raises(RuntimeError, match="inside"):
            with mg.guidance_context(m, None):
                assert torch.equal(run(m, kw), base)  # None inside: the base model
                raise RuntimeError("inside")
        assert torch.equal(run(m, kw), want_outer)
        with mg.guidance_context(m, inner, strength=0.0):
            assert torch.allclose(run(m, kw), base, atol=1e-5)
    finally:
        mg.remove_motion_guidance(m)
    with pytest.raises(MotionGuidanceError, match="no motion guidance is applied"):
        with mg.guidance_context(m, inner):
            pass
