"""benchmarks/ablation.py: each variant takes out exactly its part, and a run on a tiny folder of footage
written here gives paired full-minus-variant rows for every variant, job and size."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flow.video import write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import ablation as mod  # imports benchmarks/footage/ as footage, as the script run from there does
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    yield mod
    for name in [n for n in sys.modules if n in ("ablation", "footage") or n.startswith("footage.")]:
        sys.modules.pop(name, None)


def test_each_variant_takes_out_its_part(ablation):
    torch.set_flush_denormal(True)
    full = ablation.variant_model("full")
    one = ablation.variant_model("one_gate")
    assert len(set(one.gates.reference_gate.tolist())) == 1 and len(set(full.gates.reference_gate.tolist())) > 1
    assert float(one.gates.reference_gate[0]) == pytest.approx(float(full.gates.reference_gate.mean()))
    latent = ablation.variant_model("latent_only")
    assert torch.equal(latent.gates.reference_gate, full.gates.reference_gate)  # the mode differs, not the weights
    free = ablation.variant_model("training_free")
    assert free.gates is None and free.transformer.motion_guidance.config.mode == "training_free"


def test_a_run_pairs_every_variant_with_the_full_model(ablation, tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    tex = F.interpolate(torch.rand(1, 3, 14, 16, generator=g), scale_factor=8, mode="bicubic",
                        align_corners=False).clamp(0, 1)[0]
    frames = torch.stack([tex[:, 2 * k: 2 * k + 48, 2 * k: 2 * k + 64] for k in range(24)])
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "pan.mp4", frames, 12.0)
    out = tmp_path / "ablation.json"
    rc = ablation.main(["--videos", str(tmp_path / "videos"), "--clips", "2", "--variants", "one_gate,latent_only",
                        "--jobs", "extend", "--json", str(out), "--no-progress"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["meta"]["variants"] == ["full", "one_gate", "latent_only"] and len(d["meta"]["clips"]) == 2
    assert {(r["mode"], r["size"]) for r in d["rows"]} >= {("full", "model"), ("full", "input"), ("flow_only", "input")}
    assert all(r["clips"] == 2 for r in d["rows"])
    assert {(p["b"], p["size"], p["key"]) for p in d["paired"] if p["a"] == "full"} >= {
        (v, s, "psnr") for v in ("one_gate", "latent_only") for s in ("model", "input")}
    printed = capsys.readouterr().out
    assert "| extend | one_gate |" in printed and "| extend | latent_only |" in printed
    for gone in ("no_blend_head", "no_gate_head"):  # parts the model does not have
        assert ablation.main(["--variants", gone]) == 2
