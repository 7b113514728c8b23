"""Shared test set-up: CPU-friendly torch, paths to the evaluation data, and marker handling."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_flush_denormal(True)  # random-init RAFT is 3-5x slower on CPU without it

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))


def texture(h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    """A smooth random RGB texture ``(3, h, w)`` in [0, 1]: enough structure for flow, cheap to encode."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)[0]


@pytest.fixture
def media(tmp_path) -> Path:
    """A folder with a.png and b.png (a 48x32 texture and the same moved 2 px right) and clip.mp4 (4 frames of
    it panning 2 px a frame, 8 fps): the inputs the command-line tests feed."""
    from flow.io import write_image
    from flow.video import write_video

    a = texture()
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", torch.roll(a, 2, dims=2))
    write_video(tmp_path / "clip.mp4", torch.stack([torch.roll(a, 2 * i, dims=2) for i in range(4)]), fps=8)
    return tmp_path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only evaluation footage beside the checkout; skips the test when it is absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"evaluation data not found at {SHARED_DATA} (set MOTIONGUIDE_DATA)")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # the marker, not any keyword (a folder named gpu)
            item.add_marker(skip_gpu)


@pytest.fixture
def one_thread():
    """Run the test with one torch thread: on 2 shared cores, OpenMP threads spin against each other and
    make tiny RAFT runs up to 30x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def photo():
    """A real photograph (3, H, W) float in [0, 1]: skimage's bundled astronaut (no download)."""
    from skimage.data import astronaut

    return torch.from_numpy(astronaut()).permute(2, 0, 1).float() / 255.0


@pytest.fixture
def two_ranks(tmp_path):
    """``run(code) -> [weights printed by each rank]``: ``code`` run by two processes under torchrun
    (``--standalone``: a free port of its own, so two such tests never meet), each printing one
    ``rank R <word> W`` line; the run must exit 0. The two processes share one stdout pipe, so one's line can
    land inside the other's (``rank 1 w 0.39rank 0 w 0.39``): the pairs are found anywhere in the output, not
    line by line."""
    import re
    import subprocess
    import sys
    import textwrap

    def run(code: str) -> list[str]:
        script = tmp_path / "ranks.py"
        script.write_text(textwrap.dedent(code))
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              str(script)], capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        found = re.findall(r"rank (\d+) [a-z]+ (-?\d[\d.]*(?:e[-+]?\d+)?)", res.stdout)
        assert sorted(r for r, _ in found) == ["0", "1"], res.stdout
        return sorted(w for _, w in found)

    return run
