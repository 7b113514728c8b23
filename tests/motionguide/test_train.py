"""Training loop: the loss falls on a tiny config, checkpoints resume exactly, outputs load, CLI works."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from motionguide.model import load_adapters, load_embedded
from motionguide.train import TrainConfig, train

TINY = {"num_layers": 1, "num_heads": 2, "head_dim": 12, "ffn_dim": 16, "text_dim": 8, "freq_dim": 16, "steps": 2}


def _cfg(out, **kw):
    base = dict(kind="base", steps=4, out=str(out), batch_size=2, lr=2e-3, warmup=1, checkpoint_every=2,
                model=TINY, progress=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_outputs_are_written(tmp_path):
    res = train(_cfg(tmp_path, steps=14, checkpoint_every=7), log=lambda s: None)
    losses = json.loads((tmp_path / "checkpoint" / "state.json").read_text())["losses"]
    assert res["step"] == 14 and len(losses) == 14
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses
    assert (tmp_path / "loss.png").stat().st_size > 1000
    model = load_embedded(tmp_path / "model")
    assert model.config.num_layers == 1


def test_resume_equals_uninterrupted_run(tmp_path):
    train(_cfg(tmp_path / "a", steps=4), log=lambda s: None)
    train(_cfg(tmp_path / "b", steps=2), log=lambda s: None)
    msgs = []
    train(_cfg(tmp_path / "b", steps=4), log=msgs.append)
    assert any("resumed" in m for m in msgs)
    a = load_file(tmp_path / "a" / "checkpoint" / "trainable.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint" / "trainable.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # nothing to do when the run is complete
    assert train(_cfg(tmp_path / "b", steps=4), log=msgs.append)["step"] == 4


def test_adapter_training_on_a_tiny_base(tmp_path):
    train(_cfg(tmp_path / "base", steps=2), log=lambda s: None)
    cfg = TrainConfig(kind="adapters", steps=2, out=str(tmp_path / "ad"), batch_size=2, lr=1e-3, warmup=1,
                      checkpoint_every=2, base=str(tmp_path / "base" / "model"), progress=False, threads=1)
    train(cfg, log=lambda s: None)
    state = json.loads((tmp_path / "ad" / "checkpoint" / "state.json").read_text())
    assert state["kind"] == "adapters" and state["step"] == 2
    names = load_file(tmp_path / "ad" / "checkpoint" / "trainable.safetensors").keys()
    assert "prior_gate" in names and any("lora_" in n for n in names) and any("motion_guidance" in n for n in names)
    assert "gate_head.net.4.weight" in names
    assert not any(n.startswith("transformer.blocks.0.attn1.to_q.base_layer") for n in names)  # base frozen
    model = load_embedded(tmp_path / "base" / "model")
    load_adapters(model, tmp_path / "ad" / "adapters")
    # a base checkpoint folder cannot be resumed as an adapter run
    with pytest.raises(ValueError, match="holds a 'base' run"):
        train(TrainConfig(kind="adapters", steps=3, out=str(tmp_path / "base"), base=str(tmp_path / "base" / "model"),
                          progress=False), log=lambda s: None)


def test_adapter_warm_start_and_matched_batches(tmp_path):
    """--init loads earlier adapters as the starting point (the fine-tune that trains guided sampling's start);
    a folder without adapters is refused with the fix."""
    from motionguide.train import _AdapterRecipe

    train(_cfg(tmp_path / "base", steps=2), log=lambda s: None)
    kw = dict(kind="adapters", batch_size=2, lr=1e-3, warmup=1, checkpoint_every=2, base=str(tmp_path / "base" / "model"),
              progress=False, threads=1)
    train(TrainConfig(steps=2, out=str(tmp_path / "a"), **kw), log=lambda s: None)
    saved = load_file(tmp_path / "a" / "adapters" / "reference_gate.safetensors")
    warm = _AdapterRecipe(TrainConfig(steps=2, out=str(tmp_path / "w"), init=str(tmp_path / "a" / "adapters"),
                                      matched_p=1.0, **kw))
    params = dict(warm.trainable())
    assert torch.equal(params["prior_gate"].detach(), saved["prior_gate"])
    assert bool((saved["prior_gate"] != 0).any())  # it trained, so equality above means it was loaded
    loss = warm.loss(0, 0, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    train(TrainConfig(steps=2, out=str(tmp_path / "w"), init=str(tmp_path / "a" / "adapters"), matched_p=1.0, **kw),
          log=lambda s: None)
    load_adapters(load_embedded(tmp_path / "base" / "model"), tmp_path / "w" / "adapters")
    with pytest.raises(ValueError, match="--init .* does not hold adapters"):
        _AdapterRecipe(TrainConfig(steps=2, out=str(tmp_path / "x"), init=str(tmp_path / "base" / "model"), **kw))
    # session-2 adapters have one gate each: they seed the per-trust-level gates
    from motionguide.model import save_adapters

    warm.model.prior_gate = torch.nn.Parameter(torch.tensor([0.03]))
    warm.model.correction_gate = torch.nn.Parameter(torch.tensor([0.01]))
    warm.model.gate_head = None
    save_adapters(warm.model, tmp_path / "legacy")
    legacy = _AdapterRecipe(TrainConfig(steps=1, out=str(tmp_path / "l"), init=str(tmp_path / "legacy"), **kw))
    assert torch.allclose(legacy.model.prior_gate.detach(), torch.tensor([0.03, 0.03, 0.03]))
    assert torch.allclose(legacy.model.correction_gate.detach(), torch.tensor([0.0, 0.01, 0.01]))
    # adapters without a gate head (session 3) get a fresh one, which trains
    assert legacy.model.gate_head is not None and any(n.startswith("gate_head.") for n, _ in legacy.trainable())
    with pytest.raises(ValueError, match="matched_p"):
        TrainConfig(kind="adapters", matched_p=1.5)
    with pytest.raises(ValueError, match="matched_t"):
        TrainConfig(kind="adapters", matched_t=(0.0, 0.3))


def test_extend_share_rescales_the_continuation_layouts():
    from motionguide.train import _LAYOUT_P, _LAYOUTS, layout_probs

    assert torch.equal(layout_probs(), torch.tensor(_LAYOUT_P))
    p = layout_probs(0.34)
    ext = torch.tensor([k == "extend" for k, _ in _LAYOUTS])
    assert abs(float(p[ext].sum()) - 0.34) < 1e-6 and abs(float(p.sum()) - 1) < 1e-6
    base = torch.tensor(_LAYOUT_P)
    assert torch.allclose(p[~ext] / p[~ext].sum(), base[~ext] / base[~ext].sum())  # the others keep their ratios
    with pytest.raises(ValueError, match="extend_share"):
        TrainConfig(kind="adapters", extend_share=1.0)


def test_cli_and_bad_config(tmp_path):
    from motionguide.cli import main

    rc = main(["train", "base", "--steps", "2", "--out", str(tmp_path / "c"), "--batch-size", "1", "--threads", "1",
               "--checkpoint-every", "2", "--no-progress", "--model-config", json.dumps(TINY)])
    assert rc == 0 and (tmp_path / "c" / "model" / "manifest.json").is_file()
    assert main(["train", "base", "--steps", "2", "--out", str(tmp_path / "d"), "--model-config", "[1]"]) == 2
    with pytest.raises(ValueError, match="kind"):
        TrainConfig(kind="vae")
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_blend_and_fusion_training_improve_their_heads_and_add_them_to_the_adapters(tmp_path):
    """`train blend` trains the blend head alone on a pool of in-between frames; the exported adapters carry
    it, it blends the pool better than the fixed weights, and the rest of the adapters stays as it was.
    `train fusion` does the same for the fusion head, on top."""
    from motionguide.model import BlendHead
    from motionguide.train import _BlendRecipe

    train(_cfg(tmp_path / "base", steps=2), log=lambda s: None)
    base = str(tmp_path / "base" / "model")
    train(TrainConfig(kind="adapters", steps=2, out=str(tmp_path / "ad"), batch_size=2, lr=1e-3, warmup=1,
                      checkpoint_every=2, base=base, progress=False, threads=1), log=lambda s: None)
    kw = dict(kind="blend", batch_size=8, lr=1e-2, warmup=2, checkpoint_every=40, base=base, progress=False,
              threads=1, init=str(tmp_path / "ad" / "adapters"), blend_pool=16)
    train(TrainConfig(steps=80, out=str(tmp_path / "bl"), **kw), log=lambda s: None)
    state = json.loads((tmp_path / "bl" / "checkpoint" / "state.json").read_text())
    assert state["kind"] == "blend" and state["step"] == 80
    names = list(load_file(tmp_path / "bl" / "checkpoint" / "trainable.safetensors"))
    assert names and all(n.startswith("blend_head.") for n in names)
    model = load_embedded(base)
    load_adapters(model, tmp_path / "bl" / "adapters")
    assert isinstance(model.blend_head, BlendHead)
    before, after = (load_file(p / "reference_gate.safetensors") for p in (tmp_path / "ad" / "adapters", tmp_path / "bl" / "adapters"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # gates and gate head untouched
    recipe = _BlendRecipe(TrainConfig(steps=1, out=str(tmp_path / "x"), **kw))
    pool = recipe.pool
    assert pool["warps"].shape[1:3] == (2, 3) and pool["truth"].shape[0] == pool["warps"].shape[0] > 16

    def pool_psnr(head):
        with torch.no_grad():
            out = head.blend(pool["warps"], pool["weights"], pool["flows"])
        return float((-10 * torch.log10(((out - pool["truth"]) ** 2).mean(dim=(1, 2, 3)))).mean())

    assert pool_psnr(model.blend_head) > pool_psnr(BlendHead()) + 0.05
    # the adapter fine-tune on top keeps the blend, frozen (the recipe's last stage)
    from motionguide.train import _AdapterRecipe

    ft = _AdapterRecipe(TrainConfig(kind="adapters", steps=1, out=str(tmp_path / "ft"), batch_size=2, base=base,
                                    init=str(tmp_path / "bl" / "adapters"), progress=False))
    assert isinstance(ft.model.blend_head, BlendHead) and not any(n.startswith("blend_head.") for n, _ in ft.trainable())
    assert torch.isfinite(ft.loss(0, 0, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="init"):
        TrainConfig(kind="blend")

    # `train fusion` on top: the fusion head alone, on the model's own continuation frames (estimated and
    # true flow); the exported adapters carry it next to the blend, which stays as it was
    from motionguide.model import FusionHead
    from motionguide.train import FUSION_LAYOUTS, _FusionRecipe

    fkw = dict(kind="fusion", batch_size=4, lr=3e-3, warmup=2, checkpoint_every=30, base=base, progress=False,
               threads=1, init=str(tmp_path / "bl" / "adapters"), fusion_pool=16 * (len(FUSION_LAYOUTS) + 1))
    train(TrainConfig(steps=60, out=str(tmp_path / "fu"), **fkw), log=lambda s: None)
    names = list(load_file(tmp_path / "fu" / "checkpoint" / "trainable.safetensors"))
    assert names and all(n.startswith("fusion_head.") for n in names)
    fused = load_embedded(base)
    load_adapters(fused, tmp_path / "fu" / "adapters")
    assert isinstance(fused.fusion_head, FusionHead) and isinstance(fused.blend_head, BlendHead)
    after_fusion = load_file(tmp_path / "fu" / "adapters" / "reference_gate.safetensors")
    assert all(torch.equal(after[k], after_fusion[k]) for k in after)  # gates, gate head, blend untouched
    recipe = _FusionRecipe(TrainConfig(steps=1, out=str(tmp_path / "y"), **fkw))
    fp = recipe.pool
    assert fp["out"].shape == fp["warp"].shape == fp["truth"].shape and fp["ahead"].min() >= 1
    assert float((fp["weight"] == 0).float().mean()) > 0.01  # the true-flow clips bring holes

    def fused_psnr(head):
        with torch.no_grad():
            out = head.fuse(*(fp[k] for k in ("out", "warp", "weight", "flow", "ahead")))
        return float((-10 * torch.log10(((out - fp["truth"]) ** 2).mean(dim=(1, 2, 3)))).mean())

    assert fused_psnr(fused.fusion_head) > fused_psnr(FusionHead()) + 0.05
    with pytest.raises(ValueError, match="init"):
        TrainConfig(kind="fusion")
