"""sdk_core.calls.HandlerRunner's verdict on a handler that finishes after its call's deadline,
and the slot a cancelled sync handler keeps.

Over real gRPC the outcome of such a call is a race between grpc's deadline timer and the
answer; here the context is a plain object with the three methods the runner reads, so the
runner's own rule is what decides.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

import grpc
import pytest
from google.protobuf import wrappers_pb2

from sdk_core.calls import CallScope, CallStats, HandlerRunner


class Aborted(Exception):
    pass


class Context:
    """What HandlerRunner and CallScope read of a grpc.aio servicer context."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining
        self.status: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float | None:
        return self.remaining

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.status = (code, details)
        raise Aborted


def run(handler: object, remaining: float | None) -> tuple[object, Context, CallStats]:
    stats = CallStats()
    runner = HandlerRunner(handler, stats=stats, log=logging.getLogger("test"), role="leaf")  # type: ignore[arg-type]
    context = Context(remaining)

    def prepare(request: object, ctx: object) -> tuple[Sequence[object], CallScope]:
        scope = CallScope(ctx)  # type: ignore[arg-type]
        return (request, scope), scope

    async def scenario() -> object:
        runner.open(4)
        runner.ready = True
        try:
            return await runner.call(wrappers_pb2.StringValue(value="q"), context, prepare)  # type: ignore[arg-type]
        except Aborted:
            return None
        finally:
            runner.close()

    return asyncio.run(scenario()), context, stats


def until_cancelled(request: wrappers_pb2.StringValue, scope: CallScope) -> wrappers_pb2.StringValue:
    give_up = time.monotonic() + 5
    while not scope.cancelled and time.monotonic() < give_up:
        time.sleep(0.005)
    return wrappers_pb2.StringValue(value="late")


def at_once(request: wrappers_pb2.StringValue, scope: CallScope) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value="in time")


def test_an_answer_after_the_deadline_is_deadline_exceeded_not_ok() -> None:
    result, context, stats = run(until_cancelled, remaining=0.05)
    assert result is None
    assert context.status == (grpc.StatusCode.DEADLINE_EXCEEDED, "the leaf handler returned after the call's deadline")
    assert (stats.ok, stats.cancelled, stats.errors) == (0, 1, 0)


@pytest.mark.parametrize("remaining", [None, 5.0])
def test_an_answer_in_time_is_delivered(remaining: float | None) -> None:
    result, context, stats = run(at_once, remaining=remaining)
    assert result == wrappers_pb2.StringValue(value="in time")
    assert context.status is None
    assert (stats.ok, stats.cancelled) == (1, 0)


def test_a_cancelled_sync_handler_keeps_its_slot_until_its_thread_returns() -> None:
    """Limit 1: the cancelled call's thread still runs, so the next call is refused; after it returns, one runs."""
    stats = CallStats()
    started, release = threading.Event(), threading.Event()

    def blocked(request: wrappers_pb2.StringValue, scope: CallScope) -> wrappers_pb2.StringValue:
        started.set()
        release.wait(5)
        return wrappers_pb2.StringValue(value="released")

    runner = HandlerRunner(blocked, stats=stats, log=logging.getLogger("test"), role="leaf")

    def prepare(request: object, ctx: object) -> tuple[Sequence[object], CallScope]:
        scope = CallScope(ctx)  # type: ignore[arg-type]
        return (request, scope), scope

    async def call() -> tuple[object, Context]:
        context = Context(None)
        try:
            return await runner.call(wrappers_pb2.StringValue(value="q"), context, prepare), context  # type: ignore[arg-type]
        except Aborted:
            return None, context

    async def scenario() -> None:
        runner.open(1)
        runner.ready = True
        try:
            first = asyncio.create_task(call())
            assert await asyncio.to_thread(started.wait, 5)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            assert stats.in_flight == 1, "the cancelled handler's thread still runs"
            result, context = await call()
            assert result is None
            assert context.status is not None and context.status[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
            release.set()
            for _ in range(5000):  # the thread hands the slot back through the loop: a few iterations
                if not stats.in_flight:
                    break
                await asyncio.sleep(0.001)
            result, context = await call()
            assert result == wrappers_pb2.StringValue(value="released"), context.status
        finally:
            release.set()
            runner.close()

    asyncio.run(scenario())
    assert (stats.calls, stats.ok, stats.cancelled, stats.rejected, stats.in_flight) == (3, 1, 1, 1, 0)


def test_call_many_runs_each_part_as_a_call_of_its_own_and_never_aborts() -> None:
    """Limit 2, three parts of a sync handler: two run at once, the third is refused; a failing part is its own."""
    stats = CallStats()
    both_started = threading.Barrier(2, timeout=5)

    def handler(request: wrappers_pb2.StringValue, scope: CallScope) -> wrappers_pb2.StringValue:
        if request.value == "fail":
            raise ValueError("boom")
        both_started.wait()  # the two admitted parts run at the same time, on two threads
        return wrappers_pb2.StringValue(value=request.value.upper())

    runner = HandlerRunner(handler, stats=stats, log=logging.getLogger("test"), role="leaf")

    def part(value: str) -> object:
        def prepare(request: object, ctx: object) -> tuple[Sequence[object], CallScope]:
            scope = CallScope(ctx)  # type: ignore[arg-type]
            return (wrappers_pb2.StringValue(value=value), scope), scope

        return prepare

    async def scenario() -> list[object]:
        runner.open(2)
        runner.ready = True
        try:
            context = Context(None)
            parts = [part("a"), part("b"), part("c")]
            outcomes = await runner.call_many(None, context, parts, "Leaf.ExecuteShards")  # type: ignore[arg-type]
            assert context.status is None  # nothing aborted the call
            for _ in range(5000):  # the threads hand their slots back through the loop
                if not stats.in_flight:
                    break
                await asyncio.sleep(0.001)
            failed = await runner.call_many(None, context, [part("fail")], "Leaf.ExecuteShards")  # type: ignore[arg-type]
            return [*outcomes, *failed]
        finally:
            runner.close()

    a, b, c, failed = asyncio.run(scenario())
    assert (a, b) == (wrappers_pb2.StringValue(value="A"), wrappers_pb2.StringValue(value="B"))
    assert (c.code, c.message) == (  # type: ignore[attr-defined]
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "leaf is at its concurrency limit (2 calls in flight)",
    )
    assert (failed.code, failed.message) == (grpc.StatusCode.INTERNAL, "ValueError: boom")  # type: ignore[attr-defined]
    assert (stats.calls, stats.ok, stats.rejected, stats.errors) == (4, 2, 1, 1)
