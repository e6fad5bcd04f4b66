"""ReplicaSet: least-outstanding choice, EWMA ties, rotation, ejection, with a fake clock."""

from __future__ import annotations

import pytest

from root.policies import FailureKind, ReplicaConfig, ReplicaSet, ReplicaStatus, failure_kind_for_status
from tests._fakeclock import FakeClock

U = FailureKind.UNAVAILABLE


def replicas(n: int, clock: FakeClock | None = None, **kwargs: object) -> ReplicaSet:
    return ReplicaSet(
        [f"10.0.0.{i}:50051" for i in range(n)],
        clock or FakeClock(),
        ReplicaConfig(**kwargs),  # type: ignore[arg-type]
    )


def answer(rs: ReplicaSet, i: int, latency: float) -> None:
    rs.start(i)
    rs.finish(i, latency, True)


def fail(rs: ReplicaSet, i: int, times: int = 1, kind: FailureKind = U) -> None:
    """Attempts on replica ``i`` ending with ``kind``; an UNAVAILABLE one is also a fault, as the
    attempt plan reports it when a sibling answered the same request."""
    for _ in range(times):
        rs.start(i)
        rs.finish(i, 0.0001, False, kind)
        if kind is U:
            rs.fault(i)


def ewma(rs: ReplicaSet, i: int) -> float | None:
    return rs.status()[i].ewma


def ejected(rs: ReplicaSet, i: int) -> bool:
    """Whether replica ``i`` is ejected now, as the status page (and the metric) see it."""
    return rs.status()[i].ejected


# --- choice -------------------------------------------------------------------


def test_least_outstanding_first() -> None:
    rs = replicas(3)
    rs.start(0)
    rs.start(0)
    rs.start(1)
    assert rs.pick() == 2
    rs.start(2)
    rs.start(2)
    assert rs.pick() == 1  # 2, 1, 2 outstanding
    rs.finish(0, 0.001, True)
    rs.finish(0, 0.001, True)
    assert rs.pick() == 0


def test_equal_replicas_share_load_by_rotation() -> None:
    rs = replicas(3)
    assert [rs.pick() for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_rotation_resumes_after_the_last_pick() -> None:
    rs = replicas(4)
    rs.start(0)
    assert rs.pick() == 1
    rs.finish(0, 0.0, False, FailureKind.CANCELLED)  # no sample: all tie again
    assert rs.pick() == 2


def test_ties_broken_by_lower_ewma() -> None:
    rs = replicas(3)
    answer(rs, 0, 0.004)
    answer(rs, 1, 0.002)
    answer(rs, 2, 0.003)
    assert [rs.pick() for _ in range(3)] == [1, 1, 1]
    rs.start(1)
    assert rs.pick() == 2  # fewer outstanding beats lower latency


def test_new_replica_without_samples_is_costed_as_its_fastest_sibling() -> None:
    rs = replicas(3)
    answer(rs, 0, 0.001)
    answer(rs, 1, 0.004)
    assert [rs.pick() for _ in range(4)] == [0, 2, 0, 2]  # 2 ties with the fastest, by rotation
    assert ewma(rs, 2) is None
    rs.start(0)
    assert rs.pick() == 2  # and fewer outstanding breaks the tie


def test_cost_is_outstanding_plus_one_times_the_ewma() -> None:
    rs = replicas(2)
    answer(rs, 0, 0.002)
    answer(rs, 1, 0.010)  # five times slower
    picks = []
    for _ in range(6):
        i = rs.pick()
        assert i is not None
        rs.start(i)
        picks.append(i)
    # 0 costs 2, 4, 6, 8, 10 ms as its calls pile up; 1 costs 10, then 20: at the tie, fewer outstanding
    assert picks == [0, 0, 0, 0, 1, 0]


def test_ewma_update_is_exact() -> None:
    rs = replicas(1)
    answer(rs, 0, 0.004)
    assert ewma(rs, 0) == 0.004  # the first sample is taken as is
    answer(rs, 0, 0.008)
    assert ewma(rs, 0) == 0.004 + 0.25 * 0.004
    answer(rs, 0, 0.005)
    assert ewma(rs, 0) == 0.005
    rs2 = replicas(1, ewma_alpha=1.0)
    answer(rs2, 0, 0.5)
    answer(rs2, 0, 0.25)
    assert ewma(rs2, 0) == 0.25


def test_stale_ewma_counts_as_zero_so_the_replica_is_looked_at_again() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 0, 0.100)  # one slow call at t = 0
    answer(rs, 1, 0.002)
    clock.advance(1.0)  # exactly ewma_stale_after: still fresh
    assert rs.pick() == 1
    clock.advance(0.5)
    answer(rs, 1, 0.002)  # replica 1 keeps getting fresh samples
    assert rs.pick() == 0  # replica 0's sample is 1.5 s old: tried again
    answer(rs, 0, 0.001)  # and it is fast now: a stale EWMA restarts from the new sample
    assert ewma(rs, 0) == 0.001
    assert rs.pick() == 0


def test_exclude_and_none_when_everything_is_excluded() -> None:
    rs = replicas(3)
    assert rs.pick({0, 1}) == 2
    assert rs.pick(frozenset({2})) in (0, 1)
    assert rs.pick({0, 1, 2}) is None
    # Third attempt on a two-replica shard: nothing new is left, so the caller
    # may reuse one, and gets the least loaded.
    two = replicas(2)
    two.start(0)
    two.start(1)
    two.start(1)
    assert two.pick({0, 1}) is None
    assert two.pick() == 0


def test_outstanding_counts_every_kind_of_finish() -> None:
    rs = replicas(1)
    for _ in FailureKind:
        rs.start(0)
    assert rs.status()[0].outstanding == len(FailureKind)
    for kind in FailureKind:
        rs.finish(0, 0.001, False, kind)
    assert rs.status()[0].outstanding == 0


def test_failure_needs_a_kind() -> None:
    rs = replicas(1)
    rs.start(0)
    with pytest.raises(ValueError, match="needs a failure_kind"):
        rs.finish(0, 0.001, False)


# --- censored and failed observations -------------------------------------------


def test_fast_failures_never_lower_the_ewma() -> None:
    rs = replicas(2)
    answer(rs, 0, 0.004)
    for kind in (FailureKind.UNAVAILABLE, FailureKind.ERROR, FailureKind.OVERLOADED, FailureKind.REJECTED):
        fail(rs, 0, 1, kind)
    assert ewma(rs, 0) == 0.004
    fail(rs, 1, 1, FailureKind.UNAVAILABLE)
    assert ewma(rs, 1) is None


def test_cancelled_loser_can_only_raise_the_ewma() -> None:
    rs = replicas(2)
    answer(rs, 0, 0.004)
    rs.start(0)
    rs.finish(0, 0.001, False, FailureKind.CANCELLED)  # shorter than usual: no news
    assert ewma(rs, 0) == 0.004
    rs.start(0)
    rs.finish(0, 0.012, False, FailureKind.CANCELLED)  # ran 12 ms and still had no answer
    assert ewma(rs, 0) == 0.004 + 0.25 * 0.008
    assert rs.status()[0].consecutive_failures == 0


def test_a_cancelled_look_refreshes_the_sample_time() -> None:
    # A hung replica probed after going stale must not look stale again at once.
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 0, 0.050)
    answer(rs, 1, 0.002)
    clock.advance(2.0)
    answer(rs, 1, 0.002)
    assert rs.pick() == 0  # stale: probed
    rs.start(0)
    rs.finish(0, 0.020, False, FailureKind.CANCELLED)  # lost to a hedge after 20 ms
    assert ewma(rs, 0) == 0.020  # stale, so restarted from the lower bound
    assert rs.pick() == 1


def test_hedges_cancelled_early_do_not_keep_a_slow_ewma_fresh() -> None:
    # Replica 0 is slow (50 ms), so it gets no first attempts while 1 answers in 2 ms; it
    # only gets 1's hedges, each cancelled after 5 ms when 1 answers. Those say nothing about
    # 0: once its EWMA is stale it must get a first attempt again (a hang there would go unseen).
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 0, 0.050)
    answer(rs, 1, 0.002)
    steps = 0
    while steps < 30:
        steps += 1
        clock.advance(0.1)
        if rs.pick() == 0:
            break
        rs.start(1)
        rs.start(0)  # the hedge
        rs.finish(1, 0.002, True)
        rs.finish(0, 0.005, False, FailureKind.CANCELLED)
        assert ewma(rs, 0) == 0.050  # censored below its EWMA: no news
    assert steps == 11  # stale once its newest sample is more than ewma_stale_after (1 s) old


def test_timeout_raises_the_ewma_and_is_no_fault() -> None:
    rs = replicas(2)
    answer(rs, 0, 0.5)
    rs.start(0)
    rs.finish(0, 1.5, False, FailureKind.TIMEOUT)
    assert ewma(rs, 0) == 0.75
    assert rs.status()[0].consecutive_failures == 0


# --- ejection -------------------------------------------------------------------


def test_five_consecutive_failures_eject_for_exactly_30_seconds() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    fail(rs, 0, 4)
    assert not ejected(rs, 0)
    assert rs.status()[0].consecutive_failures == 4
    fail(rs, 0)
    assert ejected(rs, 0)
    assert rs.status()[0] == ReplicaStatus(
        index=0,
        address="10.0.0.0:50051",
        outstanding=0,
        ewma=None,
        ejected=True,
        ejected_until=30.0,
        consecutive_failures=0,
        times_ejected=1,
        ejections=1,
        attempts=5,
    )
    assert [rs.pick() for _ in range(3)] == [1, 1, 1]
    clock.advance(29.999)
    assert rs.pick() == 1
    clock.advance(0.001)  # t = 30 exactly: back
    assert not ejected(rs, 0)
    assert rs.status()[0].ejected_until is None
    assert rs.pick() == 0


def test_ejection_time_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    durations = []
    for _ in range(7):
        fail(rs, 0, 5)
        until = rs.status()[0].ejected_until
        assert until is not None
        durations.append(until - clock.now)
        clock.now = until  # the moment it returns, it fails again
    assert durations == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0, 300.0]
    # times_ejected stops at the first count whose time reaches the cap.
    assert rs.status()[0].times_ejected == 5
    assert rs.status()[0].ejections == 7  # the metric counts every ejection


def test_failures_must_be_consecutive() -> None:
    rs = replicas(2)
    fail(rs, 0, 4)
    answer(rs, 0, 0.001)
    fail(rs, 0, 4)
    assert not ejected(rs, 0)
    fail(rs, 0, 1, FailureKind.REJECTED)  # the replica answered: streak over
    fail(rs, 0, 4)
    assert not ejected(rs, 0)
    # Neutral outcomes neither count nor reset.
    fail(rs, 0, 3, FailureKind.OVERLOADED)
    fail(rs, 0, 3, FailureKind.CANCELLED)
    fail(rs, 0, 3, FailureKind.ERROR)
    fail(rs, 0, 3, FailureKind.TIMEOUT)
    assert rs.status()[0].consecutive_failures == 4
    fail(rs, 0, 1)
    assert ejected(rs, 0)


def test_only_faults_eject_never_an_attempt_outcome_alone() -> None:
    """Timeouts and errors are what a request can cause on every replica: only ``fault`` counts."""
    rs = replicas(2)
    for kind in FailureKind:
        for _ in range(20):
            rs.start(0)
            rs.finish(0, 0.5, False, kind)
    assert not ejected(rs, 0) and rs.status()[0].consecutive_failures == 0
    for _ in range(5):
        rs.fault(0)
    assert ejected(rs, 0)


def test_calls_finishing_while_ejected_are_ignored_for_health() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    for _ in range(3):
        rs.start(0)  # sent before the ejection
    fail(rs, 0, 5)
    rs.finish(0, 0.0001, False, U)
    rs.finish(0, 0.0001, False, U)
    rs.finish(0, 0.003, True)
    s = rs.status()[0]
    assert (s.consecutive_failures, s.times_ejected, s.ejected_until, s.outstanding) == (0, 1, 30.0, 0)
    assert s.ewma == 0.003  # latency is still a latency


def test_single_replica_is_never_ejected() -> None:
    rs = replicas(1)
    fail(rs, 0, 50)
    assert not ejected(rs, 0)
    assert rs.pick() == 0


def test_never_all_replicas_and_the_cap_follows_envoy() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    fail(rs, 0, 5)
    fail(rs, 1, 5)
    assert ejected(rs, 0) and not ejected(rs, 1)  # at most 1 of 2
    assert rs.status()[1].consecutive_failures == 5
    clock.advance(30.0)  # replica 0 returns, a place is free again
    fail(rs, 1)
    assert ejected(rs, 1)
    assert rs.status()[1].ejected_until == 60.0
    # 10% of 30 replicas is 3.
    big = replicas(30, FakeClock())
    for i in range(5):
        fail(big, i, 5)
    assert [ejected(big, i) for i in range(5)] == [True, True, True, False, False]
    # 100% still leaves one replica in.
    full = replicas(3, FakeClock(), max_ejection_percent=100.0)
    for i in range(3):
        fail(full, i, 5)
    assert [ejected(full, i) for i in range(3)] == [True, True, False]


def test_ejected_replica_is_the_last_resort_soonest_back_first() -> None:
    clock = FakeClock()
    rs = replicas(3, clock, max_ejection_percent=100.0)
    fail(rs, 1, 5)  # ejected until 30
    clock.advance(10.0)
    fail(rs, 0, 5)  # ejected until 40
    assert rs.pick() == 2
    assert rs.pick({2}) == 1  # every candidate ejected: the one back soonest
    assert rs.pick({1, 2}) == 0
    assert rs.pick({0, 1, 2}) is None


def test_ejection_count_decays_after_a_success_streak() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    fail(rs, 0, 5)
    clock.advance(30.0)
    fail(rs, 0, 5)  # second ejection: 60 s
    clock.advance(60.0)
    assert rs.status()[0].times_ejected == 2
    for _ in range(99):
        answer(rs, 0, 0.001)
    assert rs.status()[0].times_ejected == 2
    answer(rs, 0, 0.001)
    assert rs.status()[0].times_ejected == 1
    for _ in range(99):
        answer(rs, 0, 0.001)
    fail(rs, 0)  # a failure restarts the streak
    for _ in range(99):
        answer(rs, 0, 0.001)
    assert rs.status()[0].times_ejected == 1
    answer(rs, 0, 0.001)
    assert rs.status()[0].times_ejected == 0
    fail(rs, 0, 5)  # forgiven: back to the base time
    assert rs.status()[0].ejected_until == clock.now + 30.0


def test_ejection_can_be_turned_off() -> None:
    rs = replicas(2, consecutive_failures=None)
    fail(rs, 0, 100)
    assert not ejected(rs, 0)


def test_custom_threshold_and_times() -> None:
    clock = FakeClock()
    rs = replicas(2, clock, consecutive_failures=2, base_ejection_time=1.0, max_ejection_time=3.0)
    fail(rs, 0, 2)
    assert rs.status()[0].ejected_until == 1.0
    clock.advance(1.0)
    fail(rs, 0, 2)
    assert rs.status()[0].ejected_until == 3.0
    clock.advance(2.0)
    fail(rs, 0, 2)
    assert rs.status()[0].ejected_until == 6.0  # 4 s, capped at 3


# --- status codes, status page, validation ---------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("UNAVAILABLE", FailureKind.UNAVAILABLE),
        ("DEADLINE_EXCEEDED", FailureKind.TIMEOUT),
        ("RESOURCE_EXHAUSTED", FailureKind.OVERLOADED),
        ("CANCELLED", FailureKind.CANCELLED),
        ("INVALID_ARGUMENT", FailureKind.REJECTED),
        ("FAILED_PRECONDITION", FailureKind.REJECTED),
        ("INTERNAL", FailureKind.ERROR),
        ("UNKNOWN", FailureKind.ERROR),
        ("UNIMPLEMENTED", FailureKind.ERROR),
        ("DATA_LOSS", FailureKind.ERROR),
    ],
)
def test_failure_kind_for_status(code: str, kind: FailureKind) -> None:
    assert failure_kind_for_status(code) is kind


# --- suspects and probes -------------------------------------------------------


def test_a_lost_race_raises_the_ewma_at_once_and_the_suspect_never_goes_stale() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 0, 0.002)
    answer(rs, 1, 0.002)
    rs.start(0)
    rs.finish(0, 0.030, False, FailureKind.CANCELLED)  # lost a race it had a head start in
    rs.fault(0, 0.030)
    assert ewma(rs, 0) == 0.030  # the peak, not 0.002 + 0.25 * 0.028
    assert rs.status()[0].suspect
    clock.advance(60.0)
    answer(rs, 1, 0.002)
    assert [rs.pick() for _ in range(3)] == [1, 1, 1]  # still shunned a minute later
    answer(rs, 0, 0.002)  # a hedge sent there answered: no longer a suspect
    assert not rs.status()[0].suspect
    clock.advance(1.5)
    answer(rs, 1, 0.002)
    assert rs.pick() == 0  # stale again, so looked at


def test_a_suspect_is_probed_at_once_and_ejected_if_its_health_does_not_answer() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    assert rs.due_probes() == []
    rs.fault(0, 0.030)  # lost a race
    assert rs.due_probes() == [0]
    assert rs.due_probes() == []
    clock.advance(0.5)  # the health check timed out
    rs.probe_result(0, False)
    assert ejected(rs, 0)
    assert rs.status()[0].times_ejected == 1


def test_a_suspect_that_answers_its_probe_stays_a_suspect_and_is_probed_at_most_twice_a_second() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    rs.fault(0, 0.030)
    assert rs.due_probes() == [0]
    clock.advance(0.001)
    rs.probe_result(0, True)  # alive, only slow
    assert not ejected(rs, 0) and rs.status()[0].suspect
    rs.fault(0, 0.030)
    assert rs.due_probes() == []  # the last probe was 1 ms ago
    clock.advance(0.499)
    assert rs.due_probes() == [0]
    rs.probe_result(0, True)
    answer(rs, 0, 0.002)  # a real answer clears the suspicion
    clock.advance(1.0)
    assert rs.due_probes() == []


def test_a_suspect_that_hangs_later_is_found_by_its_next_probe() -> None:
    """CI saw a paused replica never ejected: a suspect whose probe had answered got only its
    sibling's hedges, each cancelled before it ran longer than its held-high EWMA, so nothing
    asked for another probe. A suspect is now probed every probe interval until it answers."""
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 1, 0.002)
    rs.fault(0, 0.100)  # lost a race by a lot: EWMA held at 100 ms
    assert rs.due_probes() == [0]
    clock.advance(0.001)
    rs.probe_result(0, True)  # alive then
    # Now it hangs. It gets no first attempts, only hedges that lose quickly.
    for _ in range(10):
        clock.advance(0.01)
        answer(rs, 1, 0.002)
        rs.start(0)
        rs.finish(0, 0.005, False, FailureKind.CANCELLED)
        if clock() < 0.5:
            assert rs.due_probes() == []
    clock.advance(0.5)
    assert rs.due_probes() == [0]
    clock.advance(0.5)  # the health check timed out
    rs.probe_result(0, False)
    assert ejected(rs, 0)


def test_a_suspect_cleared_while_its_probe_was_out_is_not_ejected() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    rs.fault(0, 0.030)
    assert rs.due_probes() == [0]
    answer(rs, 0, 0.002)
    rs.probe_result(0, False)
    assert not ejected(rs, 0)


def test_three_unanswered_attempts_longer_than_usual_are_probed_too() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 1, 0.002)
    for latency in (0.010, 0.020, 0.030):  # hedges sent there, cancelled when the sibling answered
        rs.start(1)
        rs.finish(1, latency, False, FailureKind.CANCELLED)
        if latency < 0.030:
            assert rs.due_probes() == []
    assert rs.due_probes() == [1]
    rs.probe_result(1, False)
    assert ejected(rs, 1)
    # Short cancellations (shorter than usual) say nothing, and an answer resets the count.
    rs2 = replicas(2, clock)
    answer(rs2, 1, 0.050)
    for _ in range(5):
        rs2.start(1)
        rs2.finish(1, 0.001, False, FailureKind.CANCELLED)
    assert rs2.due_probes() == []


def test_no_probes_without_ejection() -> None:
    rs = replicas(2, consecutive_failures=None)
    rs.fault(0, 0.030)
    assert rs.due_probes() == []


def test_probes_are_due_from_half_a_second_after_the_ejection_then_every_half_second() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    fail(rs, 0, 5)
    assert ejected(rs, 0)
    assert rs.due_probes() == []
    clock.advance(0.5)
    assert rs.due_probes() == [0]
    assert rs.due_probes() == []  # one probe at a time
    clock.advance(0.125)
    rs.probe_result(0, False)  # at 0.625: the next one is due at 1.125
    clock.advance(0.4375)
    assert rs.due_probes() == []
    clock.advance(0.0625)
    assert rs.due_probes() == [0]
    rs.probe_result(0, True)
    assert not ejected(rs, 0)
    status = rs.status()[0]
    assert (status.probes, status.returned, status.ewma, status.suspect) == (2, 1, None, False)
    assert status.times_ejected == 1  # kept: it decays with successes, as after a full ejection
    assert rs.pick({1}) == 0


def test_a_replica_ejected_again_waits_twice_as_long_for_its_first_probe() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    delays = []
    for _ in range(4):
        fail(rs, 0, 5)
        ejected_at = clock.now
        while not rs.due_probes():
            clock.advance(0.125)
        delays.append(clock.now - ejected_at)
        rs.probe_result(0, True)
    assert delays == [0.5, 1.0, 2.0, 4.0]


def test_a_probe_that_comes_back_after_the_ejection_ran_out_changes_nothing() -> None:
    clock = FakeClock()
    rs = replicas(2, clock, probe_interval=40.0)  # first probe capped at the 30 s ejection
    fail(rs, 0, 5)
    clock.advance(29.999)
    assert rs.due_probes() == []
    clock.advance(0.001)
    assert rs.due_probes() == []  # the ejection is over: nothing to probe
    clock.advance(1.0)
    rs.probe_result(0, False)
    assert not ejected(rs, 0)


def test_probing_can_be_turned_off() -> None:
    clock = FakeClock()
    rs = replicas(2, clock, probe_interval=None)
    fail(rs, 0, 5)
    clock.advance(29.0)
    assert rs.due_probes() == []
    assert ejected(rs, 0)


def test_a_replica_reporting_not_serving_gets_no_calls_while_a_sibling_is_up() -> None:
    clock = FakeClock()
    rs = replicas(3, clock)
    rs.health(1, False)
    assert rs.status()[1].down and not ejected(rs, 1)
    assert {rs.pick() for _ in range(6)} == {0, 2}
    rs.health(0, False)
    rs.health(2, False)
    assert rs.pick() is not None  # all down: still a last resort
    assert rs.pick(last_resort=False) is None


def test_a_down_replica_is_a_better_last_resort_than_an_ejected_one() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    fail(rs, 0, 5)
    assert ejected(rs, 0)
    rs.health(1, False)  # draining: it still takes calls for its drain delay
    assert [rs.pick() for _ in range(3)] == [1, 1, 1]


def test_serving_again_ends_being_down_and_an_ejection_at_once() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 0, 0.050)
    rs.health(0, False)
    rs.health(0, True)
    status = rs.status()[0]
    assert (status.down, status.ewma) == (False, None)  # afresh
    fail(rs, 0, 5)
    assert ejected(rs, 0)
    rs.health(0, False)
    rs.health(0, True)  # restarted: says so
    assert not ejected(rs, 0)
    assert rs.status()[0].returned == 1
    rs.health(1, True)  # SERVING from a replica that was fine changes nothing
    assert rs.status()[1] == replicas(2, clock).status()[1]


def test_status_page_view() -> None:
    rs = replicas(2)
    rs.start(1)
    answer(rs, 0, 0.002)
    fail(rs, 0, 2)
    assert rs.status() == (
        ReplicaStatus(0, "10.0.0.0:50051", 0, 0.002, False, None, 2, 0, 0, 3, suspect=True),
        ReplicaStatus(1, "10.0.0.1:50051", 1, None, False, None, 0, 0, 0, 1),
    )
    assert len(rs) == 2
    assert rs.addresses == ("10.0.0.0:50051", "10.0.0.1:50051")


def test_defaults() -> None:
    c = ReplicaConfig()
    assert (c.consecutive_failures, c.base_ejection_time, c.max_ejection_time) == (5, 30.0, 300.0)
    assert (c.max_ejection_percent, c.decay_after_successes) == (10.0, 100)
    assert (c.ewma_alpha, c.ewma_stale_after, c.probe_interval) == (0.25, 1.0, 0.5)


def test_an_empty_set_picks_nothing_and_addresses_are_unique() -> None:
    assert ReplicaSet([], FakeClock()).pick() is None
    with pytest.raises(ValueError, match="appears twice"):
        ReplicaSet(["a:1", "a:1"], FakeClock())


def test_a_new_set_carries_the_state_of_kept_replicas_and_new_ones_start_down() -> None:
    clock = FakeClock()
    old = ReplicaSet(["a:1", "b:1"], clock)
    old.start(0)
    old.finish(0, 0.004, True)
    fail(old, 1, 5)  # b ejected
    old.start(0)  # a call in flight on the old set
    new = ReplicaSet(["b:1", "c:1", "a:1"], clock, carry=old)
    b, c, a = new.status()
    assert (a.ewma, a.outstanding, b.ejected, c.down) == (0.004, 1, True, True)
    assert new.pick() == 2  # a: b is ejected, c not healthy yet
    old.finish(0, 0.004, True)  # the call in flight ends on the old set: the new one sees it
    assert new.status()[2].outstanding == 0
    new.health(1, True)
    assert new.status()[1].down is False
    smaller = ReplicaSet(["c:1"], clock, carry=new)
    assert smaller.index("c:1") == 0 and smaller.index("a:1") is None
    assert new.status()[2].down  # a was removed: plans still on the old set avoid it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"consecutive_failures": 0}, "replicas.consecutive_failures must be >= 1, got 0"),
        ({"base_ejection_time": 0.0}, "replicas.base_ejection_time must be > 0, got 0.0"),
        (
            {"max_ejection_time": 10.0},
            "replicas.max_ejection_time must be >= replicas.base_ejection_time (30), got 10.0",
        ),
        ({"max_ejection_percent": 101.0}, "replicas.max_ejection_percent must be in [0, 100], got 101.0"),
        ({"decay_after_successes": 0}, "replicas.decay_after_successes must be >= 1, got 0"),
        ({"ewma_alpha": 0.0}, "replicas.ewma_alpha must be in (0, 1], got 0.0"),
        ({"ewma_stale_after": -1.0}, "replicas.ewma_stale_after must be > 0, got -1.0"),
        ({"probe_interval": 0.0}, "replicas.probe_interval must be >= 0.01, got 0.0"),
        ({"probe_interval": 0.001}, "replicas.probe_interval must be >= 0.01, got 0.001"),
    ],
)
def test_validation_names_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        ReplicaConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


# --- a request's other shards (root.scatter, "Batching") ---------------------------------


def test_an_address_the_requests_other_shards_chose_wins_while_it_is_healthy() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 0, 0.010)  # replica 0 is slower: on cost alone replica 1 wins
    answer(rs, 1, 0.001)
    assert rs.pick() == 1
    assert rs.pick(prefer={"10.0.0.0:50051"}) == 0  # one call to that process carries this shard too
    assert rs.pick(prefer={"10.0.0.9:50051"}) == 1  # not one of this shard's replicas: cost decides
    assert rs.pick({0}, prefer={"10.0.0.0:50051"}) == 1  # excluded (tried already): cost decides
    fail(rs, 0, times=5)  # ejected
    assert ejected(rs, 0)
    assert rs.pick(prefer={"10.0.0.0:50051"}) == 1


def test_a_suspect_or_a_down_replica_is_not_preferred() -> None:
    clock = FakeClock()
    rs = replicas(2, clock)
    answer(rs, 0, 0.010)
    answer(rs, 1, 0.001)
    rs.health(0, False)  # reports NOT_SERVING
    assert rs.pick(prefer={"10.0.0.0:50051"}) == 1
    rs.health(0, True)
    rs.start(0)
    rs.fault(0, elapsed=0.5)  # lost a race it had a head start in: a suspect
    assert rs.status()[0].suspect
    assert rs.pick(prefer={"10.0.0.0:50051"}) == 1
