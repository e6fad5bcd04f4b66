"""Deadline budget and coverage decision: pure, exact."""

from __future__ import annotations

import pytest

from protos.scatter_gather.v1 import shard_pb2
from root.errors import CoverageTimedOut, DeadlineTooShort, InsufficientCoverage, InvalidRequest
from root.policies.coverage import build_coverage, check_leaf_verdicts, require_coverage
from root.policies.deadlines import AnswerTimes, Budget, DeadlinePolicy

POLICY = DeadlinePolicy(default=1.0, maximum=5.0, merge_reserve=0.01)


def test_budget_uses_default_without_client_deadline() -> None:
    assert POLICY.budget(None) == Budget(total=1.0, shards=0.99)


def test_budget_uses_client_deadline_and_caps_it() -> None:
    assert POLICY.budget(0.5) == Budget(total=0.5, shards=0.49)
    assert POLICY.budget(3600.0) == Budget(total=5.0, shards=4.99)


@pytest.mark.parametrize("remaining", [0.0, 0.001, 0.0105, -1.0])
def test_budget_too_short_fails_at_once(remaining: float) -> None:
    with pytest.raises(DeadlineTooShort, match="leaves no time for the shards"):
        POLICY.budget(remaining)


def test_budget_just_enough() -> None:
    assert POLICY.budget(0.0111).shards == pytest.approx(0.0011)


def test_the_measured_reserve_adds_to_the_fixed_one_capped_at_half_the_deadline() -> None:
    assert POLICY.budget(0.5, measured=0.004) == Budget(total=0.5, shards=0.5 - 0.014)
    assert POLICY.budget(0.5, measured=0.4) == Budget(total=0.5, shards=0.5 - 0.01 - 0.25)
    fixed = DeadlinePolicy(default=1.0, maximum=5.0, merge_reserve=0.01, adaptive_reserve=False)
    assert fixed.budget(0.5, measured=0.004) == Budget(total=0.5, shards=0.49)
    with pytest.raises(DeadlineTooShort, match=r"after the 12\.0 ms reserved for the merge and the answer"):
        POLICY.budget(0.0125, measured=0.002)


def test_answer_times_reserve_is_the_p99_of_recent_samples() -> None:
    times = AnswerTimes()
    assert times.reserve(0.0) == 0.0
    for i in range(100):
        times.record(0.001 if i != 50 else 0.030, now=i * 0.01)  # one slow merge in a hundred
    assert times.reserve(1.0) == 0.001  # the p99 of 100 is the 99th: one outlier is tolerated
    for _ in range(16):  # the p99 is refreshed every 16 samples
        times.record(0.030, now=1.0)
    assert times.reserve(1.0) == 0.030
    assert times.reserve(30.0) == 0.030  # a quiet root keeps its newest 20 samples, however old
    times.record(-1.0, now=30.0)  # a clock oddity is no sample
    times.record(float("nan"), now=30.0)
    assert times.reserve(30.0) == 0.030


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, 1.0, 0.0), r"deadlines.default must be > 0, got 0.0"),
        ((float("nan"), 1.0, 0.0), r"deadlines.default must be a finite number, got nan"),
        ((2.0, 1.0, 0.0), r"deadlines.maximum must be >= deadlines.default \(2\), got 1.0"),
        ((1.0, float("nan"), 0.0), r"deadlines.maximum must be a finite number, got nan"),
        ((1.0, 2.0, 1.0), r"deadlines.merge_reserve must be below deadlines.default \(1\), got 1.0"),
        ((1.0, 2.0, -0.1), r"deadlines.merge_reserve must be >= 0, got -0.1"),
    ],
)
def test_policy_validation(args: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeadlinePolicy(*args)


def _reports(*statuses: int) -> list[shard_pb2.ShardReport]:
    return [
        shard_pb2.ShardReport(shard_index=i, status=s, error="" if s == shard_pb2.SHARD_STATUS_OK else "boom")  # type: ignore[arg-type]
        for i, s in enumerate(statuses)
    ]


OK, TIMEOUT, UNAV = (
    shard_pb2.SHARD_STATUS_OK,
    shard_pb2.SHARD_STATUS_TIMEOUT,
    shard_pb2.SHARD_STATUS_UNAVAILABLE,
)


def test_coverage_counts_and_lists_missing() -> None:
    coverage = build_coverage(_reports(OK, TIMEOUT, OK, UNAV))
    assert (coverage.total, coverage.answered) == (4, 2)
    assert [(m.shard_index, m.status, m.reason) for m in coverage.missing] == [
        (1, TIMEOUT, "boom"),
        (3, UNAV, "boom"),
    ]


def test_require_coverage_thresholds() -> None:
    three_of_four = build_coverage(_reports(OK, OK, OK, TIMEOUT))
    require_coverage(three_of_four, 0.75)
    require_coverage(three_of_four, 0.0)
    with pytest.raises(
        InsufficientCoverage,
        match=r"coverage 3/4 is below min_coverage 1; missing: shard 3 \(TIMEOUT: boom\)",
    ):
        require_coverage(three_of_four, 1.0)
    two_of_three = build_coverage(_reports(OK, OK, UNAV))
    require_coverage(two_of_three, 2 / 3)


def test_require_coverage_names_at_most_eight() -> None:
    coverage = build_coverage(_reports(*([TIMEOUT] * 12)))
    with pytest.raises(InsufficientCoverage, match="and 4 more"):
        require_coverage(coverage, 0.5)


def test_leaf_verdict_reports_lowest_shard() -> None:
    check_leaf_verdicts({})
    with pytest.raises(InvalidRequest, match="shard 1 rejected the request: bad type"):
        check_leaf_verdicts({3: "other", 1: "bad type"})


def test_coverage_lost_to_timeouts_alone_is_a_deadline_error() -> None:
    # Every missing shard ran out of time: DEADLINE_EXCEEDED (retrying with the same deadline cannot help).
    with pytest.raises(CoverageTimedOut, match="raise the deadline or lower min_coverage") as info:
        require_coverage(build_coverage(_reports(OK, TIMEOUT, TIMEOUT)), 1.0)
    assert info.value.code == "DEADLINE_EXCEEDED"
    # One shard that failed otherwise: UNAVAILABLE, as before.
    with pytest.raises(InsufficientCoverage) as mixed:
        require_coverage(build_coverage(_reports(OK, TIMEOUT, UNAV)), 1.0)
    assert type(mixed.value) is InsufficientCoverage and mixed.value.code == "UNAVAILABLE"
