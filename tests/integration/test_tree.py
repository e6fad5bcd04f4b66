"""Two-level trees: a root serving as a shard of a higher root."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from protos.scatter_gather.v1 import shard_pb2
from scatter.runtime import Deployment
from tests._cluster import Client, ms, probe_cluster, wait_until_whole

SHARDS = 6
GROUPS = 2
PARENT_RESERVE = 0.2  # the top root's merge reserve, in seconds (room for a busy machine)


@pytest.fixture(scope="module")
def flat() -> Iterator[Deployment]:
    with probe_cluster(shards=SHARDS, replicas=1) as dep:
        yield dep


@pytest.fixture(scope="module")
def tree() -> Iterator[Deployment]:
    # A lower root answers partial results (min_coverage 0) and keeps a reserve for its combiner and the trip up.
    # Its own default deadline is far longer than any parent's: only the deadline the parent sends bounds it.
    # Reserves are generous so a busy machine (CI shares its cores) still answers within them.
    lower = {"min_coverage": 0.0, "merge_reserve_ms": 300, "default_deadline_ms": 5000}
    tree = {"groups": GROUPS, "combiner": {"command": ["{python}", "combine.py"]}, "root": lower}
    top = {"merge_reserve_ms": PARENT_RESERVE * 1000}
    with probe_cluster(shards=SHARDS, replicas=1, root=top, extra={"tree": tree}) as dep:
        yield dep


def test_tree_has_a_root_per_group(tree: Deployment) -> None:
    assert {"root", "root-0", "root-1", "combiner-0", "combiner-1", "merge"} <= set(tree.children)


def test_tree_answers_like_the_flat_deployment(flat: Deployment, tree: Deployment) -> None:
    flat_client, tree_client = Client(flat.root_address), Client(tree.root_address)
    try:
        for value in (0, 5, 11):
            flat_response, flat_merged, _ = flat_client.probe(value=value)
            tree_response, tree_merged, _ = tree_client.probe(value=value)
            assert tree_merged.sum == flat_merged.sum == sum(i + 1 + value for i in range(SHARDS))
            assert (tree_response.coverage.total, tree_response.coverage.answered) == (SHARDS, SHARDS)
            assert len(tree_response.shards) == GROUPS  # the top root's direct shards are the lower roots
            assert all(report.status == shard_pb2.SHARD_STATUS_OK for report in tree_response.shards)
            assert flat_response.coverage == tree_response.coverage
    finally:
        flat_client.close()
        tree_client.close()


def test_partial_subtree_coverage_travels_up(tree: Deployment) -> None:
    client = Client(tree.root_address)
    try:
        # Shard 4 lives in the second group; that root answers with 2 of its 3 shards.
        response, merged, _ = client.probe(timeout=1.0, min_coverage=0.5, fail_shards=[4])
        assert (response.coverage.total, response.coverage.answered) == (SHARDS, SHARDS - 1)
        assert [(m.shard_index, m.status) for m in response.coverage.missing] == [(4, shard_pb2.SHARD_STATUS_ERROR)]
        assert merged.sum == sum(i + 1 for i in range(SHARDS) if i != 4)
        with pytest.raises(grpc.RpcError) as info:
            client.probe(timeout=1.0, fail_shards=[4])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shard 4 (ERROR" in info.value.details()
    finally:
        client.close()


def test_hung_subtree_is_cut_off_by_the_parent_deadline(tree: Deployment) -> None:
    client = Client(tree.root_address)
    try:
        response, merged, _ = client.probe(timeout=2.0, min_coverage=0.0, shard_delays={1: ms(5000)})
        # The first group's root got the parent's deadline, timed out on shard 1 itself and still
        # answered in time (its min_coverage is 0); a lower root on its own default deadline would
        # have been cut off by the parent, losing all three of its shards.
        assert response.shards[0].status == shard_pb2.SHARD_STATUS_OK
        # Coverage counts the leaf shards, and the hung one is marked TIMEOUT.
        assert (response.coverage.total, response.coverage.answered) == (SHARDS, SHARDS - 1)
        assert [(m.shard_index, m.status) for m in response.coverage.missing] == [(1, shard_pb2.SHARD_STATUS_TIMEOUT)]
        assert merged.sum == sum(i + 1 for i in range(SHARDS) if i != 1)
    finally:
        client.close()


def test_a_whole_subtree_down_counts_all_its_leaf_shards(tree: Deployment) -> None:
    client = Client(tree.root_address)
    tree.kill("root-1")
    try:
        response, merged, _ = client.probe(timeout=1.0, min_coverage=0.0)
        assert (response.coverage.total, response.coverage.answered) == (SHARDS, 3)
        assert [m.shard_index for m in response.coverage.missing] == [3, 4, 5]
        assert merged.sum == 1 + 2 + 3
    finally:
        tree.revive("root-1")
        wait_until_whole(client, SHARDS)
        client.close()


def test_a_hung_lower_root_is_cut_off_by_the_parent_deadline(tree: Deployment) -> None:
    client = Client(tree.root_address)
    # The top root must hold a live connection to root-0 first: a paused process accepts TCP but never
    # sends HTTP/2 SETTINGS, so a first connection would fail UNAVAILABLE instead of hanging.
    wait_until_whole(client, SHARDS)
    tree.pause("root-0")  # SIGSTOP: it holds its connections and never answers
    try:
        # An answer at all proves the parent gave up on the hung root before the client's deadline;
        # its report says when: at the parent's shard deadline, not earlier.
        response, merged, _ = client.probe(timeout=2.0, min_coverage=0.0)
        assert response.shards[0].latency.ToNanoseconds() / 1e9 >= 2.0 - PARENT_RESERVE - 0.05
        assert (response.coverage.total, response.coverage.answered) == (SHARDS, 3)
        assert [(m.shard_index, m.status) for m in response.coverage.missing] == [
            (i, shard_pb2.SHARD_STATUS_TIMEOUT) for i in range(3)
        ]
        assert response.shards[0].status == shard_pb2.SHARD_STATUS_TIMEOUT
        assert merged.sum == 4 + 5 + 6
    finally:
        tree.resume("root-0")
        wait_until_whole(client, SHARDS)
        client.close()


@pytest.fixture(scope="module")
def uneven_tree() -> Iterator[Deployment]:
    # Groups of 4 and 3 leaf shards; the top root stops waiting 50 ms after min_coverage is reached.
    lower = {"min_coverage": 0.0, "merge_reserve_ms": 100}
    tree = {"groups": 2, "combiner": {"command": ["{python}", "combine.py"]}, "root": lower}
    with probe_cluster(shards=7, replicas=1, root={"coverage_wait_ms": 50}, extra={"tree": tree}) as dep:
        yield dep


def test_coverage_wait_counts_leaf_shards_not_subtrees(uneven_tree: Deployment) -> None:
    client = Client(uneven_tree.root_address)
    try:
        # The 3-shard group answers first: 3 of 7 leaf shards is below min_coverage 0.5, so the
        # coverage wait must not start yet (counting subtrees, 1 of 2 would start it and then
        # skip the 4-shard group, failing the request with 3/7 although waiting answers 7/7).
        slow = {i: ms(300) for i in range(4)}
        response, merged, _ = client.probe(timeout=3.0, min_coverage=0.5, shard_delays=slow)
        assert (response.coverage.total, response.coverage.answered) == (7, 7)
        assert [report.status for report in response.shards] == [shard_pb2.SHARD_STATUS_OK] * 2
        assert merged.sum == sum(i + 1 for i in range(7))
    finally:
        client.close()
