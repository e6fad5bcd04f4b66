"""Coverage wait: how long to keep waiting for straggling shards once enough have answered.

What lives here: ``CoverageWaitConfig``, ``min_answers`` and ``CoverageWait``,
the pure decision behind Vespa's adaptive coverage: once ``min_coverage`` of
the shards have answered, wait at most a little longer for the rest, then
answer with partial results. What does not: whether partial results are
acceptable at the end (the coverage policy: coverage >= min_coverage, else
UNAVAILABLE naming the missing shards), reading the clock, or cancelling the
stragglers (the fan-out; it reports them as cut off).

The extra wait has a fixed part and, as in Vespa's
``max-wait-after-coverage-factor``, a part proportional to how long it took to
reach ``min_coverage``, so it scales with the request instead of being one
number for fast and slow queries alike:

    stop_at = reached_at + extra_wait + extra_wait_factor * (reached_at - started_at)

The caller still stops at the request deadline if that comes first.

Everything is counted in leaf shards, as coverage is (``build_coverage``): in
a tree, a root's direct shard may be a subtree standing for many leaf
shards, and counting direct shards instead would start the wait when a small
subtree answers first and then cut off a big one that coverage needed (groups
of 4 and 3 leaf shards at min_coverage 0.5: 1 of 2 subtrees is "half", 3 of
7 leaf shards is not). ``CoverageWait`` keeps that count for one request:

    wait = CoverageWait(config, leaf_shards=[4, 3], min_coverage=0.5, started_at=t0)
    wait.answered(1, now)             # None: 3 of 7 leaf shards, keep waiting
    wait.answered(0, now, covered=4)  # None: nobody left to wait for

Call ``answered`` once per direct shard that answers, never for one that
failed (a failed shard is not waited for, but it covers nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from root.policies._validate import check_float, check_int

# Off by default when every shard is required (min_coverage = 1): a root
# answers with every shard it can get before the deadline, as Elasticsearch
# does.
DEFAULT_EXTRA_WAIT: float | None = None
# When the operator allows partial results (0 < min_coverage < 1) and sets
# no wait, root/config.py uses this one: wait twice as long again as
# reaching min_coverage took, plus 20 ms, so a straggler that hedging saves
# (its hedge delay, about the shards' p97.5, plus one more call) still makes
# it. Measured with `scatter bench faults` (4 shards, 4 in flight on 2
# cores): Vespa's factor of 1 cut off the slowest shard of about 1 in 900
# requests outside the hung-shard phase; 2 cut off 3 in 28,000, and a hung
# shard still costs an answer about 3x the time to coverage (p50 47 ms)
# instead of the whole deadline: without a wait, closed-loop throughput fell
# from 160 to 8 requests/s with one of four
# shards hung (issue "faults under load"). min_coverage = 0 (a lower root of
# a tree) keeps no wait: it would cut off every shard slower than 20 ms.
PARTIAL_COVERAGE_WAIT = 0.020
PARTIAL_COVERAGE_WAIT_FACTOR = 2.0
# Vespa's default min-wait-after-coverage-factor is 0; its max factor is 1
# (wait as long again as reaching coverage took). With the fixed part as the
# primary knob, the proportional part defaults to off.
DEFAULT_EXTRA_WAIT_FACTOR = 0.0


@dataclass(frozen=True, slots=True)
class CoverageWaitConfig:
    """None for ``extra_wait`` turns the coverage wait off."""

    extra_wait: float | None = DEFAULT_EXTRA_WAIT
    extra_wait_factor: float = DEFAULT_EXTRA_WAIT_FACTOR

    def __post_init__(self) -> None:
        if self.extra_wait is not None:
            check_float("coverage.extra_wait", self.extra_wait, low=0.0)
        check_float("coverage.extra_wait_factor", self.extra_wait_factor, low=0.0)


def min_answers(total: int, min_coverage: float) -> int:
    """Shards that must answer for ``answered / total >= min_coverage``.

    Integer arithmetic on purpose: ``0.7 * 10`` is ``7.000000000000001`` in
    floating point, and ``ceil`` of it would demand 8 shards out of 10. The
    product is rounded to 9 decimal places first.
    """
    check_int("total shards", total, low=1)
    check_float("coverage.min_coverage", min_coverage, low=0.0, high=1.0)
    return math.ceil(round(min_coverage * total, 9))


class CoverageWait:
    """The coverage wait of one request, counted in leaf shards.

    ``leaf_shards[i]`` is how many leaf shards direct shard ``i`` stands for:
    1 for a leaf, the size of its subtree for a root serving as a leaf.
    ``reached_at`` is the clock time ``min_coverage`` was first reached (None
    before), ``stop_at`` the time to stop waiting (infinity until then: wait
    for every shard until the request deadline).
    """

    __slots__ = (
        "_config",
        "_leaf_shards",
        "_left",
        "_needed",
        "_started_at",
        "answered_leaf_shards",
        "reached_at",
        "stop_at",
    )

    def __init__(
        self, config: CoverageWaitConfig, leaf_shards: Sequence[int], min_coverage: float, started_at: float
    ) -> None:
        total = sum(leaf_shards)
        self._config = config
        self._leaf_shards = leaf_shards
        self._needed = min_answers(total, min_coverage)
        self._left = total  # leaf shards of the direct shards that have not answered yet
        self._started_at = started_at
        self.answered_leaf_shards = 0
        self.reached_at: float | None = None
        self.stop_at = math.inf

    def answered(self, shard: int, now: float, covered: int | None = None) -> float | None:
        """Direct shard ``shard`` answered at ``now``; returns ``stop_at`` when this answer starts the wait.

        ``covered`` is how many of its leaf shards the answer covers, when the
        shard is a subtree that reported its own coverage (None: all of them).
        Returns None, and the wait stays as it was, when the coverage wait is
        off, while coverage is short, once the wait has started (a later answer
        does not move it) and when nobody is left to wait for.
        """
        weight = self._leaf_shards[shard]
        self._left -= weight
        self.answered_leaf_shards += weight if covered is None else min(covered, weight)
        extra_wait = self._config.extra_wait
        if extra_wait is None or self.reached_at is not None or self._left <= 0:
            return None
        if self.answered_leaf_shards < self._needed:
            return None
        self.reached_at = now
        self.stop_at = now + extra_wait + self._config.extra_wait_factor * (now - self._started_at)
        return self.stop_at
