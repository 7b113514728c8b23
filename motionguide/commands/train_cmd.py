"""``motionguide train KIND --steps N --out DIR``: train the embedded model, its MoG adapters or one of the
adapters' heads; ``motionguide train recipe --out DIR`` runs every stage of the shipped weights' recipe.

Runs single-process on the CPU, or unchanged under ``accelerate launch`` on several GPUs. Resumes from
``DIR/checkpoint`` when it exists.
"""
from __future__ import annotations

import argparse
import json

from ._help import HelpFormatter

_KINDS = ("base", "adapters", "blend", "continuation")


def _recipe_text() -> str:
    from ..embedded.recipes import SHIPPED_RECIPE, stage_command

    lines = [f"  {i + 1}. {stage_command(s)}" for i, s in enumerate(SHIPPED_RECIPE)]
    return "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the embedded video model, its motion-guidance adapters, or their heads",
        description=(
            "Train the embedded image-to-video model ('base') on clips with known motion rendered from the "
            "photographs bundled with scikit-image; the MoG guidance adapters on top of it ('adapters'); the "
            "adapters' learned blend of the two warped sources of in-between frames ('blend', added to the "
            "--init adapters; trains on warps alone, minutes); or their per-pixel mix of the generated "
            "continuation frames with the warp ('continuation', added to the --init adapters; trains on the "
            "model's own outputs, minutes). 'recipe' runs all the stages of the shipped weights in order. "
            "Writes DIR/checkpoint (every --checkpoint-every steps; a second run resumes from it), "
            "DIR/model (base) or DIR/adapters, and DIR/loss.png. Works under `accelerate launch` unchanged."
        ),
        epilog=(
            "examples:\n"
            "  motionguide train base --steps 1000 --out runs/base\n"
            "  motionguide train adapters --steps 1000 --out runs/adapters --base runs/base/model\n"
            "  motionguide train recipe --out runs                 # every stage below, about 98 min on 2 cores\n"
            "  motionguide train recipe --out /tmp/try --steps-scale 0.01 --batch-size 2   # a quick trial\n\n"
            "the stages of the shipped weights (assets/embedded/base = runs/base/model, assets/embedded/adapters "
            "= runs/continuation/adapters):\n" + _recipe_text()
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("kind", choices=_KINDS + ("recipe",), help="what to train")
    p.add_argument("--steps", type=int, default=None,
                   help="total optimizer steps; a resumed run continues to N (required, except for recipe)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: checkpoint/, model/ or adapters/, loss.png (recipe: one folder per stage)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="clips per step and process (blend, continuation: 8 x this many frames from the pool) "
                        "[default: 8; recipe: each stage's own]")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate [default: 5e-4 base, 1e-3 adapters, 1e-2 blend, 3e-3 continuation]")
    p.add_argument("--seed", type=int, default=0, help="seed of the clips, noise and initialisation")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if DIR/checkpoint exists")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [default: torch's choice]")
    p.add_argument("--base", default=None, metavar="DIR",
                   help="adapters, blend, continuation: base model folder [default: assets/embedded/base]")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="warm start: base from the weights of this model folder, adapters from this adapter folder; "
                        "blend, continuation: the adapters to add the head to (required)")
    p.add_argument("--matched-p", type=float, default=0.0,
                   help="adapters: share of batches noised from the guided reference (where guided sampling starts) "
                        "instead of from the true clip")
    p.add_argument("--matched-loss", choices=["velocity", "psnr"], default="velocity",
                   help="adapters: loss of those batches: the flow-matching velocity loss, or per-frame log MSE "
                        "(PSNR loss) of the predicted clip")
    p.add_argument("--extend-share", type=float, default=None,
                   help="adapters: share of batches with the continuation layouts (2-4 known first frames); the "
                        "others keep their ratios [default: 0.20; first frame only 0.35, in-betweening 0.45]")
    p.add_argument("--blend-pool", type=int, default=400,
                   help="blend: training clips rendered once and held in memory (slow motion x1/2, x1/3, x1/4)")
    p.add_argument("--continuation-pool", type=int, default=960,
                   help="continuation: training clips the model generates once (continuation after 1-4 known frames)")
    p.add_argument("--model-config", default=None, metavar="JSON",
                   help="base: EmbeddedConfig fields that size the model, e.g. '{\"num_layers\": 2}'")
    p.add_argument("--steps-scale", type=float, default=1.0,
                   help="recipe: multiply every stage's steps (e.g. 0.01 for a quick trial of the whole recipe)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


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


def _check_run_folder(out: str, inputs: list) -> None:
    """``--out`` is a new folder or a run folder to resume: not a file, not an input, in a writable place."""
    import os
    from pathlib import Path

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


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..embedded.recipes import TrainConfig, run_recipe, train
    from ..errors import UserError

    # every argument is checked before a model loads or a clip renders
    _check_run_folder(args.out, [args.base, args.init])
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
            overrides["model"] = model
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
    cfg = TrainConfig(
        kind=args.kind, steps=args.steps, out=args.out, batch_size=args.batch_size or 8, lr=args.lr,
        seed=args.seed, checkpoint_every=args.checkpoint_every, resume=not args.no_resume, threads=args.threads,
        base=args.base, init=args.init, matched_p=args.matched_p, matched_loss=args.matched_loss,
        extend_share=args.extend_share, blend_pool=args.blend_pool, continuation_pool=args.continuation_pool,
        model=model, progress=not args.no_progress,
    )
    res = train(cfg, log=tqdm.write)
    print(f"trained {args.kind} to step {res['step']}; outputs in {res['out']}")
    return 0
