"""Coverage wait: the exact time the root stops waiting for straggling shards."""

from __future__ import annotations

import math

import pytest

from root.policies import CoverageWait, CoverageWaitConfig, min_answers
from tests._fakeclock import FakeClock


def test_min_answers_is_integer_exact() -> None:
    assert min_answers(10, 0.7) == 7  # 0.7 * 10 is 7.000000000000001 in floating point
    assert min_answers(10, 0.71) == 8
    assert min_answers(8, 1.0) == 8
    assert min_answers(8, 0.5) == 4
    assert min_answers(3, 0.5) == 2
    assert min_answers(100, 0.07) == 7
    assert min_answers(5, 0.0) == 0


def test_min_answers_validation() -> None:
    with pytest.raises(ValueError, match=r"coverage.min_coverage must be in \[0, 1\], got 1.5"):
        min_answers(4, 1.5)
    with pytest.raises(ValueError, match="total shards must be >= 1, got 0"):
        min_answers(0, 0.5)


def flat(config: CoverageWaitConfig, shards: int = 10, min_coverage: float = 0.8) -> CoverageWait:
    return CoverageWait(config, [1] * shards, min_coverage, started_at=100.0)


def answer(wait: CoverageWait, clock: FakeClock, *shards: int) -> list[float | None]:
    return [wait.answered(shard, clock()) for shard in shards]


def test_off_by_default_waits_for_everyone() -> None:
    off = CoverageWaitConfig()
    assert off.extra_wait is None
    wait, clock = flat(off), FakeClock(100.05)
    assert answer(wait, clock, *range(9)) == [None] * 9
    assert (wait.reached_at, wait.stop_at) == (None, math.inf)


def test_fixed_extra_wait_after_coverage_is_reached() -> None:
    wait, clock = flat(CoverageWaitConfig(extra_wait=0.015625)), FakeClock(100.0)
    clock.advance(0.0625)
    assert answer(wait, clock, *range(7)) == [None] * 7  # 7 of 10 < 0.8: keep waiting
    assert wait.reached_at is None
    clock.advance(0.0625)
    assert wait.answered(7, clock()) == 100.125 + 0.015625
    assert (wait.reached_at, wait.stop_at) == (100.125, 100.140625)
    clock.advance(0.0078125)
    assert wait.answered(8, clock()) is None  # a later answer does not move it
    assert wait.stop_at == 100.140625


def test_nobody_left_to_wait_for() -> None:
    wait, clock = flat(CoverageWaitConfig(extra_wait=0.01), shards=2, min_coverage=1.0), FakeClock(100.0)
    assert answer(wait, clock, 1, 0) == [None, None]
    assert wait.stop_at == math.inf  # the last answer reaches coverage, and nothing is left


def test_zero_extra_wait_stops_at_once() -> None:
    wait, clock = flat(CoverageWaitConfig(extra_wait=0.0)), FakeClock(100.25)
    assert answer(wait, clock, *range(8))[-1] == 100.25


def test_proportional_part_like_vespa() -> None:
    # Reaching coverage took 0.25 s; a factor of 0.5 waits 0.125 s more on top of 0.0625 s.
    wait, clock = flat(CoverageWaitConfig(extra_wait=0.0625, extra_wait_factor=0.5)), FakeClock(100.0)
    clock.advance(0.25)
    assert answer(wait, clock, *range(8))[-1] == 100.25 + 0.0625 + 0.125


def test_counts_leaf_shards_of_subtrees() -> None:
    # Groups of 4 and 3 leaf shards at min_coverage 0.5 (4 of 7 needed): the 3-shard group
    # answering first is not enough, though it is one of two direct shards.
    wait, clock = CoverageWait(CoverageWaitConfig(extra_wait=0.01), [4, 3], 0.5, started_at=0.0), FakeClock()
    clock.advance(0.125)
    assert wait.answered(1, clock()) is None
    assert (wait.answered_leaf_shards, wait.reached_at) == (3, None)
    clock.advance(0.125)
    assert wait.answered(0, clock()) is None  # 7 of 7: nobody left
    assert wait.answered_leaf_shards == 7
    # The other way round, the 4-shard group is enough on its own and starts the wait.
    wait = CoverageWait(CoverageWaitConfig(extra_wait=0.0078125), [4, 3], 0.5, started_at=0.0)
    assert wait.answered(0, clock()) == 0.25 + 0.0078125


def test_a_subtree_counts_the_leaf_shards_it_covered() -> None:
    # A subtree of 4 that answers with only 2 of its leaf shards covers 2 of the 4 needed.
    config = CoverageWaitConfig(extra_wait=0.0)
    wait, clock = CoverageWait(config, [4, 2, 1], 0.5, started_at=0.0), FakeClock(1.0)
    assert wait.answered(0, clock(), covered=2) is None
    assert wait.answered(2, clock()) is None  # 3 of 7
    assert wait.answered_leaf_shards == 3
    wait = CoverageWait(config, [4, 2, 1], 0.5, started_at=0.0)
    assert wait.answered(0, clock(), covered=4) == 1.0  # 4 of 7 >= 3.5
    # A subtree cannot cover more than it stands for.
    wait = CoverageWait(config, [1, 1, 1, 1, 3], 0.5, started_at=0.0)
    assert wait.answered(4, clock(), covered=9) is None
    assert wait.answered_leaf_shards == 3


def test_min_coverage_is_checked_when_the_wait_is_made() -> None:
    with pytest.raises(ValueError, match=r"coverage.min_coverage must be in \[0, 1\], got 1.5"):
        CoverageWait(CoverageWaitConfig(extra_wait=0.01), [1, 1], 1.5, started_at=0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra_wait": -0.001}, "coverage.extra_wait must be >= 0, got -0.001"),
        ({"extra_wait_factor": -1.0}, "coverage.extra_wait_factor must be >= 0, got -1.0"),
    ],
)
def test_validation_names_the_field(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        CoverageWaitConfig(**kwargs)
    assert str(info.value) == message
