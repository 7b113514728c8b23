"""The embedded network and its checkpoints: config, conditioning, sampler, loss, save/load (shipped, corrupt, missing)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import motionguide as mg
from motionguide.embedded.adapters import load_adapters
from motionguide.embedded.checkpoint import DEFAULT_ASSETS, load_embedded, save_embedded
from motionguide.embedded.data import make_clip
from motionguide.embedded.generation import generate_guided
from motionguide.warping import flow_only
from motionguide.embedded.network import EmbeddedConfig, EmbeddedVideoModel
from motionguide.errors import CheckpointError

TINY = dict(num_layers=2, num_heads=2, head_dim=12, ffn_dim=16, text_dim=8, freq_dim=16, steps=2)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()


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
    # truncated file without a manifest: the safe reader says what it is, in one line
    (bad / "manifest.json").unlink()
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model.safetensors: expected a .safetensors file, "
                                              r"got a safetensors file whose end is missing \(100 bytes\)"):
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
    # the shipped adapters carry the per-trust-level gates alone (no head), and extend with them

    load_adapters(model)
    assert sorted(model.gates.state_dict()) == ["correction_gate", "reference_gate"]
    assert list(model.gates.children()) == []
    from flow.estimators import get_estimator

    frames = make_clip(7, split="heldout", num_frames=8).frames.permute(1, 0, 2, 3)[None]
    g = mg.extension(frames[:, :, :4], 4, estimator=get_estimator("dis"))
    assert [int(x) for x in g.sources[4:, 0]] == [3] * 4
    out = generate_guided(model, g, warp=flow_only(g), mode="both", seed=0, steps=4)
    assert out.shape == frames.shape and torch.isfinite(out).all()
    assert torch.allclose(out[:, :, :4], frames[:, :, :4], atol=1e-5)  # the input frames stay (to rounding)


