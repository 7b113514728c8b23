"""The ``motionguide`` command line.

Each sub-command lives in its own module under :mod:`motionguide.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func``. ``main`` turns the expected errors
(:mod:`motionguide.errors`, ``ValueError``, missing or unreadable files) into a one-line message and exit
status 2, without a traceback. No library module imports this one.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from flow.atomic import install_signal_cleanup

from .errors import UserError

# Sub-command modules, in the order --help lists them. A module that fails to import (an optional
# dependency missing) is reported when its command is used, not at start-up.
COMMAND_MODULES = [
    "motionguide.commands.flow_cmd",
    "motionguide.commands.interpolate_cmd",
    "motionguide.commands.retime_cmd",
    "motionguide.commands.jobs_cmd",
    "motionguide.commands.train_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="motionguide",
        description=(
            "Motion-aware video tools: optical flow (RAFT, DIS, Farneback), flow-based frame interpolation "
            "and retiming, and MoG-style motion guidance of video diffusion transformers "
            "(reference-motion transfer, speed change, extension)."
        ),
        epilog="Run 'motionguide COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # command not built yet
                continue
            raise
        mod.register(sub)
    return parser


def _version() -> str:
    from motionguide import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    install_signal_cleanup()  # SIGTERM removes partial outputs, as Ctrl-C does
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (UserError, ValueError, FileNotFoundError, PermissionError) as e:
        # Expected failures: bad input, missing files or weights. One clear line, no traceback; any other
        # exception is a bug and keeps its traceback.
        print(f"motionguide {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
