"""The fan-out of one request: every shard's attempts, failover, hedging,
cancellation, all under one deadline.

Per shard (trio's happy eyeballs, Finagle's backup requests): start the
first attempt on the replica the chooser picks; when it has not answered
after the hedge delay, start another on a different replica, up to
max_attempts, if the hedge budget allows; when an attempt fails with a
non-fatal code (UNAVAILABLE: refused, reset, draining) start the next at
once; the first success wins and every other attempt is cancelled, which
cancels its gRPC call and so the leaf's work. A fatal code ends the shard
(gRPC's hedging rule: retrying cannot fix it). At the request's shard
deadline every shard still open becomes TIMEOUT and nothing keeps running.

Shape of the I/O: one coroutine per request drives a small state machine.
Each attempt is one task (awaiting its gRPC call) whose completion wakes the
coroutine; hedge times and the deadline are one timer. There is no task per
shard and no ``asyncio.wait``: the request costs about what a bare
``asyncio.gather`` over the leaves costs (see docs/benchmarks.md).

Decisions (which replica, how long to wait, whether the budget allows a
hedge) belong to the pure policies in ``root.policies``.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from dataclasses import dataclass, field

from protos.scatter_gather.v1 import shard_pb2
from root import wire
from root.policies import (
    CoverageWait,
    CoverageWaitConfig,
    FailureKind,
    HedgeBudget,
    HedgeDelay,
    HedgingConfig,
    LatencyWindow,
    ReplicaSet,
    failure_kind_for_status,
)
from root.transport import AttemptResult, Replica
from scatter_common.metrics import Histogram
from scatter_common.status import RETRIES_EXHAUSTED, rule_for
from scatter_common.tracing import HEADER, TraceContext

OK = shard_pb2.SHARD_STATUS_OK
TIMEOUT = shard_pb2.SHARD_STATUS_TIMEOUT
SKIPPED = shard_pb2.SHARD_STATUS_SKIPPED

NO_COVERAGE_WAIT = CoverageWaitConfig()

# Latencies and deadlines are measured on this clock (the policies' too):
# uvloop's loop.time() is cached per loop iteration and has 1 ms resolution,
# too coarse for leaf calls of a few milliseconds.
clock = time.monotonic


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
        leaves: int = 1,
    ) -> None:
        self.index = index
        self.count = count
        self.leaves = leaves  # leaf shards this shard stands for: more than 1 when it is a subtree
        self.replicas = replicas
        self.chooser = chooser
        self.latencies = latencies
        self.hedging = hedging
        self.hedge_delay = hedge_delay
        self.budget = budget
        self.stats = ShardStats()
        self.latency = Histogram()  # time to a good answer, for metrics
        # The ExecuteRequest fields that never change for this shard, encoded once.
        self.execute_fields = wire.execute_shard_fields(index, count)


@dataclass(slots=True)
class ShardOutcome:
    """What one shard produced for one request."""

    report: shard_pb2.ShardReport
    payload: bytes  # the leaf's serialized Any; empty unless OK
    invalid: str | None = None  # the leaf's verdict on the request (INVALID_ARGUMENT), if any
    subtree: shard_pb2.Coverage | None = None  # the coverage a root serving as this shard reported


@dataclass(slots=True, eq=False)
class _Attempt:
    call: _ShardCall
    replica: int
    hedge: bool
    started: float


class _ShardCall:
    """One shard within one request: its open attempts and how it ended."""

    __slots__ = (
        "attempts",
        "hedges",
        "index",
        "last_code",
        "last_detail",
        "last_replica",
        "next_hedge",
        "outcome",
        "pending",
        "shard",
        "started",
        "tried",
    )

    def __init__(self, shard: Shard, index: int) -> None:
        self.shard = shard
        self.index = index
        self.pending: list[asyncio.Task[AttemptResult]] = []
        self.tried: set[int] = set()
        self.attempts = 0
        self.started = 0.0  # the first attempt's start; set when attempts becomes 1
        self.hedges = 0
        self.next_hedge = math.inf
        self.last_code = ""
        self.last_detail = "no replica could be tried"
        self.last_replica = -1
        self.outcome: ShardOutcome | None = None


class Scatter:
    """Runs the fan-out of one request. Create, then ``await run()`` once."""

    def __init__(
        self,
        shards: list[Shard],
        payload_field: bytes,
        request_id: str,
        start: float,
        deadline: float,
        min_coverage: float = 1.0,
        coverage_wait: CoverageWaitConfig = NO_COVERAGE_WAIT,
        trace: TraceContext | None = None,
    ):
        self.loop = asyncio.get_running_loop()
        self.calls = [_ShardCall(shard, i) for i, shard in enumerate(shards)]
        # (hedge time, shard position): the next hedge of every open shard, stale entries
        # skipped lazily, so a wake-up costs O(log n) at fan-out 256, not a scan.
        self.hedges: list[tuple[float, int]] = []
        self.payload_field = payload_field
        self.request_id = request_id
        self.start = start
        self.deadline = deadline
        self.open = len(self.calls)
        self.attempts: dict[asyncio.Task[AttemptResult], _Attempt] = {}
        self.completed: list[asyncio.Task[AttemptResult]] = []
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.trace = trace
        # One span for this root's part of the request: every leaf call is its child.
        self.metadata = ((HEADER, trace.child_header()),) if trace is not None else ()
        self.request_id_field = wire.execute_request_id_field(request_id)
        # Counted in leaf shards, like coverage; None when the wait is off (the common case, free).
        self.coverage_wait = (
            None
            if coverage_wait.extra_wait is None
            else CoverageWait(coverage_wait, [shard.leaves for shard in shards], min_coverage, start)
        )
        self.stop_at = math.inf  # the coverage wait's end, once min_coverage is reached

    async def run(self) -> list[ShardOutcome]:
        """Every shard's outcome, in shard order."""
        loop = self.loop
        try:
            for call in self.calls:
                shard = call.shard
                shard.stats.calls += 1
                shard.budget.deposit()
                self._launch(call, hedge=False)
                if len(shard.replicas) > 1:  # a hedge needs somewhere else to go
                    delay = shard.hedge_delay.delay(shard.latencies)
                    if delay is not None:
                        self._schedule_hedge(call, self.start + delay)
            while self.open:
                self._arm_timer()
                self.waiter = loop.create_future()
                await self.waiter
                self.waiter = None
                completed, self.completed = self.completed, []
                for task in completed:
                    self._finished(task)
                now = clock()
                if now >= self.deadline:
                    for call in self.calls:
                        if call.outcome is None:
                            self._end_timeout(call)
                    break
                if now >= self.stop_at:
                    assert self.coverage_wait is not None and self.coverage_wait.reached_at is not None
                    waited = (now - self.coverage_wait.reached_at) * 1000
                    for call in self.calls:
                        if call.outcome is None:
                            self._end(
                                call,
                                SKIPPED,
                                call.last_replica,
                                error=f"cut off by the coverage wait ({waited:.1f} ms after min_coverage)",
                            )
                    break
                heap = self.hedges
                while heap and heap[0][0] <= now:
                    at, index = heapq.heappop(heap)
                    call = self.calls[index]
                    if call.outcome is None and call.next_hedge == at:  # else: stale entry
                        self._hedge(call, now)
        finally:
            if self.timer is not None:
                self.timer.cancel()
            for call in self.calls:  # the request was cancelled or ended: nothing may outlive it
                self._cancel_pending(call)
        return [call.outcome for call in self.calls]  # type: ignore[misc]

    # -- events ------------------------------------------------------------------

    def _wake(self, _: object = None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timer_fired(self) -> None:
        # uvloop rounds timers to whole milliseconds, so this may run a little
        # early; forgetting the timer lets _arm_timer set it again if so.
        self.timer = None
        self.timer_at = math.inf
        self._wake()

    def _attempt_done(self, task: asyncio.Task[AttemptResult]) -> None:
        self.completed.append(task)
        self._wake()

    def _schedule_hedge(self, call: _ShardCall, at: float) -> None:
        call.next_hedge = at
        heapq.heappush(self.hedges, (at, call.index))

    def _arm_timer(self) -> None:
        heap = self.hedges
        while heap and (self.calls[heap[0][1]].outcome is not None or self.calls[heap[0][1]].next_hedge != heap[0][0]):
            heapq.heappop(heap)  # the shard ended or its hedge time moved: drop the stale entry
        wake_at = min(self.deadline, self.stop_at, heap[0][0] if heap else math.inf)
        if wake_at != self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            # call_later, not call_at: times here are on the monotonic clock,
            # and uvloop's loop.time() only has millisecond resolution.
            self.timer = self.loop.call_later(max(0.0, wake_at - clock()), self._timer_fired)
            self.timer_at = wake_at

    # -- attempts ----------------------------------------------------------------

    def _launch(self, call: _ShardCall, hedge: bool) -> bool:
        shard = call.shard
        choice = shard.chooser.pick(call.tried)
        if choice is None:
            if not hedge:
                return False  # failover: every replica already failed for this request
            # A further hedge may go back to a replica already tried: a fresh call
            # there usually misses the stall the first one hit, and least-outstanding
            # steers it away from a replica that is hung.
            choice = shard.chooser.pick()
            if choice is None:
                return False
        now = clock()
        if not call.attempts:
            call.started = now
        call.attempts += 1
        call.tried.add(choice)
        call.last_replica = choice
        shard.chooser.start(choice)
        request = wire.execute_request(
            self.payload_field, shard.execute_fields, call.attempts, hedge, self.request_id_field
        )
        task = self.loop.create_task(shard.replicas[choice].call(request, self.deadline - now, self.metadata))
        task.add_done_callback(self._attempt_done)
        self.attempts[task] = _Attempt(call, choice, hedge, now)
        call.pending.append(task)
        return True

    def _hedge(self, call: _ShardCall, now: float) -> None:
        shard = call.shard
        call.next_hedge = math.inf
        if call.attempts >= shard.hedging.max_attempts:
            return
        if not shard.budget.try_withdraw():
            shard.stats.budget_exhausted += 1
            return
        if self._launch(call, hedge=True):
            shard.stats.hedges_sent += 1
            call.hedges += 1
            delay = shard.hedge_delay.delay(shard.latencies)
            if delay is not None:
                self._schedule_hedge(call, now + delay)

    def _finished(self, task: asyncio.Task[AttemptResult]) -> None:
        attempt = self.attempts.pop(task, None)
        if attempt is None or task.cancelled():
            return  # a loser already accounted for when it was cancelled
        call = attempt.call
        call.pending.remove(task)
        shard = call.shard
        code, body = task.result()
        elapsed = clock() - attempt.started
        if code == "OK":
            assert isinstance(body, bytes)
            shard.chooser.finish(attempt.replica, elapsed, True)
            shard.latencies.record(elapsed)
            if attempt.hedge:
                shard.stats.hedges_won += 1
                shard.budget.record_win()
            payload, subtree, subtree_hedges = wire.leaf_response(body)
            call.hedges += subtree_hedges
            self._end(call, OK, attempt.replica, hedge_won=attempt.hedge, payload=payload, subtree=subtree)
            if self.coverage_wait is not None and self.coverage_wait.reached_at is None:
                self._answered(call, subtree)
            return
        assert isinstance(body, str)
        shard.chooser.finish(attempt.replica, elapsed, False, failure_kind_for_status(code))
        call.last_code, call.last_detail, call.last_replica = code, body, attempt.replica
        # What the code means is the status table's (scatter_common.status); which codes
        # fail over is the configuration's (non_fatal_status_codes, the table's by default).
        if shard.hedging.is_non_fatal(code):
            if call.attempts < shard.hedging.max_attempts and self._launch(call, hedge=False):
                shard.stats.failovers += 1
            elif not call.pending:
                self._end(
                    call,
                    RETRIES_EXHAUSTED,
                    attempt.replica,
                    error=body if code == "UNAVAILABLE" else f"{code}: {body}",
                )
            return
        rule = rule_for(code)
        if rule.shard == TIMEOUT:
            if not call.pending:  # the others share the deadline; let them finish
                self._end_timeout(call)
        else:
            self._end(
                call,
                rule.shard,
                attempt.replica,
                error=f"{code}: {body}",
                invalid=body if rule.verdict else None,
            )

    def _answered(self, call: _ShardCall, subtree: shard_pb2.Coverage | None) -> None:
        """One more shard answered: the coverage wait starts once min_coverage of the leaf shards have."""
        assert self.coverage_wait is not None
        stop = self.coverage_wait.answered(call.index, clock(), None if subtree is None else subtree.answered)
        if stop is not None:
            self.stop_at = stop

    def _cancel_pending(self, call: _ShardCall, kind: FailureKind = FailureKind.CANCELLED) -> None:
        """Cancel the shard's open attempts; ``kind`` says why, for the replica chooser."""
        if not call.pending:
            return
        now = clock()
        shard = call.shard
        for task in call.pending:
            attempt = self.attempts.pop(task)
            task.cancel()
            shard.chooser.finish(attempt.replica, now - attempt.started, False, kind)
            shard.stats.cancelled += 1
        call.pending.clear()

    # -- outcomes ----------------------------------------------------------------

    def _end_timeout(self, call: _ShardCall) -> None:
        # Attempts cut off by the deadline count against their replicas (a hung
        # replica must eventually be ejected), unlike losers of a race.
        self._cancel_pending(call, FailureKind.TIMEOUT)
        self._end(call, TIMEOUT, call.last_replica, error="deadline exceeded before any replica answered")

    def _end(
        self,
        call: _ShardCall,
        status: int,
        replica: int,
        *,
        error: str = "",
        hedge_won: bool = False,
        payload: bytes = b"",
        invalid: str | None = None,
        subtree: shard_pb2.Coverage | None = None,
    ) -> None:
        self._cancel_pending(call)
        shard = call.shard
        shard.stats.attempts += call.attempts
        shard.stats.outcomes[status] = shard.stats.outcomes.get(status, 0) + 1
        # shard.proto: from the first attempt's start (not the request's arrival: the fan-out
        # starts later, and later for the last shards of a wide one) to the answer or give-up.
        elapsed = clock() - (call.started if call.attempts else self.start)
        if status == OK:
            shard.latency.observe(elapsed)
        report = shard_pb2.ShardReport(
            shard_index=shard.index,
            status=status,  # type: ignore[arg-type]
            replica=shard.replicas[replica].address if replica >= 0 else "",
            latency=wire.duration(elapsed),
            attempts=call.attempts,
            hedge_won=hedge_won,
            error=error,
            hedges=call.hedges,
        )
        call.outcome = ShardOutcome(report, payload, invalid, subtree)
        call.next_hedge = math.inf
        self.open -= 1
