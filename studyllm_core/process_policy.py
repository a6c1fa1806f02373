"""Process-wide policy that only entry points apply: the `studyllm` console script (`cli.run`) and the
Dagster code location (`studyllm_pipeline.definitions`). Modules a notebook imports never change the
process's environment or its garbage collector; see `gc_tuning` for why the collector is paused around
heavy imports."""

from __future__ import annotations

import os

from studyllm_core.gc_tuning import pause_collector_for_heavy_imports

# The Hugging Face libraries read these once, when first imported: set before anything imports them.
OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def apply_process_policy() -> None:
    """Offline Hugging Face libraries (the packaged model is all studyllm loads; nothing may be
    downloaded) without progress bars, and the collector paused around heavy imports."""
    os.environ.update(OFFLINE_ENVIRONMENT)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    pause_collector_for_heavy_imports()
