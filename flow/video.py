"""Video files, streamed frame by frame through PyAV (FFmpeg's libraries, no subprocess).

* Reading (any container FFmpeg knows: mp4, avi, mkv, mov, ...): :class:`VideoReader` yields one
  ``(3, H, W)`` float32 RGB frame in [0, 1] at a time, so a long video never has to fit in memory;
  :func:`read_video` reads (up to ``max_frames``) into ``(T, 3, H, W)``.
* Writing: :class:`VideoWriter` encodes H.264 (libx264, yuv420p, ``crf``) into an .mp4/.mkv/.mov, one frame
  or a batch at a time, atomically (a temporary name renamed on success; nothing is left on error).
  yuv420p needs even width and height: odd sizes are padded by one replicated row/column (a warning says so).

Frames read from an H.264 file differ from what was written by the codec's loss (crf 18: about 40-45 dB).

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "clip.mp4"
>>> write_video(p, torch.rand(3, 3, 16, 16), fps=12)
>>> frames, fps = read_video(p)
>>> tuple(frames.shape), fps
((3, 3, 16, 16), 12.0)
"""
from __future__ import annotations

import contextlib
import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .atomic import OUTPUT_KINDS, atomic_path

__all__ = ["VideoReader", "VideoWriter", "read_video", "write_video", "VIDEO_SUFFIXES", "WRITE_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")
WRITE_SUFFIXES = OUTPUT_KINDS["video"]  # what VideoWriter encodes (H.264)


def _import_av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a declared dependency
        raise ImportError("video I/O needs PyAV: pip install av") from e
    return av


class VideoReader:
    """Stream the frames of a video file.

    Use as a context manager and iterate::

        with VideoReader("clip.mp4") as vr:
            print(vr.fps, vr.num_frames, vr.height, vr.width)
            for frame in vr:        # frame: (3, H, W) float32 RGB in [0, 1]
                ...

    Attributes:
        fps: average frame rate (frames per second) as a float.
        num_frames: frame count from the container header, or ``None`` when the container does not say.
            (It can be off by a frame or two for some files; iteration is the truth.)
        height, width: frame size in pixels.
        has_audio: the file has an audio stream (it is not decoded).
        pixel_format, has_alpha, bit_depth: the stream's pixel format; frames are converted to 8-bit RGB, so
            alpha and bits beyond 8 are dropped (:meth:`conversion_notice` says so in one line).
        variable_frame_rate: best effort: ``True`` when the nominal and average rates disagree by more
            than 1 % (typical of phone recordings). Frames are yielded as decoded, not resampled.
        frames_read: number of frames yielded so far.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty, corrupt, or has no video stream (also raised mid-stream when a
            frame cannot be decoded).
    """

    def __init__(self, path: str | os.PathLike):
        av = _import_av()
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"video {self.path} does not exist; check the path")
        if self.path.is_dir():
            raise ValueError(f"video {self.path} is a folder; expected a video file (for frame folders use read_frames)")
        if self.path.stat().st_size == 0:
            raise ValueError(f"video {self.path} is empty (0 bytes); expected a video file such as .mp4 or .avi")
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.FFmpegError as e:
            raise ValueError(
                f"video {self.path} could not be opened: {e}; expected a readable video file "
                f"({', '.join(VIDEO_SUFFIXES)}), the file may be corrupt or truncated"
            ) from e
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"video {self.path} has no video stream (audio-only or data file)")
        self._stream = self._container.streams.video[0]
        # Let FFmpeg decode with its own threads: decoding is often the bottleneck of clip flow.
        self._stream.thread_type = "AUTO"
        cc = self._stream.codec_context
        self.width = int(cc.width)
        self.height = int(cc.height)
        if self.width <= 0 or self.height <= 0:
            self._container.close()
            raise ValueError(f"video {self.path}: the video stream reports size {self.width}x{self.height}; corrupt file?")
        avg = self._stream.average_rate
        nominal = self._stream.guessed_rate or self._stream.base_rate
        rate = avg or nominal
        self.fps = float(rate) if rate else float("nan")
        self.variable_frame_rate = bool(
            avg and nominal and abs(float(avg) - float(nominal)) > 0.01 * float(nominal)
        )
        n = int(self._stream.frames or 0)
        if n <= 0 and self._stream.duration and self._stream.time_base and rate:
            n = int(round(float(self._stream.duration * self._stream.time_base) * float(rate)))
        self.num_frames = n if n > 0 else None
        self.has_audio = bool(self._container.streams.audio)
        fmt = cc.format
        comps = list(fmt.components) if fmt is not None else []
        self.pixel_format = cc.pix_fmt or "unknown"
        self.has_alpha = any(c.is_alpha for c in comps)
        self.bit_depth = max((c.bits for c in comps), default=8)
        self.frames_read = 0
        self._closed = False

    def conversion_notice(self) -> str | None:
        """One line when decoding to 8-bit RGB drops something (alpha, bits beyond 8), else None."""
        lost = (["its alpha channel"] if self.has_alpha else []) + (
            [f"{self.bit_depth}-bit precision (read as 8-bit)"] if self.bit_depth > 8 else [])
        if not lost:
            return None
        return f"note: {self.path.name} ({self.pixel_format}) loses {' and '.join(lost)}: frames are read as 8-bit RGB"

    def __repr__(self) -> str:
        return (
            f"VideoReader({str(self.path)!r}, {self.width}x{self.height}, fps={self.fps:.3f}, "
            f"num_frames={self.num_frames}, has_audio={self.has_audio})"
        )

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError(f"video {self.path}: the container does not state its frame count; iterate instead")
        return self.num_frames

    def close(self) -> None:
        if not self._closed:
            self._container.close()
            self._closed = True

    def __iter__(self) -> Iterator[torch.Tensor]:
        av = _import_av()
        if self._closed:
            raise ValueError(f"video {self.path} is closed")
        try:
            for frame in self._container.decode(self._stream):
                arr = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8; converts any pixel format
                self.frames_read += 1
                yield torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
        except av.FFmpegError as e:
            raise ValueError(
                f"video {self.path}: decoding failed after {self.frames_read} frames: {e}; the file may be corrupt"
            ) from e


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """Read a whole video (or its first ``max_frames`` frames).

    Returns:
        ``(frames, fps)``: frames ``(T, 3, H, W)`` float32 RGB in [0, 1]; fps a float.

    Raises:
        ValueError: when no frame can be decoded (empty or corrupt file).
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames: expected a positive integer or None, got {max_frames}")
    frames = []
    with VideoReader(path) as vr:
        for f in vr:
            frames.append(f)
            if max_frames is not None and len(frames) >= max_frames:
                break
        fps = vr.fps
    if not frames:
        raise ValueError(f"video {path}: no frame could be decoded; the file is empty or corrupt")
    return torch.stack(frames), fps


def _frames_to_uint8(frames, name: str = "frame") -> np.ndarray:
    """(3, H, W) or (N, 3, H, W), float [0, 1] or uint8 -> (N, H, W, 3) uint8 numpy."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor of shape (3, H, W) or (N, 3, H, W), got {type(frames).__name__}")
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected shape (3, H, W) or (N, 3, H, W), got {tuple(frames.shape)}")
    frames = frames.detach().cpu()
    if frames.shape[1] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    elif frames.shape[1] == 4:
        frames = frames[:, :3]
    if frames.dtype == torch.uint8:
        u8 = frames
    elif frames.is_floating_point():
        if not bool(torch.isfinite(frames).all()):
            raise ValueError(f"{name}: expected finite values in [0, 1], got NaN/inf")
        u8 = (frames.float().clamp(0, 1) * 255.0 + 0.5).floor().to(torch.uint8)
    else:
        raise TypeError(f"{name}: expected float in [0, 1] or uint8, got dtype {frames.dtype}")
    return np.ascontiguousarray(u8.permute(0, 2, 3, 1).numpy())


class VideoWriter:
    """Encode frames to an H.264 video file, atomically.

    ::

        with VideoWriter("out.mp4", fps=24) as vw:
            vw.write(frame)      # (3, H, W) or (N, 3, H, W), float in [0, 1] or uint8

    Args:
        path: output file (.mp4, .mkv, .mov, .m4v); its folder must exist.
        fps: frame rate (float; 29.97 is stored as 30000/1001).
        crf: x264 constant rate factor, 0 (lossless luma) .. 51; 18 is visually near-lossless.
        preset: x264 speed preset ("ultrafast" .. "veryslow").

    The file appears under ``path`` only when the ``with`` block (or :meth:`close`) completes; on an
    exception the temporary file is deleted. All frames must share one size; odd sizes are padded to
    even (yuv420p needs it) by replicating the last row/column, with a warning.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, crf: int = 18, preset: str = "medium"):
        self.path = Path(path)
        if self.path.suffix.lower() not in WRITE_SUFFIXES:
            raise ValueError(
                f"{self.path}: unsupported output type {self.path.suffix!r}; expected one of {WRITE_SUFFIXES}"
            )
        try:
            fps_f = float(fps)
        except (TypeError, ValueError):
            raise TypeError(f"fps: expected a positive number, got {fps!r}") from None
        if not np.isfinite(fps_f) or fps_f <= 0:
            raise ValueError(f"fps: expected a positive finite number, got {fps!r}")
        if not 0 <= int(crf) <= 51:
            raise ValueError(f"crf: expected 0..51, got {crf}")
        self.fps = fps_f
        # limit_denominator(1001) keeps NTSC rates exact (29.97 -> 30000/1001) without huge time bases.
        self._rate = Fraction(fps_f).limit_denominator(1001)
        self.crf = int(crf)
        self.preset = preset
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (H, W) of the input frames
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        self._container = None
        self._stream = None
        self._closed = False

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort(exc_type, exc, tb)

    def _open(self, h: int, w: int) -> None:
        av = _import_av()
        self.size = (h, w)
        self._pad = (h % 2, w % 2)
        if any(self._pad):
            warnings.warn(
                f"{self.path}: H.264 yuv420p needs even sizes; padding {h}x{w} to {h + h % 2}x{w + w % 2} "
                "by replicating the last row/column (crop frames to even sizes to avoid this)",
                stacklevel=3,
            )
        self._container = av.open(str(self._tmp), mode="w")
        s = self._container.add_stream("libx264", rate=self._rate)
        s.width, s.height = w + w % 2, h + h % 2
        s.pix_fmt = "yuv420p"
        s.options = {"crf": str(self.crf), "preset": self.preset}
        s.codec_context.time_base = 1 / self._rate
        self._stream = s

    def write(self, frames) -> None:
        """Append ``frames``: ``(3, H, W)`` or ``(N, 3, H, W)``, float in [0, 1] (clipped) or uint8."""
        av = _import_av()
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        arr = _frames_to_uint8(frames)
        n, h, w, _ = arr.shape
        if self._container is None:
            self._open(h, w)
        elif (h, w) != self.size:
            raise ValueError(
                f"{self.path}: frame size {h}x{w} differs from the first frame's {self.size[0]}x{self.size[1]}; "
                "all frames of a video must have the same size"
            )
        if any(self._pad):
            arr = np.pad(arr, ((0, 0), (0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        for i in range(n):
            vf = av.VideoFrame.from_ndarray(arr[i], format="rgb24")
            vf.pts = self.frames_written
            vf.time_base = 1 / self._rate
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and move the file into place. Raises if no frame was written."""
        if self._closed:
            return
        try:
            if self._container is None:
                raise ValueError(f"{self.path}: no frames were written; nothing to save")
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except BaseException as e:
            self._abort(type(e), e, e.__traceback__)
            raise
        self._closed = True
        self._stack.close()  # atomic rename

    def _abort(self, exc_type, exc, tb) -> None:
        if self._closed:
            return
        self._closed = True
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        # Hand the exception to atomic_path so it deletes the temporary file instead of renaming it.
        with contextlib.suppress(BaseException):
            self._stack.__exit__(exc_type, exc, tb)

    def __del__(self):  # a writer dropped without close(): do not leave the temporary file behind
        if not getattr(self, "_closed", True):
            self._abort(RuntimeError, RuntimeError("VideoWriter was not closed"), None)


def write_video(path: str | os.PathLike, frames, fps: float, *, crf: int = 18) -> None:
    """Write ``frames`` ``(T, 3, H, W)`` (float [0, 1] or uint8) as an H.264 video at ``fps``, atomically."""
    with VideoWriter(path, fps, crf=crf) as vw:
        vw.write(frames)
