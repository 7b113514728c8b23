"""Random-init configs and pipelines of the supported classes, built in code (tests, benchmarks, examples).

Transformers alone: ``build(name, size)`` returns the model and ``inputs(model, batch, grid)`` the keyword
arguments of one forward call on a latent grid ``(F, h, w)``. ``tiny``: 2 layers, 2 heads, head dim 16
(seconds on a CPU); ``mid``: width 512 (8 heads x 64), 4 layers, for overhead measurements where attention
dominates as it does in real models.

Complete pipelines (transformer, VAE, scheduler, T5 text encoder and tokenizer, all random-init):
``tiny_pipeline(arch)`` for ``arch`` in :data:`PIPELINES` (``wan``, ``cogvideox``, ``ltx``) and
``save_tiny_pipeline(arch, folder)``, whose folder loads with the pipeline class's own ``from_pretrained``
offline; ``tiny_call(arch)`` gives a size and frame count each one takes. The tokenizer is a small Unigram
vocabulary (letters, digits, punctuation) built in code (:func:`tiny_tokenizer`).

Published transformer configs at real size (:data:`REAL_CONFIGS`, for ``meta``-device checks and the GPU
benchmark): ``real_config(name)`` builds one, ``real_grid(name)`` and ``real_inputs(name, model)`` give the
latent/token grid and forward arguments of its pipeline's default video, ``layout_guidance`` a guidance of
one of the jobs' layouts. :class:`SavedBytes` with :func:`flash_attention_saved` counts the activation memory
autograd saves in a forward on ``meta`` (shapes, no values), :func:`layout_pairs` gives the feature hook's
token pairs for such a count.

Nothing is downloaded.
"""
from __future__ import annotations

from .pipelines import *  # noqa: F401,F403
from .pipelines import __all__ as _pipelines
from .real_sizes import *  # noqa: F401,F403
from .real_sizes import __all__ as _real_sizes
from .tiny import *  # noqa: F401,F403
from .tiny import __all__ as _tiny

__all__ = [*_tiny, *_pipelines, *_real_sizes]
