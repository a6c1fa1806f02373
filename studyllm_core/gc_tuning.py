"""Keeping Python's cyclic garbage collector off the big, long-lived object graphs of torch,
sentence-transformers and Dagster.

CPython runs a full collection whenever enough new objects survive, and a full collection walks
every tracked object. Importing torch and sentence-transformers makes hundreds of thousands of
objects that live as long as the process, so the collections triggered during those imports grow
from 0.02 s to 0.35 s each: 1.2-1.5 s of every `studyllm sweep` or `demo` with the local model
(counted with `gc.callbacks`). Imports inside `collector_paused()` run with the collector off, and
what they built is then frozen (`gc.freeze()`), so later collections skip it too (pausing
without freezing saves little: the first collections afterwards walk it all anyway).

The price: objects alive at that moment are never examined by the cyclic collector again, so one
that later becomes garbage only through a reference cycle stays in memory. The model loads once
per process, normally near its start, so little is alive then besides what the imports made.

That trade is the process's to make, so library code only marks such a block with `heavy_imports()`,
which pauses and freezes only after an entry point (the `studyllm` console script, the Dagster code
location) has called `pause_collector_for_heavy_imports()`; in a notebook it does nothing.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # threads inside collector_paused(); the collector is off while it is above zero
_was_enabled = True
_heavy_imports_paused = False  # set by an entry point: `heavy_imports()` blocks pause and freeze


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the body (heavy imports, a model load) with the cyclic collector off, then freeze the
    objects that exist at the end. Safe to nest and to use from several threads at once."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.freeze()
                if _was_enabled:
                    gc.enable()


def pause_collector_for_heavy_imports() -> None:
    """Process policy, for entry points only: from now on `heavy_imports()` blocks run with the
    collector paused and freeze what they built."""
    global _heavy_imports_paused
    _heavy_imports_paused = True


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Mark a block that builds a large, permanent object graph (torch and a model, Dagster): run as
    `collector_paused()` when the entry point asked for it, as is otherwise."""
    if _heavy_imports_paused:
        with collector_paused():
            yield
    else:
        yield
