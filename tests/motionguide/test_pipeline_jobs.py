"""The jobs' pipeline on the user's hardware: device, dtype, offload modes and VAE tiling through the Python API
and the CLI, the raw generation beside the composite, and the errors a GPU user meets (one line, exit 2,
nothing written, no weight loaded where the folder already tells). CUDA is faked with monkeypatch; the offload
modes run through diffusers' own hooks on the CPU (sequential offload, whose accelerate hooks fail with a
CPU execution device, is checked through the call it makes)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from flow.video import read_video, write_video
from motionguide import jobs, pipeline_job, testing
from motionguide.cli import main
from motionguide.errors import UserError
from motionguide.pipeline_job import find_pipeline, load_pipeline, resolve_device, resolve_dtype, run_pipeline

torch.set_flush_denormal(True)


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    """A tiny Wan 2.1 I2V folder (CLIP image encoder, float32 by the family's docs)."""
    return testing.save_tiny_pipeline("wan", tmp_path_factory.mktemp("pipes") / "wan", image_encoder=True)


@pytest.fixture(scope="module")
def cog5b(tmp_path_factory):
    return testing.save_tiny_pipeline("cogvideox", tmp_path_factory.mktemp("pipes") / "cog5b", fixed_size=True)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    base = F.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(40, 64), mode="bicubic", align_corners=False)
    clip = torch.stack([base[0, :, 4:36, 8 - k: 56 - k] for k in range(4)]).clamp(0, 1)  # 4 frames of 48x32
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_video(path, clip, 8.0)
    return path


@pytest.fixture
def no_load(monkeypatch):
    """Fail the test if any pipeline weight loads."""
    from diffusers import DiffusionPipeline

    def refuse(cls, *a, **k):
        raise AssertionError("a pipeline loaded although the folder already told what was wrong")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(refuse))


def _fake_cuda(monkeypatch, *, bf16: bool = True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100-SXM2-16GB")


# ---------------------------------------------------------------------------------------- device and dtype
def test_device_and_dtype_defaults(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu") and resolve_dtype(None, torch.device("cpu")) == torch.float32
    with pytest.raises(UserError, match="device='cuda': no CUDA device is available here"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="^device: expected cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # the tiny pipeline runs it on the CPU
    _fake_cuda(monkeypatch)
    cuda = resolve_device(None)
    assert cuda == torch.device("cuda") and resolve_dtype(None, cuda) == torch.bfloat16
    with pytest.raises(UserError, match=r"device='cuda:1': there are 1 CUDA devices \(cuda:0 .. cuda:0\)"):
        resolve_device("cuda:1")
    _fake_cuda(monkeypatch, bf16=False)
    assert resolve_dtype(None, cuda) == torch.float16
    with pytest.raises(UserError, match="dtype='bfloat16': Tesla V100-SXM2-16GB does not support bfloat16 .*use "
                                        "dtype='float16'"):
        resolve_dtype("bfloat16", cuda)


def test_lower_dtypes_keep_the_family_float32_parts(wan, cog5b, monkeypatch):
    pipe = load_pipeline(str(wan), device="cpu", dtype="bfloat16")
    assert pipe.transformer.dtype == pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.dtype == pipe.image_encoder.dtype == torch.float32  # as Wan's docs load them
    assert pipe._execution_device == torch.device("cpu")
    cog = load_pipeline(str(cog5b), device="cpu", dtype="float16")
    assert cog.transformer.dtype == cog.vae.dtype == torch.float16  # CogVideoX's docs load it all in one dtype
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_pipeline(str(wan)).transformer.dtype == torch.float32  # the CPU's default


# ------------------------------------------------------------------------------------------ offload, tiling
def _run(pipe, guidance):
    return run_pipeline(pipe, guidance, steps=1, prompt="", guidance_scale=1.0, seed=3)


def test_offload_modes_give_the_same_frames(wan, monkeypatch):
    clip = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    g = jobs.speed(clip, 0.5, model=None, mode="flow_only", interpolator="dis").guidance
    ref = _run(load_pipeline(str(wan), device="cpu"), g)
    asked = []
    for mode, method in (("model", "enable_model_cpu_offload"), ("group", "enable_group_offload")):
        cls = type(load_pipeline(str(wan), device="cpu"))
        real = getattr(cls, method)
        monkeypatch.setattr(cls, method, lambda self, *a, _r=real, _m=mode, **k: (asked.append((_m, k)), _r(self, *a, **k))[1])
        pipe = load_pipeline(str(wan), device="cpu", offload=mode)
        out = _run(pipe, g)
        assert float((out - ref).abs().max()) <= 1e-5, mode  # diffusers' own hooks, CPU to CPU
    assert asked[0] == ("model", {"device": torch.device("cpu")})  # (the call re-applies it at its end)
    group = [k for m, k in asked if m == "group"]
    assert len(group) == 1 and group[0]["onload_device"] == torch.device("cpu")
    assert group[0]["offload_type"] == "block_level"
    # sequential offload: accelerate's leaf hooks fail with a CPU execution device, so the CPU refuses it; on a
    # (faked) GPU the pipeline is handed to enable_sequential_cpu_offload with that device
    with pytest.raises(UserError, match="offload='sequential' .* use offload='model' \\(or group"):
        load_pipeline(str(wan), offload="sequential", device="cpu")
    import diffusers

    _fake_cuda(monkeypatch)
    seq = []
    monkeypatch.setattr(diffusers.WanImageToVideoPipeline, "enable_sequential_cpu_offload", lambda self, **k: seq.append(k))
    load_pipeline(str(wan), offload="sequential", device="cuda", dtype="float32")
    assert seq == [{"device": torch.device("cuda")}]


def test_vae_tiling(wan, monkeypatch):
    pipe = load_pipeline(str(wan), device="cpu", vae_tiling=True)
    assert pipe.vae.use_tiling
    import diffusers

    monkeypatch.setattr(diffusers, "AutoencoderKLWan", type("AutoencoderKLWan", (), {}))
    with pytest.raises(UserError, match=r"vae_tiling: the VAE of .* \(AutoencoderKLWan\) has no tiled decoding"):
        load_pipeline(str(wan), vae_tiling=True)


# --------------------------------------------------------------------------------------------- composite off
def test_cli_composite_off_writes_the_pipelines_own_clip(wan, video, tmp_path, capsys, monkeypatch):
    made, real = [], jobs.run_pipeline
    monkeypatch.setattr(jobs, "run_pipeline", lambda *a, **k: (made.append(real(*a, **k)), made[-1])[1])
    out = tmp_path / "raw.mp4"
    rc = main(["speed", str(video), "--factor", "0.5", "--pipeline", str(wan), "--composite", "off", "--device", "cpu",
               "--pipeline-size", "32x16", "--steps", "1", "--no-progress", "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    frames, _ = read_video(out)
    assert frames.shape == (7, 3, 32, 48) and made[0].shape == (7, 3, 16, 32)
    assert "its output as it is" in cap.out and "the output is its own clip, resized back to the input's 48x32" in cap.err
    res = jobs.pipeline_job(load_pipeline(str(wan), device="cpu"), jobs.speed(read_video(video)[0], 0.5, model=None,
                            mode="flow_only", interpolator="dis"), size=(16, 32), composite="off", steps=1, prompt="")
    up = F.interpolate(made[1], size=(32, 48), mode="bilinear", align_corners=False).clamp(0, 1)
    assert torch.equal(res.frames, up) and res.confidence is None and res.model_share == 1.0


# ----------------------------------------------------------------------------------------------- bad input
def _unsupported(tmp_path):
    d = tmp_path / "sd"
    d.mkdir()
    (d / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return d


def _adapter(tmp_path, name, meta, manifest=None):
    d = tmp_path / name
    d.mkdir()
    (d / "motion_guidance.json").write_text(json.dumps({"format": "motionguide-motion-guidance", **meta}))
    if manifest:
        (d / "pipeline.json").write_text(json.dumps(manifest))
    return d


@pytest.mark.parametrize("case, extra, msg", [
    ("cuda", ["--device", "cuda"], "--device cuda: no CUDA device is available here"),
    ("bf16", ["--device", "cuda", "--dtype", "bfloat16"], "--dtype bfloat16: Tesla V100-SXM2-16GB does not support "
                                                          "bfloat16"),
    ("class", [], "holds a StableDiffusionPipeline; motionguide runs WanPipeline, WanImageToVideoPipeline"),
    ("cog", ["--pipeline-size", "32x32"], "--pipeline-size 32x32: COG (CogVideoXImageToVideoPipeline) has learned "
                                          "positional embeddings and runs at 48x32 only"),
    ("cog", ["--pipeline-frames", "5"], "makes 9 frames per call only"),
    ("arch", [], "trained for a CogVideoXTransformer3DModel, but WAN has a WanTransformer3DModel"),
    ("size", [], "trained for another size of WanTransformer3DModel (num_blocks: adapter 4 vs pipeline 2)"),
    ("t2v", [], "trained on a WanPipeline, but WAN is a WanImageToVideoPipeline"),
    ("offload", ["--offload", "model"], "--offload model: WanImageToVideoPipeline in diffusers"),
    ("hub", [], "not in the local Hugging Face cache"),
    ("off", ["--composite", "off"], "--composite off gives a pipeline's own clip, but no --pipeline was given"),
])
def test_cli_refuses_before_any_weight_loads(wan, cog5b, video, tmp_path, capsys, monkeypatch, no_load, case,
                                             extra, msg):
    pipe = {"cog": cog5b, "class": _unsupported(tmp_path), "hub": "no-such-org/no-such-pipeline"}.get(case, wan)
    if case in ("cuda", "bf16"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        if case == "bf16":
            _fake_cuda(monkeypatch, bf16=False)
    if case == "offload":
        import diffusers

        monkeypatch.setattr(diffusers.WanImageToVideoPipeline, "model_cpu_offload_seq", None)
    adapters = {"arch": dict(architecture="CogVideoXTransformer3DModel"),
                "size": dict(architecture="WanTransformer3DModel", num_blocks=4),
                "t2v": dict(architecture="WanTransformer3DModel")}.get(case)
    if adapters:
        manifest = {"pipeline_class": "WanPipeline", "transformer_config": {}} if case == "t2v" else None
        extra = ["--adapters", str(_adapter(tmp_path, case, adapters, manifest))]
    out = tmp_path / "out"
    out.mkdir()
    argv = ["speed", str(video), "--factor", "0.5", *(["--pipeline", str(pipe)] if case != "off" else []), *extra,
            "-o", str(out / "o.mp4"), "--compare", str(out / "o.png"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    line = err[-1].replace(str(cog5b), "COG").replace(str(wan), "WAN")
    assert "Traceback" not in "\n".join(err) and msg in line, line
    assert list(out.iterdir()) == []
    if case == "hub":
        assert "hf download no-such-org/no-such-pipeline" in line and "huggingface-cli download" in line


def test_cli_refuses_a_frame_count_the_vae_does_not_take_and_out_of_memory(wan, video, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    argv = ["speed", str(video), "--factor", "0.5", "--pipeline", str(wan), "--steps", "1", "--no-progress",
            "-o", str(out / "o.mp4")]
    assert main([*argv, "--pipeline-frames", "6"]) == 2
    assert "--pipeline-frames 6: WanImageToVideoPipeline takes 4k+1 frames per call (its VAE), at least 5; use 5 or 9" \
        in capsys.readouterr().err

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(pipeline_job, "generate_with_guidance", oom)
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "ran out of memory at 48x32, 9 frames per call (CUDA out of memory. Tried to allocate 20.00 GiB)" in line
    for fix in ("--offload model", "--pipeline-size", "--pipeline-frames", "--vae-tiling"):
        assert fix in line
    assert list(out.iterdir()) == []


def test_hub_ids_in_the_cache_load_from_it(wan, monkeypatch):
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda name, **k: (asked.append((name, k)), str(wan))[1])
    src = find_pipeline("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
    assert asked == [("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", {"local_files_only": True})]
    assert src.folder == wan and src.class_name == "WanImageToVideoPipeline" and src.fixed is None


def test_options_without_a_pipeline_get_a_notice(video, tmp_path, capsys):
    rc = main(["speed", str(video), "--factor", "0.5", "--mode", "flow_only", "--device", "cpu", "--vae-tiling",
               "-o", str(tmp_path / "s.mp4")])
    assert rc == 0 and "--device, --vae-tiling apply to --pipeline only" in capsys.readouterr().err


def test_help_says_what_each_composite_gives(capsys):
    with pytest.raises(SystemExit):
        main(["extend", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for s in ("--composite {confidence,off}", "off: the pipeline's own clip", "--offload {none,model,group,sequential}",
              "--dtype {bfloat16,float16,float32}", "--pipeline-frames N", "--vae-tiling", "--device DEVICE"):
        assert s in text, s


def test_cli_runs_offloaded_in_bfloat16(wan, video, tmp_path, capsys, monkeypatch):
    loaded, real = [], pipeline_job.load_pipeline
    monkeypatch.setattr(jobs, "load_pipeline", lambda *a, **k: (loaded.append(k), real(*a, **k))[1])
    out = tmp_path / "o.mp4"
    rc = main(["extend", str(video), "--frames", "2", "--pipeline", str(wan), "--device", "cpu", "--dtype", "bfloat16",
               "--offload", "group", "--vae-tiling", "--pipeline-frames", "5", "--steps", "1", "--no-progress",
               "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert loaded == [dict(device="cpu", dtype="bfloat16", offload="group", vae_tiling=True)]
    assert read_video(out)[0].shape == (6, 3, 32, 48)
    assert "--offload group with --device cpu moves weights from the CPU to the CPU: it saves no memory" in cap.err


def test_an_adapter_saved_for_the_pipeline_passes_the_folder_check(wan, tmp_path):
    import motionguide as mg
    from motionguide.finetune.recipe import transformer_config
    from motionguide.pipeline_job import check_request

    pipe = load_pipeline(str(wan), device="cpu")
    mg.apply_motion_guidance(pipe.transformer, mg.MotionGuidanceConfig())
    folder = mg.save_motion_guidance(pipe.transformer, tmp_path / "ad")
    (folder / "pipeline.json").write_text(json.dumps({"pipeline_class": "WanImageToVideoPipeline",
                                                      "transformer_config": transformer_config(pipe.transformer)}))
    check_request(find_pipeline(wan), adapter=folder)  # no false refusal
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    (other / "pipeline.json").write_text(json.dumps({"pipeline_class": "WanImageToVideoPipeline",
                                                     "transformer_config": {"in_channels": 16}}))
    with pytest.raises(UserError, match="trained on a transformer whose in_channels differ"):
        check_request(find_pipeline(wan), adapter=other)
