"""The synthesis built once: one pass over a guidance's sources gives the warp, the confidence and the known
frames (:class:`motionguide.warping.Synthesis`), and a job warps each source at the input's size exactly once;
the embedded generation takes the warp as given."""
from __future__ import annotations

import pytest
import torch

import motionguide as mg
from motionguide import jobs, warping
from motionguide.compositing import confidence
from motionguide.embedded import EmbeddedConfig, EmbeddedVideoModel, attach_adapters, generate_guided
from motionguide.embedded.data import make_clip
from motionguide.warping import Synthesis, flow_only, known_of, synthesize

TINY = dict(num_layers=1, num_heads=2, head_dim=12, ffn_dim=16, text_dim=8, freq_dim=16, steps=2)
H, W = 40, 56  # the input's size: the tiny model works at 32x32


@pytest.fixture(scope="module")
def clip():
    return make_clip(0, split="heldout", num_frames=4, size=(H, W)).frames.float()  # (T, 3, H, W)


def _count_warps(monkeypatch) -> list[tuple[int, int]]:
    """Record the (H, W) of every frame ``motionguide.warping`` warps (its sources, its fills)."""
    seen, real = [], warping.backward_warp

    def spy(img, flow, **kw):
        seen.append(tuple(img.shape[-2:]))
        return real(img, flow, **kw)

    monkeypatch.setattr(warping, "backward_warp", spy)
    return seen


def _source_count(g) -> int:
    """How many (generated frame, source) pairs the guidance has: the warps one synthesis needs."""
    _, known = known_of(g)
    return sum(int((g.sources[t] >= 0).sum()) for t in range(g.num_frames) if not bool(known[0, t]))


def test_one_pass_gives_what_flow_only_and_confidence_give():
    c = make_clip(2, split="heldout", num_frames=5, size=(24, 32)).frames.float().transpose(0, 1)[None]
    g = mg.speed(c, 0.5, estimator=lambda a, b: torch.full((a.shape[0], 2, *a.shape[-2:]), 1.5))  # 2 sources
    syn = synthesize(g)
    kf, known = known_of(g)
    assert isinstance(syn, Synthesis)
    assert torch.equal(syn.warp, flow_only(g)) and torch.equal(syn.confidence, confidence(g))
    assert torch.equal(syn.known_frames, kf) and torch.equal(syn.known, known)
    assert synthesize(g, with_confidence=False).confidence is None
    assert torch.equal(synthesize(g, agreement=False).confidence, confidence(g, agreement=False))
    with pytest.raises(ValueError, match="unseen"):
        synthesize(g, unseen="blur")


@pytest.mark.parametrize("job", ["speed", "extend"])
def test_a_job_warps_each_source_at_the_inputs_size_once(clip, monkeypatch, job):
    seen = _count_warps(monkeypatch)
    run = {"speed": lambda **k: jobs.speed(clip, 0.5, interpolator="dis", **k),
           "extend": lambda **k: jobs.extend(clip, 3, **k)}[job]
    res = run(model=None)
    full = [s for s in seen if s == (H, W)]
    assert len(full) == _source_count(res.guidance) > 0  # the warp and its confidence from one pass
    assert res.synthesis is not None and torch.equal(res.warped, res.synthesis.warp[0].transpose(0, 1))
    # with the embedded model filling what the flow does not explain: still once at the input's size (its
    # windows warp at its own 32x32 grid)
    torch.manual_seed(0)
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    attach_adapters(model)
    seen.clear()
    res = run(model=model, mode="both", fill="model")
    assert len([s for s in seen if s == (H, W)]) == _source_count(res.guidance)
    assert {s for s in seen if s != (H, W)} == {(32, 32)}


def test_generate_guided_takes_the_warp_as_given():
    torch.manual_seed(0)
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    attach_adapters(model, mode="training_free")
    frames = make_clip(4, split="heldout", num_frames=8).frames.permute(1, 0, 2, 3)[None]
    g = mg.extension(frames[:, :, :4], 4, estimator=lambda a, b: torch.zeros(a.shape[0], 2, *a.shape[-2:]))
    with pytest.raises(TypeError, match="warp"):
        generate_guided(model, g, mode="training_free")  # no fallback: the caller made the warp once
    with pytest.raises(ValueError, match=r"warp: expected \(1, 3, 8, 32, 32\)"):
        generate_guided(model, g, warp=flow_only(g)[:, :, :4], mode="training_free")
    warp = flow_only(g)
    assert generate_guided(model, g, warp=warp, mode="flow_only") is warp
    # the training-free target is the warp given: a different warp moves the output
    a = generate_guided(model, g, warp=warp, mode="training_free", seed=0)
    b = generate_guided(model, g, warp=warp.flip(-1), mode="training_free", seed=0)
    assert float((a - b).abs().max()) > 1e-3
