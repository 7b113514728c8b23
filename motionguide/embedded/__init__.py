"""The project's own small video model, which runs every job offline: it imports the plugin, never the
other way round.

* :mod:`~motionguide.embedded.scenes`, :mod:`~motionguide.embedded.data`: clips with known motion, rendered
  from photographs, and their ground-truth or estimated guidance;
* :mod:`~motionguide.embedded.network`: config, transformer, loss and sampler;
* :mod:`~motionguide.embedded.checkpoint`: save, load and verify;
* :mod:`~motionguide.embedded.adapters`: MoG adapters, their gates and the trust levels the gates are looked
  up by;
* :mod:`~motionguide.embedded.generation`: guided generation;
* :mod:`~motionguide.embedded.windows`: cutting a job's guidance into model windows;
* :mod:`~motionguide.embedded.recipes`: the training recipes and the stages of the shipped weights.
"""
from __future__ import annotations

from .adapters import GuidanceGates, attach_adapters, load_adapters, save_adapters
from .checkpoint import DEFAULT_ASSETS, load_embedded, save_embedded
from .generation import MODES, generate_guided
from .network import EmbeddedConfig, EmbeddedVideoModel
from .windows import generate_windows

__all__ = ["EmbeddedConfig", "EmbeddedVideoModel", "DEFAULT_ASSETS", "load_embedded", "save_embedded",
           "GuidanceGates", "attach_adapters", "load_adapters", "save_adapters", "MODES", "generate_guided",
           "generate_windows"]
