"""Bad input to ``motionguide train pipeline``, each through ``motionguide.cli.main``: a clear one-line error
(exit 2, no traceback) and no output folder, or, where the input can be used, a notice.

Covered: a videos folder with no readable video, videos shorter than the clip, an unsupported pipeline class,
a pipeline folder missing its VAE, a frame count or size the pipeline's VAE cannot take (found after loading,
still nothing written), options of the other kinds, ``--resume`` from a checkpoint of another pipeline class
(the checkpoint stays as it was), a full disk while a checkpoint is written (the previous one stays intact
and the same command resumes from it), and frames smaller than the pipeline's size (upscaled, a notice).
"""
from __future__ import annotations

import json
import shutil

import pytest
import safetensors.torch
from safetensors.torch import load_file

from motionguide.cli import main


def _fails(capsys, argv, msg, out):
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if not x.startswith(("Loading", "notice:")) and "it/s" not in x and x.strip()]
    assert len(lines) == 1 and "Traceback" not in err and msg in lines[0], err
    assert not out.exists(), f"{out} was left behind"


def test_bad_inputs_are_one_line_errors_that_leave_no_output(argv, pipes, videos, short_videos, tmp_path, capsys):
    out = tmp_path / "out"
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (junk / "notes.txt").write_text("no video here")
    other = tmp_path / "sd"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    no_vae = tmp_path / "no_vae"
    shutil.copytree(pipes["wan"], no_vae, ignore=lambda d, names: ["vae"] if d == str(pipes["wan"]) else [])
    wan = argv("wan", videos, out, "--steps", "2")
    for args, msg in [
        (argv("wan", junk, out, "--steps", "2"), "holds no readable video: 1 video file(s) that cannot be decoded"),
        (argv("wan", short_videos, out, "--steps", "2"), "every video is shorter than a training clip of 9 frames"),
        (wan[:3] + [str(other)] + wan[4:], "is a StableDiffusionPipeline; motionguide train pipeline trains adapters "
                                           "for WanPipeline, WanImageToVideoPipeline, CogVideoXImageToVideoPipeline"),
        (wan[:3] + [str(no_vae)] + wan[4:], "has no vae"),
        (wan + ["--frames", "10"], "takes 4k+1 frames"),
        (argv("ltx", videos, out, "--steps", "2", "--frames", "13"), "takes 8k+1 frames"),
        (wan + ["--size", "40x40"], "multiples of 16"),  # found once the pipeline is loaded: still no folder
        (wan + ["--layouts", "between,sideways"], "--layouts: expected one or more of between, extend, first"),
        (wan + ["--lora-blocks", "0"], "--lora-blocks needs --lora-rank R"),
        (argv("ltx", videos, out, "--steps", "2", "--last-frame"), "it needs a WanImageToVideoPipeline"),
        (wan + ["--dtype", "bfloat16"], "needs --mixed-precision bf16"),
        (wan + ["--base", "x"], "--base is an option of 'train adapters', not of 'train pipeline'"),
        ([a for a in wan if a != "--videos" and a != str(videos)], "train pipeline needs --videos DIR"),
        (["train", "base", "--steps", "2", "--out", str(out), "--videos", str(videos)],
         "--videos is an option of 'train pipeline', not of 'train base'"),
    ]:
        _fails(capsys, args, msg, out)


def test_resume_from_a_checkpoint_of_another_class_is_refused_and_leaves_it_as_it_was(argv, videos, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(argv("wan", videos, out, "--steps", "2")) == 0
    before = {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()}
    capsys.readouterr()
    assert main(argv("cogvideox", videos, out, "--steps", "2")) == 2
    err = capsys.readouterr().err
    assert "holds a 'pipeline:WanImageToVideoPipeline' run, not 'pipeline:CogVideoXImageToVideoPipeline'" in err
    assert {p.name: p.read_bytes() for p in (out / "checkpoint").iterdir()} == before


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_the_run_resumes(
        argv, videos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real, calls = safetensors.torch.save_file, []

    def save_file(tensors, path, *a, **kw):  # the loop's checkpoint writer; the disk fills at its 2nd checkpoint
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(tensors, path, *a, **kw)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    capsys.readouterr()
    assert main(argv("wan", videos, out, "--steps", "4")) == 2
    err = capsys.readouterr().err
    assert "disk is full" in err and "previous checkpoint (step 2)" in err and "Traceback" not in err, err
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2
    assert load_file(out / "checkpoint" / "trainable.safetensors")  # intact and readable
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no half-written folder
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert main(argv("wan", videos, out, "--steps", "4")) == 0
    assert "resumed pipeline:WanImageToVideoPipeline training" in capsys.readouterr().out
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 4


def test_frames_smaller_than_the_pipeline_are_upscaled_with_a_notice(argv, small_videos, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(argv("wan", small_videos, out, "--steps", "2", "--clips", "1", "--validate-every", "2",
                     "--validate-steps", "1")) == 0
    err = capsys.readouterr().err
    assert "small.mp4 is 24x16 (WxH), smaller than the pipeline's 32x32: its frames are upscaled and center-cropped" in err
    assert (out / "adapters" / "motion_guidance.safetensors").is_file()
    assert (out / "validation" / "step_2.mp4").stat().st_size > 0  # a validation clip with the current adapter


def test_train_help_shows_the_pipeline_kind_with_examples(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "motionguide train pipeline --pipeline" in text and "(default: None)" not in text
    with pytest.raises(SystemExit):
        main(["train", "pipeline", "--help"])
    text = capsys.readouterr().out
    assert "motionguide train pipeline --pipeline" in text and "--lora-rank R" in text and "examples:" in text
    assert "--matched-p" not in text and "--steps-scale" not in text and "(default: None)" not in text


def test_bad_data_and_run_options_are_one_line_errors_that_leave_no_output(argv, videos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    latin = tmp_path / "latin"
    shutil.copytree(videos, latin)
    (latin / "vtest30.txt").write_bytes("un caf\xe9 anim\xe9".encode("cp1252"))  # not UTF-8
    (tmp_path / "list.csv").write_text("video,prompt\nvideos/vtest30.mp4,a street\nvideos/gone.mp4,a cat\n")
    (tmp_path / "videos").symlink_to(videos)
    for args, msg in [
        (argv("wan", latin, out, "--steps", "2"), "vtest30.txt is not UTF-8 text (byte 0xe9 at offset 6)"),
        (argv("wan", tmp_path / "list.csv", out, "--steps", "2"), "line 3 names videos/gone.mp4, which does not exist"),
        ([a for a in argv("wan", videos, out, "--steps", "2") if a not in ("--size", "32x32", "--frames", "9")]
         + ["--buckets", "32x32x9,64x32x9"], "the bucket 64x32x9 gets no clip"),
        (argv("wan", videos, out, "--steps", "2", "--grad-accum", "0"), "--grad-accum must be an integer >= 1, got 0"),
        (argv("wan", videos, out, "--steps", "2", "--lora-targets", "attn+ffn"), "--lora-targets needs --lora-rank R"),
    ]:
        _fails(capsys, args, msg, out)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("WORLD_SIZE", "1")
    _fails(capsys, argv("wan", videos, out, "--steps", "2"), "FSDP shards the model over several processes, and this "
                                                             "run has one", out)
