"""Video as it is and memory bounded before the work, on the command line: the variable-frame-rate rule of
``retime`` in every command that reads video, odd sizes and rotation kept, the jobs' memory estimated from
the header and refused above ``--max-memory`` before a frame decodes, a bounded ``--compare`` strip, and
``interpolate`` reading image sizes from the headers."""
from __future__ import annotations

import fractions
import struct
import time
import zlib

import numpy as np
import pytest
import torch

from flow.io import image_size
from flow.video import VideoReader
from motionguide import jobs
from motionguide.cli import main
from motionguide.memory import JobVideo, MemoryLimitError, check_job_memory, estimate_job_bytes, job_frames


def _encode(path, frames_u8, *, pts_ms=None, rotation: int = 0, rate: int = 10):
    """Encode (T, H, W, 3) uint8 frames as H.264; ``pts_ms``: presentation times (a variable frame rate);
    ``rotation``: a display rotation, as a phone stores a portrait video."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.height, s.width = frames_u8.shape[1:3]
        s.pix_fmt = "yuv444p" if s.width % 2 or s.height % 2 else "yuv420p"
        s.options = {"preset": "ultrafast"}
        if pts_ms is not None:
            s.codec_context.time_base = fractions.Fraction(1, 1000)
        if rotation:
            s.set_display_rotation(rotation)
        for i, f in enumerate(frames_u8):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts_ms is not None:
                vf.pts, vf.time_base = pts_ms[i], fractions.Fraction(1, 1000)
            for pk in s.encode(vf):
                c.mux(pk)
        for pk in s.encode(None):
            c.mux(pk)
    return path


def _moving(t: int, h: int, w: int) -> np.ndarray:
    """(t, h, w, 3) uint8: a smooth texture moving 1 px right per frame."""
    g = np.random.default_rng(0).random((h // 4 + 2, w // 4 + 2 + t, 3))
    big = np.kron(g, np.ones((4, 4, 1)))
    return np.stack([(big[:h, i:i + w] * 255).astype(np.uint8) for i in range(t)])


def _no_decoding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("frames were decoded before the check")

    monkeypatch.setattr("flow.video.read_video", boom)
    monkeypatch.setattr("flow.io.read_image", boom)


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err), err
    return err[-1]


# ----------------------------------------------------------------------------- variable frame rate


@pytest.mark.parametrize("command", ["speed", "extend", "transfer", "flow", "retime"])
def test_variable_frame_rate_is_refused_by_every_command_that_reads_video(tmp_path, capsys, monkeypatch, command):
    src = _encode(tmp_path / "vfr.mp4", _moving(10, 32, 32), pts_ms=[0, 33, 66, 100, 300, 333, 600, 633, 900, 1000])
    _no_decoding(monkeypatch)
    out = tmp_path / "out.mp4"
    argv = {"speed": ["speed", src, "--factor", "0.5", "-o", out], "extend": ["extend", src, "--frames", "2", "-o", out],
            "transfer": ["transfer", "--reference", src, "--image", tmp_path / "a.png", "-o", out],
            "flow": ["flow", src, "-o", tmp_path / "flows"], "retime": ["retime", src, "--fps", "20", "-o", out,
                                                                         "--backend", "dis"]}[command]
    if command == "transfer":
        from flow.io import write_image

        write_image(tmp_path / "a.png", torch.rand(3, 32, 32))
    rc = main([str(a) for a in argv])
    line = _last_error(capsys)
    assert rc == 2 and "vfr.mp4 has a variable frame rate" in line, line
    assert f"{command} needs constant frame rate input" in line and "-fps_mode cfr" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["vfr.mp4"] + (["a.png"] if command == "transfer" else []))


# ----------------------------------------------------------------------------- odd sizes, rotation


def test_an_odd_size_comes_out_exactly_that_size_without_a_raw_warning(tmp_path, capsys):
    src = _encode(tmp_path / "odd.mp4", _moving(4, 27, 49))
    rc = main(["speed", str(src), "--factor", "0.5", "-o", str(tmp_path / "o.mp4"), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    with VideoReader(tmp_path / "o.mp4") as vr:
        assert (vr.width, vr.height, vr.num_frames) == (49, 27, 7)
    assert "7 frames of 49x27" in out.strip().splitlines()[-1]
    assert "Warning" not in err and "warnings.warn" not in err and "an odd size" in err


def test_a_rotated_video_with_odd_dimensions_is_turned_upright_with_a_notice(tmp_path, capsys):
    # stored 45x27 (WxH) with a display rotation of 90 degrees: shown 27x45, as a phone's portrait video
    stored = _moving(3, 27, 45)
    src = _encode(tmp_path / "phone.mp4", stored, rotation=90)
    rc = main(["extend", str(src), "--frames", "2", "-o", str(tmp_path / "o.mp4"), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "display rotation of 90 degrees" in err and "turned upright" in err
    with VideoReader(tmp_path / "o.mp4") as vr:
        assert (vr.width, vr.height, vr.rotation) == (27, 45, 0)
        first = next(iter(vr))
    upright = torch.from_numpy(np.rot90(stored[0]).copy()).permute(2, 0, 1).float() / 255
    assert (first - upright).abs().mean() < 0.05  # the known first frame, upright (codec loss only)
    assert "5 frames of 27x45" in out.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- memory


def test_the_estimate_grows_with_size_and_frames_and_names_what_fits():
    assert job_frames("speed", 65, factor=0.5) == (65, 129)
    assert job_frames("extend", 10, frames=4) == (10, 14)
    assert job_frames("transfer", 30, frames=8) == (9, 8)
    small, big = (estimate_job_bytes("speed", h, w, 9, 17) for h, w in ((480, 854), (1080, 1920)))
    assert small < big < estimate_job_bytes("speed", 1080, 1920, 33, 65)
    with pytest.raises(MemoryLimitError) as e:  # 1080p, 65 frames in, 129 out
        check_job_memory("speed", JobVideo(1080, 1920, 24.0, 65), 65, factor=0.5)
    msg = str(e.value)
    assert "speed on 65 frames of 1920x1080 (WxH) making 129 needs about" in msg and "--max-memory 8" in msg
    n = int(msg.split("an input cut to ")[1].split()[0])
    h = int(msg.split("a smaller input of height ")[1].split()[0])
    assert 2 <= n < 65 and check_job_memory("speed", JobVideo(1080, 1920, 24.0, n), n, factor=0.5) <= 8 * 2 ** 30
    assert 16 <= h < 1080 and "scale=-2:" in msg
    assert check_job_memory("speed", JobVideo(h, h * 16 // 9, 24.0, 65), 65, factor=0.5) <= 8 * 2 ** 30
    with pytest.raises(MemoryLimitError, match=r"--frames \d+ fits"):  # fewer new frames for extend
        check_job_memory("extend", JobVideo(2160, 3840, 24.0, 2), 2, frames=64)
    with pytest.raises(MemoryLimitError, match=r"--frames \d+ fits"):
        check_job_memory("transfer", JobVideo(2160, 3840, 24.0, 200), 200)
    assert check_job_memory("speed", JobVideo(480, 854, 24.0, 9), 9, factor=0.5) < 8 * 2 ** 30


def test_the_header_check_of_speed_loads_no_torch(tmp_path):
    """A fresh process refuses a 4K speed job from the header before torch loads (under 3 s cold: torch alone
    takes longer to import on this machine)."""
    import subprocess
    import sys

    src = _encode(tmp_path / "uhd.mp4", np.full((2, 2160, 3840, 3), 90, np.uint8))
    code = ("import sys; from motionguide.cli import main; "
            f"rc = main(['speed', {str(src)!r}, '--factor', '0.25', '-o', {str(tmp_path / 'o.mp4')!r}, "
            "'--max-memory', '4']); print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["2", "False"], (r.stdout, r.stderr[-500:])
    assert "--max-memory 4" in r.stderr and not (tmp_path / "o.mp4").exists()


def test_a_4k_job_above_the_bound_is_refused_from_the_header_in_seconds(tmp_path, capsys, monkeypatch):
    frames = np.full((2, 2160, 3840, 3), 90, np.uint8)
    src = _encode(tmp_path / "uhd.mp4", frames)
    _no_decoding(monkeypatch)
    t0 = time.perf_counter()
    rc = main(["speed", str(src), "--factor", "0.25", "-o", str(tmp_path / "o.mp4"), "--max-memory", "4"])
    seconds = time.perf_counter() - t0
    line = _last_error(capsys)
    assert rc == 2 and "3840x2160" in line and "--max-memory 4" in line and "fits" in line, line
    assert seconds < 3 and not (tmp_path / "o.mp4").exists()


def test_the_compare_strip_is_bounded(tmp_path):
    clip = torch.from_numpy(_moving(3, 300, 800)).permute(0, 3, 1, 2).float() / 255
    res = jobs.speed(clip, 0.5, model=None, mode="flow_only", interpolator=None)
    jobs.save_compare(tmp_path / "s.png", res)
    w, h = image_size(tmp_path / "s.png")
    # 5 columns and 5 rows of cells at most 512 px wide (not 800), plus the row labels and gaps
    assert w <= 5 * 512 + 200 and h <= 5 * 512 + 100


def _png_header(path, w: int, h: int) -> None:
    """A PNG whose header says w x h (its pixels are never read): a huge frame for free."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def test_interpolate_refuses_a_huge_pair_from_the_headers_before_decoding(tmp_path, capsys, monkeypatch):
    _png_header(tmp_path / "a.png", 12000, 12000)
    _png_header(tmp_path / "b.png", 12000, 12000)
    _no_decoding(monkeypatch)
    rc = main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "m.png"),
               "--backend", "dis"])
    line = _last_error(capsys)
    assert rc == 2 and "12000x12000" in line and "--max-memory" in line, line
    _png_header(tmp_path / "b.png", 12000, 11999)
    rc = main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "m.png"),
               "--backend", "dis"])
    assert rc == 2 and "12000x11999" in _last_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_transfer_reads_its_image_size_from_the_header_before_decoding(tmp_path, capsys, monkeypatch):
    ref = _encode(tmp_path / "ref.mp4", _moving(3, 32, 32))
    _png_header(tmp_path / "huge.png", 30000, 30000)
    _no_decoding(monkeypatch)
    rc = main(["transfer", "--reference", str(ref), "--image", str(tmp_path / "huge.png"), "-o", str(tmp_path / "o.mp4")])
    line = _last_error(capsys)
    assert rc == 2 and "--max-memory 8" in line and "an --image of 900 megapixels" in line, line
    assert "the --image resized to the reference's 32x32 fits" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.png", "ref.mp4"]
