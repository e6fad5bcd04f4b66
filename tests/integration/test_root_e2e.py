"""The spine end to end: client -> root -> every shard -> merge -> client,
with real processes on 127.0.0.1 started by the local runtime."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import wrappers_pb2

from protos.scatter_gather.v1 import root_pb2, shard_pb2
from scatter.runtime import Deployment
from tests._cluster import Client, ms, probe_cluster

SHARDS = 3
OK = shard_pb2.SHARD_STATUS_OK
# The root keeps this much of every deadline for the merge; large enough that a client deadline
# below it still leaves the root ample time to refuse the request itself (see the tiny-deadline test).
MERGE_RESERVE = 0.2


def expected_sum(value: int = 0, shards: range = range(SHARDS)) -> int:
    return sum(i + 1 + value for i in shards)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployment]:
    with probe_cluster(shards=SHARDS, replicas=2, root={"merge_reserve_ms": MERGE_RESERVE * 1000}) as deployment:
        yield deployment


@pytest.fixture
def client(cluster: Deployment) -> Iterator[Client]:
    c = Client(cluster.root_address)
    yield c
    # After every test, whatever it did, the deployment answers in full again
    # (a revived replica may take up to the root's 1 s reconnect backoff).
    deadline = time.monotonic() + 5
    while True:
        try:
            response, merged, _ = c.probe(value=1)
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert merged.sum == expected_sum(1)
    assert response.coverage.answered == SHARDS
    c.close()


def test_every_shard_answers(client: Client, cluster: Deployment) -> None:
    response, merged, _ = client.probe(value=10, delay=ms(2))
    assert merged.sum == expected_sum(10)
    assert list(merged.shard_indices) == [0, 1, 2]
    assert (response.coverage.total, response.coverage.answered) == (SHARDS, SHARDS)
    assert not response.coverage.missing
    assert [r.shard_index for r in response.shards] == [0, 1, 2]
    for report in response.shards:
        assert report.status == OK
        assert report.attempts >= 1
        assert report.replica in {cluster.children[f"leaf-{report.shard_index}-{r}"].address for r in range(2)}
        assert report.latency.ToNanoseconds() >= 2_000_000
    assert response.request_id
    assert response.latency.ToNanoseconds() > 0


def test_hung_shard_times_out_with_partial_coverage(client: Client) -> None:
    # An answer at all proves the root gave up before the client's own deadline; when it gave up is
    # in its report: at the shard deadline, the client's deadline less the merge reserve.
    deadline = 0.5
    response, merged, _ = client.probe(timeout=deadline, min_coverage=0.5, shard_delays={1: ms(10_000)})
    assert (response.coverage.total, response.coverage.answered) == (SHARDS, SHARDS - 1)
    assert [(m.shard_index, m.status) for m in response.coverage.missing] == [(1, shard_pb2.SHARD_STATUS_TIMEOUT)]
    assert response.shards[1].status == shard_pb2.SHARD_STATUS_TIMEOUT
    shard_deadline = deadline - MERGE_RESERVE
    given_up = response.shards[1].latency.ToNanoseconds() / 1e9
    assert shard_deadline - 0.05 <= given_up <= shard_deadline + 0.15, given_up
    assert merged.sum == expected_sum(0, range(0, SHARDS, 2))


def test_hung_shard_below_min_coverage_is_a_deadline_error(client: Client) -> None:
    # The root answers before the client's deadline (it keeps a reserve), naming the shard and the fix.
    with pytest.raises(grpc.RpcError) as info:
        client.probe(timeout=0.5, shard_delays={2: ms(10_000)})
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    details = info.value.details() or ""
    assert "shard 2 (TIMEOUT" in details and "raise the deadline" in details, details


def test_failing_shard_is_reported(client: Client) -> None:
    response, merged, _ = client.probe(min_coverage=0.0, fail_shards=[0])
    assert response.shards[0].status == shard_pb2.SHARD_STATUS_ERROR
    assert "INTERNAL" in response.shards[0].error
    assert merged.sum == expected_sum(0, range(1, SHARDS))


def test_killed_replica_fails_over(client: Client, cluster: Deployment) -> None:
    cluster.kill("leaf-0-0")
    try:
        survivor = cluster.children["leaf-0-1"].address
        for _ in range(10):
            response, merged, _ = client.probe()
            assert merged.sum == expected_sum()
            assert response.shards[0].replica == survivor
    finally:
        cluster.revive("leaf-0-0")


def test_whole_shard_down_is_unavailable_naming_it(client: Client, cluster: Deployment) -> None:
    cluster.kill("leaf-2-0")
    cluster.kill("leaf-2-1")
    try:
        with pytest.raises(grpc.RpcError) as info:
            client.probe()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "missing: shard 2 (UNAVAILABLE" in info.value.details()
        response, _, _ = client.probe(min_coverage=0.5)
        assert response.coverage.answered == SHARDS - 1
        assert response.shards[2].status == shard_pb2.SHARD_STATUS_UNAVAILABLE
    finally:
        cluster.revive("leaf-2-0")
        cluster.revive("leaf-2-1")


def test_wrong_payload_type_is_invalid_argument(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.query(wrappers_pb2.StringValue(value="not a probe"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "probe.v1.ProbeRequest" in info.value.details()


def test_empty_payload_is_invalid_argument(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.stub.Query(root_pb2.QueryRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "payload is empty" in info.value.details()


def test_bad_min_coverage_option_is_invalid_argument(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.probe(min_coverage=1.5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "min_coverage" in info.value.details()


def test_tiny_deadline_fails_fast(client: Client) -> None:
    # A deadline below the merge reserve leaves the shards nothing: the root refuses at once, without
    # calling a leaf. The client's deadline is long enough for that refusal to arrive first, and the
    # leaves would hang past it, so only the root's own verdict (its message) can pass this test.
    with pytest.raises(grpc.RpcError) as info:
        client.probe(timeout=MERGE_RESERVE / 2, delay=ms(10_000))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "leaves no time for the shards" in str(info.value.details()), info.value.details()


def test_oversized_message_is_refused_cleanly(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.query(wrappers_pb2.BytesValue(value=b"x" * (5 * 1024 * 1024)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
