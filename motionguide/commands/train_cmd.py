"""``motionguide train KIND --steps N --out DIR``: train the embedded model or its MoG adapters;
``motionguide train recipe --out DIR`` runs every stage of the shipped weights' recipe;
``motionguide train pipeline --pipeline DIR --videos DIR --steps N --out DIR`` trains MoG adapters for a
user's own diffusers pipeline (:mod:`motionguide.finetune`).

Runs single-process on the CPU, or unchanged under ``accelerate launch`` on several GPUs. Resumes from
``DIR/checkpoint`` when it exists.
"""
from __future__ import annotations

import argparse
import contextlib
import json

from ._help import HelpFormatter

_KINDS = ("base", "adapters")
#: options of 'train pipeline' only (their defaults are None: given = not None)
_PIPELINE_ONLY = ("pipeline", "videos", "frames", "size", "layouts", "clips", "stride", "flow", "interpolator",
                  "prompt", "lora_rank", "lora_blocks", "train_blocks", "feature_blocks", "mixed_precision", "dtype",
                  "validate_every", "validate_steps", "ema", "lora_targets", "grad_accum", "buckets",
                  "validation_clips", "cache", "nccl_timeout", "gradient_checkpointing")
_PIPELINE_FLAGS = ("last_frame", "cache_only")
#: options of the embedded model's kinds that 'train pipeline' refuses when given
_EMBEDDED_ONLY = {"base": None, "init": None, "model_config": None, "extend_share": None, "matched_p": 0.0,
                  "matched_loss": "velocity", "steps_scale": 1.0, "guide_scale": 1}


def _recipe_text() -> str:
    from ._choices import RECIPE_COMMANDS

    return "\n".join(f"  {i + 1}. {c}" for i, c in enumerate(RECIPE_COMMANDS))


def register(subparsers) -> None:
    from ._outputs import add_overwrite_argument

    p = subparsers.add_parser(
        "train",
        help="train the embedded video model, its motion-guidance adapters, or your pipeline's adapters",
        description=(
            "Train the embedded image-to-video model ('base') on clips with known motion rendered from the "
            "photographs bundled with scikit-image, or the MoG guidance adapters on top of it ('adapters': "
            "the latent adapter, the feature gates and the per-trust-level gates). 'recipe' runs "
            "all the stages of the shipped weights in order. "
            "Writes DIR/checkpoint (every --checkpoint-every steps; a second run resumes from it), "
            "DIR/model (base) or DIR/adapters, and DIR/loss.png. Works under `accelerate launch` unchanged.\n\n"
            "'pipeline' trains the MoG adapters (zero-initialised latent channels and feature gates; optionally a "
            "LoRA and the first blocks) of your own diffusers pipeline (WanImageToVideoPipeline, WanPipeline, "
            "CogVideoXImageToVideoPipeline, LTXConditionPipeline, LTXImageToVideoPipeline) on clips of your "
            "videos and their captions, with the pipeline's own objective and conditioning; the VAE and text "
            "encoder run once (cached in DIR/cache, each process encoding its share). On CUDA it defaults to "
            "bf16 and gradient checkpointing. Writes DIR/adapters (load it with the jobs' --pipeline P --adapters "
            "DIR/adapters or motionguide.generate_with_guidance(pipe, g, adapter=...); with a LoRA also "
            "pytorch_lora_weights.safetensors for pipe.load_lora_weights), DIR/checkpoint, DIR/loss.png, "
            "DIR/metrics.csv and, with --validate-every, DIR/validation/step_N.mp4 of a held-out clip."
        ),
        epilog=(
            "examples:\n"
            "  motionguide train base --steps 1000 --out runs/base\n"
            "  motionguide train adapters --steps 1000 --out runs/adapters --base runs/base/model\n"
            "  motionguide train recipe --out runs                 # every stage below, in order (resumable)\n"
            "  motionguide train recipe --out /tmp/try --steps-scale 0.01 --batch-size 2   # a quick trial\n"
            "  python examples/tiny_pipeline.py --arch wan -o /tmp/tiny-wan   # a tiny random pipeline to try it\n"
            "  motionguide train pipeline --pipeline /tmp/tiny-wan --videos ../shared/data/videos --size 32x32 \\\n"
            "      --frames 9 --steps 200 --out runs/wan-tiny\n"
            "  motionguide train pipeline --pipeline Wan2.1-I2V-14B-480P-Diffusers --videos my_videos --steps 2000 \\\n"
            "      --out runs/wan14b --lora-rank 16 --lora-targets attn+ffn --grad-accum 4\n"
            "  accelerate launch --num_processes 8 -m motionguide train pipeline ...   # the same on 8 GPUs (DDP)\n"
            "  accelerate launch --config_file fsdp.yaml -m motionguide train pipeline ...   # FSDP (see the docs)\n\n"
            "the stages of the shipped weights (assets/embedded/base = runs/base/model, assets/embedded/adapters "
            "= runs/adapters_ft/adapters):\n" + _recipe_text()
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("kind", choices=_KINDS + ("recipe", "pipeline"), help="what to train")
    p.add_argument("--steps", type=int, default=None,
                   help="total optimizer steps; a resumed run continues to N (required, except for recipe)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: checkpoint/, model/ or adapters/, loss.png (recipe: one folder per stage)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="clips per step and process [default: 8; recipe: each stage's own]")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate [default: 5e-4 base, 1e-3 adapters, 1e-4 pipeline]")
    p.add_argument("--seed", type=int, default=0, help="seed of the clips, noise and initialisation")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh even if DIR/checkpoint exists (with --overwrite: that replaces the run's outputs)")
    add_overwrite_argument(p, "outputs: train into an --out folder that holds files but no run to resume, or "
                              "start one afresh with --no-resume")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [default: torch's choice]")
    p.add_argument("--base", default=None, metavar="DIR",
                   help="adapters: base model folder [default: assets/embedded/base]")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="warm start: base from the weights of this model folder, adapters from this adapter folder")
    p.add_argument("--matched-p", type=float, default=0.0,
                   help="adapters: share of batches noised from the guided reference (where guided sampling starts) "
                        "instead of from the true clip")
    p.add_argument("--matched-loss", choices=["velocity", "psnr"], default="velocity",
                   help="adapters: loss of those batches: the flow-matching velocity loss, or per-frame log MSE "
                        "(PSNR loss) of the predicted clip")
    p.add_argument("--extend-share", type=float, default=None,
                   help="adapters: share of batches with the continuation layouts (2-4 known first frames); the "
                        "others keep their ratios [default: 0.20; first frame only 0.35, in-betweening 0.45]")
    p.add_argument("--guide-scale", type=int, default=1, metavar="S",
                   help="adapters: render and guide the training clips at S times the model's size, then hand the "
                        "model the downscaled guidance and warp, as the jobs guide it from the input's size")
    p.add_argument("--model-config", default=None, metavar="JSON",
                   help="base: EmbeddedConfig fields that size the model, e.g. '{\"num_layers\": 2}'")
    p.add_argument("--steps-scale", type=float, default=1.0,
                   help="recipe: multiply every stage's steps (e.g. 0.01 for a quick trial of the whole recipe)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _pipeline_options(p.add_argument_group("train pipeline (your own diffusers pipeline)"))
    p.set_defaults(func=run)


def _pipeline_options(g) -> None:
    g.add_argument("--pipeline", default=None, metavar="DIR",
                   help="the pipeline folder (save_pretrained's): WanImageToVideoPipeline, WanPipeline, "
                        "CogVideoXImageToVideoPipeline, LTXConditionPipeline or LTXImageToVideoPipeline (required)")
    g.add_argument("--videos", default=None, metavar="DIR|FILE",
                   help="folder of training videos, each with an optional caption beside it (clip.mp4 + clip.txt, "
                        "UTF-8), or a manifest naming videos and captions: a CSV with video,prompt columns or JSONL "
                        "lines {\"video\": ..., \"prompt\": ...}, paths relative to it (required)")
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="frames per clip, a count the model takes (Wan, CogVideoX 4k+1; LTX 8k+1) "
                        "[default: the pipeline's own, e.g. 81 for Wan]")
    g.add_argument("--size", default=None, metavar="WxH",
                   help="clip size; frames of another size are scaled to cover it and center-cropped, with a notice "
                        "[default: the pipeline's own, e.g. 832x480 for Wan]")
    g.add_argument("--layouts", default=None, metavar="L,..",
                   help="the jobs' layouts: between (in-betweening from the first and last frames), extend "
                        "(continuation from the first frames), first (the first frame and the clip's own motion) "
                        "[default: between,extend,first]")
    g.add_argument("--clips", type=int, default=None, metavar="N",
                   help="clips cut from the videos (spread evenly), encoded once [default: 8]")
    g.add_argument("--stride", type=int, default=None, metavar="N", help="frames of the video between clip frames [default: 1]")
    g.add_argument("--flow", default=None, metavar="NAME",
                   help="flow estimator of the extend and first layouts (flow.estimators) [default: dis]")
    g.add_argument("--interpolator", default=None, metavar="NAME",
                   help="intermediate flows of the between layout (flow.interpolate) [default: auto]")
    g.add_argument("--prompt", default=None, metavar="TEXT",
                   help="the prompt of every clip without a caption of its own [default: empty]")
    g.add_argument("--buckets", default=None, metavar="WxHxF,..",
                   help="resolution and frame-count buckets (e.g. 832x480x81,480x832x81); each video trains in the "
                        "bucket of the nearest aspect among those it is long enough for, a batch comes from one "
                        "bucket [default: one, --size x --frames]")
    g.add_argument("--grad-accum", type=int, default=None, metavar="N",
                   help="micro-batches of --batch-size per optimizer step (gradient accumulation) [default: 1]")
    g.add_argument("--last-frame", action="store_true",
                   help="Wan: the between layout also conditions on the last frame (FLF2V; call the pipeline with "
                        "last_image)")
    g.add_argument("--lora-rank", type=int, default=None, metavar="R",
                   help="also train a peft LoRA of this rank on the attention of --lora-blocks [default: no LoRA]")
    g.add_argument("--lora-targets", choices=["attn", "attn+ffn"], default=None,
                   help="layers of the LoRA: attention q, k, v, o; or also the feed-forward's two Linear layers "
                        "(DiffSynth-Studio's default) [default: attn]")
    g.add_argument("--lora-blocks", default=None, metavar="B,..",
                   help="'guided', 'all' or block indices [default: guided, the blocks with feature guidance]")
    g.add_argument("--train-blocks", type=int, default=None, metavar="N",
                   help="also unfreeze the first N blocks (MoG's selective fine-tuning) [default: 0]")
    g.add_argument("--feature-blocks", default=None, metavar="B,..",
                   help="blocks with feature-level guidance [default: the first half]")
    g.add_argument("--mixed-precision", choices=["no", "bf16"], default=None,
                   help="bf16 autocast [default: bf16 on CUDA, no on the CPU]")
    g.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="the frozen transformer's and text encoder's dtype (the VAE keeps its family's: float32 for "
                        "Wan); bfloat16 needs --mixed-precision bf16 [default: bfloat16 with bf16, else float32]")
    g.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="the transformer's own gradient checkpointing (less activation memory, more time per step) "
                        "[default: on with CUDA]")
    g.add_argument("--cache", default=None, metavar="DIR",
                   help="where the VAE's and text encoder's outputs are kept (shareable between runs of the same "
                        "pipeline) [default: DIR/cache]")
    g.add_argument("--cache-only", action="store_true",
                   help="build the cache (every process its share of the clips) and stop")
    g.add_argument("--nccl-timeout", type=float, default=None, metavar="MIN",
                   help="minutes a process waits for the others (the cache build, validation) [default: 60]")
    g.add_argument("--validate-every", type=int, default=None, metavar="N",
                   help="steps between validations on held-out clips: their loss (DIR/metrics.csv) and "
                        "DIR/validation/step_N.mp4 with the pipeline's CFG [default: 0, none]")
    g.add_argument("--validation-clips", type=int, default=None, metavar="N",
                   help="clips held out of training for validation [default: 1 with --validate-every]")
    g.add_argument("--validate-steps", type=int, default=None, metavar="N",
                   help="denoising steps of a validation clip [default: 20]")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY", help="EMA decay of the exported weights [default: 0.99]")


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


#: options that count something: (dest, smallest value)
_COUNTS = (("steps", 1), ("batch_size", 1), ("checkpoint_every", 1), ("threads", 1), ("clips", 1), ("stride", 1),
           ("frames", 1), ("lora_rank", 1), ("train_blocks", 0), ("validate_every", 0), ("validate_steps", 1),
           ("guide_scale", 1))


def _check_numbers(args) -> None:
    """Counts are whole and positive (0 is never "the default"), rates positive, shares in [0, 1]."""
    import math

    for dest, lo in _COUNTS:
        v = getattr(args, dest)
        if v is not None and v < lo:
            flag = "--" + dest.replace("_", "-")
            raise ValueError(f"{flag} must be at least {lo}, got {v}" + ("; leave it out for the default" if
                                                                           dest != "steps" else ""))
    for dest in ("lr", "steps_scale"):
        v = getattr(args, dest)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"--{dest.replace('_', '-')} must be a positive number, got {v}")
    for dest in ("matched_p", "extend_share"):
        v = getattr(args, dest)
        if v is not None and not 0 <= v <= 1:
            raise ValueError(f"--{dest.replace('_', '-')} is a share of the batches, 0 .. 1, got {v}")
    if args.ema is not None and not 0 <= args.ema < 1:
        raise ValueError(f"--ema is a decay in [0, 1), got {args.ema}")


def _check_model_config(model: dict, text: str) -> None:
    """--model-config against the embedded model's config, in the option's words: the fields it names and
    their values, never the config object's repr. Unknown fields are refused before the model's libraries
    load."""
    import re

    from ._choices import EMBEDDED_CONFIG_FIELDS

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
    from pathlib import Path

    from ..errors import UserError

    given = [k for k, default in _EMBEDDED_ONLY.items() if getattr(args, k) != default]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} applies to the embedded model's kinds, not 'train pipeline'")
    for name in ("pipeline", "videos", "steps"):
        if getattr(args, name) is None:
            raise UserError(f"train pipeline needs --{name} " + {"pipeline": "DIR (a pipeline folder)",
                                                                  "videos": "DIR (a folder of videos) or a .csv/.jsonl manifest",
                                                                  "steps": "N (the total optimizer steps)"}[name])
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

    opts = {k: getattr(args, k) for k in _PIPELINE_ONLY + ("batch_size", "lr") if getattr(args, k) is not None}
    if "size" in opts:
        opts["size"] = parse_size(opts["size"])
    if "layouts" in opts:
        opts["layouts"] = tuple(x.strip() for x in opts["layouts"].split(",") if x.strip())
    if "feature_blocks" in opts:
        try:
            opts["feature_blocks"] = tuple(int(x) for x in opts["feature_blocks"].split(","))
        except ValueError:
            raise UserError(f"--feature-blocks {args.feature_blocks}: expected block indices such as 0,1") from None
    cfg = PipelineTrainConfig(steps=args.steps, out=args.out, seed=args.seed, checkpoint_every=args.checkpoint_every,
                              resume=not args.no_resume, threads=args.threads, progress=not args.no_progress,
                              last_frame=args.last_frame, cache_only=args.cache_only, **opts)
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


def run(args) -> int:
    from ..errors import UserError

    if args.kind == "pipeline":
        return _run_pipeline(args)
    given = [k for k in _PIPELINE_ONLY if getattr(args, k) is not None] + [k for k in _PIPELINE_FLAGS if getattr(args, k)]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} applies to 'train pipeline' only")
    # every argument is checked before a model loads or a clip renders (and before the libraries load)
    _check_numbers(args)
    from ._choices import EMBEDDED_ADAPTER_FILES, EMBEDDED_MODEL_FILES
    from ._inputs import check_files, check_folder

    if args.base:
        check_folder(args.base, "--base", "the base model's folder (DIR/model of 'train base')")
        check_files(args.base, "--base", EMBEDDED_MODEL_FILES, "an embedded model folder",
                    "pass the folder 'motionguide train base' wrote (DIR/model), or leave --base out")
    if args.init:
        check_folder(args.init, "--init", "a model folder (base: DIR/model) or an adapter folder (adapters: "
                                          "DIR/adapters)")
        if args.kind in ("base", "adapters"):
            files, what, wrote = ((EMBEDDED_MODEL_FILES, "an embedded model folder", "base --out DIR' wrote (DIR/model)")
                                  if args.kind == "base" else
                                  (EMBEDDED_ADAPTER_FILES, "an adapter folder", "adapters --out DIR' wrote (DIR/adapters)"))
            check_files(args.init, "--init", files, what, f"pass the folder 'motionguide train {wrote}")
    _check_run_folder(args.out, [args.base, args.init], resume=not args.no_resume, overwrite=args.overwrite)
    model = _model_config(args.model_config)
    if args.kind == "recipe":
        for name in ("steps", "base", "init", "lr"):
            if getattr(args, name) is not None:
                raise UserError(f"--{name} does not apply to 'train recipe' (each stage sets its own); use "
                                f"--steps-scale to shorten the stages, or train one stage alone")
        overrides = dict(checkpoint_every=args.checkpoint_every, resume=not args.no_resume, threads=args.threads,
                         progress=not args.no_progress)
        if args.batch_size is not None:
            overrides["batch_size"] = args.batch_size
        if model:
            _check_model_config(model, args.model_config)
            overrides["model"] = model
        from tqdm.auto import tqdm

        from ..embedded.recipes import run_recipe

        with _locked(args.out), _disk_full_says_what_is_kept(args.out):
            res = run_recipe(args.out, steps_scale=args.steps_scale, overrides=overrides, log=tqdm.write)
        print(f"trained every stage of the recipe into {args.out}: " + ", ".join(f"{k} (step {v['step']})"
                                                                                 for k, v in res.items()))
        return 0
    if args.steps is None:
        raise UserError(f"train {args.kind} needs --steps N (the total optimizer steps)")
    if args.steps_scale != 1.0:
        raise UserError("--steps-scale applies to 'train recipe' only; give --steps N instead")
    if model and args.kind != "base":
        raise UserError(f"--model-config sizes a new base model; train {args.kind} uses the --base model's size")
    if model:
        _check_model_config(model, args.model_config)
    from tqdm.auto import tqdm

    from ..embedded.recipes import TrainConfig, train

    cfg = TrainConfig(
        kind=args.kind, steps=args.steps, out=args.out, batch_size=8 if args.batch_size is None else args.batch_size,
        lr=args.lr,
        seed=args.seed, checkpoint_every=args.checkpoint_every, resume=not args.no_resume, threads=args.threads,
        base=args.base, init=args.init, matched_p=args.matched_p, matched_loss=args.matched_loss,
        extend_share=args.extend_share, guide_scale=args.guide_scale, model=model, progress=not args.no_progress,
    )
    with _locked(args.out), _disk_full_says_what_is_kept(args.out), _options_named(args):
        res = train(cfg, log=tqdm.write)
    print(f"trained {args.kind} to step {res['step']}; outputs in {res['out']}")
    return 0
