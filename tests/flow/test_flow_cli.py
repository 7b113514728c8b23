"""``motionguide flow``: pair and clip forms, bad input exits non-zero leaving no output, Sintel target."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from flow.io import read_flo, read_flow, write_image
from flow.metrics import epe
from flow.video import write_video
from motionguide.cli import main






@pytest.fixture
def pair(tmp_path, photo):
    # frame 1 = frame 0 moved 3 px left and 2 px up: flow (-3, -2) everywhere inside
    a, b = photo[:, 200:296, 150:278], photo[:, 202:298, 153:281]
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", b)
    return tmp_path / "a.png", tmp_path / "b.png"


def _files(d):
    return sorted(p.name for p in d.iterdir())


def test_pair_writes_flo_and_viz(tmp_path, pair, capsys):
    rc = main(["flow", str(pair[0]), str(pair[1]), "-o", str(tmp_path / "ab.flo"), "--viz", str(tmp_path / "ab.png")])
    assert rc == 0
    flow = read_flo(tmp_path / "ab.flo")
    assert flow.shape == (2, 96, 128)
    assert float(flow[0, 16:-16, 16:-16].median()) == pytest.approx(-3, abs=0.1)
    assert float(flow[1, 16:-16, 16:-16].median()) == pytest.approx(-2, abs=0.1)
    assert (tmp_path / "ab.png").stat().st_size > 0
    assert "ab.flo: 128x96 (WxH) flow, dis (--preset balanced)" in capsys.readouterr().out
    assert main(["flow", str(pair[0]), str(pair[1]), "-o", str(tmp_path / "ab.npy"), "--method", "farneback"]) == 0
    assert read_flow(tmp_path / "ab.npy").shape == (2, 96, 128)


def test_pair_raft_random_weights(tmp_path, pair, one_thread):
    rc = main(["flow", str(pair[0]), str(pair[1]), "-o", str(tmp_path / "r.flo"), "--method", "raft_small",
               "--weights", "random", "--num-flow-updates", "1"])
    assert rc == 0 and read_flo(tmp_path / "r.flo").shape == (2, 96, 128)


def test_bad_input_exits_nonzero_without_output(tmp_path, pair, capsys, monkeypatch):
    out = tmp_path / "o.flo"
    before = _files(tmp_path)

    def fails(*argv, match):
        assert main(["flow", *map(str, argv)]) == 2
        assert match in capsys.readouterr().err
        assert _files(tmp_path) == before  # no output, no temporary file

    fails(pair[0], tmp_path / "missing.png", "-o", out, match="missing.png does not exist")
    write_image(tmp_path / "small.png", torch.rand(3, 40, 50))
    before = _files(tmp_path)
    fails(pair[0], tmp_path / "small.png", "-o", out, match="must have the same size")
    fails(pair[0], pair[1], "-o", tmp_path / "o.txt", match="expected a .flo or .npy")
    fails(pair[0], pair[1], "-o", tmp_path / "nodir" / "o.flo", match="does not exist")
    fails(pair[0], pair[1], "-o", out, "--weights", "random", match="--weights applies to raft_* methods only")
    fails(pair[0], pair[1], "-o", out, "--method", "farneback", "--preset", "fast", match="--preset applies to --method dis")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("MOTIONGUIDE_OFFLINE", "1")
    fails(pair[0], pair[1], "-o", out, "--method", "raft_small", match="looked for")
    # the failed RAFT load created nothing but what torch.hub itself would create
    (tmp_path / "corrupt.flo").write_bytes(b"x")
    before = _files(tmp_path)
    fails(pair[0], pair[1], tmp_path / "corrupt.flo", "-o", out, match="expected FRAME0 FRAME1")
    with pytest.raises(SystemExit) as e:  # argparse rejects an unknown method, listing the valid ones
        main(["flow", str(pair[0]), str(pair[1]), "-o", str(out), "--method", "lucas"])
    assert e.value.code == 2 and "invalid choice: 'lucas'" in capsys.readouterr().err
    assert _files(tmp_path) == before


def _moving_clip(photo, t=5):
    return torch.stack([photo[:, 200:264, 150 + 2 * i : 246 + 2 * i] for i in range(t)])


def test_clip_from_video_and_folder(tmp_path, photo, capsys):
    clip = _moving_clip(photo)
    write_video(tmp_path / "c.mp4", clip, fps=10, crf=10)
    assert main(["flow", str(tmp_path / "c.mp4"), "-o", str(tmp_path / "flows"), "--batch-size", "3"]) == 0
    assert _files(tmp_path / "flows") == [f"flow_{i:06d}.flo" for i in range(4)]
    f = read_flo(tmp_path / "flows" / "flow_000002.flo")
    assert float(f[0, 16:-16, 16:-16].median()) == pytest.approx(-2, abs=0.15)  # through H.264
    err = capsys.readouterr().err
    assert "pair" in err  # the tqdm bar

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, fr in enumerate(clip):
        write_image(frames / f"f{i}.png", fr)
    (tmp_path / "empty_out").mkdir()  # an empty folder is accepted
    rc = main(["flow", str(frames), "-o", str(tmp_path / "empty_out"), "--bidirectional", "--format", "npy",
               "--max-frames", "3", "--no-progress"])
    assert rc == 0
    assert _files(tmp_path / "empty_out") == ["back_000000.npy", "back_000001.npy", "flow_000000.npy", "flow_000001.npy"]
    assert float(read_flow(tmp_path / "empty_out" / "back_000001.npy")[0, 16:-16, 16:-16].median()) == pytest.approx(2, abs=0.1)


def test_clip_errors_leave_nothing(tmp_path, photo, capsys):
    clip = _moving_clip(photo, 3)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, fr in enumerate(clip):
        write_image(frames / f"f{i}.png", fr)
    write_image(frames / "f9.png", torch.rand(3, 32, 32))  # the last frame has another size: fails late
    before = _files(tmp_path)
    assert main(["flow", str(frames), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "differs" in capsys.readouterr().err
    assert _files(tmp_path) == before  # neither out/ nor its temporary .part folder

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "bad.mp4").write_bytes(b"\x00junk" * 100)
    for name, msg in (("empty.mp4", "empty"), ("bad.mp4", "could not be opened")):
        assert main(["flow", str(tmp_path / name), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
        assert msg in capsys.readouterr().err
    write_video(tmp_path / "one.mp4", clip[:1], fps=5)
    assert main(["flow", str(tmp_path / "one.mp4"), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "fewer than two frames" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    assert main(["flow", str(frames), "-o", str(tmp_path / "full")]) == 2
    assert "a folder with files in it" in capsys.readouterr().err
    assert _files(tmp_path) == sorted(before + ["bad.mp4", "empty.mp4", "full", "one.mp4"])


def test_sintel_default_dis_beats_opencv_medium(tmp_path, shared_data):
    """The issue's target: `motionguide flow --method dis` no worse than OpenCV DIS MEDIUM on all three pairs."""
    import cv2

    root = shared_data / "sintel_clean_gtflow"
    for seq in ("easy", "medium", "hard"):
        a, b = root / seq / "frame_0002.png", root / seq / "frame_0003.png"
        out = tmp_path / f"{seq}.flo"
        assert main(["flow", str(a), str(b), "-o", str(out), "--method", "dis"]) == 0
        gt = read_flo(root / seq / "gt" / "frame_0002.flo")
        g0, g1 = (cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY) for p in (a, b))
        ref = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g0, g1, None)
        ref_epe = epe(torch.from_numpy(np.ascontiguousarray(ref.transpose(2, 0, 1))), gt)
        ours = epe(read_flo(out), gt)
        assert ours <= ref_epe, f"{seq}: ours {ours:.3f} px vs OpenCV MEDIUM {ref_epe:.3f} px"


@pytest.mark.slow
def test_console_entry_point_exit_status(tmp_path):
    r = subprocess.run([sys.executable, "-m", "motionguide", "flow", str(tmp_path / "x.png"), str(tmp_path / "y.png"),
                        "-o", str(tmp_path / "o.flo")], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and list(tmp_path.iterdir()) == []
    r = subprocess.run([sys.executable, "-m", "motionguide", "flow", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "examples:" in r.stdout
