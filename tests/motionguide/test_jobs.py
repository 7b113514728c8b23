"""The jobs on the command line: demo runs, windows, resizing, and every bad input of issue 5."""
from __future__ import annotations

import shutil

import pytest
import torch

import motionguide as mg
from motionguide.cli import main
from motionguide.embedded.windows import count_windows, generate_windows
from motionguide.jobs import extend, speed, transfer
from motionguide.embedded import EmbeddedConfig, EmbeddedVideoModel, attach_adapters, save_adapters, save_embedded

TINY = dict(num_layers=1, num_heads=2, head_dim=12, ffn_dim=16, text_dim=8, freq_dim=16, steps=2)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """A tiny base model and (randomly perturbed) adapters saved like the shipped assets."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    model = EmbeddedVideoModel(EmbeddedConfig(**TINY)).eval()
    save_embedded(model, root / "base")
    attach_adapters(model)
    with torch.no_grad():
        for p in model.transformer.motion_guidance.parameters():
            p.normal_(0, 0.05)
        model.gates.reference_gate.fill_(0.02)
    save_adapters(model, root / "adapters")
    return root


def _args(tiny_dirs, *extra):
    return [*extra, "--model", str(tiny_dirs / "base"), "--adapters", str(tiny_dirs / "adapters"), "--no-progress",
            "--output-size", "model"]


# (speed: the DIS interpolator, quicker than IFNet on the demo's 576x384 frames; the model runs at 32x32)
@pytest.mark.parametrize("job,extra,frames", [("transfer", [], 8),
                                              ("speed", ["--factor", "0.5", "--interpolator", "dis"], 15),
                                              ("extend", ["--frames", "3"], 7)])
def test_demo_jobs_write_video_and_compare(tiny_dirs, tmp_path, job, extra, frames):
    from flow.video import read_video

    out, png = tmp_path / f"{job}.mp4", tmp_path / f"{job}.png"
    rc = main([job, "--demo", *extra, "-o", str(out), "--compare", str(png), *_args(tiny_dirs)])
    assert rc == 0
    clip, fps = read_video(out)
    assert clip.shape[0] == frames and tuple(clip.shape[-2:]) == (32, 32) and fps == pytest.approx(8.0)
    assert png.stat().st_size > 1000


def test_files_in_and_flow_only_needs_no_model(tmp_path, capsys):
    from flow.io import write_image
    from flow.video import read_video, write_video
    from motionguide.embedded.data import make_clip

    c = make_clip(0, split="heldout", num_frames=6, size=(48, 64))
    write_video(tmp_path / "ref.mp4", c.frames, 10.0)
    write_image(tmp_path / "img.png", make_clip(1, split="heldout", num_frames=1, size=(40, 40)).frames[0])
    argv = ["transfer", "--reference", str(tmp_path / "ref.mp4"), "--image", str(tmp_path / "img.png"),
            "--mode", "flow_only", "-o", str(tmp_path / "o.mp4")]
    # a --model that flow_only does not use is still checked (issue 23): an absent one is refused, with a notice
    assert main([*argv, "--model", str(tmp_path / "absent")]) == 2
    assert "do not apply" in capsys.readouterr().err and not (tmp_path / "o.mp4").exists()
    rc = main(argv)
    assert rc == 0  # flow_only loads no model; the image was resized to the reference with a notice
    clip, fps = read_video(tmp_path / "o.mp4")
    assert clip.shape[0] == 6 and fps == pytest.approx(10.0)


def test_windows_cover_long_outputs():
    from motionguide.embedded.data import make_clip

    c = make_clip(2, split="heldout", num_frames=12)
    g = mg.speed(c.frames.transpose(0, 1)[None], 0.5, estimator=_dis())
    assert g.num_frames == 23
    assert count_windows(g, 8) >= 3
    out = generate_windows(None, g, mode="flow_only")
    assert out.shape == (1, 3, 23, 32, 32)
    assert torch.equal(out[:, :, 2], c.frames[1][None])  # real frames kept exactly


def test_windows_pass_the_sampler_start_through(tiny_dirs):
    from motionguide.embedded.data import make_clip
    from motionguide.jobs import load_models
    from motionguide.embedded.generation import generate_guided
    from motionguide.warping import flow_only

    model = load_models(tiny_dirs / "base", tiny_dirs / "adapters", mode="both")
    c = make_clip(3, split="heldout", num_frames=8)
    g = mg.reference_motion(c.frames[0][None], c.frames.transpose(0, 1)[None], estimator=_dis())
    a = generate_windows(model, g, mode="both", start=0.5)  # one window: exactly generate_guided's output
    one = generate_guided(model, g, warp=flow_only(g), mode="both", start=0.5, latent_from_warp=False)
    assert torch.allclose(a[:, :, 1:], one[:, :, 1:], atol=1e-6)
    assert not torch.allclose(a, generate_windows(model, g, mode="both"), atol=1e-4)  # default start differs


def _dis():
    from flow.estimators import get_estimator

    return get_estimator("dis")


def test_guidance_resized_rescales_flow():
    first = torch.rand(1, 3, 1, 64, 64)
    flows = torch.zeros(1, 4, 1, 2, 64, 64)
    flows[:, :, :, 0] = 4.0
    g = mg.Guidance(first, (0,), 4, torch.zeros(4, 1, dtype=torch.long), flows, torch.ones(1, 4, 1, 1, 64, 64))
    small = g.resized((32, 32))
    assert small.size == (32, 32) and torch.allclose(small.flows[:, :, :, 0], torch.full((1, 4, 1, 32, 32), 2.0))


def test_bad_inputs_raise_clear_errors(tiny_dirs):
    from motionguide.embedded.data import make_clip

    c = make_clip(0, split="heldout", num_frames=4).frames
    with pytest.raises(ValueError, match="fewer than the 6 asked"):
        transfer(c, c[0], model=None, frames=6, mode="flow_only")
    for f in (0.0, -1.0):
        with pytest.raises(ValueError, match="positive"):
            speed(c, f, model=None, mode="flow_only")
    with pytest.raises(ValueError, match="0.25 .. 4"):
        speed(c, 8.0, model=None, mode="flow_only")
    with pytest.raises(ValueError, match="frames: expected 1 .. 64 new frames, got 100"):
        extend(c, 100, model=None, mode="flow_only")
    with pytest.raises(ValueError, match="at least 2 frames"):
        extend(c[:1], 2, model=None, mode="flow_only")


def test_cli_errors_leave_no_output(tiny_dirs, tmp_path):
    out = tmp_path / "x.mp4"
    assert main(["speed", "--demo", "--factor", "-2", "-o", str(out), *_args(tiny_dirs)]) == 2
    assert main(["extend", "--demo", "--frames", "500", "-o", str(out), *_args(tiny_dirs)]) == 2
    assert main(["transfer", "-o", str(out), *_args(tiny_dirs)]) == 2  # no --reference/--image
    # a corrupt checkpoint: one-line error, exit 2
    bad = tmp_path / "bad"
    shutil.copytree(tiny_dirs / "base", bad)
    w = bad / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:-32] + b"\1" * 32)
    assert main(["transfer", "--demo", "-o", str(out), "--model", str(bad), "--adapters", str(tiny_dirs / "adapters"),
                 "--fill", "model"]) == 2
    assert main(["transfer", "--demo", "-o", str(out), "--model", str(tmp_path / "missing"), "--output-size", "model"]) == 2
    # an unknown pipeline (offline, not on disk)
    assert main(["transfer", "--demo", "-o", str(out), "--pipeline", "no-such-org/no-such-pipeline"]) == 2
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.")]  # no temp leftovers


def test_job_guidance_through_a_tiny_diffusers_pipeline():
    from motionguide.testing import wan_i2v_pipeline
    from motionguide.embedded.data import make_clip
    from motionguide.jobs import run_pipeline

    pipe, embeds = wan_i2v_pipeline()
    c = make_clip(0, split="heldout", num_frames=6, size=(32, 32))
    res = transfer(c.frames, c.frames[0], model=None, mode="flow_only")  # guidance at the input's size
    frames = run_pipeline(pipe, res.guidance, steps=2, prompt_embeds=embeds, negative_prompt_embeds=embeds,
                          guidance_scale=1.0)
    assert frames.shape == (6, 3, 32, 32)  # every frame: Wan takes 4k+1 frames, so one call of 9, cut back to 6
    assert getattr(pipe.transformer, "motion_guidance", None) is None  # removed after the call
