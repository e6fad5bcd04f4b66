"""A one-line progress display on stderr, with no dependency.

Redrawn in place with ``\\r`` at most every ``MIN_REDRAW_SECONDS`` when the
stream is a terminal; when it is not (CI logs, pipes) it stays silent and
only the builder's final summary is printed, so logs are not flooded.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

MIN_REDRAW_SECONDS = 0.2  # 5 redraws a second: smooth to the eye, negligible cost
BAR_WIDTH = 30


class Progress:
    """Counts items done out of an optional ``total`` and draws a bar."""

    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = sys.stderr if stream is None else stream
        self._enabled = self._stream.isatty()
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self._enabled and now - self._last_draw >= MIN_REDRAW_SECONDS:
            self._last_draw = now
            self._draw(now)

    def phase(self, label: str) -> None:
        """Name a new phase (e.g. "writing shard 3/8") without resetting the count."""
        self.label = label
        if self._enabled:
            self._draw(time.perf_counter())

    def close(self) -> None:
        if self._enabled:
            self._draw(time.perf_counter())
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            line = f"{self.label} [{bar}] {self.done:,}/{self.total:,} {rate:,.0f}/s"
        else:
            line = f"{self.label} {self.done:,} {rate:,.0f}/s"
        self._stream.write(f"\r{line:<79.79}")
        self._stream.flush()
