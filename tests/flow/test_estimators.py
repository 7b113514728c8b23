"""Flow estimators: DIS on a known translation of a real photograph, RAFT shapes, bad input, weights errors."""
from __future__ import annotations

import pytest
import torch

from flow.estimators import (
    DIS_PRESETS,
    RAFTEstimator,
    WeightsNotFoundError,
    available_estimators,
    bidirectional_flow,
    clip_flows,
    find_raft_weights,
    get_estimator,
)






def _shifted_pair(img, dx, dy, h=160, w=224, y0=200, x0=150):
    # frame1 = frame0 moved by (-dx, -dy): the content at x in frame0 is at x - (dx, dy) in frame1.
    f0 = img[:, y0 : y0 + h, x0 : x0 + w][None]
    f1 = img[:, y0 + dy : y0 + dy + h, x0 + dx : x0 + dx + w][None]
    return f0, f1


@pytest.mark.parametrize("preset", ["balanced", "quality"])
@pytest.mark.parametrize("dx,dy", [(3, -2), (-9, 6)])
def test_dis_recovers_global_translation_of_a_photo(photo, preset, dx, dy):
    f0, f1 = _shifted_pair(photo, dx, dy)
    flow = get_estimator("dis", preset=preset)(f0, f1)
    assert flow.shape == (1, 2, 160, 224) and flow.dtype == torch.float32
    inner = flow[0, :, 16:-16, 16:-16]  # borders: the content there leaves the frame
    err = (inner - torch.tensor([-dx, -dy], dtype=torch.float32).view(2, 1, 1)).norm(dim=0)
    assert float(inner[0].mean()) == pytest.approx(-dx, abs=0.1)
    assert float(inner[1].mean()) == pytest.approx(-dy, abs=0.1)
    assert float(err.median()) < 0.1


def test_dis_presets_and_uint8_input(photo):
    f0, f1 = _shifted_pair(photo, 2, 1, h=64, w=96)
    u0, u1 = (f0 * 255).round().to(torch.uint8), (f1 * 255).round().to(torch.uint8)
    for preset in DIS_PRESETS:
        est = get_estimator("dis", preset=preset)
        # integer images are converted, not refused, and give the same flow as the float version
        assert torch.equal(est(u0, u1), est(f0, f1))
    with pytest.raises(ValueError, match="unknown preset 'slow'.*balanced"):
        get_estimator("dis", preset="slow")
    with pytest.raises(TypeError, match="unknown option"):
        get_estimator("dis", patch_sise=4)
    est = get_estimator("dis", preset="medium", patch_size=4, finest_scale=2)
    assert est._stages == [("MEDIUM", {"PatchSize": 4, "FinestScale": 2})]


@pytest.mark.parametrize("preset", ["balanced", "quality"])
def test_dis_flow_does_not_depend_on_earlier_calls_of_other_sizes(photo, preset):
    """OpenCV's DIS rewrites its patch size and finest scale on a too-small frame and keeps them: one small
    pair must not change the flow of the larger pairs after it (estimators are reused across clips)."""
    f0, f1 = _shifted_pair(photo, 7, -4, h=200, w=300, y0=100, x0=100)
    fresh = get_estimator("dis", preset=preset)(f0, f1)
    est = get_estimator("dis", preset=preset)
    est(f0[..., :64, :64].contiguous(), f1[..., :64, :64].contiguous())
    assert torch.equal(est(f0, f1), fresh)
    est.refine(f0[..., :64, :64].contiguous(), f1[..., :64, :64].contiguous(), torch.zeros(1, 2, 64, 64))
    assert torch.equal(est(f0, f1), fresh)


def test_dis_refine_searches_from_a_given_flow(photo):
    """A start 2 px off (a chained flow's drift) is pulled back to the true translation; bad starts refused."""
    f0, f1 = _shifted_pair(photo, 5, -3, h=96, w=128)
    est = get_estimator("dis")
    truth = torch.tensor([-5.0, 3.0]).view(1, 2, 1, 1)
    start = (truth + torch.tensor([2.0, -1.5]).view(1, 2, 1, 1)).expand(1, 2, 96, 128).contiguous()
    out = est.refine(f0, f1, start)
    assert out.shape == (1, 2, 96, 128) and out.dtype == torch.float32
    inner = lambda f: (f[0, :, 16:-16, 16:-16] - truth[0]).norm(dim=0).median()  # noqa: E731
    assert float(inner(start)) > 2.4 and float(inner(out)) < 0.3
    with pytest.raises(ValueError, match="matching the frames"):
        est.refine(f0, f1, start[..., :64])
    with pytest.raises(ValueError, match="finite"):
        est.refine(f0, f1, start * float("nan"))


@pytest.mark.parametrize("preset", ["ultrafast", "balanced", "quality"])
def test_dis_tiny_frames(preset):
    # OpenCV's DIS asserts below ~12 px, and reads out of bounds (a segmentation fault) on wide, short frames
    # whose pyramid it re-picks from the width; we upsample for it instead. Each size on a fresh estimator too,
    # since an earlier size used to change what DIS does with the next.
    est = get_estimator("dis", preset=preset)
    sizes = [(2, 3), (10, 10), (7, 40), (16, 92), (24, 128), (10, 200), (300, 24)]
    for h, w in sizes:
        fresh = get_estimator("dis", preset=preset)(torch.rand(1, 3, h, w), torch.rand(1, 3, h, w))
        assert fresh.shape == (1, 2, h, w) and torch.isfinite(fresh).all()
    for h, w in sizes:
        flow = est(torch.rand(1, 3, h, w), torch.rand(1, 3, h, w))
        assert flow.shape == (1, 2, h, w) and torch.isfinite(flow).all()


def test_grey_and_rgba_inputs(photo):
    f0, f1 = _shifted_pair(photo, 2, 1, h=64, w=96)
    est = get_estimator("dis")
    ref = est(f0, f1)
    grey0, grey1 = f0.mean(1, keepdim=True), f1.mean(1, keepdim=True)
    assert est(grey0, grey1).shape == (1, 2, 64, 96)
    rgba0 = torch.cat((f0, torch.ones_like(f0[:, :1])), 1)
    rgba1 = torch.cat((f1, torch.zeros_like(f1[:, :1])), 1)
    assert torch.equal(est(rgba0, rgba1), ref)  # alpha dropped
    with pytest.raises(ValueError, match="expected 1 \\(grey\\), 3 \\(RGB\\) or 4 \\(RGBA\\) channels.*got 2"):
        est(f0[:, :2], f1[:, :2])


def test_mismatched_sizes_and_bad_input():
    est = get_estimator("farneback")
    with pytest.raises(ValueError, match=r"same batch size and height x width.*\(1, 3, 32, 32\) and \(1, 3, 32, 40\)"):
        est(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))
    with pytest.raises(ValueError, match="add a batch dimension"):
        est(torch.rand(3, 32, 32), torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="NaN/inf"):
        est(torch.full((1, 3, 8, 8), float("nan")), torch.rand(1, 3, 8, 8))


def test_farneback_translation(photo):
    f0, f1 = _shifted_pair(photo, 2, -1)
    inner = get_estimator("farneback")(f0, f1)[0, :, 16:-16, 16:-16]
    assert float(inner[0].median()) == pytest.approx(-2, abs=0.2)
    assert float(inner[1].median()) == pytest.approx(1, abs=0.2)


def test_registry():
    assert available_estimators() == ["dis", "farneback", "raft_small", "raft_large"]
    with pytest.raises(ValueError, match=r"unknown flow method 'pwc'; expected one of \['dis', 'farneback'"):
        get_estimator("pwc")
    with pytest.raises(ValueError, match="dis has no weights"):
        get_estimator("dis", weights="random")
    with pytest.raises(ValueError, match="CPU"):
        get_estimator("dis", device="cuda")
    with pytest.raises(ValueError, match="num_flow_updates"):
        get_estimator("RAFT-small", weights="random", num_flow_updates=0)  # alias resolved, option checked


@pytest.mark.parametrize("variant", ["raft_small", "raft_large"])
def test_raft_random_weights_odd_sizes(one_thread, variant):
    torch.manual_seed(0)
    est = get_estimator(variant, weights="random", num_flow_updates=1)
    for h, w in [(37, 53), (129, 131)]:  # under RAFT's 128 minimum (upsampled) and not a multiple of 8 (padded)
        flow = est(torch.rand(2, 3, h, w), torch.rand(2, 3, h, w))
        assert flow.shape == (2, 2, h, w) and flow.dtype == torch.float32 and torch.isfinite(flow).all()


def test_raft_dtype_and_uint8(one_thread):
    est = get_estimator("raft_small", weights="random", dtype=torch.bfloat16, num_flow_updates=1)
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        get_estimator("raft_small", weights="random", dtype=torch.float64)
    out = est(torch.randint(0, 256, (1, 3, 40, 40), dtype=torch.uint8), torch.randint(0, 256, (1, 3, 40, 40), dtype=torch.uint8))
    assert out.dtype == torch.float32 and out.shape == (1, 2, 40, 40)


def test_raft_local_checkpoint_round_trip(tmp_path, one_thread):
    torch.manual_seed(1)
    est = get_estimator("raft_small", weights="random", num_flow_updates=1)
    # a DataParallel-style checkpoint wrapped in {"state_dict": ...}: both unwrapped on load
    sd = {"module." + k: v for k, v in est.model.state_dict().items()}
    torch.save({"state_dict": sd}, tmp_path / "raft.pth")
    loaded = get_estimator("raft_small", weights=tmp_path / "raft.pth", num_flow_updates=1)
    x0, x1 = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    assert torch.equal(loaded(x0, x1), est(x0, x1))
    with pytest.raises(ValueError, match="expected a torchvision raft_large state dict.*needs --method raft_small"):
        RAFTEstimator("raft_large", weights=tmp_path / "raft.pth")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        get_estimator("raft_small", weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="got a text file, which is not a checkpoint"):
        get_estimator("raft_small", weights=tmp_path / "junk.pth")


def test_raft_missing_default_weights_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    assert find_raft_weights("raft_small") is None
    with pytest.raises(WeightsNotFoundError) as e:
        get_estimator("raft_small", download=False)  # never touch the network in tests
    msg = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth") in msg
    assert "--weights PATH" in msg and "internet" in msg
    monkeypatch.setenv("MOTIONGUIDE_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="C_T_SKHT_V2"):
        get_estimator("raft_large")
    with pytest.raises(FileNotFoundError, match="'XYZ': no such checkpoint file, and not one of torchvision's"):
        get_estimator("raft_small", weights="XYZ")


def test_bidirectional_and_clip(photo, one_thread):
    f0, f1 = _shifted_pair(photo, 2, 0, h=64, w=96)
    fw, bw = bidirectional_flow(get_estimator("dis"), f0, f1)
    assert float(fw[0, 0, 16:-16, 16:-16].median()) == pytest.approx(-2, abs=0.1)
    assert float(bw[0, 0, 16:-16, 16:-16].median()) == pytest.approx(2, abs=0.1)
    raft = get_estimator("raft_small", weights="random", num_flow_updates=1)
    a, b = bidirectional_flow(raft, f0, f1)  # one batched call
    assert torch.allclose(a, raft(f0, f1), atol=1e-4) and torch.allclose(b, raft(f1, f0), atol=1e-4)

    clip = torch.stack([photo[:, 200 : 264, 150 + 2 * i : 246 + 2 * i] for i in range(5)])
    flows = clip_flows(get_estimator("dis"), clip, batch_size=3)
    assert flows.shape == (4, 2, 64, 96)
    assert torch.allclose(flows[:, 0, 16:-16, 16:-16].median(), torch.tensor(-2.0), atol=0.1)
    fwd, bwd = clip_flows(get_estimator("dis"), clip, bidirectional=True, batch_size=2)
    assert torch.equal(fwd, flows) and bwd.shape == (4, 2, 64, 96)
    with pytest.raises(ValueError, match="at least 2 frames"):
        clip_flows(get_estimator("dis"), clip[:1])


@pytest.mark.gpu
def test_raft_cuda_autocast_half():
    est = get_estimator("raft_small", weights="random", device="cuda", dtype=torch.float16, num_flow_updates=2)
    x0, x1 = torch.rand(2, 3, 37, 53), torch.rand(2, 3, 37, 53)
    out = est(x0, x1)  # CPU frames in: moved to the GPU and the flow brought back
    assert out.shape == (2, 2, 37, 53) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.isfinite(out).all()
    assert est(x0.cuda(), x1.cuda()).device.type == "cuda"
