"""Windows and the warp the model is guided by: a warp given to generate_windows replaces each window's own
grid warp (the jobs give the input-resolution warp, downscaled), and the same warp reproduces the default."""
from __future__ import annotations

import pytest
import torch

from flow.estimators import get_estimator
from flow.interpolate import get_interpolator

import motionguide as mg
from motionguide import jobs
from motionguide.embedded.adapters import attach_adapters
from motionguide.warping import flow_only
from motionguide.embedded.network import EmbeddedConfig, EmbeddedVideoModel
from motionguide.embedded.windows import generate_windows
from motionguide.windows import resize_clip

TINY = dict(num_layers=1, num_heads=2, head_dim=12, ffn_dim=16, text_dim=8, freq_dim=16, steps=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    attach_adapters(m)
    with torch.no_grad():  # trained-looking adapters: the warp reaches the reference and the latents
        m.gates.reference_gate.fill_(0.03)
        for p in m.transformer.motion_guidance.parameters():
            p.normal_(0, 0.05)
    return m


def _speed_guidance(n_in: int = 3):
    torch.manual_seed(3)
    frames = torch.rand(1, 3, n_in, 32, 32)
    return mg.speed(frames, 0.25, estimator=get_estimator("dis"))  # 9 frames: two windows of 8


def test_the_windows_own_warp_given_reproduces_the_default(model):
    g = _speed_guidance()
    plain = generate_windows(model, g, mode="both", seed=0)
    same = generate_windows(model, g, mode="both", seed=0, warp=flow_only(g))
    assert torch.allclose(same, plain, atol=1e-4)
    other = flow_only(g).flip(-1)  # a different warp moves the output
    assert float((generate_windows(model, g, mode="both", seed=0, warp=other) - plain).abs().max()) > 1e-3
    tf = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    attach_adapters(tf, mode="training_free")
    base = generate_windows(tf, g, mode="training_free", seed=0)
    assert torch.allclose(generate_windows(tf, g, mode="training_free", seed=0, warp=flow_only(g)), base, atol=1e-4)
    with pytest.raises(ValueError, match="warp: expected"):
        generate_windows(model, g, warp=flow_only(g)[:, :, :4])


def test_jobs_guide_the_model_with_the_input_resolution_warp(model, monkeypatch):
    torch.manual_seed(5)
    clip = torch.rand(3, 3, 64, 96)
    seen = []
    real = jobs.generate_windows

    def spy(m, g, **kw):
        seen.append((tuple(g.size), kw.get("warp")))
        return real(m, g, **kw)

    monkeypatch.setattr(jobs, "generate_windows", spy)
    g_full = mg.speed(clip.transpose(0, 1)[None], 0.5, intermediate=get_interpolator("dis"))
    want = resize_clip(flow_only(g_full), (32, 32))
    res = jobs.speed(clip, 0.5, model=model, interpolator="dis", output_size="model")
    assert res.frames.shape == (5, 3, 32, 32)
    (size, warp), = seen
    assert size == (32, 32) and torch.equal(warp, want) and torch.equal(res.warped, want[0].transpose(0, 1))
    assert not torch.allclose(want, flow_only(g_full.resized((32, 32))), atol=1e-3)  # not the grid warp
    seen.clear()
    jobs.speed(clip, 0.5, model=model, interpolator="dis", fill="model")
    (size, warp), = seen
    assert size == (32, 32) and torch.equal(warp, want)
    seen.clear()
    jobs.speed(clip, 0.5, model=model, interpolator="dis", output_size="model", mode="flow_only")
    assert seen == [((32, 32), None)]  # the warp at the model's grid, as the mode says
