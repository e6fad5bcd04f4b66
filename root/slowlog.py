"""The slowest recent requests, with each shard's attempts, for the status page.

What lives here: ``AttemptEvent`` and ``SlowRequest`` (what one request did,
shard by shard, attempt by attempt, in milliseconds from its arrival) and
``SlowLog``, which keeps the ``capacity`` slowest requests of the last
``max_age`` seconds. Pure: the clock and the records are passed in. What
does not: recording the attempts (``root.scatter`` keeps a timeline per
request, a few tuples) or drawing them (``root.status_page``).

Cost: ``offer`` is a few comparisons (``capacity`` of them, to age out old
records) for a request faster than the slowest kept ones, which is nearly
every request once the log is full; the record is built (``build()``) only
for a request that gets in.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AttemptEvent", "SlowLog", "SlowRequest"]

DEFAULT_CAPACITY = 10
DEFAULT_MAX_AGE = 300.0  # seconds: the slowest of the last five minutes, not of the day the root started


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One leaf call of one shard, in milliseconds from the request's arrival."""

    shard: int
    attempt: int
    replica: str
    kind: str  # first, hedge, failover
    start_ms: float
    end_ms: float
    outcome: str  # a gRPC code name, or CANCELLED for a loser or a call cut off


@dataclass(frozen=True, slots=True)
class SlowRequest:
    request_id: str
    at: float  # wall-clock time it arrived
    elapsed_ms: float
    code: str
    answered: int  # shards answered
    total: int
    attempts: tuple[AttemptEvent, ...]


class SlowLog:
    """The ``capacity`` slowest requests of the last ``max_age`` seconds (by ``now``, the caller's clock)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, max_age: float = DEFAULT_MAX_AGE) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self._kept: list[tuple[float, float, SlowRequest]] = []  # (elapsed, when offered, record), ascending

    def offer(self, elapsed: float, now: float, build: Callable[[], SlowRequest]) -> None:
        kept = self._kept
        if kept and now - min(t for _, t, _ in kept) > self.max_age:
            self._kept = kept = [entry for entry in kept if now - entry[1] <= self.max_age]
        if len(kept) >= self.capacity:
            if elapsed <= kept[0][0]:
                return
            kept.pop(0)
        bisect.insort(kept, (elapsed, now, build()), key=lambda entry: entry[0])

    def slowest(self, now: float) -> tuple[SlowRequest, ...]:
        """The records kept, slowest first, none older than ``max_age``."""
        return tuple(record for _, t, record in reversed(self._kept) if now - t <= self.max_age)
