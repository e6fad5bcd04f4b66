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
    # The window gets the first attempt only: a hedge won, so the time it had run, a lower bound.
    assert (p.latencies.count, p.latencies.percentile(1.0)) == (1, pytest.approx(0.013))


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


def test_no_hedge_to_an_ejected_replica_while_an_attempt_is_in_flight() -> None:
    clock = FakeClock()
    p = policy(clock, tokens=1.0, replica_config=ReplicaConfig(consecutive_failures=1, max_ejection_percent=100))
    p.chooser.fault(0)  # replica 0 ejected
    plan = AttemptPlan(p)
    assert plan.start(0.0) == [Launch(1, 1, FIRST)]
    # the untried replica is ejected: the hedge goes back to the healthy one (rule 3), not there
    assert plan.timer(0.010) == [Launch(2, 1, HEDGE)]
    one = AttemptPlan(policy(clock, replicas=2, replica_config=ReplicaConfig(consecutive_failures=1)))
    one.policy.chooser.fault(0)
    one.policy.chooser.start(1)  # replica 1 busy elsewhere: still not a reason to hedge to 0
    assert one.start(0.0) == [Launch(1, 1, FIRST)]
    # with nothing in flight an ejected replica is still a last resort: a failover goes there
    assert one.result(1, "UNAVAILABLE", "refused", 0.001) == [Launch(2, 0, FAILOVER)]


def test_no_replica_to_try_is_unavailable() -> None:
    clock = FakeClock()
    plan = AttemptPlan(policy(clock, replicas=1, max_attempts=1))
    plan.start(0.0)
    assert plan.result(1, "UNAVAILABLE", "refused", 0.001) == [End(UNAVAILABLE, 0, "refused", False)]
    assert NO_REPLICA == "no replica could be tried"


# --- blame: what counts toward outlier ejection ------------------------------------


def faults(p: ShardPolicy) -> list[int]:
    return [s.consecutive_failures for s in p.chooser.status()]


def test_unavailable_is_a_fault_once_a_sibling_answers() -> None:
    clock = FakeClock()
    p = policy(clock)
    plan = AttemptPlan(p)
    plan.start(0.0)
    plan.result(1, "UNAVAILABLE", "connection refused", 0.001)
    assert faults(p) == [0, 0]  # not yet: it may be the request's doing
    plan.result(2, "OK", "", 0.003)
    assert faults(p) == [1, 0]


def test_no_answer_blames_nobody() -> None:
    """Every replica failing alike is the request (or the whole shard): no ejection."""
    clock = FakeClock()
    p = policy(clock, replica_config=ReplicaConfig(consecutive_failures=1))
    for _ in range(100):
        plan = AttemptPlan(p)  # a request the leaves reject on every replica
        plan.start(0.0)
        plan.result(1, "INTERNAL", "value out of range", 0.001)
        deadline = AttemptPlan(p)  # a client deadline shorter than the work
        deadline.start(0.0)
        deadline.timer(0.010)
        deadline.expire(0.060)
        refused = AttemptPlan(p)  # a request too large for the channels, on both replicas
        refused.start(0.0)
        refused.result(1, "UNAVAILABLE", "too large", 0.001)
        refused.result(2, "UNAVAILABLE", "too large", 0.002)
    assert faults(p) == [0, 0]
    assert not any(s.ejected for s in p.chooser.status())


def test_a_loser_with_a_head_start_is_a_fault() -> None:
    clock = FakeClock()
    p = policy(clock)
    plan = AttemptPlan(p)
    plan.start(0.0)  # replica 0
    plan.timer(0.010)  # hedge on replica 1
    plan.result(2, "OK", "", 0.012)
    assert faults(p) == [1, 0]


def test_a_hedge_that_started_later_and_lost_is_no_fault() -> None:
    clock = FakeClock()
    p = policy(clock)
    plan = AttemptPlan(p)
    plan.start(0.0)  # replica 0
    plan.timer(0.010)  # hedge on replica 1
    plan.result(1, "OK", "", 0.011)  # the first attempt answers; the hedge had no chance
    assert faults(p) == [0, 0]


def test_a_hung_replica_gets_no_first_attempts_once_it_lost_a_race() -> None:
    """A lost race is a fault: its EWMA jumps to the time it had run and stays (a suspect does
    not go stale), so first attempts go to the sibling as long as the sibling is faster, even
    with nothing outstanding anywhere (one in flight)."""
    clock = FakeClock()
    p = policy(clock)

    def request(t: float) -> int:
        clock.now = t
        plan = AttemptPlan(p)
        first = plan.start(t)[0]
        assert isinstance(first, Launch)
        if first.replica == 0:  # hung: only a hedge answers
            plan.timer(t + DELAY)
            plan.result(2, "OK", "", t + DELAY + 0.002)
        else:
            plan.result(1, "OK", "", t + 0.002)
        return first.replica

    assert request(0.0) == 0
    assert p.chooser.status()[0].ewma == DELAY + 0.002
    assert p.chooser.due_probes() == [0]  # a suspect: is it alive? (root.probing asks its health)
    assert [request(0.01 * n) for n in range(1, 1000)] == [1] * 999  # 10 s: never looked at again
    assert not p.chooser.status()[0].ejected
    p.chooser.probe_result(0, False)  # its health check did not answer
    assert p.chooser.status()[0].ejected


def test_a_suspect_is_tried_when_its_sibling_is_loaded_and_ejected_after_five_faults() -> None:
    clock = FakeClock()
    p = policy(clock)
    chooser = p.chooser
    chooser.start(0)
    chooser.finish(0, 0.002, True)
    chooser.start(0)
    chooser.finish(0, 0.020, False, FailureKind.CANCELLED)
    chooser.fault(0, 0.020)  # lost a race after 20 ms
    chooser.start(1)
    chooser.finish(1, 0.002, True)
    backlog = 0
    while chooser.pick() == 1:  # the sibling's queue grows: (n + 1) * 2 ms against 20 ms
        chooser.start(1)
        backlog += 1
    assert backlog == 9
    for _ in range(4):
        chooser.fault(0, 0.020)
    assert chooser.status()[0].ejected


def test_losing_to_an_attempt_on_the_same_replica_is_no_fault() -> None:
    clock = FakeClock()
    p = policy(clock)
    plan = AttemptPlan(p)
    plan.start(0.0)  # replica 0
    plan.timer(0.010)  # replica 1
    plan.timer(0.020)  # replica 0 again
    plan.result(3, "OK", "", 0.021)
    assert faults(p) == [0, 1]  # replica 1 had a head start on the winner; replica 0 is the winner's own
