"""Shared test set-up: CPU-friendly torch, paths to the evaluation data, and marker handling."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_flush_denormal(True)  # random-init RAFT is 3-5x slower on CPU without it

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))


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
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
