"""benchmarks/real_footage.py and its library benchmarks/footage/ on a tiny folder of footage written here:
clips, hold-out tasks, the JSON schema of issue 17, and bad input. Only the weight-free rows run (no embedded
model needed)."""
from __future__ import annotations

import doctest
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarks._common import UserError
from flow.io import write_image
from flow.video import write_video

REPO = Path(__file__).resolve().parents[2]
ROW_KEYS = {"job", "mode", "size", "psnr", "ssim", "stability", "seconds_per_frame"}
PAIRED_KEYS = {"job", "a", "b", "size", "mean", "se"}
FAST_MODES = ["flow_only", "repeat_last", "average", "constant_velocity"]


@pytest.fixture(scope="module")
def bench():
    """The library: clips, tasks, methods, scoring and report."""
    from benchmarks import footage

    return footage


@pytest.fixture(scope="module")
def script():
    """The command line, loaded from its file as a test loads a script."""
    spec = importlib.util.spec_from_file_location("real_footage_bench", REPO / "benchmarks" / "real_footage.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_the_script_runs_the_library_and_its_examples_hold(bench, script):
    assert script.footage is bench  # one library, imported as ablation.py and gpu_embedded.py import it
    for module in (bench.clips, bench.tasks, bench.scoring, bench.report):
        assert doctest.testmod(module).failed == 0


def _moving(n: int, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """``(n, 3, h, w)``: a smooth random texture panning 2 px right and 2 px down per frame (even steps keep
    the codec's 2x2 chroma grid in phase, so every frame is a plain shift of the others)."""
    g = torch.Generator().manual_seed(seed)
    tex = F.interpolate(torch.rand(1, 3, h // 8 + 8, w // 8 + 8, generator=g), scale_factor=8, mode="bicubic",
                        align_corners=False).clamp(0, 1)[0]
    return torch.stack([tex[:, 2 * (n - k): 2 * (n - k) + h, 2 * (n - k): 2 * (n - k) + w] for k in range(n)])


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    d = tmp_path_factory.mktemp("footage")
    write_video(d / "pan.mp4", _moving(20), fps=12)
    write_video(d / "short.mp4", _moving(5, seed=1), fps=30)  # shorter than a clip: skipped
    (d / "notes.txt").write_text("not a video")
    (d / "seq").mkdir()
    for i, f in enumerate(_moving(10, seed=2)):
        write_image(d / "seq" / f"f{i:03d}.png", f)
    return d


def test_sources_clips_and_notices(bench, footage, capsys):
    sources = {s.name: s for s in bench.find_sources(footage)}
    assert set(sources) == {"pan.mp4", "short.mp4", "seq/"}
    assert sources["seq/"].fps == bench.FRAME_FOLDER_FPS
    assert "notes.txt" in capsys.readouterr().err
    assert bench.read_clips(sources["short.mp4"], 4, 0) == []
    assert "fewer than a clip's 9" in capsys.readouterr().err
    clips = bench.read_clips(sources["pan.mp4"], 4, 0)
    assert [c.start for c in clips] == [0, 10]  # 20 frames hold two clips of 9 that do not overlap
    assert all(tuple(c.frames.shape) == (9, 3, 48, 64) for c in clips)
    # given starts (a held-out set kept apart by frame numbers): exactly those frames
    given = bench.read_clips(sources["pan.mp4"], 1, 0, starts=[11, 3])
    assert [c.start for c in given] == [3, 11]
    assert torch.equal(given[1].frames[:8], clips[1].frames[1:])  # frames 11..18 of both
    with pytest.raises(UserError, match="runs past the 20 frames"):
        bench.read_clips(sources["pan.mp4"], 1, 0, starts=[12])


def test_held_out_frames_never_reach_a_method(bench, footage):
    src = next(s for s in bench.find_sources(footage) if s.name == "pan.mp4")
    clips = bench.read_clips(src, 1, 0)
    calls = []

    def spy(fn):
        def run(job, inputs):
            calls.append((job, inputs))
            return fn(job, inputs)
        return run

    methods = {n: spy(f) for n, f in bench.build_methods(FAST_MODES).items()}
    res = bench.run_benchmark(clips, methods, (32, 32), progress=False)
    tasks = bench.make_tasks(clips[0].frames, clips[0].name)
    assert {j for j, _ in calls} == set(bench.JOBS)
    for job, inputs in calls:
        task = tasks[job]
        given = [inputs["reference"], inputs["image"][None]] if job == "transfer" else [inputs["clip"]]
        given = torch.cat(given)
        if job != "transfer":  # transfer is self-transfer: the reference is the clip by design
            assert torch.equal(given, task.truth[task.kept])
            for t in task.generated:
                assert not any(torch.equal(f, task.truth[t]) for f in given), f"{job}: held-out frame {t} given"
    assert tasks["speed0.5"].generated == [1, 3, 5, 7] and tasks["speed0.25"].generated == [1, 2, 3, 5, 6, 7]
    assert tasks["extend"].kept == [0, 1, 2, 3, 4] and tasks["extend"].generated == [5, 6, 7, 8]

    result = json.loads(json.dumps(bench.build_result(res, clips, (32, 32))))  # plain JSON, no NaN/inf
    rows = result["rows"]
    assert {(r["job"], r["mode"]) for r in rows} == {(j, m) for m in FAST_MODES for j in bench.APPLIES[m]}
    for r in rows:
        assert set(r) == ROW_KEYS | ({"motion_epe"} if r["job"] == "transfer" else set())
        assert r["size"] in ("input", "model") and r["mode"] in bench.MODES and r["job"] in bench.JOBS
    by = {(r["job"], r["mode"], r["size"]): r for r in rows}
    for size in ("input", "model"):
        assert math.isfinite(by[("extend", "repeat_last", size)]["psnr"])
        for job in bench.JOBS:
            assert 15 < by[(job, "flow_only", size)]["psnr"] <= bench.PSNR_CAP
        # a plain pan: the warp beats repeating the last frame, and blending neighbours
        assert by[("extend", "flow_only", size)]["psnr"] > by[("extend", "repeat_last", size)]["psnr"]
        assert by[("speed0.5", "flow_only", size)]["psnr"] > by[("speed0.5", "average", size)]["psnr"]
    assert result["paired"] and all(set(p) == PAIRED_KEYS for p in result["paired"])
    p = next(p for p in result["paired"] if (p["job"], p["a"], p["b"], p["size"]) ==
             ("extend", "flow_only", "constant_velocity", "input"))
    assert p["se"] is None  # one clip: no standard error
    assert any("not measured" in t for t in result["targets"])  # the model rows are not in this run


def test_fill_rows_score_the_unseen_pixels_against_the_clamp(bench, footage):
    src = next(s for s in bench.find_sources(footage) if s.name == "pan.mp4")
    clips = bench.read_clips(src, 2, 0)
    modes = ["fill_clamp", "fill_hold", "fill_telea_edge"]
    grown = []
    res = bench.run_benchmark(clips, bench.build_methods(modes), (32, 32), jobs_=("extend",), progress=False,
                              on_clip=lambda rows: grown.append(len(rows)))
    assert grown == [2 * len(modes), 4 * len(modes)]  # the rows so far, after each clip
    at_input = [r for r in res["per_clip"] if r["size"] == "input"]
    # the texture pans right and down: content enters at the left and top edges, where no source sees
    assert all(r["unseen_share"] > 0 and r["entering_share"] > 0 and "psnr_entering" in r for r in at_input)
    assert not any("psnr_unseen" in r for r in res["per_clip"] if r["size"] == "model")
    by = {(r["clip"], r["mode"]): r for r in at_input}
    for c in clips:  # the same pixels everywhere a source sees, other pixels where none does
        assert by[(c.name, "fill_hold")]["psnr_unseen"] != by[(c.name, "fill_clamp")]["psnr_unseen"]
    result = json.loads(json.dumps(bench.build_result(res, clips, (32, 32))))
    u = {r["mode"]: r for r in result["unseen"]}
    assert set(u) == set(modes) and u["fill_clamp"]["psnr_unseen_vs_fill_clamp"] == {"mean": 0.0, "se": 0.0}
    d = [by[(c.name, "fill_hold")]["psnr_unseen"] - by[(c.name, "fill_clamp")]["psnr_unseen"] for c in clips]
    assert u["fill_hold"]["psnr_unseen_vs_fill_clamp"]["mean"] == pytest.approx(sum(d) / 2, abs=1e-3)
    lines = bench.format_tables(result)
    assert any(ln.startswith("Where no source") for ln in lines)
    assert any("fill_telea_edge" in ln and "entering" in ln for ln in lines)


def test_model_modes_run_at_both_sizes_with_the_shipped_model(bench):
    """A model mode runs twice: at the input's size with the model filling what the confidence does not
    trust (scored there, with the fill metrics when the model supplied pixels), and at the model's size."""
    methods = bench.build_methods(["both"])
    assert set(methods) == {"both@input", "both@model"}
    clip = bench.Clip("pan", 0, 12.0, _moving(9))
    res = bench.run_benchmark([clip], methods, (32, 32), jobs_=("extend",), progress=False)
    rows = {(r["mode"], r["size"]): r for r in res["per_clip"]}
    assert set(rows) == {("both", "input"), ("both", "model")}
    assert rows[("both", "input")]["out_size"] == [48, 64] and rows[("both", "model")]["out_size"] == [32, 32]
    fill = bench.fill_summary(res["per_clip"])
    assert [f["mode"] for f in fill] == ["both"]  # content enters the frame: the model fills it
    assert all(math.isfinite(f["psnr_fill"]) and 0 < f["model_share"] <= 1 for f in fill)


def test_shared_interpolator_changes_no_output_and_charges_reuse(bench):
    task = bench.make_tasks(_moving(9), "x", ("speed0.5",))["speed0.5"]
    shared = bench.SharedInterpolator()
    plain = bench.job_method(None, 0, mode="flow_only")("speed0.5", task.inputs)[0]
    run = bench.job_method(None, 0, shared, mode="flow_only")
    first = run("speed0.5", task.inputs)[0]
    assert shared.charge() == 0  # the first call computed the passes
    again = run("speed0.5", task.inputs)[0]
    assert shared.charge() > 0  # the second reused them and is charged their time
    assert torch.equal(first, plain) and torch.equal(again, plain)


def test_minterpolate_keeps_the_kept_frames_in_place(bench):
    fn = bench.minterpolate_method()
    if isinstance(fn, str):
        pytest.skip(fn)
    task = bench.make_tasks(_moving(9), "x", ("speed0.5",))["speed0.5"]
    out = fn("speed0.5", task.inputs)
    assert out.shape == task.truth.shape
    from flow.metrics import psnr

    assert psnr(out[task.kept], task.truth[task.kept]) > 40  # output j shows input time j / 2


def test_bad_input_exits_2(script, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert script.main(["--videos", str(tmp_path / "empty")]) == 2
    assert "no readable video" in capsys.readouterr().err
    (tmp_path / "short").mkdir()
    write_video(tmp_path / "short" / "a.mp4", _moving(4), fps=10)
    assert script.main(["--videos", str(tmp_path / "short"), "--modes", "repeat_last"]) == 2
    err = capsys.readouterr().err
    assert "fewer than a clip's 9" in err and "no clip of 9 frames" in err
    assert script.main(["--videos", str(tmp_path / "nowhere")]) == 2
    assert script.main(["--videos", str(tmp_path / "short"), "--modes", "magic"]) == 2
    for bad in ("b.mp4=0", "a.mp4=x", "a.mp4=", "a.mp4=-1"):  # a source not found, not frame numbers
        assert script.main(["--videos", str(tmp_path / "short"), "--starts", bad]) == 2
        assert "--starts" in capsys.readouterr().err
    assert script.main(["--videos", str(tmp_path / "short"), "--starts", "a.mp4=0"]) == 2  # 4 frames: no clip
    assert "fewer than a clip's 9" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))
