"""The jobs' shared options (issue 25): one dataclass checked on construction, the keyword form still working
and giving the same output, errors that name the Python parameter at the API and the flag at the command
line, each check made once (the command line runs the library's, before torch loads)."""
from __future__ import annotations

import math

import pytest
import torch

from motionguide import job_options as jo
from motionguide import jobs
from motionguide.cli import main
from motionguide.job_options import JobOptions


def test_defaults_and_round_trip():
    o = JobOptions()
    assert (o.motion_scale, o.strength, o.steps, o.seed, o.mode, o.flow, o.output_size, o.fill) == \
        (1.0, 1.0, None, 0, "both", "dis", "input", "warp")
    d = JobOptions(strength=0.5, steps=3, mode="latent", fill="model").to_dict()
    assert JobOptions.from_dict(d) == JobOptions(strength=0.5, steps=3, mode="latent", fill="model")
    with pytest.raises(ValueError, match=r"^options: unknown fields \['strenght'\]"):
        JobOptions.from_dict({"strenght": 0.5})


@pytest.mark.parametrize("field, value, msg", [
    ("motion_scale", 5.0, r"^motion_scale: expected 0 .. 4 \(1 keeps the motion\), got 5.0$"),
    ("motion_scale", math.nan, r"^motion_scale: expected 0 .. 4"),
    ("strength", -1, r"^strength: expected 0 .. 1 \(0 = unguided, 1 = fully guided\), got -1$"),
    ("strength", "1", r"^strength: expected 0 .. 1"),
    ("steps", 0, r"^steps: expected 1 .. 1000 sampling steps per window, got 0$"),
    ("steps", 2.5, r"^steps: expected 1 .. 1000"),
    ("seed", 1.5, r"^seed: expected an int, got 1.5$"),
    ("mode", "fast", r"^mode: expected one of unguided, latent, feature, both, training_free, flow_only, got 'fast'$"),
    ("progress", 3, r"^progress: expected a callable"),
    ("output_size", "big", r"^output_size: expected one of \('input', 'model'\), got 'big'$"),
    ("fill", "noise", r"^fill: expected one of \('warp', 'model'\), got 'noise'$"),
])
def test_each_bad_field_names_its_parameter(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        JobOptions(**{field: value})


def test_job_arguments_name_their_parameter():
    assert jo.check_factor(2) == 2.0 and jo.check_new_frames(64) == 64
    for f, msg in ((0, "a positive number"), (-1.0, "a positive number"), (math.inf, "a positive number"),
                   ("2", "a positive number"), (8.0, r"0.25 .. 4 \(0.25 = 4x slow motion")):
        with pytest.raises(ValueError, match=rf"^factor: expected {msg}"):
            jo.check_factor(f)
    for n in (0, 65, 2.0, True):
        with pytest.raises(ValueError, match=r"^frames: expected 1 .. 64 new frames, got .*extend in several runs"):
            jo.check_new_frames(n)
    assert jo.check_damping(0) == 0 and jo.check_damping(0.5) == 0.5
    for d in (1.0, -0.1, math.nan, "0.5"):
        with pytest.raises(ValueError, match=r"^damping: expected 0 .. <1 \(0 keeps the motion\), got"):
            jo.check_damping(d)


def test_restated_values_equal_their_owners():
    from motionguide.embedded.generation import MODES
    from motionguide.guidance import MOTION_SCALE_RANGE, STRENGTH_RANGE

    assert jo.MODES == tuple(MODES)
    assert jo.MOTION_SCALE_RANGE == tuple(MOTION_SCALE_RANGE) and jo.STRENGTH_RANGE == tuple(STRENGTH_RANGE)
    assert (jobs.SPEED_RANGE, jobs.MAX_EXTEND, jobs.OUTPUT_SIZES, jobs.FILLS, jobs.JobOptions) == \
        (jo.SPEED_RANGE, jo.MAX_EXTEND, jo.OUTPUT_SIZES, jo.FILLS, JobOptions)


def _clip(n=4, seed=0):
    return torch.rand(n, 3, 24, 32, generator=torch.Generator().manual_seed(seed))


def _same(a, b):
    assert torch.equal(a.frames, b.frames) and torch.equal(a.warped, b.warped)
    assert torch.equal(a.confidence, b.confidence) and a.model_share == b.model_share


def test_options_and_keywords_give_the_same_output():
    clip = _clip()
    kw = dict(motion_scale=0.5, strength=0.8, mode="flow_only")
    opts = JobOptions(**kw)
    _same(jobs.speed(clip, 0.5, model=None, interpolator="dis", **kw),
          jobs.speed(clip, 0.5, model=None, interpolator="dis", options=opts))
    _same(jobs.extend(clip, 3, model=None, damping=0.2, **kw), jobs.extend(clip, 3, model=None, damping=0.2, options=opts))
    _same(jobs.transfer(clip, clip[0], model=None, frames=3, **kw),
          jobs.transfer(clip, clip[0], model=None, frames=3, options=opts))
    # both forms at once would leave one of them unused: refused, naming what was given twice
    with pytest.raises(ValueError, match=r"^options: given together with strength, seed; set them in the JobOptions"):
        jobs.speed(clip, 0.5, model=None, strength=0.5, seed=3, options=opts)
    with pytest.raises(ValueError, match=r"^options: expected a JobOptions, got dict"):
        jobs.extend(clip, 2, model=None, options=kw)


def test_bad_values_through_the_python_api_name_the_parameter():
    clip = _clip()
    for call, msg in (
        (lambda: jobs.speed(clip, 9.0, model=None, mode="flow_only"), r"^factor: expected 0.25 .. 4"),
        (lambda: jobs.extend(clip, 100, model=None, mode="flow_only"), r"^frames: expected 1 .. 64 new frames"),
        (lambda: jobs.extend(clip, 2, model=None, damping=1.0, mode="flow_only"), r"^damping: expected 0 .. <1"),
        (lambda: jobs.transfer(clip, clip[0], model=None, frames=1, mode="flow_only"), r"^frames: expected at least 2"),
        (lambda: jobs.transfer(clip, clip[0], model=None, frames=6, mode="flow_only"),
         r"^frames: the reference clip has 4 frames, fewer than the 6 asked for; use frames=4 "),
        (lambda: jobs.speed(clip, 0.5, model=None, strength=2.0), r"^strength: expected 0 .. 1"),
        (lambda: jobs.extend(clip, 2, model=None, motion_scale=-1.0), r"^motion_scale: expected 0 .. 4"),
        (lambda: jobs.transfer(clip, clip[0], model=None, fill="blur"), r"^fill: expected one of"),
    ):
        with pytest.raises(ValueError, match=msg):
            call()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from flow.video import write_video

    d = tmp_path_factory.mktemp("opts")
    write_video(d / "clip.mp4", _clip(4, 1), 8.0)
    from flow.io import write_image

    write_image(d / "a.png", _clip(1, 2)[0])
    return d


def _line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("argv, msg", [
    (["extend", "--demo", "--frames", "100"], "error: --frames: expected 1 .. 64 new frames, got 100"),
    (["speed", "--demo", "--factor", "0"], "error: --factor: expected a positive number"),
    (["transfer", "--demo", "--seed", "1", "--steps", "1001"], "error: --steps: expected 1 .. 1000"),
    (["speed", "--demo", "--motion-scale", "9"], "error: --motion-scale: expected 0 .. 4 (1 keeps the motion)"),
    (["extend", "--demo", "--damping", "1"], "error: --damping: expected 0 .. <1 (0 keeps the motion), got 1.0"),
])
def test_bad_values_at_the_command_line_name_the_flag_before_any_work(argv, msg, tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(jobs, "demo_inputs", boom)
    monkeypatch.setattr(jobs, "load_models", boom)
    assert main([*argv, "-o", str(tmp_path / "o.mp4")]) == 2
    line = _line(capsys)
    assert msg in line and "motion_scale" not in line and list(tmp_path.iterdir()) == []


def test_a_library_error_after_decoding_names_the_flag(video, tmp_path, capsys):
    # the reference has 4 frames, 6 are asked for: found by jobs.transfer once the reference is read
    rc = main(["transfer", "--reference", str(video / "clip.mp4"), "--image", str(video / "a.png"), "--frames", "6",
               "--mode", "flow_only", "-o", str(tmp_path / "o.mp4")])
    line = _line(capsys)
    assert rc == 2 and ("error: --frames: the reference clip has 4 frames, fewer than the 6 asked for; use --frames 4 "
                        "or a longer reference") in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_keyword_that_is_no_option_is_named():
    clip = torch.rand(3, 3, 16, 16)
    with pytest.raises(TypeError, match="unexpected keyword argument strenght; the jobs' options are motion_scale"):
        jobs.speed(clip, 0.5, model=None, strenght=0.5)
