"""What every benchmark script shares: the thread setting, timing, bad input, notices and JSON output.

Importing this module sets ``OMP_WAIT_POLICY=PASSIVE`` (unless already set) before torch loads: on a shared
CPU, OpenMP threads that spin while waiting for a descheduled partner make small torch ops 10-20x slower,
and passive waiting changes nothing on an idle machine. So a script imports it before torch. torch, OpenCV,
tqdm and ``flow`` are imported by the functions that use them, as ``flow`` itself does with its optional
parts: ``make_docs.py``, which only writes text, stays a quick script without torch.

A script run as ``python benchmarks/NAME.py`` finds this module as ``_common`` (its folder is
``sys.path[0]``); imported from the repository root (``benchmarks.NAME``, or loaded from its file by a
test) it is ``benchmarks._common``. Each script says::

    try:
        import _common as common
    except ModuleNotFoundError:
        from benchmarks import _common as common
"""
from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# one module under both names it is imported by (``_common`` from a script, ``benchmarks._common`` from the
# repository root), so that UserError is one class whichever way a script or a library module reached it
sys.modules.setdefault("_common", sys.modules[__name__])
sys.modules.setdefault("benchmarks._common", sys.modules[__name__])

__all__ = ["UserError", "notice", "set_threads", "timed", "write_json", "write_text", "cli"]


class UserError(Exception):
    """Bad input to a benchmark: printed as one line (``PROG: error: MESSAGE``), exit status 2."""


def notice(msg: str) -> None:
    """``notice: MSG`` on stderr, above any tqdm progress bar (never on its line)."""
    from tqdm import tqdm

    tqdm.write(f"notice: {msg}", file=sys.stderr)


def set_threads(threads: int | None, *, opencv: bool = True, flush_denormal: bool = True) -> None:
    """torch's (and, with ``opencv``, OpenCV's) thread count when ``threads`` > 0; their defaults otherwise.
    With ``flush_denormal`` (the default), denormal floats are flushed to zero, which keeps tiny values from
    slowing CPU kernels down; a parity benchmark against a peer's own code leaves them as the peer has them."""
    import torch

    if threads and threads > 0:
        torch.set_num_threads(threads)
        if opencv:
            import cv2

            cv2.setNumThreads(threads)
    if flush_denormal:
        torch.set_flush_denormal(True)


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """``(fn()'s last result, median wall-clock seconds over repeat calls)``."""
    times, out = [], None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def sync(device) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing on the CPU. Timings around GPU work need it."""
    if device.type == "cuda":
        import torch  # this module loads before torch (module docstring)

        torch.cuda.synchronize(device)


def device_times(fn: Callable[[], Any], repeats: int, device, *, warmup: int = 1) -> tuple[Any, list[float]]:
    """``(fn()'s first result, wall-clock seconds of each of repeats timed calls)``: ``warmup`` calls first
    (the first gives the result), then each timed call between two :func:`sync` of ``device``."""
    out = fn()
    for _ in range(max(warmup - 1, 0)):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return out, times


def run_sections(fns: dict[str, Callable[[], Any]], sections, data: dict, path, *, t0: float, budget_s: float,
                 log: Callable[[str], None], reraise: bool = False, after: Callable[[], None] | None = None) -> dict:
    """Run ``fns[name]`` for each of ``sections`` into ``data["sections"]``, its seconds in ``data["seconds"]``,
    and rewrite ``path`` (JSON, atomic, folder made) after each, so a run cut short keeps what it finished. A
    section that fails is recorded in ``data["errors"]`` and the next one runs (``reraise``: it raises, as a
    tiny check should); one that would start after ``budget_s`` since ``t0`` is recorded as skipped.
    ``after``: called after each section (e.g. to free the GPU's cache). Returns ``data`` with its total."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in sections:
        if time.perf_counter() - t0 > budget_s:
            data["errors"][name] = f"skipped: the {budget_s:.0f} s budget was spent"
            continue
        s0 = time.perf_counter()
        try:
            data["sections"][name] = fns[name]()
        except Exception as e:  # the other sections' figures are kept; the error is part of the record
            data["errors"][name] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
            log(f"{name}: failed: {data['errors'][name]}")
            if reraise:
                raise
        finally:
            data["seconds"][name] = time.perf_counter() - s0
            if after is not None:
                after()
            write_json(path, data)
    data["seconds"]["total"] = time.perf_counter() - t0
    write_json(path, data)
    log(f"wrote {path} ({data['seconds']['total']:.0f} s)")
    return data


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` at ``path``, atomically: written to a temporary sibling and renamed, so a run cut short
    leaves the old file or none, never half of one."""
    from flow.atomic import atomic_path  # the project's one atomic writer (importing flow loads torch)

    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return path


def write_json(path: str | os.PathLike, payload: Any, *, indent: int = 1) -> Path:
    """``payload`` as JSON at ``path``, atomically (``write_text``)."""
    return write_text(path, json.dumps(payload, indent=indent))


def cli(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Decorates a script's ``main(argv) -> int``: a ``UserError`` is printed as one line on stderr
    (``benchmarks/NAME.py: error: ...``, as argparse words its own) and becomes exit status 2."""

    prog = f"benchmarks/{Path(main.__code__.co_filename).name}"

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2

    return wrapped
