"""Outputs are never replaced by surprise (issue 23, defect 1).

An existing output is refused (one line, exit 2, before any work) unless --overwrite / -y; an output equal to
an input is refused even then; the final rename refuses a file that appeared while the command ran; a video
and its --compare strip appear together or not at all; ``train`` holds a lock on --out.
"""
from __future__ import annotations

import os

import pytest

from flow import atomic
from flow import noreplace as noreplace_module
from flow.locks import hold_lock, lock_path
from motionguide.cli import main


@pytest.fixture
def pair(media):
    return media / "a.png", media / "b.png"


@pytest.fixture
def clip(media):
    return media / "clip.mp4"


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name or p.name.endswith(".old"))


def _argv(command, pair, clip, tmp_path):
    return {
        "flow": ["flow", *pair, "-o", tmp_path / "out.flo"],
        "flow --viz": ["flow", *pair, "-o", tmp_path / "new.flo", "--viz", tmp_path / "out.png"],
        "interpolate": ["interpolate", *pair, "-o", tmp_path / "out.png", "--backend", "dis"],
        "retime": ["retime", clip, "-o", tmp_path / "out.mp4", "--fps", "16", "--backend", "dis", "--no-progress"],
        "speed": ["speed", clip, "--factor", "0.5", "-o", tmp_path / "out.mp4", "--no-progress"],
        "speed --compare": ["speed", clip, "--factor", "0.5", "-o", tmp_path / "new.mp4", "--compare",
                            tmp_path / "out.png", "--no-progress"],
        "extend": ["extend", clip, "--frames", "1", "-o", tmp_path / "out.mp4", "--no-progress"],
    }[command]


@pytest.mark.parametrize("command", ["flow", "flow --viz", "interpolate", "retime", "speed", "speed --compare",
                                     "extend"])
def test_an_existing_output_is_refused_before_any_work(command, pair, clip, tmp_path, capsys, monkeypatch):
    argv = _argv(command, pair, clip, tmp_path)
    target = next(a for a in argv if str(a).endswith(("out.flo", "out.png", "out.mp4")))
    target.write_text("mine")
    # "before any work": nothing may be decoded
    monkeypatch.setattr("flow.io.read_image", lambda *a, **k: pytest.fail("read an input before refusing"))
    monkeypatch.setattr("flow.video.read_video", lambda *a, **k: pytest.fail("read an input before refusing"))
    rc, out, err = _run(argv, capsys)
    line = _one_line_error(err)
    assert rc == 2 and "already exists" in line and "--overwrite (or -y)" in line, line
    assert target.read_text() == "mine" and out == ""
    assert _leftovers(tmp_path) == [] and not (tmp_path / "new.flo").exists() and not (tmp_path / "new.mp4").exists()


@pytest.mark.parametrize("flag", ["--overwrite", "-y"])
def test_overwrite_replaces_the_output(flag, pair, tmp_path, capsys):
    (tmp_path / "out.png").write_text("mine")
    (tmp_path / "out.flo").write_text("mine")
    rc, out, err = _run(["interpolate", *pair, "-o", tmp_path / "out.png", "--backend", "dis", flag], capsys)
    assert rc == 0, err
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")
    rc, out, err = _run(["flow", *pair, "-o", tmp_path / "out.flo", flag], capsys)
    assert rc == 0, err
    assert (tmp_path / "out.flo").read_bytes().startswith(b"PIEH")
    assert _leftovers(tmp_path) == []


def test_overwrite_of_an_input_is_still_refused(pair, tmp_path, capsys):
    before = pair[0].read_bytes()
    rc, out, err = _run(["interpolate", *pair, "-o", pair[0], "--backend", "dis", "-y"], capsys)
    assert rc == 2 and "same file as the input" in _one_line_error(err)
    assert pair[0].read_bytes() == before


def test_a_file_that_appears_meanwhile_is_kept(pair, tmp_path, capsys, monkeypatch):
    """Another run writes the same -o while this one works: the final rename refuses to replace it."""
    import flow.io

    out = tmp_path / "out.png"
    real = flow.io.write_image

    def racing(path, *a, **k):
        out.write_text("theirs")  # the other run finishes first
        return real(path, *a, **k)

    monkeypatch.setattr(flow.io, "write_image", racing)
    rc, _, err = _run(["interpolate", *pair, "-o", out, "--backend", "dis"], capsys)
    line = err.strip().splitlines()[-1]  # after the backend notice: one error line, no traceback
    assert "Traceback" not in err and line.startswith("motionguide interpolate: error: ")
    assert rc == 2 and "appeared while this command ran" in line and "[Errno" not in line, line
    assert out.read_text() == "theirs" and _leftovers(tmp_path) == []
    # with --overwrite the same race replaces it, as asked
    rc, _, err = _run(["interpolate", *pair, "-o", out, "--backend", "dis", "-y"], capsys)
    assert rc == 0 and out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("noreplace", ["renameat2", "link", "check"])
def test_rename_noreplace_on_every_path(noreplace, tmp_path, monkeypatch):
    if noreplace != "renameat2":
        monkeypatch.setattr(noreplace_module, "_renameat2", lambda: None)
    if noreplace == "check":  # a file system without hard links
        monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError(1, "Operation not permitted")))
    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("theirs")
    with pytest.raises(FileExistsError, match="appeared while this command ran"):
        atomic.rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "theirs" and (tmp_path / "a").read_text() == "new"
    atomic.rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "new" and not (tmp_path / "a").exists()


def test_a_group_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """The second rename fails: the first output is taken back (removed, or its old version restored)."""
    video, strip = tmp_path / "v.mp4", tmp_path / "v.png"
    real, calls = atomic._commit, []

    def second_fails(tmp, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(tmp, dst)

    monkeypatch.setattr(atomic, "_commit", second_fails)
    with pytest.raises(OSError), atomic.atomic_group([video, strip]) as (a, b):
        a.write_text("video")
        b.write_text("strip")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    video.write_text("old video")  # with --overwrite: the old file comes back
    calls.clear()
    with pytest.raises(OSError), atomic.atomic_group([video, strip]) as (a, b):
        a.write_text("video")
        b.write_text("strip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"] and video.read_text() == "old video"


# ------------------------------------------------------------------------------------------------ train


def test_train_refuses_a_folder_it_cannot_resume(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, _, err = _run(["train", "base", "--steps", "1", "--out", out], capsys)
    assert rc == 2 and "no run to resume" in _one_line_error(err) and "--overwrite" in err
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "state.json").write_text("{}")
    rc, _, err = _run(["train", "base", "--steps", "1", "--out", out, "--no-resume"], capsys)
    assert rc == 2 and "--no-resume starts afresh" in _one_line_error(err)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_second_train_on_the_same_out_says_who_holds_it(tmp_path, capsys):
    out = tmp_path / "run"
    with hold_lock(out):
        rc, _, err = _run(["train", "base", "--steps", "1", "--out", out], capsys)
    line = _one_line_error(err)
    assert rc == 2 and "is being written by another run" in line and f"pid {os.getpid()} on " in line, line
    assert "started 20" in line and not out.exists() and not lock_path(out).exists()


def test_train_holds_the_lock_while_it_runs(tmp_path, capsys, monkeypatch):
    from motionguide.embedded import recipes

    out, seen = tmp_path / "run", {}

    def fake_train(cfg, log=print):
        seen["lock"] = lock_path(out).read_text()
        return {"step": cfg.steps, "out": str(out)}

    monkeypatch.setattr(recipes, "train", fake_train)
    rc, _, err = _run(["train", "base", "--steps", "1", "--out", out], capsys)
    assert rc == 0, err
    assert f'"pid": {os.getpid()}' in seen["lock"] and not lock_path(out).exists()


@pytest.mark.parametrize("option,value", [("--batch-size", "0"), ("--batch-size", "-3"), ("--checkpoint-every", "0"),
                                          ("--steps", "0"), ("--threads", "0"), ("--lr", "0")])
def test_train_refuses_non_positive_counts(option, value, tmp_path, capsys):
    """--batch-size 0 trained with 8 silently (issue 23, defect 7)."""
    rc, _, err = _run(["train", "base", "--steps", "1", option, value, "--out", tmp_path / "r"], capsys)
    line = _one_line_error(err)
    assert rc == 2 and line.startswith(f"motionguide train: error: {option} must be"), line
    assert not (tmp_path / "r").exists()
