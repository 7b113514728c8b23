"""benchmarks/motion.py's pieces on one held-out clip: the free-pixel split, the metrics and the table."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("motion_bench", REPO / "benchmarks" / "motion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_free_pixels_split_and_metrics_on_the_true_frames(bench):
    from flow.estimators import get_estimator

    est = get_estimator("dis")
    case = bench.Case("extend", [0, 1], est)
    # the split covers the free pixels exactly, without overlap; known frames are never free
    assert torch.equal(case.free_occ + case.free_out, case.free)
    assert float(case.free_occ.min()) >= 0 and float(case.free_out.min()) >= 0
    assert float(case.free[:, list(case.positions)].sum()) == 0
    assert float(case.free.sum()) > 0  # extension: new content enters the view
    met = bench.measure(case, case.truth, bench.UpsampledFlow(est))
    assert met["psnr"] > 60 and met["ssim"] > 0.999  # the truth against itself
    assert len(met["psnr_clips"]) == 2 and min(met["psnr_clips"]) > 60
    for k in ("psnr_free", "psnr_disoccluded", "psnr_out_of_frame"):
        assert math.isnan(met[k]) or met[k] > 60
    assert 0 < met["epe"] < 3  # the meter's floor: small but not zero
    assert 0 < met["epe_anchor"] < met["epe"]  # from frame 3, the chain through the known frames is left out
    warp = bench.measure(case, case.truth * 0.5, bench.UpsampledFlow(est))
    assert warp["psnr"] < 20


def test_refining_search_lowers_the_meter_floor(bench):
    """chained_flow's search from each frame to frame 0, started from the chain, is closer to the true flow
    on the true frames than the chain alone (the --chain-only meter of sessions 2-3)."""
    from flow.estimators import get_estimator
    from flow.metrics import epe

    est = get_estimator("dis")
    case = bench.Case("extend", [0, 1], est)
    gen = case.generated
    gt, vis = case.flow0[:, gen].flatten(0, 1), case.vis0[:, gen].flatten(0, 1)
    refined = bench.chained_flow(case.truth, bench.UpsampledFlow(est))[:, gen].flatten(0, 1)
    chain = bench.chained_flow(case.truth, bench.UpsampledFlow(est, refines=False))[:, gen].flatten(0, 1)
    assert epe(refined, gt, vis) < 0.8 * epe(chain, gt, vis)
    assert torch.equal(bench.chained_flow(case.truth, bench.UpsampledFlow(est), refine=False)[:, gen].flatten(0, 1), chain)


def test_table_reports_every_target(bench):
    rows = []
    for job in bench.JOBS:
        for mode, p in (("unguided", 15.0), ("both", 21.0), ("both_estimated", 20.0), ("flow_only_estimated", 20.5)):
            rows.append({"job": job, "mode": mode, "psnr": p, "ssim": 0.5, "psnr_free": 12.0, "psnr_disoccluded": float("nan"),
                         "psnr_out_of_frame": 11.0, "epe": 1.0 if mode != "unguided" else 4.0,
                         "epe_anchor": 0.5 if mode != "unguided" else 1.0, "seconds": 0.1})
    r = {"rows": rows, "meter_floor_epe": {j: 1.0 for j in bench.JOBS},
         "motion_scale": {"0.5": {"guided": 0.5, "flow_only": 0.52}, "2": {"guided": 1.5, "flow_only": 1.9}},
         "noop_maxdiff": 0.0, "clip_seconds": 0.2, "steps": 20}
    table = bench.format_table(r)
    assert "| transfer | truth |" in table and "| nan |" in table
    assert table.count("EPE both/unguided 0.25 (<= 0.35: met") == 3
    assert table.count("from the last known frame 0.50: NOT met") == 3
    assert table.count("estimated: both 20.00 vs flow-only 20.50 dB (NOT met)") == 3
    for row in rows:  # with per-clip values the paired difference and its standard error are printed
        row["psnr_clips"] = [row["psnr"] + d for d in ((-0.1, 0.1) if row["mode"] == "both_estimated" else (0.0, 0.0))]
    table = bench.format_table(r)
    assert table.count("(NOT met; per clip -0.50 +- 0.10 dB (SE, 2 clips))") == 3
    assert "within 21.1%: NOT met" in table and "strength 0: max |diff to unguided| 0.00e+00 (met)" in table
