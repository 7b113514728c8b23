"""Start-up time of the command line: ``--help`` and argument errors, before any work.

Runs each command line below in a fresh process, ``--repeat`` times (default 5), and prints the median wall
time and the peak resident memory (ru_maxrss of the child, from ``os.wait4``) of each:

* ``motionguide --help`` and ``python -m motionguide --help``;
* ``motionguide COMMAND --help`` for every command;
* one argument error per command (argparse's: a missing required option, or a value out of range that the
  command checks before any work, e.g. ``interpolate a.png b.png --t 2`` on two real PNG files), which must
  print one line and exit 2.

The target (issue 23) is a median under 1.5 s for each line on the project's machine; the last line says
whether every median is under it. The console script ``motionguide`` next to this Python is used when it is
installed, else ``python -m motionguide``; the children import the checkout this file is in.

Usage::

    python benchmarks/startup.py [--repeat 5] [--json OUT] [--only help]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 1.5

COMMANDS = ("flow", "interpolate", "retime", "transfer", "speed", "extend", "train")


def _png(path: Path, w: int = 8, h: int = 8) -> None:
    """A tiny grey PNG, written with the standard library (the benchmark imports nothing heavy itself)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([128]) * w for _ in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _cases(tmp: Path) -> list[tuple[str, list[str], int]]:
    """(label, argv after the program, expected exit status)."""
    a, b = tmp / "a.png", tmp / "b.png"
    _png(a)
    _png(b)
    cases = [("--help", ["--help"], 0)]
    cases += [(f"{c} --help", [c, "--help"], 0) for c in COMMANDS]
    cases += [
        ("flow (no -o)", ["flow", str(a), str(b)], 2),
        ("interpolate --t 2", ["interpolate", str(a), str(b), "-o", str(tmp / "m.png"), "--t", "2"], 2),
        ("retime (no --fps)", ["retime", "in.mp4", "-o", str(tmp / "o.mp4")], 2),
        ("transfer --mode bad", ["transfer", "--demo", "-o", str(tmp / "o.mp4"), "--mode", "bad"], 2),
        ("speed --factor 9", ["speed", "--demo", "--factor", "9", "-o", str(tmp / "o.mp4")], 2),
        ("extend --frames 0", ["extend", "--demo", "--frames", "0", "-o", str(tmp / "o.mp4")], 2),
        ("train --batch-size 0", ["train", "base", "--steps", "1", "--batch-size", "0", "--out", str(tmp / "r")], 2),
    ]
    return cases


def _program() -> list[str]:
    script = Path(sys.executable).with_name("motionguide")
    return [str(script)] if script.exists() else [sys.executable, "-m", "motionguide"]


def _measure(argv: list[str], env: dict, repeat: int) -> dict:
    walls, peak, rc, last = [], 0.0, None, ""
    for _ in range(repeat):
        t = time.perf_counter()
        with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
            proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=fo, stderr=fe)
            _, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own rusage
            walls.append(time.perf_counter() - t)
            proc.returncode = rc = os.waitstatus_to_exitcode(status)
            fo.seek(0)
            fe.seek(0)
            out, err = fo.read(), fe.read()
        peak = max(peak, usage.ru_maxrss / 1024)  # Linux: KiB
        lines = (err or out).decode(errors="replace").strip().splitlines()
        last = lines[-1] if lines else ""
    return {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "peak_rss_mb": peak, "rc": rc, "last_line": last}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per command line (the median is printed)")
    ap.add_argument("--only", choices=("help", "errors"), default=None, help="only the --help lines or the errors")
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    prog = _program()
    tmp = Path(tempfile.mkdtemp(prefix="mg_startup_"))
    try:
        cases = _cases(tmp)
        rows = [("python -m motionguide --help", [sys.executable, "-m", "motionguide", "--help"], 0)]
        rows += [(f"motionguide {label}", prog + args_, want) for label, args_, want in cases]
        if args.only == "help":
            rows = [r for r in rows if r[0].endswith("--help")]
        elif args.only == "errors":
            rows = [r for r in rows if not r[0].endswith("--help")]
        print(f"start-up of {' '.join(Path(p).name for p in prog)}: median of {args.repeat} fresh processes "
              f"(target {TARGET_S} s)")
        print(f"{'command line':<44} {'median s':>9} {'min s':>7} {'max s':>7} {'peak MB':>8}  rc")
        results = {}
        for label, cmd, want in rows:
            r = _measure(cmd, env, args.repeat)
            results[label] = r
            flag = "" if r["rc"] == want else f"  (expected rc {want}: {r['last_line'][:80]})"
            print(f"{label:<44} {r['median_s']:9.2f} {r['min_s']:7.2f} {r['max_s']:7.2f} "
                  f"{r['peak_rss_mb']:8.0f}  {r['rc']}{flag}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    worst = max(results.values(), key=lambda r: r["median_s"])
    peak = max(r["peak_rss_mb"] for r in results.values())
    ok = worst["median_s"] < TARGET_S
    print(f"slowest median {worst['median_s']:.2f} s, peak RSS {peak:.0f} MB: "
          f"{'every median under' if ok else 'NOT all under'} {TARGET_S} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"target_s": TARGET_S, "repeat": args.repeat, "results": results},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
