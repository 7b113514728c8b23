"""Tiny random pipeline folders: written with save_pretrained, reloaded offline with the class's own from_pretrained.

Each supported class (image-to-video, and Wan's text-to-video) (motionguide.testing.PIPELINES) is written to a folder, reloaded with
``from_pretrained(folder, local_files_only=True)``, checked weight for weight against the pipeline built in
memory, and run end to end (prompt -> T5 -> 2 denoising steps -> VAE decode) at its tiny size; the reloaded Wan
folder also runs under motion guidance.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import diffusers
import pytest
import torch

import motionguide as mg
from motionguide import testing

torch.set_flush_denormal(True)
ARCHS = sorted(testing.PIPELINES)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tiny_pipeline.py"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_pipelines")
    return {arch: testing.save_tiny_pipeline(arch, root / arch) for arch in ARCHS}


def load(arch, folder):
    pipe = getattr(diffusers, testing.PIPELINES[arch]).from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("arch", ARCHS)
def test_folder_reloads_with_the_class_own_from_pretrained(arch, folders):
    folder = folders[arch]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == testing.PIPELINES[arch]
    for part in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer"):
        assert index[part][0] is not None and (folder / part).is_dir(), part
    pipe = load(arch, folder)
    built = testing.tiny_pipeline(arch)  # same seed: the reload must hold exactly these weights
    for name in ("transformer", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(built, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert type(pipe.scheduler) is type(built.scheduler)
    ids = pipe.tokenizer("a cat walks.").input_ids
    assert ids == built.tokenizer("a cat walks.").input_ids and ids[-1] == pipe.tokenizer.eos_token_id


@pytest.mark.parametrize("arch", ARCHS)
def test_reloaded_pipeline_generates_end_to_end(arch, folders):
    pipe = load(arch, folders[arch])
    call = testing.tiny_call(arch)
    image = torch.rand(1, 3, call["height"], call["width"], generator=torch.Generator().manual_seed(0))
    given = {} if arch == "wan-t2v" else {"image": image}  # text-to-video takes no image
    run = lambda: pipe(**given, prompt="a cat walks", num_inference_steps=2, output_type="pt",  # noqa: E731
                       generator=torch.Generator().manual_seed(0), **call).frames
    video = run()
    assert video.shape == (1, call["num_frames"], 3, call["height"], call["width"])
    assert torch.isfinite(video).all() and 0 <= float(video.min()) and float(video.max()) <= 1
    assert torch.equal(run(), video)  # seeded: a second call reproduces it


def test_wan_with_image_encoder_reloads_and_runs(tmp_path):
    folder = testing.save_tiny_pipeline("wan", tmp_path / "wan_clip", image_encoder=True)
    pipe = load("wan", folder)
    assert pipe.image_encoder is not None and pipe.image_processor is not None
    assert pipe.transformer.config.image_dim == pipe.image_encoder.config.hidden_size
    call = testing.tiny_call("wan")
    out = pipe(image=torch.rand(1, 3, call["height"], call["width"]), prompt="", num_inference_steps=1,
               output_type="latent", **call).frames
    assert out.shape == (1, 16, 3, call["height"] // 8, call["width"] // 8)


def test_motion_guidance_runs_on_the_reloaded_wan_folder(folders):
    pipe = load("wan", folders["wan"])
    call = testing.tiny_call("wan")
    t, h, w = call["num_frames"], call["height"], call["width"]
    first = torch.rand(1, 3, 1, h, w, generator=torch.Generator().manual_seed(1))
    flows = torch.zeros(1, t, 1, 2, h, w)
    flows[:, :, 0, 0] = -2.0 * torch.arange(t).view(1, t, 1, 1)  # the first frame pans right by 2 px/frame
    guidance = mg.Guidance(first, (0,), t, torch.zeros(t, 1, dtype=torch.long), flows, torch.ones(1, t, 1, 1, h, w),
                           strength=0.9)
    kw = dict(prompt="a cat walks", num_inference_steps=2, output_type="latent")
    plain = pipe(image=first[:, :, 0], generator=torch.Generator().manual_seed(0), **call, **kw).frames
    guided = mg.generate_with_guidance(pipe, guidance, generator=torch.Generator().manual_seed(0), **kw).frames
    assert guided.shape == plain.shape and (guided - plain).abs().max() > 1e-2
    assert not hasattr(pipe.transformer, "motion_guidance")  # removed after the call


def test_save_refuses_a_non_empty_folder_and_leaves_nothing_behind_on_failure(tmp_path, monkeypatch):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        testing.save_tiny_pipeline("ltx", tmp_path / "taken")
    assert (tmp_path / "taken" / "x.txt").read_text() == "keep"

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "save_pretrained", boom)
    with pytest.raises(OSError, match="disk full"):
        testing.save_tiny_pipeline("ltx", tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no partial folder, no temporary one
    with pytest.raises(ValueError, match="arch: expected one of"):
        testing.tiny_pipeline("hunyuan")


def test_example_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tiny_pipeline_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with pytest.raises(SystemExit) as e:
        example.main(["--help"])
    assert e.value.code == 0 and "--arch" in capsys.readouterr().out
    assert example.main(["--arch", "cogvideox", "-o", str(tmp_path / "cog")]) == 0
    assert "CogVideoXImageToVideoPipeline" in capsys.readouterr().out
    assert load("cogvideox", tmp_path / "cog").transformer.config.in_channels == 8
    assert example.main(["--arch", "cogvideox", "-o", str(tmp_path / "cog")]) == 2  # not empty: refused
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        example.main(["--arch", "ltx", "-o", str(tmp_path / "x"), "--image-encoder"])
