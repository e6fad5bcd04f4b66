"""The root and the C allocator: give request-sized buffers back to the OS.

What lives here: ``Allocator``, the root's two calls into glibc's malloc
(through ctypes; a no-op elsewhere, e.g. musl). What does not: counting bytes
in flight (``root.policies.admission``) or holding fewer copies of a payload
(``root.wire`` and ``root.transport``).

Why: a request body of a few MiB passes through several buffers (grpc's
receive slices, the Python bytes, each leaf request and its copy in grpc's
send path). glibc serves allocations above its mmap threshold (128 KiB) with
mmap and returns them on free, but it *raises* that threshold to the size of
every mmapped block freed (up to 32 MiB), so after the first 4 MiB request
every later one comes from the heap arenas, and freed arena memory mostly
stays in the process: RSS stayed 600 MB above its start after 32 concurrent
4 MiB requests (issue 13). Two calls fix that:

- ``mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)`` at start: fixing the
  threshold turns the raising off, so every large buffer is mmapped and
  unmapped on free. Small allocations (every normal request) are untouched.
- ``malloc_trim(0)`` after a large request, when no other large one is in
  flight: grpc assembles a large message from many small slices, which do
  live in the arenas; trimming returns their free pages. Not every slice is
  free yet when the handler ends (grpc frees the received message once the
  handler has returned, a losing attempt's buffers once its cancel lands),
  so a second trim follows ``TRIM_AGAIN_SECONDS`` later if still none is in
  flight (RSS was once seen 13 MiB, 20%, above its start in CI; that rare case
  is what this aims at, not yet shown to be fixed by it).

Measured with ``scatter bench memory`` (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from typing import Any

__all__ = ["LARGE_REQUEST_BYTES", "MMAP_THRESHOLD", "TRIM_AGAIN_SECONDS", "Allocator"]

log = logging.getLogger("scatter.root")

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's own default, now fixed instead of raised to each freed block's size.
MMAP_THRESHOLD = 128 * 1024
# A request this large is worth a trim when it ends: trimming walks every arena
# (tens of microseconds), nothing next to copying a MiB.
LARGE_REQUEST_BYTES = 1024 * 1024
# The second trim after the last large request: long enough for grpc to free what the
# request's calls still held, short next to a client's next burst.
TRIM_AGAIN_SECONDS = 0.5


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None  # not glibc
    return libc


class Allocator:
    """The root's allocator settings; ``configure()`` once at start, ``after_large_request()`` as they end."""

    def __init__(self, large_in_flight: int = 0) -> None:
        self._libc = _libc()
        self.large_in_flight = large_in_flight
        self.trims = 0
        self._again_pending = False

    @property
    def available(self) -> bool:
        return self._libc is not None

    def configure(self) -> None:
        if self._libc is None:
            log.info("not glibc: the allocator is left as it is")
            return
        self._libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)

    def large_request_started(self) -> None:
        self.large_in_flight += 1

    def large_request_done(self) -> None:
        """One large request ended: trim now if it was the last, and again a moment later (on the
        running event loop; a caller without one gets the first trim only)."""
        self.large_in_flight -= 1
        if self.large_in_flight > 0 or self._libc is None:
            return
        self._trim()
        if not self._again_pending:
            with contextlib.suppress(RuntimeError):  # no running loop
                asyncio.get_running_loop().call_later(TRIM_AGAIN_SECONDS, self._trim_again)
                self._again_pending = True

    def _trim_again(self) -> None:
        self._again_pending = False
        if self.large_in_flight == 0:
            self._trim()

    def _trim(self) -> None:
        self._libc.malloc_trim(0)
        self.trims += 1
