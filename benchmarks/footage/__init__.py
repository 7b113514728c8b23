"""The real-footage benchmark as a library: clips cut from real videos, hold-out tasks with the methods that
run them, scoring against the held-out real frames, and the report (tables, targets, JSON).

``benchmarks/real_footage.py`` is its command line; ``benchmarks/ablation.py`` and ``benchmarks/gpu_embedded.py``
score their own rows with it. A script imports it as it imports ``_common`` (``benchmarks/_common.py``)::

    try:
        import _common as common
        import footage
    except ModuleNotFoundError:
        from benchmarks import _common as common, footage

Modules, each importing only those before it:

* ``clips``: ``Source``, ``Clip``, ``find_sources``, ``choose_starts``, ``read_clips``, ``DATA``;
* ``tasks``: ``Task``, ``make_tasks``, the modes (``MODES``, ``APPLIES``) and their methods (``build_methods``,
  ``job_method``, ``SharedInterpolator``, the peers and baselines);
* ``scoring``: ``Truth``, ``run_benchmark``, ``summarise``, ``paired``, ``all_paired``, ``fill_summary``,
  ``unseen_summary``;
* ``report``: ``format_tables``, ``format_targets``, ``build_result``.

Every name below is also an attribute of the package.
"""
from .clips import (CLIP_FRAMES, CLIPS, DATA, FRAME_FOLDER_FPS, MAX_SIZE, Clip, Source, choose_starts, find_sources,
                    read_clips)
from .report import (TARGET_EXTEND_SECONDS, TARGET_IFNET_MARGIN, TARGET_SLOWMO_RATIO, TARGET_TRAINING_FREE_MARGIN,
                     build_result, format_tables, format_targets)
from .scoring import (EXTRA_PAIRS, PAIRS, PSNR_CAP, SIZES, Truth, all_paired, fill_summary, finite_mean, paired,
                      run_benchmark, summarise, unseen_summary)
from .tasks import (APPLIES, EXTRA_MODES, FILL_MODES, JOBS, K_EXTEND, MODEL_MODES, MODES, N_EXTEND, TRANSFER_FRAMES,
                    Method, SharedInterpolator, Task, average_method, build_methods, constant_velocity_method,
                    fill_method, ifnet_method, job_method, make_tasks, minterpolate_method, raw_model_method,
                    repeat_last_method)

__all__ = [
    "CLIP_FRAMES", "CLIPS", "DATA", "FRAME_FOLDER_FPS", "MAX_SIZE", "Clip", "Source", "choose_starts", "find_sources",
    "read_clips",
    "APPLIES", "EXTRA_MODES", "FILL_MODES", "JOBS", "K_EXTEND", "MODEL_MODES", "MODES", "N_EXTEND", "TRANSFER_FRAMES",
    "Method", "SharedInterpolator", "Task", "average_method", "build_methods", "constant_velocity_method",
    "fill_method", "ifnet_method", "job_method", "make_tasks", "minterpolate_method", "raw_model_method",
    "repeat_last_method",
    "EXTRA_PAIRS", "PAIRS", "PSNR_CAP", "SIZES", "Truth", "all_paired", "fill_summary", "finite_mean", "paired",
    "run_benchmark", "summarise", "unseen_summary",
    "TARGET_EXTEND_SECONDS", "TARGET_IFNET_MARGIN", "TARGET_SLOWMO_RATIO", "TARGET_TRAINING_FREE_MARGIN",
    "build_result", "format_tables", "format_targets",
]
