"""The embedded model's recipes on the shared loop: each stage trains what it should and exports loadable
weights; stages chain as the shipped recipe does; the CLI drives them."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from motionguide.embedded.adapters import GATES_FILE, load_adapters
from motionguide.embedded.checkpoint import load_embedded
from motionguide.errors import UserError
from motionguide.embedded.recipes import (
    LAYOUT_P,
    LAYOUTS,
    SHIPPED_RECIPE,
    AdapterRecipe,
    Stage,
    TrainConfig,
    layout_probs,
    run_recipe,
    stage_command,
    train,
)

TINY = {"num_layers": 1, "num_heads": 2, "head_dim": 12, "ffn_dim": 16, "text_dim": 8, "freq_dim": 16, "steps": 2}
QUIET = dict(progress=False, threads=1)


def _silent(_msg: str) -> None:
    pass


def _cfg(out, **kw):
    base = dict(kind="base", steps=4, out=str(out), batch_size=2, lr=2e-3, warmup=1, checkpoint_every=2,
                model=TINY, **QUIET)
    base.update(kw)
    return TrainConfig(**base)


def _adapters_kw(base: str, **kw) -> dict:
    return dict(kind="adapters", batch_size=2, lr=1e-3, warmup=1, checkpoint_every=2, base=base, **QUIET, **kw)


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A tiny base model and adapters on it (2 steps each), shared by the stage tests."""
    root = tmp_path_factory.mktemp("stages")
    train(_cfg(root / "base", steps=2), log=_silent)
    base = str(root / "base" / "model")
    train(TrainConfig(steps=2, out=str(root / "ad"), **_adapters_kw(base)), log=_silent)
    return {"root": root, "base": base, "adapters": str(root / "ad" / "adapters")}


def test_base_loss_falls_and_outputs_are_written(tmp_path):
    res = train(_cfg(tmp_path, steps=14, checkpoint_every=7), log=_silent)
    losses = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["losses"]
    assert res["step"] == 14 and len(losses) == 14
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert load_embedded(tmp_path / "model").config.num_layers == 1


def test_resume_equals_uninterrupted_run(tmp_path):
    train(_cfg(tmp_path / "a", steps=4), log=_silent)
    train(_cfg(tmp_path / "b", steps=2), log=_silent)
    msgs = []
    train(_cfg(tmp_path / "b", steps=4), log=msgs.append)
    assert any("resumed" in m for m in msgs)
    a = load_file(tmp_path / "a" / "checkpoint" / "trainable.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint" / "trainable.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k  # (the two runs' schedules differ: 2 vs 4 steps)
    assert train(_cfg(tmp_path / "b", steps=4), log=msgs.append)["step"] == 4  # nothing left to do


def test_adapter_stage_trains_the_adapters_and_gates_only(stages):
    state = json.loads((stages["root"] / "ad" / "checkpoint" / "state.json").read_text())
    assert state["kind"] == "adapters" and state["step"] == 2
    names = load_file(stages["root"] / "ad" / "checkpoint" / "trainable.safetensors").keys()
    assert sorted(n for n in names if n.startswith("gates.")) == ["gates.correction_gate", "gates.reference_gate"]
    assert not any("lora_" in n for n in names) and any("motion_guidance" in n for n in names)
    assert not any(n.startswith("transformer.blocks.0.attn1.to_q.base_layer") for n in names)  # base frozen
    load_adapters(load_embedded(stages["base"]), stages["adapters"])
    with pytest.raises(UserError, match="holds a .base. run"):  # a base run cannot be resumed as adapters
        train(TrainConfig(steps=3, out=str(stages["root"] / "base"), **_adapters_kw(stages["base"])), log=_silent)


def test_adapter_warm_start_and_matched_batches(stages, tmp_path):
    """--init loads earlier adapters as the starting point; a folder without adapters is refused."""
    kw = _adapters_kw(stages["base"])
    saved = load_file(f"{stages['adapters']}/{GATES_FILE}")
    warm = AdapterRecipe(TrainConfig(steps=2, out=str(tmp_path / "w"), init=stages["adapters"], matched_p=1.0, **kw))
    params = dict(warm.trainable())
    assert torch.equal(params["gates.reference_gate"].detach(), saved["reference_gate"])
    assert bool((saved["reference_gate"] != 0).any())  # it trained, so equality above means it was loaded
    assert torch.isfinite(warm.loss(0, 0, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="--init .* does not hold adapters"):
        AdapterRecipe(TrainConfig(steps=2, out=str(tmp_path / "x"), init=stages["base"], **kw))
    with pytest.raises(ValueError, match="matched_p"):
        TrainConfig(kind="adapters", matched_p=1.5)
    with pytest.raises(ValueError, match="matched_t"):
        TrainConfig(kind="adapters", matched_t=(0.0, 0.3))


def test_extend_share_rescales_the_continuation_layouts():
    assert torch.equal(layout_probs(), torch.tensor(LAYOUT_P))
    p = layout_probs(0.34)
    ext = torch.tensor([k == "extend" for k, _ in LAYOUTS])
    assert abs(float(p[ext].sum()) - 0.34) < 1e-6 and abs(float(p.sum()) - 1) < 1e-6
    base = torch.tensor(LAYOUT_P)
    assert torch.allclose(p[~ext] / p[~ext].sum(), base[~ext] / base[~ext].sum())  # the others keep their ratios
    with pytest.raises(ValueError, match="extend_share"):
        TrainConfig(kind="adapters", extend_share=1.0)


def test_shipped_recipe_chains_earlier_stages_and_prints_as_commands():
    seen = set()
    for s in SHIPPED_RECIPE:
        assert s.base in seen | {None} and s.init in seen | {None}, s
        assert (s.kind == "base") == (s.base is None)
        TrainConfig(kind=s.kind, steps=s.steps, init="x" if s.init else None, **s.options)  # options are valid
        seen.add(s.name)
    assert {s.kind for s in SHIPPED_RECIPE} == {"base", "adapters"}
    assert [s.name for s in SHIPPED_RECIPE] == ["base", "adapters", "adapters_ft"]
    assert stage_command(SHIPPED_RECIPE[2]) == ("motionguide train adapters --steps 1200 --out runs/adapters_ft "
                                                "--base runs/base/model --init runs/adapters/adapters "
                                                "--matched-p 0.9 --matched-loss psnr --lr 0.0005")


def test_run_recipe_runs_the_stages_in_order_and_resumes(tmp_path):
    stages = (Stage("base", "base", 100), Stage("adapters", "adapters", 100, base="base"))
    over = dict(batch_size=1, checkpoint_every=1, model=TINY, **QUIET)
    res = run_recipe(tmp_path, stages, steps_scale=0.01, overrides=over, log=_silent)
    assert [k for k in res] == ["base", "adapters"] and all(r["step"] == 1 for r in res.values())
    load_adapters(load_embedded(tmp_path / "base" / "model"), tmp_path / "adapters" / "adapters")
    msgs = []
    run_recipe(tmp_path, stages, steps_scale=0.01, overrides=over, log=msgs.append)
    assert sum("nothing to do" in m for m in msgs) == 2
    with pytest.raises(ValueError, match="steps_scale"):
        run_recipe(tmp_path, stages, steps_scale=0)


def test_cli_and_bad_config(tmp_path, capsys):
    from motionguide.cli import main

    rc = main(["train", "base", "--steps", "2", "--out", str(tmp_path / "c"), "--batch-size", "1", "--threads", "1",
               "--checkpoint-every", "2", "--no-progress", "--model-config", json.dumps(TINY)])
    assert rc == 0 and (tmp_path / "c" / "model" / "manifest.json").is_file()
    for argv, msg in [(["base", "--steps", "2", "--model-config", "[1]"], "expected a JSON object"),
                      (["base"], "needs --steps"),
                      (["recipe", "--steps", "3"], "does not apply to 'train recipe'"),
                      (["adapters", "--steps", "2", "--model-config", '{"num_layers": 2}'], "sizes a new base model"),
                      (["base", "--steps", "2", "--model-config", '{"layers": 3}'], "unknown fields ['layers']")]:
        capsys.readouterr()
        assert main(["train", *argv, "--out", str(tmp_path / "d")]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and (msg is None or msg in err), err
        assert not (tmp_path / "d").exists()
    (tmp_path / "file").write_text("x")
    assert main(["train", "base", "--steps", "2", "--out", str(tmp_path / "file")]) == 2
    assert "got an existing file" in capsys.readouterr().err
    for kind in ("vae", "blend", "continuation"):
        with pytest.raises(ValueError, match="kind"):
            TrainConfig(kind=kind)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_train_help_lists_the_shipped_stages_from_code(capsys):
    from motionguide.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for s in SHIPPED_RECIPE:
        assert f"--out runs/{s.name}" in out
    assert "(default: None)" not in out and "examples:" in out


def test_guide_scale_trains_on_guidance_made_large_and_downscaled(stages, tmp_path, monkeypatch):
    """guide_scale renders and guides the clips at a multiple of the model's size and hands the model the
    downscaled guidance and warp, as the jobs do from the input's size."""
    import motionguide.embedded.recipes as rec

    seen = []
    real = rec.guided_reference_and_scale

    def spy(model, guidance, lg, static, strength, warp):
        seen.append((tuple(guidance.size), tuple(warp.shape[-2:])))
        return real(model, guidance, lg, static, strength, warp)

    monkeypatch.setattr(rec, "guided_reference_and_scale", spy)
    kw = _adapters_kw(stages["base"])
    r = AdapterRecipe(TrainConfig(steps=1, out=str(tmp_path / "g"), guide_scale=2, **kw))
    loss = r.loss(0, 0, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.requires_grad
    assert seen == [((32, 32), (32, 32))]
    plain = AdapterRecipe(TrainConfig(steps=1, out=str(tmp_path / "p"), **kw))
    plain.loss(0, 0, torch.Generator().manual_seed(0))
    assert seen[-1] == ((32, 32), (32, 32))  # the guidance's own warp at its grid
    for bad in (0, 1.5, True, 17):
        with pytest.raises(ValueError, match="guide_scale"):
            TrainConfig(kind="adapters", guide_scale=bad)
