"""A private event loop on a daemon thread, behind the synchronous entry points of the services.

`asyncio.run` per call would build a new loop each time, and providers bind their HTTP clients to
a loop, so every synchronous call would open (and leak) a new client. One long-lived loop keeps
connections, in-flight de-duplication and rate limits shared by every synchronous call, from any
thread, including threads that already run an event loop of their own (Jupyter).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CANCEL_GRACE_S = 10.0  # how long an interrupted caller waits for the work to record its cancellation


class LoopThread:
    """Runs coroutines to completion on one background loop, started on first use."""

    def __init__(self, name: str = "studyllm-loop") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the background loop and return its result (its exception propagates).

        If the caller is interrupted (KeyboardInterrupt), the coroutine is cancelled and given a
        few seconds to record what it had in flight before the interrupt propagates.
        """
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                f"{self.name}: a synchronous method was called from async code on its own loop; await the async method instead"
            )
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        finished = threading.Event()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(lambda t: (_transfer(t, outcome), finished.set()))

        loop.call_soon_threadsafe(start)
        try:
            return outcome.result()
        except BaseException:
            if not finished.is_set():
                loop.call_soon_threadsafe(lambda: tasks and tasks[0].cancel())  # start() runs first: FIFO
                finished.wait(CANCEL_GRACE_S)
            raise

    def close(self) -> None:
        """Stop the loop (cancelling what still runs) and wait for its thread; `run` starts a new one."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        _stop(loop, thread)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                weakref.finalize(self, _stop, loop, thread)
            return self._loop


def _transfer(task: asyncio.Task[T], outcome: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        outcome.cancel()
    elif task.exception() is not None:
        outcome.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        outcome.set_result(task.result())


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _stop(loop: asyncio.AbstractEventLoop | None, thread: threading.Thread | None) -> None:
    if loop is None or thread is None or loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    if thread is not threading.current_thread():
        thread.join(CANCEL_GRACE_S)
