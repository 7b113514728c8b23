"""The ``motionguide`` command line.

Each sub-command lives in its own module under :mod:`motionguide.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func``. ``main`` turns the expected errors
(:mod:`motionguide.errors`, ``ValueError``, missing or unreadable files, an output that exists or appeared
meanwhile, a folder another run holds, a full disk) into a one-line message and exit status 2, without a
traceback. No library module imports this one.

Building the parser imports no heavy library (torch, OpenCV, PyAV, diffusers, ...): the choices come from
:mod:`motionguide.commands._choices`, and each command imports what it runs when it runs, so ``--help`` and
argument errors print at once (``benchmarks/startup.py``).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from flow.atomic import guarded_outputs, install_signal_cleanup
from flow.diskfull import disk_full
from flow.locks import LockHeldError

from .errors import UsageError, UserError

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
    try:
        args = parser.parse_args(argv)
    except UsageError as e:  # a parser that reports argument errors in one line (train KIND)
        print(f"motionguide {e.command}: error: {e}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with guarded_outputs():
            rc = args.func(args)
    except (UserError, ValueError, FileNotFoundError, PermissionError, FileExistsError, LockHeldError) as e:
        # Expected failures: bad input, missing files or weights, an output in the way. One clear line, no
        # traceback; any other exception is a bug and keeps its traceback.
        from .commands._words import raised_in

        message = _in_flags(parser, args.command, _text(e), raised_in(e))
        print(f"motionguide {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        full = disk_full(e)
        if full is None:
            raise
        from .commands._outputs import disk_full_message

        print(f"motionguide {args.command}: error: {disk_full_message(full)}", file=sys.stderr)
        return 2
    return int(rc or 0)


def _in_flags(parser: argparse.ArgumentParser, command: str, message: str, raised_in: str | None = None) -> str:
    """The message with the library's parameter names replaced by the command's flags (``fps:`` -> ``--fps``);
    raised_in: the module that raised it, whose own parameter names are translated too."""
    from .commands._words import drop_library_advice, flag_names, in_flags

    message = drop_library_advice(message)
    sub = next((a.choices[command] for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return in_flags(message, flag_names(sub, command, raised_in)) if sub is not None else message


def _text(e: BaseException) -> str:
    """An error's message without Python's decoration: an OSError made with (errno, text, path) prints as
    "[Errno 17] text: 'path'"; the text says it already."""
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        name = e.filename
        return e.strerror if name is None or str(name) in e.strerror else f"{e.strerror}: {name}"
    return str(e)


if __name__ == "__main__":
    sys.exit(main())
