"""Video I/O: streaming read, fps/frame count kept on write, odd sizes, atomic output, bad files."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from flow.video import VideoReader, VideoWriter, read_video, write_video


def _clip(t=5, h=32, w=48):
    # Smooth moving gradient: compresses well, so the codec loss is small and checkable.
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([torch.stack([(xs + 0.05 * i) % 1, ys, 0.5 * torch.ones_like(xs)]) for i in range(t)])


def test_write_read_round_trip_keeps_fps_and_count(tmp_path):
    frames = _clip()
    write_video(tmp_path / "c.mp4", frames, fps=29.97)
    with VideoReader(tmp_path / "c.mp4") as vr:
        assert (vr.height, vr.width, vr.num_frames) == (32, 48, 5)
        assert abs(vr.fps - 29.97) < 1e-3 and not vr.has_audio and not vr.variable_frame_rate
        got = list(vr)  # streaming iterator of (3, H, W)
    assert len(got) == 5 and got[0].shape == (3, 32, 48) and got[0].dtype == torch.float32
    back, fps = read_video(tmp_path / "c.mp4")
    assert back.shape == frames.shape and abs(fps - 29.97) < 1e-3
    assert (back - frames).abs().mean() < 0.02  # H.264 crf 18 loss on a smooth clip
    assert read_video(tmp_path / "c.mp4", max_frames=2)[0].shape[0] == 2


def test_writer_batches_uint8_and_odd_size_is_kept_exactly_without_a_warning(tmp_path):
    u8 = (_clip(4, 15, 21) * 255).to(torch.uint8)
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw UserWarning with a source line
        with VideoWriter(tmp_path / "o.mp4", fps=10, notify=notes.append) as vw:
            vw.write(u8[:2])  # a batch
            vw.write(u8[2])  # a single frame
            vw.write(u8[3].float() / 255)  # float and uint8 mix
    back, fps = read_video(tmp_path / "o.mp4")
    assert back.shape == (4, 3, 15, 21) and fps == 10.0  # exactly the frames' size, no padding
    assert (back - u8.float() / 255).abs().mean() < 0.02
    assert len(notes) == 1 and "21x15 (WxH), an odd size" in notes[0] and vw.notice == notes[0]
    with VideoReader(tmp_path / "o.mp4") as vr:
        assert (vr.width, vr.height, vr.pixel_format) == (21, 15, "yuv444p")
    write_video(tmp_path / "even.mp4", _clip(2, 16, 22), fps=10, notify=notes.append)
    with VideoReader(tmp_path / "even.mp4") as vr:  # even sizes stay 4:2:0, with no notice
        assert vr.pixel_format == "yuv420p" and len(notes) == 1


def _rotated(path, frames_u8, degrees: int):
    """Encode (T, H, W, 3) uint8 frames with a display rotation, as a phone stores a portrait video."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.height, s.width = frames_u8.shape[1:3]
        s.pix_fmt = "yuv444p" if s.width % 2 or s.height % 2 else "yuv420p"
        s.set_display_rotation(degrees)
        for f in frames_u8:
            for pk in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pk)
        for pk in s.encode(None):
            c.mux(pk)


@pytest.mark.parametrize("degrees,h,w", [(90, 32, 48), (270, 27, 45), (180, 32, 48)])
def test_rotation_metadata_turns_frames_upright_on_read(tmp_path, degrees, h, w):
    """A portrait phone video is stored landscape with a display rotation: frames come upright (as FFmpeg's
    autorotate and players show them, np.rot90 counter-clockwise by the angle), the size is the shown one,
    and a notice says so; odd sizes too."""
    stored = (_clip(3, h, w) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    _rotated(tmp_path / "phone.mp4", stored, degrees)
    shown = np.rot90(stored, degrees // 90, axes=(1, 2))
    with VideoReader(tmp_path / "phone.mp4") as vr:
        assert vr.rotation == degrees and (vr.height, vr.width) == shown.shape[1:3]
        assert (vr.coded_height, vr.coded_width) == (h, w)
        notes = vr.notices()
        frames = torch.stack(list(vr))
    assert len(notes) == 1 and f"display rotation of {degrees} degrees" in notes[0]
    assert frames.shape == (3, 3, *shown.shape[1:3])
    upright = torch.from_numpy(shown.copy()).permute(0, 3, 1, 2).float() / 255
    assert (frames - upright).abs().mean() < 0.02
    told = []
    back, _ = read_video(tmp_path / "phone.mp4", notify=told.append)
    assert back.shape == frames.shape and told == notes
    # turned upright, the frames write back at exactly the shown size (odd sizes included)
    write_video(tmp_path / "out.mp4", back, fps=10)
    with VideoReader(tmp_path / "out.mp4") as vr:
        assert (vr.height, vr.width, vr.rotation) == (shown.shape[1], shown.shape[2], 0)


def test_writer_error_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="differs from the first frame"):
        with VideoWriter(tmp_path / "x.mp4", fps=10) as vw:
            vw.write(torch.rand(3, 16, 16))
            vw.write(torch.rand(3, 18, 16))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no frames were written"):
        with VideoWriter(tmp_path / "y.mp4", fps=10):
            pass
    with pytest.raises(ValueError, match="finite"):
        write_video(tmp_path / "z.mp4", torch.full((1, 3, 8, 8), float("nan")), fps=5)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unsupported output type"):
        VideoWriter(tmp_path / "x.avi", fps=10)
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", fps=0)


def test_missing_empty_corrupt_video(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoReader(tmp_path / "none.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_video(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00garbage" * 200)
    with pytest.raises(ValueError, match="could not be opened"):
        read_video(tmp_path / "junk.mp4")


def test_truncated_video(tmp_path):
    write_video(tmp_path / "c.mp4", _clip(8), fps=8)
    data = (tmp_path / "c.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])  # moov atom at the end is lost
    with pytest.raises(ValueError, match="cut.mp4"):
        read_video(tmp_path / "cut.mp4")


def test_reads_real_avi_and_mp4(shared_data):
    with VideoReader(shared_data / "videos" / "vtest.avi") as vr:
        assert (vr.width, vr.height, vr.fps, vr.num_frames) == (480, 360, 10.0, 795)
        first = next(iter(vr))
    assert first.shape == (3, 360, 480) and 0 <= float(first.min()) and float(first.max()) <= 1
    frames, fps = read_video(shared_data / "videos" / "bigbuckbunny.mp4", max_frames=3)
    assert frames.shape == (3, 3, 720, 1280) and fps == 25.0
