"""Flow and image files: Middlebury ``.flo``, ``.npy`` flows, image files and folders of frames.

Shapes at the edge of the package (conversion happens here, once, never inside a model):

* flow on disk <-> ``(2, H, W)`` float32 tensor, pixels, channel 0 = dx (right), channel 1 = dy (down).
* image on disk <-> ``(3, H, W)`` float32 tensor in [0, 1], RGB. Grey images are expanded to RGB, alpha is
  dropped, 16-bit images are scaled by 65535.
* folder of frames -> ``(T, 3, H, W)``.

Every writer goes through :func:`flow.atomic.atomic_path`: a failed write leaves no file behind.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "f.flo"
>>> f = torch.randn(2, 3, 5)
>>> write_flo(p, f)
>>> torch.equal(read_flo(p), f)
True
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .atomic import atomic_path, check_output_path
from .sniff import damaged_image, describe_file

__all__ = [
    "FLO_MAGIC",
    "IMAGE_SUFFIXES",
    "read_flo",
    "write_flo",
    "read_flow",
    "write_flow",
    "image_size",
    "read_image",
    "write_image",
    "list_frames",
    "read_frames",
]

# Middlebury .flo: the float 202021.25 (bytes "PIEH" little-endian), int32 width, int32 height, then
# H*W*2 float32 little-endian values, row-major with (u, v) interleaved per pixel.
FLO_MAGIC = 202021.25
_FLO_HEADER = 12

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist; check the path")
    if p.is_dir():
        raise ValueError(f"{what} {p} is a folder; expected a file")
    return p


def _as_flow_chw(flow, name: str = "flow") -> torch.Tensor:
    """Accept (2, H, W) or (1, 2, H, W) tensor/array and return a contiguous float32 (2, H, W) CPU tensor."""
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(flow)
    if not isinstance(flow, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor of shape (2, H, W) or (1, 2, H, W), got {type(flow).__name__}")
    if flow.ndim == 4 and flow.shape[0] == 1:
        flow = flow[0]
    if flow.ndim != 3 or flow.shape[0] != 2:
        hint = "; write one file per batch element" if flow.ndim == 4 else ""
        raise ValueError(
            f"{name}: expected shape (2, H, W) or (1, 2, H, W) (channel 0 = dx, channel 1 = dy), "
            f"got {tuple(flow.shape)}{hint}"
        )
    if not flow.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point flow in pixels, got dtype {flow.dtype}")
    return flow.detach().to("cpu", torch.float32).contiguous()


# --------------------------------------------------------------------------------------------- flows


def read_flo(path: str | os.PathLike) -> torch.Tensor:
    """Read a Middlebury ``.flo`` file.

    Returns:
        ``(2, H, W)`` float32, pixels, channel 0 = dx (right), channel 1 = dy (down).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: wrong magic number, implausible size, or truncated data (the message names expected
            and actual values).
    """
    p = _existing_file(path, ".flo file")
    data = p.read_bytes()
    if len(data) < _FLO_HEADER:
        raise ValueError(
            f"{p}: not a .flo file: expected at least a {_FLO_HEADER}-byte header, got {len(data)} bytes"
        )
    magic = np.frombuffer(data, "<f4", count=1, offset=0)[0]
    if magic != np.float32(FLO_MAGIC):
        raise ValueError(
            f"{p}: not a Middlebury .flo file: expected magic number {FLO_MAGIC} ('PIEH'), got {float(magic)!r} "
            f"(bytes {data[:4]!r}); for .npy flows use read_flow"
        )
    w, h = (int(v) for v in np.frombuffer(data, "<i4", count=2, offset=4))
    if w <= 0 or h <= 0 or w * h > 1 << 30:
        raise ValueError(f"{p}: implausible .flo size: expected positive width x height, got {w} x {h}")
    expected = _FLO_HEADER + 8 * w * h
    if len(data) != expected:
        raise ValueError(
            f"{p}: truncated or padded .flo data: expected {expected} bytes for {w} x {h}, got {len(data)}; "
            "the file was probably cut off while being written, regenerate it"
        )
    arr = np.frombuffer(data, "<f4", count=2 * w * h, offset=_FLO_HEADER).reshape(h, w, 2)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def write_flo(path: str | os.PathLike, flow) -> None:
    """Write ``flow`` as a Middlebury ``.flo`` file, atomically.

    Args:
        path: output path (its folder must exist).
        flow: ``(2, H, W)`` or ``(1, 2, H, W)`` float tensor or array, pixels; stored as float32 (round trips
            bit-exactly for float32 input).
    """
    f = _as_flow_chw(flow)
    h, w = f.shape[-2:]
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
    body = f.numpy().transpose(1, 2, 0).astype("<f4", copy=False).tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + body)


def read_flow(path: str | os.PathLike) -> torch.Tensor:
    """Read a flow from ``.flo`` or ``.npy`` (array of shape (2, H, W) or (H, W, 2)); returns ``(2, H, W)`` float32."""
    p = _existing_file(path, "flow file")
    suffix = p.suffix.lower()
    if suffix == ".flo":
        return read_flo(p)
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{p}: not a readable .npy array ({e}); expected a (2, H, W) float array") from e
        if arr.ndim == 3 and arr.shape[0] != 2 and arr.shape[-1] == 2:  # (H, W, 2) as OpenCV and numpy code write
            arr = arr.transpose(2, 0, 1)
        if arr.ndim != 3 or arr.shape[0] != 2:
            raise ValueError(f"{p}: expected a flow array of shape (2, H, W) or (H, W, 2), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{p}: expected a floating-point flow array, got dtype {arr.dtype}")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    raise ValueError(f"{p}: unknown flow file type {suffix!r}; expected .flo or .npy")


def write_flow(path: str | os.PathLike, flow) -> None:
    """Write ``flow`` ``(2, H, W)`` or ``(1, 2, H, W)`` to ``.flo`` or ``.npy`` (chosen by suffix), atomically."""
    suffix = Path(path).suffix.lower()
    if suffix == ".flo":
        write_flo(path, flow)
    elif suffix == ".npy":
        f = _as_flow_chw(flow)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # a file handle: np.save would append .npy to the temp name
                np.save(fh, f.numpy(), allow_pickle=False)
    else:
        raise ValueError(f"{path}: unknown flow file type {suffix!r}; expected .flo or .npy")


# -------------------------------------------------------------------------------------------- images


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding its pixels (Pillow reads the
    header lazily), so a huge frame can be refused before it costs memory.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a folder, an empty file, or not an image Pillow knows (the message says what it is).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.png"
    >>> write_image(p, torch.zeros(3, 5, 7))
    >>> image_size(p)
    (7, 5)
    """
    from PIL import Image, UnidentifiedImageError

    p = _existing_file(path, "image")
    buf = np.fromfile(p, dtype=np.uint8)  # the file's bytes, not its pixels: checked as read_image checks them
    if not buf.size:
        raise ValueError(f"image {p}: the file is empty (0 bytes); expected an image ({', '.join(IMAGE_SUFFIXES)})")
    damage = damaged_image(buf)
    if damage:
        raise ValueError(f"image {p}: expected a whole image, got {damage}; copy or export the file again")
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is what is asked; the caller bounds it (no decompression-bomb warning)
    try:
        with Image.open(io.BytesIO(buf.tobytes())) as im:
            return int(im.size[0]), int(im.size[1])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ValueError(f"image {p}: expected an image file ({', '.join(IMAGE_SUFFIXES)}), got "
                         f"{describe_file(buf[:64].tobytes(), buf.size)} that could not be decoded; pass an image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def read_image(path: str | os.PathLike, *, notify: Callable[[str], None] | None = None) -> torch.Tensor:
    """Read an image file as ``(3, H, W)`` float32 RGB in [0, 1].

    8-bit images are divided by 255, 16-bit by 65535; grey is expanded to RGB; alpha is dropped. ``notify``
    (e.g. ``print``) is told, in one line each, when alpha is dropped or a 16-bit image is converted.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a folder, an empty or truncated file, or not an image (the message says what it is).
    """
    import cv2  # imported here: ``import flow`` stays light

    p = _existing_file(path, "image")
    # imdecode from bytes instead of imread: works with any path (non-ASCII too) and never returns a
    # silent None for a missing file.
    buf = np.fromfile(p, dtype=np.uint8)
    head = buf[:64].tobytes()
    if not buf.size:
        raise ValueError(f"image {p}: the file is empty (0 bytes); expected an image ({', '.join(IMAGE_SUFFIXES)})")
    damage = damaged_image(buf)
    if damage:
        raise ValueError(f"image {p}: expected a whole image, got {damage}; copy or export the file again")
    from cv2.utils import logging as cv_log

    level = cv_log.getLogLevel()
    cv_log.setLogLevel(cv_log.LOG_LEVEL_ERROR)  # a failed decode is reported below in one line, not also as a warning
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    finally:
        cv_log.setLogLevel(level)
    if img is None:
        raise ValueError(
            f"image {p}: expected an image file ({', '.join(IMAGE_SUFFIXES)}), got {describe_file(head, buf.size)} "
            "that could not be decoded; pass an image"
        )
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    if c == 1:
        img = np.repeat(img, 3, axis=2)
    elif c == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    elif c == 4:
        img = img[:, :, 2::-1]  # BGRA -> RGB, alpha dropped
        if notify is not None:
            notify(f"note: {p.name} has an alpha channel; it is dropped (frames are used as RGB, outputs have no alpha)")
    else:
        raise ValueError(f"{p}: expected 1, 3 or 4 channels, got {c}")
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
        if notify is not None:
            notify(f"note: {p.name} is a 16-bit image; it is read at full precision as float in [0, 1] "
                   "(image outputs are 8-bit)")
    elif np.issubdtype(img.dtype, np.floating):
        scale = 1.0  # e.g. float TIFF/EXR: assumed already in [0, 1]
    else:
        raise ValueError(f"{p}: unsupported pixel type {img.dtype}; expected 8- or 16-bit")
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32))
    return t / scale if scale != 1.0 else t


def _to_uint8_hwc(img, name: str = "img", bits: int = 8) -> np.ndarray:
    if isinstance(img, np.ndarray):
        img = torch.from_numpy(img)
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"{name}: expected a (3, H, W) tensor, got {type(img).__name__}")
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 3 or img.shape[0] not in (1, 3, 4):
        raise ValueError(f"{name}: expected shape (3, H, W) (or 1/4 channels), got {tuple(img.shape)}")
    img = img.detach().cpu()
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    elif img.shape[0] == 4:
        img = img[:3]
    if img.dtype == torch.uint8:
        arr = img.numpy()
        if bits == 16:
            arr = arr.astype(np.uint16) * 257
    elif img.is_floating_point():
        if not bool(torch.isfinite(img).all()):
            raise ValueError(f"{name}: expected finite values in [0, 1], got NaN/inf")
        maxv = 65535.0 if bits == 16 else 255.0
        # round-half-up of the clamped value: exact inverse of read_image's /255 for 8-bit data.
        arr = (img.float().clamp(0, 1) * maxv + 0.5).floor().numpy().astype(np.uint16 if bits == 16 else np.uint8)
    else:
        raise TypeError(f"{name}: expected float in [0, 1] or uint8, got dtype {img.dtype}")
    return np.ascontiguousarray(arr.transpose(1, 2, 0))


def write_image(path: str | os.PathLike, img, *, bits: int = 8) -> None:
    """Write ``img`` ``(3, H, W)`` float in [0, 1] (or uint8) to an image file, atomically.

    The format follows the suffix (.png, .jpg, .bmp, .tif, .webp). ``bits=16`` writes 16-bit PNG/TIFF.
    Values outside [0, 1] are clipped.
    """
    import cv2

    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: unknown image type {suffix!r}; expected one of {IMAGE_SUFFIXES}")
    if bits not in (8, 16):
        raise ValueError(f"bits: expected 8 or 16, got {bits}")
    if bits == 16 and suffix not in (".png", ".tif", ".tiff"):
        raise ValueError(f"{path}: 16-bit output needs .png or .tif, got {suffix!r}")
    check_output_path(path)
    arr = _to_uint8_hwc(img, bits=bits)[:, :, ::-1]  # RGB -> BGR for OpenCV
    ok, enc = cv2.imencode(suffix, np.ascontiguousarray(arr))
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode a {arr.shape} image as {suffix}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(enc.tobytes())


# -------------------------------------------------------------------------------------------- frames


def _natural_key(p: Path):
    # frame_2 before frame_10: compare digit runs as numbers.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """Image files in ``folder`` (non-recursive), in natural order (frame_2 before frame_10)."""
    d = Path(folder)
    if not d.exists():
        raise FileNotFoundError(f"frame folder {d} does not exist; check the path")
    if not d.is_dir():
        raise ValueError(f"{d} is not a folder; expected a folder of frames")
    files = sorted((p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise ValueError(f"frame folder {d} holds no image files; expected files ending in {IMAGE_SUFFIXES}")
    return files


def read_frames(frames: str | os.PathLike | Sequence[str | os.PathLike] | Iterable) -> torch.Tensor:
    """Read a folder of frames (natural order) or a list of image paths (given order).

    Returns:
        ``(T, 3, H, W)`` float32 in [0, 1].

    Raises:
        ValueError: when the frames differ in size (the message names the first offending file).
    """
    if isinstance(frames, (str, os.PathLike)):
        paths = list_frames(frames)
    else:
        paths = [Path(p) for p in frames]
        if not paths:
            raise ValueError("read_frames: expected at least one image path, got an empty list")
    out = []
    for p in paths:
        img = read_image(p)
        if out and img.shape != out[0].shape:
            raise ValueError(
                f"{p}: frame size {tuple(img.shape[-2:])} differs from {paths[0]} {tuple(out[0].shape[-2:])}; "
                "all frames of a clip must have the same height x width (resize them first)"
            )
        out.append(img)
    return torch.stack(out)
