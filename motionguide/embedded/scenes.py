"""Scenes with known motion, built from real photographs that ship inside scikit-image.

Nothing is downloaded: the photographs are the PNG/JPEG files bundled in ``skimage/data``. A scene is a
stack of layers, back to front:

* the **background** (a photograph) seen through a moving camera: pan with acceleration, zoom, rotation;
* **one to three foreground objects**, each a crop of *another* photograph cut out by a soft mask (a random
  smooth blob), moving with its own velocity, acceleration, rotation and scale change.

Every layer maps screen pixels to its own texture by an affine map that depends on time ``t`` (in frames,
any real number), so frames can be rendered at fractional times (ground truth for slow motion) and the
**exact backward flow** between any two times follows in closed form: pixel ``x`` of frame ``a`` shows the
topmost layer ``L`` there; its texture point ``q = L_a^{-1}(x)`` sits at ``L_b(q)`` in frame ``b``; the flow
is ``L_b(q) - x`` (the convention of :mod:`flow.warp`: ``backward_warp(frame_b, flow_ab) ~= frame_a``).
The occlusion mask marks pixels whose point is covered by another layer in frame ``b``; the out-of-frame
mask marks points that leave the picture.

Frames are anti-aliased by rendering at ``supersample`` times the resolution and averaging, so warping
one rendered frame with the exact flow reproduces another up to interpolation error.

Splits: ``"train"`` and ``"heldout"`` use disjoint photographs, and their seeds feed separate random
streams (``numpy.random.default_rng([seed, split_id])``), so no held-out clip is ever seen in training.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TRAIN_PHOTOS", "HELDOUT_PHOTOS", "SPLITS", "load_photo", "Layer", "Scene", "sample_scene"]

# Photographs (not drawings or synthetic images) bundled with scikit-image. Held-out photographs are
# never used by the training split, neither as background nor as object texture.
TRAIN_PHOTOS = (
    "astronaut.png", "coffee.png", "rocket.jpg", "camera.png", "coins.png", "hubble_deep_field.jpg",
    "brick.png", "grass.png", "moon.png", "page.png", "ihc.png", "text.png", "motorcycle_right.png",
)
HELDOUT_PHOTOS = ("chelsea.png", "motorcycle_left.png", "retina.jpg", "gravel.png")
_SPLIT_ID = {"train": 0, "heldout": 1}
#: the data splits: disjoint photographs and random streams
SPLITS = tuple(_SPLIT_ID)


@functools.lru_cache(maxsize=32)
def load_photo(name: str) -> np.ndarray:
    """A bundled scikit-image photograph as float32 ``(H, W, 3)`` in [0, 1] (grey images become RGB).

    Raises FileNotFoundError naming the folder searched when the file is not in the installed package.
    """
    import skimage.data
    import skimage.io

    path = os.path.join(skimage.data.data_dir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"photograph {name!r} not found in {skimage.data.data_dir}; it ships with scikit-image>=0.22 "
            f"(pip install 'scikit-image>=0.22')"
        )
    img = skimage.io.imread(path)
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        img = img.astype(np.float32) / 65535.0
    elif img.dtype == bool:
        img = img.astype(np.float32)
    else:
        img = img.astype(np.float32)
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    # INTER_AREA when shrinking: the photographs are much finer than the clips, and area averaging is
    # the anti-aliasing that keeps rendered frames consistent with warped ones.
    interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (max(w, 2), max(h, 2)), interpolation=interp)


@dataclass
class Layer:
    """One layer: a texture and an affine motion from texture coordinates to screen coordinates.

    Screen position of texture point ``q`` (in output-pixel units, relative to the anchor) at time ``t``:
    ``x = o(t) + s(t) R(theta(t)) q`` with ``o(t) = o0 + v t + a t^2 / 2``, ``theta(t) = theta0 + omega t``,
    ``s(t) = s0 * exp(zoom t)``.

    texture: ``(3, Ht, Wt)`` float in [0, 1], sampled at ``supersample`` texels per output pixel around
        its centre (the anchor).
    radius: ``None`` for the background (opaque everywhere), else the blob's mean radius in output pixels.
    shape: Fourier coefficients of the blob's radius over angle (smooth random outline).
    """

    texture: torch.Tensor
    o0: tuple[float, float]
    v: tuple[float, float]
    a: tuple[float, float]
    theta0: float = 0.0
    omega: float = 0.0
    s0: float = 1.0
    zoom: float = 0.0
    radius: float | None = None
    shape: tuple[tuple[float, float], ...] = ()
    softness: float = 0.6  # edge width of the soft mask, output pixels
    supersample: int = 2

    def params(self, t: float) -> tuple[float, float, float, float]:
        ox = self.o0[0] + self.v[0] * t + 0.5 * self.a[0] * t * t
        oy = self.o0[1] + self.v[1] * t + 0.5 * self.a[1] * t * t
        return ox, oy, self.theta0 + self.omega * t, self.s0 * math.exp(self.zoom * t)

    def to_local(self, xy: torch.Tensor, t: float) -> torch.Tensor:
        """Screen ``(..., 2)`` -> texture coordinates ``(..., 2)`` (output-pixel units, anchor at 0)."""
        ox, oy, th, s = self.params(t)
        dx, dy = xy[..., 0] - ox, xy[..., 1] - oy
        c, si = math.cos(th), math.sin(th)
        # inverse rotation then inverse scale
        return torch.stack(((c * dx + si * dy) / s, (-si * dx + c * dy) / s), dim=-1)

    def to_screen(self, q: torch.Tensor, t: float) -> torch.Tensor:
        """Texture ``(..., 2)`` -> screen coordinates ``(..., 2)``."""
        ox, oy, th, s = self.params(t)
        c, si = math.cos(th), math.sin(th)
        return torch.stack((ox + s * (c * q[..., 0] - si * q[..., 1]), oy + s * (si * q[..., 0] + c * q[..., 1])), -1)

    def alpha(self, q: torch.Tensor) -> torch.Tensor:
        """Soft coverage ``(...)`` in [0, 1] at texture points ``q (..., 2)``; ones for the background."""
        if self.radius is None:
            return torch.ones(q.shape[:-1], dtype=q.dtype)
        r = torch.linalg.vector_norm(q, dim=-1)
        ang = torch.atan2(q[..., 1], q[..., 0])
        rad = torch.full_like(r, self.radius)
        for k, (ca, sa) in enumerate(self.shape, start=2):
            rad = rad + self.radius * (ca * torch.cos(k * ang) + sa * torch.sin(k * ang))
        return torch.sigmoid((rad - r) / (self.softness / 4.0))

    def sample(self, q: torch.Tensor) -> torch.Tensor:
        """Texture colours ``(3, ...)`` at texture points ``q (h, w, 2)``."""
        _, th, tw = self.texture.shape
        px = q[..., 0] * self.supersample + (tw - 1) / 2.0
        py = q[..., 1] * self.supersample + (th - 1) / 2.0
        grid = torch.stack((2 * px / (tw - 1) - 1, 2 * py / (th - 1) - 1), -1)[None]
        # reflection: a background slightly smaller than the camera's path mirrors instead of smearing
        return F.grid_sample(self.texture[None], grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0]


@dataclass
class Scene:
    """Layers (index 0 = background, later ones in front) and the output size ``(H, W)``."""

    layers: list[Layer]
    size: tuple[int, int]
    supersample: int = 2
    photos: tuple[str, ...] = field(default_factory=tuple)

    def _grid(self, ss: int) -> torch.Tensor:
        h, w = self.size
        # sub-pixel centres of output pixel i: i + (k + 0.5) / ss - 0.5
        off = (torch.arange(ss, dtype=torch.float32) + 0.5) / ss - 0.5
        ys = (torch.arange(h, dtype=torch.float32)[:, None] + off[None]).reshape(-1)
        xs = (torch.arange(w, dtype=torch.float32)[:, None] + off[None]).reshape(-1)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack((gx, gy), -1)

    def render(self, times: Sequence[float]) -> torch.Tensor:
        """Frames ``(T, 3, H, W)`` float in [0, 1] at the given times (in frames, fractional allowed)."""
        ss = self.supersample
        xy = self._grid(ss)
        out = []
        for t in times:
            img = torch.zeros(3, *xy.shape[:2])
            for layer in self.layers:
                q = layer.to_local(xy, float(t))
                a = layer.alpha(q)
                img = img * (1 - a) + layer.sample(q) * a
            out.append(F.avg_pool2d(img[None], ss)[0] if ss > 1 else img)
        return torch.stack(out).clamp(0, 1)

    def _top_layer(self, xy: torch.Tensor, t: float) -> torch.Tensor:
        """Index ``(...)`` of the front-most layer covering each point (coverage >= 0.5)."""
        top = torch.zeros(xy.shape[:-1], dtype=torch.long)
        for i, layer in enumerate(self.layers[1:], start=1):
            top = torch.where(layer.alpha(layer.to_local(xy, t)) >= 0.5, torch.full_like(top, i), top)
        return top

    def flow(self, t_a: float, t_b: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact backward flow from frame ``t_a`` to frame ``t_b`` and its masks.

        Returns:
            flow: ``(2, H, W)`` float, pixels; ``backward_warp(frame_b, flow) ~= frame_a``.
            occluded: ``(1, H, W)`` float, 1 where the point of frame ``a`` is hidden by another layer in ``b``.
            outside: ``(1, H, W)`` float, 1 where the point lies outside frame ``b``.
        """
        h, w = self.size
        if float(t_a) == float(t_b):  # identity, exactly (the affine round trip would leave ~1e-6)
            z = torch.zeros(1, h, w)
            return torch.zeros(2, h, w), z, z.clone()
        xy = self._grid(1)
        top = self._top_layer(xy, t_a)
        dest = torch.zeros_like(xy)
        for i, layer in enumerate(self.layers):
            sel = top == i
            if sel.any():
                dest[sel] = layer.to_screen(layer.to_local(xy[sel], t_a), t_b)
        flow = (dest - xy).permute(2, 0, 1).contiguous()
        outside = ((dest[..., 0] < 0) | (dest[..., 0] > w - 1) | (dest[..., 1] < 0) | (dest[..., 1] > h - 1))
        occluded = (self._top_layer(dest, t_b) != top) & ~outside
        return flow, occluded[None].float(), outside[None].float()

    def max_speed(self) -> float:
        """Largest screen speed of any anchor at t=0, output pixels per frame (for sanity checks)."""
        return max(math.hypot(*layer.v) for layer in self.layers)


def _blob_shape(rng: np.random.Generator) -> tuple[tuple[float, float], ...]:
    n = int(rng.integers(1, 4))
    return tuple((float(rng.normal(0, 0.12)), float(rng.normal(0, 0.12))) for _ in range(n))


def _crop_texture(photo: np.ndarray, rng: np.random.Generator, out_w: int, out_h: int, src_scale: float) -> torch.Tensor:
    """A crop of ``photo`` covering ``out_w x out_h`` texels at ``src_scale`` photo pixels per texel."""
    ph, pw = photo.shape[:2]
    cw = min(pw, max(4, int(round(out_w * src_scale))))
    ch = min(ph, max(4, int(round(out_h * src_scale))))
    x0 = int(rng.integers(0, pw - cw + 1))
    y0 = int(rng.integers(0, ph - ch + 1))
    crop = _resize(photo[y0:y0 + ch, x0:x0 + cw], out_w, out_h)
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float()


def sample_scene(
    seed: int,
    *,
    split: str = "train",
    size: tuple[int, int] = (32, 32),
    num_frames: int = 8,
    motion_scale: float = 1.0,
    supersample: int = 2,
) -> Scene:
    """Draw a scene (photos, camera and object motion) from ``seed``; deterministic.

    Speeds are drawn for a 32-pixel-wide clip (camera up to ~1.5 px/frame, objects up to ~2.5 px/frame)
    and scaled with the width; ``motion_scale`` multiplies every velocity, acceleration and rate.
    """
    if split not in _SPLIT_ID:
        raise ValueError(f"split must be one of {sorted(_SPLIT_ID)}, got {split!r}")
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least (8, 8), got {size}")
    if not (motion_scale >= 0 and math.isfinite(motion_scale)):
        raise ValueError(f"motion_scale must be a finite number >= 0, got {motion_scale}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _SPLIT_ID[split]])
    photos = TRAIN_PHOTOS if split == "train" else HELDOUT_PHOTOS
    unit = w / 32.0  # speeds are specified for 32 px and scale with the clip
    ms = float(motion_scale)
    ss = int(supersample)
    span = num_frames - 1

    # --- background: the camera sees a crop of ~2-5 photo pixels per output pixel ---------------------
    bg_name = photos[int(rng.integers(len(photos)))]
    bg_photo = load_photo(bg_name)
    ph, pw = bg_photo.shape[:2]
    cam_v = tuple(float(x) for x in rng.uniform(-1.5, 1.5, 2) * unit * ms)
    cam_a = tuple(float(x) for x in rng.uniform(-0.12, 0.12, 2) * unit * ms)
    zoom = float(rng.uniform(-0.04, 0.04) * ms) if rng.random() < 0.5 else 0.0
    omega = float(rng.uniform(-0.035, 0.035) * ms) if rng.random() < 0.5 else 0.0
    # the texture must cover the view over the whole clip: travel + rotation + zoom-out margins
    travel = max(abs(cam_v[0]), abs(cam_v[1])) * span + max(abs(cam_a[0]), abs(cam_a[1])) * span * span / 2
    extent = (max(h, w) * 1.5 + 2 * travel) * math.exp(abs(zoom) * span) + 4
    src_scale = min(float(rng.uniform(1.5, 4.0)), min(ph, pw) / extent)
    bg_tex = _crop_texture(bg_photo, rng, int(extent * ss), int(extent * ss), src_scale / ss)
    layers = [
        Layer(
            texture=bg_tex, o0=((w - 1) / 2.0, (h - 1) / 2.0), v=cam_v, a=cam_a, theta0=0.0, omega=omega,
            s0=1.0, zoom=zoom, supersample=ss,
        )
    ]
    used = [bg_name]
    # --- foreground objects from other photographs -----------------------------------------------------
    n_obj = int(rng.integers(1, 4))
    others = [p for p in photos if p != bg_name]
    for _ in range(n_obj):
        name = others[int(rng.integers(len(others)))]
        used.append(name)
        photo = load_photo(name)
        radius = float(rng.uniform(4.0, 9.0)) * unit
        tex_side = int(math.ceil(radius * 2.8 * ss))
        tex = _crop_texture(photo, rng, tex_side, tex_side, float(rng.uniform(1.0, 3.0)) / ss)
        layers.append(
            Layer(
                texture=tex,
                o0=(float(rng.uniform(0.1, 0.9) * (w - 1)), float(rng.uniform(0.1, 0.9) * (h - 1))),
                v=tuple(float(x) for x in rng.uniform(-2.5, 2.5, 2) * unit * ms),
                a=tuple(float(x) for x in rng.uniform(-0.2, 0.2, 2) * unit * ms),
                theta0=float(rng.uniform(-math.pi, math.pi)),
                omega=float(rng.uniform(-0.06, 0.06) * ms),
                s0=1.0,
                zoom=float(rng.uniform(-0.03, 0.03) * ms),
                radius=radius,
                shape=_blob_shape(rng),
                softness=0.6 * unit,
                supersample=ss,
            )
        )
    return Scene(layers=layers, size=(h, w), supersample=ss, photos=tuple(used))
