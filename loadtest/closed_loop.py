"""The closed-loop load generator: N requests in flight, each sent when the last answer is in.

Each of N workers sends a request, waits for the answer, and sends the
next, on one shared ``grpc.aio`` channel; latencies of every call are kept
and summarised. What a worker sends next is either the same request again
for ``duration`` seconds (the probe benchmarks), or the next of a list, the
workers sharing it (the demo's seeded queries: the run ends when the list
is used up). The generator runs in the benchmark's process, so it competes
with the deployment for the same cores: compare runs side by side, never
against numbers from another machine.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc
import numpy as np

from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc

# Told of every call as it ends: (perf_counter when it was sent, latency in seconds, status code
# name, the response or None on an error). For benchmarks that need each answer, not a summary.
Observer = Callable[[float, float, str, root_pb2.QueryResponse | None], None]


@dataclass
class RunResult:
    latencies: np.ndarray  # seconds, successful calls
    seconds: float
    failures: Counter[str] = field(default_factory=Counter)
    leaf_attempts: int = 0
    shard_calls: int = 0
    hedges_won: int = 0
    # Seconds from the run's start at which each successful call was sent (open loop only).
    arrivals: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def window_percentile_ms(self, q: float, start: float, end: float) -> float:
        """The ``q`` percentile of the calls sent within [start, end) s of the run (open loop)."""
        inside = self.latencies[(self.arrivals >= start) & (self.arrivals < end)]
        return float(np.quantile(inside, q)) * 1000 if len(inside) else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.quantile(self.latencies, q)) * 1000 if len(self.latencies) else float("nan")

    @property
    def extra_calls(self) -> float:
        """Leaf attempts beyond one per shard call, as a fraction."""
        return self.leaf_attempts / self.shard_calls - 1 if self.shard_calls else 0.0


class Calls:
    """What a generator's calls produced, accumulated into a ``RunResult``; shared by both loops."""

    def __init__(
        self, stub: root_pb2_grpc.RootAsyncStub, timeout: float | None, observe: Observer | None = None
    ) -> None:
        self.stub = stub
        self.timeout = timeout  # None: no client deadline, the root's default applies
        self.observe = observe
        self.latencies: list[float] = []
        self.arrivals: list[float] = []
        self.failures: Counter[str] = Counter()
        self.attempts = self.shard_calls = self.hedges_won = 0

    async def send(self, request: root_pb2.QueryRequest, since: float, arrival: float | None = None) -> None:
        """One call; its latency counts from ``since`` (perf_counter), its ``arrival`` is kept if given."""
        try:
            response = await self.stub.Query(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            self.failures[exc.code().name] += 1
            if self.observe is not None:
                self.observe(since, time.perf_counter() - since, exc.code().name, None)
            return
        latency = time.perf_counter() - since
        self.latencies.append(latency)
        if self.observe is not None:
            self.observe(since, latency, "OK", response)
        if arrival is not None:
            self.arrivals.append(arrival)
        for report in response.shards:
            self.attempts += report.attempts
            self.shard_calls += 1
            self.hedges_won += report.hedge_won

    def result(self, seconds: float) -> RunResult:
        return RunResult(
            np.array(self.latencies),
            seconds,
            self.failures,
            self.attempts,
            self.shard_calls,
            self.hedges_won,
            np.array(self.arrivals),
        )


async def _run(
    address: str,
    requests: Iterable[root_pb2.QueryRequest],
    concurrency: int,
    duration: float,
    timeout: float | None,
    observe: Observer | None,
) -> RunResult:
    source = iter(requests)  # shared: each worker takes the next request
    async with grpc.aio.insecure_channel(address) as channel:
        calls = Calls(root_pb2_grpc.RootStub(channel), timeout, observe)
        end = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < end:
                request = next(source, None)
                if request is None:
                    return
                await calls.send(request, time.perf_counter())

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - began
    return calls.result(seconds)


def run(
    address: str,
    requests: root_pb2.QueryRequest | Iterable[root_pb2.QueryRequest],
    concurrency: int,
    duration: float | None = None,
    timeout: float | None = 2.0,
    observe: Observer | None = None,
) -> RunResult:
    """Drive ``address`` with ``concurrency`` requests in flight.

    ``requests`` is one request, sent again and again for ``duration``
    seconds, or a list (any iterable) sent once through (within
    ``duration`` if given). ``timeout`` is each call's client deadline
    (None: none); ``observe`` is told of every call as it ends.
    """
    if isinstance(requests, root_pb2.QueryRequest):
        if duration is None:
            raise ValueError("one request repeated needs a duration")
        requests = itertools.repeat(requests)
    return asyncio.run(
        _run(address, requests, concurrency, math.inf if duration is None else duration, timeout, observe)
    )
