"""The options of ``motionguide train KIND``, one small function per set that several kinds share, and the
parser class of the kinds.

Each kind (``recipe``, ``base``, ``adapters``, ``pipeline``) is its own argparse sub-command holding only the
options it uses, so an option of another kind is an argparse error. :class:`KindParser` raises that error
(and every other argument error of a kind) as a :class:`motionguide.errors.UsageError` naming the kinds that
take the option, which :func:`motionguide.cli.main` prints on one line with exit status 2, as the commands'
own errors read. Building these parsers imports nothing heavy.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import UsageError
from ._outputs import add_overwrite_argument

__all__ = ["KindParser", "add_steps_options", "add_run_options", "add_init_option", "add_model_config_option",
           "add_adapter_options", "add_pipeline_inputs",
           "add_pipeline_options"]

#: what to do instead, for an option that a kind refuses where the reason is not obvious: (kind, flag) -> advice
_ADVICE = {
    **{("recipe", f): "each stage sets its own; use --steps-scale to shorten the stages, or train one stage alone"
       for f in ("--steps", "--lr", "--base", "--init")},
    ("adapters", "--model-config"): "train adapters takes the size of the --base model",
    ("base", "--steps-scale"): "give --steps N instead",
}


class KindParser(argparse.ArgumentParser):
    """The parser of one ``motionguide train`` kind: an argument error raises
    :class:`~motionguide.errors.UsageError` (one line, exit status 2 at the command line). An option of another kind, or an abbreviation
    that also fits another kind's option (``--step`` in ``train recipe`` is not ``--steps-scale``), is refused
    with the kinds that take it. :attr:`kinds` holds every kind's parser, filled in by the caller."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kinds: dict[str, KindParser] = {}

    @property
    def kind(self) -> str:
        return self.prog.rsplit(" ", 1)[-1]

    def _flags(self) -> set[str]:
        return {s for a in self._actions for s in a.option_strings}  # argparse keeps no public list

    def _elsewhere(self, name: str) -> list[str]:
        """The other kinds' flags that ``name`` is or abbreviates."""
        mine = self._flags()
        return sorted({f for k, p in self.kinds.items() if k != self.kind for f in p._flags()
                       if f.startswith(name) and f not in mine})

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        for a in args:
            if a == "--":
                break
            name = a.split("=", 1)[0]
            if name.startswith("--") and name not in self._flags() and self._elsewhere(name):
                self.error(f"unrecognized arguments: {a}")
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error("unrecognized arguments: " + " ".join(extras))
        return namespace, extras

    def error(self, message: str):
        raise UsageError("train", self._explained(message))

    def _explained(self, message: str) -> str:
        """argparse's message, with what to do: which kinds take an unrecognized option, the needed options
        with their values, or where the options are listed."""
        see = f"see 'motionguide train {self.kind} --help'"
        required = "the following arguments are required: "
        if message.startswith(required):
            by_flag = {s: a for a in self._actions for s in a.option_strings}
            needed = [f"{n} {by_flag[n].metavar}" if n in by_flag and by_flag[n].metavar else n
                      for n in message[len(required):].split(", ")]
            return f"train {self.kind} needs {', '.join(needed)}; {see}"
        if not message.startswith("unrecognized arguments: "):
            return f"{message}; {see}"
        hints = []
        for token in message.split(": ", 1)[1].split():
            name = token.split("=", 1)[0]
            if not name.startswith("--"):
                continue
            flags = [name] if any(name in p._flags() for p in self.kinds.values()) else self._elsewhere(name)
            for flag in flags:
                takers = [f"'train {k}'" for k, p in self.kinds.items() if flag in p._flags()]
                hint = f"{flag} is an option of {_joined(takers)}, not of 'train {self.kind}'"
                advice = _ADVICE.get((self.kind, flag))
                hints.append(hint + (f" ({advice})" if advice else ""))
        return f"{message}; " + ("; ".join(hints) if hints else see)


def _joined(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def add_steps_options(p: argparse.ArgumentParser, *, lr_default: str) -> None:
    """--steps (required) and --lr: the kinds that train one run (base, adapters, pipeline)."""
    p.add_argument("--steps", type=int, required=True, metavar="N",
                   help="total optimizer steps; a resumed run continues to N")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate [default: {lr_default}]")


def add_run_options(p: argparse.ArgumentParser, *, out_help: str, batch_default: str) -> None:
    """The options of every kind: the run folder, the batch, the seed, checkpoints and resuming, threads and
    the progress bar."""
    p.add_argument("--out", required=True, metavar="DIR", help=out_help)
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help=f"clips per step and process [default: {batch_default}]")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the clips, noise and initialisation")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="N", help="steps between checkpoints")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh even if DIR/checkpoint exists (with --overwrite: that replaces the run's outputs)")
    add_overwrite_argument(p, "outputs: train into an --out folder that holds files but no run to resume, or "
                              "start one afresh with --no-resume")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads [default: torch's choice]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_init_option(p: argparse.ArgumentParser, *, what: str) -> None:
    p.add_argument("--init", default=None, metavar="DIR", help=f"warm start from {what}")


def add_model_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-config", default=None, metavar="JSON",
                   help="EmbeddedConfig fields that size a new base model, e.g. '{\"num_layers\": 2}'")


def add_adapter_options(p: argparse.ArgumentParser) -> None:
    """The options of the embedded model's adapters: the base model and what the batches hold."""
    p.add_argument("--base", default=None, metavar="DIR", help="base model folder [default: assets/embedded/base]")
    p.add_argument("--matched-p", type=float, default=0.0, metavar="P",
                   help="share of batches noised from the guided reference (where guided sampling starts) "
                        "instead of from the true clip")
    p.add_argument("--matched-loss", choices=["velocity", "psnr"], default="velocity",
                   help="loss of those batches: the flow-matching velocity loss, or per-frame log MSE "
                        "(PSNR loss) of the predicted clip")
    p.add_argument("--extend-share", type=float, default=None, metavar="P",
                   help="share of batches with the continuation layouts (2-4 known first frames); the "
                        "others keep their ratios [default: 0.20; first frame only 0.35, in-betweening 0.45]")
    p.add_argument("--guide-scale", type=int, default=1, metavar="S",
                   help="render and guide the training clips at S times the model's size, then hand the "
                        "model the downscaled guidance and warp, as the jobs guide it from the input's size")


def add_pipeline_inputs(p: argparse.ArgumentParser) -> None:
    """The inputs of ``train pipeline`` (required): the pipeline and the videos."""
    p.add_argument("--pipeline", required=True, metavar="DIR",
                   help="the pipeline folder (save_pretrained's): WanImageToVideoPipeline, WanPipeline, "
                        "CogVideoXImageToVideoPipeline, LTXConditionPipeline or LTXImageToVideoPipeline")
    p.add_argument("--videos", required=True, metavar="DIR|FILE",
                   help="folder of training videos, each with an optional caption beside it (clip.mp4 + clip.txt, "
                        "UTF-8), or a manifest naming videos and captions: a CSV with video,prompt columns or JSONL "
                        "lines {\"video\": ..., \"prompt\": ...}, paths relative to it")


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    """The other options of ``train pipeline``, in groups: the clips, what trains, precision and processes,
    validation. Each defaults to None, which leaves :class:`motionguide.finetune.PipelineTrainConfig`'s
    default."""
    g = p.add_argument_group("clips")
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="frames per clip, a count the model takes (Wan, CogVideoX 4k+1; LTX 8k+1) "
                        "[default: the pipeline's own, e.g. 81 for Wan]")
    g.add_argument("--size", default=None, metavar="WxH",
                   help="clip size; frames of another size are scaled to cover it and center-cropped, with a notice "
                        "[default: the pipeline's own, e.g. 832x480 for Wan]")
    g.add_argument("--layouts", default=None, metavar="L,..",
                   help="the jobs' layouts: between (in-betweening from the first and last frames), extend "
                        "(continuation from the first frames), first (the first frame and the clip's own motion) "
                        "[default: between,extend,first]")
    g.add_argument("--clips", type=int, default=None, metavar="N",
                   help="clips cut from the videos (spread evenly), encoded once [default: 8]")
    g.add_argument("--stride", type=int, default=None, metavar="N", help="frames of the video between clip frames [default: 1]")
    g.add_argument("--flow", default=None, metavar="NAME",
                   help="flow estimator of the extend and first layouts (flow.estimators) [default: dis]")
    g.add_argument("--interpolator", default=None, metavar="NAME",
                   help="intermediate flows of the between layout (flow.interpolate) [default: auto]")
    g.add_argument("--prompt", default=None, metavar="TEXT",
                   help="the prompt of every clip without a caption of its own [default: empty]")
    g.add_argument("--buckets", default=None, metavar="WxHxF,..",
                   help="resolution and frame-count buckets (e.g. 832x480x81,480x832x81); each video trains in the "
                        "bucket of the nearest aspect among those it is long enough for, a batch comes from one "
                        "bucket [default: one, --size x --frames]")
    g.add_argument("--last-frame", action="store_true",
                   help="Wan: the between layout also conditions on the last frame (FLF2V; call the pipeline with "
                        "last_image)")
    g = p.add_argument_group("what trains")
    g.add_argument("--grad-accum", type=int, default=None, metavar="N",
                   help="micro-batches of --batch-size per optimizer step (gradient accumulation) [default: 1]")
    g.add_argument("--lora-rank", type=int, default=None, metavar="R",
                   help="also train a peft LoRA of this rank on the attention of --lora-blocks [default: no LoRA]")
    g.add_argument("--lora-targets", choices=["attn", "attn+ffn"], default=None,
                   help="layers of the LoRA: attention q, k, v, o; or also the feed-forward's two Linear layers "
                        "(DiffSynth-Studio's default) [default: attn]")
    g.add_argument("--lora-blocks", default=None, metavar="B,..",
                   help="'guided', 'all' or block indices [default: guided, the blocks with feature guidance]")
    g.add_argument("--train-blocks", type=int, default=None, metavar="N",
                   help="also unfreeze the first N blocks (MoG's selective fine-tuning) [default: 0]")
    g.add_argument("--feature-blocks", default=None, metavar="B,..",
                   help="blocks with feature-level guidance [default: the first half]")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY", help="EMA decay of the exported weights [default: 0.99]")
    g = p.add_argument_group("precision, memory and processes")
    g.add_argument("--mixed-precision", choices=["no", "bf16"], default=None,
                   help="bf16 autocast [default: bf16 on CUDA, no on the CPU]")
    g.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="the frozen transformer's and text encoder's dtype (the VAE keeps its family's: float32 for "
                        "Wan); bfloat16 needs --mixed-precision bf16 [default: bfloat16 with bf16, else float32]")
    g.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="the transformer's own gradient checkpointing (less activation memory, more time per step) "
                        "[default: on with CUDA]")
    g.add_argument("--cache", default=None, metavar="DIR",
                   help="where the VAE's and text encoder's outputs are kept (shareable between runs of the same "
                        "pipeline) [default: DIR/cache]")
    g.add_argument("--cache-only", action="store_true",
                   help="build the cache (every process its share of the clips) and stop")
    g.add_argument("--nccl-timeout", type=float, default=None, metavar="MIN",
                   help="minutes a process waits for the others (the cache build, validation) [default: 60]")
    g = p.add_argument_group("validation")
    g.add_argument("--validate-every", type=int, default=None, metavar="N",
                   help="steps between validations on held-out clips: their loss (DIR/metrics.csv) and "
                        "DIR/validation/step_N.mp4 with the pipeline's CFG [default: 0, none]")
    g.add_argument("--validation-clips", type=int, default=None, metavar="N",
                   help="clips held out of training for validation, at the end of the last videos, sharing no "
                        "frame with a training clip [default: 1 with --validate-every]")
    g.add_argument("--validate-steps", type=int, default=None, metavar="N",
                   help="denoising steps of a validation clip [default: 20]")
