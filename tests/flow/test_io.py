"""Flow and image file I/O: bit-exact .flo round trip, bad files, image conversions, frame folders."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import torch

from flow.io import read_flo, read_flow, read_frames, read_image, write_flo, write_flow, write_image


def test_flo_round_trip_is_bit_exact(tmp_path):
    g = torch.Generator().manual_seed(0)
    flow = torch.randn(2, 7, 11, generator=g) * 50
    flow[0, 0, 0] = float(np.float32(1e-38))  # a denormal-ish value survives too
    write_flo(tmp_path / "a.flo", flow)
    back = read_flo(tmp_path / "a.flo")
    assert back.dtype == torch.float32 and back.shape == (2, 7, 11)
    assert torch.equal(back.view(torch.int32), flow.view(torch.int32))  # bit-exact, not just close


def test_flo_layout_matches_middlebury(tmp_path):
    # Hand-built file: width 2, height 1, pixel (0,0) = (1, 2), pixel (1,0) = (3, 4): u,v interleaved.
    data = struct.pack("<fii4f", 202021.25, 2, 1, 1.0, 2.0, 3.0, 4.0)
    (tmp_path / "h.flo").write_bytes(data)
    f = read_flo(tmp_path / "h.flo")
    assert f[:, 0, 0].tolist() == [1.0, 2.0] and f[:, 0, 1].tolist() == [3.0, 4.0]
    write_flo(tmp_path / "h2.flo", f[None])  # (1, 2, H, W) accepted
    assert (tmp_path / "h2.flo").read_bytes() == data


def test_flo_reads_sintel_ground_truth(shared_data):
    gt = read_flo(shared_data / "sintel_clean_gtflow" / "easy" / "gt" / "frame_0002.flo")
    assert gt.shape == (2, 436, 1024) and torch.isfinite(gt).all()


def test_flo_wrong_magic(tmp_path):
    p = tmp_path / "bad.flo"
    p.write_bytes(struct.pack("<fii", 1.0, 2, 2) + bytes(32))
    with pytest.raises(ValueError, match=r"expected magic number 202021.25.*got 1.0"):
        read_flo(p)


def test_flo_truncated(tmp_path):
    p = tmp_path / "t.flo"
    write_flo(p, torch.zeros(2, 4, 4))
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"expected 140 bytes for 4 x 4, got 135"):
        read_flo(p)
    p.write_bytes(b"PIE")
    with pytest.raises(ValueError, match="header"):
        read_flo(p)


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_flo(tmp_path / "nope.flo")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_frames(tmp_path / "nofolder")


def test_write_flo_bad_shape_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"expected shape \(2, H, W\)"):
        write_flo(tmp_path / "x.flo", torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        write_flo(tmp_path / "x.flo", torch.zeros(2, 4, 4, dtype=torch.int32))
    assert list(tmp_path.iterdir()) == []


def test_npy_round_trip_and_hwc(tmp_path):
    f = torch.randn(2, 5, 6)
    write_flow(tmp_path / "f.npy", f)
    assert torch.equal(read_flow(tmp_path / "f.npy"), f)
    np.save(tmp_path / "hwc.npy", f.permute(1, 2, 0).numpy())  # OpenCV layout (H, W, 2)
    assert torch.equal(read_flow(tmp_path / "hwc.npy"), f)
    write_flow(tmp_path / "g.flo", f)
    assert torch.equal(read_flow(tmp_path / "g.flo"), f)
    with pytest.raises(ValueError, match="expected .flo or .npy"):
        write_flow(tmp_path / "f.txt", f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy", "g.flo", "hwc.npy"]


def test_image_round_trip_8bit(tmp_path):
    img = torch.randint(0, 256, (3, 9, 13), dtype=torch.uint8)
    write_image(tmp_path / "a.png", img)
    back = read_image(tmp_path / "a.png")
    assert back.dtype == torch.float32 and back.shape == (3, 9, 13)
    assert torch.equal((back * 255).round().to(torch.uint8), img)
    write_image(tmp_path / "b.png", back)  # float -> same 8-bit values
    assert torch.equal(read_image(tmp_path / "b.png"), back)


def test_image_grey_rgba_16bit(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    g = read_image(tmp_path / "g.png")
    assert g.shape == (3, 3, 4) and torch.equal(g[0], g[2]) and abs(float(g[0, 0, 1]) - 20 / 255) < 1e-7

    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 255, 10, 0  # blue, a little red, fully transparent
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    a = read_image(tmp_path / "a.png")
    assert a.shape == (3, 2, 2) and float(a[2, 0, 0]) == 1.0 and abs(float(a[0, 0, 0]) - 10 / 255) < 1e-7

    deep = np.full((2, 3, 3), 65535, np.uint16)
    deep[0, 0] = (0, 32768, 65535)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    d = read_image(tmp_path / "d.png")
    assert float(d.max()) == 1.0 and abs(float(d[1, 0, 0]) - 32768 / 65535) < 1e-7  # scaled by 65535, not 255

    write_image(tmp_path / "d16.png", d, bits=16)
    assert torch.equal(read_image(tmp_path / "d16.png"), d)


def test_image_not_an_image(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="got a text file that could not be decoded"):
        read_image(tmp_path / "x.png")
    with pytest.raises(ValueError, match="unknown image type"):
        write_image(tmp_path / "x.xyz", torch.zeros(3, 2, 2))


def test_read_frames_natural_order_and_size_check(tmp_path):
    for i in (10, 2, 1):
        write_image(tmp_path / f"f_{i}.png", torch.full((3, 4, 5), i / 10))
    clip = read_frames(tmp_path)
    assert clip.shape == (3, 3, 4, 5)
    assert [round(float(c[0, 0, 0]) * 10) for c in clip] == [1, 2, 10]  # frame_2 before frame_10
    write_image(tmp_path / "f_11.png", torch.zeros(3, 6, 5))
    with pytest.raises(ValueError, match=r"frame size \(6, 5\) differs"):
        read_frames(tmp_path)
    with pytest.raises(ValueError, match="no image files"):
        read_frames(_empty(tmp_path))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d
