"""sdk_core.workers.Workers: lazily started, reused threads; one on_done per job, on the loop thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sdk_core.workers import Workers


def test_sequential_jobs_reuse_one_thread_and_report_done_on_the_loop() -> None:
    async def scenario() -> tuple[set[object], list[int], int]:
        loop_thread = threading.get_ident()
        done_on: list[int] = []
        workers = Workers(asyncio.get_running_loop(), 4, "t", lambda: done_on.append(threading.get_ident()))
        try:
            ran_on = {await workers.submit(threading.get_ident, ()) for _ in range(20)}
        finally:
            workers.close()
        return ran_on, done_on, loop_thread

    ran_on, done_on, loop_thread = asyncio.run(scenario())
    assert len(ran_on) == 1 and loop_thread not in ran_on
    assert done_on == [loop_thread] * 20


def test_concurrent_jobs_get_a_thread_each_up_to_the_limit_and_errors_come_back() -> None:
    async def scenario() -> None:
        gate = threading.Barrier(3, timeout=5)
        workers = Workers(asyncio.get_running_loop(), 3, "t", lambda: None)
        try:
            # Three jobs that only finish together: each needs its own thread.
            assert await asyncio.gather(*(workers.submit(gate.wait, ()) for _ in range(3))) is not None
            assert len(workers._threads) == 3

            def fail() -> None:
                raise ValueError("boom")

            with pytest.raises(ValueError, match="boom"):
                await workers.submit(fail, ())
            assert len(workers._threads) == 3
        finally:
            workers.close()

    asyncio.run(scenario())


def test_close_cancels_jobs_not_started_and_counts_them_done() -> None:
    async def scenario() -> tuple[bool, int]:
        started, release = threading.Event(), threading.Event()
        done: list[None] = []
        workers = Workers(asyncio.get_running_loop(), 1, "t", lambda: done.append(None))

        def job() -> bool:
            started.set()
            return release.wait(5)

        running = workers.submit(job, ())
        queued = workers.submit(job, ())  # the one thread is busy: this one waits in the queue
        assert await asyncio.to_thread(started.wait, 5)
        workers.close()
        release.set()
        assert await running is True  # a running job finishes after close()
        return queued.cancelled(), len(done)

    cancelled, done = asyncio.run(scenario())
    assert cancelled and done == 2
