"""Guidance builders checked by hand: a clip translating right by a constant 2 px/frame.

The estimator is a real (if tiny) one: exhaustive search of the global integer translation, so the
builders' plumbing runs on actual image content and the expected flows are exact numbers.
"""
from __future__ import annotations

import math

import pytest
import torch

from motionguide.guidance import Guidance, extension, keyframes, reference_motion, speed

H, W = 32, 40
STEP = 2  # px per frame, to the right


def texture(seed: int = 0, h: int = H, w: int = W + 40) -> torch.Tensor:
    """A smooth random RGB texture in [0, 1] (unique under translation)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 4 + 2, w // 4 + 2, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def translating_clip(n: int, step: int = STEP, seed: int = 0) -> torch.Tensor:
    """(1, 3, n, H, W): frame k shows the texture moved right by step*k px."""
    tex = texture(seed)
    x0 = 30
    return torch.stack([tex[:, :, :, x0 - step * k: x0 - step * k + W] for k in range(n)], dim=2)


def shift_estimator(radius: int = 9):
    """Backward flow F_{0->1} of a global integer translation: pixel x of frame0 is at x + d in frame1."""

    def est(f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        best, best_err = (0, 0), math.inf
        m = radius
        core0 = f0[..., m:-m, m:-m]
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                core1 = f1[..., m + dy: f1.shape[-2] - m + dy, m + dx: f1.shape[-1] - m + dx]
                err = float((core0 - core1).abs().mean())
                if err < best_err:
                    best, best_err = (dx, dy), err
        out = torch.zeros(f0.shape[0], 2, *f0.shape[-2:])
        out[:, 0], out[:, 1] = float(best[0]), float(best[1])
        return out

    return est


EST = shift_estimator()
INNER = (slice(None), slice(4, -4), slice(12, -4))  # rows, cols away from borders and entering content


def test_estimator_sanity():
    clip = translating_clip(2)
    f = EST(clip[:, :, 0], clip[:, :, 1])
    assert f[0, 0].unique().tolist() == [2.0] and f[0, 1].unique().tolist() == [0.0]


def test_reference_motion_flows_are_2k():
    ref = translating_clip(4)
    image = texture(seed=5)[:, :, :, :W]
    for mode in ("accumulate", "direct"):
        g = reference_motion(image, ref, estimator=EST, mode=mode)
        assert g.num_frames == 4 and g.positions == (0,) and torch.equal(g.frames[:, :, 0], image)
        assert g.sources[:, 0].tolist() == [0, 0, 0, 0]
        for k in range(1, 4):
            assert torch.equal(g.flows[0, k, 0, 0], torch.full((H, W), -2.0 * k)), (mode, k)
            assert torch.equal(g.flows[0, k, 0, 1], torch.zeros(H, W))
            # output pixel x reads the image at x - 2k: the first 2k columns have no source
            assert g.weights[0, k, 0, 0, :, : 2 * k].sum() == 0 and bool((g.weights[0, k, 0, 0, :, 2 * k:] == 1).all())
    g = reference_motion(image, ref, estimator=EST, motion_scale=2.0, strength=0.5)
    assert torch.equal(g.flows[0, 3, 0, 0], torch.full((H, W), -12.0)) and g.strength == 0.5
    g0 = reference_motion(image, ref, estimator=EST, motion_scale=0.0)
    assert not g0.flows.any()


@pytest.mark.parametrize("factor", [0.5, 0.25, 1.5])
def test_speed_flows_are_2_times_factor(factor):
    clip = translating_clip(7)
    g = speed(clip, factor, estimator=EST)
    n_out = int(math.floor(6 / factor + 1e-9)) + 1
    assert g.num_frames == n_out
    for j in range(n_out):
        tau = j * factor
        src0 = g.sources[j, 0]
        if abs(tau - round(tau)) < 1e-6:
            # known output frame: itself, identical pixels
            assert g.positions[int(src0)] == j and torch.equal(g.frames[:, :, int(src0)], clip[:, :, round(tau)])
            continue
        a, frac = math.floor(tau), tau - math.floor(tau)
        assert torch.equal(g.frames[:, :, int(g.sources[j, 0])], clip[:, :, a])
        assert torch.equal(g.frames[:, :, int(g.sources[j, 1])], clip[:, :, a + 1])
        # time tau is 2*tau px right of frame 0: 2*frac right of frame a, 2*(1-frac) left of frame a+1
        f0 = g.flows[0, j, 0, 0][INNER[1:]]
        f1 = g.flows[0, j, 1, 0][INNER[1:]]
        assert torch.allclose(f0, torch.full_like(f0, -STEP * frac), atol=1e-5), (j, f0.unique())
        assert torch.allclose(f1, torch.full_like(f1, STEP * (1 - frac)), atol=1e-5)
        w0, w1 = g.weights[0, j, 0, 0][INNER[1:]], g.weights[0, j, 1, 0][INNER[1:]]
        assert torch.allclose(w0, torch.full_like(w0, 1 - frac), atol=1e-5) and torch.allclose(w0 + w1, torch.ones_like(w0))
    # consecutive output frames between the same real frames are 2 * factor px apart
    checked = 0
    for j in range(n_out - 1):
        same = g.sources[j, 1] >= 0 and g.sources[j + 1, 1] >= 0 and g.sources[j, 0] == g.sources[j + 1, 0]
        if same:
            d = float(g.flows[0, j, 0, 0, 16, 20] - g.flows[0, j + 1, 0, 0, 16, 20])
            assert abs(d - STEP * factor) < 1e-5
            checked += 1
    assert checked == (6 * 2 if factor == 0.25 else 0)


def test_speed_positions_for_speed_up():
    g = speed(translating_clip(7), 1.5, estimator=EST)
    # output times 0, 1.5, 3, 4.5, 6: real frames 0, 3, 6 are output frames 0, 2, 4; 1, 2, 4, 5 are sources only
    assert g.num_frames == 5
    assert g.positions == (0, None, None, 2, None, None, 4)


def test_extension_continues_2px_per_frame():
    clip = translating_clip(3)
    g = extension(clip, 3, estimator=EST)  # one source: the last frame
    assert g.num_frames == 6 and g.positions == (0, 1, 2) and g.sources.shape[1] == 1
    for k in (1, 2, 3):
        t = 2 + k
        assert int(g.sources[t, 0]) == 2
        fl = g.flows[0, t, 0, 0]
        # content keeps moving right: output pixel x shows last-frame pixel x - 2k; new content enters at left
        assert torch.allclose(fl[:, 2 * k:], torch.full_like(fl[:, 2 * k:], -2.0 * k), atol=1e-5), k  # splat rounding
        assert g.weights[0, t, 0, 0, :, : 2 * k].sum() == 0 and bool((g.weights[0, t, 0, 0, :, 2 * k:] == 1).all())
    gd = extension(clip, 2, estimator=EST, damping=0.5)
    assert torch.allclose(gd.flows[0, 4, 0, 0, :, 6:], torch.full((H, W - 6), -3.0), atol=1e-5)  # 2 + 1 px
    ref = translating_clip(3, step=1, seed=3)
    gr = extension(clip, 2, estimator=EST, mode="reference", reference=ref)
    assert torch.equal(gr.flows[0, 4, 0, 0], torch.full((H, W), -2.0))  # reference moves 1 px/frame


def test_extension_leaves_the_background_a_moving_object_uncovers_to_the_model():
    """A 2 px block moves right 2 px/frame over a static texture. In the first new frame the background it
    uncovers (columns 10-11) is nowhere in the last frame: the last frame is the only source and gets weight
    0 there, 1 where it sees, and no earlier frame is a source."""
    bg = texture(5)[:, :, :, :W]
    frames = []
    for i in range(4):
        f = bg.clone()
        f[:, :, :, 4 + 2 * i: 6 + 2 * i] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        frames.append(f)
    clip = torch.stack(frames, 2)

    def block_flow(x0: int, d: float) -> torch.Tensor:
        fl = torch.zeros(1, 2, H, W)
        fl[:, 0, :, x0: x0 + 2] = d
        return fl

    def est(a, b):  # exact flows of the scene, a -> b for consecutive frames either way: the block moves
        i, j = (next(k for k in range(4) if torch.equal(x, clip[:, :, k])) for x in (a, b))
        assert abs(i - j) == 1
        return block_flow(4 + 2 * i, 2.0 * (j - i))

    g = extension(clip, 2, estimator=est)
    assert g.sources.shape[1] == 1 and g.sources[4:].tolist() == [[3], [3]]
    w_last = g.weights[0, 4, 0, 0]
    assert bool((w_last[:, 10:12] == 0).all()) and bool((w_last[:, 16:] == 1).all())
    with pytest.raises(TypeError, match="fill_back"):
        extension(clip, 2, estimator=est, fill_back=1)


def test_keyframes_inbetween():
    clip = translating_clip(5)
    g = keyframes(clip[:, :, [0, 4]], [0, 4], estimator=EST)
    assert g.num_frames == 5 and g.positions == (0, 4)
    for j in (1, 2, 3):
        t = j / 4
        f0, f1 = g.flows[0, j, 0, 0][INNER[1:]], g.flows[0, j, 1, 0][INNER[1:]]
        assert torch.allclose(f0, torch.full_like(f0, -8 * t), atol=1e-5)
        assert torch.allclose(f1, torch.full_like(f1, 8 * (1 - t)), atol=1e-5)
    assert g.guided_frames() == [0, 1, 2, 3, 4]
    g2 = keyframes(clip[:, :, [0, 4]], [0, 4], num_frames=7, estimator=EST)
    assert g2.guided_frames() == [0, 1, 2, 3, 4]  # frames after the last keyframe are left to the model


# ---- bad input ------------------------------------------------------------------------------------------
def _tiny_guidance(**over):
    kw = dict(frames=torch.rand(1, 3, 1, 8, 8), positions=(0,), num_frames=2,
              sources=torch.tensor([[0], [0]]), flows=torch.zeros(1, 2, 1, 2, 8, 8), weights=torch.ones(1, 2, 1, 1, 8, 8))
    kw.update(over)
    return Guidance(**kw)


def test_guidance_bad_inputs():
    _tiny_guidance()
    flows = torch.zeros(1, 2, 1, 2, 8, 8)
    flows[0, 1, 0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _tiny_guidance(flows=flows)
    for v in (-0.5, 4.5, float("nan")):
        with pytest.raises(ValueError, match="motion_scale"):
            _tiny_guidance(motion_scale=v)
    for v in (-0.1, 1.5):
        with pytest.raises(ValueError, match="strength"):
            _tiny_guidance(strength=v)
    with pytest.raises(ValueError, match=r"\(B, T, K, 2, H, W\)"):
        _tiny_guidance(flows=torch.zeros(1, 2, 1, 2, 8, 9))
    with pytest.raises(ValueError, match="sum to at most 1"):
        _tiny_guidance(weights=torch.full((1, 2, 1, 1, 8, 8), 1.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _tiny_guidance(frames=torch.rand(1, 3, 1, 8, 8) * 255)
    with pytest.raises(TypeError, match="float"):
        _tiny_guidance(frames=torch.zeros(1, 3, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="positions"):
        _tiny_guidance(positions=(5,))
    with pytest.raises(ValueError, match="one latent frame per known frame"):
        _tiny_guidance(latents=torch.zeros(1, 4, 2, 1, 1))


def test_builder_bad_inputs():
    clip = translating_clip(3)
    with pytest.raises(ValueError, match="motion_scale"):
        reference_motion(clip[:, :, 0], clip, estimator=EST, motion_scale=-1)
    with pytest.raises(ValueError, match="strength"):
        speed(clip, 0.5, estimator=EST, strength=2)
    with pytest.raises(ValueError, match="share batch and H x W"):
        reference_motion(torch.rand(1, 3, 10, 10), clip, estimator=EST)
    with pytest.raises(ValueError, match="factor"):
        speed(clip, 0, estimator=EST)
    with pytest.raises(ValueError, match="use at most 5"):
        speed(clip, 0.5, estimator=EST, num_frames=9)
    with pytest.raises(TypeError, match="estimator"):
        extension(clip, 2, estimator=None)
    with pytest.raises(ValueError, match="damping"):
        extension(clip, 2, estimator=EST, damping=1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        keyframes(clip[:, :, :2], [3, 1], estimator=EST)
    nan_est = lambda a, b: torch.full((a.shape[0], 2, *a.shape[-2:]), float("nan"))  # noqa: E731
    with pytest.raises(ValueError, match="NaN"):
        reference_motion(clip[:, :, 0], clip, estimator=nan_est)
    bad_est = lambda a, b: torch.zeros(1, 2, 4, 4)  # noqa: E731
    with pytest.raises(ValueError, match="estimator returned"):
        speed(clip, 0.5, estimator=bad_est)


def test_builders_with_the_project_dis_estimator():
    """The flow package's DIS estimator plugs into the builders as is (median flow on a textured pan)."""
    import flow.estimators as estimators
    est = estimators.get_estimator("dis")
    clip = translating_clip(4)
    g = reference_motion(clip[:, :, 0], clip, estimator=est)
    for k in (1, 2, 3):
        med = float(g.flows[0, k, 0, 0][INNER[1:]].median())
        assert abs(med + 2.0 * k) < 0.5, (k, med)
    e = extension(clip, 2, estimator=est)
    assert abs(float(e.flows[0, 5, 0, 0][INNER[1:]].median()) + 4.0) < 0.5


def test_speed_with_an_intermediate_component():
    """Intermediate flows from the interpolation component: its mask is frame 0's blend weight (MoG's M)."""
    clip = translating_clip(3)

    def hand(f0, f1, t):  # exact intermediate flows of the pan, M = 0.7 everywhere
        a = torch.zeros(f0.shape[0], 2, *f0.shape[-2:])
        b = torch.zeros_like(a)
        a[:, 0], b[:, 0] = -STEP * t, STEP * (1 - t)
        return a, b, torch.full_like(a[:, :1], 0.7)

    g = speed(clip, 0.5, intermediate=hand)
    assert torch.equal(g.flows[0, 1, 0, 0], torch.full((H, W), -1.0))
    assert torch.allclose(g.weights[0, 1, 0, 0][INNER[1:]], torch.full((H - 8, W - 16), 0.7))
    import flow.interpolate as interp_mod
    interp = interp_mod.get_interpolator("dis")
    g = speed(clip, 0.25, intermediate=interp)
    for j, frac in ((1, 0.25), (2, 0.5), (3, 0.75)):
        med0 = float(g.flows[0, j, 0, 0][INNER[1:]].median())
        med1 = float(g.flows[0, j, 1, 0][INNER[1:]].median())
        assert abs(med0 + STEP * frac) < 0.5 and abs(med1 - STEP * (1 - frac)) < 0.5, (j, med0, med1)
    with pytest.raises(TypeError, match="intermediate"):
        speed(clip, 0.5, intermediate=3)
    with pytest.raises(ValueError, match="intermediate flows"):
        speed(clip, 0.5, intermediate=lambda a, b, t: (torch.zeros(1, 2, 4, 4),) * 2 + (torch.zeros(1, 1, 4, 4),))
