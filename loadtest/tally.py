"""What the load-test users record beyond Locust's own statistics, and its summary.

Pure code (no grpc, no locust): the Locust user fills a :class:`Tally`, the
runner reads it back from the side file and summarises it.

Why not Locust's numbers alone: Locust rounds response times under 100 ms to
whole milliseconds, and this system answers in 1-20 ms, so its p50 would be
"2" or "3". It also cannot see inside a response: hedge rate and coverage
come from ``QueryResponse.shards`` and ``.coverage``. So every call is also
recorded here, per wall-clock second (which lets the runner cut a run into
phases: before/while/after a fault, the steps of a ramp), with latencies in
a log-bucketed histogram (1% wide buckets: a percentile is exact to 0.5%,
the tally stays a few KB, and tallies of Locust workers merge by adding).
Locust's CSV and HTML stay the reference for charts; the summary table
quotes this tally.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Histogram", "Second", "Summary", "Tally", "read_tally", "summarise"]

_GROWTH = 1.01  # bucket width: each bucket is 1% wider than the one before
_LOG_GROWTH = math.log(_GROWTH)
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}


class Histogram:
    """Counts of latencies in buckets of 1% relative width (an HDR histogram in miniature)."""

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(counts or {})

    def add(self, seconds: float) -> None:
        micros = max(seconds * 1e6, 1.0)
        self.counts[int(math.log(micros) / _LOG_GROWTH)] += 1

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile_ms(self, q: float) -> float:
        """The ``q`` quantile in milliseconds (the middle of its bucket), NaN when empty."""
        total = self.total
        if not total:
            return math.nan
        rank = q * total
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return math.exp((bucket + 0.5) * _LOG_GROWTH) / 1000
        return math.nan  # unreachable: seen ends at total >= rank


@dataclass
class Second:
    """Everything recorded in one wall-clock second."""

    ok: int = 0
    latency: Histogram = field(default_factory=Histogram)  # successful calls
    failures: Counter[str] = field(default_factory=Counter)  # gRPC status name -> count
    failure_latency: Histogram = field(default_factory=Histogram)
    shard_calls: int = 0  # shard reports seen in successful responses
    attempts: int = 0  # leaf calls started for those shards (1 + hedges + failovers each)
    hedges_won: int = 0
    coverage: float = 0.0  # sum of answered/total over successful responses
    partial: int = 0  # successful responses with coverage < 1
    users_min: int = 1 << 30
    users_max: int = 0

    def merge(self, other: Second) -> None:
        self.ok += other.ok
        self.latency.merge(other.latency)
        self.failures.update(other.failures)
        self.failure_latency.merge(other.failure_latency)
        self.shard_calls += other.shard_calls
        self.attempts += other.attempts
        self.hedges_won += other.hedges_won
        self.coverage += other.coverage
        self.partial += other.partial
        self.users_min = min(self.users_min, other.users_min)
        self.users_max = max(self.users_max, other.users_max)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "latency": {str(k): v for k, v in self.latency.counts.items()},
            "failures": dict(self.failures),
            "failure_latency": {str(k): v for k, v in self.failure_latency.counts.items()},
            "shard_calls": self.shard_calls,
            "attempts": self.attempts,
            "hedges_won": self.hedges_won,
            "coverage": self.coverage,
            "partial": self.partial,
            "users_min": self.users_min,
            "users_max": self.users_max,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Second:
        return cls(
            ok=data["ok"],
            latency=Histogram({int(k): v for k, v in data["latency"].items()}),
            failures=Counter(data["failures"]),
            failure_latency=Histogram({int(k): v for k, v in data["failure_latency"].items()}),
            shard_calls=data["shard_calls"],
            attempts=data["attempts"],
            hedges_won=data["hedges_won"],
            coverage=data["coverage"],
            partial=data["partial"],
            users_min=data["users_min"],
            users_max=data["users_max"],
        )


class Tally:
    """Per-second records of a run, keyed by ``int(time.time())``."""

    def __init__(self) -> None:
        self.seconds: dict[int, Second] = {}

    def _second(self, now: float, users: int) -> Second:
        key = int(now)
        second = self.seconds.get(key)
        if second is None:
            second = self.seconds[key] = Second()
        second.users_min = min(second.users_min, users)
        second.users_max = max(second.users_max, users)
        return second

    def success(
        self,
        now: float,
        users: int,
        seconds: float,
        shard_calls: int,
        attempts: int,
        hedges_won: int,
        answered: int,
        total: int,
    ) -> None:
        second = self._second(now, users)
        second.ok += 1
        second.latency.add(seconds)
        second.shard_calls += shard_calls
        second.attempts += attempts
        second.hedges_won += hedges_won
        if total:
            second.coverage += answered / total
            second.partial += answered < total

    def failure(self, now: float, users: int, seconds: float, status: str) -> None:
        second = self._second(now, users)
        second.failures[status] += 1
        second.failure_latency.add(seconds)

    def merge(self, other: Tally) -> None:
        for key, second in other.seconds.items():
            if key in self.seconds:
                self.seconds[key].merge(second)
            else:
                self.seconds[key] = second

    def clear(self) -> None:
        self.seconds.clear()

    def to_json(self) -> dict[str, Any]:
        return {"seconds": {str(k): v.to_json() for k, v in sorted(self.seconds.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        tally = cls()
        tally.seconds = {int(k): Second.from_json(v) for k, v in data["seconds"].items()}
        return tally

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json()))


def read_tally(path: Path) -> Tally:
    return Tally.from_json(json.loads(path.read_text()))


@dataclass(frozen=True)
class Summary:
    """One row of a results table: a run, or a phase of one."""

    seconds: float
    requests: int
    ok: int
    failures: dict[str, int]
    throughput: float  # successful requests per second
    percentiles_ms: dict[str, float]  # of successful requests
    failure_p50_ms: float
    hedge_rate: float  # extra leaf attempts per shard call (hedges and failovers)
    hedges_won: float  # fraction of shard calls won by a hedge
    mean_coverage: float  # over successful responses
    partial: float  # fraction of successful responses with coverage < 1

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "requests": self.requests,
            "ok": self.ok,
            "failures": self.failures,
            "throughput_rps": round(self.throughput, 2),
            "percentiles_ms": {k: round(v, 3) for k, v in self.percentiles_ms.items()},
            "failure_p50_ms": round(self.failure_p50_ms, 3),
            "hedge_rate": round(self.hedge_rate, 5),
            "hedges_won": round(self.hedges_won, 5),
            "mean_coverage": round(self.mean_coverage, 5),
            "partial": round(self.partial, 5),
        }


def summarise(seconds: Iterable[Second], duration: float | None = None) -> Summary:
    """Add up ``seconds``; throughput over ``duration`` (default: the number of seconds given)."""
    total = Second()
    count = 0
    for second in seconds:
        total.merge(second)
        count += 1
    elapsed = duration if duration is not None else float(count)
    failed = sum(total.failures.values())
    return Summary(
        seconds=elapsed,
        requests=total.ok + failed,
        ok=total.ok,
        failures=dict(total.failures.most_common()),
        throughput=total.ok / elapsed if elapsed > 0 else math.nan,
        percentiles_ms={name: total.latency.quantile_ms(q) for name, q in QUANTILES.items()},
        failure_p50_ms=total.failure_latency.quantile_ms(0.5),
        hedge_rate=(total.attempts - total.shard_calls) / total.shard_calls if total.shard_calls else 0.0,
        hedges_won=total.hedges_won / total.shard_calls if total.shard_calls else 0.0,
        mean_coverage=total.coverage / total.ok if total.ok else math.nan,
        partial=total.partial / total.ok if total.ok else math.nan,
    )
