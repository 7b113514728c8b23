"""The warp's fill where no source sees a pixel (motionguide.warping), on a synthetic pan where that region is
known: content enters at the right edge, ``v`` pixels per frame, so new frame ``k`` of an extension has a band
``v * k`` pixels wide that the last frame does not hold."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import motionguide as mg
from motionguide import jobs
from motionguide.warping import EXTEND_FILL, UNSEEN_FILL, UNSEEN_FILLS, fill_unseen, flow_only, unseen_of

V, H, W = 3, 40, 64


def _pan(n: int, seed: int = 0) -> torch.Tensor:
    """``(n, 3, H, W)``: a smooth random texture moving ``V`` px left per frame (integer steps: exact warps)."""
    g = torch.Generator().manual_seed(seed)
    wide = W + n * V + 8
    tex = F.interpolate(torch.rand(1, 3, H // 4, wide // 4, generator=g), size=(H, wide), mode="bicubic",
                        align_corners=False).clamp(0, 1)[0]
    return torch.stack([tex[:, :, k * V : k * V + W] for k in range(n)])


def _exact(a, b):  # the pan's true backward flow from a frame to the one before it: content sits V px right
    f = torch.zeros(a.shape[0], 2, *a.shape[-2:])
    f[:, 0] = V
    return f


@pytest.fixture(scope="module")
def pan():
    clip = _pan(7)
    g = mg.extension(clip[:4].transpose(0, 1)[None], 3, estimator=_exact)
    return clip, g


def test_unseen_is_the_band_entering_the_frame(pan):
    clip, g = pan
    un = unseen_of(g)[0, 0]  # (T, H, W)
    assert not bool(un[:4].any())  # known frames
    for k in (1, 2, 3):
        band = W - V * k
        assert bool(un[3 + k][:, band:].all()) and not bool(un[3 + k][:, : band - 1].any())
        assert torch.equal(unseen_of(g, outside=True)[0, 0, 3 + k], un[3 + k])  # every sample leaves the frame


@pytest.mark.parametrize("fill", UNSEEN_FILLS)
def test_every_fill_keeps_what_a_source_sees_and_fills_only_the_rest(pan, fill):
    clip, g = pan
    un = unseen_of(g)[0].transpose(0, 1)  # (T, 1, H, W)
    clamp, out = flow_only(g, unseen="clamp")[0].transpose(0, 1), flow_only(g, unseen=fill)[0].transpose(0, 1)
    seen = ~un.expand_as(out)
    assert torch.equal(out[seen], clamp[seen])  # the output is unchanged where a source sees
    assert torch.allclose(out[4:][seen[4:]], clip[4:][seen[4:]], atol=1e-5)  # and right there (an exact pan)
    band = un[6].expand(3, -1, -1)
    if fill == "clamp":  # the border clamp: every band pixel repeats the last column the frame holds
        edge = out[6][:, :, W - V * 3 - 1 : W - V * 3]
        assert torch.allclose(out[6][:, :, W - V * 3 :], edge.expand(-1, -1, V * 3), atol=1e-5)
    elif fill.startswith("hold"):  # the last real frame, in place
        assert torch.equal(out[6][band], clip[3][band])
    elif fill in ("clamp_telea", "median"):  # the mean of the clamp's guess and Telea's; the median of three
        telea = flow_only(g, unseen="telea")[0].transpose(0, 1)
        want = 0.5 * (clamp[6] + telea[6]) if fill == "clamp_telea" else \
            torch.stack([clamp[6], telea[6], clip[3]]).median(0).values
        assert torch.allclose(out[6][band], want[band], atol=1e-6)
        assert not torch.equal(out[6][band], clamp[6][band])
    else:
        assert not torch.equal(out[6][band], clamp[6][band])


def test_each_job_uses_the_fill_chosen_for_it_on_real_footage(pan):
    """An extension fills with the median of three guesses, which beat the clamp inside the pixels no source
    sees on validation and on held-out real footage; speed and transfer keep the clamp, which the median did
    not beat there (benchmarks/real_footage.py, docs/DECISIONS.md)."""
    clip, g = pan
    assert (UNSEEN_FILL, EXTEND_FILL) == ("clamp", "median")
    assert torch.equal(flow_only(g), flow_only(g, unseen="clamp"))
    res = jobs.extend(clip[:4], 3, model=None, flow="dis")
    assert torch.equal(res.warped, flow_only(res.guidance, unseen="median")[0].transpose(0, 1))
    assert torch.equal(res.synthesis.warp, flow_only(res.guidance, unseen="median"))
    assert not torch.equal(res.warped, flow_only(res.guidance)[0].transpose(0, 1))  # the band differs
    sp = jobs.speed(clip[:4], 0.5, model=None, flow="dis", interpolator="dis")
    assert torch.equal(sp.synthesis.warp, flow_only(sp.guidance))


def test_the_median_keeps_the_guess_two_others_agree_with():
    frame, held = torch.full((1, 3, 6, 6), 0.3), torch.full((1, 3, 6, 6), 0.3)
    unseen = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    unseen[..., 2:4, 2:4] = True
    frame[..., 2:4, 2:4] = 0.9  # a clamp's wrong guess: Telea (from the 0.3 around) and the held frame agree
    out = fill_unseen(frame, unseen, held, "median")
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=0.02)  # Telea rounds near 0.3


def test_fill_unseen_checks_its_input():
    frame, m = torch.rand(1, 3, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="unseen fill: expected one of"):
        fill_unseen(frame, m, frame, "blur")
    with pytest.raises(ValueError, match=r"expected frame \(B, 3, H, W\) and unseen \(B, 1, H, W\)"):
        fill_unseen(frame, m[:, :, :4], frame, "telea")
    assert fill_unseen(frame, m, frame, "telea") is frame  # nothing unseen: nothing to do
    everything = torch.ones_like(m)
    held = torch.zeros_like(frame)
    assert torch.equal(fill_unseen(frame, everything, held, "telea"), held)  # nothing to inpaint from: held


def test_the_mean_fill_of_a_frame_no_source_sees_holds_in_the_inpaintings_place():
    frame, held = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    out = fill_unseen(frame, torch.ones(1, 1, 4, 4, dtype=torch.bool), held, "clamp_telea")
    assert torch.equal(out, torch.full_like(frame, 0.5))
