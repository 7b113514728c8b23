"""Error messages in the words of the command line: option flags, not the library's parameter names.

The library's checks name their parameters (``fps: ...``, ``ts: ...``, ``checkpoint_every must be ...``),
which is right for a Python caller; a command line user typed ``--fps``, ``--t``, ``--checkpoint-every``.
:func:`in_flags` rewrites a message with the flags of the command that failed, read from its parser, so
every command gets it without restating each message.
"""
from __future__ import annotations

import argparse
import re

__all__ = ["drop_library_advice", "flag_names", "in_flags", "raised_in"]

# keyword arguments of a library's own call that its errors advise, which a command line user cannot pass
_ADVICE = r"local_files_only|ignore_mismatched_sizes|low_cpu_mem_usage|weights_only=False|trust_remote_code"

#: library parameter names whose option has another name: (command, parameter) -> flag
_ALIASES = {("interpolate", "ts"): "--t", ("retime", "ts"): "--t"}
#: plain words that are a command's option only where that command's library call takes them as they are
#: (retime_video(fps=, speed=, frames=), get_interpolator(weights=)); elsewhere "frames:" may name a tensor
_WORDS = {"retime": ("fps", "speed", "frames", "weights"), "interpolate": ("weights",), "flow": ("weights",)}
#: library parameters by the module whose check raised the error: module -> {parameter: flag}. A plain word
#: means one thing per module: ``frames`` is a job's --frames in motionguide.jobs and .job_options,
#: --pipeline-frames in motionguide.pipeline_job, and a tensor in motionguide.guidance (left as it is). A flag
#: applies only where the failing command has it.
_SCOPED = {
    "motionguide.job_options": {"motion_scale": "--motion-scale", "strength": "--strength", "steps": "--steps",
                                "seed": "--seed", "mode": "--mode", "flow": "--flow", "output_size": "--output-size",
                                "fill": "--fill", "factor": "--factor", "frames": "--frames", "damping": "--damping"},
    "motionguide.jobs": {"frames": "--frames", "factor": "--factor", "mode": "--mode", "output_size": "--output-size",
                         "composite": "--composite"},
    "motionguide.pipeline_job": {"size": "--pipeline-size", "frames": "--pipeline-frames", "device": "--device",
                                 "dtype": "--dtype", "offload": "--offload", "vae_tiling": "--vae-tiling",
                                 "adapter": "--adapters", "name": "--pipeline"},
}


def flag_names(parser: argparse.ArgumentParser, command: str = "", raised_in: str | None = None) -> dict[str, str]:
    """``{parameter: its long flag}`` of ``command``'s options whose names cannot mean anything else: every
    ``snake_case`` one (``checkpoint_every`` -> ``--checkpoint-every``), the plain words of :data:`_WORDS`,
    the aliases, and the parameters of the library module ``raised_in`` (:data:`_SCOPED`, where the error
    came from: :func:`raised_in`) whose flag the command has; a command with sub-commands of its own
    (``train KIND``) gives theirs."""
    names, flags = {}, set()
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names.update(flag_names(sub, command, raised_in))
            continue
        longs = [s for s in action.option_strings if s.startswith("--")]
        flags.update(longs)
        if longs and ("_" in action.dest or action.dest in _WORDS.get(command, ())):
            names[action.dest] = longs[0]
    names.update({p: f for (c, p), f in _ALIASES.items() if c == command})
    names.update({p: f for p, f in _SCOPED.get(raised_in, {}).items() if f in flags})
    return names


def raised_in(error: BaseException) -> str | None:
    """The name of the module whose code raised ``error`` (its traceback's innermost frame), or None."""
    tb = error.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__")


def in_flags(message: str, names: dict[str, str]) -> str:
    """``message`` with a leading ``name:`` and every ``snake_case`` parameter name of ``names`` replaced by
    its flag.

    >>> in_flags("fps: 5000 is above the limit", {"fps": "--fps"})
    '--fps 5000 is above the limit'
    >>> in_flags("steps and checkpoint_every must be >= 1, got 5, 0", {"checkpoint_every": "--checkpoint-every"})
    'steps and --checkpoint-every must be >= 1, got 5, 0'
    >>> in_flags("ts: every t must lie strictly between 0 and 1", {"ts": "--t"})
    '--t: every t must lie strictly between 0 and 1'
    >>> in_flags("or pass a checkpoint path (weights='/path/flownet.pkl')", {"weights": "--weights"})
    'or pass a checkpoint path (--weights /path/flownet.pkl)'
    >>> in_flags("ask for fewer (for slow motion, use speed, e.g. 0.25)", {"speed": "--speed"})
    'ask for fewer (for slow motion, use --speed, e.g. 0.25)'
    >>> in_flags("frames=6: takes 4k+1 frames per call; pass frames=None", {"frames": "--pipeline-frames"})
    '--pipeline-frames 6: takes 4k+1 frames per call; drop --pipeline-frames'
    >>> in_flags("size 32x32: runs at 48x32 only", {"size": "--pipeline-size"})
    '--pipeline-size 32x32: runs at 48x32 only'
    >>> in_flags("to fit: a smaller `size`, vae_tiling=True", {"size": "--pipeline-size", "vae_tiling": "--vae-tiling"})
    'to fit: a smaller --pipeline-size, --vae-tiling'
    """
    # "size 32x32: ..." (the parameter and the value it had) reads "--pipeline-size 32x32: ..."
    message = re.sub(r"^(\w+)(?= [^\s:]+: )", lambda k: names.get(k[1], k[1]), message)
    m = re.match(r"(\w+):(\s)", message)
    if m and m[1] in names:
        rest = message[m.end():]
        # "fps: 5000 is ..." reads "--fps 5000 is ..."; "fps: expected ..." keeps its colon
        sep = " " if re.match(r"[-+\d.]", rest) else ":" + m[2]
        message = names[m[1]] + sep + rest
    # "pass frames=None" (leave the argument out) reads "drop --pipeline-frames"
    message = re.sub(r"\bpass (\w+)=(None|False)\b", lambda k: f"drop {names[k[1]]}" if k[1] in names else k[0],
                     message)
    # "weights='/path/flownet.pkl'", "frames=6", "vae_tiling=True" (a keyword argument) read
    # "--weights /path/flownet.pkl", "--frames 6", "--vae-tiling"
    message = re.sub(r"(?<![\w-])(\w+)=('[^']*'|\"[^\"]*\"|[\w.+-]+)", lambda k: k[0] if k[1] not in names else
                     names[k[1]] if k[2] == "True" else f"{names[k[1]]} {k[2][1:-1] if k[2][0] in chr(34) + chr(39) else k[2]}",
                     message)
    # "a smaller `size`" (a parameter named in a sentence) reads "a smaller --pipeline-size"
    message = re.sub(r"`(\w+)`", lambda k: names.get(k[1], k[0]), message)
    # "use speed, e.g. 0.25" names the option to use
    message = re.sub(r"\buse (\w+)\b", lambda u: f"use {names[u[1]]}" if u[1] in names else u[0], message)
    for dest, flag in names.items():
        if "_" in dest:
            message = re.sub(rf"(?<![\w.\-/]){re.escape(dest)}(?![\w.\-/])", flag, message)
    return message


def drop_library_advice(message: str) -> str:
    """``message`` without the sentences in which a library advises arguments of its own call (diffusers'
    ``local_files_only=False``, ``ignore_mismatched_sizes=True``, torch's ``weights_only=False``, which would
    load an untrusted pickle) or points to its issue tracker, and without a quoted error's class name.

    >>> drop_library_advice("cannot read X (ValueError: shapes differ. If you want to, pass "
    ...                     "`ignore_mismatched_sizes=True`. For more information, see also: https://x.y as an "
    ...                     "example.); train one")
    'cannot read X (shapes differ.); train one'
    >>> drop_library_advice("not cached and traffic is disabled. To enable look-ups, pass 'local_files_only=False' as input.")
    'not cached and traffic is disabled.'
    """
    message = re.sub(rf"\s*[^.;()]*({_ADVICE})[^.;()]*\.?", "", message)
    message = re.sub(r"\s*For more information, see( also)?:? \S+( as an example)?\.?", "", message)
    return re.sub(r"\((?:[A-Z]\w*(?:Error|Exception)): ", "(", message)
