"""The embedded model: config, conditioning, sampler, checkpoints (shipped, corrupt, missing), adapters."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import motionguide as mg
from motionguide.model import (
    DEFAULT_ASSETS,
    CheckpointError,
    EmbeddedConfig,
    EmbeddedVideoModel,
    attach_adapters,
    flow_only,
    generate_guided,
    load_adapters,
    load_embedded,
    save_adapters,
    save_embedded,
)

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


def test_config_validation_and_round_trip():
    cfg = EmbeddedConfig(**TINY)
    assert EmbeddedConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="divisible"):
        EmbeddedConfig(height=30)
    with pytest.raises(ValueError, match="head_dim"):
        EmbeddedConfig(head_dim=7)
    with pytest.raises(ValueError, match="unknown"):
        EmbeddedConfig.from_dict({"layers": 3})


def test_reference_is_nearest_known_frame():
    x = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(1, 3, 5, 2, 2)
    known = torch.tensor([[True, False, False, True, False]])
    ref = EmbeddedVideoModel.reference(x, known)
    assert ref[0, 0, :, 0, 0].tolist() == [0.0, 0.0, 3.0, 3.0, 3.0]  # ties go to the earlier frame
    with pytest.raises(ValueError, match="known frame"):
        EmbeddedVideoModel.reference(x, torch.zeros(1, 5, dtype=torch.bool))


def test_generate_keeps_known_frames_and_is_seeded(tiny):
    clip = torch.rand(2, 3, 8, 32, 32)
    known = torch.zeros(2, 8, dtype=torch.bool)
    known[:, 0] = True
    known[1, 7] = True
    a = tiny.generate(clip, known, seed=3)
    assert a.shape == clip.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.allclose(a[:, :, 0], clip[:, :, 0], atol=1e-6) and torch.allclose(a[1, :, 7], clip[1, :, 7], atol=1e-6)
    assert torch.equal(a, tiny.generate(clip, known, seed=3))
    assert not torch.equal(a, tiny.generate(clip, known, seed=4))
    with pytest.raises(ValueError, match="T, H, W"):
        tiny.generate(torch.rand(1, 3, 4, 32, 32), known[:1, :4])


def test_loss_is_finite_and_differentiable(tiny):
    clip = torch.rand(2, 3, 8, 32, 32)
    known = EmbeddedVideoModel.draw_known(2, 8, torch.Generator().manual_seed(0))
    loss = tiny.loss(clip, known, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and tiny.transformer.proj_out.weight.grad is not None
    tiny.zero_grad()


def test_matched_batches_noise_the_given_clip_at_times_in_range(tiny, monkeypatch):
    """Train as you sample: with ``noised`` the network sees that clip noised (the guided reference where
    guided sampling starts), at t drawn in ``t_range``; the target stays the true clip."""
    clip = torch.rand(2, 3, 8, 32, 32)
    ref = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    known = torch.zeros(2, 8, dtype=torch.bool)
    known[:, 0] = True
    seen = {}

    def spy(x_t, t, known_frames, known, ref=None, out_scale=None):
        seen["x_t"], seen["t"] = x_t, t
        return torch.zeros_like(x_t)

    monkeypatch.setattr(tiny, "denoise", spy)
    loss = tiny.loss(clip, known, generator=torch.Generator().manual_seed(0), ref=ref, noised=ref, t_range=(0.1, 0.1))
    assert torch.allclose(seen["t"], torch.full((2,), 0.1))
    noise = (seen["x_t"] - 0.9 * ref) / 0.1  # what is left is unit gaussian noise, not the true clip
    assert abs(float(noise.std()) - 1) < 0.05 and abs(float(noise.mean())) < 0.05
    # target: the true clip, in the velocity form ((x0_hat - x0) / t)^2 with x0_hat = 0 here
    assert torch.allclose(loss, (((clip * 2 - 1) / 0.1) ** 2).mean(), rtol=1e-5)
    loss = tiny.loss(clip, known, generator=torch.Generator().manual_seed(0), noised=ref, t_range=(0.05, 0.3))
    assert float(seen["t"].min()) >= 0.05 and float(seen["t"].max()) <= 0.3
    # PSNR loss: mean log MSE over the unknown frames only (frame 0 is known and left out)
    loss = tiny.loss(clip, known, generator=torch.Generator().manual_seed(0), noised=ref, frame_psnr=True)
    per_frame = ((clip * 2 - 1) ** 2).mean(dim=(1, 3, 4))[:, 1:]
    assert torch.allclose(loss, torch.log(per_frame + 1e-6).mean(), rtol=1e-5)


def test_edm_denoiser_keeps_the_input_at_low_noise_and_the_reference_at_full_noise():
    """EDM preconditioning of the residual over ``ref``: ``t -> 0`` gives ``x_t`` itself whatever the network
    says (detail passes through), ``t = 1`` gives ``ref + s * F`` (the network alone)."""
    torch.manual_seed(0)
    m = EmbeddedVideoModel(EmbeddedConfig(**TINY, prediction="edm", residual_std=0.5)).eval()
    torch.nn.init.normal_(m.transformer.proj_out.weight, std=0.5)  # a network output far from zero
    x = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    known = torch.zeros(1, 8, dtype=torch.bool)
    known[:, 0] = True
    with torch.no_grad():
        low = m.denoise(x, torch.tensor([1e-6]), x, known)
        ref = EmbeddedVideoModel.reference(x, known)
        high = m.denoise(x, torch.tensor([1.0]), x, known)
    assert torch.allclose(low, x, atol=1e-4)
    c_skip, c_out = m.precond(torch.tensor([1.0]))
    assert float(c_skip) == pytest.approx(0.0) and float(c_out) == pytest.approx(0.5)
    assert not torch.allclose(high, ref, atol=1e-3)
    loss = m.loss((x[:, :, :] + 1) / 2, known, generator=torch.Generator().manual_seed(0), t_max=0.6)
    assert torch.isfinite(loss)


def test_save_load_round_trip_and_corrupt_checkpoint(tiny, tmp_path):
    folder = save_embedded(tiny, tmp_path / "m")
    back = load_embedded(folder)
    clip = torch.rand(1, 3, 8, 32, 32)
    known = torch.zeros(1, 8, dtype=torch.bool)
    known[:, 0] = True
    assert torch.allclose(tiny.generate(clip, known), back.generate(clip, known), atol=1e-5)
    # corrupt weights: caught by the manifest checksum, with the folder in the message
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    w = bad / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:-64] + b"\0" * 64)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_embedded(bad)
    # truncated file without a manifest: safetensors fails to read it, reported the same way
    (bad / "manifest.json").unlink()
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_embedded(bad)
    with pytest.raises(CheckpointError, match="missing"):
        load_embedded(tmp_path / "nowhere")


def test_shipped_checkpoint_loads_and_generates():
    model = load_embedded()  # assets/embedded/base, checked against its manifest
    manifest = json.loads((DEFAULT_ASSETS / "base" / "manifest.json").read_text())
    assert manifest["class"] == "WanTransformer3DModel"
    cfg = model.config
    clip = torch.rand(1, 3, cfg.num_frames, cfg.height, cfg.width)
    known = torch.zeros(1, cfg.num_frames, dtype=torch.bool)
    known[:, 0] = True
    out = model.generate(clip, known, steps=2)
    assert out.shape == clip.shape and torch.isfinite(out).all()
    total = sum(p.stat().st_size for p in DEFAULT_ASSETS.parent.rglob("*") if p.is_file())
    assert total <= 20 * 2**20  # issue 5: shipped weights at most 20 MB
    # the shipped adapters carry every learned part the recipe trains, and extend with them (fill source too)
    from motionguide.model import BlendHead, FusionHead, GateHead

    load_adapters(model)
    assert isinstance(model.gate_head, GateHead) and isinstance(model.blend_head, BlendHead)
    assert isinstance(model.fusion_head, FusionHead)
    from flow.estimators import get_estimator
    from motionguide.data import make_clip

    frames = make_clip(7, split="heldout", num_frames=8).frames.permute(1, 0, 2, 3)[None]
    g = mg.extension(frames[:, :, :4], 4, estimator=get_estimator("dis"))
    assert g.sources[4:].tolist() == [[3, 0]] * 4
    out = generate_guided(model, g, mode="both", seed=0, steps=4)
    assert out.shape == frames.shape and torch.isfinite(out).all()
    assert torch.allclose(out[:, :, :4], frames[:, :, :4], atol=1e-5)  # the input frames stay (to rounding)


def test_untrained_adapters_are_a_no_op_and_strength_zero_is_exact(tiny, tmp_path):
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    g = _constant_guidance()
    base = generate_guided(model, g, mode="unguided", seed=0)
    attach_adapters(model)
    # zero-initialised adapters leave the model as it was (sampled from pure noise, start=1.0, like the base)
    assert torch.equal(generate_guided(model, g, mode="both", seed=0, start=1.0), base)
    # the default SDEdit-style start from the guided reference is a different sampler, so it differs
    assert not torch.equal(generate_guided(model, g, mode="both", seed=0), base)
    with torch.no_grad():
        for p in model.transformer.motion_guidance.parameters():
            p.normal_(0, 0.1)
        for n, p in model.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
        model.prior_gate.fill_(0.02)
    guided = generate_guided(model, g, mode="both", seed=0)
    assert float((guided - base).abs().max()) > 1e-3  # trained adapters change the output
    zero = generate_guided(model, g.with_strength(0.0), mode="both", seed=0)
    assert float((zero - base).abs().max()) <= 1e-5
    assert torch.equal(generate_guided(model, g, mode="unguided", seed=0), base)
    # round trip: a fresh model with the saved adapters reproduces the guided output
    save_adapters(model, tmp_path / "ad")
    fresh = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    fresh.load_state_dict(tiny.state_dict())
    load_adapters(fresh, tmp_path / "ad")
    assert torch.allclose(generate_guided(fresh, g, mode="both", seed=0), guided, atol=1e-6)
    for m in ("latent", "feature"):
        assert generate_guided(fresh, g, mode=m, seed=0).shape == base.shape
    with pytest.raises(ValueError, match="training_free"):
        generate_guided(fresh, g, mode="training_free")
    with pytest.raises(CheckpointError, match="missing"):
        load_adapters(EmbeddedVideoModel(EmbeddedConfig(**TINY)), tmp_path / "none")


def test_guided_reference_follows_the_whole_warp_and_prior_kind_round_trips(tiny, tmp_path):
    from motionguide.model import PRIOR_SCALE, guided_reference, known_of, latent_guidance_of, trust_levels

    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model)
    assert model.prior_kind == "warp"
    g = _constant_guidance()
    kf, known = known_of(g)
    static = EmbeddedVideoModel.reference(kf * 2 - 1, known)
    warp = flow_only(g) * 2 - 1
    lg = latent_guidance_of(g, strength=1.0)
    with torch.no_grad():
        model.prior_gate.fill_(1.0 / PRIOR_SCALE)  # gate 1: the reference is the flow-only warp itself
    assert torch.allclose(guided_reference(model, static, lg, 1.0, warp), warp, atol=1e-6)
    assert torch.equal(guided_reference(model, static, lg, 0.0, warp), static)
    with pytest.raises(ValueError, match="flow_only"):
        guided_reference(model, static, lg, 1.0)
    # per-pixel gates by trust level (none, one source, two+): all warp where one source sees the pixel,
    # all static where none does
    wts = g.weights.clone()
    wts[..., :16] = 0.0
    lg_half = latent_guidance_of(mg.Guidance(g.frames, g.positions, g.num_frames, g.sources, g.flows, wts, 1.0, 1.0))
    assert set(trust_levels(lg_half)[:, :, 1:].unique().tolist()) == {0, 1}
    with torch.no_grad():
        model.prior_gate.copy_(torch.tensor([0.0, 1.0 / PRIOR_SCALE, 0.0]))
    ref = guided_reference(model, static, lg_half, 1.0, warp)
    unknown = ~known[0]
    assert torch.allclose(ref[:, :, unknown, :, 16:], warp[:, :, unknown, :, 16:], atol=1e-6)
    assert torch.allclose(ref[:, :, unknown, :, :16], static[:, :, unknown, :, :16], atol=1e-6)
    save_adapters(model, tmp_path / "ad")
    assert json.loads((tmp_path / "ad" / "manifest.json").read_text())["prior_kind"] == "warp"
    fresh = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    load_adapters(fresh, tmp_path / "ad")
    assert fresh.prior_kind == "warp" and torch.equal(fresh.prior_gate, model.prior_gate)
    # adapters written before the field existed follow the masked latent guidance, as they were trained
    manifest = json.loads((tmp_path / "ad" / "manifest.json").read_text())
    del manifest["prior_kind"]
    (tmp_path / "ad" / "manifest.json").write_text(json.dumps(manifest))
    old = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    load_adapters(old, tmp_path / "ad")
    assert old.prior_kind == "masked"


def _write_gates(folder, gates: dict) -> None:
    """Overwrite an adapter folder's gate file with ``gates`` and its checksum in the manifest, so that the
    loader reaches its own checks (a deliberately wrong but intact file)."""
    import hashlib

    from safetensors.torch import save_file

    gate_file = folder / "reference_gate.safetensors"
    save_file(gates, str(gate_file))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["reference_gate.safetensors"] = hashlib.sha256(gate_file.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _check_noop_round_trip_and_refusal(tiny, tmp_path, model, g, guided, prefix: str, match: str):
    """For adapters carrying a trained head: strength 0 is still the unguided model, save/load gives the same
    ``guided`` output, and a head of another shape (``prefix + "net.0.weight"`` replaced) is refused before
    the transformer is touched. Returns the reloaded model."""
    from safetensors.torch import load_file

    unguided = generate_guided(model, g, mode="unguided", seed=0)
    assert float((generate_guided(model, g.with_strength(0.0), mode="both", seed=0) - unguided).abs().max()) <= 1e-5
    save_adapters(model, tmp_path / "ad")
    fresh = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    fresh.load_state_dict(tiny.state_dict())
    load_adapters(fresh, tmp_path / "ad")
    assert torch.allclose(generate_guided(fresh, g, mode="both", seed=0), guided, atol=1e-6)
    gates = load_file(str(tmp_path / "ad" / "reference_gate.safetensors"))
    gates[prefix + "net.0.weight"] = torch.zeros(24, 5, 3, 3)
    _write_gates(tmp_path / "ad", gates)
    other = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    with pytest.raises(CheckpointError, match=match):
        load_adapters(other, tmp_path / "ad")
    assert getattr(other.transformer, "motion_guidance", None) is None and not hasattr(other, "prior_gate")
    return fresh


def test_refused_adapters_leave_the_model_untouched(tiny, tmp_path):
    """Wrong gate sizes or an unknown prior_kind are refused before the plugin touches the transformer."""
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model)
    save_adapters(model, tmp_path / "ad")
    _write_gates(tmp_path / "ad", {"prior_gate": torch.zeros(2), "correction_gate": torch.zeros(2)})
    fresh = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    with pytest.raises(CheckpointError, match="_gate has 2 values, expected 1 or one per trust level"):
        load_adapters(fresh, tmp_path / "ad")
    assert getattr(fresh.transformer, "motion_guidance", None) is None and not hasattr(fresh, "prior_gate")
    _write_gates(tmp_path / "ad", {"prior_gate": torch.zeros(3), "correction_gate": torch.zeros(3)})
    manifest = json.loads((tmp_path / "ad" / "manifest.json").read_text())
    manifest["prior_kind"] = "sideways"
    (tmp_path / "ad" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="unknown prior_kind 'sideways'"):
        load_adapters(fresh, tmp_path / "ad")
    assert getattr(fresh.transformer, "motion_guidance", None) is None
    manifest["prior_kind"] = "warp"
    (tmp_path / "ad" / "manifest.json").write_text(json.dumps(manifest))
    load_adapters(fresh, tmp_path / "ad")  # the same folder, mended, loads into the untouched model
    assert fresh.transformer.motion_guidance is not None and fresh.prior_gate.numel() == 3


def test_gate_features_mark_samples_outside_the_frame_and_the_distance_to_the_source():
    from motionguide.model import GateHead, gate_features, known_of, latent_guidance_of

    g = _constant_guidance(shift=2.0)  # frame k samples the first frame 2k px to the left
    kf, known = known_of(g)
    static = EmbeddedVideoModel.reference(kf * 2 - 1, known)
    warp = flow_only(g) * 2 - 1
    f = gate_features(static, warp, latent_guidance_of(g))
    assert f.shape == (1, GateHead.IN_CHANNELS, 8, 32, 32)
    outside, dist = f[:, 10], f[:, 13]
    for k in range(8):
        # x - 2k < -0.5: the first 2k columns fall outside the source frame
        assert torch.equal(outside[0, k], (torch.arange(32) < 2 * k).float().expand(32, 32)), k
        assert torch.allclose(dist[0, k], torch.full((32, 32), k / 8))
    assert torch.allclose(f[:, 11], g.flows[:, :, 0, 0] / 8)  # x flow / 8
    assert bool((f[:, 7:10].sum(1) == 1).all()) and bool((f[:, 8] == 1).all())  # one-hot: one source everywhere
    # the first source that exists is used, whichever slot it sits in
    sources = torch.stack([torch.full((8,), -1), torch.zeros(8, dtype=torch.long)], 1)
    flows = torch.cat([torch.full_like(g.flows, 5.0), g.flows], 2)
    weights = torch.cat([torch.zeros_like(g.weights), g.weights], 2)
    moved = mg.Guidance(g.frames, g.positions, g.num_frames, sources, flows, weights, 1.0, 1.0)
    assert torch.equal(gate_features(static, warp, latent_guidance_of(moved))[:, 10:14], f[:, 10:14])


def test_gate_head_starts_neutral_changes_the_output_when_trained_and_round_trips(tiny, tmp_path):
    """A fresh head (zero last layer) leaves the per-level gates exactly as they were; a trained one moves
    them per pixel, strength 0 is still the unguided model, and save/load keeps it."""
    from motionguide.model import GateHead, gate_maps, known_of, latent_guidance_of

    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model)
    assert isinstance(model.gate_head, GateHead)
    with torch.no_grad():
        for n, prm in model.transformer.named_parameters():
            if "lora_B" in n:
                prm.normal_(0, 0.05)
        model.prior_gate.copy_(torch.tensor([0.01, 0.04, 0.04]))
        model.correction_gate.copy_(torch.tensor([0.0, 0.03, 0.03]))
    g = _constant_guidance()
    kf, known = known_of(g)
    static = EmbeddedVideoModel.reference(kf * 2 - 1, known)
    warp = flow_only(g) * 2 - 1
    lg = latent_guidance_of(g)
    with_head = gate_maps(model, static, lg, warp)
    head, model.gate_head = model.gate_head, None
    without = gate_maps(model, static, lg, warp)
    before = generate_guided(model, g, mode="both", seed=0)
    model.gate_head = head
    assert all(torch.equal(a, b) for a, b in zip(with_head, without))
    assert torch.equal(generate_guided(model, g, mode="both", seed=0), before)
    with pytest.raises(ValueError, match="per-pixel head"):
        gate_maps(model, None, lg, warp)
    with torch.no_grad():
        for prm in model.gate_head.parameters():
            prm.normal_(0, 0.2)
    guided = generate_guided(model, g, mode="both", seed=0)
    assert float((guided - before).abs().max()) > 1e-3
    _check_noop_round_trip_and_refusal(tiny, tmp_path, model, g, guided, "gate_head.", "gate head does not match")


def test_trust_levels_count_the_sources_that_see_a_pixel():
    from motionguide.model import latent_guidance_of, trust_levels

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
    base = generate_guided(model, g, mode="unguided", seed=0)
    assert float((generate_guided(model, g, mode="training_free", seed=0) - base).abs().max()) > 1e-3
    assert float((generate_guided(model, g.with_strength(0.0), mode="training_free", seed=0) - base).abs().max()) <= 1e-5
    with pytest.raises(ValueError, match="adapters"):
        generate_guided(tiny, g, mode="both")


def test_flow_only_is_the_warp():
    g = _constant_guidance(shift=2.0)
    out = flow_only(g)
    first = g.frames[:, :, 0]
    # frame 3 shows the first frame moved right by 6 px (columns >= 6 are exact copies)
    assert torch.allclose(out[:, :, 3, :, 6:], first[:, :, :, :-6], atol=1e-5)
    assert torch.equal(out[:, :, 0], first)


def _between_guidance():
    """Keyframes 0, 3, 7 of a held-out clip with DIS flow: six in-betweens with two sources each, and truth."""
    from flow.estimators import get_estimator
    from motionguide.data import make_clip

    clip = make_clip(3, split="heldout", num_frames=8)
    frames = clip.frames.permute(1, 0, 2, 3)[None]
    return mg.keyframes(frames[:, :, [0, 3, 7]], [0, 3, 7], 8, estimator=get_estimator("dis")), frames


def test_blend_head_starts_as_flow_only_and_round_trips(tiny, tmp_path):
    """A fresh blend head blends exactly as flow-only warping; a trained one changes the guided reference (not
    frames with one source, not strength 0), and save/load keeps it; a wrong one is refused untouched."""
    from motionguide.model import BlendHead, blend_features, source_warps

    g, truth = _between_guidance()
    head = BlendHead()
    assert torch.allclose(flow_only(g, head), flow_only(g), atol=1e-5)
    srcs = source_warps(g, 1)
    assert len(srcs) == 2 and srcs[0][0].shape == (1, 3, 32, 32)
    warps, weights, flows = (torch.stack(x, 1) for x in zip(*srcs))
    assert blend_features(warps, weights, flows).shape == (1, BlendHead.IN_CHANNELS, 32, 32)
    with pytest.raises(ValueError, match="BlendHead expects"):
        head(torch.zeros(1, 3, 32, 32))
    one_source = _constant_guidance()
    with torch.no_grad():
        for prm in head.parameters():
            prm.normal_(0, 0.3)
    head.requires_grad_(False)
    assert torch.equal(flow_only(one_source, head), flow_only(one_source))  # no frame has two sources
    moved = flow_only(g, head)
    assert float((moved - flow_only(g)).abs().max()) > 1e-3
    assert torch.equal(moved[:, :, [0, 3, 7]], truth[:, :, [0, 3, 7]])  # known frames stay as they are

    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model)
    with torch.no_grad():
        model.prior_gate.copy_(torch.tensor([0.01, 0.04, 0.04]))
    before = generate_guided(model, g, mode="both", seed=0)
    model.blend_head = head
    guided = generate_guided(model, g, mode="both", seed=0)
    assert float((guided - before).abs().max()) > 1e-4
    fresh = _check_noop_round_trip_and_refusal(tiny, tmp_path, model, g, guided, "blend_head.", "blend head does not match")
    assert isinstance(fresh.blend_head, BlendHead)


def test_fusion_head_fuses_continuation_frames_only_and_round_trips(tiny, tmp_path):
    """A fresh fusion head keeps 98 % of the output; a trained one moves only the frames after the last known
    one, never at strength 0, and save/load keeps it; a wrong one is refused untouched."""
    from motionguide.model import FusionHead, continuation_frames, fusion_features, fusion_inputs

    g = _constant_guidance()  # frame 0 known, frames 1-7 continue from it
    assert [t for t, _ in continuation_frames(g)] == list(range(1, 8))
    between, _ = _between_guidance()
    assert continuation_frames(between) == []  # in-betweens only: nothing to fuse
    out = torch.rand(1, 3, 8, 32, 32)
    warp = flow_only(g)
    frames, x = fusion_inputs(g, out, warp)
    assert frames == list(range(1, 8)) and x[0].shape == (7, 3, 32, 32) and x[4].tolist() == list(range(1, 8))
    assert fusion_features(*x).shape == (7, FusionHead.IN_CHANNELS, 32, 32)
    head = FusionHead().requires_grad_(False)
    fused = head.fuse(*x)
    assert torch.allclose(fused, x[0] + (1 - torch.sigmoid(torch.tensor(4.0))) * (x[1] - x[0]), atol=1e-5)
    assert torch.equal(head.fuse(*x, strength=0.0), x[0].clamp(0, 1))
    with pytest.raises(ValueError, match="FusionHead expects"):
        head(torch.zeros(1, 3, 32, 32))

    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    model.load_state_dict(tiny.state_dict())
    attach_adapters(model)
    with torch.no_grad():
        model.prior_gate.copy_(torch.tensor([0.01, 0.04, 0.04]))
        for prm in head.parameters():
            prm.normal_(0, 0.3)
    before, latent = (generate_guided(model, g, mode=m, seed=0) for m in ("both", "latent"))
    model.fusion_head = head
    guided = generate_guided(model, g, mode="both", seed=0)
    assert float((guided[:, :, 1:] - before[:, :, 1:]).abs().max()) > 1e-3
    assert torch.equal(guided[:, :, 0], before[:, :, 0])
    assert torch.equal(generate_guided(model, g, mode="latent", seed=0), latent)  # "both" only (what it trains on)
    fresh = _check_noop_round_trip_and_refusal(tiny, tmp_path, model, g, guided, "fusion_head.", "fusion head does not match")
    assert isinstance(fresh.fusion_head, FusionHead)
