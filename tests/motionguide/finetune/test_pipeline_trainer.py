"""``motionguide train pipeline`` on tiny pipelines of every supported class, trained on real footage.

* the loss falls within 50 steps (a fixed pair of clips, batch 1);
* the saved adapter loads on a fresh pipeline of the class through ``generate_with_guidance(adapter=...)``
  and changes its output, and the pipeline is exactly as before after the call; another class is refused
  with its model untouched; the jobs' ``--pipeline DIR --adapters DIR`` run it (Wan);
* an interrupted run (an exception at step 4, between the checkpoints of steps 3 and 6) resumes through
  the command line and continues bit-identically: the same losses, checkpoint and adapter to the last bit
  as an uninterrupted run;
* gradient checkpointing (the transformer's own) gives the losses of the plain run; bf16 autocast with bf16
  frozen weights trains the new weights in float32 (on Wan FLF2V in-betweening, ``--last-frame``);
* ``slow``: two processes under ``torchrun`` (DDP on the CPU, gloo) keep identical weights while drawing
  different clips, so their gradients are averaged.
"""
from __future__ import annotations

import json
from pathlib import Path

import diffusers
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import motionguide as mg
from flow.estimators import get_estimator
from flow.video import read_video
from motionguide.cli import main
from motionguide.finetune import train_pipeline
from motionguide.finetune.layouts import layout_guidance
from motionguide.finetune.recipe import PipelineRecipe
from motionguide.finetune.videos import fit_frame
from motionguide import testing

# the classes the trainer trains (Wan T2V joins when the trainer takes text-to-video)
ARCHS = sorted(a for a in testing.PIPELINES if a in ("wan", "cogvideox", "ltx"))


def _load(arch, folder):
    pipe = getattr(diffusers, testing.PIPELINES[arch]).from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _hooks(model: torch.nn.Module) -> dict:
    """Per module, the names of its diffusers hooks and whether it has an instance ``forward``."""
    return {n: (tuple(getattr(getattr(m, "_diffusers_hook", None), "hooks", {})), "forward" in m.__dict__)
            for n, m in model.named_modules()}


def _snapshot(model: torch.nn.Module) -> tuple[dict, dict]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, _hooks(model)


def _untouched(model: torch.nn.Module, before: tuple[dict, dict]) -> bool:
    weights, hooks = before
    now = model.state_dict()
    return (set(now) == set(weights) and all(torch.equal(now[k], weights[k]) for k in weights)
            and getattr(model, "motion_guidance", None) is None and _hooks(model) == hooks)


@pytest.fixture(scope="module")
def trained(config, videos, tmp_path_factory):
    """``trained(arch)``: the output folder of a 50-step run (MoG adapters + LoRA rank 4; Wan also trains its
    first block), trained once per module."""
    done: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in done:
            out = tmp_path_factory.mktemp(f"trained_{arch}") / "run"
            train_pipeline(config(arch, videos, out, steps=50, checkpoint_every=50, lora_rank=4,
                                  train_blocks=1 if arch == "wan" else 0), log=lambda m: None, notice=lambda m: None)
            done[arch] = out
        return done[arch]

    return get


@pytest.mark.parametrize("arch", ARCHS)
def test_the_loss_falls_within_50_steps(arch, trained):
    out = trained(arch)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    losses = state["losses"]
    assert state["kind"] == f"pipeline:{testing.PIPELINES[arch]}" and len(losses) == 50
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.9 * first, (first, last)
    assert (out / "loss.png").is_file()
    manifest = json.loads((out / "adapters" / "pipeline.json").read_text())
    assert manifest["pipeline_class"] == testing.PIPELINES[arch] and manifest["num_frames"] == 9


@pytest.mark.parametrize("arch", ARCHS)
def test_the_adapter_loads_on_a_fresh_pipeline_changes_its_output_and_another_class_is_refused(
        arch, trained, pipes, vtest):
    folder = trained(arch) / "adapters"
    pipe = _load(arch, pipes[arch])
    call = testing.tiny_call(arch)
    frames = torch.stack([fit_frame(f, (call["height"], call["width"])) for f in vtest[0][:9]], dim=1)[None]
    g = layout_guidance("first", frames, estimator=get_estimator("dis"), interpolator=None)
    kw = dict(prompt="", num_inference_steps=2, output_type="pt")
    plain = pipe(image=frames[:, :, 0], generator=torch.Generator().manual_seed(0), **call, **kw).frames
    before = _snapshot(pipe.transformer)  # after a plain call: CogVideoX's pipeline adds a cache hook of its own
    guided = mg.generate_with_guidance(pipe, g, adapter=folder, generator=torch.Generator().manual_seed(0), **kw).frames
    assert (torch.as_tensor(guided) - torch.as_tensor(plain)).abs().max() > 1e-3
    assert _untouched(pipe.transformer, before)  # the call removed what it loaded (trained blocks included)
    other_arch = ARCHS[(ARCHS.index(arch) + 1) % len(ARCHS)]
    other = _load(other_arch, pipes[other_arch]).transformer
    snap = _snapshot(other)
    with pytest.raises(mg.MotionGuidanceError, match=f"saved for {type(pipe.transformer).__name__}"):
        mg.load_motion_guidance(other, folder)
    assert _untouched(other, snap)


@pytest.mark.parametrize("arch", ARCHS)
def test_an_interrupted_run_resumes_bit_identically(arch, argv, videos, tmp_path, monkeypatch, capsys):
    extra = ("--steps", "6", "--checkpoint-every", "3", "--lora-rank", "2") + (("--train-blocks", "1") if arch == "wan" else ())
    assert main(argv(arch, videos, tmp_path / "whole", *extra)) == 0
    real = PipelineRecipe.micro_losses

    def interrupted(self, step, rank, generator, parts):
        if step == 4:
            raise KeyboardInterrupt  # as Ctrl-C between the checkpoints of steps 3 and 6
        return real(self, step, rank, generator, parts)

    monkeypatch.setattr(PipelineRecipe, "micro_losses", interrupted)
    assert main(argv(arch, videos, tmp_path / "cut", *extra)) == 130
    monkeypatch.setattr(PipelineRecipe, "micro_losses", real)
    capsys.readouterr()
    assert main(argv(arch, videos, tmp_path / "cut", *extra)) == 0
    assert "at step 3" in capsys.readouterr().out
    a, b = (json.loads((tmp_path / x / "checkpoint" / "state.json").read_text()) for x in ("whole", "cut"))
    assert a["losses"] == b["losses"] and a["step"] == b["step"] == 6
    rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4", "5", "6"]  # resumed rows, no repeats
    assert [float(r.split(",")[1]) for r in rows[1:]] == b["losses"]
    for name in ("checkpoint/trainable.safetensors", "checkpoint/ema.safetensors", "adapters/motion_guidance.safetensors"):
        ta, tb = load_file(tmp_path / "whole" / name), load_file(tmp_path / "cut" / name)
        assert set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta), name


def test_gradient_checkpointing_gives_the_same_losses_and_bf16_trains_float32_weights(config, videos, tmp_path):
    runs = {}
    for name, kw in {"plain": {}, "ckpt": {"gradient_checkpointing": True},
                     "bf16": {"gradient_checkpointing": True, "mixed_precision": "bf16", "dtype": "bfloat16"}}.items():
        train_pipeline(config("wan", videos, tmp_path / name, steps=3, checkpoint_every=3, lora_rank=2,
                              last_frame=True, layouts=("between",), **kw),  # Wan FLF2V: first and last frames
                       log=lambda m: None, notice=lambda m: None)
        runs[name] = json.loads((tmp_path / name / "checkpoint" / "state.json").read_text())["losses"]
    assert torch.allclose(torch.tensor(runs["plain"]), torch.tensor(runs["ckpt"]), rtol=1e-5)
    assert all(torch.isfinite(torch.tensor(runs["bf16"])))
    weights = load_file(tmp_path / "bf16" / "adapters" / "motion_guidance.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.float32}


@pytest.mark.slow
def test_two_processes_under_torchrun_average_their_gradients(pipes, videos, tmp_path, two_ranks):
    weights = two_ranks(f"""
        from motionguide.finetune import PipelineTrainConfig, train_pipeline
        from motionguide.finetune.recipe import PipelineRecipe
        real = PipelineRecipe.micro_losses
        def micro_losses(self, step, rank, g, parts):
            if step == 3:
                total = sum(float(p.detach().double().abs().sum()) for _, p in self.trainable())
                print(f"rank {{rank}} weights {{total!r}}", flush=True)
            return real(self, step, rank, g, parts)
        PipelineRecipe.micro_losses = micro_losses
        train_pipeline(PipelineTrainConfig(pipeline={str(pipes["wan"])!r}, videos={str(videos)!r}, steps=4,
                       out={str(tmp_path / "out")!r}, frames=9, size=(32, 32), clips=2, lr=1e-2, lora_rank=2,
                       progress=False), log=lambda m: None, notice=lambda m: None)
    """)
    assert weights[0] == weights[1]


def test_the_jobs_run_the_trained_adapter_on_the_pipeline(trained, pipes, small_videos, tmp_path, capsys):
    clip = small_videos / "small.mp4"
    first = (read_video(clip, max_frames=1)[0][0].permute(1, 2, 0) * 255).round().byte().numpy()
    Image.fromarray(first).save(tmp_path / "first.png")
    out = tmp_path / "transfer.mp4"
    rc = main(["transfer", "--reference", str(clip), "--image", str(tmp_path / "first.png"), "--pipeline",
               str(pipes["wan"]), "--adapters", str(trained("wan") / "adapters"), "--steps", "2", "--frames", "9",
               "-o", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert out.stat().st_size > 0
