"""CPU throughput of ``motionguide train pipeline`` on a tiny random Wan image-to-video pipeline.

The tiny pipeline (``motionguide.testing.save_tiny_pipeline("wan")``: 2 blocks, 2 heads x 16) is written to a
temporary folder and trained on clips of ``../shared/data/videos/vtest.avi`` (the first 40 frames, cut to a
temporary file; random frames with a message when the data is missing), through the trainer's own entry
point (``motionguide.finetune.train_pipeline``: the shared loop, EMA, the final checkpoint and export).
Each row trains the MoG adapters plus a rank-4 LoRA, batch 1, and times the steps: from the start of the
first timed step to the start of the last, after ``--warmup`` untimed steps, so set-up, the VAE/text
encoding and the final checkpoint are not counted. The same run is repeated with the transformer's own
gradient checkpointing.

Usage::

    python benchmarks/train_pipeline.py [--steps 30] [--warmup 5] [--sizes 32x32x9,64x64x17] [--threads 0]
                                        [--json OUT]

Prints one row per (size, checkpointing): steps/s, ms/step, trainable parameters, the final loss, and the
checkpointing slowdown. ``OMP_WAIT_POLICY=PASSIVE`` is set before torch loads (a shared CPU).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

try:  # _common first: it sets OMP_WAIT_POLICY before torch loads
    import _common as common
except ModuleNotFoundError:
    from benchmarks import _common as common

import torch  # noqa: E402

from flow.video import read_video, write_video  # noqa: E402
from motionguide import testing  # noqa: E402
from motionguide.finetune import PipelineTrainConfig, train_pipeline  # noqa: E402
from motionguide.finetune.recipe import PipelineRecipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "videos" / "vtest.avi"


def _video(folder: Path) -> str:
    """A short training video: vtest's first 40 frames, or random frames when the data is missing."""
    folder.mkdir(parents=True, exist_ok=True)
    if DATA.is_file():
        frames, fps = read_video(DATA, max_frames=40)
        src = f"{DATA} (first 40 frames, 480x360)"
    else:
        common.notice(f"{DATA} not found; training on random frames instead")
        frames, fps = torch.rand(40, 3, 96, 128, generator=torch.Generator().manual_seed(0)), 10.0
        src = "random frames 128x96"
    write_video(folder / "clip.mp4", frames, fps)
    return src


def _timed_run(pipe_dir: Path, videos: Path, out: Path, *, size, frames, steps, warmup, ckpt) -> dict:
    starts: list[float] = []
    orig = PipelineRecipe.micro_losses  # what the loop calls at the start of each step

    def micro_losses(self, step, rank, generator, parts):
        starts.append(time.perf_counter())
        return orig(self, step, rank, generator, parts)

    PipelineRecipe.micro_losses = micro_losses
    try:
        cfg = PipelineTrainConfig(pipeline=str(pipe_dir), videos=str(videos), steps=warmup + steps + 1, out=str(out),
                                  frames=frames, size=size, clips=2, lr=1e-3, lora_rank=4, progress=False,
                                  checkpoint_every=10**6, gradient_checkpointing=ckpt)
        logs: list[str] = []
        res = train_pipeline(cfg, log=logs.append, notice=lambda m: None)
    finally:
        PipelineRecipe.micro_losses = orig
    timed = starts[warmup:]
    dt = (timed[-1] - timed[0]) / (len(timed) - 1)
    trainable = next((m.split("; ")[1].split()[0] for m in logs if "trainable parameters" in m), "?")
    return {"size": f"{size[1]}x{size[0]}", "frames": frames, "gradient_checkpointing": ckpt,
            "steps_per_s": 1.0 / dt, "ms_per_step": 1000.0 * dt, "timed_steps": len(timed) - 1,
            "trainable": int(trainable) if trainable.isdigit() else trainable, "final_loss": res["loss"]}


def _parse_sizes(text: str) -> list[tuple[tuple[int, int], int]]:
    out = []
    for item in text.split(","):
        w, h, n = (int(x) for x in item.lower().split("x"))
        out.append(((h, w), n))
    return out


@common.cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--sizes", default="32x32x9,64x64x17", help="WxHxFRAMES of each row's clips")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    common.set_threads(args.threads, opencv=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        testing.save_tiny_pipeline("wan", tmp / "tiny-wan")
        src = _video(tmp / "videos")
        for size, frames in _parse_sizes(args.sizes):
            for ckpt in (False, True):
                rows.append(_timed_run(tmp / "tiny-wan", tmp / "videos", tmp / f"run-{len(rows)}", size=size,
                                       frames=frames, steps=args.steps, warmup=args.warmup, ckpt=ckpt))
    print(f"motionguide train pipeline, tiny WanImageToVideoPipeline (2 blocks, 2 heads x 16), MoG adapters + "
          f"LoRA rank 4, batch 1; clips from {src}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    print()
    print("| clip (WxH, frames) | gradient checkpointing | steps/s | ms/step | trainable params | final loss |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}, {r['frames']} | {'yes' if r['gradient_checkpointing'] else 'no'} | "
              f"{r['steps_per_s']:.2f} | {r['ms_per_step']:.1f} | {r['trainable']} | {r['final_loss']:.4f} |")
    print()
    for a, b in zip(rows[::2], rows[1::2]):
        print(f"{a['size']}, {a['frames']} frames: gradient checkpointing costs {b['ms_per_step'] / a['ms_per_step']:.2f}x "
              f"the time per step")
    if args.json:
        common.write_json(args.json, {"rows": rows, "source": src, "torch": torch.__version__,
                                      "threads": torch.get_num_threads()}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
