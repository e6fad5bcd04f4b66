"""What a client reads when something fails: the shard (or the merge) and what to
do, never an internal address or another process's exception text, unless
``[root] detailed_errors`` asks for them; the root's log keeps the detail."""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest

from protos.scatter_gather.v1 import shard_pb2
from scatter.runtime import Deployment
from tests._cluster import Client, probe_cluster, wait_until_whole
from tests._procs import wait_until

SHARDS = 2
UINT64_MAX = 2**64 - 1
ADDRESS = re.compile(r"127\.0\.0\.1|ipv4:|unix:")


@pytest.fixture(scope="module", params=[False, True], ids=["default", "detailed_errors"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    # INFO: every failure's detail, not only the one WARNING a second (root.service).
    options = {"root": {"detailed_errors": request.param}, "root_flags": ("--log-level", "INFO")}
    with probe_cluster(shards=SHARDS, replicas=1, **options) as deployment:
        yield deployment


@pytest.fixture
def client(cluster: Deployment) -> Iterator[Client]:
    c = Client(cluster.root_address)
    yield c
    wait_until_whole(c, SHARDS)
    c.close()


def detailed(cluster: Deployment) -> bool:
    return bool(cluster.spec.root["root"]["detailed_errors"])


def root_log_has(cluster: Deployment, *texts: str) -> None:
    log = cluster.children["root"].log_path
    wait_until(lambda: all(text in log.read_text() for text in texts), 5, f"root log has {texts}")


def test_failing_leaf_names_its_code_not_its_exception(client: Client, cluster: Deployment) -> None:
    response, _, _ = client.probe(min_coverage=0.0, fail_shards=[1])
    error = response.shards[1].error
    assert response.shards[1].status == shard_pb2.SHARD_STATUS_ERROR
    assert error.startswith("INTERNAL: ")
    assert ("RuntimeError: shard 1 was asked to fail" in error) == detailed(cluster)
    assert response.coverage.missing[0].reason == error
    root_log_has(cluster, response.request_id, "RuntimeError: shard 1 was asked to fail")


def test_unreachable_shard_says_what_to_do_without_addresses(client: Client, cluster: Deployment) -> None:
    cluster.kill("leaf-0-0")
    try:
        with pytest.raises(grpc.RpcError) as info:
            client.probe()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        details = info.value.details() or ""
        assert "missing: shard 0 (UNAVAILABLE" in details
        assert bool(ADDRESS.search(details)) == detailed(cluster), details
        if not detailed(cluster):
            assert "no replica could be reached: retry with backoff; if it lasts, check the shard's leaves" in details
        root_log_has(cluster, f"shard 0 UNAVAILABLE from {cluster.children['leaf-0-0'].address}")
    finally:
        cluster.revive("leaf-0-0")


def test_merge_down_hides_its_address(client: Client, cluster: Deployment) -> None:
    cluster.kill("merge")
    try:
        with pytest.raises(grpc.RpcError) as info:
            client.probe()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        details = info.value.details() or ""
        merge = cluster.children["merge"].address
        assert (merge in details) == detailed(cluster), details
        if not detailed(cluster):
            assert bool(ADDRESS.search(details)) is False, details
            found = re.fullmatch(
                r"the merge is unavailable \(UNAVAILABLE\): retry with backoff; the root's log has the detail "
                r"\(request ([0-9a-f]{32})\)",
                details,
            )
            assert found, details
            root_log_has(cluster, found[1], f"merge at {merge} failed with UNAVAILABLE")
    finally:
        cluster.revive("merge")


def test_probe_value_too_large_for_a_leaf_is_invalid_argument(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.probe(value=UINT64_MAX)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "value 18446744073709551615 is too large" in (info.value.details() or "")


def test_probe_sum_too_large_is_invalid_argument(client: Client, cluster: Deployment) -> None:
    # Every shard's answer fits a uint64 (value + 1, value + 2); their sum does not.
    with pytest.raises(grpc.RpcError) as info:
        client.probe(value=UINT64_MAX - SHARDS)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert "value 18446744073709551613 is too large: the sum over the shards is over the uint64 maximum" in details
    assert details.startswith("the merge rejected the request: ") != detailed(cluster)
