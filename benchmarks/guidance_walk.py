"""The walk of a job's guidance through the code: which project files the plugin's code enters, and from how
many distinct call sites, for one ``speed`` and one ``extend`` job at the input's size (``model=None``, the
jobs' default path).

A call counts when a function in ``motionguide/`` calls into another project file (``flow/`` or
``motionguide/``); the same call site inside a loop (one call per frame or source) counts once. The figure
a reader meets is the number of places a file is entered from, not how often a loop repeats them.

    python benchmarks/guidance_walk.py [--size WxH] [--frames N] [--json OUT]
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

try:
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

REPO = Path(__file__).resolve().parents[1]


def _project(filename: str) -> str | None:
    try:
        rel = Path(filename).resolve().relative_to(REPO)
    except ValueError:
        return None
    return rel.as_posix() if rel.parts[0] in ("flow", "motionguide") else None


def walk(fn) -> dict[str, int]:
    """``{file: distinct call sites in motionguide/ code that enter it}`` while ``fn()`` runs."""
    sites: set[tuple[str, int, str]] = set()

    def tracer(frame, event, arg):
        if event == "call" and frame.f_back is not None:
            callee, caller = _project(frame.f_code.co_filename), _project(frame.f_back.f_code.co_filename)
            if callee and caller and caller != callee and caller.startswith("motionguide/"):
                sites.add((caller, frame.f_back.f_lineno, callee))
        return None

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return dict(collections.Counter(callee for _, _, callee in sites).most_common())


@common.cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="64x48", help="WxH of the synthetic clip (default 64x48)")
    ap.add_argument("--frames", type=int, default=5, help="input frames (default 5)")
    ap.add_argument("--json", default=None, help="also write the counts as JSON")
    args = ap.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise common.UserError(f"--size: expected WxH in pixels (e.g. 64x48), got {args.size!r}") from None
    if w < 16 or h < 16 or args.frames < 2:
        raise common.UserError(f"--size at least 16x16 and --frames at least 2, got {args.size} and {args.frames}")
    common.set_threads(1)
    import torch

    from motionguide import jobs

    clip = torch.rand(args.frames, 3, h, w, generator=torch.Generator().manual_seed(0))
    runs = {"speed 0.5": lambda: jobs.speed(clip, 0.5, model=None, interpolator="dis"),
            "extend 4": lambda: jobs.extend(clip, 4, model=None)}
    result = {}
    for name, fn in runs.items():
        counts = walk(fn)
        result[name] = counts
        print(f"{name}: {len(counts)} files entered from motionguide/ code, most entries {max(counts.values())}")
        for f, n in counts.items():
            print(f"  {n:3d}  {f}")
    if args.json:
        common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
