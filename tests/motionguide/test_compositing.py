"""Generation where the flow fails: the confidence map, the seamless blend, the jobs at the input's size,
and training-free guidance held to the warp where it is trusted."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import motionguide as mg
from motionguide import jobs
from motionguide.compositing import composite, confidence, laplacian_blend
from motionguide.embedded import EmbeddedConfig, EmbeddedVideoModel, attach_adapters, generate_guided
from motionguide.embedded.data import make_clip
from motionguide.warping import flow_only

TINY = dict(num_layers=1, num_heads=2, head_dim=12, ffn_dim=16, text_dim=8, freq_dim=16, steps=4)


def _shifted(shift: float, t: int = 4, size: int = 16):
    """First frame known; frame k shows it moved right by shift*k px (so the left strip leaves the frame)."""
    first = torch.rand(1, 3, 1, size, size, generator=torch.Generator().manual_seed(0))
    flows = torch.zeros(1, t, 1, 2, size, size)
    for k in range(t):
        flows[:, k, 0, 0] = -shift * k
    return mg.Guidance(first, (0,), t, torch.zeros(t, 1, dtype=torch.long), flows, torch.ones(1, t, 1, 1, size, size))


def test_confidence_is_one_on_known_frames_and_zero_outside_the_frame():
    c = confidence(_shifted(2.0))
    assert c.shape == (1, 1, 4, 16, 16) and bool((c[:, :, 0] == 1).all())
    for k in range(1, 4):  # x - 2k < -0.5: the first 2k columns sample outside the source frame
        assert torch.equal(c[0, 0, k], (torch.arange(16) >= 2 * k).float().expand(16, 16)), k


def test_two_sources_that_disagree_lower_the_confidence():
    g = _shifted(0.0, t=3)
    frames = torch.cat([g.frames, torch.rand(1, 3, 1, 16, 16, generator=torch.Generator().manual_seed(1))], 2)
    sources = torch.tensor([[0, -1], [0, 1], [1, -1]])
    flows = torch.zeros(1, 3, 2, 2, 16, 16)
    weights = torch.zeros(1, 3, 2, 1, 16, 16)
    weights[:, 0, 0] = weights[:, 2, 0] = 1
    weights[:, 1] = 0.5
    two = mg.Guidance(frames, (0, 2), 3, sources, flows, weights)
    assert float(confidence(two)[:, :, 1].mean()) < 0.2  # random vs random: they disagree
    assert bool((confidence(two, agreement=False)[:, :, 1] == 1).all())
    same = mg.Guidance(torch.cat([g.frames, g.frames], 2), (0, 2), 3, sources, flows, weights)
    assert bool((confidence(same)[:, :, 1] == 1).all())


def test_laplacian_blend_keeps_each_side_and_has_no_seam():
    a, b = torch.zeros(1, 3, 33, 47), torch.ones(1, 3, 33, 47)  # odd sizes on purpose
    assert laplacian_blend(a, b, torch.zeros(1, 1, 33, 47)) is a
    assert torch.allclose(laplacian_blend(a, b, torch.ones(1, 1, 33, 47)), b, atol=1e-6)
    alpha = torch.zeros(1, 1, 33, 47)
    alpha[..., 24:] = 1
    out = laplacian_blend(a, b, alpha)[0, 0, 16]
    assert float(out[:8].max()) < 0.05 and float(out[-6:].min()) > 0.95
    steps = out[1:] - out[:-1]
    assert float(steps.max()) < 0.5  # the step from 0 to 1 is spread over several columns
    with pytest.raises(ValueError, match="share"):
        laplacian_blend(a, b, alpha[..., :10])


def test_composite_upsamples_the_model_and_reports_its_share():
    warp = torch.zeros(1, 3, 2, 32, 32)
    gen = torch.ones(1, 3, 2, 8, 8)
    conf = torch.ones(1, 1, 2, 32, 32)
    conf[:, :, 1, :, :16] = 0
    out, c, share = composite(warp, gen, conf)
    assert out.shape == warp.shape and share == pytest.approx(0.25) and c is not None and torch.equal(c, conf)
    assert float(out[:, :, 0].abs().max()) < 1e-6 and float(out[0, 0, 1, 16, 2]) > 0.98


def test_a_smaller_model_supplies_its_bands_and_the_warp_keeps_its_detail():
    torch.manual_seed(0)
    warp = torch.rand(1, 3, 2, 64, 64)  # detail at every scale
    conf = torch.zeros(1, 1, 2, 64, 64)  # nothing trusted: the model supplies every pixel
    same = F.interpolate(warp[0].transpose(0, 1), size=(16, 16), mode="area").transpose(0, 1)[None]
    out, _, share = composite(warp, same, conf)  # a model that reproduces the downscaled warp changes nothing
    assert share == 1 and float((out - warp).abs().max()) < 1e-4
    brighter = (same + 0.1).clamp(0, 1)  # a model that changes the coarse content moves it, detail kept
    out, _, _ = composite(warp, brighter, conf)
    moved = F.interpolate((out - warp)[0].transpose(0, 1), size=(16, 16), mode="area")
    assert 0.07 < float(moved.mean()) < 0.11
    hf = lambda x: x - F.avg_pool2d(x, 3, 1, 1)  # noqa: E731
    assert float((hf(out[0, :, 0]) - hf(warp[0, :, 0])).abs().mean()) < 0.05 * float(hf(warp[0, :, 0]).abs().mean()) + 0.01


def test_composite_at_the_generated_size_downscales_the_warp_and_the_confidence():
    warp = torch.rand(1, 3, 2, 64, 64)
    gen = torch.ones(1, 3, 2, 32, 32)
    conf = torch.ones(1, 1, 2, 64, 64)
    conf[:, :, 1, :, :32] = 0
    out, c, share = composite(warp, gen, conf, at_generated=True)
    assert out.shape == gen.shape and c.shape == (1, 1, 2, 32, 32) and share == pytest.approx(0.25)
    small = F.interpolate(warp[:, :, 0], size=(32, 32), mode="area")
    assert torch.allclose(out[:, :, 0], small, atol=1e-5)  # fully trusted: the warp, downscaled
    assert float(out[0, :, 1, :, :8].min()) > 0.98  # untrusted, away from the seam: the model
    warp[:, :, 1] = 0.25
    out, _, _ = composite(warp, gen, conf, at_generated=True)
    assert float((out[0, :, 1, :, -8:] - 0.25).abs().max()) < 0.05  # trusted, away from the seam: the warp
    big, _, _ = composite(warp[..., :16, :16], gen, conf[..., :16, :16])  # a model larger than the output
    assert big.shape == (1, 3, 2, 16, 16) and float(big[0, :, 1, :, :4].min()) > 0.98


def test_jobs_keep_the_input_size_and_the_warp_fills_by_default():
    c = make_clip(2, split="heldout", num_frames=6, size=(40, 56)).frames
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    attach_adapters(model)
    warp = jobs.extend(c, 3, model=None, mode="flow_only")
    default = jobs.extend(c, 3, model=model, mode="both")
    assert default.frames.shape == (9, 3, 40, 56) and torch.equal(default.frames, warp.frames)
    assert default.model_share == 0 and default.confidence.shape == (9, 1, 40, 56)
    mixed = jobs.extend(c, 3, model=model, mode="both", fill="model")
    assert mixed.frames.shape == (9, 3, 40, 56) and 0 < mixed.model_share < 0.5
    assert torch.equal(mixed.frames[:6], c)  # the input frames exactly
    small = jobs.extend(c, 3, model=model, mode="both", output_size="model")
    assert small.frames.shape == (9, 3, 32, 32) and 0 < small.model_share < 0.5
    assert small.confidence.shape == (9, 1, 32, 32) and torch.equal(small.frames[:6], small.inputs)
    # at the model's size the model supplies the same pixels: where the downscaled confidence is 1 within the
    # blend's reach, the output is the downscaled warp
    far = F.max_pool2d(1 - small.confidence, 17, stride=1, padding=8) == 0
    diff = (small.frames - small.warped).abs().amax(1, keepdim=True)
    assert int(far[6:].sum()) > 0 and float(diff[6:][far[6:]].max()) < 1 / 255
    raw = jobs.extend(c, 3, model=model, mode="unguided", output_size="model")
    assert raw.confidence is None and raw.model_share == 1
    s = jobs.speed(c, 0.5, model=None, mode="flow_only", interpolator="dis")
    assert s.frames.shape == (11, 3, 40, 56) and torch.equal(s.frames[::2], c)
    with pytest.raises(ValueError, match="fill"):
        jobs.extend(c, 3, model=model, fill="noise")


def test_training_free_is_held_to_the_warp_where_a_source_sees_and_strength_zero_is_unguided():
    torch.manual_seed(0)
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    attach_adapters(model, mode="training_free")
    frames = make_clip(4, split="heldout", num_frames=8).frames.permute(1, 0, 2, 3)[None]
    g = mg.extension(frames[:, :, :4], 4, estimator=lambda a, b: torch.zeros(a.shape[0], 2, *a.shape[-2:]))
    out = generate_guided(model, g, warp=flow_only(g), mode="training_free", seed=0)
    vis = confidence(g, agreement=False)
    warp = flow_only(g)
    held = (vis == 1).expand_as(out)
    assert bool(held.any()) and torch.allclose(out[held], warp[held], atol=1e-5)
    base = generate_guided(model, g, warp=flow_only(g), mode="unguided", seed=0)
    assert torch.allclose(generate_guided(model, g.with_strength(0.0), warp=flow_only(g.with_strength(0.0)), mode="training_free", seed=0), base, atol=1e-5)
