"""The help formatter every ``motionguide`` command uses.

argparse's ``ArgumentDefaultsHelpFormatter`` appends "(default: X)" to every option, even when the help
already states the default, when the default is None, or when the option is required; and its plain
formatter re-wraps the epilog, which ruins example command lines. This one shows each default once, in
square brackets, only where it says something, and keeps the description's and epilog's line breaks.
"""
from __future__ import annotations

import argparse

__all__ = ["HelpFormatter"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds ``[default: X]`` to an option's help unless the help already names its default, the default is
    None or False (a flag), the option is required, or the argument is positional."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.required or not action.option_strings:
            return text
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction)):
            return text
        return f"{text} [default: %(default)s]"
