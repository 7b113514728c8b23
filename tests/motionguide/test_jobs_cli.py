"""The job commands under hostile input: every output path and value is checked before a frame decodes or
a model loads, no input is overwritten, nothing is silently ignored, bad files end in one line (exit 2)
and leave nothing behind, and --help teaches."""
from __future__ import annotations

import os
import random

import pytest
import torch

from flow.io import write_image
from flow.video import write_video
from motionguide import jobs
from motionguide.cli import main
from motionguide.commands import jobs_cmd


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(9, 3, 32, 48, generator=g)
    write_video(d / "clip.mp4", clip, 8.0)
    write_image(d / "a.png", clip[0])
    return d


def _no_work(monkeypatch):
    """Fail the test if a model loads or a frame decodes (the checks must come first)."""
    def boom(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(jobs, "load_models", boom)
    monkeypatch.setattr("flow.video.read_video", boom)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("motionguide "), err
    return err[-1]


def test_compare_may_not_overwrite_an_input(media, tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch)
    before = (media / "a.png").read_bytes()
    rc = main(["transfer", "--reference", str(media / "clip.mp4"), "--image", str(media / "a.png"),
               "-o", str(tmp_path / "t.mp4"), "--compare", str(media / "a.png")])
    assert rc == 2 and "same file as the input" in _error(capsys)
    assert (media / "a.png").read_bytes() == before and not (tmp_path / "t.mp4").exists()


@pytest.mark.parametrize("compare", ["strip.txt", "s.mp4", "nodir/strip.png"])
def test_a_bad_compare_is_refused_before_the_video_is_written(media, tmp_path, capsys, monkeypatch, compare):
    _no_work(monkeypatch)
    out = tmp_path / "s.mp4"
    rc = main(["speed", str(media / "clip.mp4"), "--factor", "0.5", "-o", str(out), "--compare", str(tmp_path / compare)])
    assert rc == 2 and "--compare" in _error(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, msg", [
    (["speed", "CLIP", "--factor", "0.5", "--strength", "-1"], "--strength: expected 0 .. 1"),
    (["speed", "CLIP", "--factor", "9"], "--factor: expected 0.25 .. 4"),
    (["speed", "CLIP"], "speed needs --factor"),
    (["speed", "CLIP", "--factor", "0.5", "--fps", "0"], "--fps: expected a frame rate above 0"),
    (["speed", "CLIP", "--factor", "0.5", "--fps", "-5"], "--fps: expected a frame rate above 0"),
    (["speed", "CLIP", "--factor", "0.5", "--steps", "0"], "--steps: expected 1 .. 1000"),
    (["extend", "CLIP", "--frames", "100"], "extend in several runs"),
    (["extend", "CLIP", "--frames", "4", "--damping", "1"], "--damping"),
    (["transfer", "--image", "IMG"], "transfer needs --reference"),
    (["transfer", "--demo", "--reference", "CLIP"], "--demo uses built-in clips"),
    (["speed", "CLIP", "--factor", "0.5", "--motion-scale", "nan"], "--motion-scale"),
    (["speed", "CLIP", "--factor", "0.5", "--pipeline", "p", "--model", "m"], "drop one of them"),
])
def test_values_are_checked_before_any_work(media, tmp_path, capsys, monkeypatch, argv, msg):
    _no_work(monkeypatch)
    argv = [str(media / "clip.mp4") if a == "CLIP" else str(media / "a.png") if a == "IMG" else a for a in argv]
    assert main([*argv, "-o", str(tmp_path / "o.mp4")]) == 2
    assert msg in _error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_values_that_cannot_apply_get_a_notice(media, tmp_path, capsys):
    rc = main(["extend", str(media / "clip.mp4"), "--frames", "2", "--mode", "flow_only",
               "--steps", "5", "--prompt", "a cat", "-o", str(tmp_path / "e.mp4")])
    err = capsys.readouterr().err
    assert rc == 0 and (tmp_path / "e.mp4").is_file()
    assert "--prompt applies to --pipeline only" in err and "--steps, --model and --adapters do not apply" in err


def test_sizes_are_width_by_height_and_a_missing_pipeline_folder_is_named(media, tmp_path, capsys):
    rc = main(["speed", str(media / "clip.mp4"), "--factor", "0.5", "--steps", "2", "--no-progress",
               "--output-size", "model", "-o", str(tmp_path / "s.mp4")])
    cap = capsys.readouterr()
    assert rc == 0
    assert "the input is 48x32 (WxH); the embedded model works at 32x32" in cap.err
    assert "17 output frames" in cap.err and "17 frames of 32x32 at 8 fps" in cap.out
    rc = main(["speed", str(media / "clip.mp4"), "--factor", "0.5", "--no-progress", "--fill", "model",
               "-o", str(tmp_path / "s2.mp4")])
    cap = capsys.readouterr()
    assert rc == 0 and "17 frames of 48x32 at 8 fps" in cap.out and "the model supplied" in cap.out
    assert "the output keeps that size" in cap.err
    assert main(["speed", str(media / "clip.mp4"), "--factor", "0.5", "--pipeline", str(tmp_path / "nope"),
                 "-o", str(tmp_path / "p.mp4")]) == 2
    err = _error(capsys)
    assert "the folder does not exist" in err and "huggingface-cli" not in err


def test_too_many_output_frames_are_refused_with_the_limit(media, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(jobs_cmd, "MAX_OUTPUT_FRAMES", 12)
    assert main(["speed", str(media / "clip.mp4"), "--factor", "0.5", "-o", str(tmp_path / "s.mp4")]) == 2
    assert "more than 12 frames" in _error(capsys) and not (tmp_path / "s.mp4").exists()


@pytest.mark.parametrize("job", ["transfer", "speed", "extend"])
def test_help_has_examples_one_default_each_and_says_what_it_writes(job, capsys):
    with pytest.raises(SystemExit):
        main([job, "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and f"motionguide {job} --demo" in text
    assert "(default: None)" not in text and text.count("[default: 1.0]") <= 2
    assert "32x32" in text and "frame count" in text


def test_extend_has_one_source_so_fill_back_is_an_unknown_option(media, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["extend", str(media / "clip.mp4"), "--frames", "2", "--fill-back", "3", "-o", str(tmp_path / "e.mp4")])
    assert e.value.code == 2 and "unrecognized arguments: --fill-back" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _garbage_files(media, d):
    """Random bytes, a truncated video, an image named .mp4, a video named .png, an empty file."""
    rnd = random.Random(0)
    data = (media / "clip.mp4").read_bytes()
    files = {
        "random.mp4": bytes(rnd.getrandbits(8) for _ in range(4096)),
        "truncated.mp4": data[: len(data) // 3],
        "image.mp4": (media / "a.png").read_bytes(),
        "empty.mp4": b"",
        "video.png": data,
        "random.png": bytes(rnd.getrandbits(8) for _ in range(512)),
    }
    for name, b in files.items():
        (d / name).write_bytes(b)
    return files


def test_fuzz_every_job_reader_ends_in_one_line_and_leaves_nothing(media, tmp_path, capsys):
    """In the spirit of PyAV's random-input test: each bad file through each reader of each job."""
    bad = tmp_path / "bad"
    bad.mkdir()
    _garbage_files(media, bad)
    out = tmp_path / "out"
    out.mkdir()
    cases = []
    # (a real video named .png decodes by its content, so as a video input it works: not a case here)
    for name in ("random.mp4", "truncated.mp4", "image.mp4", "empty.mp4", "random.png", "missing.mp4"):
        cases.append(["speed", str(bad / name), "--factor", "0.5"])
        cases.append(["extend", str(bad / name), "--frames", "2"])
        cases.append(["transfer", "--reference", str(bad / name), "--image", str(media / "a.png")])
    for name in ("random.png", "video.png", "missing.png"):
        cases.append(["transfer", "--reference", str(media / "clip.mp4"), "--image", str(bad / name)])
    for argv in cases:
        capsys.readouterr()
        rc = main([*argv, "-o", str(out / "o.mp4"), "--compare", str(out / "o.png"), "--no-progress"])
        cap = capsys.readouterr()
        assert rc == 2, argv
        lines = cap.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("motionguide ") and "Traceback" not in cap.err, (argv, cap.err)
        assert os.listdir(out) == [], (argv, os.listdir(out))
