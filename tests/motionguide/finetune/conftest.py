"""Shared set-up of the pipeline trainer's tests: tiny pipeline folders of every supported class, and short
training videos cut from the real footage in ``../shared/data/videos`` (written to a temporary folder, never
into the repo; the tests skip when the footage is absent)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flow.video import read_video, write_video
from motionguide import testing
from motionguide.finetune import PipelineTrainConfig

torch.set_flush_denormal(True)
ARCHS = sorted(testing.PIPELINES)
#: a size each tiny pipeline takes (VAE space x patch divides it) and a frame count its VAE takes
SIZES = {arch: (testing.tiny_call(arch)["height"], testing.tiny_call(arch)["width"]) for arch in ARCHS}
FRAMES = 9


@pytest.fixture(scope="session")
def pipes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_pipelines")
    return {arch: testing.save_tiny_pipeline(arch, root / arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def vtest(shared_data) -> tuple[torch.Tensor, float]:
    """The first 30 frames of vtest.avi (480x360, 10 fps): (30, 3, 360, 480) in [0, 1]."""
    return read_video(shared_data / "videos" / "vtest.avi", max_frames=30)


def write_clip(folder: Path, name: str, frames: torch.Tensor, fps: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / name, frames, fps)
    return folder


@pytest.fixture(scope="session")
def videos(vtest, tmp_path_factory) -> Path:
    """A folder with one 30-frame real clip at its own size (480x360: another aspect than the pipelines')."""
    return write_clip(tmp_path_factory.mktemp("videos"), "vtest30.mp4", *vtest)


@pytest.fixture(scope="session")
def small_videos(vtest, tmp_path_factory) -> Path:
    """24 frames of the same footage at 24x16 (WxH), smaller than every tiny pipeline's size: a training and a
    held-out clip of 9 frames that share none."""
    frames, fps = vtest
    return write_clip(tmp_path_factory.mktemp("small"), "small.mp4",
                      F.interpolate(frames[:24], size=(16, 24), mode="area"), fps)


@pytest.fixture(scope="session")
def short_videos(vtest, tmp_path_factory) -> Path:
    """5 frames: shorter than a clip of 9."""
    frames, fps = vtest
    return write_clip(tmp_path_factory.mktemp("short"), "short.mp4", frames[:5], fps)


@pytest.fixture(scope="session")
def config(pipes):
    """``config(arch, videos, out, **fields)``: a fast run on a tiny pipeline (its size, 9 frames, 2 clips,
    lr 1e-2, checkpoints every 2 steps, no progress bar)."""
    def make(arch: str, videos: Path, out: Path, **kw) -> PipelineTrainConfig:
        base = dict(pipeline=str(pipes[arch]), videos=str(videos), steps=6, out=str(out), frames=FRAMES,
                    size=SIZES[arch], clips=2, lr=1e-2, checkpoint_every=2, progress=False)
        return PipelineTrainConfig(**{**base, **kw})

    return make


@pytest.fixture(scope="session")
def argv(pipes):
    """``argv(arch, videos, out, *extra)``: the same run as ``motionguide train pipeline`` arguments."""
    def make(arch: str, videos: Path, out: Path, *extra: str) -> list[str]:
        h, w = SIZES[arch]
        return ["train", "pipeline", "--pipeline", str(pipes[arch]), "--videos", str(videos), "--out", str(out),
                "--size", f"{w}x{h}", "--frames", str(FRAMES), "--clips", "2", "--lr", "1e-2",
                "--checkpoint-every", "2", "--no-progress", *extra]

    return make


def tiny_wan_t2v(seed: int = 0):
    """A tiny ``WanPipeline`` (text-to-video, Wan 2.1 T2V's layout): the tiny Wan I2V pipeline's VAE, text
    encoder, tokenizer and scheduler, and a transformer of 16 input channels (the noisy latents alone)."""
    import diffusers

    base = testing.tiny_pipeline("wan", seed=seed)
    torch.manual_seed(seed)
    tr = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, rope_max_seq_len=64).eval()
    pipe = diffusers.WanPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                                 transformer=tr, scheduler=base.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def t2v_folder(tmp_path_factory) -> Path:
    """The tiny ``WanPipeline`` saved with ``save_pretrained`` (32x32, 9 frames as the tiny Wan I2V)."""
    folder = tmp_path_factory.mktemp("tiny_t2v") / "wan_t2v"
    tiny_wan_t2v().save_pretrained(folder, safe_serialization=True)
    return folder
