"""A full disk gives one line, exit 2 and nothing left behind (issue 23, defect 5: tracebacks in ``retime``,
``speed --compare`` (which also left out.mp4 behind, exit 1) and ``interpolate --n``; ``train``'s checkpoint).

Each is tested by making the writer fail as a full disk does (OSError ENOSPC, or the library's own error
type: safetensors' ``SafetensorError``, torch.save's ``RuntimeError``), and, where this process may mount
one (root in a sandbox that allows it), on a real tmpfs of a few kilobytes.
"""
from __future__ import annotations

import contextlib
import errno
import json
import subprocess
import uuid

import pytest
import torch

from flow.diskfull import disk_full
from flow.video import write_video
from motionguide.cli import main

TINY = '{"num_layers": 1, "num_heads": 2, "head_dim": 12, "ffn_dim": 16, "text_dim": 8, "freq_dim": 16, "steps": 2}'




def _full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _assert_one_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("motionguide ")]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], err
    assert errors[0].startswith(f"motionguide {command}: error: no space left on the device"), errors[0]
    return errors[0]


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_retime_full_disk(media, capsys, monkeypatch):
    import flow.video

    monkeypatch.setattr(flow.video.VideoWriter, "write", _full)
    before = _names(media)
    rc, out, err = _run(["retime", media / "clip.mp4", "-o", media / "out.mp4", "--fps", "16", "--backend", "dis",
                         "--no-progress"], capsys)
    assert rc == 2 and _assert_one_line(err, "retime") and out == ""
    assert _names(media) == before  # no out.mp4, no temporary


@pytest.mark.parametrize("failing", ["video", "compare"])
def test_speed_compare_full_disk_leaves_neither(failing, media, capsys, monkeypatch):
    """The video and its --compare strip are one unit: a full disk on either leaves neither."""
    import flow.video
    from motionguide import jobs

    if failing == "video":
        monkeypatch.setattr(flow.video.VideoWriter, "write", _full)
    else:
        monkeypatch.setattr(jobs, "save_compare", _full)
    before = _names(media)
    rc, out, err = _run(["speed", media / "clip.mp4", "--factor", "0.5", "-o", media / "out.mp4", "--compare",
                         media / "out.png", "--no-progress"], capsys)
    assert rc == 2 and _assert_one_line(err, "speed")
    assert _names(media) == before


def test_interpolate_n_full_disk(media, capsys, monkeypatch):
    import flow.io

    monkeypatch.setattr(flow.io, "write_image", _full)
    before = _names(media)
    rc, out, err = _run(["interpolate", media / "a.png", media / "b.png", "--n", "3", "-o", media / "mids",
                         "--backend", "dis"], capsys)
    assert rc == 2 and _assert_one_line(err, "interpolate")
    assert _names(media) == before


def test_the_libraries_full_disk_errors_are_recognised(tmp_path):
    from safetensors import SafetensorError

    e = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert disk_full(e).errno == errno.ENOSPC
    # torch.save on a full tmpfs says only this; it counts where the disk is (nearly) full
    e = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert disk_full(e, tmp_path) is None  # this disk has room: not a full disk
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded")).errno == errno.EDQUOT
    assert disk_full(ValueError("bad")) is None


def _train(out, steps, capsys, *extra):
    return _run(["train", "base", "--steps", steps, "--checkpoint-every", "1", "--batch-size", "1", "--threads", "1",
                 "--no-progress", "--model-config", TINY, "--out", out, *extra], capsys)


def test_train_full_disk_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    """safetensors raises its own error type on a full disk; the previous checkpoint stays intact and the
    same command resumes from it."""
    import safetensors.torch
    from safetensors import SafetensorError

    out = tmp_path / "run"
    real, calls = safetensors.torch.save_file, []

    def save_file(tensors, path, *a, **k):
        calls.append(path)
        if len([c for c in calls if str(c).endswith("trainable.safetensors")]) == 2:  # the second checkpoint
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    rc, out_text, err = _train(out, "2", capsys)
    assert rc == 2, err
    line = _assert_one_line(err, "train")
    assert "previous checkpoint" in line and "run the same command to resume" in line, line
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 1 and (out / "checkpoint" / "optimizer.pt").is_file()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no half-written folder
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    rc, out_text, err = _train(out, "2", capsys)
    assert rc == 0 and "resumed base training" in out_text + err


# ------------------------------------------------------------------------------------------ real tmpfs


@contextlib.contextmanager
def _tmpfs(path, size: str):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"mg{uuid.uuid4().hex[:6]}", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); the monkeypatched tests cover it")
    try:
        yield path
    finally:
        import gc

        gc.collect()  # a failed writer's file object may still be open there
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # detached once the last file closes


def test_retime_and_speed_on_a_full_tmpfs(media, tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    write_video(media / "noise.mp4", torch.rand(3, 3, 64, 96, generator=g), fps=8, crf=0)  # about 50 kB
    with _tmpfs(tmp_path / "small", "12k") as small:
        rc, _, err = _run(["retime", media / "noise.mp4", "-o", small / "out.mp4", "--fps", "32", "--crf", "0",
                           "--backend", "dis", "--no-progress"], capsys)
        assert rc == 2 and _assert_one_line(err, "retime") and _names(small) == []
        rc, _, err = _run(["speed", media / "noise.mp4", "--factor", "0.5", "-o", small / "out.mp4", "--compare",
                           small / "out.png", "--no-progress"], capsys)
        assert rc == 2 and _assert_one_line(err, "speed") and _names(small) == []


def test_train_on_a_full_tmpfs_keeps_the_previous_checkpoint(tmp_path, capsys):
    """A tiny run's checkpoint is about 290 kB and its model 70 kB: 512 kB hold the first checkpoint, not
    the second beside it (the previous one stays until the new one is complete)."""
    with _tmpfs(tmp_path / "small", "512k") as small:
        rc, _, err = _train(small / "run", "2", capsys)
        assert rc == 2, err
        line = _assert_one_line(err, "train")
        assert "previous checkpoint" in line, line
        state = json.loads((small / "run" / "checkpoint" / "state.json").read_text())
        assert state["step"] == 1
        assert [p.name for p in (small / "run").iterdir() if p.name.startswith(".")] == []
