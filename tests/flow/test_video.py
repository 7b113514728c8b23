"""Video I/O: streaming read, fps/frame count kept on write, odd sizes, atomic output, bad files."""
from __future__ import annotations

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


def test_writer_batches_uint8_and_odd_size(tmp_path):
    u8 = (_clip(4, 15, 21) * 255).to(torch.uint8)
    with pytest.warns(UserWarning, match="padding 15x21 to 16x22"):
        with VideoWriter(tmp_path / "o.mp4", fps=10) as vw:
            vw.write(u8[:2])  # a batch
            vw.write(u8[2])  # a single frame
            vw.write(u8[3].float() / 255)  # float and uint8 mix
    back, fps = read_video(tmp_path / "o.mp4")
    assert back.shape == (4, 3, 16, 22) and fps == 10.0


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
