"""A progress line on stderr for long work, shown only on a terminal (quiet in logs, CI and with --json)."""

from __future__ import annotations

import sys
import time


class Progress:
    """`Progress("embedding")(done, total)` redraws one line at most ten times a second."""

    def __init__(self, label: str, *, stream=None, enabled: bool | None = None, quiet: bool = False) -> None:  # noqa: ANN001
        """Shown when `enabled`; by default when the stream is a terminal and not `quiet` (a command's --json)."""
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = (not quiet and self.stream.isatty()) if enabled is None else enabled
        self._last = 0.0
        self._shown = False
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        pct = 100.0 * done / total if total else 100.0
        rate = done / max(now - self._start, 1e-9)
        self.stream.write(f"\r{self.label} {done:,}/{total:,} ({pct:5.1f}%) {rate:,.0f}/s ")
        self.stream.flush()
        self._shown = True

    def note(self, message: str, *, elapsed: bool = False) -> None:
        """One line of news (a finished step) on the terminal, below the progress line; nothing elsewhere.
        With `elapsed`, the line starts with the seconds since the progress began."""
        if not self.enabled:
            return
        self.close()
        if elapsed:
            message = f"{time.monotonic() - self._start:6.1f} s  {message}"
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
