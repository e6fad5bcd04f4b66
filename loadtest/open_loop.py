"""The open-loop load generator: Poisson arrivals at a fixed rate, whatever the answers do.

A closed loop sends the next request only when an answer is in, so a slow
answer slows the load down and hides itself (coordinated omission); and at
N in flight on these two cores it measures CPU saturation, not tail
tolerance. Here arrivals follow a Poisson process at ``rate`` requests a
second (exponential gaps from a seeded generator), each request is sent at
its arrival time on one shared ``grpc.aio`` channel, and its latency runs
from that *scheduled* arrival, so time the generator itself fell behind
counts against the answer, as it would for a real client.

At most ``max_outstanding`` requests are in flight; an arrival beyond that is
counted as ``dropped`` and not sent (a bounded generator that says so rather
than a queue that grows without bound). The result is the closed loop's
``RunResult`` plus each answer's arrival time, for windowed percentiles.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import grpc

from loadtest.closed_loop import Calls, RunResult
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc

__all__ = ["run_open"]

DEFAULT_MAX_OUTSTANDING = 256


async def _run(
    address: str,
    request_at: Callable[[float], root_pb2.QueryRequest],
    rate: float,
    duration: float,
    timeout: float,
    seed: int,
    max_outstanding: int,
) -> RunResult:
    rng = random.Random(seed)
    outstanding: set[asyncio.Task[None]] = set()
    async with grpc.aio.insecure_channel(address) as channel:
        calls = Calls(root_pb2_grpc.RootStub(channel), timeout)
        began = time.perf_counter()
        at = began
        end = began + duration
        while True:
            at += rng.expovariate(rate)
            if at >= end:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(outstanding) >= max_outstanding:
                calls.failures["dropped"] += 1
                continue
            # The latency counts from the scheduled arrival, not from when the send began.
            task = asyncio.create_task(calls.send(request_at(at - began), at, at - began))
            outstanding.add(task)
            task.add_done_callback(outstanding.discard)
        if outstanding:
            await asyncio.gather(*outstanding)
        seconds = time.perf_counter() - began
    return calls.result(seconds)


def run_open(
    address: str,
    request: root_pb2.QueryRequest | Callable[[float], root_pb2.QueryRequest],
    rate: float,
    duration: float,
    *,
    timeout: float = 2.0,
    seed: int = 1,
    max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
) -> RunResult:
    """Poisson arrivals at ``rate``/s for ``duration`` s; ``request`` may depend on the arrival time (s from start)."""
    if rate <= 0 or duration <= 0:
        raise ValueError(f"rate and duration must be > 0, got {rate!r} and {duration!r}")
    request_at = request if callable(request) else (lambda _t, r=request: r)
    return asyncio.run(_run(address, request_at, rate, duration, timeout, seed, max_outstanding))
