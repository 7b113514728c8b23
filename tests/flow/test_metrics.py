"""Metrics: EPE by hand, masks, Sintel ground truth; PSNR/SSIM against scikit-image."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flow.metrics import epe, epe_map, flow_metrics, psnr, ssim


def test_epe_by_hand_and_masks():
    f = torch.zeros(1, 2, 2, 2)
    g = torch.zeros(1, 2, 2, 2)
    g[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # EPE 5 at one pixel of four
    assert epe(f, g) == pytest.approx(1.25)
    mask = torch.tensor([[1, 0], [0, 0]])
    assert epe(f, g, mask) == pytest.approx(5.0)
    assert epe(f[0], g[0], ~mask.bool()) == 0.0  # (2, H, W) and bool masks accepted
    assert math.isnan(epe(f, g, torch.zeros(2, 2)))
    assert epe_map(f, g)[0, 0].tolist() == [[5.0, 0.0], [0.0, 0.0]]
    g[0, :, 1, 1] = float("nan")  # unknown ground truth is left out, not propagated
    assert epe(f, g) == pytest.approx(5 / 3)


def test_flow_metrics_occlusion_and_invalid():
    f = torch.zeros(2, 4, 4)
    g = torch.zeros(2, 4, 4)
    g[0, 0, :] = 10.0  # top row: EPE 10
    occ = torch.zeros(4, 4)
    occ[0] = 1
    m = flow_metrics(f, g, occlusion=occ)
    assert m["epe"] == pytest.approx(2.5) and m["epe_noc"] == 0.0 and m["px5"] == pytest.approx(0.25)
    m = flow_metrics(f, g, invalid=occ)
    assert m["epe"] == 0.0


def test_epe_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        epe(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match=r"expected shape \(2, H, W\)"):
        epe(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="H x W"):
        epe(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(3, 3))


def test_psnr_ssim_match_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 40, 48, generator=g)
    b = (a + 0.05 * torch.randn(2, 3, 40, 48, generator=g)).clamp(0, 1)
    ref_p = np.mean([peak_signal_noise_ratio(a[i].numpy(), b[i].numpy(), data_range=1.0) for i in range(2)])
    ref_s = np.mean(
        [
            structural_similarity(
                a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(), channel_axis=2,
                gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
            )
            for i in range(2)
        ]
    )
    assert psnr(a, b) == pytest.approx(ref_p, abs=1e-4)
    assert ssim(a, b) == pytest.approx(ref_s, abs=1e-4)
    assert ssim(a[0], a[0]) == pytest.approx(1.0, abs=1e-6) and psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, b[:, :, :-1])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[..., :8, :8], b[..., :8, :8])
