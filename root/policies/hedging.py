"""When to send the next attempt of a shard call: the hedging configuration and delay.

What lives here: ``HedgingConfig`` (gRPC's ``HedgingPolicy`` vocabulary:
``max_attempts``, ``hedging_delay``, ``non_fatal_status_codes``, plus the
adaptive-delay settings gRPC lacks) and ``HedgeDelay``, which turns a shard's
``LatencyWindow`` into the delay before its next hedge. What does not: whether
the budget allows the hedge (``budget.py``), which replica gets it
(``replicas.py``), and the timers themselves (the async fan-out).

Rules, as in gRPC's hedging design (gRFC A6):

- ``max_attempts`` counts every attempt of one shard call: the primary,
  hedges, and failovers. A failed attempt whose status is in
  ``non_fatal_status_codes`` lets the next attempt start at once instead of
  after the delay (failover); any other status is fatal for the shard, and is
  not retried (``INVALID_ARGUMENT`` fails the same way on every replica).
- The same delay separates each attempt from the previous one (the stagger of
  trio's happy eyeballs), re-read from the window when the next timer is armed.
- ``enabled=False`` turns hedges off (``HedgeDelay.delay`` returns None) but
  keeps failover: a refused connection still moves to the next replica.

Status codes are the ``grpc.StatusCode`` member names as strings, so this
module never imports grpc; the names and the default non-fatal codes come
from the one status table, ``scatter_common.status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from root.policies._validate import check_at_least, check_between, check_float, check_int
from root.policies.latency import LatencyWindow
from scatter_common.status import STATUS

# The names of grpc.StatusCode, minus OK (a success is never "non-fatal").
STATUS_CODE_NAMES = frozenset(STATUS)

# Three attempts, not two. With fan-out 8 and 1% of calls stalling
# independently, a request meets a shard whose primary and hedge both stall
# with probability about 8 x 0.01^2 = 8 in 10,000: that alone puts the stall
# into the p99.9 (the prototype saw p99.9 flip between 12 ms and 103 ms
# from run to run). A third attempt makes it 8 x 0.01^3, 8 in a million. It
# costs almost nothing: it is sent only when two attempts have both been slow.
DEFAULT_MAX_ATTEMPTS = 3
# gRPC caps maxAttempts at 5 (gRFC A6) and silently lowers larger values; we
# refuse them instead, so a configuration says what it does.
MAX_ATTEMPTS_LIMIT = 5
# Dean & Barroso, "The Tail at Scale" (CACM 2013), hedge once the first
# request has been outstanding longer than its 95th-percentile latency, for
# about 5% extra load. Designed together with the budget, we hedge at half of
# what the budget allows: at p95 under a 5% budget everyday hedging spends the
# whole budget on calls that are only a little slow, and a burst of real
# stalls finds it empty (measured: docs/benchmarks.md). Unless set, the
# percentile is 1 - max_extra_load / 2: 0.975 for the default 5% budget.
HEDGE_SHARE_OF_BUDGET = 0.5
DEFAULT_DELAY_PERCENTILE = 0.975
# asyncio/uvloop timers resolve to about 1 ms (the issue measured a 2.4 ms
# sleep taking 2.1 ms): a shorter hedge delay cannot be honoured, and a shard
# that answers in well under 1 ms gains nothing from hedging.
DEFAULT_MIN_DELAY = 0.001
# A ceiling for a shard whose whole window has gone slow: the percentile then
# chases the slowness, and a hedge that waits more than a second rarely
# lands before a serving deadline. A judgment call, not a cited value.
DEFAULT_MAX_DELAY = 1.0
# Before min_samples exist. Above the p95 of an in-memory leaf (the demo's
# calls take about 2 ms; Dean & Barroso hedged BigTable at 10 ms) so a cold
# root does not hedge healthy shards, yet a stalled call is rescued early.
DEFAULT_INITIAL_DELAY = 0.02
# At p95 with nearest rank, 20 is the fewest samples whose rank is not the
# maximum (ceil(0.95 * 20) = 19): with fewer, the "p95" is the single worst
# call seen so far.
DEFAULT_MIN_SAMPLES = 20
# UNAVAILABLE and RESOURCE_EXHAUSTED: the codes the status table retries
# (scatter_common.status explains why); everything else (INVALID_ARGUMENT,
# INTERNAL, ...) would fail the same way elsewhere.
DEFAULT_NON_FATAL_STATUS_CODES: tuple[str, ...] = tuple(code for code, rule in STATUS.items() if rule.retry)


def delay_percentile_for(max_extra_load: float) -> float:
    """The default delay percentile for a budget of ``max_extra_load``: hedge half of what it allows."""
    return 1.0 - max_extra_load * HEDGE_SHARE_OF_BUDGET


@dataclass(frozen=True, slots=True)
class HedgingConfig:
    """Hedging and failover of one shard call (same settings for every shard)."""

    enabled: bool = True
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # Fixed delay in seconds (gRPC's hedgingDelay; 0 sends all attempts at
    # once), or None for the adaptive delay from the shard's latency window.
    hedging_delay: float | None = None
    delay_percentile: float = DEFAULT_DELAY_PERCENTILE
    min_delay: float = DEFAULT_MIN_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    initial_delay: float = DEFAULT_INITIAL_DELAY
    min_samples: int = DEFAULT_MIN_SAMPLES
    non_fatal_status_codes: tuple[str, ...] = DEFAULT_NON_FATAL_STATUS_CODES
    _non_fatal: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"hedging.enabled must be true or false, got {self.enabled!r}")
        check_int("hedging.max_attempts", self.max_attempts, low=1, high=MAX_ATTEMPTS_LIMIT)
        if self.hedging_delay is not None:
            check_float("hedging.hedging_delay", self.hedging_delay, low=0.0)
        check_float("hedging.delay_percentile", self.delay_percentile, low=0.0, high=1.0, low_open=True)
        check_float("hedging.min_delay", self.min_delay, low=0.0)
        check_float("hedging.max_delay", self.max_delay, low=0.0)
        check_at_least("hedging.max_delay", self.max_delay, "hedging.min_delay", self.min_delay)
        check_float("hedging.initial_delay", self.initial_delay, low=0.0)
        check_between(
            "hedging.initial_delay",
            self.initial_delay,
            "hedging.min_delay",
            self.min_delay,
            "hedging.max_delay",
            self.max_delay,
        )
        check_int("hedging.min_samples", self.min_samples, low=1)
        codes = self.non_fatal_status_codes
        if isinstance(codes, str) or not isinstance(codes, tuple | list | frozenset | set):
            raise ValueError(f"hedging.non_fatal_status_codes must be a list of status code names, got {codes!r}")
        for code in codes:
            if not isinstance(code, str) or code not in STATUS_CODE_NAMES:
                raise ValueError(
                    f"hedging.non_fatal_status_codes: {code!r} is not a gRPC status code name"
                    f" other than OK (expected one of {', '.join(sorted(STATUS_CODE_NAMES))})"
                )
        # Normalise a list from a TOML file to a tuple, so the config stays hashable.
        object.__setattr__(self, "non_fatal_status_codes", tuple(codes))
        object.__setattr__(self, "_non_fatal", frozenset(codes))

    def is_non_fatal(self, status_code: str) -> bool:
        """True if an attempt failing with this code may fail over to another replica."""
        return status_code in self._non_fatal


class HedgeDelay:
    """The delay before the next hedge of a shard call, from the shard's latencies.

    - hedging off: None (no hedge; failover is the caller's and still works);
    - ``hedging_delay`` set: that fixed delay;
    - fewer than ``min_samples`` latencies in the window: ``initial_delay``;
    - else the window's ``delay_percentile``, clamped to [min_delay, max_delay].
    """

    __slots__ = ("_enabled", "_fixed", "_initial", "_max", "_min", "_min_samples", "_q")

    def __init__(self, config: HedgingConfig) -> None:
        self._enabled = config.enabled
        self._fixed = config.hedging_delay
        self._q = config.delay_percentile
        self._min = config.min_delay
        self._max = config.max_delay
        self._initial = config.initial_delay
        self._min_samples = config.min_samples

    def delay(self, window: LatencyWindow, now: float | None = None) -> float | None:
        """Seconds to wait, from the previous attempt's start, before the next hedge.

        ``now`` is the clock time, so that samples older than the window's
        ``max_age`` are left out (None: all of them).
        """
        if not self._enabled:
            return None
        if self._fixed is not None:
            return self._fixed
        if window.count < self._min_samples:
            return self._initial
        p = window.percentile(self._q, now)
        assert p is not None  # count >= min_samples >= 1
        if p < self._min:
            return self._min
        if p > self._max:
            return self._max
        return p
