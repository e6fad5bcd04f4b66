"""The hedge budget: hedges may add at most a fixed fraction of extra load.

What lives here: ``HedgeBudgetConfig`` and ``HedgeBudget``. A root has one
budget per shard, each earning tokens from its own shard's calls, and one
root-wide reserve they fall back on (``HedgeBudget.reserve`` and
``HedgeBudget.for_shard``). What does not: when a hedge is due
(``hedging.py``), where it goes (``replicas.py``), or counting hedges sent,
won and refused: those are facts about a shard, counted once, in
``root.policies.ShardCounters``, which is what the metrics report. The budget
keeps only the tokens its decisions need.

The design is Finagle's ``RetryBudget`` (the budget behind its
``BackupRequestFilter``, whose ``maxExtraLoad`` it enforces) rather than
gRPC's retry throttling, because gRPC's bucket refills on *successes* and
drains on *failures*, while a hedge budget must follow *traffic*:

- every primary shard call deposits ``max_extra_load`` tokens in its shard's
  budget;
- every hedge withdraws 1 token from its shard's budget, or, when that holds
  less than 1, from the root-wide reserve; it is refused when both are short;
- deposits and withdrawals expire after ``ttl`` seconds: they are kept in
  ``slices`` time slices of ``ttl / slices`` seconds each, and a slice is
  forgotten once it falls out of the window. That is what caps the balance
  (a quiet hour does not bank a hedge storm) without a fixed token cap that
  would be wrong at every traffic level but one;
- the reserve holds ``min_per_second * ttl`` tokens and earns nothing: its
  withdrawals come back as they expire. It lets a cold or low-traffic root
  still hedge a little, and it is what a shard in trouble (a hung replica:
  half its calls need a hedge until the replica is ejected) draws on once
  its own tokens are spent.

Why per shard, plus one reserve (issue "faults under load"): with one
root-wide bucket, the everyday hedging of every shard spends the tokens a
stuck shard needs, and one shard in trouble spends the others'. Per shard,
a shard's everyday hedges can only spend what its own calls earned, and the
reserve is shared so that the worst case stays what one bucket allowed.

The invariants the tests pin, within any window (the current slice and the
``slices - 1`` before it): a shard's hedges from its own tokens <=
``max_extra_load`` * that shard's primaries; hedges from the reserve <=
``min_per_second * ttl``; so the root's hedges <= ``min_per_second * ttl +
max_extra_load`` * all primaries, the bound one root-wide bucket gave.
Tokens are counted in integer millionths, so 20 deposits of 0.05 are exactly
one token, with no float drift.

Failovers (the next attempt after UNAVAILABLE) do not draw on this budget:
they replace an attempt that already failed rather than add load, and
``max_attempts`` bounds them. The caller decides; this class only counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from root.policies._validate import check_float, check_int
from root.policies.clock import Clock

# Finagle BackupRequestFilter's maxExtraLoad, and the default: the
# paper's BigTable hedges cost 2% more requests for a 24x better p99.9.
DEFAULT_MAX_EXTRA_LOAD = 0.05
# Finagle RetryBudget's default ttl is 10 s: long enough to smooth bursts of
# traffic, short enough that the budget follows a change in load.
DEFAULT_TTL = 10.0
# The shortest ttl, Finagle's own floor: a window below a second smooths no burst, and a slice a
# thousandth of it or less is a clock divided by almost nothing (1e-303 s overflowed at start).
MIN_TTL = 1.0
# Finagle's WindowedAdder also splits its window in 10 slices: deposits expire
# in steps of a tenth of the ttl.
DEFAULT_SLICES = 10
# Finagle RetryBudget reserves 10 retries/s; hedges are pure extra load, so we
# keep a tenth of that: 10 hedges per 10 s window for the whole root, noise at
# any real traffic (0.025% extra at the benchmark's ~4,000 shard calls/s), and
# enough for the handful of hedges a hung replica needs before it is ejected.
DEFAULT_MIN_PER_SECOND = 1.0

_UNIT = 1_000_000  # one token, in integer millionths


@dataclass(frozen=True, slots=True)
class HedgeBudgetConfig:
    """Limits of the hedge budgets: per shard (``max_extra_load``) and the root-wide reserve."""

    max_extra_load: float = DEFAULT_MAX_EXTRA_LOAD
    min_per_second: float = DEFAULT_MIN_PER_SECOND
    ttl: float = DEFAULT_TTL
    slices: int = DEFAULT_SLICES

    def __post_init__(self) -> None:
        check_float("hedging.max_extra_load", self.max_extra_load, low=0.0, high=1.0, high_open=True)
        check_float("hedging.min_per_second", self.min_per_second, low=0.0)
        check_float("hedging.budget_ttl", self.ttl, low=MIN_TTL)
        check_int("hedging.budget_slices", self.slices, low=1, high=1000)


class HedgeBudget:
    """Token bucket over a sliding time window; see the module docstring.

    ``HedgeBudget(clock, config)`` is one bucket that both earns and holds the
    reserve (one budget for everything); a root builds
    ``HedgeBudget.reserve(clock, config)`` once and
    ``HedgeBudget.for_shard(clock, config, reserve)`` per shard.
    """

    __slots__ = (
        "_clock",
        "_deposit",
        "_epoch",
        "_fallback",
        "_reserve",
        "_roll_at",
        "_slices",
        "_slot",
        "_sum",
        "_width",
    )

    def __init__(
        self,
        clock: Clock,
        config: HedgeBudgetConfig = HedgeBudgetConfig(),
        *,
        earns: bool = True,
        reserve: bool = True,
        fallback: HedgeBudget | None = None,
    ) -> None:
        self._clock = clock
        self._deposit = round(config.max_extra_load * _UNIT) if earns else 0
        self._reserve = round(config.min_per_second * config.ttl * _UNIT) if reserve else 0
        self._fallback = fallback
        self._width = config.ttl / config.slices
        self._slices = [0] * config.slices
        self._sum = 0
        self._epoch = math.floor(clock() / self._width)
        self._slot = self._epoch % config.slices  # index of the current slice
        self._roll_at = (self._epoch + 1) * self._width  # when the current slice ends

    @classmethod
    def reserve(cls, clock: Clock, config: HedgeBudgetConfig = HedgeBudgetConfig()) -> HedgeBudget:
        """The root-wide reserve: ``min_per_second * ttl`` tokens, earning nothing."""
        return cls(clock, config, earns=False)

    @classmethod
    def for_shard(cls, clock: Clock, config: HedgeBudgetConfig, reserve: HedgeBudget) -> HedgeBudget:
        """One shard's budget: what its own calls earn, then ``reserve``."""
        return cls(clock, config, reserve=False, fallback=reserve)

    def deposit(self) -> None:
        """Count one primary shard call: earns ``max_extra_load`` of a hedge."""
        now = self._clock()
        if now >= self._roll_at:
            self._roll(now)
        self._slices[self._slot] += self._deposit
        self._sum += self._deposit

    def try_withdraw(self) -> bool:
        """Ask to send one hedge; True (and one token spent) if the budget allows it.

        Its own tokens first, then the fallback's (the root-wide reserve).
        """
        now = self._clock()
        if now >= self._roll_at:
            self._roll(now)
        if self._reserve + self._sum < _UNIT:
            fallback = self._fallback
            return fallback is not None and fallback.try_withdraw()
        self._slices[self._slot] -= _UNIT
        self._sum -= _UNIT
        return True

    @property
    def balance(self) -> float:
        """Tokens available now from this budget alone, its reserve included; one hedge needs 1."""
        now = self._clock()
        if now >= self._roll_at:
            self._roll(now)
        return (self._reserve + self._sum) / _UNIT

    def _roll(self, now: float) -> None:
        """Forget the slices that have left the window and move to the current one.

        Called only when ``now`` has passed the end of the current slice, so
        the common case costs one comparison. A clock that steps back (it
        should not: it is monotonic) keeps writing to the current slice.
        """
        epoch = math.floor(now / self._width)
        slices = self._slices
        n = len(slices)
        old = self._epoch
        if epoch <= old:  # float rounding at a slice boundary
            return
        if epoch - old >= n:
            for i in range(n):
                slices[i] = 0
            self._sum = 0
        else:
            for e in range(old + 1, epoch + 1):
                i = e % n
                self._sum -= slices[i]
                slices[i] = 0
        self._epoch = epoch
        self._slot = epoch % n
        self._roll_at = (epoch + 1) * self._width
