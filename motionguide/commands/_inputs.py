"""What an input file or folder *is*, checked from its first bytes before a decoder sees it.

A decoder given the wrong kind of file says something true of itself but wrong for the user: FFmpeg reads a
PNG named ``.mp4`` as a video of one frame ("needs at least 2 frames"), OpenCV fails on a video named
``.png`` ("could not be decoded", of a video that decodes), a pipeline loader calls a PNG "the folder". These
checks name the option, what the file is, and what to pass instead. They read a few bytes only (no torch,
no decoder), so they run with the argument checks, before any work.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["what_is", "check_image_file", "check_video_file", "check_folder", "check_files", "check_raft_weights"]

_IMAGE_WORDS = ("PNG image", "JPEG image")  # still images (an animated GIF is a video to FFmpeg)
_VIDEO_WORDS = ("video",)


def what_is(path: str | Path) -> str:
    """``path`` in words from its first bytes: "a PNG image", "an MP4/MOV video", "a text file", "a folder"."""
    from flow.sniff import describe_file

    p = Path(path)
    if p.is_dir():
        return "a folder"
    with open(p, "rb") as f:
        head = f.read(64)
    return describe_file(head, p.stat().st_size)


def check_image_file(path: str | Path, option: str) -> None:
    """Refuse a video (or a folder) given where an image is expected."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{option} {p} does not exist; check the path")
    what = what_is(p)
    if what == "a folder":
        raise ValueError(f"{option} {p} is a folder; expected an image file (PNG, JPEG)")
    if any(w in what for w in _VIDEO_WORDS) and "WebP" not in what:
        raise ValueError(f"{option} {p} is {what} (named {p.suffix or 'without an ending'}), not an image; pass an "
                         f"image file (PNG, JPEG), e.g. its first frame: ffmpeg -i {p} -frames:v 1 first.png")


def check_video_file(path: str | Path, option: str) -> None:
    """Refuse a still image (or a folder) given where a video is expected: a decoder would read it as a
    video of one frame."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{option} {p} does not exist; check the path")
    what = what_is(p)
    if what == "a folder":
        raise ValueError(f"{option} {p} is a folder; expected a video file (mp4, avi, mkv, mov, ...)")
    if any(w in what for w in _IMAGE_WORDS):
        raise ValueError(f"{option} {p} is {what} (named {p.suffix or 'without an ending'}), not a video; pass a "
                         "video file of at least 2 frames")


def check_folder(path: str | Path, option: str, expected: str) -> None:
    """Refuse a missing path or a file given where a folder is expected, saying what the file is."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{option} {path} does not exist; expected {expected}")
    if not p.is_dir():
        raise ValueError(f"{option} {path} is {what_is(p)}, not a folder; expected {expected}")


def check_files(folder: str | Path, option: str, files: tuple[str, ...], what: str, fix: str) -> None:
    """Refuse a folder without the files its loader requires (checked before the loader's libraries load)."""
    p = Path(folder).expanduser()
    missing = [n for n in files if not (p / n).is_file()]
    if missing:
        raise ValueError(f"{option} {folder} is not {what}: it has no {', '.join(missing)}; {fix}")


def check_raft_weights(method: str, weights: str | None) -> None:
    """--weights of a raft_* method: an existing file, 'default', 'random' or one of torchvision's weight names
    (C_T_V2). A missing file path is refused here; a bare name is looked up in torchvision (which imports
    torch), so only a name that could be one costs that."""
    from ._choices import RAFT_WEIGHT_SUFFIXES

    if weights in (None, "default", "random") or Path(weights).exists():
        return
    fix = "pass an existing .pth/.safetensors path, 'default' (torchvision's cache) or 'random'"
    looks_like_file = "/" in weights or "\\" in weights or Path(weights).suffix.lower() in RAFT_WEIGHT_SUFFIXES
    if not looks_like_file:
        from flow.estimators.raft import is_enum_name

        if is_enum_name(method, weights):
            return
    raise FileNotFoundError(f"--weights {weights}: no such checkpoint file; {fix}")
