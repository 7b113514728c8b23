"""A job's ``--pipeline`` composed at the input's size: the pipeline runs at a size that fits it (its default
call size, or ``--pipeline-size``), and its output fills only what the flow does not explain, through the
same :func:`motionguide.compositing.composite` as the embedded model; ``--output-size model`` composes at
the pipeline's own size and frame count. One tiny random Wan I2V pipeline, built in code; the jobs run in this process."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from flow.video import read_video, write_video
from motionguide import jobs, testing
from motionguide.cli import main
from motionguide.compositing import composite

torch.set_flush_denormal(True)
SIZE = (32, 48)  # (h, w) the tiny pipeline runs at here: half the input's sides, multiples of 16


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    return testing.save_tiny_pipeline("wan", tmp_path_factory.mktemp("pipes") / "wan")


@pytest.fixture(scope="module")
def pipe(wan):
    p = jobs.load_pipeline(str(wan), device="cpu")
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def clip():
    """6 frames of 96x64 (WxH): a smooth picture moving right 2 px a frame, new content entering at the left
    (the in-betweens move by whole pixels, so away from the borders both sources agree exactly)."""
    g = torch.Generator().manual_seed(0)
    base = F.interpolate(torch.rand(1, 3, 12, 16, generator=g), size=(96, 128), mode="bicubic",
                         align_corners=False).clamp(0, 1)[0]
    return torch.stack([base[:, 8:72, 16 - 2 * k: 112 - 2 * k] for k in range(6)])


@pytest.fixture(scope="module")
def video(clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_video(path, clip, 8.0)
    return path


def _spy(monkeypatch, name):
    """Record what ``jobs.<name>`` returns while it runs as it is."""
    seen, real = [], getattr(jobs, name)

    def spy(*a, **k):
        seen.append(real(*a, **k))
        return seen[-1]

    monkeypatch.setattr(jobs, name, spy)
    return seen


def test_the_output_is_the_warp_where_trusted_and_the_pipeline_elsewhere(pipe, clip, monkeypatch, capsys):
    warp = jobs.speed(clip, 0.5, model=None, mode="flow_only", interpolator="dis")  # 11 frames at 96x64
    made = _spy(monkeypatch, "run_pipeline")
    res = jobs.pipeline_job(pipe, warp, size=SIZE, steps=1, prompt="", guidance_scale=1.0)
    err = capsys.readouterr().err
    small = made[0]
    assert small.shape == (11, 3, *SIZE)  # every frame: Wan takes 4k+1 frames, so one call of 13, cut back to 11
    assert res.frames.shape == (11, 3, 64, 96) and res.confidence is warp.confidence
    assert "runs at 48x32 (WxH; --pipeline-size)" in err
    assert "in 1 call of at most 81 frames (frames 0..10; the last call runs 2 free frames past the end" in err
    # the embedded model's compositing, unchanged, on the frames the pipeline made
    c = warp.confidence.transpose(0, 1)[None]
    ref, _, _ = composite(warp.warped.transpose(0, 1)[None], small.transpose(0, 1)[None], c)
    gen = [t for t in range(11) if t % 2]  # factor 0.5: even output frames are the input's
    assert torch.equal(res.frames[gen], ref[0].transpose(0, 1)[gen])
    assert torch.equal(res.frames[0::2], clip)  # the known frames exactly
    # where the confidence is 1 within the blend's reach (24 px at this size), the pixel is the warp's
    untrusted = 1 - warp.confidence
    far = F.max_pool2d(untrusted, 49, stride=1, padding=24) == 0
    assert int(far[gen].sum()) > 1000  # of 5 x 64 x 96 generated pixels
    diff = (res.frames - warp.warped).abs().amax(1, keepdim=True)
    assert float(diff[far].max()) <= 1 / 255
    assert float(diff[gen].max()) > 0.05  # and elsewhere the pipeline did supply pixels
    share = float(untrusted.sum()) / untrusted.numel()
    assert res.model_share == pytest.approx(share) and 0 < share < 1


def test_output_size_model_composes_at_the_pipelines_size(pipe, clip, monkeypatch):
    warp = jobs.speed(clip, 0.5, model=None, mode="flow_only", interpolator="dis")
    made = _spy(monkeypatch, "run_pipeline")
    res = jobs.pipeline_job(pipe, warp, size=SIZE, output_size="model", steps=1, prompt="", guidance_scale=1.0)
    small = made[0]
    assert res.frames.shape == small.shape == (11, 3, *SIZE) and res.confidence.shape == (11, 1, *SIZE)
    down = F.interpolate(warp.warped, size=SIZE, mode="area")
    gen = [t for t in range(11) if t % 2]
    far = F.max_pool2d(1 - res.confidence, 17, stride=1, padding=8) == 0
    diff = (res.frames - down).abs().amax(1, keepdim=True)
    assert int(far[gen].sum()) > 0 and float(diff[gen][far[gen]].max()) < 1 / 255  # trusted: the warp, downscaled
    assert float(diff[gen].max()) > 0.05  # and where the flow is not trusted, the pipeline supplied pixels
    assert 0 < res.model_share < 1


def test_the_pipeline_path_takes_the_jobs_synthesis_as_given(pipe, clip, monkeypatch):
    """The warp, its confidence and the known frames come with the job's result: composing at the input's
    size warps nothing again; at the pipeline's size, only its own grid's warp (once per source)."""
    from dataclasses import replace

    from motionguide import warping

    res = jobs.speed(clip, 0.5, model=None, mode="flow_only", interpolator="dis")
    seen, real = [], warping.backward_warp
    monkeypatch.setattr(warping, "backward_warp", lambda img, flow, **kw: seen.append(img.shape[-2:]) or real(img, flow, **kw))
    kw = dict(size=SIZE, steps=1, prompt="", guidance_scale=1.0)
    jobs.pipeline_job(pipe, res, **kw)
    assert seen == []
    jobs.pipeline_job(pipe, res, output_size="model", **kw)
    assert {tuple(s) for s in seen} == {SIZE} and len(seen) == 10  # 5 in-betweens, 2 sources each
    with pytest.raises(ValueError, match="model=None"):
        jobs.pipeline_job(pipe, replace(res, synthesis=None), **kw)


def test_default_pipeline_size_fits_the_call_defaults(pipe):
    assert jobs.pipeline_size(pipe, (720, 1280)) == (464, 832)  # inside Wan's 832x480, the input's 16:9
    assert jobs.pipeline_size(pipe, (1280, 720)) == (832, 464)  # a portrait input: the box turned
    assert jobs.pipeline_size(pipe, (64, 96)) == (64, 96)  # never above the input's size
    assert jobs.pipeline_size(pipe, (200, 300)) == (192, 288)
    for hw in [(1080, 1920), (600, 800), (480, 1000), (2160, 3840), (500, 500)]:
        h, w = jobs.pipeline_size(pipe, hw)
        assert h % 16 == 0 and w % 16 == 0 and h <= min(480, hw[0]) and w <= min(832, hw[1]), hw
        assert abs(w / h - hw[1] / hw[0]) < 16 / h * (w / h) + 1e-9, hw  # the aspect, up to one multiple
    cog = testing.tiny_pipeline("cogvideox")  # call defaults None: the transformer's sample size (32x32)
    assert jobs.pipeline_size(cog, (720, 1280)) == (16, 32)
    with pytest.raises(ValueError, match=r"multiples of 16 \(VAE 8x times patch 2\); use 48x32 or 64x48"):
        jobs.pipeline_size(pipe, (64, 96), (32, 50))


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_cli_writes_the_input_size_prints_the_share_and_compares_with_confidence(wan, video, tmp_path, capsys,
                                                                                 monkeypatch):
    results, seen, real_compare = _spy(monkeypatch, "pipeline_job"), [], jobs.save_compare
    monkeypatch.setattr(jobs, "save_compare", lambda path, res, **k: (seen.append(res), real_compare(path, res, **k)))
    out, png = tmp_path / "slow.mp4", tmp_path / "slow.png"
    rc = main(["speed", str(video), "--factor", "0.5", "--pipeline", str(wan), "--pipeline-size", "48x32",
               "--steps", "1", "--no-progress", "-o", str(out), "--compare", str(png)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    frames, _ = read_video(out)
    assert frames.shape == (11, 3, 64, 96) and png.stat().st_size > 0
    share = re.search(r"the pipeline supplied ([0-9.]+) % of the pixels", cap.out)
    assert share and share[1] == f"{100 * results[0].model_share:.1f}"
    assert seen[0] is results[0] and seen[0].confidence is not None  # the strip has its confidence row
    assert seen[0].confidence.shape == (11, 1, 64, 96)


def test_cli_default_size_and_output_size_model(wan, video, tmp_path, capsys):
    out = tmp_path / "own.mp4"
    rc = main(["extend", str(video), "--frames", "2", "--pipeline", str(wan), "--output-size", "model",
               "--pipeline-size", "48x32", "--steps", "1", "--no-progress", "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    frames, _ = read_video(out)
    assert frames.shape == (8, 3, 32, 48)  # the pipeline's own size, every frame
    assert "the pipeline supplied" in cap.out
    # extend hands the pipeline its last frames only: one call of 9 from frame 1 (5 known frames, 2 new, 2 free)
    assert "frames 1..7; the last call runs 2 free frames past the end" in cap.err
    out = tmp_path / "default.mp4"
    rc = main(["extend", str(video), "--frames", "3", "--pipeline", str(wan), "--steps", "1", "--no-progress",
               "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "runs at 96x64 (WxH; the input's aspect inside its native size" in cap.err
    assert read_video(out)[0].shape == (9, 3, 64, 96)


@pytest.mark.parametrize("extra, msg", [
    (["--pipeline-size", "0x32"], "--pipeline-size: expected WxH in pixels, both positive (e.g. 832x480), got '0x32'"),
    (["--pipeline-size", "832"], "--pipeline-size: expected WxH in pixels"),
    (["--pipeline-size", "50x32"], "--pipeline-size 50x32: WanImageToVideoPipeline takes sides that are multiples "
                                   "of 16 (VAE 8x times patch 2); use 48x32 or 64x48"),
    (["--fill", "warp"], "--fill warp keeps the warp in every pixel, so --pipeline would run for nothing"),
])
def test_cli_bad_pipeline_values_are_refused_and_write_nothing(wan, video, tmp_path, capsys, monkeypatch, extra, msg):
    ran = _spy(monkeypatch, "run_pipeline")
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["speed", str(video), "--factor", "0.5", "--pipeline", str(wan), *extra, "-o", str(out / "o.mp4"),
               "--compare", str(out / "o.png"), "--no-progress"])
    assert rc == 2 and msg in _last_error(capsys)
    assert list(out.iterdir()) == [] and ran == []


def test_help_teaches_pipeline_size(capsys):
    with pytest.raises(SystemExit):
        main(["speed", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--pipeline-size WxH" in text and "--pipeline ./wan-i2v --pipeline-size 832x464" in text
    assert "model with --pipeline" in text
