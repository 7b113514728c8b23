"""flow.retime: plans, scene cuts, streaming retime of frames and videos, and every bad input."""
from __future__ import annotations

import fractions
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flow.interpolate import FlowInterpolator, Interpolator
from flow.retime import RetimeResult, SceneCutDetector, plan_retime, retime_frames, retime_video
from flow.video import VideoReader, write_video


def _clip(n=6, h=32, w=48, step=2.0, seed=0) -> torch.Tensor:
    """(n, 3, h, w): a smooth texture moving ``step`` px right per frame."""
    g = torch.Generator().manual_seed(seed)
    tex = F.interpolate(torch.rand(1, 3, h // 4, (w + 8 * n) // 4, generator=g), size=(h, w + 8 * n),
                        mode="bicubic", align_corners=False).clamp(0, 1)
    frames = []
    for i in range(n):
        x0 = int(round(4 * n - i * step))
        frames.append(tex[0, :, :, x0:x0 + w])
    return torch.stack(frames)


@pytest.fixture(scope="module")
def fast_interp():
    return FlowInterpolator("dis", preset="ultrafast")


_TINT = torch.tensor([1.0, 0.35, 0.2])[:, None, None]  # makes "another shot": a different colour palette


def _write_av(path: Path, pts_ms, *, audio=False, size=32):
    """A tiny H.264 file with the given presentation times (ms), optionally with a silent AAC track."""
    import av

    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=30)
    s.width = s.height = size
    s.pix_fmt = "yuv420p"
    s.codec_context.time_base = fractions.Fraction(1, 1000)
    a = c.add_stream("aac", rate=16000) if audio else None
    for i, p in enumerate(pts_ms):
        f = av.VideoFrame.from_ndarray(np.full((size, size, 3), (i * 40) % 255, np.uint8), format="rgb24")
        f.pts, f.time_base = p, fractions.Fraction(1, 1000)
        for pk in s.encode(f):
            c.mux(pk)
    for pk in s.encode(None):
        c.mux(pk)
    if a is not None:
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        fr.sample_rate, fr.pts = 16000, 0
        for pk in a.encode(fr):
            c.mux(pk)
        for pk in a.encode(None):
            c.mux(pk)
    c.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------- plans


def test_plan_fps_up_and_down():
    p = plan_retime(10, 795, fps=30)
    assert p.step == Fraction(1, 3) and p.out_frames == 3 * 795 - 2 and p.out_fps == 30
    p = plan_retime(30, 31, fps=25)  # 30 -> 25: every 6/5 input frames
    assert p.step == Fraction(6, 5) and p.out_frames == 26
    p = plan_retime(24, 3, fps=60)
    assert [float(x) for x in p.positions()] == pytest.approx([0, 0.4, 0.8, 1.2, 1.6, 2.0])
    ntsc = plan_retime(30000 / 1001, 10, fps=60000 / 1001)
    assert ntsc.step == Fraction(1, 2) and ntsc.out_frames == 19


def test_plan_speed_and_frames():
    p = plan_retime(25, 100, speed=0.25)
    assert p.step == Fraction(1, 4) and p.out_frames == 4 * 99 + 1 and p.out_fps == 25
    assert plan_retime(25, 100, speed=2).out_frames == 50
    p = plan_retime(24, 100, frames=49)
    assert p.out_frames == 49 and p.step == Fraction(99, 48)
    assert float(p.out_fps) == pytest.approx(24 * 48 / 99)  # duration kept


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of fps, speed or frames"),
        ({"fps": 30, "speed": 2}, "exactly one"),
        ({"speed": 0.1}, r"0.25 .. 4"),
        ({"speed": 5}, r"0.25 .. 4"),
        ({"frames": 1}, "integer >= 2"),
        ({"frames": 2.5}, "integer >= 2"),
        ({"fps": -1}, "positive finite"),
        ({"fps": float("inf")}, "positive finite"),
    ],
)
def test_plan_bad_targets(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_retime(25, 10, **kwargs)


def test_plan_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2 input frames, got 1"):
        plan_retime(25, 1, fps=50)


# --------------------------------------------------------------------------------------- scene cuts


def test_scene_cut_detector_ignores_motion_and_finds_cuts():
    det = SceneCutDetector()
    moving = _clip(8, 36, 64, step=4.0)
    assert [det.update(f) for f in moving] == [False] * 8
    other = _clip(3, 36, 64, seed=7) * _TINT  # a different shot with other colours
    assert det.update(other[0]) is True
    assert det.update(other[1]) is False


def test_scene_cut_with_similar_colours_found_by_the_difference_jump():
    det = SceneCutDetector()
    a = _clip(6, 36, 64, step=0.0, seed=1)  # a still shot
    assert [det.update(f) for f in a] == [False] * 6
    # Same palette, new layout: the histogram does not move, the pixel difference jumps.
    assert det.update(a[-1].flip(-1).flip(-2)) is True


# ---------------------------------------------------------------------------------------- streaming


def test_retime_frames_counts_copies_and_interpolates(fast_interp):
    clip = _clip(5)
    res = RetimeResult(None, 0, 0, 10.0, 30.0)
    out = list(retime_frames(list(clip), 10, fps=30, interpolator=fast_interp, result=res))
    assert len(out) == 3 * 5 - 2 == res.out_frames
    assert res.in_frames == 5 and res.copied == 5 and res.interpolated == 8 and res.duplicated == 0
    for i in range(5):  # positions 0, 1, 2, ... are the input frames themselves
        assert torch.equal(out[3 * i], clip[i])
    # In-betweens lie between their neighbours (a texture moving 2 px a frame).
    mid = out[1]
    assert float((mid - clip[0]).abs().mean()) < float((clip[1] - clip[0]).abs().mean())


def test_retime_frames_speed_up_only_drops_frames(fast_interp):
    clip = _clip(7)
    out = list(retime_frames(list(clip), 25, speed=2, interpolator=fast_interp))
    assert len(out) == 4 and all(torch.equal(o, clip[2 * i]) for i, o in enumerate(out))


def test_retime_frames_exact_frame_count(fast_interp):
    clip = _clip(6)
    out = list(retime_frames(list(clip), 25, frames_out=11, in_frames=6, interpolator=fast_interp))
    assert len(out) == 11 and torch.equal(out[0], clip[0]) and torch.equal(out[-1], clip[-1])


def test_no_blending_across_a_cut(fast_interp):
    a = _clip(3, seed=1)
    b = _clip(3, seed=2) * _TINT  # another shot
    clip = list(a) + list(b)
    res = RetimeResult(None, 0, 0, 10.0, 40.0)
    out = list(retime_frames(clip, 10, fps=40, interpolator=fast_interp, result=res))
    assert res.cuts == [2] and res.duplicated == 3
    # Between frames 2 and 3 (positions 2.25, 2.5, 2.75): copies of the nearer side, never a blend.
    assert torch.equal(out[9], a[2]) and torch.equal(out[10], b[0]) and torch.equal(out[11], b[0])


def test_retime_frames_bad_streams(fast_interp):
    with pytest.raises(ValueError, match="no frames"):
        list(retime_frames([], 10, fps=20, interpolator=fast_interp))
    with pytest.raises(ValueError, match="single frame"):
        list(retime_frames([_clip(1)[0]], 10, fps=20, interpolator=fast_interp))
    with pytest.raises(ValueError, match="share one size"):
        list(retime_frames([_clip(1)[0], torch.rand(3, 16, 16)], 10, fps=20, interpolator=fast_interp))


# -------------------------------------------------------------------------------------------- videos


def test_retime_video_fps_and_slow_motion(tmp_path, fast_interp):
    src = tmp_path / "in.mp4"
    write_video(src, _clip(6), fps=10)
    msgs = []
    res = retime_video(src, tmp_path / "out.mp4", fps=25, interpolator=fast_interp, progress=False, notify=msgs.append)
    with VideoReader(tmp_path / "out.mp4") as vr:
        n = sum(1 for _ in vr)
        assert vr.fps == pytest.approx(25) and (vr.height, vr.width) == (32, 48)
    assert n == res.out_frames == 13  # positions 0, 0.4, ..., 4.8 (5 - 1 = 4 input frame steps * 2.5 + 1)
    assert any("backend dis" in m for m in msgs)
    res = retime_video(src, tmp_path / "slow.mkv", speed=0.5, interpolator=fast_interp, progress=False, notify=msgs.append)
    assert res.out_frames == 11 and res.out_fps == pytest.approx(10)
    assert _leftovers(tmp_path) == ["in.mp4", "out.mp4", "slow.mkv"]


def test_retime_video_exact_frame_count(tmp_path, fast_interp):
    src = tmp_path / "in.mp4"
    write_video(src, _clip(5), fps=10)
    res = retime_video(src, tmp_path / "out.mp4", frames=9, interpolator=fast_interp, progress=False, notify=lambda m: None)
    with VideoReader(tmp_path / "out.mp4") as vr:
        assert sum(1 for _ in vr) == 9 and vr.fps == pytest.approx(20)


def test_audio_is_dropped_with_a_notice(tmp_path, fast_interp):
    src = tmp_path / "with_audio.mp4"
    _write_av(src, [i * 33 for i in range(4)], audio=True)
    msgs = []
    res = retime_video(src, tmp_path / "out.mp4", speed=0.5, interpolator=fast_interp, progress=False, notify=msgs.append)
    assert res.audio_dropped and any("audio" in m and "not carried over" in m for m in msgs)
    with VideoReader(tmp_path / "out.mp4") as vr:
        assert not vr.has_audio


def test_variable_frame_rate_is_refused_clearly(tmp_path, fast_interp):
    src = tmp_path / "vfr.mp4"
    _write_av(src, [0, 33, 66, 100, 300, 333, 600, 633, 900, 1000])
    with pytest.raises(ValueError, match=r"variable frame rate.*-fps_mode cfr"):
        retime_video(src, tmp_path / "out.mp4", fps=30, interpolator=fast_interp, progress=False)
    assert _leftovers(tmp_path) == ["vfr.mp4"]


def test_video_with_one_frame_or_none(tmp_path, fast_interp):
    one = tmp_path / "one.mp4"
    write_video(one, _clip(1), fps=10)
    with pytest.raises(ValueError, match="1 frame"):
        retime_video(one, tmp_path / "out.mp4", fps=30, interpolator=fast_interp, progress=False)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        retime_video(empty, tmp_path / "out.mp4", fps=30, interpolator=fast_interp, progress=False)
    assert _leftovers(tmp_path) == ["empty.mp4", "one.mp4"]


def test_zero_decodable_frames_leave_nothing(tmp_path, fast_interp, monkeypatch):
    """A container whose header promises frames but holds none: the error comes mid-stream, the
    half-made output is removed."""
    src = tmp_path / "in.mp4"
    write_video(src, _clip(3), fps=10)
    import flow.retime as fr

    class NoFrames(fr.VideoReader):
        def __iter__(self):
            return iter(())

    monkeypatch.setattr(fr, "VideoReader", NoFrames)
    with pytest.raises(ValueError, match="no frames"):
        retime_video(src, tmp_path / "out.mp4", fps=30, interpolator=fast_interp, progress=False, notify=lambda m: None)
    assert _leftovers(tmp_path) == ["in.mp4"]


def test_output_equal_to_input_and_bad_folders(tmp_path, fast_interp, monkeypatch):
    src = tmp_path / "in.mp4"
    write_video(src, _clip(3), fps=10)
    with pytest.raises(ValueError, match="same file as the input"):
        retime_video(src, src, fps=30, interpolator=fast_interp, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        retime_video(src, tmp_path / "missing" / "out.mp4", fps=30, interpolator=fast_interp, progress=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    import flow.atomic as atomic

    real = atomic.os.access
    # Root ignores permission bits, so the unwritable folder is simulated where the check asks the OS.
    monkeypatch.setattr(atomic.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    with pytest.raises(PermissionError, match="not writable"):
        retime_video(src, ro / "out.mp4", fps=30, interpolator=fast_interp, progress=False)
    assert _leftovers(ro) == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        retime_video(tmp_path / "nope.mp4", tmp_path / "out.mp4", fps=30, interpolator=fast_interp)


def test_failure_mid_way_leaves_no_partial_output(tmp_path):
    src = tmp_path / "in.mp4"
    write_video(src, _clip(6), fps=10)

    class Boom(Interpolator):
        name = "boom"
        calls = 0

        def _intermediate(self, f0, f1, ts):
            Boom.calls += 1
            if Boom.calls == 3:
                raise RuntimeError("simulated failure on the third pair")
            z = torch.zeros(f0.shape[0], 2, *f0.shape[-2:])
            return [(z, z, torch.full_like(z[:, :1], 1 - t)) for t in ts]

    with pytest.raises(RuntimeError, match="third pair"):
        retime_video(src, tmp_path / "out.mp4", fps=20, interpolator=Boom(), progress=False, notify=lambda m: None)
    assert _leftovers(tmp_path) == ["in.mp4"]


def test_memory_does_not_hold_the_stream(fast_interp):
    """Streaming: frames are pulled one at a time, and outputs are produced before the input ends."""
    pulled = []

    def source():
        for i, f in enumerate(_clip(6)):
            pulled.append(i)
            yield f

    gen = retime_frames(source(), 10, fps=20, interpolator=fast_interp)
    first = [next(gen) for _ in range(3)]  # frame 0, t = 0.5, frame 1
    assert len(first) == 3 and pulled == [0, 1, 2]
