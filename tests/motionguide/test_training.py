"""The shared training loop on a toy recipe: the loss falls, a resumed run is bit-identical, a checkpoint of
another kind is refused before set-up, a missing matplotlib fails before training, folders are replaced
atomically."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from motionguide.errors import UserError
from motionguide.training import LoopConfig, Recipe, replace_dir, run_training


class _Line(Recipe):
    """Fit y = 3x - 1 with a 1-in 1-out linear layer; exports the weights as JSON."""

    built = 0

    def __init__(self):
        type(self).built += 1
        self.model = torch.nn.Linear(1, 1)

    def trainable(self):
        return list(self.model.named_parameters())

    def loss(self, step, rank, generator):
        x = torch.randn(16, 1, generator=generator)
        return ((self.model(x) - (3 * x - 1)) ** 2).mean()

    def export(self, folder, metrics):
        with replace_dir(folder) as tmp:
            (tmp / "w.json").write_text(json.dumps({"w": self.model.weight.item(), **metrics}))


def _cfg(out: Path, **kw) -> LoopConfig:
    return LoopConfig(**{"kind": "line", "steps": 40, "out": str(out), "lr": 0.1, "checkpoint_every": 10,
                         "progress": False, **kw})


def test_loss_falls_exports_and_resume_is_bit_identical(tmp_path):
    res = run_training(_cfg(tmp_path / "a"), _Line, log=lambda m: None)
    state = json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())
    assert res["step"] == 40 and state["losses"][-1] < 0.1 * state["losses"][0]
    assert (tmp_path / "a" / "adapters" / "w.json").is_file() and (tmp_path / "a" / "loss.png").is_file()


    class _Interrupted(_Line):
        def loss(self, step, rank, generator):
            if step == 25:
                raise KeyboardInterrupt  # as Ctrl-C between checkpoints 20 and 30
            return super().loss(step, rank, generator)

    with pytest.raises(KeyboardInterrupt):
        run_training(_cfg(tmp_path / "b"), _Interrupted, log=lambda m: None)
    msgs = []
    run_training(_cfg(tmp_path / "b"), _Line, log=msgs.append)
    assert any("at step 20" in m for m in msgs)
    a, b = (json.loads((tmp_path / x / "checkpoint" / "state.json").read_text())["losses"] for x in "ab")
    assert a == b  # the same losses to the last bit
    wa, wb = (json.loads((tmp_path / x / "adapters" / "w.json").read_text())["w"] for x in "ab")
    assert wa == wb


def test_another_kind_is_refused_before_the_recipe_is_built(tmp_path):
    run_training(_cfg(tmp_path, steps=10), _Line, log=lambda m: None)
    built = _Line.built
    with pytest.raises(UserError, match="holds a 'line' run, not 'other'"):
        run_training(_cfg(tmp_path, kind="other"), _Line, log=lambda m: None)
    assert _Line.built == built


def test_missing_matplotlib_fails_before_anything_is_trained_or_written(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(UserError, match="pip install matplotlib"):
        run_training(_cfg(tmp_path / "r"), _Line, log=lambda m: None)
    assert not (tmp_path / "r").exists()


def test_replace_dir_keeps_the_old_folder_when_writing_fails(tmp_path):
    with replace_dir(tmp_path / "ck") as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with replace_dir(tmp_path / "ck") as tmp:
            (tmp / "a").write_text("new")
            raise OSError(28, "disk full")
    assert (tmp_path / "ck" / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no partial folder left


def test_config_is_validated():
    for bad in ({"steps": 0}, {"lr": 0}, {"mixed_precision": "fp8"}, {"ema": 1.0}):
        with pytest.raises(ValueError):
            LoopConfig(**{"kind": "k", "steps": 1, "out": "o", "lr": 1.0, **bad})


@pytest.mark.slow
def test_a_recipe_outside_the_wrapped_forward_still_averages_gradients_under_torchrun(tmp_path, two_ranks):
    """Two processes draw different batches (the generator is seeded by rank); the loop averages the
    gradients of a recipe whose loss does not run the DDP-wrapped forward (the embedded recipes), so the
    weights stay identical on both ranks."""
    weights = two_ranks(f"""
        import torch
        from motionguide.training import LoopConfig, Recipe, run_training

        class Line(Recipe):
            def __init__(self):
                self.model = torch.nn.Linear(1, 1)
            def trainable(self):
                return list(self.model.named_parameters())
            def loss(self, step, rank, generator):
                if step == 5:
                    print(f"rank {{rank}} w {{self.model.weight.item()!r}}", flush=True)
                x = torch.randn(16, 1, generator=generator)
                return ((self.model(x) - (3 * x - 1)) ** 2).mean()
            def export(self, folder, metrics):
                pass

        run_training(LoopConfig(kind="line", steps=6, out={str(tmp_path / "out")!r}, lr=0.1, checkpoint_every=6,
                                progress=False), Line, log=lambda m: None)
    """)
    assert weights[0] == weights[1]


class _Evil:
    """A pickle payload that would create a file when unpickled unsafely."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def _trained(tmp_path, name="r") -> Path:
    run_training(_cfg(tmp_path / name, steps=10), _Line, log=lambda m: None)
    return tmp_path / name / "checkpoint"


def _resume_error(tmp_path, name="r") -> str:
    before = _Line.built
    with pytest.raises(UserError) as e:
        run_training(_cfg(tmp_path / name, steps=20), _Line, log=lambda m: None)
    assert _Line.built == before + 1  # refused on resume, before a step ran
    msg = str(e.value)
    assert "\n" not in msg and "weights_only" not in msg and "--no-resume" in msg
    return msg


def test_resume_from_a_truncated_safetensors_is_one_line(tmp_path):
    ckpt = _trained(tmp_path)
    data = (ckpt / "trainable.safetensors").read_bytes()
    (ckpt / "trainable.safetensors").write_bytes(data[: len(data) // 2])
    msg = _resume_error(tmp_path)
    assert "trainable.safetensors" in msg and "end is missing" in msg


def test_resume_from_a_hostile_optimizer_pickle_runs_nothing_and_never_advises_unsafe_loading(tmp_path):
    ckpt = _trained(tmp_path)
    ran = tmp_path / "payload_ran"
    torch.save({"state": {0: _Evil(ran)}, "param_groups": []}, ckpt / "optimizer.pt")
    msg = _resume_error(tmp_path)
    assert not ran.exists()
    assert "optimizer.pt" in msg and "can run code" in msg
    # a text file, and an optimizer state of another model, are refused too
    (ckpt / "optimizer.pt").write_text("not a checkpoint")
    assert "got a text file" in _resume_error(tmp_path)
    torch.save({"state": {}, "param_groups": [{"params": [0, 1, 2]}]}, ckpt / "optimizer.pt")
    assert "not this run's optimizer state" in _resume_error(tmp_path)


def test_resume_from_a_safetensors_cut_inside_its_data_names_the_fix(tmp_path):
    ckpt = _trained(tmp_path)
    data = (ckpt / "ema.safetensors").read_bytes()
    (ckpt / "ema.safetensors").write_bytes(data[:-4])  # the header whole, the last tensor's bytes cut
    msg = _resume_error(tmp_path)
    assert "ema.safetensors: expected a .safetensors file, got a damaged one" in msg and "download" not in msg
