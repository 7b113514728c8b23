"""Extend footage with the embedded model: 4 known frames continued by 4 generated ones.

    python examples/extend.py [OUT_DIR] [NEW_FRAMES]

Writes OUT_DIR/extend.mp4 and OUT_DIR/extend.png. Longer extensions run in windows of 8 frames.
"""
import sys
from pathlib import Path

import torch

from flow.video import write_video
from motionguide import jobs


def main(out_dir: str = "out", frames: str = "4") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    model = jobs.load_models(mode="both")
    d = jobs.demo_inputs("extend", seed=0)  # the first 4 frames of the speed demo's pan
    res = jobs.extend(d["clip"], int(frames), model=model, seed=0,
                      output_size="model")  # at the model's 32x32 (the default keeps the input's size)
    write_video(out / "extend.mp4", res.frames, d["fps"])
    jobs.save_compare(out / "extend.png", res)
    print(f"wrote {out / 'extend.mp4'} ({res.frames.shape[0]} frames) and {out / 'extend.png'}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(print(__doc__))
    main(*sys.argv[1:])
