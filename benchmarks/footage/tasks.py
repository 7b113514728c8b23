"""The hold-out tasks cut from a clip (the input a method gets, the real frames it is scored against) and
the methods that run them: the jobs of ``motionguide.jobs`` in each mode, the speed and extend peers and
baselines, and which jobs each mode runs on (``APPLIES``)."""
from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

try:  # ``_common`` with benchmarks/ on sys.path (a script run from there), else ``benchmarks._common``
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

import torch  # noqa: E402

from flow.estimators import get_estimator  # noqa: E402
from flow.interpolate import get_interpolator  # noqa: E402
from flow.io import read_image, write_image  # noqa: E402
from flow.warp import backward_warp, reverse_flow  # noqa: E402
from motionguide import jobs  # noqa: E402
from motionguide.embedded.windows import generate_windows  # noqa: E402
from motionguide.windows import resize_clip  # noqa: E402
from motionguide.warping import UNSEEN_FILLS, flow_only  # noqa: E402

from .clips import CLIP_FRAMES  # noqa: E402

JOBS = ("speed0.5", "speed0.25", "extend", "transfer")
MODEL_MODES = ("default", "both", "training_free", "unguided")
#: the warp's fill where no source sees a pixel (motionguide.warping.UNSEEN_FILLS), one row each
FILL_MODES = tuple(f"fill_{f}" for f in UNSEEN_FILLS)
MODES = ("default", "both", "training_free", "unguided", "flow_only", "ifnet_retime", "minterpolate",
         "constant_velocity", "repeat_last", "average") + FILL_MODES
#: informational, not a row of issue 17's schema (JSON "extra_rows"): the job's warp at the model's grid
#: (the model passed, mode flow_only), i.e. the guidance the model is given, to say what the model adds to it
EXTRA_MODES = ("flow_only_grid", "both_raw")
#: which jobs each mode runs on
APPLIES = {**{m: JOBS for m in MODEL_MODES + ("flow_only",) + EXTRA_MODES},
           **{m: ("speed0.5", "speed0.25") for m in ("ifnet_retime", "minterpolate", "average")},
           **{m: ("extend",) for m in ("constant_velocity", "repeat_last")},
           **{m: JOBS for m in FILL_MODES}}
K_EXTEND, N_EXTEND = 5, 4
TRANSFER_FRAMES = 8  # one window of the embedded model


@dataclass
class Task:
    """One job on one clip. ``inputs``: everything the method is given (the held-out frames are not in
    it); ``truth``: ``(T, 3, H, W)`` the real frame at every output index; ``generated``: the output
    indices that are scored (the held-out ones)."""

    job: str
    clip: str
    inputs: dict
    truth: torch.Tensor
    generated: list[int]
    kept: list[int] = field(default_factory=list)  # output indices that are input frames


def make_tasks(frames: torch.Tensor, clip: str = "clip", jobs_: tuple = JOBS) -> dict[str, Task]:
    """The four hold-out tasks on one clip ``(CLIP_FRAMES, 3, H, W)``."""
    if frames.shape[0] < CLIP_FRAMES:
        raise ValueError(f"a clip needs {CLIP_FRAMES} frames, got {frames.shape[0]}")
    fr = frames[:CLIP_FRAMES]
    out = {}
    for job in jobs_:
        if job.startswith("speed"):
            factor = float(job[len("speed"):])
            step = round(1 / factor)
            kept = list(range(0, CLIP_FRAMES, step))
            # .clone(): the method gets copies, never views of the truth it is scored against
            out[job] = Task(job, clip, {"clip": fr[kept].clone(), "factor": factor}, fr,
                            [t for t in range(CLIP_FRAMES) if t not in kept], kept)
        elif job == "extend":
            out[job] = Task(job, clip, {"clip": fr[:K_EXTEND].clone(), "frames": N_EXTEND}, fr,
                            list(range(K_EXTEND, K_EXTEND + N_EXTEND)), list(range(K_EXTEND)))
        elif job == "transfer":
            ref = fr[:TRANSFER_FRAMES]
            out[job] = Task(job, clip, {"reference": ref.clone(), "image": ref[0].clone()}, ref,
                            list(range(1, TRANSFER_FRAMES)), [0])
        else:
            raise ValueError(f"unknown job {job!r}; expected one of {JOBS}")
    return out


# ---------------------------------------------------------------------------------------------- methods
#: (job, task.inputs) -> (T, 3, h, w) output at any size, or (output, extra): never the truth. A method
#: named ``mode@size`` is scored at that size only; other methods at both sizes.
Method = Callable[[str, dict], "torch.Tensor | tuple[torch.Tensor, dict]"]


class SharedInterpolator:
    """The speed job's interpolator (``jobs.speed``'s default ``interpolator``), its passes shared by every
    speed row of a clip: ``intermediate(f0, f1, times)`` (the contract ``jobs.speed(interpolator=...)``
    documents) computed once per frame pair and times, copies handed out after that. Sharing changes no
    output (the pass is deterministic); it saves the IFNet pass at the input's size, which is most of a speed
    row's time. So that times stay honest, a reuse is charged the pass's measured time: :meth:`charge`
    returns what the calls since the last :meth:`charge` would have cost unshared."""

    def __init__(self):
        default = inspect.signature(jobs.speed).parameters["interpolator"].default
        self.inner = get_interpolator(default) if isinstance(default, str) else default
        self.description = getattr(self.inner, "description", repr(self.inner))
        self._cache: dict = {}
        self._charged = 0.0

    @staticmethod
    def _key(f0, f1, times) -> tuple:
        digest = hashlib.sha1()
        for f in (f0, f1):
            digest.update(str(tuple(f.shape)).encode())
            digest.update(f.detach().float().contiguous().cpu().numpy().tobytes())
        return digest.hexdigest(), tuple(float(t) for t in times)

    def intermediate(self, f0, f1, times, **kw):
        key = (self._key(f0, f1, times), tuple(sorted(kw.items())))
        if key not in self._cache:
            t0 = time.perf_counter()
            out = list(self.inner.intermediate(f0, f1, times, **kw))
            self._cache[key] = (out, time.perf_counter() - t0)
        else:
            self._charged += self._cache[key][1]
        return [type(r)(*(x.clone() for x in r)) if hasattr(r, "_fields") else tuple(x.clone() for x in r)
                for r in self._cache[key][0]]

    def __getattr__(self, name):  # anything else the job may ask: the interpolator itself
        return getattr(self.inner, name)

    def charge(self) -> float:
        c, self._charged = self._charged, 0.0
        return c

    def clear(self) -> None:
        self._cache.clear()


def job_method(model, seed: int = 0, shared: SharedInterpolator | None = None, **kw) -> Method:
    """The public job API (``motionguide.jobs``) with ``model`` and keyword arguments ``kw`` (none: the job's
    defaults); speed with ``shared`` as its interpolator when given; extra: the JobResult's confidence,
    flow-only warp and model share."""

    def run(job: str, i: dict):
        if job.startswith("speed"):
            r = jobs.speed(i["clip"], i["factor"], model=model, seed=seed,
                           **({"interpolator": shared} if shared is not None else {}), **kw)
        elif job == "extend":
            r = jobs.extend(i["clip"], i["frames"], model=model, seed=seed, **kw)
        else:
            r = jobs.transfer(i["reference"], i["image"], model=model, seed=seed, **kw)
        return r.frames, {"confidence": getattr(r, "confidence", None), "warped": r.warped,
                          "model_share": getattr(r, "model_share", None), "guidance": r.guidance}

    return run


def raw_model_method(model, seed: int = 0, shared: SharedInterpolator | None = None) -> Method:
    """``both_raw``: the job's guidance (``model=None``) generated by ``model`` in mode ``both`` at its size,
    guided by the input-resolution warp downscaled as the jobs guide it, and returned as it is."""
    guide = job_method(None, seed, shared, mode="flow_only")
    size = (model.config.height, model.config.width)

    def run(job: str, i: dict):
        extra = guide(job, i)[1]  # the job's guidance and its warp at the input's size, (T, 3, H, W)
        g, warp = extra["guidance"], extra["warped"].transpose(0, 1)[None]
        out = generate_windows(model, g.resized(size), mode="both", seed=seed, warp=resize_clip(warp, size))
        return out[0].transpose(0, 1)

    return run


def fill_method(fill: str, seed: int = 0, shared: SharedInterpolator | None = None) -> Method:
    """``fill_<fill>``: the job's warp (``model=None``) with ``fill`` where no source sees a pixel
    (``motionguide.warping.flow_only(guidance, unseen=fill)``); the same pixels as ``flow_only`` elsewhere."""
    guide = job_method(None, seed, shared, mode="flow_only")

    def run(job: str, i: dict):
        extra = guide(job, i)[1]
        return flow_only(extra["guidance"], unseen=fill)[0].transpose(0, 1)

    return run


def _retime(inputs: dict, between: Callable) -> torch.Tensor:
    """Slow motion from kept frames: ``between(a, b, ts) -> [(1, 3, H, W)]`` fills each gap."""
    kept = inputs["clip"]
    step = round(1 / inputs["factor"])
    ts = [j / step for j in range(1, step)]
    out = [kept[0]]
    for a, b in zip(kept[:-1], kept[1:]):
        out += [f[0] for f in between(a[None], b[None], ts)] + [b]
    return torch.stack(out)


def ifnet_method() -> Method | str:
    interp, reason = get_interpolator("auto", with_reason=True)
    if interp.name != "ifnet":
        return f"no RIFE weights installed ({reason or interp.description})"

    def run(job, inputs):
        return _retime(inputs, interp.interpolate)

    run.description = interp.description
    return run


def minterpolate_method() -> Method | str:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001 - any failure to find the binary means: skip this peer
        return f"imageio-ffmpeg's ffmpeg not available ({e})"
    def run(job, inputs):
        kept = inputs["clip"]
        step = round(1 / inputs["factor"])
        n_out = (kept.shape[0] - 1) * step + 1
        with tempfile.TemporaryDirectory() as d:
            # the last frame twice: minterpolate emits the frames between a and b only once it has seen a
            # frame after b
            for i, f in enumerate(list(kept) + [kept[-1]]):
                write_image(Path(d) / f"in{i}.png", f)
            # 1 fps in, `step` fps out: output j shows input time j / step
            subprocess.run([exe, "-v", "error", "-framerate", "1", "-i", str(Path(d) / "in%d.png"),
                            "-vf", f"minterpolate=fps={step}:mi_mode=mci", "-pix_fmt", "rgb24",
                            str(Path(d) / "out%d.png")], check=True, capture_output=True)
            return torch.stack([read_image(Path(d) / f"out{j + 1}.png") for j in range(n_out)])

    run.description = f"ffmpeg minterpolate mi_mode=mci ({exe})"
    return run


def average_method() -> Method:
    def run(job, inputs):
        return _retime(inputs, lambda a, b, ts: [(1 - t) * a + t * b for t in ts])

    return run


def constant_velocity_method() -> Method:
    est = get_estimator("dis")

    def run(job, inputs):
        clip, n = inputs["clip"], inputs["frames"]
        last = clip[-1:]
        velocity = -est(last, clip[-2:-1])  # where each pixel of the last frame goes in one frame
        out = list(clip)
        for k in range(1, n + 1):
            fwd = velocity * k
            back, hit = reverse_flow(fwd, 1.0)
            back = torch.where(hit > 1e-3, back, -fwd)  # holes: the plain reversed motion
            out.append(backward_warp(last, back)[0])
        return torch.stack(out)

    return run


def repeat_last_method() -> Method:
    def run(job, inputs):
        clip = inputs["clip"]
        return torch.cat([clip, clip[-1:].expand(inputs["frames"], -1, -1, -1)])

    return run


def build_methods(modes, *, seed: int = 0, models: dict | None = None, shared: SharedInterpolator | None = None
                  ) -> dict[str, Method]:
    """mode name -> method; unavailable peers are reported and left out. ``models``: mode -> loaded
    embedded model for the model modes (loaded here through ``jobs.load_models`` when not given);
    ``shared``: the speed rows' shared interpolator (every row but ``default``, which runs as the CLI does)."""
    unknown = [m for m in modes if m not in MODES + EXTRA_MODES]
    if unknown:
        raise common.UserError(f"unknown mode(s) {unknown}; expected some of {list(MODES + EXTRA_MODES)}")
    models = dict(models or {})
    out: dict[str, Method] = {}
    for m in modes:
        if m in MODEL_MODES and m not in models:
            models[m] = jobs.load_models() if m == "default" else jobs.load_models(mode=m)
        if m == "default":  # what the CLI does with no options: the job's defaults, the shipped model
            out[m] = job_method(models[m], seed)
        elif m in MODEL_MODES:
            # at the input's size the model fills what the confidence does not trust; at the model's size its
            # output as it is
            out[f"{m}@input"] = job_method(models[m], seed, shared, mode=m, output_size="input", fill="model")
            out[f"{m}@model"] = job_method(models[m], seed, shared, mode=m, output_size="model")
        elif m == "flow_only":
            out[m] = job_method(None, seed, shared, mode="flow_only")
        elif m == "flow_only_grid":
            grid = models.get("default") or jobs.load_models(mode="flow_only")
            out[m] = job_method(grid, seed, shared, mode="flow_only", output_size="model")
        elif m in FILL_MODES:
            out[m] = fill_method(m[len("fill_"):], seed, shared)
        elif m == "both_raw":
            out[m] = raw_model_method(models.get("both") or jobs.load_models(mode="both"), seed, shared)
        else:
            made = {"ifnet_retime": ifnet_method, "minterpolate": minterpolate_method, "average": average_method,
                    "constant_velocity": constant_velocity_method, "repeat_last": repeat_last_method}[m]()
            if isinstance(made, str):
                print(f"skip {m}: {made}", file=sys.stderr)
            else:
                out[m] = made
    return out

