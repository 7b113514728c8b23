"""Video files, streamed frame by frame through PyAV (FFmpeg's libraries, no subprocess).

* Reading (any container FFmpeg knows: mp4, avi, mkv, mov, ...): :class:`VideoReader` yields one
  ``(3, H, W)`` float32 RGB frame in [0, 1] at a time, so a long video never has to fit in memory;
  :func:`read_video` reads (up to ``max_frames``) into ``(T, 3, H, W)``. Video is read as it is shown: a
  rotation in the stream's display matrix (phones record portrait video as rotated landscape) turns the
  frames upright on read, as FFmpeg and players do, with a notice (:meth:`VideoReader.notices`).
* Writing: :class:`VideoWriter` encodes H.264 (libx264, ``crf``) into an .mp4/.mkv/.mov, one frame or a
  batch at a time, atomically (a temporary name renamed on success; nothing is left on error). The output
  has exactly the frames' size: even sizes are yuv420p (what every player plays); H.264 cannot store an odd
  width or height in 4:2:0, so odd sizes are yuv444p (High 4:4:4), with a notice (:attr:`VideoWriter.notice`).
* Constant frame rate: commands that place frames in time refuse a variable-frame-rate input with one
  message (:meth:`VideoReader.require_constant_rate`), naming the ffmpeg command that converts it.

Frames read from an H.264 file differ from what was written by the codec's loss (crf 18: about 40-45 dB).
The encoded file is not bit-reproducible: the libx264 of PyAV's wheel gave different bytes and decoded
frames (up to a few 8-bit levels) for the same frames in repeated runs, with one thread too; compare the
frames a command makes (its library call), or decoded videos with a tolerance, not files by their hash.

>>> import tempfile, pathlib, torch
>>> p = pathlib.Path(tempfile.mkdtemp()) / "clip.mp4"
>>> write_video(p, torch.rand(3, 3, 16, 16), fps=12)
>>> frames, fps = read_video(p)
>>> tuple(frames.shape), fps
((3, 3, 16, 16), 12.0)
"""
from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .atomic import OUTPUT_KINDS, atomic_path

if TYPE_CHECKING:
    import torch

# torch is imported where frames become tensors: opening a video and reading its header (the commands' checks
# before any work, motionguide.memory) stays free of it

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
        height, width: frame size in pixels, as shown (after the rotation).
        rotation: degrees (counter-clockwise, a multiple of 90) the stored frames are turned on read, from the
            stream's display matrix (0 when it has none); ``coded_height``, ``coded_width``: the stored size.
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
        self.coded_width = int(cc.width)
        self.coded_height = int(cc.height)
        if self.coded_width <= 0 or self.coded_height <= 0:
            self._container.close()
            raise ValueError(f"video {self.path}: the video stream reports size {self.coded_width}x{self.coded_height}; "
                             "corrupt file?")
        self.frames_read = 0
        self._closed = False
        # The display matrix is frame side data in PyAV, so the first frame is decoded here (and yielded first).
        self._decoder = self._container.decode(self._stream)
        self._first = self._next_frame()
        angle = float(getattr(self._first, "rotation", 0) or 0) if self._first is not None else 0.0
        turns = round(angle / 90.0)
        self._odd_angle = angle if abs(angle - 90.0 * turns) > 0.5 else None
        self._turns = 0 if self._odd_angle is not None else turns % 4
        self.rotation = 90 * self._turns
        swap = self._turns % 2 == 1
        self.width = self.coded_height if swap else self.coded_width
        self.height = self.coded_width if swap else self.coded_height
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
        self._closed = False

    def _next_frame(self):
        av = _import_av()
        try:
            return next(self._decoder, None)
        except av.FFmpegError as e:
            self.close()
            raise ValueError(
                f"video {self.path}: decoding failed after {self.frames_read} frames: {e}; the file may be corrupt"
            ) from e

    def notices(self) -> list[str]:
        """One line for each way the frames differ from what is stored (turned upright, read as 8-bit RGB),
        for the caller to print with its own prefix."""
        out = []
        if self.rotation:
            out.append(f"{self.path.name} is stored {self.coded_width}x{self.coded_height} with a display "
                       f"rotation of {self.rotation} degrees; its frames are turned upright on read "
                       f"({self.width}x{self.height} WxH), as players show it")
        elif self._odd_angle is not None:
            out.append(f"{self.path.name} asks for a display rotation of {self._odd_angle:g} degrees, not a "
                       "multiple of 90; its frames are read as stored")
        conv = self.conversion_notice()
        return out + ([conv.removeprefix("note: ")] if conv else [])

    def require_constant_rate(self, command: str) -> None:
        """Raise ValueError when the video has a variable frame rate: ``command`` places frames in time from
        the rate, so such input is refused (the one rule of every command that reads video), with the ffmpeg
        command that converts it."""
        if self.variable_frame_rate:
            raise ValueError(
                f"{self.path} has a variable frame rate (average {self.fps:.3f} fps differs from the nominal rate); "
                f"{command} needs constant frame rate input. Convert it first, e.g. "
                f"`ffmpeg -i {self.path} -fps_mode cfr -r {self.fps:.3f} cfr.mp4`, then {command} cfr.mp4"
            )

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
        import torch

        if self._closed:
            raise ValueError(f"video {self.path} is closed")
        frame, self._first = self._first, None
        if frame is None and self.frames_read:
            frame = self._next_frame()
        while frame is not None:
            arr = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8; converts any pixel format
            if self._turns:  # counter-clockwise, as the display matrix says (FFmpeg's autorotate turns the same way)
                arr = np.ascontiguousarray(np.rot90(arr, self._turns))
            self.frames_read += 1
            yield torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
            frame = self._next_frame()


def read_video(path: str | os.PathLike, max_frames: int | None = None, *, notify=None,
               command: str | None = None) -> tuple[torch.Tensor, float]:
    """Read a whole video (or its first ``max_frames`` frames), turned upright (:class:`VideoReader`).

    ``notify`` (e.g. ``print``) is told :meth:`VideoReader.notices`; with ``command`` a variable-frame-rate
    video is refused (:meth:`VideoReader.require_constant_rate`) before a frame is converted.

    Returns:
        ``(frames, fps)``: frames ``(T, 3, H, W)`` float32 RGB in [0, 1]; fps a float.

    Raises:
        ValueError: when no frame can be decoded (empty or corrupt file).
    """
    import torch

    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames: expected a positive integer or None, got {max_frames}")
    frames = []
    with VideoReader(path) as vr:
        if command is not None:
            vr.require_constant_rate(command)
        for line in vr.notices() if notify is not None else ():
            notify(line)
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
    import torch

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
    exception the temporary file is deleted. All frames must share one size, and the video has exactly that
    size: yuv420p (4:2:0, what every player plays) when width and height are even; H.264 stores 4:2:0 only at
    even sizes, so an odd size is encoded yuv444p (High 4:4:4, which ffmpeg, VLC and mpv play; some browsers
    do not) and :attr:`notice` says so in one line (also passed to ``notify`` when given).
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, crf: int = 18, preset: str = "medium",
                 notify=None):
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
        self.notice: str | None = None
        self._notify = notify
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
        odd = h % 2 or w % 2
        if odd:
            self.notice = (f"{self.path.name} is {w}x{h} (WxH), an odd size, so it is encoded yuv444p (H.264 "
                           "stores 4:2:0 only at even sizes): ffmpeg, VLC and mpv play it, some browsers do not; crop "
                           "to an even size for those")
            if self._notify is not None:
                self._notify(self.notice)
        self._container = av.open(str(self._tmp), mode="w")
        s = self._container.add_stream("libx264", rate=self._rate)
        s.width, s.height = w, h
        s.pix_fmt = "yuv444p" if odd else "yuv420p"
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


def write_video(path: str | os.PathLike, frames, fps: float, *, crf: int = 18, notify=None) -> None:
    """Write ``frames`` ``(T, 3, H, W)`` (float [0, 1] or uint8) as an H.264 video at ``fps``, atomically, at
    exactly their size (``notify``: told :attr:`VideoWriter.notice`)."""
    with VideoWriter(path, fps, crf=crf, notify=notify) as vw:
        vw.write(frames)
