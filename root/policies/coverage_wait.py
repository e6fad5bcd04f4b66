"""Coverage wait: how long to keep waiting for straggling shards once enough have answered.

What lives here: ``CoverageWaitConfig``, ``min_answers`` and ``stop_waiting_at``,
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from root.policies._validate import check_float, check_int

# Off by default: a root answers with every shard it can get before the
# deadline, as Elasticsearch does; cutting stragglers short is a trade of
# coverage for latency that the operator must choose.
DEFAULT_EXTRA_WAIT: float | None = None
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


def stop_waiting_at(
    config: CoverageWaitConfig,
    *,
    total: int,
    answered: int,
    min_coverage: float,
    started_at: float,
    reached_at: float | None,
) -> float | None:
    """When to stop waiting for the shards still out, as a clock time.

    ``reached_at`` is the clock time ``min_coverage`` was first reached (the
    caller records it when ``answered`` first reaches ``min_answers``), or
    None if not yet. Returns None to keep waiting for every shard until the
    request deadline: when the coverage wait is off, when coverage is not yet
    reached, or when nobody is left to wait for (``answered == total``).
    """
    if config.extra_wait is None or answered >= total:
        return None
    if answered < min_answers(total, min_coverage):
        return None
    if reached_at is None:
        raise ValueError(f"min_coverage is reached ({answered}/{total} answered) but reached_at is None")
    return reached_at + config.extra_wait + config.extra_wait_factor * (reached_at - started_at)
