"""The fan-out driver's ExecuteShards calls (root.scatter, "Batching"), over in-memory replicas.

Several shards whose first attempts go to one address share one call; each
shard still ends by its own answer, is cancelled on its own, and hedges on
its own. A peer without ExecuteShards is asked again with one Execute per
shard, within the same request. Real time, short delays, no sockets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from google.protobuf import any_pb2

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, shard_pb2
from root import scatter, wire
from root.policies import HedgeBudget, HedgeDelay, HedgingConfig, LatencyWindow, ReplicaSet, ShardPolicy
from root.transport import AttemptResult
from scatter_common.payload import pack

OK = shard_pb2.SHARD_STATUS_OK
NO_HEDGES = HedgingConfig(enabled=False)


def partial(shard: int) -> any_pb2.Any:
    return pack(probe_pb2.ProbePartial(shard_index=shard, value=shard + 1))


class Process:
    """One leaf process serving several shards: Execute and ExecuteShards, after ``takes`` seconds."""

    def __init__(self, address: str, takes: float = 0.0, *, batches: bool = True) -> None:
        self.address = address
        self.takes = takes
        self.batches = True
        self.implements_batches = batches
        self.fail: dict[int, tuple[int, str]] = {}  # shard -> (code, message) in its ShardAnswer
        self.omit: set[int] = set()  # shards left out of the answer (a broken leaf)
        self.single: list[leaf_pb2.ExecuteRequest] = []
        self.batched: list[leaf_pb2.ExecuteShardsRequest] = []
        self.cancelled = 0

    async def _work(self) -> None:
        try:
            await asyncio.sleep(self.takes)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def call(self, build: Callable[[], bytes], size: int, timeout: float, metadata: object) -> AttemptResult:
        request = leaf_pb2.ExecuteRequest.FromString(build())
        self.single.append(request)
        await self._work()
        return "OK", leaf_pb2.ExecuteResponse(payload=partial(request.shard_index)).SerializeToString()

    async def call_shards(
        self, build: Callable[[], bytes], size: int, timeout: float, metadata: object
    ) -> AttemptResult:
        raw = build()
        assert len(raw) <= size  # the size the transport is told is an upper bound
        request = leaf_pb2.ExecuteShardsRequest.FromString(raw)
        self.batched.append(request)
        if not self.implements_batches:
            return "UNIMPLEMENTED", "Method not found!"
        await self._work()
        answers = []
        for index in request.shard_indexes:
            if index in self.omit:
                continue
            if index in self.fail:
                code, message = self.fail[index]
                answers.append(leaf_pb2.ShardAnswer(shard_index=index, code=code, message=message))
            else:
                answers.append(leaf_pb2.ShardAnswer(shard_index=index, payload=partial(index)))
        return "OK", leaf_pb2.ExecuteShardsResponse(answers=answers).SerializeToString()

    async def close(self) -> None:
        pass


def shard(index: int, count: int, replicas: list[Process], hedging: HedgingConfig = NO_HEDGES) -> scatter.Shard:
    return scatter.Shard(
        index=index,
        count=count,
        replicas=replicas,  # type: ignore[arg-type]
        policy=ShardPolicy(
            chooser=ReplicaSet([r.address for r in replicas], time.monotonic),
            latencies=LatencyWindow(),
            hedging=hedging,
            hedge_delay=HedgeDelay(hedging),
            budget=HedgeBudget(time.monotonic),
        ),
    )


def run(shards: list[scatter.Shard], timeout: float = 5.0, batch: bool = True) -> list[scatter.ShardOutcome]:
    payload = wire.payload_field(pack(probe_pb2.ProbeRequest(value=1)))

    async def main() -> list[scatter.ShardOutcome]:
        start = time.monotonic()
        return await scatter.Scatter(shards, payload, "rid", start, start + timeout, batch=batch).run()

    return asyncio.run(main())


def values(outcomes: list[scatter.ShardOutcome]) -> list[int]:
    out = []
    for outcome in outcomes:
        assert outcome.report.status == OK, outcome.report
        message = any_pb2.Any.FromString(outcome.payload)
        decoded = probe_pb2.ProbePartial()
        assert message.Unpack(decoded)
        out.append(decoded.value)
    return out


def test_shards_of_one_process_share_one_call_and_each_gets_its_own_answer() -> None:
    a, b = Process("a:1"), Process("b:1")
    shards = [shard(i, 4, [a if i < 2 else b]) for i in range(4)]
    outcomes = run(shards)
    assert values(outcomes) == [1, 2, 3, 4]
    assert [list(r.shard_indexes) for r in a.batched] == [[0, 1]]
    assert [list(r.shard_indexes) for r in b.batched] == [[2, 3]]
    (request,) = a.batched
    assert (request.shard_count, request.attempt, request.hedge, request.request_id) == (4, 1, False, "rid")
    assert not a.single and not b.single
    assert [o.report.replica for o in outcomes] == ["a:1", "a:1", "b:1", "b:1"]
    assert all(o.report.attempts == 1 for o in outcomes)
    assert [s.stats.batched for s in shards] == [1, 1, 1, 1]


def test_a_shard_alone_on_its_address_gets_a_plain_execute() -> None:
    a, b = Process("a:1"), Process("b:1")
    outcomes = run([shard(0, 3, [a]), shard(1, 3, [a]), shard(2, 3, [b])])
    assert values(outcomes) == [1, 2, 3]
    assert len(a.batched) == 1 and not a.single
    assert not b.batched and [r.shard_index for r in b.single] == [2]


def test_batching_off_sends_one_execute_per_shard() -> None:
    a = Process("a:1")
    outcomes = run([shard(i, 3, [a]) for i in range(3)], batch=False)
    assert values(outcomes) == [1, 2, 3]
    assert not a.batched and sorted(r.shard_index for r in a.single) == [0, 1, 2]


def test_one_shards_failure_inside_the_call_is_that_shards_alone() -> None:
    a = Process("a:1")
    a.fail[1] = (13, "shard 1 broke")  # INTERNAL
    a.omit.add(2)
    outcomes = run([shard(i, 3, [a]) for i in range(3)])
    assert values(outcomes[:1]) == [1]
    assert outcomes[1].report.status == shard_pb2.SHARD_STATUS_ERROR
    assert outcomes[1].report.error == "INTERNAL: shard 1 broke"
    assert outcomes[2].report.status == shard_pb2.SHARD_STATUS_ERROR
    assert "has no answer for shard 2" in outcomes[2].report.error


def test_an_invalid_argument_answer_is_the_requests_fault() -> None:
    a = Process("a:1")
    a.fail[0] = (3, "bad query")  # INVALID_ARGUMENT: the client's to fix, passed on
    outcomes = run([shard(i, 2, [a]) for i in range(2)])
    assert outcomes[0].invalid == "bad query"
    assert outcomes[1].report.status == OK


def test_a_peer_without_execute_shards_is_asked_shard_by_shard_and_not_batched_again() -> None:
    a = Process("a:1", batches=False)
    shards = [shard(i, 3, [a]) for i in range(3)]
    assert values(run(shards)) == [1, 2, 3]
    assert len(a.batched) == 1  # asked once, answered UNIMPLEMENTED
    assert sorted(r.shard_index for r in a.single) == [0, 1, 2]
    assert all(r.attempt == 1 for r in a.single)  # the same attempt, resent: the plans saw nothing
    assert all(s.replicas[0].batches is False for s in shards)
    assert [s.stats.batched for s in shards] == [0, 0, 0]
    assert values(run(shards)) == [1, 2, 3]
    assert len(a.batched) == 1 and len(a.single) == 6


def test_the_call_is_cancelled_when_no_shard_waits_for_it_any_more() -> None:
    a = Process("a:1", takes=10.0)
    outcomes = run([shard(i, 2, [a]) for i in range(2)], timeout=0.05)
    assert [o.report.status for o in outcomes] == [shard_pb2.SHARD_STATUS_TIMEOUT] * 2
    assert len(a.batched) == 1 and a.cancelled == 1


def test_a_hedge_wins_one_shard_and_the_call_goes_on_for_the_other() -> None:
    # Shards 0 and 1 share process a (slow); shard 0 also has replica b (fast) and hedges there after 5 ms.
    a, b = Process("a:1", takes=0.2), Process("b:1")
    hedging = HedgingConfig(hedging_delay=0.005)
    zero = shard(0, 2, [a, b], hedging)
    zero.policy.chooser = ReplicaSet(["a:1", "b:1"], time.monotonic)
    one = shard(1, 2, [a])
    outcomes = run([zero, one])
    assert values(outcomes) == [1, 2]
    assert outcomes[0].report.replica == "b:1" and outcomes[0].report.hedge_won
    assert outcomes[1].report.replica == "a:1" and outcomes[1].report.attempts == 1
    assert [list(r.shard_indexes) for r in a.batched] == [[0, 1]]
    assert a.cancelled == 0  # shard 1 still wanted the call
    assert [r.hedge for r in b.single] == [True]


def test_shards_on_the_same_replicas_follow_the_first_ones_choice() -> None:
    # Two processes a and b each serve shards 0-2 (two replicas of the same three shards). Each
    # request's three first attempts go to one of them, in one call; the requests share out the load.
    a, b = Process("a:1"), Process("b:1")
    shards = [shard(i, 3, [a, b]) for i in range(3)]
    # Shard 1 alone once found a slow (its own EWMA): on its own it would choose b while the others choose a.
    for replica, took in ((0, 0.5), (1, 0.001)):
        shards[1].policy.chooser.start(replica)
        shards[1].policy.chooser.finish(replica, took, True)

    async def requests() -> None:
        payload = wire.payload_field(pack(probe_pb2.ProbeRequest(value=1)))
        for _ in range(6):
            start = time.monotonic()
            outcomes = await scatter.Scatter(shards, payload, "rid", start, start + 5.0).run()
            assert values(outcomes) == [1, 2, 3]
            assert len({o.report.replica for o in outcomes}) == 1, [o.report.replica for o in outcomes]

    asyncio.run(requests())
    assert len(a.batched) + len(b.batched) == 6 and not a.single and not b.single
    assert a.batched and b.batched
    assert all(list(r.shard_indexes) == [0, 1, 2] for r in a.batched + b.batched)
