"""Feature-level warping of tokens, checked by hand on integer shifts."""
from __future__ import annotations

import torch

from motionguide.feature import TokenPairs, blend_tokens, token_pairs
from motionguide.latent import LatentGuidance


def pairs_shift(dx: float, r: int = 4, c: int = 6) -> TokenPairs:
    flow = torch.zeros(1, 2, r, c)
    flow[:, 0] = dx
    return TokenPairs(tgt=torch.tensor([1]), src=torch.tensor([0]), flow=flow, weight=torch.ones(1, 1, r, c, 1))


def test_blend_tokens_integer_shift():
    h5 = torch.randn(1, 2, 4, 6, 5)
    p = pairs_shift(1.0)
    out = blend_tokens(h5, p, 1.0)
    assert torch.equal(out[:, 0], h5[:, 0])  # the source frame is untouched
    # target token (y, x) now holds source token (y, x + 1); the last column reads the border
    assert torch.allclose(out[:, 1, :, :-1], h5[:, 0, :, 1:], atol=1e-6)
    assert torch.allclose(out[:, 1, :, -1], h5[:, 0, :, -1], atol=1e-6)
    assert torch.equal(blend_tokens(h5, p, 0.0), h5)  # gate 0 (untrained): exact no-op
    half = blend_tokens(h5, p, 0.5)
    assert torch.allclose(half[:, 1, :, :-1], 0.5 * (h5[:, 1, :, :-1] + h5[:, 0, :, 1:]), atol=1e-6)
    gate = torch.zeros(5)
    gate[2] = 1.0  # per-channel gate: only channel 2 moves
    g = blend_tokens(h5, p, gate)
    assert torch.equal(g[..., [0, 1, 3, 4]], h5[..., [0, 1, 3, 4]])
    assert torch.allclose(g[:, 1, :, :-1, 2], h5[:, 0, :, 1:, 2], atol=1e-6)


def test_token_pairs_resizes_flow_and_skips_self():
    f, h, w = 4, 8, 12
    flows = torch.zeros(1, f, 2, 2, h, w)
    flows[:, :, 0, 0] = 4.0  # 4 latent cells = 2 tokens at patch 2
    sources = torch.tensor([[0, -1], [0, 3], [0, 3], [3, -1]])
    weights = torch.full((1, f, 2, 1, h, w), 0.5)
    lg = LatentGuidance(torch.zeros(1, 4, f, h, w), torch.ones(1, 1, f, h, w), sources, flows, weights)
    p = token_pairs(lg, (4, 4, 6), pt=1, batch=2, device=torch.device("cpu"))
    assert p.tgt.tolist() == [1, 1, 2, 2] and p.src.tolist() == [0, 3, 0, 3]  # frames 0 and 3 are their own sources
    assert p.flow.shape == (2 * 4, 2, 4, 6) and torch.allclose(p.flow[0, 0], torch.full((4, 6), 2.0))
    assert p.weight.shape == (2, 4, 4, 6, 1)
    # temporal patch 2: token frame j takes latent frame 2j+1; sources map to token frames s // 2
    p2 = token_pairs(lg, (2, 4, 6), pt=2, batch=1, device=torch.device("cpu"))
    assert p2.tgt.tolist() == [0] and p2.src.tolist() == [1]  # (0 -> 0) and (1 -> 1) are self pairs
    none = LatentGuidance(torch.zeros(1, 4, 1, h, w), torch.ones(1, 1, 1, h, w), torch.tensor([[0]]),
                          torch.zeros(1, 1, 1, 2, h, w), torch.ones(1, 1, 1, 1, h, w))
    assert token_pairs(none, (1, 4, 6), pt=1, batch=1, device=torch.device("cpu")) is None


def test_blend_tokens_inplace_matches_and_gradients_flow():
    h5 = torch.randn(2, 3, 4, 6, 5)
    flow = torch.randn(2 * 3, 2, 4, 6)
    pairs = TokenPairs(tgt=torch.tensor([1, 1, 2]), src=torch.tensor([0, 2, 0]), flow=flow,
                       weight=torch.rand(2, 3, 4, 6, 1) * 0.5)
    gate = torch.randn(5)
    ref = blend_tokens(h5, pairs, gate)
    with torch.no_grad():
        copy = blend_tokens(h5, pairs, gate)
        inpl = h5.clone()
        res = blend_tokens(inpl, pairs, gate, inplace=True)
    assert torch.allclose(copy, ref, atol=1e-6) and torch.allclose(inpl, ref, atol=1e-6) and res.data_ptr() == inpl.data_ptr()
    # two sources of frame 1: w0 (warp0 - h) + w1 (warp1 - h), by hand at a zero flow
    zero = TokenPairs(tgt=torch.tensor([1, 1]), src=torch.tensor([0, 2]), flow=torch.zeros(2, 2, 4, 6),
                      weight=torch.full((1, 2, 4, 6, 1), 0.25))
    one = h5[:1]
    want = one[:, 1] + 0.25 * (one[:, 0] - one[:, 1]) + 0.25 * (one[:, 2] - one[:, 1])
    assert torch.allclose(blend_tokens(one, zero, 1.0)[:, 1], want, atol=1e-6)
    g = torch.zeros(5, requires_grad=True)  # zero-initialised gate: no change, but a live gradient
    x = h5.clone().requires_grad_(True)
    out = blend_tokens(x, pairs, g)
    assert torch.equal(out.detach(), h5)
    out.square().sum().backward()
    assert g.grad.abs().sum() > 0 and x.grad is not None
