"""AttemptPlan: every attempt sequence of one shard, pinned to exact virtual times."""

from __future__ import annotations

import math

import pytest

from root.policies import (
    AttemptKind,
    AttemptPlan,
    Cancel,
    End,
    FailureKind,
    HedgeBudget,
    HedgeBudgetConfig,
    HedgeDelay,
    HedgingConfig,
    LatencyWindow,
    LatencyWindowConfig,
    Launch,
    ReplicaConfig,
    ReplicaSet,
    ShardPolicy,
)
from root.policies.attempts import DEADLINE_REASON, ERROR, NO_REPLICA, OK, SKIPPED, TIMEOUT, UNAVAILABLE
from tests._fakeclock import FakeClock

FIRST, HEDGE, FAILOVER = AttemptKind.FIRST, AttemptKind.HEDGE, AttemptKind.FAILOVER
DELAY = 0.010  # the fixed hedge delay of most tests


def policy(
    clock: FakeClock,
    replicas: int = 2,
    *,
    delay: float | None = DELAY,
    enabled: bool = True,
    max_attempts: int = 3,
    tokens: float = 100.0,
    replica_config: ReplicaConfig | None = None,
) -> ShardPolicy:
    hedging = HedgingConfig(enabled=enabled, max_attempts=max_attempts, hedging_delay=delay)
    # min_per_second * ttl tokens of reserve and nothing earned per primary: exactly `tokens` hedges.
    budget = HedgeBudget(clock, HedgeBudgetConfig(max_extra_load=0.0, min_per_second=tokens / 10, ttl=10.0))
    return ShardPolicy(
        chooser=ReplicaSet([f"r{i}" for i in range(replicas)], clock, replica_config or ReplicaConfig()),
        latencies=LatencyWindow(LatencyWindowConfig(size=100, recompute_every=1)),
        hedging=hedging,
        hedge_delay=HedgeDelay(hedging),
        budget=budget,
    )


def test_first_answer_ends_the_shard_and_feeds_the_window() -> None:
    clock = FakeClock(100.0)
    p = policy(clock)
    plan = AttemptPlan(p)
    assert plan.start(100.0) == [Launch(1, 0, FIRST)]
    assert plan.wake_at == pytest.approx(100.010)
    assert plan.result(1, "OK", "", 100.004) == [End(OK, 0, "", False)]
    assert plan.wake_at == math.inf and plan.ended
    assert p.latencies.percentile(1.0) == pytest.approx(0.004)
    assert p.counters.calls == 1 and p.counters.attempts == 1 and p.counters.outcomes == {OK: 1}


def test_hedge_at_the_delay_from_the_previous_attempt_then_the_winner_cancels_the_loser() -> None:
    clock = FakeClock()
    p = policy(clock)
    plan = AttemptPlan(p)
    plan.start(0.0)
    assert plan.timer(0.0099) == ()  # early timer: nothing, still due at 0.010
    assert plan.wake_at == pytest.approx(0.010)
    assert plan.timer(0.010) == [Launch(2, 1, HEDGE)]
    assert plan.wake_at == pytest.approx(0.020)  # the next hedge: one delay after this one
    assert plan.result(2, "OK", "", 0.013) == [Cancel(1), End(OK, 1, "", True)]
    assert (p.counters.hedges_sent, p.counters.hedges_won, p.counters.cancelled) == (1, 1, 1)
    assert p.budget.hedges_won == 1
    assert p.latencies.percentile(1.0) == pytest.approx(0.003)  # the hedge, from its own start


def test_a_result_after_the_end_is_ignored() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock))
    plan.start(0.0)
    plan.timer(0.010)
    plan.result(2, "OK", "", 0.012)
    assert plan.result(1, "OK", "", 0.013) == ()
    assert plan.timer(1.0) == ()


def test_third_attempt_revisits_a_replica_and_max_attempts_stops_the_fourth() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock))
    plan.start(0.0)
    assert plan.timer(0.010) == [Launch(2, 1, HEDGE)]
    # both replicas tried and both busy: least outstanding ties, rotation picks replica 0 again
    assert plan.timer(0.020) == [Launch(3, 0, HEDGE)]
    assert plan.wake_at == pytest.approx(0.030)
    assert plan.timer(0.030) == ()  # max_attempts = 3
    assert plan.wake_at == math.inf


def test_budget_refusal_is_counted_and_not_retried() -> None:
    clock = FakeClock()
    p = policy(clock, tokens=0.0)
    plan = AttemptPlan(p)
    plan.start(0.0)
    assert plan.timer(0.010) == ()
    assert plan.wake_at == math.inf
    assert p.counters.budget_exhausted == 1 and p.counters.hedges_sent == 0


def test_single_replica_shard_never_hedges() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock, replicas=1))
    assert plan.start(0.0) == [Launch(1, 0, FIRST)]
    assert plan.wake_at == math.inf


def test_hedging_off_keeps_failover() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock, enabled=False))
    plan.start(0.0)
    assert plan.wake_at == math.inf
    assert plan.result(1, "UNAVAILABLE", "connection refused", 0.001) == [Launch(2, 1, FAILOVER)]


def test_unavailable_fails_over_at_once_without_the_budget() -> None:
    clock = FakeClock()
    p = policy(clock, tokens=0.0)
    plan = AttemptPlan(p)
    plan.start(0.0)
    assert plan.result(1, "UNAVAILABLE", "connection refused", 0.001) == [Launch(2, 1, FAILOVER)]
    assert p.counters.failovers == 1 and p.counters.budget_exhausted == 0
    assert plan.wake_at == pytest.approx(0.010)  # the hedge timer of the first attempt stands
    # the failover fails too: no replica left that was not tried, nothing in flight
    assert plan.result(2, "UNAVAILABLE", "connection reset", 0.002) == [End(UNAVAILABLE, 1, "connection reset", False)]


def test_non_fatal_other_than_unavailable_names_its_code() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock, replicas=1))
    plan.start(0.0)
    assert plan.result(1, "RESOURCE_EXHAUSTED", "shed", 0.001) == [
        End(UNAVAILABLE, 0, "RESOURCE_EXHAUSTED: shed", False)
    ]


def test_failover_waits_for_a_sibling_in_flight() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock))
    plan.start(0.0)
    plan.timer(0.010)  # hedge on replica 1
    # replica 0 fails: both tried, a failover never revisits; the hedge is still out
    assert plan.result(1, "UNAVAILABLE", "gone", 0.011) == ()
    assert plan.result(2, "OK", "", 0.012) == [End(OK, 1, "", True)]


def test_leaf_deadline_while_a_sibling_is_pending_waits_for_it() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock))
    plan.start(0.0)
    plan.timer(0.010)
    assert plan.result(1, "DEADLINE_EXCEEDED", "", 0.5) == ()
    assert plan.result(2, "DEADLINE_EXCEEDED", "", 0.5) == [End(TIMEOUT, 1, DEADLINE_REASON, False)]


def test_fatal_code_ends_the_shard_and_keeps_the_invalid_message() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock))
    plan.start(0.0)
    plan.timer(0.010)
    assert plan.result(1, "INVALID_ARGUMENT", "k must be >= 0", 0.011) == [
        Cancel(2),
        End(ERROR, 0, "INVALID_ARGUMENT: k must be >= 0", False),
    ]
    assert plan.invalid == "k must be >= 0"
    other = AttemptPlan(policy(clock))
    other.start(0.0)
    assert other.result(1, "INTERNAL", "boom", 0.001) == [End(ERROR, 0, "INTERNAL: boom", False)]
    assert other.invalid is None


def test_expire_cancels_everything_as_timeout() -> None:
    clock = FakeClock()
    p = policy(clock)
    plan = AttemptPlan(p)
    plan.start(0.0)
    plan.timer(0.010)
    assert plan.expire(0.100) == [Cancel(1), Cancel(2), End(TIMEOUT, 1, DEADLINE_REASON, False)]
    assert p.counters.outcomes == {TIMEOUT: 1} and p.counters.attempts == 2


def test_coverage_wait_cut_off_is_skipped() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock))
    plan.start(0.0)
    assert plan.cut_off(0.005, "cut off") == [Cancel(1), End(SKIPPED, 0, "cut off", False)]
    assert plan.expire(0.1) == ()


def test_cancellation_of_the_request_ends_without_an_outcome() -> None:
    clock = FakeClock()
    p = policy(clock)
    plan = AttemptPlan(p)
    plan.start(0.0)
    plan.timer(0.010)
    assert plan.cancel(0.011) == [Cancel(1), Cancel(2)]
    assert plan.ended and p.counters.outcomes == {}
    assert plan.result(1, "OK", "", 0.012) == ()


def test_every_replica_ejected_still_gets_an_attempt() -> None:
    clock = FakeClock()
    p = policy(clock, replica_config=ReplicaConfig(consecutive_failures=1, max_ejection_percent=100))
    p.chooser.start(0)
    p.chooser.finish(0, 0.001, False, FailureKind.UNAVAILABLE)  # replica 0 ejected
    plan = AttemptPlan(p)
    assert plan.start(0.0) == [Launch(1, 1, FIRST)]
    # the hedge finds only the ejected replica: a last resort beats no hedge
    assert plan.timer(0.010) == [Launch(2, 0, HEDGE)]


def test_no_replica_to_try_is_unavailable() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock, replicas=1, max_attempts=1))
    plan.start(0.0)
    assert plan.result(1, "UNAVAILABLE", "refused", 0.001) == [End(UNAVAILABLE, 0, "refused", False)]
    assert NO_REPLICA == "no replica could be tried"
