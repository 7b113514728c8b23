"""The training loop every recipe shares: the embedded model's stages and adapters for a user's pipeline.

One loop, on one CPU process or, unchanged, under ``accelerate launch`` on several GPUs
(``accelerate.Accelerator`` places the model, wraps the optimizer and averages gradients). A recipe says
what differs: the model, its trainable parameters, the loss of one step and how the result is exported
(:class:`Recipe`). Every rank draws its data from a generator seeded by (seed, step, rank), so a resumed run
sees exactly the batches the interrupted one would have seen (no data-loader state to save).

Every ``checkpoint_every`` steps (and at the end) the run writes, each folder atomically:

* ``OUT/checkpoint/``: trainable weights, EMA weights, optimizer state, step and loss history (resume);
* ``OUT/<export_name>/``: the EMA weights in the recipe's shipped format;
* ``OUT/loss.png``: the loss curve.

Every step also appends its metrics (loss, learning rate, seconds; and the recipe's validation figures) to
TensorBoard under ``OUT/tensorboard`` when the ``tensorboard`` package is installed, and to ``OUT/metrics.csv``
always (:class:`MetricsLog`). A step may accumulate the gradients of several micro-batches
(``grad_accum``): the recipe yields one loss per micro-batch (:meth:`Recipe.micro_losses`), each is
back-propagated divided by their count, and under several processes only the last one synchronises.

A second run with the same ``OUT`` resumes from ``OUT/checkpoint`` (``resume=False`` starts afresh); a
checkpoint of another kind of run is refused before anything is trained.
"""
from __future__ import annotations

import csv
import datetime
import importlib.util
import json
import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from flow.atomic import atomic_dir, atomic_path
from flow.diskfull import disk_full

from .errors import UserError

__all__ = ["LoopConfig", "Recipe", "run_training", "plot_losses", "replace_dir", "lr_at", "MetricsLog"]


def replace_dir(folder: str | os.PathLike):
    """``with replace_dir(F) as tmp:`` write files into ``tmp``; on success ``tmp`` replaces ``F`` whole, and a
    failed write leaves the previous ``F`` intact (:func:`flow.atomic.atomic_dir` with ``replace=True``)."""
    return atomic_dir(folder, replace=True)


def plot_losses(losses: list[float], path: str | os.PathLike, title: str = "loss") -> None:
    """Raw loss (light) and its running mean over 50 steps; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    x = list(range(1, len(losses) + 1))
    ax.plot(x, losses, color="#9ecae1", lw=0.6, label="per step")
    k = 50
    if len(losses) >= 2:
        run, acc = [], 0.0
        for i, v in enumerate(losses):
            acc += v
            if i >= k:
                acc -= losses[i - k]
            run.append(acc / min(i + 1, k))
        ax.plot(x, run, color="#08519c", lw=1.5, label=f"mean of {k}")
    if min(losses, default=1.0) > 0:  # log-MSE losses go below 0: linear axis then
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


@dataclass
class LoopConfig:
    """How the loop runs (the recipe says what it trains); validated.

    kind: names the run; a checkpoint of another kind is refused on resume. export_name: the folder under
    ``out`` the recipe exports to. mixed_precision: ``"no"`` or ``"bf16"`` (autocast through accelerate).
    validate_every: steps between the recipe's ``validate`` (0 = never). grad_accum: micro-batches per
    optimizer step. timeout_minutes: how long a process waits for the others at a collective (the cache
    build's barrier, validation on the main process) before the run fails; None = torch's default. fsdp:
    shard the model's frozen weights over the processes with FSDP2 (``torch.distributed.fsdp.fully_shard`` on
    each of the recipe's :meth:`Recipe.fsdp_units`, then on the model) instead of replicating them (DDP); the
    trainable parameters stay whole on every process (``ignored_params``: they are small, and the recipe
    saves and exports them from the main process as without FSDP), and the loop averages their gradients.
    """

    kind: str
    steps: int
    out: str
    lr: float
    warmup: int | None = None  # default: min(100, steps // 10), at least 1
    ema: float = 0.995
    seed: int = 0
    checkpoint_every: int = 100
    resume: bool = True
    threads: int | None = None
    progress: bool = True
    grad_clip: float = 1.0
    export_name: str = "adapters"
    mixed_precision: str = "no"
    validate_every: int = 0
    grad_accum: int = 1
    timeout_minutes: float | None = None
    fsdp: bool = False

    def __post_init__(self):
        if self.steps < 1 or self.checkpoint_every < 1:
            raise ValueError(f"steps and checkpoint_every must be >= 1, got {self.steps}, {self.checkpoint_every}")
        if not (self.lr > 0 and 0 <= self.ema < 1):
            raise ValueError(f"lr must be > 0 and ema in [0, 1), got {self.lr}, {self.ema}")
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        if self.validate_every < 0 or (self.threads is not None and self.threads < 1):
            raise ValueError(f"validate_every must be >= 0 and threads >= 1, got {self.validate_every}, {self.threads}")
        if not isinstance(self.grad_accum, int) or self.grad_accum < 1:
            raise ValueError(f"grad_accum must be an integer >= 1, got {self.grad_accum!r}")
        if self.timeout_minutes is not None and not self.timeout_minutes > 0:
            raise ValueError(f"timeout_minutes must be > 0, got {self.timeout_minutes!r}")
        if self.warmup is None:
            self.warmup = max(1, min(100, self.steps // 10))


def lr_at(cfg: LoopConfig, step: int) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine down to 10 % of ``cfg.lr`` at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


class Recipe:
    """What one kind of training run trains. Subclasses set ``model`` and implement the three methods;
    ``validate`` is optional.

    After set-up the loop sets ``prepared``: ``model`` as accelerate prepared it (wrapped in
    ``DistributedDataParallel`` under several processes). A recipe whose loss calls the model's own forward
    calls ``prepared`` so that the gradients are averaged across processes; ``model`` stays the plain module.
    """

    model: torch.nn.Module
    prepared: torch.nn.Module | None = None
    #: True when ``loss`` runs ``prepared`` (DDP then averages the gradients); False: the loop averages them
    forwards_through_prepared: bool = False

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        """``[(name, parameter)]`` that train; everything else of ``model`` is frozen by the loop."""
        raise NotImplementedError

    def loss(self, step: int, rank: int, generator: torch.Generator) -> torch.Tensor:
        """The scalar loss of one step; draw all randomness from ``generator`` (seeded per step and rank)."""
        raise NotImplementedError

    def export(self, folder: Path, metrics: dict) -> None:
        """Write the trained parts (EMA weights swapped in) in their shipped format into ``folder``."""
        raise NotImplementedError

    def fsdp_units(self) -> list[torch.nn.Module]:
        """The submodules FSDP shards one by one (e.g. the transformer blocks); the model itself is sharded last."""
        raise NotImplementedError(f"{type(self).__name__} does not train under FSDP")

    def micro_losses(self, step: int, rank: int, generator: torch.Generator, parts: int):
        """The losses of a step's ``parts`` micro-batches, yielded one at a time (the loop back-propagates each
        before asking for the next). Default: ``loss`` called ``parts`` times with the step's generator; a
        recipe that draws the whole step's batch at once (so that ``parts`` micro-batches of B equal one batch
        of ``parts * B``) overrides it."""
        for _ in range(parts):
            yield self.loss(step, rank, generator)

    def validate(self, step: int, out: Path) -> dict | None:  # noqa: B027 - optional hook
        """Optional: e.g. write a validation clip under ``out`` (called every ``validate_every`` steps on every
        process; the main process's returned figures, e.g. ``{"val_loss": x}``, are logged)."""


class MetricsLog:
    """Per-step figures of a run: ``OUT/metrics.csv`` (one row per step; a column appears when first logged,
    and the file is rewritten then) and TensorBoard scalars under ``OUT/tensorboard`` when the ``tensorboard``
    package is installed. Only the main process writes; a resumed run keeps the rows before its step."""

    def __init__(self, out: Path, *, main: bool, start_step: int):
        self.path, self.main = Path(out) / "metrics.csv", main
        self.rows: list[dict] = []
        self.tb = None
        if not main:
            return
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= start_step]
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=start_step + 1)
        self._write()

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.main:
            return
        if self.rows and str(self.rows[-1]["step"]) == str(step):
            self.rows[-1].update(values)
        else:
            self.rows.append({"step": step, **values})
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        self._write()

    def _write(self) -> None:
        cols = list(dict.fromkeys(k for r in self.rows for k in r)) or ["step", "loss", "lr", "seconds"]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                w.writerows(self.rows)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _need_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise UserError("training writes its loss curve with matplotlib, which is not installed; "
                        "run `pip install matplotlib` (it is a dependency of motionguide) and start again")


def _resume(ckpt: Path, state: dict, named, ema: dict, opt) -> tuple[int, list[float]]:
    """Read every file of ``ckpt`` through the project's one safe reader (:mod:`flow.checkpoint`) and check it
    against the run, then copy it in: a truncated, foreign or hostile file is one :class:`UserError` with the
    parameters, EMA and optimizer untouched. Returns ``(step, losses)``."""
    from flow.checkpoint import CheckpointFileError, read_object, read_tensors

    fix = "Use another --out, or start afresh with --no-resume."
    try:
        cur = read_tensors(ckpt / "trainable.safetensors", what="training checkpoint file", fix=fix)
        emas = read_tensors(ckpt / "ema.safetensors", what="training checkpoint file", fix=fix)
        opt_state = read_object(ckpt / "optimizer.pt", what="training checkpoint file", fix=fix, unsafe_fix=fix)
    except (CheckpointFileError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    shapes = {n: tuple(p.shape) for n, p in named}
    for name, saved in (("trainable.safetensors", cur), ("ema.safetensors", emas)):
        if set(saved) != set(shapes):
            raise UserError(f"{ckpt / name} does not match this model (its trainable parameters differ); {fix}")
        wrong = [n for n in shapes if tuple(saved[n].shape) != shapes[n]]
        if wrong:
            raise UserError(f"{ckpt / name}: {wrong[0]} has shape {tuple(saved[wrong[0]].shape)}, this model's is "
                            f"{shapes[wrong[0]]}; {fix}")
    try:
        step, losses = int(state["step"]), [float(v) for v in state["losses"]]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{ckpt / 'state.json'} lacks a step and a loss history; {fix}") from None
    before = opt.state_dict()
    try:
        opt.load_state_dict(opt_state)  # checks the groups against the parameters before it changes anything
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        opt.load_state_dict(before)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{ckpt / 'optimizer.pt'} is not this run's optimizer state ({first}); {fix}") from None
    with torch.no_grad():
        for n, p in named:
            p.copy_(cur[n])
            ema[n].copy_(emas[n])
    return step, losses


def _shard(recipe: Recipe, accelerator) -> tuple[list, list]:
    """Shard the recipe's frozen weights with FSDP2 (each unit, then the model), the trainable ones kept whole;
    returns the trainable ``(named, params)``."""
    from torch.distributed.fsdp import fully_shard

    if accelerator.num_processes < 2:
        raise UserError("FSDP shards the model over several processes, and this run has one; launch it with "
                        "accelerate launch (an FSDP config) or torchrun with --nproc_per_node 2 or more")
    named = recipe.trainable()
    keep = {p for _, p in named}
    recipe.model.to(accelerator.device)
    for unit in recipe.fsdp_units():
        fully_shard(unit, ignored_params=keep)
    fully_shard(recipe.model, ignored_params=keep)
    return named, [p for _, p in named]


def run_training(cfg: LoopConfig, make_recipe: Callable[[], Recipe], *, config: dict[str, Any] | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Run (or resume) a training recipe; returns ``{"step", "loss", "out"}``.

    make_recipe: builds the recipe after the seed is set (its random initialisation is part of the run).
    config: what the run was asked to do, saved in the checkpoint's ``state.json`` for the record.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
    from accelerate.state import AcceleratorState
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    _need_matplotlib()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    ckpt = out / "checkpoint"
    state = None
    if cfg.resume and (ckpt / "state.json").is_file():
        # checked before the recipe is built: a wrong --out fails in a second, not after minutes of set-up
        try:
            state = json.loads((ckpt / "state.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{ckpt / 'state.json'} cannot be read ({e}); use another --out or start afresh "
                            f"with --no-resume") from None
        if state.get("kind") != cfg.kind:
            raise UserError(f"{ckpt} holds a {state.get('kind')!r} run, not {cfg.kind!r}; use another --out or "
                            f"--no-resume")
    # accelerate keeps one state per process and refuses another mixed precision in a second run of the same
    # process (a notebook, the tests); its distributed part (PartialState) is kept
    AcceleratorState._reset_state()
    # The processes draw their own layouts, and a layout need not use every trainable parameter (an
    # extension's one source leaves the second source's parts idle), so DDP must not wait for the gradients
    # of parameters one process did not use: it would hang in backward.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    handlers = [ddp]
    if cfg.timeout_minutes is not None:
        handlers.append(InitProcessGroupKwargs(timeout=datetime.timedelta(minutes=cfg.timeout_minutes)))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision,
                              kwargs_handlers=handlers)
    recipe = make_recipe()
    named = recipe.trainable()
    params = [p for _, p in named]
    for p in recipe.model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    if cfg.fsdp:
        named, params = _shard(recipe, accelerator)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    if cfg.fsdp:  # sharded by the loop: accelerate neither wraps the model nor its optimizer
        model = recipe.model
    else:
        model, opt = accelerator.prepare(recipe.model, opt)
    ema = {n: p.detach().clone() for n, p in named}  # after prepare: on the device the model trains on
    recipe.model, recipe.prepared = accelerator.unwrap_model(model), model
    step, losses = 0, []
    if state is not None:
        step, losses = _resume(ckpt, state, named, ema, opt)
        log(f"resumed {cfg.kind} training from {ckpt} at step {step}")
    if step >= cfg.steps:
        log(f"{ckpt} is already at step {step} >= --steps {cfg.steps}; nothing to do")
        return {"step": step, "loss": losses[-1] if losses else float("nan"), "out": str(out)}

    def checkpoint():
        try:
            write_checkpoint()
        except Exception as e:
            # a full disk reaches here as safetensors' or torch.save's own error type: raise it as the OSError
            # (ENOSPC, EDQUOT, EFBIG) it is; replace_dir has removed the partial folder, the previous is intact
            full = disk_full(e, ckpt)
            if full is None or full is e:
                raise
            raise full from e

    def write_checkpoint():
        if not accelerator.is_main_process:
            return
        with replace_dir(ckpt) as tmp:
            save_file({n: p.detach().cpu().contiguous() for n, p in named}, tmp / "trainable.safetensors")
            save_file({n: v.cpu().contiguous() for n, v in ema.items()}, tmp / "ema.safetensors")
            torch.save(opt.state_dict(), tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({"kind": cfg.kind, "step": step, "losses": losses,
                                                         "config": config or {}}, default=str))
        # export the EMA weights (swap in, export, swap back)
        with torch.no_grad():
            cur = {n: p.detach().clone() for n, p in named}
            for n, p in named:
                p.copy_(ema[n])
            recent = losses[-50:]
            metrics = {"step": step, "train_loss_mean_last_50": sum(recent) / max(1, len(recent))}
            try:
                recipe.export(out / cfg.export_name, metrics)
            finally:
                for n, p in named:
                    p.copy_(cur[n])
        if losses:
            plot_losses(losses, out / "loss.png", title=f"{cfg.kind} training loss")

    out.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(out, main=accelerator.is_main_process, start_step=step)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.kind}",
               disable=not (cfg.progress and accelerator.is_main_process), dynamic_ncols=True)
    model.train()
    t0 = time.time()
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 7919 + step * 97 + accelerator.process_index)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        opt.zero_grad(set_to_none=True)
        parts = recipe.micro_losses(step, accelerator.process_index, g, cfg.grad_accum)
        total = 0.0
        for k in range(cfg.grad_accum):
            # the processes synchronise their gradients on the last micro-batch only (DDP's no_sync)
            sync = contextlib.nullcontext() if k == cfg.grad_accum - 1 else accelerator.no_sync(model)
            with sync:
                with accelerator.autocast():
                    micro = next(parts)
                accelerator.backward(micro / cfg.grad_accum)
            total = total + micro.detach().float() / cfg.grad_accum
        loss = total
        if accelerator.num_processes > 1 and (cfg.fsdp or not recipe.forwards_through_prepared):
            # the recipe computed its loss without the wrapped forward, so DDP's hooks did not average the
            # gradients (or FSDP left the whole trainable parameters to the loop): average them here
            for p in params:
                if p.grad is not None:
                    p.grad.copy_(accelerator.reduce(p.grad, reduction="mean"))
        accelerator.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema, (1 + step) / (10 + step))  # short runs: the EMA warms up
            for n, p in named:
                ema[n].lerp_(p.detach(), 1 - d)
        lv = float(accelerator.gather(loss.detach().float()[None]).mean())
        if not math.isfinite(lv):
            raise RuntimeError(f"loss became {lv} at step {step}; lower --lr or resume from the last checkpoint")
        losses.append(lv)
        step += 1
        metrics.log(step, {"loss": lv, "lr": lr_at(cfg, step - 1), "seconds": round(time.time() - t0, 3)})
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}", lr=f"{lr_at(cfg, step - 1):.1e}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint()
            log(f"step {step}: loss(mean 50) {sum(losses[-50:]) / len(losses[-50:]):.4f}, "
                f"{(time.time() - t0) / 60:.1f} min, checkpoint in {ckpt}")
        if cfg.validate_every and step % cfg.validate_every == 0:
            figures = recipe.validate(step, out)  # every process calls it: the recipe says who works
            accelerator.wait_for_everyone()
            if figures:
                metrics.log(step, figures)
    bar.close()
    metrics.close()
    accelerator.wait_for_everyone()
    return {"step": step, "loss": losses[-1], "out": str(out)}
