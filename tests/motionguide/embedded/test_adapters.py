"""The embedded model's adapters and per-trust-level gates, and guided generation with them."""
from __future__ import annotations

import json

import pytest
import torch

import motionguide as mg
from motionguide.embedded.adapters import (
    GATE_SCALE,
    GATES_FILE,
    GuidanceGates,
    attach_adapters,
    load_adapters,
    save_adapters,
    trust_levels,
)
from motionguide.embedded.data import make_clip
from motionguide.embedded.generation import gate_maps, generate_guided, guided_reference_and_scale, latent_guidance_of
from motionguide.embedded.network import EmbeddedConfig, EmbeddedVideoModel
from motionguide.errors import CheckpointError
from motionguide.warping import flow_only, known_of, source_warps

TINY = dict(num_layers=2, num_heads=2, head_dim=12, ffn_dim=16, text_dim=8, freq_dim=16, steps=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()


def _constant_guidance(shift: float = 2.0, strength: float = 1.0, b: int = 1):
    """First frame known; frame k shows it moved right by shift*k px (backward flow -shift*k)."""
    torch.manual_seed(1)
    first = torch.rand(b, 3, 1, 32, 32)
    t = 8
    sources = torch.zeros(t, 1, dtype=torch.long)
    flows = torch.zeros(b, t, 1, 2, 32, 32)
    for k in range(t):
        flows[:, k, 0, 0] = -shift * k
    weights = torch.ones(b, t, 1, 1, 32, 32)
    return mg.Guidance(first, (0,), t, sources, flows, weights, 1.0, strength)


def test_untrained_adapters_are_a_no_op_and_strength_zero_is_exact(tiny, tmp_path):
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    g = _constant_guidance()
    base = generate_guided(model, g, warp=flow_only(g), mode="unguided", seed=0)
    attach_adapters(model)
    # zero-initialised adapters leave the model as it was (sampled from pure noise, start=1.0, like the base)
    assert torch.equal(generate_guided(model, g, warp=flow_only(g), mode="both", seed=0, start=1.0), base)
    # the default SDEdit-style start from the guided reference is a different sampler, so it differs
    assert not torch.equal(generate_guided(model, g, warp=flow_only(g), mode="both", seed=0), base)
    with torch.no_grad():
        for p in model.transformer.motion_guidance.parameters():
            p.normal_(0, 0.1)
        model.gates.reference_gate.fill_(0.02)
    guided = generate_guided(model, g, warp=flow_only(g), mode="both", seed=0)
    assert float((guided - base).abs().max()) > 1e-3  # trained adapters change the output
    zero = generate_guided(model, g.with_strength(0.0), warp=flow_only(g.with_strength(0.0)), mode="both", seed=0)
    assert float((zero - base).abs().max()) <= 1e-5
    assert torch.equal(generate_guided(model, g, warp=flow_only(g), mode="unguided", seed=0), base)
    # round trip: a fresh model with the saved adapters reproduces the guided output
    save_adapters(model, tmp_path / "ad")
    fresh = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    fresh.load_state_dict(tiny.state_dict())
    load_adapters(fresh, tmp_path / "ad")
    assert torch.allclose(generate_guided(fresh, g, warp=flow_only(g), mode="both", seed=0), guided, atol=1e-6)
    for m in ("latent", "feature"):
        assert generate_guided(fresh, g, warp=flow_only(g), mode=m, seed=0).shape == base.shape
    with pytest.raises(ValueError, match="training_free"):
        generate_guided(fresh, g, warp=flow_only(g), mode="training_free")
    with pytest.raises(CheckpointError, match="missing"):
        load_adapters(EmbeddedVideoModel(EmbeddedConfig(**TINY)), tmp_path / "none")


def test_guided_reference_follows_the_whole_warp_and_the_gates_round_trip(tiny, tmp_path):
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model)
    g = _constant_guidance()
    kf, known = known_of(g)
    static = EmbeddedVideoModel.reference(kf * 2 - 1, known)
    warp = flow_only(g) * 2 - 1
    lg = latent_guidance_of(g, strength=1.0)
    with torch.no_grad():
        model.gates.reference_gate.fill_(1.0 / GATE_SCALE)  # gate 1: the reference is the flow-only warp itself
    ref, scale, warp01 = guided_reference_and_scale(model, g, lg, static, 1.0, flow_only(g))
    assert torch.allclose(ref, warp, atol=1e-6) and torch.allclose(warp01 * 2 - 1, warp)
    assert torch.equal(scale, torch.ones_like(scale))  # a zero correction gate damps nothing
    assert torch.equal(guided_reference_and_scale(model, g, lg, static, 0.0, flow_only(g))[0], static)
    # per-pixel gates by trust level (none, one source, two+): all warp where one source sees the pixel,
    # all static where none does
    wts = g.weights.clone()
    wts[..., :16] = 0.0
    half = mg.Guidance(g.frames, g.positions, g.num_frames, g.sources, g.flows, wts, 1.0, 1.0)
    lg_half = latent_guidance_of(half)
    assert set(trust_levels(lg_half)[:, :, 1:].unique().tolist()) == {0, 1}
    with torch.no_grad():
        model.gates.reference_gate.copy_(torch.tensor([0.0, 1.0 / GATE_SCALE, 0.0]))
    ref = guided_reference_and_scale(model, half, lg_half, static, 1.0, flow_only(half))[0]
    warp_half = flow_only(half) * 2 - 1
    unknown = ~known[0]
    assert torch.allclose(ref[:, :, unknown, :, 16:], warp_half[:, :, unknown, :, 16:], atol=1e-6)
    assert torch.allclose(ref[:, :, unknown, :, :16], static[:, :, unknown, :, :16], atol=1e-6)
    save_adapters(model, tmp_path / "ad")
    assert sorted(json.loads((tmp_path / "ad" / "manifest.json").read_text())["files"]) == sorted(
        ["motion_guidance.safetensors", "motion_guidance.json", GATES_FILE])
    fresh = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    load_adapters(fresh, tmp_path / "ad")
    assert torch.equal(fresh.gates.reference_gate, model.gates.reference_gate)
    assert sorted(fresh.gates.state_dict()) == ["correction_gate", "reference_gate"]  # no per-pixel head
    assert not any("lora" in n for n, _ in fresh.transformer.named_parameters())  # the embedded model has no LoRA
    # a folder whose gates carry a head this version does not have, or a LoRA, is refused untouched
    from safetensors.torch import load_file

    gates = load_file(str(tmp_path / "ad" / GATES_FILE))
    _write_gates(tmp_path / "ad", {**gates, "blend_head.net.0.weight": torch.zeros(24, 15, 3, 3)})
    other = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    with pytest.raises(CheckpointError, match="do not match"):
        load_adapters(other, tmp_path / "ad")
    assert getattr(other.transformer, "motion_guidance", None) is None and other.gates is None
    _write_gates(tmp_path / "ad", gates)
    meta = json.loads((tmp_path / "ad" / "motion_guidance.json").read_text())
    (tmp_path / "ad" / "motion_guidance.json").write_text(json.dumps({**meta, "lora": {"rank": 16}}))
    manifest = json.loads((tmp_path / "ad" / "manifest.json").read_text())
    manifest["files"].pop("motion_guidance.json")
    (tmp_path / "ad" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="carry a LoRA"):
        load_adapters(other, tmp_path / "ad")
    assert getattr(other.transformer, "motion_guidance", None) is None and other.gates is None


def _write_gates(folder, gates: dict) -> None:
    """Overwrite an adapter folder's gate file with ``gates`` and its checksum in the manifest, so that the
    loader reaches its own checks (a deliberately wrong but intact file)."""
    import hashlib

    from safetensors.torch import save_file

    gate_file = folder / "gates.safetensors"
    save_file(gates, str(gate_file))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["gates.safetensors"] = hashlib.sha256(gate_file.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_refused_adapters_leave_the_model_untouched(tiny, tmp_path):
    """Gates of the wrong size, or missing, or carrying a per-pixel gate head, are refused before the plugin
    touches the transformer; a model that already carries adapters is refused too."""
    from safetensors.torch import load_file

    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model)
    save_adapters(model, tmp_path / "ad")
    good = load_file(str(tmp_path / "ad" / GATES_FILE))
    fresh = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    for bad in ({**good, "reference_gate": torch.zeros(2)}, {k: v for k, v in good.items() if k != "correction_gate"}):
        _write_gates(tmp_path / "ad", bad)
        with pytest.raises(CheckpointError, match="do not match this version's GuidanceGates"):
            load_adapters(fresh, tmp_path / "ad")
        assert getattr(fresh.transformer, "motion_guidance", None) is None and fresh.gates is None
    # a folder saved with a per-pixel gate head (the tensors of the head this version does not have)
    head = {"gate_head.net.0.weight": torch.zeros(24, 14, 3, 3), "gate_head.net.0.bias": torch.zeros(24),
            "gate_head.net.2.weight": torch.zeros(24, 24, 3, 3), "gate_head.net.2.bias": torch.zeros(24),
            "gate_head.net.4.weight": torch.zeros(2, 24, 3, 3), "gate_head.net.4.bias": torch.zeros(2)}
    _write_gates(tmp_path / "ad", {**good, **head})
    with pytest.raises(CheckpointError, match="carry a per-pixel gate head") as e:
        load_adapters(fresh, tmp_path / "ad")
    msg = str(e.value)
    assert "6 gate_head.* tensors" in msg  # what came
    assert "only reference_gate and correction_gate" in msg  # what is expected
    assert "motionguide train adapters" in msg and "without its gate_head.* tensors" in msg  # how to fix
    assert getattr(fresh.transformer, "motion_guidance", None) is None and fresh.gates is None
    assert not any("motion_guidance" in n for n, _ in fresh.transformer.named_parameters())
    _write_gates(tmp_path / "ad", good)  # the fix it names: the same gates without the head's tensors
    load_adapters(fresh, tmp_path / "ad")  # the same folder, mended, loads into the untouched model
    assert fresh.transformer.motion_guidance is not None and fresh.gates.reference_gate.numel() == 3
    with pytest.raises(mg.MotionGuidanceError, match="already carries"):
        load_adapters(fresh, tmp_path / "ad")


def test_gate_maps_are_the_per_level_lookup(tiny):
    """Each pixel gets the reference and correction gate of its trust level, and they move the output."""

    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model)
    with torch.no_grad():
        model.gates.reference_gate.copy_(torch.tensor([0.01, 0.04, 0.02]))
        model.gates.correction_gate.copy_(torch.tensor([0.0, 0.03, 0.01]))
    g = _constant_guidance()
    wts = g.weights.clone()
    wts[..., :16] = 0.0  # the left half: no source sees it
    half = mg.Guidance(g.frames, g.positions, g.num_frames, g.sources, g.flows, wts, 1.0, 1.0)
    lg = latent_guidance_of(half)
    ref, corr = gate_maps(model.gates, lg)
    levels = trust_levels(lg)
    assert ref.shape == corr.shape == levels.shape == (1, 1, 8, 32, 32)
    assert torch.equal(ref, GATE_SCALE * model.gates.reference_gate[levels])
    assert torch.equal(corr, GATE_SCALE * model.gates.correction_gate[levels])
    unknown = ~known_of(half)[1][0]
    assert bool((ref[:, :, unknown, :, :16] == GATE_SCALE * 0.01).all())
    assert bool((ref[:, :, unknown, :, 16:] == GATE_SCALE * 0.04).all())
    before = generate_guided(model, g, warp=flow_only(g), mode="both", seed=0)
    with torch.no_grad():
        model.gates.reference_gate.mul_(2.0)
    assert float((generate_guided(model, g, warp=flow_only(g), mode="both", seed=0) - before).abs().max()) > 1e-3


def test_trust_levels_count_the_sources_that_see_a_pixel():

    g = _constant_guidance()
    two = mg.Guidance(g.frames, g.positions, g.num_frames, torch.zeros(8, 2, dtype=torch.long),
                      g.flows.expand(-1, -1, 2, -1, -1, -1).clone(), torch.full((1, 8, 2, 1, 32, 32), 0.5), 1.0, 1.0)
    assert bool((trust_levels(latent_guidance_of(two)) == 2).all())
    assert bool((trust_levels(latent_guidance_of(g)) == 1).all())
    # the latent level alone has no per-source weights: the mask decides (1 where trusted)
    assert bool((trust_levels(latent_guidance_of(g, feature=False)) == 1).all())


def test_training_free_mode(tiny):
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model, mode="training_free")
    g = _constant_guidance()
    base = generate_guided(model, g, warp=flow_only(g), mode="unguided", seed=0)
    assert float((generate_guided(model, g, warp=flow_only(g), mode="training_free", seed=0) - base).abs().max()) > 1e-3
    assert float((generate_guided(model, g.with_strength(0.0), warp=flow_only(g.with_strength(0.0)), mode="training_free", seed=0) - base).abs().max()) <= 1e-5
    with pytest.raises(ValueError, match="adapters"):
        generate_guided(tiny, g, warp=flow_only(g), mode="both")


def test_flow_only_is_the_warp():
    g = _constant_guidance(shift=2.0)
    out = flow_only(g)
    first = g.frames[:, :, 0]
    # frame 3 shows the first frame moved right by 6 px (columns >= 6 are exact copies)
    assert torch.allclose(out[:, :, 3, :, 6:], first[:, :, :, :-6], atol=1e-5)
    assert torch.equal(out[:, :, 0], first)



@pytest.mark.parametrize("name", ["motion_guidance.safetensors", GATES_FILE])
def test_a_non_safetensors_file_whose_checksum_matches_is_one_line_model_untouched(tiny, tmp_path, name):
    """A pickle (or any other file) put in an adapter folder, its checksum written into the manifest, is refused
    by the one safe reader in one line before the model is touched: the payload never runs."""
    import hashlib
    import os

    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    attach_adapters(model)
    save_adapters(model, tmp_path / "ad")
    ran = tmp_path / "payload_ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {ran}",))

    torch.save({"w": Evil()}, tmp_path / "ad" / name)
    manifest = json.loads((tmp_path / "ad" / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((tmp_path / "ad" / name).read_bytes()).hexdigest()
    (tmp_path / "ad" / "manifest.json").write_text(json.dumps(manifest))
    fresh = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    with pytest.raises(CheckpointError) as e:
        load_adapters(fresh, tmp_path / "ad")
    msg = str(e.value)
    assert "\n" not in msg and f"{name}: expected a .safetensors file, got a torch zip checkpoint" in msg
    assert "motionguide train adapters" in msg and "weights_only" not in msg
    assert not ran.exists()
    assert getattr(fresh.transformer, "motion_guidance", None) is None and fresh.gates is None
