"""Start-up of the command line: building the parsers imports no heavy library, and the light constants
the parsers use equal the library values they restate.

The time itself is measured by ``python benchmarks/startup.py`` (median of 5 fresh processes), not here:
a timed test would fail on a busy machine. What makes start-up fast is checked instead, in one subprocess:
after ``motionguide.cli`` is imported and every parser built (and every ``--help`` formatted), none of the
heavy libraries is in ``sys.modules``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# numpy (0.1 s) may load for a value check: flow.sniff reads a file's first bytes with it
HEAVY = ("torch", "cv2", "av", "diffusers", "transformers", "peft", "accelerate", "matplotlib", "skimage",
         "safetensors", "torchvision", "kornia", "scipy", "PIL", "tqdm")

_CHILD = r"""
import io, json, sys, contextlib
from motionguide.cli import build_parser, main
parser = build_parser()
def subs(p):
    return next((a.choices for a in p._actions if a.__class__.__name__ == "_SubParsersAction"), {})
sub = subs(parser)
for p in sub.values():
    p.format_help()
    for kind in subs(p).values():  # train KIND --help
        kind.format_help()
parser.format_help()
codes = {}
for argv in (["speed", "--demo", "--factor", "9", "-o", "x.mp4"], ["extend", "--demo", "--frames", "0", "-o", "x.mp4"],
             ["transfer", "--demo", "--strength", "2", "-o", "x.mp4"],
             ["train", "base", "--steps", "1", "--batch-size", "0", "--out", "r"], ["flow", "a.png"],
             ["train", "recipe", "--steps", "1", "--out", "r"], ["train", "pipeline", "--out", "r"],
             ["retime", "in.mp4", "-o", "o.mp4", "--fps", "5000"]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            codes[" ".join(argv[:2])] = main(argv)
        except SystemExit as e:
            codes[" ".join(argv[:2])] = e.code
print(json.dumps({"heavy": [m for m in HEAVY if m in sys.modules], "commands": sorted(sub),
                  "kinds": sorted(subs(sub["train"])), "codes": codes}))
"""


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def test_parsers_help_and_argument_errors_import_no_heavy_library(tmp_path):
    code = f"HEAVY = {HEAVY!r}\n" + _CHILD
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["heavy"] == [], f"building the CLI imported {res['heavy']}"
    assert res["commands"] == sorted(["flow", "interpolate", "retime", "transfer", "speed", "extend", "train"])
    assert res["kinds"] == sorted(["recipe", "base", "adapters", "pipeline"])
    # argument errors (argparse's and the commands' own value checks) exit 2 without the libraries
    assert set(res["codes"].values()) == {2}, res["codes"]


def test_python_dash_m_motionguide_prints_help(tmp_path):
    r = subprocess.run([sys.executable, "-m", "motionguide", "--help"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage: motionguide" in r.stdout and "retime" in r.stdout


def test_light_choices_equal_the_library_values():
    from flow.estimators import DEFAULT_DIS_PRESET, DIS_PRESETS, available_estimators
    from flow.interpolate import available_backends
    from flow.interpolate.memory import DEFAULT_LIMIT_GB
    from flow.io import IMAGE_SUFFIXES
    from motionguide.commands import _choices as c
    from motionguide.embedded.generation import MODES
    from motionguide.embedded.recipes import SHIPPED_RECIPE, stage_command
    from motionguide.jobs import MAX_EXTEND, SPEED_RANGE

    assert c.ESTIMATORS == tuple(available_estimators())
    assert c.DIS_PRESETS == tuple(sorted(DIS_PRESETS)) and c.DEFAULT_DIS_PRESET == DEFAULT_DIS_PRESET
    assert c.BACKENDS == tuple(available_backends()) and c.DEFAULT_LIMIT_GB == DEFAULT_LIMIT_GB
    assert c.MODES == tuple(MODES) and c.IMAGE_SUFFIXES == tuple(IMAGE_SUFFIXES)
    assert c.SPEED_RANGE == tuple(SPEED_RANGE) and c.MAX_EXTEND == MAX_EXTEND
    assert c.RECIPE_COMMANDS == tuple(stage_command(s) for s in SHIPPED_RECIPE)
    import dataclasses

    from flow.checkpoint import read_state_dict  # noqa: F401 - the reader the RAFT suffixes are for
    from motionguide.embedded import adapters, checkpoint
    from motionguide.embedded.network import EmbeddedConfig

    assert c.EMBEDDED_MODEL_FILES == checkpoint._BASE_FILES
    assert c.EMBEDDED_ADAPTER_FILES == adapters._PLUGIN_FILES + (adapters.GATES_FILE,)
    assert c.EMBEDDED_CONFIG_FIELDS == tuple(f.name for f in dataclasses.fields(EmbeddedConfig))
