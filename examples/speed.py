"""2x slow motion with the embedded model: real frames kept, in-between frames generated under guidance.

    python examples/speed.py [OUT_DIR] [FACTOR]

Writes OUT_DIR/speed.mp4 and OUT_DIR/speed.png. FACTOR (default 0.5) is input frames per output frame.
"""
import sys
from pathlib import Path

import torch

from flow.video import write_video
from motionguide import jobs


def main(out_dir: str = "out", factor: str = "0.5") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    model = jobs.load_models(mode="both")
    d = jobs.demo_inputs("speed", seed=0)  # a camera pan over a photograph (8, 3, 384, 576)
    res = jobs.speed(d["clip"], float(factor), model=model, seed=0,
                      output_size="model")  # at the model's 32x32 (the default keeps the input's size)
    write_video(out / "speed.mp4", res.frames, d["fps"])
    jobs.save_compare(out / "speed.png", res)
    print(f"wrote {out / 'speed.mp4'} ({res.frames.shape[0]} frames) and {out / 'speed.png'}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(print(__doc__))
    main(*sys.argv[1:])
