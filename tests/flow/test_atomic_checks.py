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


# ------------------------------------------------------------------ check_outputs (issue 14 item 2)

from flow.atomic import FOLDER, atomic_dir, check_outputs, live_partials  # noqa: E402


def test_check_outputs_refuses_an_input_even_through_a_hard_link(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"--compare a.png is the same file as the input"):
        check_outputs({"-o": tmp_path / "t.mp4", "--compare": a}, inputs=[a])
    link = tmp_path / "link.png"
    os.link(a, link)
    with pytest.raises(ValueError, match="same file as the input"):
        check_outputs({"--compare": link}, inputs=[a])
    # not existing yet, but the same resolved path
    with pytest.raises(ValueError, match="same file as the input"):
        check_outputs({"-o": tmp_path / "sub" / ".." / "new.png"}, inputs=[tmp_path / "new.png"])


def test_check_outputs_refuses_two_outputs_with_one_name(tmp_path):
    with pytest.raises(ValueError, match="--compare s.mp4 and -o name the same path"):
        check_outputs({"-o": tmp_path / "s.mp4", "--compare": tmp_path / "s.mp4"})


def test_check_outputs_kinds_and_folders(tmp_path):
    ok = check_outputs(
        {"-o": tmp_path / "v.MP4", "--compare": tmp_path / "c.png", "--viz": None, "--out": tmp_path / "new"},
        kinds={"-o": "video", "--compare": (".png",), "--out": FOLDER},
    )
    assert set(ok) == {"-o", "--compare", "--out"} and ok["-o"] == tmp_path / "v.MP4"
    with pytest.raises(ValueError, match=r"--compare strip.txt: expected a \.png file \(\.png\), got '\.txt'"):
        check_outputs({"--compare": tmp_path / "strip.txt"}, kinds={"--compare": (".png",)})
    with pytest.raises(ValueError, match="expected a video file .*got no ending"):
        check_outputs({"-o": tmp_path / "video"}, kinds={"-o": "video"})
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ValueError, match="expected a file name, got an existing folder"):
        check_outputs({"-o": tmp_path / "d.png"}, kinds={"-o": "image"})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="got a folder with files in it"):
        check_outputs({"-o": tmp_path / "full"}, kinds={"-o": FOLDER})
    with pytest.raises(ValueError, match="got an existing file"):
        check_outputs({"-o": tmp_path / "full" / "x"}, kinds={"-o": FOLDER})
    with pytest.raises(ValueError, match="inside the input folder"):
        check_outputs({"-o": tmp_path / "full" / "flows"}, inputs=[tmp_path / "full"], kinds={"-o": FOLDER})
    with pytest.raises(FileNotFoundError, match=r"-o x.mp4: the folder .*missing does not exist; create it"):
        check_outputs({"-o": tmp_path / "missing" / "x.mp4"})
    with pytest.raises(KeyError):
        check_outputs({"-o": tmp_path / "x.mp4"}, kinds={"--viz": "png"})


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "mids"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.png").write_bytes(b"x")
            assert live_partials() == [tmp]
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [] and live_partials() == []
    out.mkdir()  # an empty folder made beforehand is replaced
    with atomic_dir(out) as tmp:
        (tmp / "a.png").write_bytes(b"x")
    assert [p.name for p in out.iterdir()] == ["a.png"] and len(list(tmp_path.iterdir())) == 1


# ------------------------------------------------------------------ SIGTERM (issue 14 row 8)

_SLOW_WRITER = r"""
import sys, time
from flow.atomic import atomic_dir, atomic_path, install_signal_cleanup
assert install_signal_cleanup()
target = sys.argv[1]
with atomic_dir(target + "_dir") as d:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        (d / "part.bin").write_bytes(b"x")
        print("writing", flush=True)
        for _ in range(600):
            fh.write(b"x" * 1000)
            fh.flush()
            time.sleep(0.05)
"""


def test_sigterm_removes_partial_outputs(tmp_path):
    import signal
    import subprocess
    import sys

    target = tmp_path / "r.mp4"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(__import__("pathlib").Path(__file__).parents[2])]
                                                       + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"writing"
        assert any(p.name.startswith(".r.") and ".part" in p.name for p in tmp_path.iterdir())
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 143
    assert list(tmp_path.iterdir()) == []


def test_overwrite_refuses_guards_or_replaces(tmp_path):
    """overwrite=False refuses an existing file and guards the path's final rename; True replaces; None (the
    library's default) replaces without a guard. An input is refused whatever overwrite says."""
    from flow.atomic import OutputExistsError, atomic_path, check_outputs, guarded_outputs

    out = tmp_path / "o.png"
    out.write_text("old")
    with pytest.raises(OutputExistsError, match=r"-o .*o.png already exists; pass --overwrite \(or -y\)"):
        check_outputs({"-o": out}, overwrite=False)
    assert check_outputs({"-o": out}, overwrite=True)["-o"] == out
    with pytest.raises(ValueError, match="same file as the input"):
        check_outputs({"-o": out}, inputs=[out], overwrite=True)
    with atomic_path(out) as tmp:  # library use: replaced
        tmp.write_text("new")
    assert out.read_text() == "new"
    new = tmp_path / "n.png"
    with guarded_outputs():
        check_outputs({"-o": new}, overwrite=False)
        with pytest.raises(FileExistsError, match="appeared while this command ran"), atomic_path(new) as tmp:
            tmp.write_text("mine")
            new.write_text("theirs")
        assert new.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["n.png", "o.png"]
    new.unlink()  # the guard ends with the block: a later library write replaces again
    new.write_text("theirs")
    with atomic_path(new) as tmp:
        tmp.write_text("mine")
    assert new.read_text() == "mine"
