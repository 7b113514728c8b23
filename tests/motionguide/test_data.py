"""Clips with known motion: determinism, exact flow (checked by warping), occlusion, splits, bad input."""
from __future__ import annotations


import pytest
import torch

from flow.warp import backward_warp
from motionguide.embedded.data import ClipDataset, make_batch, make_clip
from motionguide.embedded.scenes import HELDOUT_PHOTOS, TRAIN_PHOTOS, Layer, Scene, sample_scene


def test_deterministic_from_seed_and_split():
    a = make_clip(11, num_frames=4)
    b = make_clip(11, num_frames=4)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.flow_to_first, b.flow_to_first)
    assert not torch.equal(a.frames, make_clip(12, num_frames=4).frames)
    # the same seed in the held-out split is another clip (separate random streams)
    assert not torch.equal(a.frames, make_clip(11, split="heldout", num_frames=4).frames)


def test_shapes_and_ranges():
    c = make_clip(0, num_frames=5, size=(32, 48))
    assert c.frames.shape == (5, 3, 32, 48)
    assert c.flow_to_first.shape == (5, 2, 32, 48) and c.valid_to_first.shape == (5, 1, 32, 48)
    assert float(c.frames.min()) >= 0 and float(c.frames.max()) <= 1
    assert float(c.flow_to_first[0].abs().max()) == 0.0  # frame 0 to itself
    assert float(c.flow_to_first.abs().max()) > 0.5  # it moves


def test_splits_use_disjoint_photographs():
    assert not set(TRAIN_PHOTOS) & set(HELDOUT_PHOTOS)
    for s in range(6):
        assert set(sample_scene(s, split="train").photos) <= set(TRAIN_PHOTOS)
        assert set(sample_scene(s, split="heldout").photos) <= set(HELDOUT_PHOTOS)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_exact_flow_reproduces_frames_by_warping(split):
    for seed in range(3):
        c = make_clip(seed, split=split, num_frames=8)
        for k in (1, 4, 7):
            warped = backward_warp(c.frames[0:1], c.flow_to_first[k : k + 1])
            v = c.valid_to_first[k : k + 1]
            err = ((warped - c.frames[k : k + 1]).abs().mean(1, keepdim=True) * v).sum() / v.sum()
            # anti-aliased rendering: only interpolation error is left on visible pixels
            assert float(err) < 0.04, (seed, k, float(err))
            # where the flow is wrong on purpose (all-zero flow), the error is much larger
        still = ((c.frames[0:1] - c.frames[7:8]).abs().mean(1, keepdim=True) * c.valid_to_first[7:8]).sum() / c.valid_to_first[7:8].sum()
        assert float(still) > float(err)


def test_flow_between_fractional_times():
    c = make_clip(2, num_frames=8)
    frames = c.scene.render([1.0, 2.5])
    flow, occ, out = c.scene.flow(2.5, 1.0)
    warped = backward_warp(frames[0:1], flow[None])
    v = (1 - torch.clamp(occ + out, max=1))[None]
    err = ((warped - frames[1:2]).abs().mean(1, keepdim=True) * v).sum() / v.sum()
    assert float(err) < 0.04


def _flat_texture(side: int, value: float) -> torch.Tensor:
    t = torch.rand(3, side, side)  # texture detail does not matter for the flow
    return t * 0.1 + value


def test_hand_checkable_pan_and_occlusion():
    # background panning right 2 px/frame; a disc of radius 4 moving down 3 px/frame in front of it
    bg = Layer(texture=_flat_texture(200, 0.3), o0=(15.5, 15.5), v=(2.0, 0.0), a=(0.0, 0.0), supersample=2)
    disc = Layer(texture=_flat_texture(40, 0.8), o0=(16.0, 10.0), v=(0.0, 3.0), a=(0.0, 0.0), radius=4.0,
                 softness=0.3, supersample=2)
    scene = Scene([bg, disc], size=(32, 32), supersample=2)
    flow, occ, out = scene.flow(2.0, 0.0)
    # a background pixel far from the disc: content came from 4 px to the left
    assert flow[:, 28, 28].tolist() == pytest.approx([-4.0, 0.0], abs=1e-4)
    # the disc centre at t=2 is (16, 16); it came from (16, 10)
    assert flow[:, 16, 16].tolist() == pytest.approx([0.0, -6.0], abs=1e-4)
    # background just above the disc at t=2 was under the disc at t=0: occluded
    assert occ[0, 10, 18] == 1.0 and occ[0, 16, 16] == 0.0 and occ[0, 28, 28] == 0.0
    # pixels in the left 4 columns came from outside the frame
    assert bool((out[0, 20:, :4] == 1).all()) and float(out[0, :, 6:].sum()) == 0.0


def test_acceleration_is_quadratic():
    bg = Layer(texture=_flat_texture(200, 0.3), o0=(15.5, 15.5), v=(0.0, 0.0), a=(1.0, 0.0), supersample=2)
    scene = Scene([bg], size=(16, 16), supersample=2)
    f, _, _ = scene.flow(3.0, 0.0)
    assert float(f[0, 8, 8]) == pytest.approx(-4.5)  # x(3) - x(0) = a t^2 / 2


def test_motion_scale_scales_motion():
    a = make_clip(5, num_frames=4, motion_scale=1.0)
    b = make_clip(5, num_frames=4, motion_scale=2.0)
    ma = a.flow_to_first[3].norm(dim=0).median()
    mb = b.flow_to_first[3].norm(dim=0).median()
    assert 1.6 < float(mb / ma) < 2.4


def test_batch_and_dataset():
    b = make_batch([0, 1], num_frames=4, motion_scales=[1.0, 0.5], with_flow=False)
    assert b["frames"].shape == (2, 3, 4, 32, 32)
    ds = ClipDataset("heldout", length=3, num_frames=4, motion_scale_range=(0.5, 2.0))
    assert len(ds) == 3 and torch.equal(ds[1]["frames"], ds[1]["frames"])
    assert 0.5 <= float(ds[2]["motion_scale"]) <= 2.0
    with pytest.raises(IndexError):
        ds[3]


def test_bad_input():
    with pytest.raises(ValueError, match="split"):
        make_clip(0, split="test")
    with pytest.raises(ValueError, match="size"):
        make_clip(0, size=(4, 4))
    with pytest.raises(ValueError, match="motion_scale"):
        make_clip(0, motion_scale=-1.0)
    with pytest.raises(ValueError, match="num_frames"):
        make_clip(0, num_frames=0)
    with pytest.raises(ValueError, match="motion_scale_range"):
        ClipDataset(motion_scale_range=(2.0, 1.0))
