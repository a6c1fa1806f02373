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
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0  # threads inside collector_paused(); the collector is off while it is above zero
_was_enabled = True


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
