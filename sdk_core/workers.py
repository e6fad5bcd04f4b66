"""``Workers``: the threads a sync handler runs on, and the one hop back to the loop.

Rules of this module:

- At most ``limit`` threads, started lazily (one more only when every
  thread has a job) and reused until ``close()``: no thread per call.
- Jobs wait in a ``queue.SimpleQueue``; with the caller admitting at most
  ``limit`` jobs at once, a job waits there only while its thread wakes.
- A finished job hands its result or exception *and* its ``on_done`` to the
  loop in one ``call_soon_threadsafe``: one wake-up of the loop per call,
  no future chaining. ``on_done`` runs for every job, once, on the loop
  thread, when its thread has finished it (or when ``close()`` dropped it
  before it started), also when the awaiting call was cancelled meanwhile:
  a job's thread is busy until the job returns.
- ``submit``, ``close`` and ``on_done`` are for the loop thread only, so the
  counts here need no lock.
- ``close()`` drops the jobs not started yet and does not wait for running
  ones; their threads end when they return. When the loop is already
  closed at that point (the process is exiting), the outcome is dropped.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence

__all__ = ["Workers"]

_Job = tuple[Callable[..., object], Sequence[object], "asyncio.Future[object]"]


class Workers:
    """Up to ``limit`` threads named ``name-N`` running jobs for the event loop ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, name: str, on_done: Callable[[], None]) -> None:
        self._loop = loop
        self._limit = limit
        self._name = name
        self._on_done = on_done
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._pending = 0  # jobs submitted whose on_done has not run yet
        self._closed = False

    def submit(self, function: Callable[..., object], arguments: Sequence[object]) -> asyncio.Future[object]:
        """Run ``function(*arguments)`` on a worker thread; the future gets its outcome."""
        if self._closed:
            raise RuntimeError("Workers.submit after close()")
        future: asyncio.Future[object] = self._loop.create_future()
        self._pending += 1
        if self._pending > len(self._threads) and len(self._threads) < self._limit:
            thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()
        self._jobs.put((function, arguments, future))
        return future

    def close(self) -> None:
        """Drop the jobs not started yet (their futures are cancelled) and let the threads end."""
        self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[2].cancel()
                self._finished()
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()

    def _work(self) -> None:
        # The worker thread's loop: everything it touches of the loop goes through one call_soon_threadsafe.
        take = self._jobs.get
        deliver = self._deliver
        call_soon_threadsafe = self._loop.call_soon_threadsafe
        while (job := take()) is not None:
            function, arguments, future = job
            del job
            result: object = None
            error: BaseException | None = None
            try:
                result = function(*arguments)
            except BaseException as exc:  # every outcome goes to the awaiting call, as a Future would carry it
                error = exc
            try:
                call_soon_threadsafe(deliver, future, result, error)
            except RuntimeError:
                return  # the loop is closed: the process is exiting and nobody awaits the outcome
            del function, arguments, future, result, error

    def _deliver(self, future: asyncio.Future[object], result: object, error: BaseException | None) -> None:
        self._finished()
        if future.cancelled():
            return
        if error is None:
            future.set_result(result)
        elif isinstance(error, StopIteration):
            # A Future refuses StopIteration (it would end the awaiting coroutine's frame).
            future.set_exception(RuntimeError(f"handler raised {type(error).__name__}"))
        else:
            future.set_exception(error)

    def _finished(self) -> None:
        self._pending -= 1
        self._on_done()
