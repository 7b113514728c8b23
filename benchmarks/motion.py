"""Does motion guidance steer the embedded model? Measured on held-out clips with known motion, in one run.

For each job (transfer, speed x0.5, extend by 4) on ``--clips`` held-out clips (photographs and seeds never
seen in training), and for each mode (unguided; latent, feature, both = trained adapters; training_free;
flow_only = warping without the model; guided and flow-only modes twice: guidance from the true flow and
from flow estimated by DIS on the known frames, ``_estimated``):

* ``psnr`` / ``ssim`` of the generated frames (known input frames excluded) against the true frames;
* ``psnr_free``: PSNR inside the pixels the guidance cannot see (disoccluded or out of frame in every
  source), where the model has to invent; split into ``psnr_out_of_frame`` (out of frame in some source:
  content entering the view) and ``psnr_disoccluded`` (the rest: uncovered inside the frame); nan when a
  job has no such pixels;
* ``epe``: endpoint error between the motion of the generated frames (DIS on consecutive output frames
  upsampled 4x, chained to frame 0, as in issue 5, then refined by one DIS search from each frame to frame
  0 started from the chain; ``--chain-only`` skips that search) and the true flow
  to frame 0, over pixels visible in frame 0; the ``truth`` row (JSON ``meter_floor_epe``) measures the true frames themselves: the floor of
  this motion meter;
* ``epe_anchor``: the same meter from the last known frame before each generated one (chained from there,
  against the true flow to it): the motion of the generated frames alone, without the chain through the
  known frames, which every mode shares (JSON ``meter_floor_epe_anchor`` for the true frames). For
  transfer (only frame 0 known) it equals ``epe``;
* ``seconds``: generation time per clip.

Plus: motion scale 0.5 and 2 (mean measured motion magnitude over the one at scale 1, for the guided result
and for the flow-only warp, transfer job, estimated guidance), strength 0 (max abs difference to
unguided), and the median time of one clip at batch 1 with the default steps.

    python benchmarks/motion.py [--clips 6] [--steps N] [--chain-only] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

try:
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

import torch  # noqa: E402

JOBS = ("transfer", "speed", "extend")
TARGETS = {
    "epe_ratio": 0.35,  # both / unguided
    "psnr_gain": 3.0,  # both - unguided, dB
    "motion_scale_tol": 0.15,
    "noop": 1e-5,
    "clip_seconds": 20.0,
}


# ------------------------------------------------------------------------------------------- cases
class Case:
    """One job on a batch of held-out clips: true frames, known positions, both guidances, masks."""

    def __init__(self, job: str, seeds: list[int], estimator):
        import motionguide as mg
        from motionguide.embedded.data import make_clip, true_guidance


        self.job = job
        if job == "transfer":
            times = [float(t) for t in range(8)]
            positions = (0,)
        elif job == "speed":
            times = [0.5 * j for j in range(15)]
            positions = tuple(range(0, 15, 2))
        elif job == "extend":
            times = [float(t) for t in range(8)]
            positions = (0, 1, 2, 3)
        else:
            raise ValueError(job)
        self.clips = [make_clip(s, split="heldout", num_frames=8, times=times) for s in seeds]
        self.truth = torch.stack([c.frames.permute(1, 0, 2, 3) for c in self.clips])  # (B, 3, T, H, W)
        self.positions = positions
        self.T = len(times)
        self.generated = [t for t in range(self.T) if t not in positions]
        self.true = true_guidance(self.clips, positions, self.T)
        real = self.truth[:, :, list(positions)]
        if job == "transfer":
            self.est = mg.reference_motion(self.truth[:, :, 0], self.truth, estimator=estimator)
        elif job == "speed":
            self.est = mg.speed(real, 0.5, estimator=estimator)
        else:
            self.est = mg.extension(real, self.T - len(positions), estimator=estimator)
        # pixels no source sees (true visibility): the model must fill them; split into those out of frame
        # in some source (new content entering the view) and the rest (disoccluded inside the frame)
        self.free = (self.true.weights.sum(2) <= 1e-6).float()  # (B, T, 1, H, W)
        out_any = torch.zeros_like(self.free)
        for n, c in enumerate(self.clips):
            for k in range(self.T):
                for s in self.true.sources[k].tolist():
                    if s >= 0 and k not in positions:
                        out_any[n, k] = torch.maximum(out_any[n, k], c.scene.flow(c.times[k], c.times[positions[s]])[2])
        self.free_out = self.free * (out_any > 0.5).float()
        self.free_occ = self.free - self.free_out
        # true flow of every output frame to frame 0, and where frame 0 sees it
        self.flow0 = torch.stack([torch.stack([c.scene.flow(t, 0.0)[0] for t in c.times]) for c in self.clips])
        vis = []
        for c in self.clips:
            v = []
            for t in c.times:
                _, occ, out = c.scene.flow(t, 0.0)
                v.append(1 - torch.clamp(occ + out, max=1))
            vis.append(torch.stack(v))
        self.vis0 = torch.stack(vis)  # (B, T, 1, H, W)
        # the same against the last known frame before each generated one (the motion of the generated
        # frames alone, without the chain through known frames that every mode shares)
        self.anchor = {k: max(p for p in positions if p < k) for k in self.generated}
        fk, vk = [], []
        for c in self.clips:
            f_, v_ = [], []
            for k, t in enumerate(c.times):
                a = self.anchor.get(k, k)
                f, occ, out = c.scene.flow(t, c.times[a])
                f_.append(f)
                v_.append(1 - torch.clamp(occ + out, max=1))
            fk.append(torch.stack(f_))
            vk.append(torch.stack(v_))
        self.flow_anchor, self.vis_anchor = torch.stack(fk), torch.stack(vk)


class UpsampledFlow:
    """The motion meter: DIS on both frames upsampled ``factor`` x (bicubic), the flow area-averaged back and
    divided by ``factor``. DIS's 8 px patches span a quarter of a 32 px frame; at 128 px it resolves the
    motion: on the true held-out clips the chained error floor drops from 1.7 to 1.1 px (transfer),
    1.7 to 1.1 (speed) and 2.4 to 1.5 (extend). :meth:`refine` searches from a given flow (see
    :func:`chained_flow`)."""

    def __init__(self, estimator, factor: int = 4, refines: bool = True):
        self.estimator, self.factor = estimator, int(factor)
        self.refines = bool(refines) and hasattr(estimator, "refine")  # chained_flow asks

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.interpolate(x, scale_factor=self.factor, mode="bicubic", align_corners=False).clamp(0, 1)

    def _down(self, flow: torch.Tensor, size) -> torch.Tensor:
        import torch.nn.functional as F

        return F.interpolate(flow, size, mode="area") / self.factor

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self._down(self.estimator(self._up(a), self._up(b)), a.shape[-2:])

    def refine(self, a: torch.Tensor, b: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        start = F.interpolate(flow, scale_factor=self.factor, mode="bilinear", align_corners=False) * self.factor
        return self._down(self.estimator.refine(self._up(a), self._up(b), start), a.shape[-2:])


def chained_flow(clip: torch.Tensor, estimator, refine: bool = True) -> torch.Tensor:
    """``(B, T, 2, H, W)``: flow of each frame to frame 0: DIS on consecutive pairs chained (one call from
    frame 0 to 7 misses large motion at 32 px; chaining does not), then, where the estimator can
    (``refine``), one search from frame k straight to frame 0 started from the chained flow, which removes
    the drift the chain accumulates. The meter's own error is its error on the true frames: the table's
    ``truth`` rows (JSON ``meter_floor_epe``), with ``--chain-only`` for the chain alone (docs/DECISIONS.md)."""
    from flow.warp import compose_flows

    b, _, t, h, w = clip.shape
    out = [clip.new_zeros(b, 2, h, w)]
    for k in range(1, t):
        step = estimator(clip[:, :, k], clip[:, :, k - 1])
        out.append(step if k == 1 else compose_flows(step, out[-1]))
    if refine and getattr(estimator, "refines", False):
        out = out[:2] + [estimator.refine(clip[:, :, k], clip[:, :, 0], out[k]) for k in range(2, t)]
    return torch.stack(out, 1)


def _psnr_masked(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> float:
    """PSNR over the pixels where ``m`` > 0 (all frames pooled); nan when empty."""
    m = m.expand_as(a)
    n = float(m.sum())
    if n < 1:
        return float("nan")
    mse = float(((a - b) ** 2 * m).sum()) / n
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def measure(case: Case, out: torch.Tensor, estimator) -> dict:
    """Metrics of an output clip ``(B, 3, T, H, W)`` against the case's truth."""
    from flow.metrics import epe, psnr, ssim

    gen = case.generated
    a = out[:, :, gen].transpose(1, 2).reshape(-1, 3, *out.shape[-2:])
    b = case.truth[:, :, gen].transpose(1, 2).reshape(-1, 3, *out.shape[-2:])
    free, free_occ, free_out = (m[:, gen].reshape(-1, 1, *out.shape[-2:]) for m in (case.free, case.free_occ, case.free_out))
    full = chained_flow(out, estimator)
    fl = full[:, gen].reshape(-1, 2, *out.shape[-2:])
    gt = case.flow0[:, gen].reshape(-1, 2, *out.shape[-2:])
    vis = case.vis0[:, gen].reshape(-1, 1, *out.shape[-2:])
    # each anchor's chain runs only as far as the last frame measured from it (speed: one pair each); frame
    # k - k0 of a chain depends on frames k0..k only, so this equals the chain over the whole tail
    ends = {k0: max(k for k in gen if case.anchor[k] == k0) + 1 for k0 in set(case.anchor.values())}
    chains = {k0: full if (k0, e) == (0, out.shape[2]) else chained_flow(out[:, :, k0:e], estimator)
              for k0, e in ends.items()}
    fa = torch.stack([chains[case.anchor[k]][:, k - case.anchor[k]] for k in gen], 1).reshape(-1, 2, *out.shape[-2:])
    ga = case.flow_anchor[:, gen].reshape(-1, 2, *out.shape[-2:])
    va = case.vis_anchor[:, gen].reshape(-1, 1, *out.shape[-2:])
    n = out.shape[0]
    per_clip = [psnr(x, y) for x, y in zip(a.reshape(n, len(gen), *a.shape[1:]), b.reshape(n, len(gen), *b.shape[1:]))]
    return {"psnr": psnr(a, b), "psnr_clips": per_clip, "ssim": ssim(a, b), "psnr_free": _psnr_masked(a, b, free),
            "psnr_disoccluded": _psnr_masked(a, b, free_occ), "psnr_out_of_frame": _psnr_masked(a, b, free_out),
            "epe": epe(fl, gt, vis), "epe_anchor": epe(fa, ga, va)}


def mean_motion(clip: torch.Tensor, estimator) -> float:
    """Mean magnitude of the chained flow to frame 0 over frames 1.. and pixels."""
    f = chained_flow(clip, estimator)[:, 1:]
    return float(f.pow(2).sum(2).sqrt().mean())


# --------------------------------------------------------------------------------------------- run
@common.cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=6, help="held-out clips per job")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=float, default=None,
                    help="where guided sampling starts in the table's rows, t in (0, 1] (default: the model's "
                         "GUIDED_START; the motion-scale, strength-0 and timing checks always use the default)")
    ap.add_argument("--model", default=None, help="base model folder (default: shipped assets)")
    ap.add_argument("--adapters", default=None, help="adapter folder (default: shipped assets)")
    ap.add_argument("--chain-only", action="store_true",
                    help="the plain chained motion meter: chained DIS without the refining search from each frame "
                         "to frame 0 (higher error floor; see chained_flow)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    common.set_threads(args.threads, opencv=False)

    from flow.estimators import get_estimator
    from motionguide.embedded.windows import generate_windows
    from motionguide.jobs import load_models

    est = get_estimator("dis")
    meter = UpsampledFlow(est, refines=not args.chain_only)
    try:
        trained = load_models(args.model, args.adapters, mode="both")
        free = load_models(args.model, None, mode="training_free")
    except (FileNotFoundError, ValueError) as e:
        raise common.UserError(str(e)) from None
    steps = args.steps or trained.config.steps
    seeds = list(range(args.seed, args.seed + args.clips))
    rows = []
    meter_floor, meter_floor_anchor = {}, {}
    cases = {}
    print(f"held-out clips: {len(seeds)} per job; {steps} sampling steps; model {trained.config.height}x"
          f"{trained.config.width}x{trained.config.num_frames}", file=sys.stderr)
    for job in JOBS:
        case = cases[job] = Case(job, seeds, est)
        floor = measure(case, case.truth, meter)  # the meter on the true frames
        meter_floor[job], meter_floor_anchor[job] = round(floor["epe"], 4), round(floor["epe_anchor"], 4)
        plan = [("unguided", None, "unguided")]
        for m in ("latent", "feature", "both", "training_free", "flow_only"):
            plan += [(m, case.true, m), (m, case.est, m + "_estimated")]
        for mode, g, name in plan:
            model = free if mode == "training_free" else trained
            gg = g if g is not None else case.true
            t0 = time.perf_counter()
            out = generate_windows(None if mode == "flow_only" else model, gg, mode=mode, steps=steps,
                                   seed=args.seed, start=args.start)
            sec = (time.perf_counter() - t0) / len(seeds)
            met = measure(case, out, meter)
            rows.append({"job": job, "mode": name, **{k: [round(x, 4) for x in v] if isinstance(v, list) else round(v, 4)
                                                       for k, v in met.items()}, "seconds": round(sec, 3)})
            print(f"  {job:8s} {name:24s} psnr {met['psnr']:6.2f}  ssim {met['ssim']:.3f}  free {met['psnr_free']:6.2f} "
                  f"(disocc {met['psnr_disoccluded']:6.2f}, out {met['psnr_out_of_frame']:6.2f})  "
                  f"epe {met['epe']:5.2f} (from last known {met['epe_anchor']:5.2f})  {sec:6.2f} s/clip", file=sys.stderr)
    # motion scale: transfer with estimated guidance (what a user runs), guided (both) and flow-only
    import motionguide as mg

    case = cases["transfer"]
    mags = {}
    for ms in (1.0, 0.5, 2.0):
        g = mg.reference_motion(case.truth[:, :, 0], case.truth, estimator=est, motion_scale=ms)
        gen = generate_windows(trained, g, mode="both", steps=steps, seed=args.seed)
        warp = generate_windows(None, g, mode="flow_only")
        mags[ms] = (mean_motion(gen, meter), mean_motion(warp, meter))
    motion_scale = {
        ("0.5" if ms == 0.5 else "2"): {"guided": round(mags[ms][0] / mags[1.0][0], 4),
                                         "flow_only": round(mags[ms][1] / mags[1.0][1], 4)}
        for ms in (0.5, 2.0)
    }
    # strength 0 is the unguided model, through the whole guided path
    g0 = case.true.with_strength(0.0)
    unguided = generate_windows(trained, case.true, mode="unguided", steps=steps, seed=args.seed)
    zero = generate_windows(trained, g0, mode="both", steps=steps, seed=args.seed)
    noop = float((zero - unguided).abs().max())
    # one clip at batch 1, default steps, median of 3
    from motionguide.embedded.data import true_guidance

    one = true_guidance(case.clips[:1], (0,), 8)
    times = []
    for r in range(3):
        t0 = time.perf_counter()
        generate_windows(trained, one, mode="both", seed=r)
        times.append(time.perf_counter() - t0)
    clip_seconds = statistics.median(times)

    result = {"rows": rows, "meter_floor_epe": meter_floor, "meter_floor_epe_anchor": meter_floor_anchor, "motion_scale": motion_scale, "noop_maxdiff": noop, "clip_seconds": round(clip_seconds, 3),
              "clips": len(seeds), "steps": steps}
    print(format_table(result))
    if args.json:
        common.write_json(args.json, result, indent=2)
        print(f"wrote {args.json}")
    return 0


def paired_difference(a: list | None, b: list | None) -> str:
    """``"; per clip +0.02 +- 0.04 dB (SE, 24 clips)"``: the mean over clips of the PSNR difference a - b
    and its standard error, which says whether a difference of a few hundredths of a dB is more than the
    luck of the clips drawn; empty without per-clip values (older JSON) or with fewer than 2 clips."""
    if not a or not b or len(a) != len(b) or len(a) < 2:
        return ""
    d = [x - y for x, y in zip(a, b)]
    return f"; per clip {statistics.mean(d):+.2f} +- {statistics.stdev(d) / math.sqrt(len(d)):.2f} dB (SE, {len(d)} clips)"


def format_table(r: dict) -> str:
    lines = ["| job | mode | PSNR | SSIM | PSNR free | disoccluded | out of frame | EPE (px) | EPE from last known | s/clip |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    floor_a = r.get("meter_floor_epe_anchor", {})
    for row in r["rows"]:
        if row["mode"] == "unguided":  # the motion meter's own floor first: the true frames measured
            lines.append(f"| {row['job']} | truth | - | 1.000 | - | - | - | {r['meter_floor_epe'][row['job']]:.2f} | "
                         f"{floor_a.get(row['job'], float('nan')):.2f} | - |")
        lines.append(f"| {row['job']} | {row['mode']} | {row['psnr']:.2f} | {row['ssim']:.3f} | {row['psnr_free']:.2f} | "
                     f"{row['psnr_disoccluded']:.2f} | {row['psnr_out_of_frame']:.2f} | {row['epe']:.2f} | "
                     f"{row.get('epe_anchor', float('nan')):.2f} | {row['seconds']:.2f} |")
    lines.append("")
    lines.append("Targets (issue 5):")
    by = {(x["job"], x["mode"]): x for x in r["rows"]}
    for job in JOBS:
        u, b = by[(job, "unguided")], by[(job, "both")]
        be, fe = by[(job, "both_estimated")], by[(job, "flow_only_estimated")]
        ratio = b["epe"] / max(u["epe"], 1e-9)
        floor = r["meter_floor_epe"][job] / max(u["epe"], 1e-9)
        ratio_a = b.get("epe_anchor", float("nan")) / max(u.get("epe_anchor", float("nan")), 1e-9)
        floor_ra = floor_a.get(job, float("nan")) / max(u.get("epe_anchor", float("nan")), 1e-9)
        gain = b["psnr"] - u["psnr"]
        paired = paired_difference(be.get("psnr_clips"), fe.get("psnr_clips"))
        lines.append(f"- {job}: EPE both/unguided {ratio:.2f} (<= {TARGETS['epe_ratio']}: "
                     f"{'met' if ratio <= TARGETS['epe_ratio'] else 'NOT met'}; the true frames score {floor:.2f}; "
                     f"from the last known frame {ratio_a:.2f}: {'met' if ratio_a <= TARGETS['epe_ratio'] else 'NOT met'}, "
                     f"true frames {floor_ra:.2f}); PSNR gain {gain:+.2f} dB "
                     f"(>= {TARGETS['psnr_gain']}: {'met' if gain >= TARGETS['psnr_gain'] else 'NOT met'}); "
                     f"estimated: both {be['psnr']:.2f} vs flow-only {fe['psnr']:.2f} dB "
                     f"({'met' if be['psnr'] >= fe['psnr'] else 'NOT met'}{paired})")
    for k, v in r["motion_scale"].items():
        dev = abs(v["guided"] / max(v["flow_only"], 1e-9) - 1)
        lines.append(f"- motion scale {k}: guided ratio {v['guided']:.3f}, flow-only {v['flow_only']:.3f} "
                     f"(within {dev * 100:.1f}%: {'met' if dev <= TARGETS['motion_scale_tol'] else 'NOT met'})")
    lines.append(f"- strength 0: max |diff to unguided| {r['noop_maxdiff']:.2e} "
                 f"({'met' if r['noop_maxdiff'] <= TARGETS['noop'] else 'NOT met'})")
    lines.append(f"- one clip (batch 1, {r['steps']} steps): {r['clip_seconds']:.2f} s "
                 f"({'met' if r['clip_seconds'] <= TARGETS['clip_seconds'] else 'NOT met'} <= 20 s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
