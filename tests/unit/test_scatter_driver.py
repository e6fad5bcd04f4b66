"""The fan-out driver (root.scatter) with the transport and the clock faked.

The replicas are in-process fakes behind the transport seam
(``Replica.call(build, size, timeout, metadata) -> AttemptResult``) and the
driver's clock is a ``FakeClock`` that only the fakes move, so the times in
the reports are exact. No network, no sleeping: the loop only runs the tasks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, shard_pb2
from root import scatter, wire
from root.policies import (
    Clock,
    CoverageWaitConfig,
    HedgeBudget,
    HedgeDelay,
    HedgingConfig,
    LatencyWindow,
    ReplicaSet,
    ShardPolicy,
)
from root.transport import AttemptResult
from scatter_common.payload import pack
from tests._fakeclock import FakeClock

NO_HEDGES = HedgingConfig(enabled=False)


class FakeReplica:
    """Answers every call with ``response`` after ``takes`` seconds: of fake time on a
    ``FakeClock``, else of real time (``asyncio.sleep``)."""

    def __init__(self, address: str, clock: Clock, takes: float, response: leaf_pb2.ExecuteResponse) -> None:
        self.address = address
        self.clock = clock
        self.takes = takes
        self.response = response.SerializeToString()
        self.requests: list[leaf_pb2.ExecuteRequest] = []
        self.batches = False  # no ExecuteShards (tests/unit/test_scatter_batches.py has one that does)

    async def call(self, build: Callable[[], bytes], size: int, timeout: float, metadata: object) -> AttemptResult:
        request = build()
        assert len(request) <= size  # the size the transport is told is an upper bound
        self.requests.append(leaf_pb2.ExecuteRequest.FromString(request))
        if isinstance(self.clock, FakeClock):
            self.clock.advance(self.takes)
        else:
            await asyncio.sleep(self.takes)
        return "OK", self.response

    async def close(self) -> None:
        pass


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock(start=10.0)
    monkeypatch.setattr(scatter, "clock", fake)
    yield fake


def shard(
    clock: Clock, index: int, count: int, takes: float, leaves: int = 1, covered: int | None = None
) -> scatter.Shard:
    """A shard with one replica; ``covered`` makes it a subtree answering with that coverage."""
    response = leaf_pb2.ExecuteResponse(payload=pack(probe_pb2.ProbePartial(shard_index=index, value=index + 1)))
    if covered is not None:
        response.coverage.total, response.coverage.answered = leaves, covered
    replica = FakeReplica(f"10.0.0.{index}:1", clock, takes, response)
    return scatter.Shard(
        index=index,
        count=count,
        replicas=[replica],  # type: ignore[list-item]
        policy=ShardPolicy(
            chooser=ReplicaSet([replica.address], clock),
            latencies=LatencyWindow(),
            hedging=NO_HEDGES,
            hedge_delay=HedgeDelay(NO_HEDGES),
            budget=HedgeBudget(clock),
        ),
        leaves=leaves,
    )


def run(shards: list[scatter.Shard], start: float, deadline: float, **kwargs: object) -> list[scatter.ShardOutcome]:
    payload = wire.payload_field(pack(probe_pb2.ProbeRequest(value=1)))

    async def main() -> list[scatter.ShardOutcome]:
        return await scatter.Scatter(shards, payload, "rid", start, deadline, **kwargs).run()  # type: ignore[arg-type]

    return asyncio.run(main())


def test_shard_latency_is_from_the_first_attempt_not_the_arrival(clock: FakeClock) -> None:
    # shard.proto: ShardReport.latency is the "time from the first attempt's start to the
    # winning answer". The request arrived at 10.0; the fan-out starts a second later.
    arrived = clock.now
    clock.advance(1.0)
    outcomes = run([shard(clock, 0, 1, takes=0.25)], start=arrived, deadline=arrived + 5.0)
    report = outcomes[0].report
    assert report.status == shard_pb2.SHARD_STATUS_OK
    assert report.latency.ToNanoseconds() == 250_000_000


def test_coverage_wait_counts_leaf_shards_in_a_tree() -> None:
    # Subtrees of 4 and 3 leaf shards, min_coverage 0.5 (4 of 7), a 10 ms coverage wait.
    # The 3-shard subtree answers at once: the wait must not start (1 of 2 direct shards
    # is "half"); the 4-shard one answers 200 ms later and the answer is whole.
    clock = time.monotonic
    big, small = shard(clock, 0, 7, takes=0.2, leaves=4, covered=4), shard(clock, 4, 7, takes=0.0, leaves=3, covered=3)
    now = clock()
    outcomes = run([big, small], now, now + 5.0, min_coverage=0.5, coverage_wait=CoverageWaitConfig(extra_wait=0.01))
    assert [o.report.status for o in outcomes] == [shard_pb2.SHARD_STATUS_OK] * 2


def test_coverage_wait_cuts_off_a_straggler_once_enough_leaf_shards_answered() -> None:
    # The other way round: the 4-shard subtree is enough; the 3-shard one is skipped.
    clock = time.monotonic
    big, small = shard(clock, 0, 7, takes=0.0, leaves=4, covered=4), shard(clock, 4, 7, takes=5.0, leaves=3, covered=3)
    now = clock()
    outcomes = run([big, small], now, now + 10.0, min_coverage=0.5, coverage_wait=CoverageWaitConfig(extra_wait=0.01))
    assert [o.report.status for o in outcomes] == [shard_pb2.SHARD_STATUS_OK, shard_pb2.SHARD_STATUS_SKIPPED]
    assert outcomes[1].report.error.startswith("cut off by the coverage wait (")


class FailingReplica:
    """Fails every call at once with status ``code``."""

    def __init__(self, address: str, code: str) -> None:
        self.address = address
        self.code = code
        self.batches = False

    async def call(self, build: Callable[[], bytes], size: int, timeout: float, metadata: object) -> AttemptResult:
        return self.code, "it failed"

    async def close(self) -> None:
        pass


def failing_shard(code: str, replicas: int, hedging: HedgingConfig) -> scatter.Shard:
    fakes = [FailingReplica(f"10.0.0.{i}:1", code) for i in range(replicas)]
    return scatter.Shard(
        index=0,
        count=1,
        replicas=fakes,  # type: ignore[arg-type]
        policy=ShardPolicy(
            chooser=ReplicaSet([fake.address for fake in fakes], time.monotonic),
            latencies=LatencyWindow(),
            hedging=hedging,
            hedge_delay=HedgeDelay(hedging),
            budget=HedgeBudget(time.monotonic),
        ),
    )


# (status, attempts, error, invalid) a shard of two replicas ends with, for the code both
# fail with, under the default hedging configuration: pinned from the code before the
# status table existed, so deriving the driver's rules from the table changed nothing.
OUTCOMES = {
    "UNAVAILABLE": (shard_pb2.SHARD_STATUS_UNAVAILABLE, 2, "it failed", None),
    "RESOURCE_EXHAUSTED": (shard_pb2.SHARD_STATUS_UNAVAILABLE, 2, "RESOURCE_EXHAUSTED: it failed", None),
    "DEADLINE_EXCEEDED": (shard_pb2.SHARD_STATUS_TIMEOUT, 1, "deadline exceeded before any replica answered", None),
    "INVALID_ARGUMENT": (shard_pb2.SHARD_STATUS_ERROR, 1, "INVALID_ARGUMENT: it failed", "it failed"),
}


@pytest.mark.parametrize("code", sorted(code.name for code in grpc.StatusCode if code.name != "OK"))
def test_what_each_status_code_makes_of_a_shard(code: str) -> None:
    now = time.monotonic()
    (outcome,) = run([failing_shard(code, 2, HedgingConfig())], now, now + 5.0)
    expected = OUTCOMES.get(code, (shard_pb2.SHARD_STATUS_ERROR, 1, f"{code}: it failed", None))
    assert (outcome.report.status, outcome.report.attempts, outcome.report.error, outcome.invalid) == expected


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED"])
def test_a_retried_code_made_fatal_by_the_operator_ends_the_shard_as_error(code: str) -> None:
    now = time.monotonic()
    (outcome,) = run([failing_shard(code, 2, HedgingConfig(non_fatal_status_codes=()))], now, now + 5.0)
    assert (outcome.report.status, outcome.report.attempts) == (shard_pb2.SHARD_STATUS_ERROR, 1)


def test_a_code_made_non_fatal_by_the_operator_fails_over_and_ends_unavailable() -> None:
    now = time.monotonic()
    hedging = HedgingConfig(non_fatal_status_codes=("INTERNAL",))
    (outcome,) = run([failing_shard("INTERNAL", 2, hedging)], now, now + 5.0)
    assert (outcome.report.status, outcome.report.attempts) == (shard_pb2.SHARD_STATUS_UNAVAILABLE, 2)
    assert outcome.report.error == "INTERNAL: it failed"


class RaisingReplica(FailingReplica):
    """A transport that raises instead of returning a status (a bug): the request must go on."""

    async def call(self, build: Callable[[], bytes], size: int, timeout: float, metadata: object) -> AttemptResult:
        raise RuntimeError("boom")


def test_an_attempt_that_raises_is_a_failed_attempt_not_a_failed_request() -> None:
    now = time.monotonic()
    shard = failing_shard("UNKNOWN", 2, HedgingConfig())
    shard.replicas = [RaisingReplica("10.0.0.0:1", ""), FailingReplica("10.0.0.1:1", "UNAVAILABLE")]  # type: ignore[list-item]
    (outcome,) = run([shard], now, now + 5.0)
    assert outcome.report.status == shard_pb2.SHARD_STATUS_ERROR
    assert "the root's call failed: RuntimeError" in outcome.report.error


def test_a_call_on_a_closed_channel_is_unavailable() -> None:
    """A replica removed from its shard has its channel closed; a request that still had it fails over."""
    from root.transport import Replica, channel_options

    async def call_closed() -> AttemptResult:
        replica = Replica("127.0.0.1:1", channel_options(1024))
        await replica.close()
        return await replica.call(lambda: b"", 0, 1.0, ())

    code, detail = asyncio.run(call_closed())
    assert code == "UNAVAILABLE" and "removed" in str(detail)
