"""``motionguide train base|adapters|blend|fusion --steps N --out DIR``: train the embedded model, its MoG
adapters, the adapters' learned blend of two warped sources, or their fusion of output and warp.

Runs single-process on the CPU, or unchanged under ``accelerate launch`` on several GPUs. Resumes from
``DIR/checkpoint`` when it exists.
"""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the embedded video model (base), its motion-guidance adapters, or their blend or fusion head",
        description=(
            "Train the embedded image-to-video model ('base') on clips with known motion rendered from the "
            "photographs bundled with scikit-image, the MoG guidance adapters on top of it ('adapters'), or "
            "the adapters' learned blend of the two warped sources of in-between frames ('blend', added to the "
            "--init adapters; trains on warps alone, minutes), or their per-pixel fusion of the generated "
            "continuation frames with the warp ('fusion', added to the --init adapters; trains on the model's "
            "own outputs, generated once, minutes). "
            "Checkpoints every --checkpoint-every steps in DIR/checkpoint (resumed automatically), exports "
            "DIR/model or DIR/adapters and writes DIR/loss.png. Works under `accelerate launch` unchanged."
        ),
        epilog=(
            "The shipped weights' recipe (docs/README_embedded.md): `train base --steps 1000 --out runs/base`; "
            "`train adapters --steps 1000 --out runs/adapters --base runs/base/model`; then the fine-tune that "
            "trains where guided sampling starts: `train adapters --steps 1200 --out runs/adapters_ft --base "
            "runs/base/model --init runs/adapters/adapters --matched-p 0.9 --matched-loss psnr --lr 5e-4`; then the "
            "learned blend of in-betweens' two warps: `train blend --steps 1200 --out runs/blend --base "
            "runs/base/model --init runs/adapters_ft/adapters --batch-size 6`; then the same fine-tune with the "
            "per-pixel gate head, which --init adds to adapters without one (the blend stays frozen): `train "
            "adapters --steps 1000 --out runs/adapters_head --base runs/base/model --seed 1 --init "
            "runs/blend/adapters --matched-p 0.9 --matched-loss psnr --lr 5e-4`; then the fusion of the output with "
            "the warp on continuation frames, on the model's own outputs: `train fusion --steps 1500 --out "
            "runs/fusion --base runs/base/model --init runs/adapters_head/adapters --batch-size 6` (about 98 min "
            "in all alone on a 2-core CPU)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("kind", choices=["base", "adapters", "blend", "fusion"], help="what to train")
    p.add_argument("--steps", type=int, required=True, help="total optimizer steps (a resumed run continues to N)")
    p.add_argument("--out", required=True, help="output folder (checkpoint/, model/ or adapters/, loss.png)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="clips per step and process (blend, fusion: 8 x this many frames from the pool)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: 5e-4 base, 1e-3 adapters, 1e-2 blend, 3e-3 fusion)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clips, noise and initialisation")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if DIR/checkpoint exists")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--base", default=None, help="adapters: base model folder (default: the shipped assets)")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="warm start: base from the weights of this model folder, adapters from this adapter folder; "
                        "blend, fusion: the adapters to add the head to (required)")
    p.add_argument("--matched-p", type=float, default=0.0,
                   help="adapters: share of batches noised from the guided reference (where guided sampling starts) "
                        "instead of from the true clip")
    p.add_argument("--matched-loss", choices=["velocity", "psnr"], default="velocity",
                   help="adapters: loss of those batches: the flow-matching velocity loss, or per-frame log MSE "
                        "(PSNR loss) of the predicted clip")
    p.add_argument("--extend-share", type=float, default=None,
                   help="adapters: share of batches with the continuation layouts (2-4 known first frames); the "
                        "others keep their ratios (default: 0.20; first frame only 0.35, in-betweening 0.45)")
    p.add_argument("--blend-pool", type=int, default=400,
                   help="blend: training clips rendered once and held in memory (slow motion x1/2, x1/3, x1/4)")
    p.add_argument("--fusion-pool", type=int, default=960,
                   help="fusion: training clips the model generates once (continuation after 1-4 known frames)")
    p.add_argument("--model-config", default=None,
                   help="base: JSON of EmbeddedConfig fields to size the model, e.g. '{\"num_layers\": 2}'")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..train import TrainConfig, train

    model = {}
    if args.model_config:
        try:
            model = json.loads(args.model_config)
        except json.JSONDecodeError as e:
            raise ValueError(f"--model-config must be a JSON object, got {args.model_config!r} ({e})") from None
        if not isinstance(model, dict):
            raise ValueError(f"--model-config must be a JSON object, got {args.model_config!r}")
    cfg = TrainConfig(
        kind=args.kind, steps=args.steps, out=args.out, batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else {"base": 5e-4, "adapters": 1e-3, "blend": 1e-2, "fusion": 3e-3}[args.kind],
        seed=args.seed, checkpoint_every=args.checkpoint_every, resume=not args.no_resume, threads=args.threads,
        base=args.base, init=args.init, matched_p=args.matched_p, matched_loss=args.matched_loss,
        extend_share=args.extend_share, blend_pool=args.blend_pool, fusion_pool=args.fusion_pool, model=model,
        progress=not args.no_progress,
    )
    res = train(cfg, log=tqdm.write)
    print(f"trained {args.kind} to step {res['step']}; outputs in {res['out']}")
    return 0
