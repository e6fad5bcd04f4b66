"""What the HTTP thread may read: an immutable snapshot of the root, taken on the event loop.

Rules of this file. Everything the root counts or decides with (the
``RootService`` counters and histograms, and per shard its ``ShardCounters``,
duration histogram, ``LatencyWindow`` and ``ReplicaSet``) belongs to the
event-loop thread, which changes it without locks. The metrics collector
(``root.metrics``) and the status page (``root.status_page``) run in the
HTTP server's threads and never touch that state: they get a
``RootSnapshot`` and read only it. A snapshot holds ints, floats, strings,
bytes and tuples in frozen dataclasses, nothing the loop can change
afterwards; ``take_snapshot`` is the only code here that reads live state,
and it must run on the loop.

How a snapshot is taken: on demand. The HTTP thread asks the loop to run
``take_snapshot`` (``scatter_common.metrics.call_on_loop``: one
``call_soon_threadsafe``) and waits up to ``SNAPSHOT_TIMEOUT``. Because the
copy is one callback, it sits between two steps of every request in flight:
a shard's outcomes, its calls and the request counters are all from the same
instant, as are a histogram's buckets and its sum. The copy is cheap
(counters, the replicas' status tuples, one memcpy per latency window:
well under a millisecond on the loop at fan-out 256); everything derived
(sorting latencies for percentiles, Prometheus families, HTML) happens after,
on the HTTP thread. Nothing is done per request.

Turned down:

- A snapshot the loop refreshes on a timer: the loop pays for it every
  period whether anyone looks or not, and every reading is up to a period
  old. Prometheus scrapes every 15 s or so and a person reloads the status
  page; on demand costs only when someone reads, and is never stale.
- Reading live state from the HTTP thread (what this replaced): each int
  read is safe under the GIL, but the reads of one scrape come from
  different instants, and ``LatencyWindow.percentile`` refreshes the
  window's sorted copy, so rendering the page changed when the hedge delay
  saw new samples and raced the loop's own refresh.
- A lock around the counters: every request would pay for it, for the sake
  of a scrape.

When the loop does not run the callback in time (wedged, or stopping), the
page answers 503 instead of numbers from an unknown instant; for Prometheus
that is a failed scrape, the honest signal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from root.policies import LatencySamples, ReplicaStatus
from root.service import RootService
from root.slowlog import SlowRequest as SlowRequest  # re-exported: the status page reads only this module
from scatter_common.metrics import HistogramSnapshot, call_on_loop

# A loop that has not run a callback for 2 s is wedged: every request on it
# is already past the default 1 s deadline. Prometheus' default scrape
# timeout (10 s) leaves room for the answer after the wait.
SNAPSHOT_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class ShardSnapshot:
    """One shard: its ``ShardCounters`` counters, duration histogram, latencies and replicas."""

    index: int
    calls: int
    attempts: int
    hedges_sent: int
    hedges_won: int
    budget_exhausted: int
    failovers: int
    cancelled: int
    batched: int
    outcomes: tuple[tuple[int, int], ...]  # (ShardStatus, count), by status
    duration: HistogramSnapshot  # first attempt to answer, answered calls
    latencies: LatencySamples  # the hedge delay's window of successful attempts
    replicas: tuple[ReplicaStatus, ...]
    membership_changes: int = 0  # replica sets applied since start (discovery, reload)
    discovery_failures: int = 0  # lookups that failed and kept the last set

    def outcome(self, status: int) -> int:
        return dict(self.outcomes).get(status, 0)


@dataclass(frozen=True, slots=True)
class RootSnapshot:
    """The root at one instant, as the metrics and the status page show it."""

    now: float  # monotonic, the clock of ReplicaStatus.ejected_until
    uptime: float  # seconds since the service started
    listen: str
    merge_address: str
    max_in_flight: int
    min_coverage: float
    hedging_enabled: bool
    latency_window: int  # samples per shard the percentiles are over, at most
    requests_by_code: tuple[tuple[str, int], ...]  # (gRPC code name, count), by name
    duration: HistogramSnapshot  # arrival to answer, successful requests
    coverage: HistogramSnapshot  # answered / total, successful requests
    in_flight: int
    shed: int
    shards: tuple[ShardSnapshot, ...]
    slowest: tuple[SlowRequest, ...] = ()  # the slowest recent requests, slowest first (root.slowlog)
    trace_url: str = ""  # [root] trace_url: a trace UI's address, "{trace_id}" in it


def take_snapshot(service: RootService) -> RootSnapshot:
    """Copy the root's state. Run it on the event loop: it reads what the loop changes."""
    config = service.config
    shards = []
    for shard in service.shards:
        stats = shard.stats
        shards.append(
            ShardSnapshot(
                index=shard.index,
                calls=stats.calls,
                attempts=stats.attempts,
                hedges_sent=stats.hedges_sent,
                hedges_won=stats.hedges_won,
                budget_exhausted=stats.budget_exhausted,
                failovers=stats.failovers,
                cancelled=stats.cancelled,
                batched=stats.batched,
                outcomes=tuple(sorted(stats.outcomes.items())),
                duration=shard.latency.snapshot(),
                latencies=shard.policy.latencies.samples(),
                replicas=shard.policy.chooser.status(),
                membership_changes=shard.membership_changes,
                discovery_failures=shard.discovery_failures,
            )
        )
    return RootSnapshot(
        now=time.monotonic(),
        uptime=time.time() - service.started,
        listen=config.listen,
        merge_address=service.merge_address,
        max_in_flight=config.max_in_flight,
        min_coverage=config.min_coverage,
        hedging_enabled=config.hedging.enabled,
        latency_window=config.latency_window.size,
        requests_by_code=tuple(sorted(service.requests_by_code.items())),
        duration=service.latency.snapshot(),
        coverage=service.coverage.snapshot(),
        in_flight=service.admission.in_flight,
        shed=service.admission.shed,
        shards=tuple(shards),
        slowest=service.slow.slowest(time.monotonic()),
        trace_url=config.trace_url,
    )


def snapshot_reader(
    service: RootService, loop: asyncio.AbstractEventLoop, timeout: float = SNAPSHOT_TIMEOUT
) -> Callable[[], RootSnapshot]:
    """A function for the HTTP thread: a fresh snapshot taken on ``loop``, or ``PageUnavailable``."""
    return lambda: call_on_loop(loop, lambda: take_snapshot(service), timeout)
