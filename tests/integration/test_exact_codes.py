"""Hostile and careless requests get the documented status code, one log line and a count.

Against a real deployment: near-limit and oversized payloads (RESOURCE_EXHAUSTED
at the root, before any leaf call), bodies that do not parse (INVALID_ARGUMENT
on every service, no traceback), a huge type URL (INVALID_ARGUMENT), and a
root serving as a leaf asked for shards it does not serve (FAILED_PRECONDITION).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import any_pb2

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, root_pb2
from root import wire
from scatter.runtime import Deployment
from tests._cluster import Client, probe_cluster
from tests._http import fetch, sample
from tests._procs import wait_until

SHARDS = 2
MAX_MESSAGE_BYTES = 64 * 1024  # small, so a near-limit request is cheap to send
GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field key with a truncated varint: no protobuf message parses it


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployment]:
    with probe_cluster(
        shards=SHARDS,
        replicas=2,
        root={"max_message_bytes": MAX_MESSAGE_BYTES},
        root_flags=("--log-level", "INFO", "--log-format", "json"),
    ) as dep:
        yield dep


@pytest.fixture
def client(cluster: Deployment) -> Iterator[Client]:
    client = Client(cluster.root_address)
    yield client
    client.close()


def padded(total: int) -> root_pb2.QueryRequest:
    """A valid probe QueryRequest of exactly ``total`` bytes, all of it the payload field.

    The padding is an unknown field of the ProbeRequest, which leaves and the
    merge skip, as protobuf requires.
    """
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=1))
    base = request.payload.value
    for pad in range(max(0, total - 64), total):
        request.payload.value = base + b"\xfa\x3f" + wire.varint(pad) + b"x" * pad  # field 1023, length-delimited
        if len(request.SerializeToString()) == total:
            return request
    raise AssertionError(f"cannot build a request of exactly {total} bytes")


def shard_calls(cluster: Deployment) -> float:
    text = fetch(cluster.children["root"].metrics_address, "/metrics")
    return sum(sample(text, "scatter_root_shard_calls_total", shard=str(i)) for i in range(SHARDS))


def requests_with(cluster: Deployment, code: str) -> float:
    text = fetch(cluster.children["root"].metrics_address, "/metrics")
    try:
        return sample(text, "scatter_root_requests_total", code=code)
    except AssertionError:
        return 0.0


def no_internal_address(cluster: Deployment, text: str) -> None:
    for name, child in cluster.children.items():
        assert child.address not in text, f"the message names {name}'s address: {text}"


def test_near_limit_payload_is_refused_before_any_leaf_call(cluster: Deployment, client: Client) -> None:
    calls = shard_calls(cluster)
    # Under the server's receive limit, so grpc lets it in; over what the root can forward.
    with pytest.raises(grpc.RpcError) as info:
        client.stub.Query(padded(MAX_MESSAGE_BYTES - 100), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    message = info.value.details()
    assert f"max_message_bytes = {MAX_MESSAGE_BYTES}" in message
    no_internal_address(cluster, message)
    assert shard_calls(cluster) == calls  # no leaf was called

    # The limit the message names is exact: a request of that size reaches every leaf (whose requests
    # the root's channels carry), and only the leaves' answers on top of it overflow the merge
    # request, which the root says before calling the merge; with room for the answers, it succeeds.
    match = re.search(r"forwards at most (\d+)", message)
    assert match, message
    largest = int(match[1])
    assert MAX_MESSAGE_BYTES - 2048 < largest < MAX_MESSAGE_BYTES - 100
    with pytest.raises(grpc.RpcError) as info:
        client.stub.Query(padded(largest + 1), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert shard_calls(cluster) == calls
    with pytest.raises(grpc.RpcError) as info:
        client.stub.Query(padded(largest), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    assert "the shards answered" in info.value.details() and "merge request" in info.value.details()
    no_internal_address(cluster, info.value.details())
    assert shard_calls(cluster) == calls + SHARDS
    response: root_pb2.QueryResponse = client.stub.Query(padded(largest - 1024), timeout=5)
    merged = probe_pb2.ProbeResponse()
    assert response.payload.Unpack(merged) and merged.sum == sum(i + 2 for i in range(SHARDS))


def test_oversized_payload_is_resource_exhausted(cluster: Deployment, client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.stub.Query(padded(MAX_MESSAGE_BYTES + 10), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("method", "child", "message"),
    [
        ("/scatter_gather.v1.Root/Query", "root", "QueryRequest"),
        ("/scatter_gather.v1.Leaf/Execute", "root", "ExecuteRequest"),  # the root serving as a leaf
        ("/scatter_gather.v1.Leaf/Execute", "leaf-0-0", "ExecuteRequest"),
        ("/scatter_gather.v1.Merge/Merge", "merge", "MergeRequest"),
    ],
)
def test_undecodable_body_is_invalid_argument_in_one_line(
    cluster: Deployment, method: str, child: str, message: str
) -> None:
    process = cluster.children[child]
    before = counted(cluster, child)
    with grpc.insecure_channel(process.address) as channel:
        call = channel.unary_unary(method)  # raw bytes in and out
        with pytest.raises(grpc.RpcError) as info:
            call(GARBAGE, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    expected = f"({len(GARBAGE)} bytes) does not parse as scatter_gather.v1.{message}"
    assert expected in info.value.details()

    def logged() -> bool:
        return expected in process.log_path.read_text()

    wait_until(logged, 5, f"{child} logs the undecodable body")
    log = process.log_path.read_text()
    assert "Traceback" not in log and "Exception deserializing" not in log, log
    lines = [line for line in log.splitlines() if expected in line]
    assert len(lines) == 1, lines
    if child != "merge":  # the root and the leaves log JSON lines here
        assert lines[0].startswith("{") and lines[0].endswith("}"), lines
    # counted when the call ends, a moment after the log line (the root logs, then counts)
    wait_until(lambda: counted(cluster, child) == before + 1, 5, f"{child} counts the undecodable body")


def counted(cluster: Deployment, child: str) -> float:
    """The root's INVALID_ARGUMENT requests, or a leaf's or the merge's calls that ended in an error."""
    if child == "root":
        return requests_with(cluster, "INVALID_ARGUMENT")
    text = fetch(cluster.children[child].metrics_address, "/metrics")
    role = "leaf" if child.startswith("leaf") else "merge"
    return sample(text, f"scatter_{role}_calls_total", outcome="errors")


def test_huge_type_url_is_invalid_argument_before_any_leaf_call(cluster: Deployment, client: Client) -> None:
    calls = shard_calls(cluster)
    request = root_pb2.QueryRequest(payload=any_pb2.Any(type_url="type.googleapis.com/" + "x" * 17_000))
    with pytest.raises(grpc.RpcError) as info:
        client.stub.Query(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert "type URL" in info.value.details() and len(info.value.details()) < 300
    assert shard_calls(cluster) == calls


def test_a_leaf_quotes_a_long_type_url_briefly(cluster: Deployment) -> None:
    request = leaf_pb2.ExecuteRequest(shard_index=0, shard_count=SHARDS)
    request.payload.type_url = "type.googleapis.com/" + "y" * 1500  # under the limit, over what is quoted
    with grpc.insecure_channel(cluster.children["leaf-0-0"].address) as channel:
        call = channel.unary_unary(
            "/scatter_gather.v1.Leaf/Execute", request_serializer=leaf_pb2.ExecuteRequest.SerializeToString
        )
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "(1500 characters)" in info.value.details() and len(info.value.details()) < 400


def execute_on_root(cluster: Deployment, shard_index: int, shard_count: int) -> leaf_pb2.ExecuteResponse:
    request = leaf_pb2.ExecuteRequest(shard_index=shard_index, shard_count=shard_count)
    request.payload.Pack(probe_pb2.ProbeRequest(value=1))
    with grpc.insecure_channel(cluster.root_address) as channel:
        call = channel.unary_unary(
            "/scatter_gather.v1.Leaf/Execute",
            request_serializer=leaf_pb2.ExecuteRequest.SerializeToString,
            response_deserializer=leaf_pb2.ExecuteResponse.FromString,
        )
        response: leaf_pb2.ExecuteResponse = call(request, timeout=5)
    return response


@pytest.mark.parametrize(("index", "count"), [(1, SHARDS), (0, SHARDS + 1), (5, 0)])
def test_root_as_a_leaf_refuses_shards_it_does_not_serve(cluster: Deployment, index: int, count: int) -> None:
    calls = shard_calls(cluster)
    with pytest.raises(grpc.RpcError) as info:
        execute_on_root(cluster, index, count)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
    assert f"serves shards 0-{SHARDS - 1} of {SHARDS}" in info.value.details()
    assert shard_calls(cluster) == calls


@pytest.mark.parametrize("count", [SHARDS, 0])  # 0: the caller did not say, as for a leaf
def test_root_as_a_leaf_answers_its_own_span(cluster: Deployment, count: int) -> None:
    response = execute_on_root(cluster, 0, count)
    assert (response.coverage.total, response.coverage.answered) == (SHARDS, SHARDS)


@pytest.mark.parametrize("field", ["delay", "stall", "shard_delays", "replica_delays"])
def test_a_probe_duration_out_of_range_is_invalid_argument(cluster: Deployment, field: str) -> None:
    """Found by the fuzz suite: the probe leaf raised OverflowError (INTERNAL, a traceback) on a
    Duration of 2**62 seconds, beyond google.protobuf.Duration's range."""
    probe = probe_pb2.ProbeRequest(stall_probability=1.0)
    if field in ("delay", "stall"):
        getattr(probe, field).seconds = 2**62
    elif field == "shard_delays":
        probe.shard_delays[0].seconds = 2**62
    else:
        probe.replica_delays["shard0-replica0"].seconds = 2**62
    request = leaf_pb2.ExecuteRequest(shard_index=0, shard_count=SHARDS)
    request.payload.Pack(probe)
    leaf = cluster.children["leaf-0-0"]
    with grpc.insecure_channel(leaf.address) as channel:
        call = channel.unary_unary(
            "/scatter_gather.v1.Leaf/Execute", request_serializer=leaf_pb2.ExecuteRequest.SerializeToString
        )
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert f"{field}" in (info.value.details() or "") and "out of range" in (info.value.details() or "")
    assert "Traceback" not in leaf.log_path.read_text()
