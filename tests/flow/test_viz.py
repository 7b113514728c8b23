"""Flow colours and strips: direction -> hue, fixed scale, tiling, atomic PNG."""
from __future__ import annotations

import pytest
import torch

from flow.io import read_image
from flow.viz import flow_to_color, make_strip, save_strip


def test_flow_to_color_direction_and_zero():
    f = torch.zeros(4, 2, 3, 3)
    f[0, 0] = 1  # right
    f[1, 0] = -1  # left
    f[2, 1] = 1  # down
    c = flow_to_color(f)
    assert c.shape == (4, 3, 3, 3) and c.dtype == torch.float32
    assert torch.allclose(c[3], torch.ones(3, 3, 3))  # no motion is white
    # Middlebury wheel: right is red, left is cyan-ish (blue+green over red)
    assert c[0, 0, 0, 0] > c[0, 2, 0, 0] and c[1, 2, 0, 0] > c[1, 0, 0, 0]
    assert not torch.allclose(c[2], c[0])
    assert flow_to_color(f[0]).shape == (3, 3, 3)  # unbatched in, unbatched out


def test_fixed_scale_compares_flows():
    f = torch.zeros(1, 2, 2, 2)
    f[:, 0] = 1
    own_scale = flow_to_color(f), flow_to_color(3 * f)
    assert torch.equal(*own_scale)  # each image saturates on its own maximum
    a, b = flow_to_color(f, max_flow=4), flow_to_color(3 * f, max_flow=4)
    assert (a[0, 1] > b[0, 1]).all()  # the slower flow is paler
    assert torch.equal(flow_to_color(10 * f, max_flow=4), flow_to_color(4 * f, max_flow=4))  # clipped
    with pytest.raises(ValueError, match=r"expected shape \(B, 2, H, W\)"):
        flow_to_color(torch.zeros(1, 3, 2, 2))


def test_strip_layout_and_file(tmp_path):
    frame = torch.zeros(3, 4, 5)
    flow = torch.zeros(2, 4, 5)
    mask = torch.ones(1, 2, 2)
    strip = make_strip([[frame, flow], [mask]], gap=1)
    assert strip.shape == (3, 4 + 1 + 2, 5 + 1 + 5)
    assert strip[:, :4, :5].sum() == 0  # the black frame
    assert (strip[:, 5:, :2] == 1).all()  # the white mask
    save_strip(tmp_path / "s.png", [[frame, flow], [mask]], gap=1)
    assert torch.allclose(read_image(tmp_path / "s.png"), strip, atol=1 / 255)
    with pytest.raises(ValueError, match="list of lists"):
        save_strip(tmp_path / "t.png", [frame])
    with pytest.raises(ValueError, match="3 channels"):
        save_strip(tmp_path / "t.png", [[torch.zeros(5, 2, 2)]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]
