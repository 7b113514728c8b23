"""Probe (not a shipped feature): would a per-pixel fusion of the model's output with the warp lift extend?

Issue 5 asks the guided model, with guidance from estimated flow, to score at least the flow-only warp
built from the same flow. On extend the shipped model is level with the warp. The gate head decides how much
to trust the warp before the network runs; this probe trains, on the shipped model's own outputs, a small
network that sees the output itself and blends per pixel:
``fused = warp + sigmoid(net + 4) * (model - warp)`` (starts at 98 % model), with ``net`` four 3x3
convolutions over the model output, the warp, their difference, the source weight, the out-of-frame flag,
the flow and the frame's distance from the last known frame. It trains with the per-frame log MSE on
``--clips`` training clips of the extension layout (4 known frames, 4 new, DIS flow), whose outputs the
shipped model generates once, then prints the held-out PSNR of model, warp and fused output side by side
(the benchmark's extend job, seeds 0-23 and 100-123).

    python benchmarks/probe_extend_fusion.py [--clips 960] [--steps 1500] [--threads 2]

Session 5, this 2-core CPU (5 min): fused 22.62 / 23.32 dB against the model's 22.55 / 23.19 and the
warp's 22.52 / 23.24 (seeds 0-23 / 100-123; fused - warp +0.11 / +0.08).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _motion_benchmark():
    # benchmarks/ is not a package and holds a flow.py: load motion.py by path, not through sys.path
    spec = importlib.util.spec_from_file_location("motion_benchmark", REPO / "benchmarks" / "motion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fusion_inputs(g, out: torch.Tensor, warp: torch.Tensor):
    """Per generated frame with a source: ``(features (N, 14, H, W), model (N, 3, H, W), warp, frame ids)``."""
    from motionguide.model import _outside

    last = max(p for p in g.positions if p is not None)
    feats, outs, warps, ids = [], [], [], []
    for t in range(g.num_frames):
        if t in g.positions or int(g.sources[t, 0]) < 0:
            continue
        fl, w = g.flows[:, t, 0], g.weights[:, t, 0]
        o, f = out[:, :, t], warp[:, :, t]
        feats.append(torch.cat([o * 2 - 1, f * 2 - 1, (o - f) * 4, w, _outside(fl), fl / 8,
                                torch.full_like(w, (t - last) / 4)], 1))
        outs.append(o)
        warps.append(f)
        ids.append(t)
    return torch.cat(feats), torch.cat(outs), torch.cat(warps), ids


class Fusion(torch.nn.Module):
    def __init__(self, hidden: int = 24):
        super().__init__()
        c = 3 + 3 + 3 + 1 + 1 + 2 + 1
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(c, hidden, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), torch.nn.SiLU(),
            torch.nn.Conv2d(hidden, hidden, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(hidden, 1, 3, padding=1))
        torch.nn.init.zeros_(self.net[-1].weight)
        torch.nn.init.zeros_(self.net[-1].bias)

    def forward(self, feats, out, warp):
        # a sigmoid, not clamp(1 + net, 0, 1): at the clamp's edge the gradient is zero and nothing trains
        return warp + torch.sigmoid(self.net(feats) + 4.0) * (out - warp)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((-10 * torch.log10(((a - b) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10))).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=960, help="training clips (extension layout, DIS flow)")
    ap.add_argument("--steps", type=int, default=1500, help="Adam steps of 48 frames")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)

    from flow.estimators import get_estimator
    from motionguide.data import make_clip
    from motionguide.jobs import generate_windows, load_models
    from motionguide.train import estimated_guidance

    motion = _motion_benchmark()
    est = get_estimator("dis")
    model = load_models(None, None, mode="both")
    t0 = time.time()
    parts = []
    with torch.no_grad():
        for i in range(0, args.clips, 16):
            clips = [make_clip(800_000 + s, split="train", num_frames=8) for s in range(i, min(i + 16, args.clips))]
            frames = torch.stack([c.frames.permute(1, 0, 2, 3) for c in clips])
            g = estimated_guidance(frames, "extend", (0, 1, 2, 3), est)
            f, o, w, ids = fusion_inputs(g, generate_windows(model, g, mode="both"), generate_windows(None, g, mode="flow_only"))
            parts.append((f, o, w, torch.cat([frames[:, :, t] for t in ids])))
    pool = [torch.cat(x) for x in zip(*parts)]
    print(f"training frames: {pool[0].shape[0]} ({time.time() - t0:.0f} s)", file=sys.stderr)
    held = {}
    with torch.no_grad():
        for seed in (0, 100):
            case = motion.Case("extend", list(range(seed, seed + 24)), est)
            f, o, w, ids = fusion_inputs(case.est, generate_windows(model, case.est, mode="both"),
                                         generate_windows(None, case.est, mode="flow_only"))
            held[seed] = (f, o, w, torch.cat([case.truth[:, :, t] for t in ids]))
    fusion = Fusion()
    opt = torch.optim.Adam(fusion.parameters(), 3e-3)
    n = pool[0].shape[0]
    g = torch.Generator().manual_seed(0)
    for step in range(args.steps):
        i = torch.randint(0, n, (48,), generator=g)
        loss = torch.log(((fusion(*(x[i] for x in pool[:3])) - pool[3][i]) ** 2).mean(dim=(1, 2, 3)) + 1e-5).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"trained {args.steps} steps ({time.time() - t0:.0f} s)", file=sys.stderr)
    print("| held-out seeds | model (both, estimated) | flow-only warp | fused | fused - warp |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for seed, (f, o, w, y) in held.items():
            fused = _psnr(fusion(f, o, w), y)
            print(f"| {seed}-{seed + 23} | {_psnr(o, y):.2f} | {_psnr(w, y):.2f} | {fused:.2f} | {fused - _psnr(w, y):+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
