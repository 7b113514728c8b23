"""The built-in demo: real-size clips rendered from scikit-image's photographs, run through the jobs' default
path, and the --compare strip: labelled rows that differ, columns that are the output's frames in time."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flow.io import read_image
from flow.video import read_video
from flow.viz import make_strip
from motionguide import demo, jobs
from motionguide.cli import main


def _spy(monkeypatch) -> dict:
    """What save_compare hands to save_strip (rows, labels, column labels, flow scale)."""
    seen, real = {}, demo.save_strip

    def spy(path, rows, **kw):
        seen.update(rows=rows, **kw)
        real(path, rows, **kw)

    monkeypatch.setattr(demo, "save_strip", spy)
    return seen


@pytest.mark.parametrize("job,frames", [("transfer", 8), ("speed", 8), ("extend", 4)])
def test_demo_inputs_are_real_size_moving_photographs(job, frames):
    d = demo.demo_inputs(job)
    clip = d["reference"] if job == "transfer" else d["clip"]
    assert clip.shape == (frames, 3, *demo.DEMO_SIZE) and max(clip.shape[-2:]) >= 512
    assert 0 <= float(clip.min()) and float(clip.max()) <= 1 and float(clip.std()) > 0.1  # a photograph
    steps = (clip[1:] - clip[:-1]).abs().mean((1, 2, 3))
    assert bool((steps > 0.01).all())  # the camera moves every frame
    if job == "transfer":  # the look comes from another photograph
        assert d["image"].shape == (3, *demo.DEMO_SIZE) and float((d["image"] - clip[0]).abs().mean()) > 0.1
    with pytest.raises(ValueError, match="unknown job"):
        demo.demo_inputs("retime")


def test_readme_demo_writes_a_real_size_video_and_a_labelled_strip(tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    out, png = tmp_path / "demo.mp4", tmp_path / "demo.png"
    assert main(["transfer", "--demo", "-o", str(out), "--compare", str(png), "--no-progress"]) == 0
    clip, _ = read_video(out)
    assert clip.shape == (8, 3, *demo.DEMO_SIZE)
    assert seen["labels"] == ["input", "reference", "output", "flow", "confidence"]
    assert seen["col_labels"] == ["0"] + [f"{t} new" for t in range(1, 8)]
    rows = seen["rows"]
    same = lambda a, b: a is b is None or (a is not None and b is not None and a.shape == b.shape  # noqa: E731
                                           and torch.equal(a, b))
    for i in range(len(rows)):  # no two rows show the same thing (the warp row is left out: it is the output)
        for j in range(i + 1, len(rows)):
            assert not all(same(a, b) for a, b in zip(rows[i], rows[j])), (seen["labels"][i], seen["labels"][j])
    # the PNG is the labelled strip (possibly scaled down as a whole)
    labelled = make_strip(rows, labels=seen["labels"], col_labels=seen["col_labels"], max_flow=seen["max_flow"])
    plain = make_strip(rows, max_flow=seen["max_flow"])
    img = read_image(png)
    assert abs(img.shape[2] / img.shape[1] - labelled.shape[2] / labelled.shape[1]) < 0.01
    assert float((F.interpolate(labelled[None], size=img.shape[-2:], mode="area")[0] - img).abs().mean()) < 0.02
    left, top = labelled.shape[2] - plain.shape[2], labelled.shape[1] - plain.shape[1]
    assert left > 0 and top > 0
    y = top
    for r in rows:  # a label (dark text) left of every row
        h = max(t.shape[1] for t in r if t is not None)
        assert float(labelled[:, y : y + h, :left].min()) < 0.3
        y += h + 4


def test_extend_strip_shows_the_new_frames_in_time_with_their_flow_and_confidence(tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    d = demo.demo_inputs("extend")
    res = jobs.extend(d["clip"], 4, model=None)
    jobs.save_compare(tmp_path / "e.png", res, max_side=1024)  # tiles at full size, to compare with the frames
    assert seen["labels"] == ["input", "output", "flow", "confidence"]
    assert seen["col_labels"] == ["0", "1", "2", "3", "4 new", "5 new", "6 new", "7 new"]
    inp, out, flow, conf = seen["rows"]
    assert [t is None for t in inp] == [False] * 4 + [True] * 4  # the inputs sit at their own times
    for t in range(8):
        assert torch.equal(out[t], res.frames[t])
        if t < 4:
            assert torch.equal(inp[t], d["clip"][t]) and flow[t] is None and conf[t] is None
        else:  # the new frames: the flow to the last input frame, growing, and where no source sees
            assert float(flow[t].norm(dim=0).mean()) > 4 * (t - 3) and float(conf[t].min()) < 0.5
    assert seen["max_flow"] == pytest.approx(max(float(f.norm(dim=0).max()) for f in flow[4:]))


def test_strip_columns_keep_the_generated_frames():
    assert demo._columns(8, [4, 5, 6, 7], 8) == list(range(8))
    assert demo._columns(9, [5, 6, 7, 8], 8) == list(range(1, 9))  # the last input frame, then every new one
    assert demo._columns(15, list(range(1, 15, 2)), 8) == list(range(8))  # slow motion: consecutive frames
    slow4 = [t for t in range(29) if t % 4]
    assert demo._columns(29, slow4, 8) == list(range(8))  # 4x slow motion: new frames, not only the real ones
    assert demo._columns(40, list(range(1, 40)), 8) == demo._pick(40, 8)  # a long transfer: spread evenly
    cols = demo._columns(69, list(range(5, 69)), 8)  # a long extension: the last input frame, then spread
    assert cols[0] == 4 and cols[-1] == 68 and len(cols) == 8
