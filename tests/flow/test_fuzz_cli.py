"""Hostile files through every reader of ``motionguide flow``, ``interpolate`` and ``retime`` (issue 14 item 7).

In the spirit of PyAV's random-input test: random bytes, truncated files, empty files and files of the wrong
kind, given as images, videos, frame folders and weights (by flag and by $MOTIONGUIDE_RIFE_WEIGHTS). Each run
must exit 2 with one line on stderr (captured at the file descriptor, so warnings printed by OpenCV, libpng,
FFmpeg or torch count too), no traceback, and nothing left in the output folder.
"""
from __future__ import annotations

import os
import pickle
import random

import pytest
import torch
import torch.nn.functional as F

from flow.io import write_image
from flow.rife_weights import ENV_VAR
from flow.video import write_video
from motionguide.cli import main

_RNG = random.Random(14)


def _texture(h=32, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)[0]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    a = _texture()
    write_image(d / "a.png", a)
    write_image(d / "b.png", torch.roll(a, 2, dims=2))
    write_video(d / "clip.mp4", torch.stack([torch.roll(a, 2 * i, dims=2) for i in range(5)]), fps=10)
    png = (d / "a.png").read_bytes()
    mp4 = (d / "clip.mp4").read_bytes()
    bad = {
        "random.png": bytes(_RNG.randrange(256) for _ in range(700)),
        "truncated.png": png[: len(png) // 2],
        "text.png": b"not an image at all\n",
        "empty.png": b"",
        "video.png": mp4,
        "random.mp4": bytes(_RNG.randrange(256) for _ in range(3000)),
        "truncated.mp4": mp4[: len(mp4) // 2],
        "text.mp4": b"hello\n" * 50,
        "empty.mp4": b"",
        "image.mp4": png,
        "random.pth": bytes(_RNG.randrange(256) for _ in range(500)),
        "text.pkl": b"weights? no\n",
        "image.pkl": png,
        "empty.pkl": b"",
        "garbage.safetensors": bytes(_RNG.randrange(256) for _ in range(500)),
        "evil.pkl": pickle.dumps({"w": _Evil()}),
    }
    for name, data in bad.items():
        (d / name).write_bytes(data)
    torch.save({"w": torch.zeros(3)}, d / "ok.pt")
    full = (d / "ok.pt").read_bytes()
    (d / "truncated.pt").write_bytes(full[: len(full) // 2])
    torch.save({"conv.weight": torch.zeros(2, 2)}, d / "foreign.pth")  # a checkpoint of another network
    torch.save({"w": _Evil()}, d / "evil.pt")
    frames = d / "frames"
    frames.mkdir()
    write_image(frames / "f0.png", a)
    (frames / "f1.png").write_bytes(png[: len(png) // 3])
    return d


def _fails(argv, capfd, out_dir, env=None, monkeypatch=None):
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, str(v))
    rc = main([str(a) for a in argv])
    err = capfd.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Warning" not in err, err
    assert list(out_dir.iterdir()) == [], f"left behind: {list(out_dir.iterdir())}"
    return lines[0]


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


IMAGES = ["random.png", "truncated.png", "text.png", "empty.png", "video.png", "a.mp4-as-frame"]


@pytest.mark.parametrize("name", IMAGES)
def test_flow_pair_bad_image(files, name, capfd, out_dir):
    second = files / "clip.mp4" if name == "a.mp4-as-frame" else files / name
    _fails(["flow", files / "a.png", second, "-o", out_dir / "f.flo", "--viz", out_dir / "f.png"], capfd, out_dir)


@pytest.mark.parametrize("name", IMAGES)
def test_interpolate_bad_image(files, name, capfd, out_dir):
    second = files / "clip.mp4" if name == "a.mp4-as-frame" else files / name
    _fails(["interpolate", second, files / "b.png", "-o", out_dir / "m.png", "--backend", "dis"], capfd, out_dir)
    _fails(["interpolate", files / "a.png", second, "--n", "3", "-o", out_dir / "mids", "--backend", "dis"],
           capfd, out_dir)


VIDEOS = ["random.mp4", "truncated.mp4", "text.mp4", "empty.mp4", "image.mp4"]


@pytest.mark.parametrize("name", VIDEOS)
def test_flow_clip_bad_video(files, name, capfd, out_dir):
    _fails(["flow", files / name, "-o", out_dir / "flows", "--no-progress"], capfd, out_dir)


def test_flow_clip_folder_with_a_damaged_frame(files, capfd, out_dir):
    line = _fails(["flow", files / "frames", "-o", out_dir / "flows", "--no-progress"], capfd, out_dir)
    assert "f1.png" in line and "end is missing" in line


@pytest.mark.parametrize("name", VIDEOS)
def test_retime_bad_video(files, name, capfd, out_dir):
    _fails(["retime", files / name, "-o", out_dir / "r.mp4", "--fps", "20", "--backend", "dis", "--no-progress"],
           capfd, out_dir)


WEIGHTS = ["random.pth", "text.pkl", "image.pkl", "empty.pkl", "garbage.safetensors", "evil.pkl", "evil.pt",
           "truncated.pt", "foreign.pth", "ok.pt", "frames", "missing.pkl"]


@pytest.mark.parametrize("name", WEIGHTS)
def test_interpolate_bad_rife_weights(files, name, capfd, out_dir):
    line = _fails(["interpolate", files / "a.png", files / "b.png", "-o", out_dir / "m.png", "--backend", "ifnet",
                   "--weights", files / name], capfd, out_dir)
    assert line.rstrip().endswith((".", ")")), line  # a whole sentence, not cut off


@pytest.mark.parametrize("name", ["text.pkl", "truncated.pt", "missing.pkl"])
def test_env_var_bad_rife_weights(files, name, capfd, out_dir, monkeypatch):
    env = {ENV_VAR: files / name}
    _fails(["interpolate", files / "a.png", files / "b.png", "-o", out_dir / "m.png"], capfd, out_dir, env, monkeypatch)
    line = _fails(["retime", files / "clip.mp4", "-o", out_dir / "r.mp4", "--fps", "20", "--no-progress"],
                  capfd, out_dir, env, monkeypatch)
    assert ENV_VAR in line or str(files / name) in line


@pytest.mark.parametrize("name", ["random.pth", "image.pkl", "garbage.safetensors", "evil.pt", "truncated.pt",
                                  "foreign.pth", "missing.pkl"])
def test_flow_bad_raft_weights(files, name, capfd, out_dir):
    _fails(["flow", files / "a.png", files / "b.png", "-o", out_dir / "f.flo", "--method", "raft_small",
            "--weights", files / name], capfd, out_dir)


@pytest.mark.parametrize("name", ["random.pth", "evil.pkl"])
def test_retime_bad_rife_weights(files, name, capfd, out_dir):
    _fails(["retime", files / "clip.mp4", "-o", out_dir / "r.mp4", "--fps", "20", "--backend", "ifnet",
            "--weights", files / name, "--no-progress"], capfd, out_dir)


@pytest.mark.parametrize(
    "argv",
    [
        ["flow", "{a}", "{b}", "-o", "{out}/f.txt"],  # wrong extension of the output
        ["flow", "{a}", "{b}", "-o", "{out}/f.flo", "--viz", "{out}/v.txt"],
        ["flow", "{a}", "{b}", "-o", "{out}/f.flo", "--viz", "{out}/f.flo"],
        ["flow", "{a}", "{txt}", "-o", "{out}/f.flo"],  # wrong extension of an input
        ["interpolate", "{a}", "{b}", "-o", "{out}/m.flo", "--backend", "dis"],
        ["retime", "{clip}", "-o", "{out}/r.avi", "--fps", "20", "--backend", "dis"],
        ["retime", "{a}", "-o", "{out}/r.mp4", "--fps", "20", "--backend", "dis", "--no-progress"],
    ],
)
def test_wrong_extensions(files, argv, capfd, out_dir):
    (files / "notes.txt").write_text("x")
    fill = {"a": files / "a.png", "b": files / "b.png", "clip": files / "clip.mp4", "out": out_dir,
            "txt": files / "notes.txt"}
    _fails([a.format(**fill) for a in argv], capfd, out_dir)
