"""The attempts of one shard for one request: failover, hedging, cancellation.

Shape (trio's happy eyeballs, Finagle's backup requests): start the first
attempt on the replica the chooser picks; when it has not answered after the
hedge delay, start another on a different replica, up to max_attempts; when
an attempt fails with a non-fatal code (UNAVAILABLE: refused, reset, draining)
start the next one at once; the first success wins and every other attempt
is cancelled, which cancels its gRPC call and so the leaf's work. A fatal
code ends the shard at once (gRPC's hedging rule: retrying cannot fix it).
The shard's deadline bounds everything; after it nothing of the shard runs.

Decisions (which replica, how long to wait, whether the budget allows a
hedge) are delegated to the pure policies in ``root.policies``; this module
only does the asyncio and grpc side.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import grpc

from protos.scatter_gather.v1 import leaf_pb2, shard_pb2
from root import wire
from root.policies import (
    FailureKind,
    HedgeBudget,
    HedgeDelay,
    HedgingConfig,
    LatencyWindow,
    ReplicaSet,
    failure_kind_for_status,
)

EXECUTE_METHOD = "/scatter_gather.v1.Leaf/Execute"

OK = shard_pb2.SHARD_STATUS_OK
TIMEOUT = shard_pb2.SHARD_STATUS_TIMEOUT
ERROR = shard_pb2.SHARD_STATUS_ERROR
UNAVAILABLE = shard_pb2.SHARD_STATUS_UNAVAILABLE


# gRPC reconnects to a dead peer with exponential backoff up to 120 s; a
# replica that comes back would then sit idle for minutes. Cap the backoff
# so a restarted leaf gets traffic within about a second.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class Replica:
    """One leaf replica: its address and the long-lived channel to it."""

    def __init__(self, address: str, channel_options: list[tuple[str, int]]) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=[*channel_options, *RECONNECT_OPTIONS])
        # Raw bytes in and out: the root splices messages (see root.wire).
        self.execute = self.channel.unary_unary(EXECUTE_METHOD)

    async def close(self) -> None:
        await self.channel.close()


@dataclass
class ShardStats:
    """Counters of one shard, read by metrics and the status page."""

    calls: int = 0
    attempts: int = 0
    hedges_sent: int = 0
    hedges_won: int = 0
    budget_exhausted: int = 0
    failovers: int = 0
    cancelled: int = 0
    outcomes: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class ShardOutcome:
    """What one shard produced for one request."""

    report: shard_pb2.ShardReport
    payload: bytes  # the leaf's serialized Any; empty unless OK
    invalid: str | None = None  # the leaf's INVALID_ARGUMENT message, if any


@dataclass(slots=True)
class _Attempt:
    replica: int
    number: int
    hedge: bool
    started: float


class Shard:
    """Everything the root keeps about one shard across requests."""

    def __init__(
        self,
        index: int,
        count: int,
        replicas: list[Replica],
        chooser: ReplicaSet,
        latencies: LatencyWindow,
        hedging: HedgingConfig,
        hedge_delay: HedgeDelay,
        budget: HedgeBudget,
    ) -> None:
        self.index = index
        self.count = count
        self.replicas = replicas
        self.chooser = chooser
        self.latencies = latencies
        self.hedging = hedging
        self.hedge_delay = hedge_delay
        self.budget = budget
        self.stats = ShardStats()

    async def _call(self, replica: Replica, request: bytes, timeout: float) -> tuple[str, bytes | str]:
        try:
            return "OK", await replica.execute(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details() or ""

    async def run(self, payload_field: bytes, request_id: str, deadline: float) -> ShardOutcome:
        """Run this shard's attempts until one wins, all fail, or ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.stats.calls += 1
        self.budget.deposit()
        pending: dict[asyncio.Task[tuple[str, bytes | str]], _Attempt] = {}
        tried: set[int] = set()
        attempts = 0
        last_code, last_detail, last_replica = "", "no replica could be tried", -1

        def launch(hedge: bool) -> bool:
            nonlocal attempts
            choice = self.chooser.pick(tried)
            if choice is None:
                return False
            now = loop.time()
            attempts += 1
            tried.add(choice)
            self.chooser.start(choice)
            request = payload_field + leaf_pb2.ExecuteRequest(
                shard_index=self.index,
                shard_count=self.count,
                attempt=attempts,
                hedge=hedge,
                request_id=request_id,
            ).SerializeToString()
            task = asyncio.create_task(self._call(self.replicas[choice], request, deadline - now))
            pending[task] = _Attempt(choice, attempts, hedge, now)
            return True

        def cancel_pending() -> None:
            now = loop.time()
            for task, attempt in pending.items():
                task.cancel()
                self.chooser.finish(attempt.replica, now - attempt.started, False, FailureKind.CANCELLED)
                self.stats.cancelled += 1
            pending.clear()

        def report(status: int, replica: int, error: str = "", hedge_won: bool = False) -> shard_pb2.ShardReport:
            self.stats.attempts += attempts
            self.stats.outcomes[status] = self.stats.outcomes.get(status, 0) + 1
            return shard_pb2.ShardReport(
                shard_index=self.index,
                status=status,  # type: ignore[arg-type]
                replica=self.replicas[replica].address if replica >= 0 else "",
                latency=wire.duration(loop.time() - start),
                attempts=attempts,
                hedge_won=hedge_won,
                error=error,
            )

        launch(hedge=False)
        delay = self.hedge_delay.delay(self.latencies)
        next_hedge = math.inf if delay is None else start + delay
        try:
            while pending:
                now = loop.time()
                if now >= deadline:
                    break
                done, _ = await asyncio.wait(
                    pending, timeout=min(deadline, next_hedge) - now, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    attempt = pending.pop(task)
                    code, body = task.result()
                    elapsed = loop.time() - attempt.started
                    if code == "OK":
                        assert isinstance(body, bytes)
                        self.chooser.finish(attempt.replica, elapsed, True)
                        self.latencies.record(elapsed)
                        cancel_pending()
                        if attempt.hedge:
                            self.stats.hedges_won += 1
                            self.budget.record_win()
                        return ShardOutcome(
                            report(OK, attempt.replica, hedge_won=attempt.hedge), wire.leaf_payload(body)
                        )
                    assert isinstance(body, str)
                    self.chooser.finish(attempt.replica, elapsed, False, failure_kind_for_status(code))
                    last_code, last_detail, last_replica = code, body, attempt.replica
                    if self.hedging.is_non_fatal(code):
                        if attempts < self.hedging.max_attempts and launch(hedge=False):
                            self.stats.failovers += 1
                        continue
                    if code == "DEADLINE_EXCEEDED":
                        continue  # the other attempts share the deadline; let them finish
                    cancel_pending()
                    invalid = body if code == "INVALID_ARGUMENT" else None
                    return ShardOutcome(report(ERROR, attempt.replica, f"{code}: {body}"), b"", invalid)
                if loop.time() >= next_hedge and pending:
                    next_hedge = math.inf
                    if attempts < self.hedging.max_attempts:
                        if not self.budget.try_withdraw():
                            self.stats.budget_exhausted += 1
                        elif launch(hedge=True):
                            self.stats.hedges_sent += 1
                            delay = self.hedge_delay.delay(self.latencies)
                            next_hedge = math.inf if delay is None else loop.time() + delay
        finally:
            cancel_pending()
        if loop.time() >= deadline or last_code == "DEADLINE_EXCEEDED":
            return ShardOutcome(report(TIMEOUT, last_replica, "deadline exceeded before any replica answered"), b"")
        detail = last_detail if last_code in ("", "UNAVAILABLE") else f"{last_code}: {last_detail}"
        return ShardOutcome(report(UNAVAILABLE, last_replica, detail), b"")
