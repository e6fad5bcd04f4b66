"""Recent successful latencies of one shard, and percentiles over them.

What lives here: ``LatencyWindowConfig`` and ``LatencyWindow``, a fixed-size
ring of the last ``size`` latencies (seconds) with nearest-rank percentiles,
and ``LatencySamples``, a copy of a window for readers on another thread.
What does not: deciding what to do with a percentile (``hedging.py``), or
timing calls (the caller measures and calls ``record``).

Percentile definition (pinned by the tests): nearest rank. For ``n`` samples
sorted ascending ``x[1] <= ... <= x[n]``, ``percentile(q)`` is ``x[r]`` with
``r = max(1, ceil(q * n))``: the smallest sample such that at least a
fraction ``q`` of the window is at or below it. It is always a latency that
was really observed, never an interpolation, so a hedge delay derived from it
is a value the shard has actually produced. The ceiling is taken of
``q * n - 1e-9`` so that ``0.07 * 100 == 7.000000000000001`` gives rank 7, not
8 (the float error of ``q * n`` is about ``n * 1e-16``, far below the slack;
``round(q * n, 9)`` would do the same at five times the cost).

Cost model. ``record`` is O(1): one store into an ``array('d')`` and an index
bump, no allocation. ``percentile`` answers from a sorted snapshot of the
window; the snapshot is refreshed (an O(n log n) sort, about 40 us for 1,000
floats) only when it is stale, i.e. when the number of records since the last
snapshot has reached ``min(recompute_every, snapshot size)``. In steady state
that is one sort per ``recompute_every`` records, so the hot path pays
``sort / recompute_every`` per call (under 1 us with the defaults), and a
percentile may lag the newest ``recompute_every - 1`` samples. During warm-up
the ``snapshot size`` term refreshes at 1, 2, 4, 8, ... samples, so an early
snapshot never misses more than half of the data. We turned down streaming
estimators (P-square, t-digest): they answer in O(1) but approximate, and they
cannot forget old samples, which a sliding window must.

Readers other than the hedge delay (the status page) never call
``percentile``: it refreshes the window's sorted copy, which is state the
hedge delay depends on, so a reader would change when the delay sees new
samples, and from another thread it would race ``record``. They take
``samples()`` on the window's own thread (one memcpy, under 1 us for 1,000
samples: no float objects) and sort that copy where they are.

Censoring, for the caller: the attempt plan records the first attempt of
every shard call from its own start, its answer time or, when a hedge won,
the time it had run when cancelled (a lower bound above the hedge delay, so
percentiles below the delay stay unbiased; see ``attempts.py``, rule 9).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from root.policies._validate import check_float, check_int

# 1,000 samples give 50 above the p95 and 10 above the p99, enough for both to
# be stable; at the demo's rates (hundreds of calls per second per shard) that
# is a few seconds of history, so the delay follows a shard that slows down.
DEFAULT_WINDOW_SIZE = 1000
# One sort of 1,000 floats per 64 records: well under 1 us per record, while a
# percentile misses at most 6% of the window.
DEFAULT_RECOMPUTE_EVERY = 64
# The window is a count (size) and an age: samples older than this are left
# out of percentiles, so the delay follows the load within seconds whatever
# the call rate. Measured (docs/benchmarks.md, tail): with a count alone, at
# one request in flight (about 100 calls/s/shard) 1,000 samples are ten
# seconds of history, and after a heavier phase the delay stayed at that
# phase's p97.5 (hedging 1% instead of 2.5%); after a lighter one it stayed
# too low (4%, budget refusals). Two seconds hold hundreds of samples at any
# rate where the tail matters.
DEFAULT_MAX_AGE = 2.0
# Fewer fresh samples than this (a quiet shard): the newest this many are
# used, however old, rather than a percentile of a handful. Matches
# hedging.min_samples, the fewest a percentile is trusted with.
DEFAULT_KEEP_NEWEST = 20


@dataclass(frozen=True, slots=True)
class LatencyWindowConfig:
    """How many latencies a shard remembers, and how often percentiles refresh."""

    size: int = DEFAULT_WINDOW_SIZE
    recompute_every: int = DEFAULT_RECOMPUTE_EVERY
    max_age: float | None = DEFAULT_MAX_AGE  # None: a count only
    keep_newest: int = DEFAULT_KEEP_NEWEST

    def __post_init__(self) -> None:
        check_int("hedging.latency_window", self.size, low=1)
        if self.max_age is not None:
            check_float("hedging.latency_max_age", self.max_age, low=0.0, low_open=True)
        check_int("hedging.latency_keep_newest", self.keep_newest, low=1)
        check_int("hedging.latency_recompute_every", self.recompute_every, low=1)


class LatencyWindow:
    """The last ``config.size`` latencies of one shard, in seconds, at most ``config.max_age`` old."""

    __slots__ = (
        "_count",
        "_keep",
        "_max_age",
        "_next",
        "_recompute_every",
        "_ring",
        "_since_snapshot",
        "_size",
        "_snapshot",
        "_snapshot_at",
        "_times",
    )

    def __init__(self, config: LatencyWindowConfig = LatencyWindowConfig()) -> None:
        self._size = config.size
        self._recompute_every = config.recompute_every
        self._max_age = config.max_age
        self._keep = config.keep_newest
        self._ring = array("d", bytes(8 * config.size))  # zero-filled without a temporary list
        self._times = array("d", bytes(8 * config.size))  # when each sample was recorded
        self._next = 0
        self._count = 0
        self._snapshot: list[float] = []
        self._snapshot_at = -math.inf
        self._since_snapshot = 0

    def record(self, seconds: float, now: float = math.inf) -> None:
        """Add one latency, observed at clock time ``now``. O(1), no allocation.

        Without ``now`` the sample never ages out. Raises ``ValueError`` for a
        negative or NaN latency: one NaN would make every later percentile
        meaningless, so it is refused at the door.
        """
        if not seconds >= 0.0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds!r}")
        i = self._next
        self._ring[i] = seconds
        self._times[i] = now
        i += 1
        self._next = 0 if i == self._size else i
        if self._count < self._size:
            self._count += 1
        self._since_snapshot += 1

    @property
    def count(self) -> int:
        """Samples currently in the window (at most ``size``), however old."""
        return self._count

    def percentile(self, q: float, now: float | None = None) -> float | None:
        """The nearest-rank ``q`` percentile (``0 <= q <= 1``) at clock time ``now``, or None when empty.

        Answers from a snapshot at most ``recompute_every - 1`` records or a
        quarter of ``max_age`` old; see the module docstring for the rules.
        Without ``now``, every sample counts, however old.
        """
        # _nearest_rank inlined: this runs per shard per request, and the call
        # would cost 15% of it (tests pin that both give the same answers).
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"percentile q must be in [0, 1], got {q!r}")
        snapshot = self._refresh(now)
        n = len(snapshot)
        if n == 0:
            return None
        rank = max(1, math.ceil(q * n - 1e-9))
        return snapshot[rank - 1]

    def samples(self) -> LatencySamples:
        """A copy of the window's samples, for a reader elsewhere; changes nothing here."""
        count = self._count
        ring = self._ring if count == self._size else self._ring[:count]
        return LatencySamples(ring.tobytes())

    def _refresh(self, now: float | None) -> list[float]:
        since = self._since_snapshot
        max_age = self._max_age
        aged = now is not None and max_age is not None and now - self._snapshot_at >= max_age / 4
        if (since and since >= min(self._recompute_every, len(self._snapshot) or 1)) or (aged and self._count):
            count = self._count
            values = self._ring if count == self._size else self._ring[:count]
            if now is not None and max_age is not None:
                cutoff = now - max_age
                fresh = [v for v, t in zip(values, self._times, strict=False) if t >= cutoff]
                if len(fresh) < min(self._keep, count):
                    fresh = self._newest(min(self._keep, count))
                self._snapshot = sorted(fresh)
                self._snapshot_at = now
            else:
                self._snapshot = sorted(values)
            self._since_snapshot = 0
        return self._snapshot

    def _newest(self, n: int) -> list[float]:
        """The ``n`` most recent samples (``n <= count``), in no particular order."""
        end = self._next
        ring = self._ring
        if end >= n:
            return list(ring[end - n : end])
        return list(ring[:end]) + list(ring[self._size - (n - end) :])


@dataclass(frozen=True, slots=True)
class LatencySamples:
    """The samples of one window at one instant, immutable: safe to read from any thread.

    Percentiles use the window's nearest-rank definition, over every sample
    (the window itself may answer from a sorted copy a few records old).
    """

    packed: bytes  # the samples as C doubles, in ring order (not sorted)

    def __len__(self) -> int:
        return len(self.packed) // 8

    def percentiles(self, *qs: float) -> tuple[float | None, ...]:
        """The nearest-rank percentile for each ``q`` in ``qs``; one sort for all."""
        for q in qs:
            _check_q(q)
        ordered = sorted(memoryview(self.packed).cast("d"))
        return tuple(_nearest_rank(ordered, q) for q in qs)


def _check_q(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"percentile q must be in [0, 1], got {q!r}")


def _nearest_rank(ordered: Sequence[float], q: float) -> float | None:
    """``ordered[r - 1]`` with ``r = max(1, ceil(q * n))``: see the module docstring."""
    n = len(ordered)
    if n == 0:
        return None
    return ordered[max(1, math.ceil(q * n - 1e-9)) - 1]
