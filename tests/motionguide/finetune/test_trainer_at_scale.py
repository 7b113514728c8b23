"""The trainer at real scale, on tiny pipelines and real footage, on the CPU.

* defaults fit the hardware: with CUDA (faked), bf16 autocast, bfloat16 frozen weights with Wan's VAE in
  float32, and gradient checkpointing; each can be turned off; on the CPU, float32 as before;
* gradient accumulation: 4 micro-batches of 1 give the losses and weights of one batch of 4;
* captions: ``clip.txt`` beside the clip or a CSV/JSONL manifest, ``--prompt`` for the others, each prompt
  encoded once and each clip trained with its own;
* ``WanPipeline`` (text-to-video) trains, and its exported LoRA loads into a plain ``WanPipeline``;
* LoRA presets: ``attn`` (q, k, v, o) and ``attn+ffn`` (also the feed-forward's two Linear layers);
* the exported ``pytorch_lora_weights.safetensors`` loads with ``pipe.load_lora_weights`` and changes the
  output exactly as the adapter's LoRA does (max abs difference <= 1e-5);
* the cache: a partial cache is completed, a damaged entry rebuilt, a folder of another pipeline refused,
  other settings get entries of their own; validation runs on held-out clips and its loss is logged;
* buckets: each video trains in the bucket of its aspect, a batch from one bucket.
"""
from __future__ import annotations

import csv
import json
import textwrap

import diffusers
import pytest
import torch
from peft import LoraConfig, set_peft_model_state_dict
from safetensors.torch import load_file

from motionguide import testing
from motionguide.errors import UserError
from motionguide.finetune import PipelineTrainConfig, train_pipeline
from motionguide.finetune import recipe as recipe_mod
from motionguide.finetune.videos import find_videos

from .conftest import write_clip

torch.set_flush_denormal(True)
QUIET = dict(log=lambda m: None, notice=lambda m: None)


def _state(out):
    return json.loads((out / "checkpoint" / "state.json").read_text())


def test_cuda_defaults_are_bf16_and_checkpointing_and_each_turns_off(monkeypatch):
    base = dict(pipeline="p", videos="v", steps=1, out="o")
    cpu = PipelineTrainConfig(**base)
    assert (cpu.mixed_precision, cpu.dtype, cpu.gradient_checkpointing) == ("no", "float32", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda = PipelineTrainConfig(**base)
    assert (cuda.mixed_precision, cuda.dtype, cuda.gradient_checkpointing) == ("bf16", "bfloat16", True)
    assert cuda.vae_dtype("wan") == "float32" and cuda.vae_dtype("ltx") == "bfloat16"
    assert "cuda" in cuda.settings("wan") and "VAE float32" in cuda.settings("wan")
    off = PipelineTrainConfig(**base, mixed_precision="no", gradient_checkpointing=False)
    assert (off.mixed_precision, off.dtype, off.gradient_checkpointing) == ("no", "float32", False)


def test_bfloat16_weights_keep_wans_vae_in_float32(config, videos, tmp_path, monkeypatch):
    seen = {}
    real = recipe_mod.load_pipeline

    def spy(folder, **kw):
        pipe = real(folder, **kw)
        seen.update(vae=pipe.vae.dtype, transformer=pipe.transformer.dtype, text=pipe.text_encoder.dtype)
        return pipe

    monkeypatch.setattr(recipe_mod, "load_pipeline", spy)
    train_pipeline(config("wan", videos, tmp_path / "run", steps=1, mixed_precision="bf16", dtype="bfloat16"), **QUIET)
    assert seen == {"vae": torch.float32, "transformer": torch.bfloat16, "text": torch.bfloat16}


def test_four_micro_batches_of_one_equal_one_batch_of_four(config, videos, tmp_path):
    runs = {}
    for name, kw in {"batch4": dict(batch_size=4), "accum4": dict(batch_size=1, grad_accum=4)}.items():
        out = tmp_path / name
        train_pipeline(config("wan", videos, out, steps=3, checkpoint_every=3, clips=4, lora_rank=2, **kw), **QUIET)
        runs[name] = (_state(out)["losses"], load_file(out / "checkpoint" / "trainable.safetensors"))
    (la, wa), (lb, wb) = runs["batch4"], runs["accum4"]
    assert torch.allclose(torch.tensor(la), torch.tensor(lb), rtol=1e-5, atol=1e-6), (la, lb)
    # the weights after 3 Adam steps of lr 1e-2 (up to 3e-2 moved): Adam divides by the root of tiny second
    # moments, which turns float round-off of near-zero gradients into differences of ~2e-5
    assert set(wa) == set(wb) and all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    assert any(float(wa[k].abs().max()) > 0 for k in wa if "lora_B" in k)  # the weights did move


def test_captions_beside_the_clips_and_in_manifests(vtest, tmp_path):
    frames, fps = vtest
    folder = write_clip(tmp_path / "v", "a.mp4", frames[:12], fps)
    write_clip(folder, "b.mp4", frames[10:22], fps)
    (folder / "a.txt").write_text("  a person walks\n", encoding="utf-8")
    assert {v.path.rsplit("/", 1)[1]: v.caption for v in find_videos(folder)} == {"a.mp4": "a person walks", "b.mp4": None}
    with open(tmp_path / "list.csv", "w", newline="") as f:
        csv.writer(f).writerows([["video", "prompt"], ["v/b.mp4", "a crowd, at dusk"], ["v/a.mp4", ""]])
    got = find_videos(tmp_path / "list.csv")
    assert [(v.path.rsplit("/", 1)[1], v.caption) for v in got] == [("b.mp4", "a crowd, at dusk"), ("a.mp4", None)]
    (tmp_path / "list.jsonl").write_text('{"video": "v/a.mp4", "caption": "caf\\u00e9"}\n\n{"video": "v/b.mp4"}\n')
    assert [v.caption for v in find_videos(tmp_path / "list.jsonl")] == ["caf\u00e9", None]


def test_each_clip_trains_with_its_own_prompt(config, vtest, tmp_path, monkeypatch):
    frames, fps = vtest
    folder = write_clip(tmp_path / "v", "a.mp4", frames[:12], fps)
    write_clip(folder, "b.mp4", frames[12:24], fps)
    (folder / "a.txt").write_text("a person walks")
    seen = []
    real = recipe_mod.PipelineRecipe.batch

    def spy(self, layout, idx, **kw):
        batch, text, lg = real(self, layout, idx, **kw)
        seen.append((tuple(idx), text["prompt_embeds"].clone()))
        return batch, text, lg

    monkeypatch.setattr(recipe_mod.PipelineRecipe, "batch", spy)
    out = tmp_path / "run"
    train_pipeline(config("wan", folder, out, steps=6, prompt="default words"), **QUIET)
    manifest = json.loads((out / "cache" / "manifest.json").read_text())
    prompts = sorted(e["key"]["prompt"] for e in manifest["entries"].values() if e["kind"] == "text")
    assert prompts == ["a person walks", "default words"]
    by_clip = {i[0]: t for i, t in seen}
    assert set(by_clip) == {0, 1} and not torch.equal(by_clip[0], by_clip[1])


def test_wan_text_to_video_trains_and_its_lora_loads_into_a_plain_wan_pipeline(t2v_folder, videos, tmp_path):
    out = tmp_path / "t2v"
    cfg = PipelineTrainConfig(pipeline=str(t2v_folder), videos=str(videos), steps=4, out=str(out), frames=9,
                              size=(32, 32), clips=2, lr=1e-2, checkpoint_every=4, progress=False, lora_rank=2,
                              lora_targets="attn+ffn")
    train_pipeline(cfg, **QUIET)
    assert _state(out)["kind"] == "pipeline:WanPipeline"
    lora = load_file(out / "adapters" / "pytorch_lora_weights.safetensors")
    assert any(".ffn.net.2.lora_A" in k for k in lora) and any(".attn1.to_q.lora_B" in k for k in lora)
    pipe = diffusers.WanPipeline.from_pretrained(t2v_folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    call = dict(prompt="", height=32, width=32, num_frames=9, num_inference_steps=2, output_type="pt")
    before = torch.as_tensor(pipe(generator=torch.Generator().manual_seed(0), **call).frames)
    pipe.load_lora_weights(out / "adapters")
    after = torch.as_tensor(pipe(generator=torch.Generator().manual_seed(0), **call).frames)
    # a seeded CPU call repeats exactly, so any change is the LoRA's (4 steps of a tiny random model move the
    # decoded frames by about 1e-4)
    assert any(float(v.abs().max()) > 0 for k, v in lora.items() if "lora_B" in k)
    assert float((after - before).abs().max()) > 1e-6


def test_lora_target_presets(config, videos, tmp_path):
    for preset, ffn in (("attn", False), ("attn+ffn", True)):
        out = tmp_path / preset.replace("+", "_")
        train_pipeline(config("ltx", videos, out, steps=1, lora_rank=2, lora_targets=preset), **QUIET)
        keys = load_file(out / "adapters" / "pytorch_lora_weights.safetensors")
        names = {k.split(".lora_")[0].split(".", 3)[-1] for k in keys}
        assert {"attn1.to_q", "attn1.to_out.0"} <= names
        assert ({"ff.net.0.proj", "ff.net.2"} <= names) == ffn and any(n.startswith("ff.") for n in names) == ffn


@pytest.mark.parametrize("arch", ["wan", "cogvideox"])
def test_the_exported_lora_changes_a_plain_pipeline_as_the_adapters_lora_does(arch, config, videos, pipes, tmp_path):
    out = tmp_path / "run"
    train_pipeline(config(arch, videos, out, steps=4, checkpoint_every=4, lora_rank=4, lora_targets="attn+ffn"), **QUIET)
    folder = out / "adapters"
    cls = getattr(diffusers, testing.PIPELINES[arch])
    meta = json.loads((folder / "motion_guidance.json").read_text())["lora"]
    own = {k[6:]: v for k, v in load_file(folder / "motion_guidance.safetensors").items() if k.startswith("lora::")}
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in own})

    def call(pipe):
        call = testing.tiny_call(arch)
        img = torch.rand(1, 3, call["height"], call["width"], generator=torch.Generator().manual_seed(1))
        return torch.as_tensor(pipe(image=img, prompt="", num_inference_steps=2, output_type="pt",
                                    generator=torch.Generator().manual_seed(0), **call).frames)

    plain = cls.from_pretrained(pipes[arch], local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    base = call(plain)
    plain.transformer.add_adapter(LoraConfig(r=meta["rank"], lora_alpha=meta["alpha"], target_modules=modules),
                                  adapter_name="own")
    set_peft_model_state_dict(plain.transformer, own, adapter_name="own")
    want = call(plain)
    loaded = cls.from_pretrained(pipes[arch], local_files_only=True)
    loaded.set_progress_bar_config(disable=True)
    loaded.load_lora_weights(folder)
    got = call(loaded)
    assert float((want - base).abs().max()) > 1e-4  # the LoRA changes the output
    assert float((got - want).abs().max()) <= 1e-5


def test_a_partial_or_damaged_cache_is_completed_and_another_pipelines_is_refused(config, videos, tmp_path):
    logs = []
    cfg = lambda arch, **kw: config(arch, videos, tmp_path / "run", cache=str(tmp_path / "cache"),  # noqa: E731
                                    cache_only=True, clips=3, **kw)
    train_pipeline(cfg("wan"), log=logs.append, notice=lambda m: None)
    assert any("encoding 3 of 3 clips" in m for m in logs)
    entries = sorted((tmp_path / "cache").glob("clip-*.safetensors"))
    assert len(entries) == 3
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # a damaged entry (an interrupted copy)
    entries[1].unlink()  # a missing one
    logs.clear()
    train_pipeline(cfg("wan"), log=logs.append, notice=lambda m: None)
    assert any("encoding 2 of 3 clips" in m for m in logs), logs
    assert all(load_file(e) for e in sorted((tmp_path / "cache").glob("clip-*.safetensors")))
    logs.clear()
    train_pipeline(cfg("wan", size=(64, 64)), log=logs.append, notice=lambda m: None)  # other settings: own entries
    assert any("encoding 3 of 3 clips" in m for m in logs)
    assert len(list((tmp_path / "cache").glob("clip-*.safetensors"))) == 6
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    with pytest.raises(UserError, match="was built for another pipeline .*pass another --cache DIR"):
        train_pipeline(cfg("cogvideox"), **QUIET)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == before


def test_validation_runs_on_held_out_clips_and_logs_their_loss(config, videos, tmp_path, monkeypatch):
    out = tmp_path / "run"
    trained = []
    real = recipe_mod.PipelineRecipe.micro_losses

    def spy(self, *a):
        trained.append(set(self.data.entries))
        return real(self, *a)

    monkeypatch.setattr(recipe_mod.PipelineRecipe, "micro_losses", spy)
    train_pipeline(config("wan", videos, out, steps=2, clips=2, validate_every=2, validate_steps=1), **QUIET)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["step"] for r in rows] == ["1", "2"] and float(rows[1]["val_loss"]) > 0 and rows[0]["val_loss"] == ""
    manifest = json.loads((out / "cache" / "manifest.json").read_text())
    clips = [e["key"] for e in manifest["entries"].values() if e["kind"] == "clip"]
    assert len(clips) == 3  # 2 training clips and 1 held out
    held = [p for p in (out / "cache").glob("frames-*.safetensors")]
    assert len(held) == 1 and held[0].name.replace("frames-", "clip-") not in {p.name for p in trained[0]}
    assert (out / "validation" / "step_2.mp4").stat().st_size > 0


def test_buckets_put_each_video_in_its_aspects_bucket(config, vtest, tmp_path, monkeypatch):
    frames, fps = vtest
    folder = write_clip(tmp_path / "v", "wide.mp4", frames[:12], fps)  # 480x360 (4:3)
    write_clip(folder, "tall.mp4", frames[:12].transpose(-1, -2).contiguous(), fps)  # 360x480 (3:4)
    shapes = []
    real = recipe_mod.PipelineRecipe._loss

    def spy(self, layout, idx, generators, **kw):
        b = self.data.buckets[idx[0]]
        shapes.append((b, self._entry(self.data.entries[idx[0]])["x0"].shape[-2:]))
        return real(self, layout, idx, generators, **kw)

    monkeypatch.setattr(recipe_mod.PipelineRecipe, "_loss", spy)
    out = tmp_path / "run"
    train_pipeline(config("wan", folder, out, steps=6, size=None, frames=None, clips=2,
                          buckets="48x32x9,32x48x9"), **QUIET)
    seen = {b: tuple(s) for b, s in shapes}
    assert seen == {0: (4, 6), 1: (6, 4)}  # 48x32 -> latent 6x4 (W x H), and the tall one the other way
    assert json.loads((out / "adapters" / "pipeline.json").read_text())["buckets"] == ["48x32x9", "32x48x9"]


@pytest.mark.slow
def test_two_processes_each_cache_their_share_of_the_clips(pipes, videos, tmp_path, two_ranks):
    """Under torchrun (gloo) each process encodes half the clips, then both find the whole cache."""
    counts = two_ranks(f"""
        import torch
        from motionguide.finetune import PipelineTrainConfig, train_pipeline
        logs = []
        res = train_pipeline(PipelineTrainConfig(pipeline={str(pipes["wan"])!r}, videos={str(videos)!r}, steps=1,
                             out={str(tmp_path / "out")!r}, frames=9, size=(32, 32), clips=4, cache_only=True,
                             progress=False), log=logs.append, notice=lambda m: None)
        mine = [m for m in logs if "encoding" in m]
        assert len(mine) == 1 and "encoding 2 of 4 clips" in mine[0], logs
        print(f"rank {{torch.distributed.get_rank()}} clips {{res['clips']}}", flush=True)
    """)
    assert counts == ["4", "4"]
    assert len(list((tmp_path / "out" / "cache").glob("clip-*.safetensors"))) == 4
    manifest = json.loads((tmp_path / "out" / "cache" / "manifest.json").read_text())
    assert sum(e["kind"] == "clip" for e in manifest["entries"].values()) == 4


_SAME_DATA = """
import torch
from motionguide.finetune.recipe import PipelineRecipe
real = PipelineRecipe.micro_losses
def same_data(self, step, rank, g, parts):  # every process draws the batch one process draws
    return real(self, step, 0, torch.Generator().manual_seed(1000 + step), parts)
PipelineRecipe.micro_losses = same_data
"""


@pytest.mark.slow
def test_fsdp_on_two_processes_follows_the_single_process_loss_curve(pipes, videos, tmp_path, two_ranks, monkeypatch):
    """FSDP2 (gloo, 2 ranks) shards the frozen weights and keeps the trainable ones whole; with both ranks on
    the batch a single process draws, its 20-step loss curve is the single process's within 1e-3."""
    run = dict(pipeline=str(pipes["wan"]), videos=str(videos), steps=20, frames=9, size=(32, 32), clips=2, lr=1e-2,
               lora_rank=2, checkpoint_every=20, progress=False, validate_every=20, validate_steps=1)
    sharded = two_ranks(f"""
        import os
        os.environ["ACCELERATE_USE_FSDP"] = "true"
        {textwrap.indent(_SAME_DATA, " " * 8).strip()}
        from motionguide.finetune import PipelineTrainConfig, train_pipeline
        seen = {{}}
        real_export = PipelineRecipe.export
        def export(self, folder, metrics):
            seen["dtensors"] = sum(type(p).__name__ == "DTensor" for p in self.model.parameters())
            return real_export(self, folder, metrics)
        PipelineRecipe.export = export
        train_pipeline(PipelineTrainConfig(out={str(tmp_path / "fsdp")!r}, **{run!r}), log=lambda m: None,
                       notice=lambda m: None)
        rank = torch.distributed.get_rank()
        print(f"rank {{rank}} sharded {{seen.get('dtensors', -1)}}", flush=True)
    """)
    assert int(sharded[0]) > 0 or int(sharded[1]) > 0  # the main process saw sharded frozen weights
    exec(_SAME_DATA.replace("PipelineRecipe.micro_losses = same_data", ""), ns := {})
    monkeypatch.setattr(recipe_mod.PipelineRecipe, "micro_losses", ns["same_data"])
    train_pipeline(PipelineTrainConfig(out=str(tmp_path / "one"), **run), **QUIET)
    a, b = _state(tmp_path / "fsdp")["losses"], _state(tmp_path / "one")["losses"]
    assert len(a) == len(b) == 20 and max(abs(x - y) for x, y in zip(a, b)) < 1e-3, (a, b)
    assert (tmp_path / "fsdp" / "adapters" / "pytorch_lora_weights.safetensors").is_file()
    assert (tmp_path / "fsdp" / "validation" / "step_20.mp4").stat().st_size > 0  # every process made the call


def test_a_fresh_run_that_fails_after_its_cache_keeps_the_cache_alone(config, videos, tmp_path, monkeypatch):
    out = tmp_path / "run"

    def boom(self, *a):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(recipe_mod.PipelineRecipe, "micro_losses", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        train_pipeline(config("wan", videos, out, steps=2), **QUIET)
    assert [p.name for p in out.iterdir()] == ["cache"] and len(list((out / "cache").glob("clip-*"))) == 2
    monkeypatch.undo()
    logs = []
    train_pipeline(config("wan", videos, out, steps=2), log=logs.append, notice=lambda m: None)
    assert not any("encoding" in m for m in logs) and (out / "adapters").is_dir()


def test_the_run_passes_its_timeout_grad_accum_and_fsdp_choice_to_the_loop(config, videos, tmp_path, monkeypatch):
    from motionguide.finetune import train as train_mod

    seen = {}
    monkeypatch.setattr(train_mod, "run_training", lambda loop, make, **kw: seen.setdefault("loop", loop) and
                        {"step": 0, "loss": 0.0, "out": loop.out})
    train_pipeline(config("wan", videos, tmp_path / "run", nccl_timeout=90, grad_accum=3), **QUIET)
    loop = seen["loop"]
    assert (loop.timeout_minutes, loop.grad_accum, loop.fsdp) == (90, 3, False)
