"""The asyncio driver of one request's fan-out: attempts as tasks, one timer.

Every decision about attempts (which replica, when to hedge, failover,
fatal codes, who wins, how an attempt counts for its replica) belongs to
``root.policies.AttemptPlan``, one per shard of the request. This module only
carries out the plans' actions: a ``Launch`` becomes a task awaiting the
replica's call (``root.transport``), a ``Cancel`` cancels that task, an
``End`` becomes the shard's report. It applies the two request-level rules
itself, since they span shards: the shard deadline (every open plan
expires) and the coverage wait (``stop_waiting_at``: open plans are cut off).

Batching: a leaf process may serve several shards (leaf.proto,
``ExecuteShards``). When the first attempts of several shards go to one
address, they travel as one ``Leaf.ExecuteShards`` call, one gRPC call per
process instead of one per shard: gRPC's cost per call is most of a fast
leaf's (docs/benchmarks.md). The plans do not know: each still has its own
attempt, cancelled on its own (the call is cancelled once none of its shards
still wants it) and ended by its own answer inside the call's. Hedges and
failovers are single ``Execute`` calls. A peer that answers ExecuteShards
UNIMPLEMENTED has each shard's attempt resent as an ``Execute`` at once, and
is not asked again while its connection lasts (``Replica.batches``).

Shape of the I/O: one coroutine per request. Each attempt is one task whose
completion wakes the coroutine; the plans' ``wake_at`` times and the
deadline share one timer, kept in a heap so a wake-up costs O(log n) at
fan-out 256. There is no task per shard and no ``asyncio.wait``: the
request costs about what a bare ``asyncio.gather`` over the leaves costs
(see docs/benchmarks.md). Cancelling the request (the client went away)
cancels every attempt through the plans; nothing outlives the request.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from protos.scatter_gather.v1 import shard_pb2
from root import wire
from root.policies import (
    Action,
    AttemptKind,
    AttemptPlan,
    Cancel,
    CoverageWait,
    CoverageWaitConfig,
    End,
    Launch,
    ShardCounters,
    ShardPolicy,
)
from root.slowlog import AttemptEvent
from root.transport import AttemptResult, Replica
from scatter_common.metrics import Histogram
from scatter_common.otel import Span, Tracing
from scatter_common.tracing import HEADER, TraceContext

log = logging.getLogger("scatter.root")

NO_COVERAGE_WAIT = CoverageWaitConfig()
HEDGE = AttemptKind.HEDGE
FIRST = AttemptKind.FIRST
OK = shard_pb2.SHARD_STATUS_OK
# A ShardAnswer's code number -> its name, as the plans take codes.
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}

# Latencies and deadlines are measured on this clock (the policies' too):
# uvloop's loop.time() is cached per loop iteration and has 1 ms resolution,
# too coarse for leaf calls of a few milliseconds.
clock = time.monotonic


def _cancel_reason(actions: list[Action] | tuple[Action, ...]) -> str:
    """Why the plan cancelled attempts, from how its shard ended in the same actions (for traces)."""
    for action in actions:
        if type(action) is End:
            return _REASONS.get(action.status, "the shard ended")
    return "the request was cancelled"


_REASONS: dict[int, str] = {
    OK: "lost the race",
    shard_pb2.SHARD_STATUS_TIMEOUT: "the shard deadline",
    shard_pb2.SHARD_STATUS_SKIPPED: "the coverage wait",
}


class Shard:
    """Everything the root keeps about one shard across requests."""

    def __init__(self, index: int, count: int, replicas: list[Replica], policy: ShardPolicy, leaves: int = 1) -> None:
        self.index = index
        self.count = count
        self.replicas = replicas
        self.policy = policy
        self.leaves = leaves  # leaf shards this shard stands for: more than 1 when it is a subtree
        self.latency = Histogram()  # time to a good answer, for metrics
        # Replica sets applied (root.membership) and discovery lookups that failed (root.discovery).
        self.membership_changes = 0
        self.discovery_failures = 0
        # The ExecuteRequest fields that never change for this shard, encoded once.
        self.execute_fields = wire.execute_shard_fields(index, count)

    @property
    def stats(self) -> ShardCounters:
        return self.policy.counters


@dataclass(slots=True)
class ShardOutcome:
    """What one shard produced for one request."""

    report: shard_pb2.ShardReport
    payload: bytes  # the leaf's serialized Any; empty unless OK
    invalid: str | None = None  # the leaf's verdict on the request (INVALID_ARGUMENT), if any
    subtree: shard_pb2.Coverage | None = None  # the coverage a root serving as this shard reported


@dataclass(slots=True)
class Batch:
    """One ExecuteShards call: the attempts it carries, and those still waiting for it."""

    replica: Replica
    members: list[tuple[int, int, Launch]]  # (shard position, attempt, its launch)
    live: set[tuple[int, int]]  # (shard position, attempt) of the members not cancelled


class Scatter:
    """Runs the fan-out of one request. Create, then ``await run()`` once."""

    def __init__(
        self,
        shards: list[Shard],
        payload_field: wire.Payload,
        request_id: str,
        start: float,
        deadline: float,
        min_coverage: float = 1.0,
        coverage_wait: CoverageWaitConfig = NO_COVERAGE_WAIT,
        trace: TraceContext | None = None,
        tracing: Tracing | None = None,
        parent: Span | None = None,
        batch: bool = True,
    ):
        self.loop = asyncio.get_running_loop()
        self.batch = batch and len(shards) > 1
        self.batches: dict[asyncio.Task[AttemptResult], Batch] = {}
        self.shards = shards
        self.plans = [AttemptPlan(shard.policy) for shard in shards]
        # This request's view of each shard's replicas, taken with its policy: a membership
        # change (root.membership) swaps both for the requests that start after it.
        self.replicas = [shard.replicas for shard in shards]
        self.outcomes: list[ShardOutcome | None] = [None] * len(shards)
        self.hedges_below: list[int] = [0] * len(shards)  # hedges a subtree reported
        # (wake time, shard position) of every plan's next wake-up; stale entries
        # (the plan ended or moved its time) are skipped lazily.
        self.wakes: list[tuple[float, int]] = []
        self.start = start
        self.deadline = deadline
        self.open = len(shards)
        self.tasks: dict[asyncio.Task[AttemptResult], tuple[int, int]] = {}  # task -> (shard position, attempt)
        self.running: dict[tuple[int, int], asyncio.Task[AttemptResult]] = {}
        self.completed: list[asyncio.Task[AttemptResult]] = []
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        # One span for this root's part of the request: every leaf call is its child.
        self.metadata = ((HEADER, trace.child_header()),) if trace is not None else ()
        self.payload_field = payload_field
        self.request_id_field = wire.execute_request_id_field(request_id)
        self.request_size = len(payload_field) + wire.EXECUTE_FRAMING_BYTES  # at most: what the transport needs
        # Counted in leaf shards, like coverage; None when the wait is off (the common case, free).
        self.coverage_wait = (
            None
            if coverage_wait.extra_wait is None
            else CoverageWait(coverage_wait, [shard.leaves for shard in shards], min_coverage, start)
        )
        self.stop_at = math.inf  # the coverage wait's end, once min_coverage is reached
        # OpenTelemetry, when on: one span per attempt, the child of the request's span.
        self.tracing = tracing if parent is not None else None
        self.parent = parent
        self.spans: dict[tuple[int, int], Span] = {}
        # Every attempt: [shard position, attempt, replica, kind, start, end, outcome], for the slow log.
        self.timeline: dict[tuple[int, int], list[Any]] = {}

    async def run(self) -> list[ShardOutcome]:
        """Every shard's outcome, in shard order."""
        loop = self.loop
        plans = self.plans
        try:
            if self.batch:
                self._start_batched()
            else:
                for i, plan in enumerate(plans):
                    now = clock()
                    self._apply(i, plan.start(now), now)
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
                    for i, plan in enumerate(plans):
                        self._apply(i, plan.expire(now), now)
                    break
                if now >= self.stop_at:
                    assert self.coverage_wait is not None and self.coverage_wait.reached_at is not None
                    waited = (now - self.coverage_wait.reached_at) * 1000
                    reason = f"cut off by the coverage wait ({waited:.1f} ms after min_coverage)"
                    for i, plan in enumerate(plans):
                        self._apply(i, plan.cut_off(now, reason), now)
                    break
                wakes = self.wakes
                while wakes and wakes[0][0] <= now:
                    at, i = heapq.heappop(wakes)
                    plan = plans[i]
                    if plan.wake_at == at:  # else: stale entry
                        self._apply(i, plan.timer(now), now)
        finally:
            if self.timer is not None:
                self.timer.cancel()
            if self.running:  # the request was cancelled: nothing may outlive it
                now = clock()
                for i, plan in enumerate(plans):
                    self._apply(i, plan.cancel(now), now)
        return self.outcomes  # type: ignore[return-value]

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

    def _arm_timer(self) -> None:
        wakes = self.wakes
        plans = self.plans
        while wakes and plans[wakes[0][1]].wake_at != wakes[0][0]:
            heapq.heappop(wakes)  # the plan ended or moved its wake-up: drop the stale entry
        wake_at = min(self.deadline, self.stop_at, wakes[0][0] if wakes else math.inf)
        if wake_at != self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            # call_later, not call_at: times here are on the monotonic clock,
            # and uvloop's loop.time() only has millisecond resolution.
            self.timer = self.loop.call_later(max(0.0, wake_at - clock()), self._timer_fired)
            self.timer_at = wake_at

    def _finished(self, task: asyncio.Task[AttemptResult]) -> None:
        key = self.tasks.pop(task, None)
        if key is None:
            batch = self.batches.pop(task, None)
            if batch is not None and not task.cancelled():
                self._batch_finished(batch, *self._task_result(task, batch.members[0][0], batch.members[0][1]))
            return  # else a loser, already accounted for when it was cancelled
        if task.cancelled():
            return
        del self.running[key]
        i, attempt = key
        code, body = self._task_result(task, i, attempt)
        now = clock()
        if code == "OK":
            assert isinstance(body, bytes)
            payload, subtree, subtree_hedges = wire.leaf_response(body)
            self.hedges_below[i] += subtree_hedges
            self._result(i, attempt, "OK", "", now, payload, subtree)
        else:
            assert isinstance(body, str)
            self._result(i, attempt, code, body, now)

    def _task_result(self, task: asyncio.Task[AttemptResult], i: int, attempt: int) -> AttemptResult:
        failure = task.exception()
        if failure is not None:  # a transport bug: the attempt failed, the request goes on
            log.warning("attempt %d of shard %d raised %r", attempt, self.shards[i].index, failure)
            return "UNKNOWN", f"the root's call failed: {type(failure).__name__}"
        return task.result()

    def _result(
        self,
        i: int,
        attempt: int,
        code: str,
        details: str,
        now: float,
        payload: bytes = b"",
        subtree: shard_pb2.Coverage | None = None,
    ) -> None:
        """One attempt's outcome, to its plan: ``payload`` is the leaf's Any when ``code`` is OK."""
        if self.tracing is not None:
            self._end_span(i, attempt, code, "")
        event = self.timeline[(i, attempt)]
        event[5], event[6] = now, code
        self._apply(i, self.plans[i].result(attempt, code, details, now), now, payload, subtree)

    def _batch_finished(self, batch: Batch, code: str, body: bytes | str) -> None:
        """An ExecuteShards call ended: each shard still waiting for it gets its own answer."""
        now = clock()
        live = [(i, attempt, launch) for i, attempt, launch in batch.members if (i, attempt) in batch.live]
        for i, attempt, _ in live:
            del self.running[(i, attempt)]
        if code == "UNIMPLEMENTED":
            # The peer has no ExecuteShards: resend each attempt as an Execute, the plans none the wiser.
            batch.replica.batches = False
            for i, attempt, launch in live:
                self.replicas[i][launch.replica].batches = False
                self.shards[i].stats.batched -= 1  # it went alone after all
                if self.tracing is not None:
                    self._end_span(i, attempt, code, "")
                self._launch(i, launch, now)
            return
        answers: dict[int, wire.ShardAnswer] = {}
        if code == "OK":
            assert isinstance(body, bytes)
            try:
                answers = {answer[0]: answer for answer in wire.shard_answers(body)}
            except DecodeError:
                code, body = "INTERNAL", f"the ExecuteShards answer of {batch.replica.address} does not parse"
        for i, attempt, _ in live:
            if code != "OK":
                assert isinstance(body, str)
                self._result(i, attempt, code, body, now)
                continue
            index = self.shards[i].index
            answer = answers.get(index)
            if answer is None:
                details = f"the ExecuteShards answer of {batch.replica.address} has no answer for shard {index}"
                self._result(i, attempt, "INTERNAL", details, now)
            elif answer[1] == 0:
                self._result(i, attempt, "OK", "", now, answer[2])
            else:
                self._result(i, attempt, CODE_NAMES.get(answer[1], "UNKNOWN"), answer[3], now)

    # -- actions -----------------------------------------------------------------

    def _apply(
        self,
        i: int,
        actions: list[Action] | tuple[Action, ...],
        now: float,
        payload: bytes = b"",
        subtree: shard_pb2.Coverage | None = None,
    ) -> None:
        for action in actions:
            if type(action) is Launch:
                self._launch(i, action, now)
            elif type(action) is Cancel:
                task = self.running.pop((i, action.attempt))
                batch = self.batches.get(task)
                if batch is None:
                    del self.tasks[task]
                    task.cancel()
                else:  # one shard of an ExecuteShards call: the call goes on while another still wants it
                    batch.live.discard((i, action.attempt))
                    if not batch.live:
                        del self.batches[task]
                        task.cancel()
                event = self.timeline[(i, action.attempt)]
                event[5], event[6] = now, "CANCELLED"
                if self.tracing is not None:
                    self._end_span(i, action.attempt, "CANCELLED", _cancel_reason(actions))
            else:
                assert type(action) is End
                self._end(i, action, now, payload, subtree)
        plan = self.plans[i]
        if plan.wake_at != math.inf and not plan.ended:
            heapq.heappush(self.wakes, (plan.wake_at, i))

    def _start_batched(self) -> None:
        """Start every plan, sending the first attempts that go to one address as one ExecuteShards call."""
        groups: dict[str, list[tuple[int, Launch]]] = {}
        for i, plan in enumerate(self.plans):
            now = clock()
            # Addresses chosen so far are preferred (ReplicaSet.pick, rule 6): a process serving
            # several shards gets them all in one call rather than split over its replicas.
            actions = plan.start(now, groups.keys())
            launch = actions[0] if len(actions) == 1 else None
            if type(launch) is Launch and launch.kind is FIRST and self.replicas[i][launch.replica].batches:
                groups.setdefault(self.replicas[i][launch.replica].address, []).append((i, launch))
                self._apply(i, (), now)  # schedules the plan's hedge; the launch waits for its group
            else:
                self._apply(i, actions, now)
        now = clock()
        for group in groups.values():
            if len(group) == 1:
                self._launch(group[0][0], group[0][1], now)
            else:
                self._launch_batch(group, now)

    def _launch_batch(self, group: list[tuple[int, Launch]], now: float) -> None:
        first, launch = group[0]
        replica = self.replicas[first][launch.replica]
        shards = self.shards
        indexes = [shards[i].index for i, _ in group]
        request = partial(
            wire.execute_request,
            self.payload_field,
            wire.execute_shards_fields(indexes, shards[first].count),
            launch.attempt,
            False,
            self.request_id_field,
        )
        metadata = self.metadata
        for i, member in group:
            shards[i].stats.batched += 1
            self.timeline[(i, member.attempt)] = [i, member.attempt, member.replica, member.kind, now, math.nan, ""]
            if self.tracing is not None:
                self.spans[(i, member.attempt)] = span = self._span("Leaf.ExecuteShards", i, replica, member)
                if i == first:
                    metadata = ((HEADER, self.tracing.traceparent(span)),)
        # Each index adds at most 5 bytes: still below the merge request's framing (root.config.payload_limit).
        size = self.request_size + 5 * len(indexes)
        task = self.loop.create_task(replica.call_shards(request, size, self.deadline - now, metadata))
        task.add_done_callback(self._attempt_done)
        self.batches[task] = Batch(
            replica, [(i, member.attempt, member) for i, member in group], {(i, m.attempt) for i, m in group}
        )
        for i, member in group:
            self.running[(i, member.attempt)] = task

    def _span(self, name: str, i: int, replica: Replica, action: Launch) -> Span:
        assert self.tracing is not None
        return self.tracing.child_span(
            name,
            self.parent,
            attributes={
                "scatter.shard": self.shards[i].index,
                "scatter.replica": replica.address,
                "scatter.attempt": action.attempt,
                "scatter.attempt_kind": action.kind.value,
            },
        )

    def _launch(self, i: int, action: Launch, now: float) -> None:
        shard = self.shards[i]
        # Built by the transport when it sends (for a large payload, only once the
        # channel is free: root.transport.send), so no copy waits in a queue.
        request = partial(
            wire.execute_request,
            self.payload_field,
            shard.execute_fields,
            action.attempt,
            action.kind is HEDGE,
            self.request_id_field,
        )
        replica = self.replicas[i][action.replica]
        metadata = self.metadata
        tracing = self.tracing
        if tracing is not None:
            span = self._span("Leaf.Execute", i, replica, action)
            self.spans[(i, action.attempt)] = span
            metadata = ((HEADER, tracing.traceparent(span)),)
        self.timeline[(i, action.attempt)] = [i, action.attempt, action.replica, action.kind, now, math.nan, ""]
        task = self.loop.create_task(replica.call(request, self.request_size, self.deadline - now, metadata))
        task.add_done_callback(self._attempt_done)
        self.tasks[task] = (i, action.attempt)
        self.running[(i, action.attempt)] = task

    def attempts(self) -> tuple[AttemptEvent, ...]:
        """This request's attempts so far, in milliseconds from its arrival (for the slow log)."""
        start = self.start
        events = []
        for i, attempt, replica, kind, began, ended, outcome in self.timeline.values():
            shard = self.shards[i]
            events.append(
                AttemptEvent(
                    shard=shard.index,
                    attempt=attempt,
                    replica=self.replicas[i][replica].address,
                    kind=kind.value,
                    start_ms=(began - start) * 1000,
                    end_ms=(ended - start) * 1000 if ended == ended else math.nan,
                    outcome=outcome or "RUNNING",
                )
            )
        return tuple(events)

    def _end_span(self, i: int, attempt: int, code: str, cancelled_because: str) -> None:
        span = self.spans.pop((i, attempt), None)
        if span is None:
            return
        assert self.tracing is not None
        span.set_attribute("rpc.grpc.status_code", code)
        if cancelled_because:
            span.set_attribute("scatter.cancelled", True)
            span.set_attribute("scatter.cancel_reason", cancelled_because)
        elif code != "OK":
            self.tracing.error(span, code)
        span.end()

    def _end(self, i: int, end: End, now: float, payload: bytes, subtree: shard_pb2.Coverage | None) -> None:
        shard = self.shards[i]
        plan = self.plans[i]
        # shard.proto: from the first attempt's start (not the request's arrival: the fan-out
        # starts later, and later for the last shards of a wide one) to the answer or give-up.
        elapsed = now - (plan.started_at if plan.attempts else self.start)
        if end.status == OK:
            shard.latency.observe(elapsed)
        report = shard_pb2.ShardReport(
            shard_index=shard.index,
            status=end.status,  # type: ignore[arg-type]
            replica=self.replicas[i][end.replica].address if end.replica >= 0 else "",
            latency=wire.duration(elapsed),
            attempts=plan.attempts,
            hedge_won=end.hedge_won,
            error=end.reason,
            hedges=plan.hedges + self.hedges_below[i],
        )
        self.outcomes[i] = ShardOutcome(report, payload, plan.invalid, subtree)
        self.open -= 1
        wait = self.coverage_wait
        if end.status == OK and wait is not None and wait.reached_at is None:
            # The coverage wait starts once min_coverage of the leaf shards have answered.
            stop = wait.answered(i, now, None if subtree is None else subtree.answered)
            if stop is not None:
                self.stop_at = stop
