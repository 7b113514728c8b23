"""Write a complete tiny random-init pipeline folder, to try the trainer and the jobs offline.

The folder holds a transformer, VAE, scheduler, T5 text encoder and tokenizer (all built in code by
``motionguide.testing``, nothing downloaded), saved with ``save_pretrained``, and loads with the pipeline
class's own ``from_pretrained``:

    python examples/tiny_pipeline.py --arch wan -o /tmp/tiny-wan
    python -c "import diffusers; p = diffusers.WanImageToVideoPipeline.from_pretrained('/tmp/tiny-wan')"

``--arch`` picks the class: wan (WanImageToVideoPipeline), cogvideox (CogVideoXImageToVideoPipeline),
ltx (LTXConditionPipeline). The model is random: its videos are noise; the point is the API and the shapes.
"""
from __future__ import annotations

import argparse
import sys

from motionguide import testing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Write a tiny random-init diffusers image-to-video pipeline folder (offline).",
        epilog="example: python examples/tiny_pipeline.py --arch wan -o /tmp/tiny-wan",
    )
    ap.add_argument("--arch", required=True, choices=sorted(testing.PIPELINES),
                    help="pipeline class: " + ", ".join(f"{k} = {v}" for k, v in testing.PIPELINES.items()))
    ap.add_argument("-o", "--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    ap.add_argument("--image-encoder", action="store_true",
                    help="wan only: add a tiny CLIP image encoder (the Wan 2.1 I2V layout; default: Wan 2.2's, none)")
    ap.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    args = ap.parse_args(argv)
    if args.image_encoder and args.arch != "wan":
        ap.error("--image-encoder applies to --arch wan only")
    try:
        folder = testing.save_tiny_pipeline(args.arch, args.out, seed=args.seed, image_encoder=args.image_encoder,
                                            overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    call = testing.tiny_call(args.arch)
    print(f"wrote {testing.PIPELINES[args.arch]} to {folder}; it takes e.g. height={call['height']}, "
          f"width={call['width']}, num_frames={call['num_frames']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
