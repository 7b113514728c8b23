"""The README's strips of real footage: 2x slow motion and a 4-frame extension of a vtest.avi clip, at the
input's resolution, with the confidence row (white: the warp, black: the embedded model).

    python examples/real_strips.py [OUT_DIR]      # default docs/images: real_speed.jpg, real_extend.jpg

Needs the evaluation footage in ../shared/data (or MOTIONGUIDE_DATA); it reads it, never copies it.
"""
import os
import sys
from pathlib import Path

import torch

from flow.video import read_video
from motionguide import jobs

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))
START = 300  # a stretch of vtest.avi where pedestrians cross each other (occlusions the flow cannot explain)


def main(out_dir: str = str(REPO / "docs" / "images")) -> None:
    torch.set_flush_denormal(True)
    src = DATA / "videos" / "vtest.avi"
    if not src.is_file():
        sys.exit(f"{src} not found: set MOTIONGUIDE_DATA to the evaluation data folder")
    clip, _ = read_video(src, max_frames=START + 9)
    clip = clip[START:].float()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = jobs.load_models(mode="both")
    speed = jobs.speed(clip[::2], 0.5, model=model, fill="model")  # 5 kept frames -> 9, model where unsure
    extend = jobs.extend(clip[:5], 4, model=model, fill="model")
    for name, res in (("real_speed", speed), ("real_extend", extend)):
        png = out / f"{name}.png"
        jobs.save_compare(png, res, columns=9)  # every output frame
        from PIL import Image

        im = Image.open(png).convert("RGB")
        im = im.resize((1290, round(im.height * 1290 / im.width)), Image.LANCZOS) if im.width > 1290 else im
        im.save(out / f"{name}.jpg", quality=85)
        png.unlink()
        print(f"wrote {out / name}.jpg (the model supplied {100 * res.model_share:.1f} % of the pixels)")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(print(__doc__))
    main(*sys.argv[1:])
