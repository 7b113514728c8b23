"""Forward-backward occlusion: a consistent translation is visible, a disoccluded band is flagged."""
from __future__ import annotations

import pytest
import torch

from flow.occlusion import fb_consistency, in_frame_mask, occlusion_masks, out_of_frame_mask
from flow.warp import backward_warp


def test_consistent_translation_is_visible_except_leaving_pixels():
    fw = torch.zeros(2, 2, 6, 8)
    fw[:, 0] = 2.0
    occ = fb_consistency(fw, -fw)
    assert occ.shape == (2, 1, 6, 8) and occ.dtype == torch.float32
    assert occ[:, :, :, :6].sum() == 0  # x + 2 inside the frame: consistent
    assert (occ[:, :, :, 6:] == 1).all()  # x + 2 > W - 1: out of frame
    assert fb_consistency(fw, -fw, include_out_of_frame=False).sum() == 0


def test_moving_square_occludes_what_it_covers():
    # A square moves 3 px right over a static background. Frame-0 pixels just right of the square are
    # covered in frame 1: their forward flow is 0, but the backward flow at the same place (the square,
    # which came from 3 px to the left) is -3, so the round trip fails there and only there.
    h = w = 16
    fw = torch.zeros(1, 2, h, w)
    fw[:, 0, 4:10, 4:10] = 3.0
    bw = torch.zeros(1, 2, h, w)
    bw[:, 0, 4:10, 7:13] = -3.0
    occ = fb_consistency(fw, bw)[0, 0]
    expected = torch.zeros(h, w)
    expected[4:10, 10:13] = 1.0
    assert torch.equal(occ, expected)


def test_tolerance_grows_with_motion():
    fw = torch.full((1, 2, 4, 4), 0.0)
    fw[:, 0] = 20.0
    bw = torch.full((1, 2, 4, 4), 0.0)
    bw[:, 0] = -21.0  # 1 px round-trip error: inside 0.01 * (400 + 441) + 0.5 = 8.9 px^2
    assert fb_consistency(fw, bw, include_out_of_frame=False).sum() == 0
    assert fb_consistency(fw, bw, alpha1=0.0, alpha2=0.5, include_out_of_frame=False).sum() == 16


def test_out_of_frame_and_both_directions():
    f = torch.zeros(1, 2, 3, 3)
    f[:, 1] = -1.0  # up one row: the top row leaves the frame
    assert out_of_frame_mask(f)[0, 0].tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
    occ0, occ1 = occlusion_masks(f, -f)
    assert occ0[0, 0, 0].sum() == 3 and occ1[0, 0, 2].sum() == 3


def test_in_frame_rule_and_its_slack():
    f = torch.zeros(1, 2, 2, 4)
    f[:, 0] = torch.tensor([-0.5, 0.25, 0.75, 0.5])  # column x samples x + dx
    assert in_frame_mask(f)[0, 0, 0].tolist() == [0, 1, 1, 0]  # -0.5 and 3.5 lie past the outer centres
    assert in_frame_mask(f, slack=0.5)[0, 0, 0].tolist() == [1, 1, 1, 1]  # within the edge pixels' extent
    assert in_frame_mask(f * 2, slack=0.5)[0, 0, 0].tolist() == [0, 1, 1, 0]  # -1 and 4: beyond it
    assert torch.equal(out_of_frame_mask(f), 1 - in_frame_mask(f))
    # slack 0 is where a backward warp reads real pixels (its own mask)
    g = torch.randn(2, 2, 5, 6, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.equal(in_frame_mask(g), backward_warp(torch.zeros(2, 1, 5, 6), g, return_mask=True)[1])
    with pytest.raises(ValueError, match="slack"):
        in_frame_mask(f, slack=-1)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        in_frame_mask(torch.zeros(1, 3, 2, 2))


def test_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        fb_consistency(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    bad = torch.zeros(1, 2, 4, 4)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN/inf"):
        fb_consistency(bad, torch.zeros(1, 2, 4, 4))
