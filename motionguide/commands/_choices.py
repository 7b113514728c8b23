"""The values the command line's parsers and first checks need, without importing the libraries.

``motionguide --help``, every command's ``--help`` and every argument error must print in well under a
second and a half, so building the parsers and checking the arguments cannot import torch, OpenCV or
diffusers (several seconds and about 1 GB). The choices and ranges they need are restated here from the
library modules that own them; ``tests/test_cli_startup.py`` checks each equals its owner's value, so the
two cannot drift apart. Nothing here imports more than the standard library.
"""
from __future__ import annotations

__all__ = [
    "ESTIMATORS", "DIS_PRESETS", "DEFAULT_DIS_PRESET", "BACKENDS", "DEFAULT_LIMIT_GB", "MODES",
    "IMAGE_SUFFIXES", "SPEED_RANGE", "MAX_EXTEND", "RECIPE_COMMANDS",
    "EMBEDDED_MODEL_FILES", "EMBEDDED_ADAPTER_FILES", "EMBEDDED_CONFIG_FIELDS", "RAFT_WEIGHT_SUFFIXES",
]

#: flow.estimators.available_estimators()
ESTIMATORS = ("dis", "farneback", "raft_small", "raft_large")
#: sorted(flow.estimators.DIS_PRESETS), flow.estimators.DEFAULT_DIS_PRESET
DIS_PRESETS = ("balanced", "fast", "medium", "quality", "swift", "ultrafast")
DEFAULT_DIS_PRESET = "balanced"
#: flow.interpolate.available_backends()
BACKENDS = ("auto", "ifnet", "dis", "ifnet+dis", "farneback", "raft_small", "raft_large")
#: flow.limits.DEFAULT_LIMIT_GB: --max-memory's default
DEFAULT_LIMIT_GB = 8.0
#: motionguide.embedded.generation.MODES: the jobs' --mode
MODES = ("unguided", "latent", "feature", "both", "training_free", "flow_only")
#: flow.io.IMAGE_SUFFIXES: the image files the commands read
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: motionguide.jobs.SPEED_RANGE, MAX_EXTEND: what speed's "needs --factor" and extend's "needs --frames" name
#: (the values themselves are checked by motionguide.job_options, which imports no heavy library either)
SPEED_RANGE = (0.25, 4.0)
MAX_EXTEND = 64
#: [stage_command(s) for s in motionguide.embedded.recipes.SHIPPED_RECIPE]: train --help's recipe
RECIPE_COMMANDS = (
    "motionguide train base --steps 1000 --out runs/base",
    "motionguide train adapters --steps 1000 --out runs/adapters --base runs/base/model",
    "motionguide train adapters --steps 1200 --out runs/adapters_ft --base runs/base/model "
    "--init runs/adapters/adapters --matched-p 0.9 --matched-loss psnr --lr 0.0005",
)
#: the files motionguide.embedded.checkpoint.load_embedded and .adapters.load_adapters require in a folder
EMBEDDED_MODEL_FILES = ("diffusion_pytorch_model.safetensors", "config.json", "embedded_config.json")
EMBEDDED_ADAPTER_FILES = ("motion_guidance.safetensors", "motion_guidance.json", "gates.safetensors")
#: the fields of motionguide.embedded.network.EmbeddedConfig: train --model-config's keys
EMBEDDED_CONFIG_FIELDS = ("height", "width", "num_frames", "patch_size", "num_layers", "num_heads", "head_dim",
                          "ffn_dim", "text_dim", "freq_dim", "shift", "steps", "t_min")
#: file endings of a RAFT checkpoint (flow.checkpoint.read_state_dict), told apart from torchvision's weight
#: names (C_T_V2) without importing torchvision
RAFT_WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin", ".ckpt", ".tar")
