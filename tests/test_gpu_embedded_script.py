"""The prepared GPU run of a larger embedded model (benchmarks/gpu_embedded.py): its step budget, the bfloat16
checkpoint round trip, and the whole script at tiny sizes on the CPU (slow)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from motionguide.embedded.adapters import attach_adapters, load_adapters, save_adapters
from motionguide.embedded.checkpoint import cast_weights, load_embedded, save_embedded
from motionguide.embedded.data import make_clip, true_guidance
from motionguide.embedded.network import EmbeddedConfig, EmbeddedVideoModel
from motionguide.embedded.recipes import SHIPPED_RECIPE, Stage
from motionguide.embedded.windows import generate_windows
from motionguide.errors import CheckpointError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_embedded.py"
SMALL = {"height": 24, "width": 40, "num_frames": 4, "num_layers": 1, "num_heads": 2, "head_dim": 12, "ffn_dim": 16,
         "text_dim": 8, "freq_dim": 16, "steps": 2}


def _script():
    spec = importlib.util.spec_from_file_location("gpu_embedded", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_step_factor_fills_the_budget_from_measured_costs():
    ge = _script()
    stages = (Stage("base", "base", 1000), Stage("ad", "adapters", 1000, base="base"),
              Stage("ft", "adapters", 1200, base="base", init="ad"))
    costs = {"base": {"step_s": 0.1, "fixed_s": 2.0}, "ad": {"step_s": 0.2, "fixed_s": 1.0},
             "ft": {"step_s": 0.2, "fixed_s": 1.0}}
    s = ge.solve_scale(stages, costs, 100.0, 4)
    total = sum(ge.predict(costs[st.name], ge.plan_stage(st, s, 4)) for st in stages)
    assert 0 < s < 1 and 98.0 < total <= 100.0  # fills the budget without going over
    assert ge.plan_stage(stages[2], s, 4) == {"steps": round(1200 * s)}
    assert ge.solve_scale(stages, costs, 1e6, 4) == ge.MAX_SCALE  # capped when time is plentiful
    assert ge.plan_stage(stages[0], 0.0, 4) == {"steps": 4}  # never below the probe's steps
    # the probe's timing: steps timed over the second half, set-up before the first checkpoint
    clock = ge.StageClock(lambda m: None)
    clock.start, clock.steps = 10.0, [(4, 15.0), (8, 17.0)]
    got = ge.probe_costs(clock, 17.5)
    assert got["step_s"] == pytest.approx(0.5) and got["setup_s"] == pytest.approx(3.0)
    # the script follows the shipped recipe's stages, whatever they are
    assert [s.name for s in SHIPPED_RECIPE][0] == "base" and SHIPPED_RECIPE[-1].kind != "base"


def test_bfloat16_checkpoint_loads_and_generates_at_its_size(tmp_path):
    torch.manual_seed(0)
    model = EmbeddedVideoModel(EmbeddedConfig.from_dict(SMALL))
    save_embedded(model, tmp_path / "base")  # the base before the adapters, as the recipe's stages do
    base_state = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    attach_adapters(model)
    with torch.no_grad():  # non-zero adapters, so that the round trip carries something
        for n, p in model.named_parameters():
            if "lora_B" in n or n.startswith("gates."):
                p.normal_(0, 0.05)
    save_adapters(model, tmp_path / "adapters")
    sizes = {k: sum(f.stat().st_size for f in (tmp_path / k).iterdir()) for k in ("base", "adapters")}
    for k in ("base", "adapters"):
        cast_weights(tmp_path / k)
    weights = load_file(str(tmp_path / "base" / "diffusion_pytorch_model.safetensors"))
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.bfloat16}
    assert json.loads((tmp_path / "base" / "manifest.json").read_text())["weights_dtype"] == "bfloat16"
    assert sum(f.stat().st_size for f in (tmp_path / "base").iterdir()) < 0.7 * sizes["base"]
    back = load_embedded(tmp_path / "base")  # checksums verified, weights cast back to float32
    load_adapters(back, tmp_path / "adapters")
    assert back.config.to_dict() == model.config.to_dict()
    assert {p.dtype for p in back.parameters()} == {torch.float32}
    plain = load_embedded(tmp_path / "base")
    for n, b in plain.transformer.state_dict().items():
        assert torch.equal(base_state[n].to(torch.bfloat16).float(), b), n
    gates = load_file(str(tmp_path / "adapters" / "gates.safetensors"))
    for n, b in back.gates.state_dict().items():
        assert gates[n].dtype == torch.bfloat16 and torch.equal(model.gates.state_dict()[n].to(torch.bfloat16).float(), b)
    clips = [make_clip(i, split="heldout", num_frames=4, size=(24, 40)) for i in range(2)]
    g = true_guidance(clips, (0, 3), 4)
    out = generate_windows(back, g, mode="both", steps=2)
    assert out.shape == (2, 3, 4, 24, 40) and torch.isfinite(out).all()
    (tmp_path / "adapters" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="no manifest.json"):
        cast_weights(tmp_path / "adapters")


@pytest.mark.slow
def test_tiny_run_trains_every_stage_and_writes_a_loadable_checkpoint(tmp_path):
    ge = _script()
    out = tmp_path / "out" / "gpu_embedded.json"
    data = ge.run(tiny=True, out=out, budget_s=20, total_s=60, asset_mb=0.01, work=tmp_path / "work",
                  archive=out.with_name("checkpoint.tar.gz"), log=lambda m: None)
    saved = json.loads(out.read_text())
    # what a GPU call brings back: the JSON and the checkpoint as one archive; the runs stay in the work folder
    assert sorted(p.name for p in out.parent.iterdir()) == ["checkpoint.tar.gz", "gpu_embedded.json"]
    assert saved["checkpoint"]["archive_mb"] > 0 and Path(saved["checkpoint"]["base"]).is_relative_to(tmp_path / "work")
    assert data["errors"] == {} and saved["errors"] == {} and saved["environment"]["tiny"] is True
    tr = saved["training"]
    assert tr["recipe"] == [s.name for s in SHIPPED_RECIPE] and list(tr["stages"]) == tr["recipe"]
    assert set(tr["probe"]) == set(tr["recipe"]) and all(p["step_s"] > 0 for p in tr["probe"].values())
    assert all(s["steps"] >= 2 and s["seconds"] > 0 for s in tr["stages"].values())
    ck = saved["checkpoint"]
    assert ck["dtype"] == "bfloat16" and ck["total_mb"] < ck["fp32_total_mb"] and ck["fits_budget"] is False
    model = load_embedded(ck["base"])
    load_adapters(model, ck["adapters"])
    cfg = model.config
    assert (cfg.height, cfg.width, cfg.num_frames) == (48, 64, 8)
    chk = saved["check"]
    assert chk["out_shape"] == [1, 3, 8, 48, 64] and chk["cpu_seconds_per_window"] > 0 and chk["psnr_both"] > 10
    sc = saved["score"]
    assert "skipped" in sc or sc["clips"] or "stopped" in sc
    if sc.get("clips"):  # real footage was scored in time: rows and paired differences of both models
        assert {r["mode"] for r in sc["rows"]} >= {"large", "shipped", "large_fill", "shipped_fill"}
        assert {(p["a"], p["b"], p["size"]) for p in sc["paired"]} >= {("large", "shipped", "input"),
                                                                       ("large_fill", "shipped_fill", "input")}
        assert isinstance(sc["beats_shipped"], bool)
