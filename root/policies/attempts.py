"""The attempt plan of one shard within one request: every rule about attempts.

What lives here: ``ShardPolicy`` (what a shard keeps across requests: its
replica chooser, latency window, hedge delay, the hedge budget and its
counters) and ``AttemptPlan``, a sans-I/O state machine in the style of h11:
events go in, actions come out, and nothing here sends a call, sets a timer
or reads a clock of its own. What does not: the asyncio driver
(``root.scatter``) that maps actions to tasks and one timer, and the
request-level decisions (deadline budget, coverage wait) the driver applies
to all the shards of a request.

Events (each takes ``now``, the clock time the driver observed it):

- ``start(now)``: the request reaches this shard; the first attempt goes out.
- ``timer(now)``: the time the plan asked for (``wake_at``) has come.
- ``result(attempt, code, detail, now)``: attempt number ``attempt`` ended
  with the gRPC status name ``code`` (``"OK"`` for an answer) and ``detail``
  (the status message; empty for an answer).
- ``expire(now)``: the request's shard deadline has come: TIMEOUT.
- ``cut_off(now, reason)``: the coverage wait gave up on this shard: SKIPPED.
- ``cancel(now)``: the request itself was cancelled; the shard has no outcome.

Actions (returned in the order the driver must carry them out):

- ``Launch(attempt, replica, kind)``: send attempt number ``attempt``
  (1-based; it goes on the wire) to replica ``replica``; ``kind`` is FIRST,
  HEDGE or FAILOVER;
- ``Cancel(attempt)``: cancel that attempt's call; its result will never be
  reported;
- ``End(status, replica, reason, hedge_won)``: the shard is over with a
  ``ShardStatus`` value, the replica that answered (or failed last; -1 if
  none), a reason for the client when it did not answer, and whether the
  answer came from a hedge. After ``End`` every event is ignored.

``wake_at`` is the next time the plan wants a ``timer`` event (infinity for
none); the driver reads it after each event. A timer that fires early is
harmless: ``timer`` does nothing before ``wake_at``.

Rules (gRPC's hedging design, gRFC A6; Finagle's backup requests; trio's
happy eyeballs):

1. ``max_attempts`` counts every attempt of the shard: first, hedges and
   failovers.
2. A hedge is due ``HedgeDelay`` after the previous attempt's start (the
   same clock the latency window's samples are measured on: each from its
   own attempt's start). It goes out only if ``max_attempts`` allows, the
   shard has another replica, and the budget grants a token; a refused hedge
   is counted and not retried for this request.
3. A hedge or failover goes to a replica not yet tried by this request. A
   hedge may revisit one when every replica has been tried (a fresh call
   there usually misses the stall the first hit); a failover never does.
   3a. While another attempt is in flight, a hedge never goes to an ejected
   replica (it could not win; the budget is not spent). With nothing in
   flight, an ejected replica is still a last resort.
4. An attempt failing with a non-fatal code (``HedgingConfig``) fails over to
   the next replica at once, without drawing on the budget; with no
   replica left and nothing in flight the shard is UNAVAILABLE.
5. DEADLINE_EXCEEDED from a leaf while a sibling attempt is still in flight
   waits for the sibling (they share the deadline); the last one ends the
   shard as TIMEOUT.
6. Any other failure is fatal for the shard (the same request fails the
   same way on every replica): the status table's ShardStatus (ERROR), with
   the leaf's verdict on the request (INVALID_ARGUMENT) kept apart for the
   client.
7. The first answer wins; every other attempt is cancelled.

8. Blame (outlier ejection counts only replica faults, ``ReplicaSet.fault``)
   is assigned when the shard answers, relative to the winner: a replica
   that answered UNAVAILABLE for this request, or whose attempt started
   before the winner's and was still running when it answered, is at fault,
   unless it is the winner's own replica. A shard that got no answer blames
   nobody: when every replica fails alike, the request (its deadline, its
   input) or the whole shard is the cause, and ejecting a replica would not
   help; that is what keeps a client from ejecting healthy replicas.
9. The shard's latency window (the hedge delay's source) gets the first
   attempt of every shard call, measured from its own start: its answer
   time, or, when a hedge won, the time it had run when cancelled. That
   lower bound is above the hedge delay, so every percentile below the delay
   is estimated without bias, and the hedge rate is what the percentile
   says (1 - q of shard calls), not more, as it would be if the slow first
   attempts that hedges rescue were never seen. Hedge and failover answers
   are not recorded: only the winners among them would be, the fast ones.

How each attempt's end counts for its replica's EWMA (``ReplicaSet.finish``):
a loser of a race is CANCELLED, an attempt cut off by the request's deadline
TIMEOUT (both censored observations that can only raise it).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import NamedTuple

from protos.scatter_gather.v1 import shard_pb2
from root.policies.budget import HedgeBudget
from root.policies.hedging import HedgeDelay, HedgingConfig
from root.policies.latency import LatencyWindow
from root.policies.replicas import FailureKind, ReplicaSet, failure_kind_for_status
from scatter_common.status import RETRIES_EXHAUSTED, rule_for

OK = shard_pb2.SHARD_STATUS_OK
TIMEOUT = shard_pb2.SHARD_STATUS_TIMEOUT
ERROR = shard_pb2.SHARD_STATUS_ERROR
UNAVAILABLE = shard_pb2.SHARD_STATUS_UNAVAILABLE
SKIPPED = shard_pb2.SHARD_STATUS_SKIPPED

NO_REPLICA = "no replica could be tried"
DEADLINE_REASON = "deadline exceeded before any replica answered"


class AttemptKind(enum.Enum):
    FIRST = "first"
    HEDGE = "hedge"
    FAILOVER = "failover"


class Launch(NamedTuple):
    attempt: int
    replica: int
    kind: AttemptKind


class Cancel(NamedTuple):
    attempt: int


class End(NamedTuple):
    status: int  # a shard_pb2.ShardStatus value
    replica: int  # -1 when no replica was tried
    reason: str  # empty when OK
    hedge_won: bool


Action = Launch | Cancel | End


@dataclass
class ShardCounters:
    """Counters of one shard across requests, read by metrics and the status page.

    The one place each of these facts is counted: the other policies keep only
    the state their decisions need (the hedge budget its tokens, not how many
    hedges it granted), so no two counters can disagree.
    """

    calls: int = 0
    attempts: int = 0
    hedges_sent: int = 0
    hedges_won: int = 0
    budget_exhausted: int = 0
    failovers: int = 0
    cancelled: int = 0
    batched: int = 0  # first attempts sent in one ExecuteShards call with other shards (root.scatter)
    outcomes: dict[int, int] = field(default_factory=dict)


@dataclass
class ShardPolicy:
    """What one shard keeps across requests, shared by every plan of that shard."""

    chooser: ReplicaSet
    latencies: LatencyWindow
    hedging: HedgingConfig
    hedge_delay: HedgeDelay
    budget: HedgeBudget
    counters: ShardCounters = field(default_factory=ShardCounters)

    @property
    def replicas(self) -> int:
        return len(self.chooser)


class _Open(NamedTuple):
    replica: int
    kind: AttemptKind
    started: float


_NONE: tuple[Action, ...] = ()
_NO_REPLICAS: frozenset[int] = frozenset()


class AttemptPlan:
    """The attempts of one shard in one request; see the module docstring."""

    __slots__ = (
        "attempts",
        "ended",
        "faulted",
        "hedges",
        "invalid",
        "last_replica",
        "open",
        "policy",
        "started_at",
        "tried",
        "wake_at",
    )

    def __init__(self, policy: ShardPolicy) -> None:
        self.policy = policy
        self.open: dict[int, _Open] = {}  # attempt number -> what is in flight
        self.tried: set[int] = set()
        self.attempts = 0
        self.hedges = 0  # hedges sent for this shard in this request
        self.wake_at = math.inf
        self.ended = False
        self.last_replica = -1
        self.invalid: str | None = None  # the leaf's INVALID_ARGUMENT message
        self.started_at = math.nan  # when the first attempt went out
        self.faulted: list[int] | None = None  # replicas that answered UNAVAILABLE, blamed if a sibling answers

    # -- events --------------------------------------------------------------

    def start(self, now: float, prefer: AbstractSet[str] = frozenset()) -> list[Action]:
        """The first attempt; ``prefer``: addresses the request's other shards chose (``ReplicaSet.pick``)."""
        policy = self.policy
        policy.counters.calls += 1
        policy.budget.deposit()
        self.started_at = now
        actions: list[Action] = []
        if not self._launch(now, AttemptKind.FIRST, actions, prefer):
            return self._end(UNAVAILABLE, -1, NO_REPLICA, False, actions, now)
        self._schedule_hedge(now)
        return actions

    def timer(self, now: float) -> list[Action] | tuple[Action, ...]:
        if self.ended or now < self.wake_at:
            return _NONE
        self.wake_at = math.inf
        policy = self.policy
        if self.attempts >= policy.hedging.max_attempts:
            return _NONE
        choice = self._choose(AttemptKind.HEDGE)
        if choice is None:
            return _NONE  # nowhere a hedge could win: no token spent
        if not policy.budget.try_withdraw():
            policy.counters.budget_exhausted += 1
            return _NONE
        actions: list[Action] = []
        self._send(now, choice, AttemptKind.HEDGE, actions)
        policy.counters.hedges_sent += 1
        self.hedges += 1
        self._schedule_hedge(now)
        return actions

    def result(self, attempt: int, code: str, detail: str, now: float) -> list[Action] | tuple[Action, ...]:
        if self.ended:
            return _NONE
        done = self.open.pop(attempt, None)
        if done is None:
            return _NONE  # cancelled earlier: already accounted for
        policy = self.policy
        chooser = policy.chooser
        elapsed = now - done.started
        if code == "OK":
            chooser.finish(done.replica, elapsed, True)
            if done.kind is AttemptKind.FIRST:
                policy.latencies.record(elapsed, now)
            actions: list[Action] = []
            if self.open:
                self._cancel_losers(now, done, actions)
            if self.faulted is not None:
                for replica in self.faulted:
                    if replica != done.replica:
                        chooser.fault(replica)
            if done.kind is AttemptKind.HEDGE:
                policy.counters.hedges_won += 1
            return self._end(OK, done.replica, "", done.kind is AttemptKind.HEDGE, actions, now)
        kind = failure_kind_for_status(code)
        chooser.finish(done.replica, elapsed, False, kind)
        if kind is FailureKind.UNAVAILABLE:
            if self.faulted is None:
                self.faulted = [done.replica]
            else:
                self.faulted.append(done.replica)
        self.last_replica = done.replica
        if policy.hedging.is_non_fatal(code):
            actions = []
            if self.attempts < policy.hedging.max_attempts and self._launch(now, AttemptKind.FAILOVER, actions):
                policy.counters.failovers += 1
                return actions
            if self.open:
                return _NONE  # a sibling may still answer
            reason = detail if code == "UNAVAILABLE" else f"{code}: {detail}"
            return self._end(RETRIES_EXHAUSTED, done.replica, reason, False, actions, now)
        # What a code means is the status table's (scatter_common.status); which codes
        # fail over is the configuration's (non_fatal_status_codes, the table's by default).
        rule = rule_for(code)
        if rule.shard == TIMEOUT:
            if self.open:
                return _NONE  # the others share the deadline; let them finish
            return self._end(TIMEOUT, done.replica, DEADLINE_REASON, False, [], now)
        if rule.verdict:
            self.invalid = detail
        return self._end(rule.shard, done.replica, f"{code}: {detail}", False, [], now)

    def expire(self, now: float) -> list[Action] | tuple[Action, ...]:
        if self.ended:
            return _NONE
        actions: list[Action] = []
        self._cancel_open(now, FailureKind.TIMEOUT, actions)
        return self._end(TIMEOUT, self.last_replica, DEADLINE_REASON, False, actions, now)

    def cut_off(self, now: float, reason: str) -> list[Action] | tuple[Action, ...]:
        if self.ended:
            return _NONE
        return self._end(SKIPPED, self.last_replica, reason, False, [], now)

    def cancel(self, now: float) -> list[Action] | tuple[Action, ...]:
        """The request is gone: cancel what is in flight; the shard has no outcome."""
        if self.ended:
            return _NONE
        actions: list[Action] = []
        self._cancel_open(now, FailureKind.CANCELLED, actions)
        self.ended = True
        self.wake_at = math.inf
        return actions

    # -- internals -----------------------------------------------------------

    def _launch(
        self, now: float, kind: AttemptKind, actions: list[Action], prefer: AbstractSet[str] = frozenset()
    ) -> bool:
        choice = self._choose(kind, prefer)
        if choice is None:
            return False
        self._send(now, choice, kind, actions)
        return True

    def _choose(self, kind: AttemptKind, prefer: AbstractSet[str] = frozenset()) -> int | None:
        """The replica for the next attempt of ``kind``, or None (rules 3 and 3a)."""
        chooser = self.policy.chooser
        if kind is not AttemptKind.HEDGE:
            return chooser.pick(self.tried, prefer=prefer)  # a failover never revisits a replica that failed
        # Rule 3a: while an attempt is in flight, a hedge never goes to an ejected replica.
        last_resort = not self.open
        choice = chooser.pick(self.tried, last_resort)
        if choice is None:
            choice = chooser.pick(_NO_REPLICAS, last_resort)  # rule 3: a hedge may revisit
        return choice

    def _send(self, now: float, choice: int, kind: AttemptKind, actions: list[Action]) -> None:
        chooser = self.policy.chooser
        self.attempts += 1
        self.tried.add(choice)
        self.last_replica = choice
        chooser.start(choice)
        self.open[self.attempts] = _Open(choice, kind, now)
        actions.append(Launch(self.attempts, choice, kind))

    def _schedule_hedge(self, now: float) -> None:
        policy = self.policy
        if policy.replicas < 2:  # a hedge needs somewhere else to go
            return
        delay = policy.hedge_delay.delay(policy.latencies, now)
        if delay is not None:
            self.wake_at = now + delay

    def _cancel_losers(self, now: float, winner: _Open, actions: list[Action]) -> None:
        """Cancel the attempts that lost to ``winner``, blaming those that had a head start (rule 8)."""
        policy = self.policy
        chooser = policy.chooser
        for attempt, running in self.open.items():
            elapsed = now - running.started
            chooser.finish(running.replica, elapsed, False, FailureKind.CANCELLED)
            if running.started < winner.started and running.replica != winner.replica:
                chooser.fault(running.replica, elapsed)
            if running.kind is AttemptKind.FIRST:
                policy.latencies.record(elapsed, now)  # a lower bound, above the hedge delay (rule 9)
            policy.counters.cancelled += 1
            actions.append(Cancel(attempt))
        self.open.clear()

    def _cancel_open(self, now: float, kind: FailureKind, actions: list[Action]) -> None:
        if not self.open:
            return
        chooser = self.policy.chooser
        counters = self.policy.counters
        for attempt, running in self.open.items():
            chooser.finish(running.replica, now - running.started, False, kind)
            counters.cancelled += 1
            actions.append(Cancel(attempt))
        self.open.clear()

    def _end(
        self,
        status: int,
        replica: int,
        reason: str,
        hedge_won: bool,
        actions: list[Action],
        now: float,
    ) -> list[Action]:
        if self.open:
            # Attempts a fatal error or the coverage wait gave up on: they say
            # nothing about their replica.
            self._cancel_open(now, FailureKind.CANCELLED, actions)
        self.ended = True
        self.wake_at = math.inf
        counters = self.policy.counters
        counters.attempts += self.attempts
        counters.outcomes[status] = counters.outcomes.get(status, 0) + 1
        actions.append(End(status, replica, reason, hedge_won))
        return actions
