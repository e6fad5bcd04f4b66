"""Coverage wait: the exact time the root stops waiting for straggling shards."""

from __future__ import annotations

import pytest

from root.policies import CoverageWaitConfig, min_answers, stop_waiting_at


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


def at(config: CoverageWaitConfig, answered: int, reached_at: float | None, total: int = 10) -> float | None:
    return stop_waiting_at(
        config, total=total, answered=answered, min_coverage=0.8, started_at=100.0, reached_at=reached_at
    )


def test_off_by_default_waits_for_everyone() -> None:
    off = CoverageWaitConfig()
    assert off.extra_wait is None
    assert at(off, 9, 100.05) is None


def test_fixed_extra_wait_after_coverage_is_reached() -> None:
    c = CoverageWaitConfig(extra_wait=0.01)
    assert at(c, 7, None) is None  # 7 of 10 < 0.8: keep waiting
    assert at(c, 8, 100.05) == 100.05 + 0.01
    assert at(c, 9, 100.05) == 100.05 + 0.01  # later answers do not move it
    assert at(c, 10, 100.05) is None  # nobody left to wait for


def test_zero_extra_wait_stops_at_once() -> None:
    assert at(CoverageWaitConfig(extra_wait=0.0), 8, 100.25) == 100.25


def test_proportional_part_like_vespa() -> None:
    # Reaching coverage took 0.25 s; a factor of 0.5 waits 0.125 s more on top of 0.0625 s.
    c = CoverageWaitConfig(extra_wait=0.0625, extra_wait_factor=0.5)
    assert at(c, 8, 100.25) == 100.25 + 0.0625 + 0.125


def test_reached_but_no_time_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match=r"min_coverage is reached \(8/10 answered\) but reached_at is None"):
        at(CoverageWaitConfig(extra_wait=0.01), 8, None)


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
