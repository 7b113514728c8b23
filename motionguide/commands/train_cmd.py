"""``motionguide train KIND``: one sub-command per kind, each with only its options.

- ``train recipe --out DIR`` runs every stage of the shipped weights' recipe;
- ``train base --steps N --out DIR`` trains the embedded image-to-video model;
- ``train adapters --steps N --out DIR`` trains its MoG adapters;
- ``train pipeline --pipeline DIR --videos DIR --steps N --out DIR`` trains MoG adapters for a user's own
  diffusers pipeline (:mod:`motionguide.finetune`).

Runs single-process on the CPU, or unchanged under ``accelerate launch`` on several GPUs. Resumes from
``DIR/checkpoint`` when it exists. The options live in :mod:`motionguide.commands._train_options`.
"""
from __future__ import annotations

import contextlib
import json

from . import _train_options as o
from ._choices import EMBEDDED_ADAPTER_FILES, EMBEDDED_CONFIG_FIELDS, EMBEDDED_MODEL_FILES, RECIPE_COMMANDS
from ._help import HelpFormatter

_WRITES = ("Writes DIR/checkpoint (every --checkpoint-every steps; a second run resumes from it), {what} and "
           "DIR/loss.png. Works under `accelerate launch` unchanged.")
_PIPELINE_EXAMPLES = (
    "  python examples/tiny_pipeline.py --arch wan -o /tmp/tiny-wan   # a tiny random pipeline to try it\n"
    "  motionguide train pipeline --pipeline /tmp/tiny-wan --videos ../shared/data/videos --size 32x32 \\\n"
    "      --frames 9 --steps 200 --out runs/wan-tiny\n"
    "  motionguide train pipeline --pipeline Wan2.1-I2V-14B-480P-Diffusers --videos my_videos --steps 2000 \\\n"
    "      --out runs/wan14b --lora-rank 16 --lora-targets attn+ffn --grad-accum 4\n"
    "  accelerate launch --num_processes 8 -m motionguide train pipeline ...   # the same on 8 GPUs (DDP)\n"
    "  accelerate launch --config_file fsdp.yaml -m motionguide train pipeline ...   # FSDP (see the docs)\n")


def _recipe_text() -> str:
    return ("the stages of the shipped weights (assets/embedded/base = runs/base/model, assets/embedded/adapters "
            "= runs/adapters_ft/adapters):\n" + "\n".join(f"  {i + 1}. {c}" for i, c in enumerate(RECIPE_COMMANDS)))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the embedded video model, its motion-guidance adapters, or your pipeline's adapters",
        description=(
            "Train the embedded image-to-video model ('base'), the MoG guidance adapters on top of it "
            "('adapters'), every stage of the shipped weights in order ('recipe'), or the MoG adapters of your "
            "own diffusers pipeline ('pipeline'). Each kind takes its own options: "
            "'motionguide train KIND --help' lists them."
        ),
        epilog=(
            "examples:\n"
            "  motionguide train recipe --out runs                 # every stage below, in order (resumable)\n"
            "  motionguide train recipe --out /tmp/try --steps-scale 0.01 --batch-size 2   # a quick trial\n"
            "  motionguide train base --steps 1000 --out runs/base\n"
            "  motionguide train adapters --steps 1000 --out runs/adapters --base runs/base/model\n"
            + _PIPELINE_EXAMPLES + "\n" + _recipe_text()
        ),
        formatter_class=HelpFormatter,
    )
    p.set_defaults(func=_no_kind)
    kinds = p.add_subparsers(dest="kind", metavar="KIND", parser_class=o.KindParser,
                             title="kinds (each with its own options and --help)")
    stages = "one folder per stage: DIR/base, DIR/adapters, ..."
    recipe = kinds.add_parser(
        "recipe", help="every stage of the shipped weights' recipe, in order (resumable)",
        description="Run every stage of the shipped weights' recipe in order, each into its own folder of DIR "
                    "(a second run resumes the unfinished stage and skips the finished ones). "
                    + _WRITES.format(what="DIR/model (base) or DIR/adapters"),
        epilog=("examples:\n"
                "  motionguide train recipe --out runs\n"
                "  motionguide train recipe --out /tmp/try --steps-scale 0.01 --batch-size 2   # a quick trial\n\n"
                + _recipe_text()), formatter_class=HelpFormatter)
    o.add_run_options(recipe, out_help=f"output folder: {stages}", batch_default="each stage's own")
    recipe.add_argument("--steps-scale", type=float, default=1.0, metavar="X",
                        help="multiply every stage's steps (e.g. 0.01 for a quick trial of the whole recipe)")
    o.add_model_config_option(recipe)
    recipe.set_defaults(func=_run_recipe)

    base = kinds.add_parser(
        "base", help="the embedded image-to-video model",
        description="Train the embedded image-to-video model on clips with known motion rendered from the "
                    "photographs bundled with scikit-image. " + _WRITES.format(what="DIR/model"),
        epilog=("examples:\n"
                "  motionguide train base --steps 1000 --out runs/base\n"
                "  motionguide train base --steps 50 --out /tmp/small --model-config '{\"num_layers\": 2}'"),
        formatter_class=HelpFormatter)
    o.add_steps_options(base, lr_default="5e-4")
    o.add_run_options(base, out_help="output folder: checkpoint/, model/, loss.png", batch_default="8")
    o.add_init_option(base, what="the weights of this model folder (DIR/model of 'train base')")
    o.add_model_config_option(base)
    base.set_defaults(func=_run_embedded)

    adapters = kinds.add_parser(
        "adapters", help="the embedded model's motion-guidance adapters",
        description="Train the MoG guidance adapters of the embedded model (the latent adapter, the feature gates "
                    "and the per-trust-level gates) on top of a base model. "
                    + _WRITES.format(what="DIR/adapters"),
        epilog="examples:\n  motionguide train adapters --steps 1000 --out runs/adapters --base runs/base/model\n"
               "  " + RECIPE_COMMANDS[-1] + "\n      # the fine-tune where guided sampling starts",
        formatter_class=HelpFormatter)
    o.add_steps_options(adapters, lr_default="1e-3")
    o.add_run_options(adapters, out_help="output folder: checkpoint/, adapters/, loss.png", batch_default="8")
    o.add_init_option(adapters, what="this adapter folder (DIR/adapters of 'train adapters')")
    o.add_adapter_options(adapters)
    adapters.set_defaults(func=_run_embedded)

    pipeline = kinds.add_parser(
        "pipeline", help="the MoG adapters of your own diffusers pipeline",
        description=(
            "Train the MoG adapters (zero-initialised latent channels and feature gates; optionally a LoRA and the "
            "first blocks) of your own diffusers pipeline (WanImageToVideoPipeline, WanPipeline, "
            "CogVideoXImageToVideoPipeline, LTXConditionPipeline, LTXImageToVideoPipeline) on clips of your "
            "videos and their captions, with the pipeline's own objective and conditioning; the VAE and text "
            "encoder run once (cached in DIR/cache, each process encoding its share). On CUDA it defaults to "
            "bf16 and gradient checkpointing. Writes DIR/adapters (load it with the jobs' --pipeline P --adapters "
            "DIR/adapters or motionguide.generate_with_guidance(pipe, g, adapter=...); with a LoRA also "
            "pytorch_lora_weights.safetensors for pipe.load_lora_weights), DIR/checkpoint, DIR/loss.png, "
            "DIR/metrics.csv and, with --validate-every, DIR/validation/step_N.mp4 of a held-out clip. "
            "Works under `accelerate launch` unchanged."
        ),
        epilog="examples:\n" + _PIPELINE_EXAMPLES, formatter_class=HelpFormatter)
    o.add_pipeline_inputs(pipeline)
    o.add_steps_options(pipeline, lr_default="1e-4")
    o.add_run_options(pipeline, out_help="output folder: checkpoint/, adapters/, cache/, loss.png, metrics.csv",
                      batch_default="1")
    o.add_pipeline_options(pipeline)
    pipeline.set_defaults(func=_run_pipeline)

    for parser in (recipe, base, adapters, pipeline):
        parser.kinds = kinds.choices  # each kind names the others that take an option it refuses


def _no_kind(args) -> int:
    from ..errors import UserError

    raise UserError("name what to train: recipe, base, adapters or pipeline (motionguide train KIND --help "
                    "lists a kind's options)")


def _model_config(text: str | None) -> dict:
    if not text:
        return {}
    try:
        model = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model-config: expected a JSON object, got {text!r} ({e})") from None
    if not isinstance(model, dict):
        raise ValueError(f"--model-config: expected a JSON object such as '{{\"num_layers\": 2}}', got {text!r}")
    return model


#: options that count something: (dest, smallest value); a kind checks those it has
_COUNTS = (("steps", 1), ("batch_size", 1), ("checkpoint_every", 1), ("threads", 1), ("clips", 1), ("stride", 1),
           ("frames", 1), ("lora_rank", 1), ("train_blocks", 0), ("validate_every", 0), ("validate_steps", 1),
           ("guide_scale", 1))


def _check_numbers(args) -> None:
    """Counts are whole and positive (0 is never "the default"), rates positive, shares in [0, 1]."""
    import math

    for dest, lo in _COUNTS:
        v = getattr(args, dest, None)
        if v is not None and v < lo:
            flag = "--" + dest.replace("_", "-")
            raise ValueError(f"{flag} must be at least {lo}, got {v}" + ("; leave it out for the default" if
                                                                           dest != "steps" else ""))
    for dest in ("lr", "steps_scale"):
        v = getattr(args, dest, None)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"--{dest.replace('_', '-')} must be a positive number, got {v}")
    for dest in ("matched_p", "extend_share"):
        v = getattr(args, dest, None)
        if v is not None and not 0 <= v <= 1:
            raise ValueError(f"--{dest.replace('_', '-')} is a share of the batches, 0 .. 1, got {v}")
    ema = getattr(args, "ema", None)
    if ema is not None and not 0 <= ema < 1:
        raise ValueError(f"--ema is a decay in [0, 1), got {ema}")


def _check_model_config(text: str | None) -> dict:
    """--model-config as a dict, checked against the embedded model's config in the option's words: the
    fields it names and their values, never the config object's repr. Unknown fields are refused before the
    model's libraries load."""
    import re

    model = _model_config(text)
    if not model:
        return model
    unknown = sorted(set(model) - set(EMBEDDED_CONFIG_FIELDS))
    if unknown:
        raise ValueError(f"--model-config {text}: unknown fields {unknown}; known: {sorted(EMBEDDED_CONFIG_FIELDS)}")
    from ..embedded.network import EmbeddedConfig

    try:
        EmbeddedConfig.from_dict(model)
    except (TypeError, ValueError) as e:
        msg = re.sub(r",? got EmbeddedConfig\(.*\)$", "", str(e))
        msg = msg.replace("unknown EmbeddedConfig keys", "unknown fields")
        raise ValueError(f"--model-config {text}: {msg}") from None
    return model
def _resumable(p) -> bool:
    """A run folder another run of this command can resume: DIR/checkpoint, or (recipe) a stage's."""
    return (p / "checkpoint" / "state.json").is_file() or any(p.glob("*/checkpoint/state.json"))


def _check_run_folder(out: str, inputs: list, *, resume: bool = True, overwrite: bool = False) -> None:
    """``--out`` is a new folder or a run folder to resume: not a file, not an input, in a writable place; a
    folder with files and no run to resume (or any run folder with --no-resume) needs --overwrite."""
    import os
    from pathlib import Path

    from flow.atomic import OutputExistsError

    p = Path(out).absolute()
    if p.exists() and not p.is_dir():
        raise ValueError(f"--out {out}: expected a folder (new, or a run to resume), got an existing file; "
                         f"choose a folder name")
    for i in inputs:
        if i is not None and (p == Path(i).absolute() or Path(i).absolute() in p.parents):
            raise ValueError(f"--out {out} is the input folder {i} or inside it; choose a folder outside it")
    existing = next(q for q in (p, *p.parents) if q.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out}: {existing} is not writable; choose another folder")
    if overwrite or not p.is_dir() or not any(p.iterdir()):
        return
    if not _resumable(p):
        raise OutputExistsError(f"--out {out} holds files but no run to resume (no checkpoint/state.json); pass "
                                "--overwrite (or -y) to train into it anyway, replacing what the run writes, or "
                                "choose a new folder")
    if not resume:
        raise OutputExistsError(f"--out {out} holds a run, and --no-resume starts afresh, replacing its checkpoint "
                                "and outputs; pass --overwrite (or -y) too, or choose a new folder")


def _run_pipeline(args) -> int:
    import dataclasses
    from pathlib import Path

    from ..errors import UserError

    _check_numbers(args)
    from ._inputs import check_folder

    check_folder(args.pipeline, "--pipeline", "a pipeline folder written by save_pretrained (with model_index.json)")
    if not (Path(args.pipeline).expanduser() / "model_index.json").is_file():
        raise UserError(f"--pipeline {args.pipeline}: no model_index.json; pass a folder written by a pipeline's "
                        "save_pretrained (python examples/tiny_pipeline.py --arch wan -o DIR makes a tiny one)")
    if Path(args.videos).suffix.lower() not in (".csv", ".jsonl"):  # a manifest names its clips and captions
        check_folder(args.videos, "--videos", "the folder that holds your training videos, or a .csv/.jsonl manifest")
    _check_run_folder(args.out, [args.pipeline, args.videos], resume=not args.no_resume, overwrite=args.overwrite)
    from tqdm.auto import tqdm  # after the checks: an argument error prints before the libraries load

    from ..finetune import PipelineTrainConfig, parse_size, train_pipeline

    # every option of this kind that names a config field and is given (None leaves the config's default)
    fields = {f.name for f in dataclasses.fields(PipelineTrainConfig)}
    opts = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if "size" in opts:
        opts["size"] = parse_size(opts["size"])
    if "layouts" in opts:
        opts["layouts"] = tuple(x.strip() for x in opts["layouts"].split(",") if x.strip())
    if "feature_blocks" in opts:
        try:
            opts["feature_blocks"] = tuple(int(x) for x in opts["feature_blocks"].split(","))
        except ValueError:
            raise UserError(f"--feature-blocks {args.feature_blocks}: expected block indices such as 0,1") from None
    cfg = PipelineTrainConfig(resume=not args.no_resume, progress=not args.no_progress, **opts)
    with _locked(args.out):
        res = train_pipeline(cfg, log=tqdm.write)
    if cfg.cache_only:
        print(f"cached {res['clips']} clips in {res['cache']}")
        return 0
    print(f"trained to step {res['step']}; the adapter is in {res['adapters']} (motionguide transfer|speed|extend "
          f"--pipeline {args.pipeline} --adapters {res['adapters']} ...)")
    return 0


def _locked(out: str):
    """The lock on --out while the run writes into it (the main process only: under ``accelerate launch``
    every rank runs this command on the same --out)."""
    import contextlib
    import os

    from flow.locks import hold_lock

    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
    return hold_lock(out, option="--out") if rank == "0" else contextlib.nullcontext()


@contextlib.contextmanager
def _options_named(args):
    """The embedded model's loaders advise the jobs' options (--model DIR/model, --adapters DIR/adapters);
    here the folders came from --base and --init."""
    from ..errors import CheckpointError

    try:
        yield
    except CheckpointError as e:
        msg = str(e)
        base_opt = "--init" if args.init and str(args.init) in msg and args.kind == "base" else "--base"
        msg = msg.replace("with --model DIR/model", f"with {base_opt} DIR/model")
        msg = msg.replace("pass --adapters DIR/adapters", "pass --init DIR/adapters")
        raise CheckpointError(msg) from None


@contextlib.contextmanager
def _disk_full_says_what_is_kept(out: str):
    """A full disk while the run writes: one line saying which checkpoint is intact (the loop writes each
    folder atomically, so the previous one is) and that the same command resumes from it."""
    from pathlib import Path

    from flow.diskfull import DISK_FULL_ERRNOS, disk_full

    from ..errors import UserError

    try:
        yield
    except Exception as e:
        full = disk_full(e, out)
        if full is None:
            raise
        states = sorted(Path(out).glob("checkpoint/state.json")) + sorted(Path(out).glob("*/checkpoint/state.json"))
        kept = ("the previous checkpoint" + ("s" if len(states) > 1 else "") + " (" +
                ", ".join(str(s.parent) for s in states) + ") is intact: free some space and run the same command "
                "to resume" if states else "no checkpoint was written yet")
        raise UserError(f"{DISK_FULL_ERRNOS.get(full.errno, 'the disk is full')} while training into {out}; "
                        f"{kept}") from None


def _check_embedded_folders(args) -> None:
    """--base (adapters) and --init (base: a model folder; adapters: an adapter folder) hold what their kind
    loads, and --out is a run folder for them."""
    from ._inputs import check_files, check_folder

    base, init = getattr(args, "base", None), getattr(args, "init", None)
    if base:
        check_folder(base, "--base", "the base model's folder (DIR/model of 'train base')")
        check_files(base, "--base", EMBEDDED_MODEL_FILES, "an embedded model folder",
                    "pass the folder 'motionguide train base' wrote (DIR/model), or leave --base out")
    if init:
        files, what, wrote = ((EMBEDDED_MODEL_FILES, "an embedded model folder", "base --out DIR' wrote (DIR/model)")
                              if args.kind == "base" else
                              (EMBEDDED_ADAPTER_FILES, "an adapter folder", "adapters --out DIR' wrote (DIR/adapters)"))
        check_folder(init, "--init", f"{what} (DIR/{'model' if args.kind == 'base' else 'adapters'})")
        check_files(init, "--init", files, what, f"pass the folder 'motionguide train {wrote}")
    _check_run_folder(args.out, [base, init], resume=not args.no_resume, overwrite=args.overwrite)


def _run_recipe(args) -> int:
    # every argument is checked before a model loads or a clip renders (and before the libraries load)
    _check_numbers(args)
    _check_run_folder(args.out, [], resume=not args.no_resume, overwrite=args.overwrite)
    model = _check_model_config(args.model_config)
    overrides = dict(seed=args.seed, checkpoint_every=args.checkpoint_every, resume=not args.no_resume,
                     threads=args.threads, progress=not args.no_progress)
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if model:
        overrides["model"] = model
    from tqdm.auto import tqdm

    from ..embedded.recipes import run_recipe

    with _locked(args.out), _disk_full_says_what_is_kept(args.out):
        res = run_recipe(args.out, steps_scale=args.steps_scale, overrides=overrides, log=tqdm.write)
    print(f"trained every stage of the recipe into {args.out}: " + ", ".join(f"{k} (step {v['step']})"
                                                                             for k, v in res.items()))
    return 0


def _run_embedded(args) -> int:
    """train base / train adapters: one stage of the embedded model."""
    # every argument is checked before a model loads or a clip renders (and before the libraries load)
    _check_numbers(args)
    _check_embedded_folders(args)
    model = _check_model_config(getattr(args, "model_config", None))
    from tqdm.auto import tqdm

    from ..embedded.recipes import TrainConfig, train

    kind_options = {k: getattr(args, k) for k in ("base", "matched_p", "matched_loss", "extend_share", "guide_scale")
                    if hasattr(args, k)}  # the adapters' own; base leaves TrainConfig's defaults
    cfg = TrainConfig(
        kind=args.kind, steps=args.steps, out=args.out, batch_size=8 if args.batch_size is None else args.batch_size,
        lr=args.lr, seed=args.seed, checkpoint_every=args.checkpoint_every, resume=not args.no_resume,
        threads=args.threads, init=args.init, model=model, progress=not args.no_progress, **kind_options,
    )
    with _locked(args.out), _disk_full_says_what_is_kept(args.out), _options_named(args):
        res = train(cfg, log=tqdm.write)
    print(f"trained {args.kind} to step {res['step']}; outputs in {res['out']}")
    return 0
