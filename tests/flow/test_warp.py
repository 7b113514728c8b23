"""Hand-checkable tests of the one flow convention (flow/warp.py)."""
import pytest
import torch

from flow.warp import accumulate_flows, backward_warp, compose_flows, forward_splat, resize_flow, reverse_flow


def _const_flow(dx, dy, b=1, h=16, w=20):
    f = torch.zeros(b, 2, h, w)
    f[:, 0], f[:, 1] = dx, dy
    return f


def test_one_pixel_shift_is_exact():
    img = torch.rand(2, 3, 16, 20)
    out = backward_warp(img, _const_flow(1.0, 0.0, b=2))
    # sampled one pixel to the right: exact up to float32 rounding of the normalised coordinates
    torch.testing.assert_close(out[..., :-1], img[..., 1:], atol=1e-5, rtol=0)
    out = backward_warp(img, _const_flow(0.0, -1.0, b=2))
    torch.testing.assert_close(out[..., 1:, :], img[..., :-1, :], atol=1e-5, rtol=0)


def test_zero_flow_is_identity_and_mask():
    img = torch.rand(1, 4, 9, 7)
    out, mask = backward_warp(img, torch.zeros(1, 2, 9, 7), return_mask=True)
    torch.testing.assert_close(out, img)
    assert mask.min() == 1
    _, mask = backward_warp(img, _const_flow(2.0, 0.0, h=9, w=7), return_mask=True)
    assert mask[0, 0, 0, -2:].sum() == 0 and mask[0, 0, 0, :-2].min() == 1


def test_resize_constant_flow_scales_magnitude():
    f = _const_flow(3.0, -2.0, h=32, w=48)
    r = resize_flow(f, (8, 24))
    torch.testing.assert_close(r[:, 0], torch.full((1, 8, 24), 1.5))
    torch.testing.assert_close(r[:, 1], torch.full((1, 8, 24), -0.5))


def test_accumulate_two_translations_is_their_sum():
    a, b = _const_flow(1.5, 0.5), _const_flow(-0.5, 2.0)
    acc = accumulate_flows([a, b])
    assert acc.shape == (1, 2, 2, 16, 20)
    torch.testing.assert_close(acc[:, 1], a + b)
    torch.testing.assert_close(compose_flows(a, b), a + b)


def test_splat_then_warp_back_is_identity_inside():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 24, 24)
    fwd = _const_flow(3.0, 2.0, h=24, w=24)
    moved, weight = forward_splat(img, fwd)
    back = backward_warp(moved, fwd)
    torch.testing.assert_close(back[..., 2:-5, 2:-5], img[..., 2:-5, 2:-5], atol=1e-5, rtol=0)
    assert weight[..., :2, :].max() == 0  # holes where nothing arrived
    for mode in ("softmax", "sum"):
        out, _ = forward_splat(img, fwd, mode=mode, metric=torch.randn(1, 1, 24, 24))
        assert out.shape == img.shape


def test_splat_is_differentiable_and_reverse_flow():
    f = _const_flow(2.0, 0.0, h=12, w=12).requires_grad_()
    rev, w = reverse_flow(f, t=0.5)
    torch.testing.assert_close(rev[..., :, 2:], torch.full_like(rev[..., :, 2:], 0) + _const_flow(-1.0, 0.0, h=12, w=12)[..., 2:])
    rev.sum().backward()
    assert f.grad is not None


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.full((1, 2, 4, 4), float("nan")), "NaN"),
        (torch.zeros(1, 3, 4, 4), r"\(B, 2, H, W\)"),
        (torch.zeros(1, 2, 5, 4), "resize"),
    ],
)
def test_bad_flow_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        backward_warp(torch.zeros(1, 1, 4, 4), bad)


def test_reverse_flow_rejects_bad_t():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reverse_flow(torch.zeros(1, 2, 4, 4), t=1.5)
