"""The README's strips: the three jobs' built-in demos (``motionguide transfer|speed|extend --demo --compare``,
the CLI's defaults), and real footage: 2x slow motion of a vtest.avi clip and a 4-frame extension of a
Big Buck Bunny clip (the bunny moves, the camera follows), at the input's resolution, with the confidence row (white: the warp, black: the
embedded model); and the top edge of that extension's new frames, where content enters, as the border clamp
fills it and as the extension's fill does (the median of three guesses), above the real frames.

    python examples/real_strips.py [OUT_DIR]   # default docs/images: demo_{transfer,speed,extend}.jpg,
                                               # real_speed.jpg, real_extend.jpg, real_extend_edge.jpg

The real-footage strips need the evaluation footage in ../shared/data (or MOTIONGUIDE_DATA); it reads it, never
copies it. Without it only the demo strips are written.
"""
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from flow.video import read_video
from flow.viz import make_strip
from motionguide import jobs
from motionguide.warping import flow_only

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))
START = 300  # a stretch of vtest.avi where pedestrians cross each other (occlusions the flow cannot explain)
PAN = 36  # a stretch of bigbuckbunny.mp4 where the camera follows the bunny: content enters at the frame's edge
WIDTH = 1290  # the JPEGs' width
EDGE = (slice(0, 24), slice(160, 480))  # the top band of the 640x360 bunny frames where content enters
EDGE_ZOOM = 4


def _jpeg(res, path: Path, columns: int = 8) -> None:
    """``jobs.save_compare`` of ``res``, as a JPEG at most WIDTH pixels wide."""
    with tempfile.TemporaryDirectory() as d:
        png = Path(d) / "strip.png"
        jobs.save_compare(png, res, columns=columns)
        im = Image.open(png).convert("RGB")
    if im.width > WIDTH:
        im = im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)
    im.save(path, quality=85)
    print(f"wrote {path} (the model supplied {100 * res.model_share:.1f} % of the pixels)")


def demo_strips(out: Path) -> None:
    """The three ``--demo`` runs as the CLI makes them with no other option."""
    d = jobs.demo_inputs("transfer")
    _jpeg(jobs.transfer(d["reference"], d["image"], model=None), out / "demo_transfer.jpg")
    d = jobs.demo_inputs("speed")
    _jpeg(jobs.speed(d["clip"], 0.5, model=None), out / "demo_speed.jpg")
    d = jobs.demo_inputs("extend")
    _jpeg(jobs.extend(d["clip"], 4, model=None), out / "demo_extend.jpg")


def real_strips(out: Path) -> None:
    src, pan = DATA / "videos" / "vtest.avi", DATA / "videos" / "bigbuckbunny.mp4"
    if not src.is_file() or not pan.is_file():
        print(f"{DATA / 'videos'} lacks vtest.avi or bigbuckbunny.mp4: set MOTIONGUIDE_DATA to the evaluation data "
              f"folder for the real-footage strips")
        return
    clip, _ = read_video(src, max_frames=START + 9)
    clip = clip[START:].float()
    model = jobs.load_models(mode="both")
    speed = jobs.speed(clip[::2], 0.5, model=model, fill="model")  # 5 kept frames -> 9, model where unsure
    _jpeg(speed, out / "real_speed.jpg", columns=9)  # every output frame
    bunny, _ = read_video(pan, max_frames=PAN + 9)
    bunny = F.interpolate(bunny[PAN:].float(), size=(360, 640), mode="area")  # as benchmarks/real_footage.py
    extend = jobs.extend(bunny[:5], 4, model=model, fill="model")
    _jpeg(extend, out / "real_extend.jpg", columns=9)
    edge_strip(jobs.extend(bunny[:5], 4, model=None), bunny[5:], out / "real_extend_edge.jpg")


def edge_strip(res, real: torch.Tensor, path: Path, new: tuple = (4,)) -> None:
    """The top band (``EDGE``) of an extension's ``new`` frames (1 = the first new one): the border clamp's
    fill, the job's, the real frames, each tile upscaled ``EDGE_ZOOM`` times (nearest) so that the streaks
    show."""
    clamp = flow_only(res.guidance, unseen="clamp")[0].transpose(0, 1)
    out_ks, real_ks = [4 + k for k in new], [k - 1 for k in new]  # 5 input frames, then the new ones
    rows = [[F.interpolate(clip[k][None, :, EDGE[0], EDGE[1]], scale_factor=EDGE_ZOOM, mode="nearest")[0] for k in ks]
            for clip, ks in ((clamp, out_ks), (res.frames, out_ks), (real, real_ks))]
    strip = make_strip(rows, labels=["border clamp", "median (now)", "real"], col_labels=[f"{k} new" for k in new])
    im = Image.fromarray((strip.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().numpy())
    if im.width > WIDTH:
        im = im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)
    im.save(path, quality=90)
    print(f"wrote {path}")


def main(out_dir: str = str(REPO / "docs" / "images")) -> None:
    torch.set_flush_denormal(True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    demo_strips(out)
    real_strips(out)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(print(__doc__))
    main(*sys.argv[1:])
