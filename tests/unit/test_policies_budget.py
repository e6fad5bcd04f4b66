"""HedgeBudget: exact token accounting over a sliding window, with a fake clock."""

from __future__ import annotations

import random

import pytest

from root.policies import HedgeBudget, HedgeBudgetConfig
from tests._fakeclock import FakeClock


def budget(clock: FakeClock, **kwargs: float) -> HedgeBudget:
    # ttl 10 s in 10 slices: each slice is exactly one second of virtual time.
    return HedgeBudget(clock, HedgeBudgetConfig(**kwargs))  # type: ignore[arg-type]


def test_defaults() -> None:
    c = HedgeBudgetConfig()
    assert (c.max_extra_load, c.min_per_second, c.ttl, c.slices) == (0.05, 1.0, 10.0, 10)


def test_twenty_primaries_earn_exactly_one_hedge() -> None:
    clock = FakeClock()
    b = budget(clock, min_per_second=0.0)
    assert not b.try_withdraw()
    for _ in range(19):
        b.deposit()
    assert b.balance == 0.95
    assert not b.try_withdraw()
    b.deposit()
    assert b.balance == 1.0
    assert b.try_withdraw()
    assert b.balance == 0.0
    assert not b.try_withdraw()


def test_other_ratios_are_exact_in_integer_millionths() -> None:
    clock = FakeClock()
    b = budget(clock, max_extra_load=0.1, min_per_second=0.0)
    for _ in range(30):
        b.deposit()
    assert [b.try_withdraw() for _ in range(4)] == [True, True, True, False]
    b = budget(clock, max_extra_load=0.0, min_per_second=0.0)
    for _ in range(1000):
        b.deposit()
    assert not b.try_withdraw()


def test_reserve_lets_a_cold_root_hedge_a_little_then_refills_after_ttl() -> None:
    clock = FakeClock(100.0)
    b = budget(clock, min_per_second=1.0)  # reserve: 1/s x 10 s = 10 hedges
    assert b.balance == 10.0
    assert [b.try_withdraw() for _ in range(11)] == [True] * 10 + [False]
    assert b.balance == 0.0
    clock.advance(9.999)  # the withdrawals are still in the window
    assert not b.try_withdraw()
    clock.advance(0.001)  # t = 110: the slice of t = 100 has left the window
    assert b.balance == 10.0
    assert b.try_withdraw()
    assert b.balance == 9.0


def test_deposits_expire_after_ttl() -> None:
    clock = FakeClock()
    b = budget(clock, min_per_second=0.0)
    for _ in range(40):
        b.deposit()  # two hedges' worth at t = 0
    clock.advance(9.5)
    assert b.balance == 2.0
    clock.advance(0.5)  # t = 10
    assert b.balance == 0.0
    assert not b.try_withdraw()


def test_slices_expire_one_by_one() -> None:
    clock = FakeClock()
    b = budget(clock, min_per_second=0.0)
    for _ in range(10):  # one hedge's worth per second for ten seconds
        for _ in range(20):
            b.deposit()
        clock.advance(1.0)
    # t = 10: the slice of t = 0 is gone, those of t = 1..9 remain.
    assert b.balance == 9.0
    clock.advance(3.0)  # t = 13: slices 4..9 remain
    assert b.balance == 6.0
    clock.advance(100.0)  # a long silence clears everything at once
    assert b.balance == 0.0


def test_withdrawals_expire_too_so_the_window_rule_holds() -> None:
    clock = FakeClock()
    b = budget(clock, min_per_second=0.0)
    for _ in range(20):
        b.deposit()
    clock.advance(5.0)
    assert b.try_withdraw()  # spends the deposit of t = 0 at t = 5
    assert b.balance == 0.0
    clock.advance(5.0)  # t = 10: the deposit expires, the withdrawal does not yet
    assert b.balance == -1.0  # the hedge of t = 5 still counts against t = 5..14
    for _ in range(20):
        b.deposit()
    assert not b.try_withdraw()
    clock.advance(5.0)  # t = 15: the withdrawal has expired
    assert b.balance == 1.0
    assert b.try_withdraw()


def test_invariant_against_a_reference_model() -> None:
    """Decision by decision, the budget matches a brute-force sliding window."""
    rng = random.Random(4)
    clock = FakeClock()
    reserve, ratio = 2, 0.05
    b = budget(clock, max_extra_load=ratio, min_per_second=reserve / 10)
    events: list[tuple[int, int]] = []  # (second, delta in millionths), last 10 s only
    granted = refused = 0
    for _ in range(20_000):
        clock.advance(rng.choice((0.0, 0.0, 0.0, 0.01, 0.1, 0.7)))
        second = int(clock.now)
        events = [(s, d) for s, d in events if s > second - 10]
        window = sum(d for _, d in events)
        if rng.random() < 0.9:
            b.deposit()
            events.append((second, 50_000))
        else:
            expected = reserve * 1_000_000 + window >= 1_000_000
            assert b.try_withdraw() is expected, clock.now
            if expected:
                events.append((second, -1_000_000))
                granted += 1
            else:
                refused += 1
    # The invariant itself, at the end: hedges <= reserve + ratio * primaries in the window.
    recent = [d for _, d in events]
    hedges = sum(1 for d in recent if d < 0)
    primaries = sum(1 for d in recent if d > 0)
    assert hedges <= reserve + ratio * primaries
    assert granted > 100 and refused > 100  # both kinds of decision were exercised


def test_one_clock_read_per_call() -> None:
    clock = FakeClock()
    b = budget(clock)
    reads = clock.reads
    b.deposit()
    b.try_withdraw()
    assert clock.reads == reads + 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_extra_load": 1.5}, "hedging.max_extra_load must be in [0, 1), got 1.5"),
        ({"max_extra_load": 1.0}, "hedging.max_extra_load must be in [0, 1), got 1.0"),
        ({"max_extra_load": -0.1}, "hedging.max_extra_load must be in [0, 1), got -0.1"),
        ({"min_per_second": -1.0}, "hedging.min_per_second must be >= 0, got -1.0"),
        ({"ttl": 0.0}, "hedging.budget_ttl must be > 0, got 0.0"),
        ({"slices": 0}, "hedging.budget_slices must be in [1, 1000], got 0"),
    ],
)
def test_validation_names_the_field(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as info:
        HedgeBudgetConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
