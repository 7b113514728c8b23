"""Motion transfer with the embedded model: the demo's camera motion over one photograph, the look of another.

    python examples/transfer.py [OUT_DIR]

Writes OUT_DIR/transfer.mp4 and OUT_DIR/transfer.png (inputs, guidance warp, output, flows). Nothing is
downloaded: the inputs are rendered from scikit-image's photographs and the model comes from assets/.
"""
import sys
from pathlib import Path

import torch

from flow.video import write_video
from motionguide import jobs


def main(out_dir: str = "out") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    model = jobs.load_models(mode="both")  # embedded base + trained MoG adapters from assets/
    d = jobs.demo_inputs("transfer", seed=0)  # reference (8, 3, 384, 576), image (3, 384, 576)
    res = jobs.transfer(d["reference"], d["image"], model=model, motion_scale=1.0, strength=1.0, seed=0,
                         output_size="model")  # at the model's 32x32 size
    write_video(out / "transfer.mp4", res.frames, d["fps"])
    jobs.save_compare(out / "transfer.png", res)
    print(f"wrote {out / 'transfer.mp4'} and {out / 'transfer.png'}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(print(__doc__))
    main(*sys.argv[1:])
