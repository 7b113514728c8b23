"""The jobs' built-in demo inputs and the ``--compare`` strip.

:func:`demo_inputs` renders real-size clips (576x384) from photographs that ship with scikit-image
(``skimage.data``: coffee, chelsea the cat, a rocket on its launch pad; no file read from the user, nothing
downloaded): a camera that pans, zooms and turns over a photo, rendered by this module, at constant velocity
so the motion is smooth and plausible. :func:`save_compare` writes a job's result as a labelled strip whose
columns are the output's frames in time order.

Shapes: clips ``(T, 3, H, W)`` float in [0, 1] (one clip, no batch).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from flow.viz import save_strip

from .warping import known_of

__all__ = ["DEMO_SIZE", "DEMO_FRAMES", "render_camera", "demo_inputs", "save_compare"]

#: ``(H, W)`` of the demo clips: a real size (the jobs run at the input's resolution), quick on 2 CPU cores
DEMO_SIZE = (384, 576)
#: frames of the demo reference / input clip, at 8 fps
DEMO_FRAMES = 8


def _photo(name: str) -> np.ndarray:
    """``(H, W, 3)`` float32 RGB in [0, 1] of ``skimage.data.<name>()`` (shipped with scikit-image)."""
    import skimage.data

    return getattr(skimage.data, name)().astype(np.float32) / 255


def render_camera(photo: np.ndarray, n: int, size: tuple[int, int] = DEMO_SIZE, *, zoom=(1.1, 1.1),
                  pan=(0.0, 0.0), turn: float = 0.0) -> torch.Tensor:
    """``(n, 3, H, W)`` float in [0, 1]: a camera moving over ``photo`` at constant velocity.

    photo: ``(PH, PW, 3)`` float in [0, 1]. Frame ``k`` (``s = k / (n - 1)``) shows the photo magnified
    ``zoom[0] + s (zoom[1] - zoom[0])`` times (1 = the photo's centre fills the frame), its centre moved by
    ``s * pan`` output pixels (x right, y down: the camera moves that way, the content the other way), turned
    ``s * turn`` degrees. Rendered bicubic; samples past the photo's edge mirror it.
    """
    h, w = size
    ph, pw = photo.shape[:2]
    cover = min(ph / h, pw / w)  # photo pixels per output pixel at zoom 1
    frames = []
    for k in range(n):
        s = k / max(1, n - 1)
        z = zoom[0] + s * (zoom[1] - zoom[0])
        a = math.radians(s * turn)
        r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * cover / z
        centre = np.array([pw / 2, ph / 2]) + np.array(pan) * s * cover / z
        m = np.hstack([r, (centre - r @ np.array([w / 2, h / 2]))[:, None]])  # output pixel -> photo pixel
        img = cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT_101)
        frames.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
    return torch.stack(frames).clamp(0, 1)


def demo_inputs(job: str, seed: int = 0) -> dict:
    """Built-in inputs at :data:`DEMO_SIZE`, rendered from scikit-image's photographs (no files, no downloads).

    transfer: the motion of a camera pushing in and turning over a cup of coffee, the look of a cat
    (``chelsea``); speed: a camera panning over a rocket on its launch pad (8 frames; the CLI's demo factor
    is 0.5); extend: its first 4 frames (the new frames continue the pan: content enters at the right edge,
    where no source sees). ``seed`` mirrors the motion left-right when odd, so other seeds show another
    direction; the photos stay the same.
    """
    flip = -1.0 if seed % 2 else 1.0
    if job == "transfer":
        ref = render_camera(_photo("coffee"), DEMO_FRAMES, zoom=(1.15, 1.3), pan=(flip * 72.0, -12.0), turn=flip * 4.0)
        cat = torch.from_numpy(_photo("chelsea")).permute(2, 0, 1)[None]
        image = F.interpolate(cat, size=DEMO_SIZE, mode="bicubic", align_corners=False, antialias=True)[0]
        return {"reference": ref, "image": image.clamp(0, 1), "fps": 8.0}
    if job in ("speed", "extend"):
        clip = render_camera(_photo("rocket"), DEMO_FRAMES, zoom=(1.12, 1.2), pan=(flip * 56.0, 0.0))
        return {"clip": clip if job == "speed" else clip[:4], "fps": 8.0}
    raise ValueError(f"unknown job {job!r}; expected transfer, speed or extend")


def _pick(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _columns(t_out: int, generated: list[int], columns: int) -> list[int]:
    """The output frames the strip shows, in time order: every frame when they fit; else from one frame
    before the first generated one (an extension shows its last input frame, then what it made):
    ``columns`` consecutive frames (consecutive frames show the motion best; always so when generated and
    input frames alternate, as in slow motion), or, when the generated frames run on for more than twice
    ``columns``, frames spread evenly over them."""
    if t_out <= columns:
        return list(range(t_out))
    first = min(generated, default=0)
    start = max(0, first - 1)
    alternate = any(t not in generated for t in range(first, t_out))
    if alternate or t_out - start <= 2 * columns:
        start = min(start, t_out - columns)
        return list(range(start, start + columns))
    return [start + i for i in _pick(t_out - start, columns)]


def save_compare(path: str | Path, result, *, columns: int = 8, zoom: float | None = None,
                 max_side: int = 512) -> None:
    """Write a job's result (a :class:`motionguide.jobs.JobResult`) as a labelled strip (.png).

    Each column is one output frame (its index above it; "new" = a frame the job made), and every row shows
    that same moment: ``input`` (the input frame placed there, empty where the job made the frame),
    ``reference`` (transfer: the reference frame whose motion it copies), ``warp`` (the flow-only synthesis,
    shown only when the output differs from it), ``output``, ``flow`` (the guidance flow of each new frame to
    its source, colour wheel on one scale for the whole row) and ``confidence`` (where the output is the warp,
    white, or the model's fill, black; shown when the job reports one). zoom: nearest-neighbour enlargement
    (default: up to 4x, so small outputs stay visible); frames over ``max_side`` px are area-downscaled to it,
    so the strip of a 4K job stays bounded (8 x 6 tiles of 512 px, not about 290 megapixels).
    """
    g = result.guidance
    t_out, _, h, w = result.frames.shape
    zoom = zoom or (max_side / max(h, w) if max(h, w) > max_side else max(1, min(4, 128 // max(1, min(h, w)))))

    def up(x):
        if zoom == 1:
            return x
        return F.interpolate(x[None], scale_factor=zoom, mode="area" if zoom < 1 else "nearest")[0]

    kf, known = known_of(g)
    kf, known = kf[0].transpose(0, 1), known[0]  # (T, 3, h, w), (T,)
    generated = [t for t in range(t_out) if not bool(known[t])]
    cols = _columns(t_out, generated, columns)
    placed = [p for p in g.positions if p is not None]
    rows, labels = [], []

    def row(label, tiles):
        if any(t is not None for t in tiles):  # a row with nothing in the shown columns is left out
            rows.append(tiles)
            labels.append(label)

    row("input", [up(kf[t]) if bool(known[t]) else None for t in cols])
    if len(placed) == 1 and result.inputs.shape[0] == t_out + 1:  # transfer: the image, then the reference
        row("reference", [up(result.inputs[1 + t]) for t in cols])
    if not torch.equal(result.frames, result.warped):
        row("warp", [up(result.warped[t]) for t in cols])
    row("output", [up(result.frames[t]) for t in cols])
    flows = [up(g.flows[0, t, 0]) * zoom if not bool(known[t]) and int(g.sources[t, 0]) >= 0 else None for t in cols]
    peak = max((float(f.norm(dim=0).max()) for f in flows if f is not None), default=0.0)
    if peak > 0:
        row("flow", flows)
    if result.confidence is not None:
        row("confidence", [up(result.confidence[t].expand(3, -1, -1)) if not bool(known[t]) else None for t in cols])
    heads = [f"{t} new" if not bool(known[t]) else str(t) for t in cols]
    save_strip(path, rows, labels=labels, col_labels=heads, max_flow=peak if peak > 0 else None)
