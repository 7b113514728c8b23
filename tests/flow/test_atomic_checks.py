"""Atomic output and input checks: nothing half-written is ever left under the asked-for name."""
import os

import pytest
import torch

from flow.atomic import atomic_path, check_output_path
from flow.checks import check_same_size, to_float_frames


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_check_output_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "x.png")
    src = tmp_path / "in.mp4"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="same file as the input"):
        check_output_path(src, inputs=(src,))
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(PermissionError):
            check_output_path(ro / "x.png")


def test_to_float_frames_converts_and_refuses():
    u8 = torch.full((1, 4, 2, 2), 255, dtype=torch.uint8)
    out = to_float_frames(u8)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 2, 2) and out.max() == 1.0
    with pytest.raises(ValueError, match="got 2"):
        to_float_frames(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="same batch size and height x width"):
        check_same_size(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_check_finite_counts_bad_entries_and_allows_huge_finite_values():
    from flow.checks import check_finite

    x = torch.zeros(2, 2, 4, 4)
    x[0, 0, 1, 1] = float("nan")
    x[1, 1, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="2 NaN/inf entries of 64"):
        check_finite(x, "flow")
    # the one-pass sum overflows to inf here, yet every value is finite: no error
    check_finite(torch.full((4,), 3e38), "big")
    check_finite(torch.zeros(0), "empty")
