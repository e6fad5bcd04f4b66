"""Metrics and the status page show live numbers from a running deployment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scatter.runtime import Deployment
from tests._cluster import Client, probe_cluster
from tests._http import fetch, sample


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployment]:
    with probe_cluster(shards=2, replicas=2) as dep:
        client = Client(dep.root_address)
        for value in range(20):
            client.probe(value=value)
        client.probe(min_coverage=0.0, fail_shards=[1])
        client.close()
        yield dep


def test_root_metrics_count_requests_and_shards(cluster: Deployment) -> None:
    text = fetch(cluster.children["root"].metrics_address, "/metrics")
    assert sample(text, "scatter_root_requests_total", code="OK") == 21
    assert sample(text, "scatter_root_shard_calls_total", shard="0") == 21
    assert sample(text, "scatter_root_shard_results_total", shard="1", status="ERROR") == 1
    assert sample(text, "scatter_root_shard_results_total", shard="1", status="OK") == 20
    assert sample(text, "scatter_root_request_duration_seconds_count") == 21
    assert sample(text, "scatter_root_coverage_ratio_bucket", le="0.5") == 1
    assert sample(text, "scatter_root_in_flight") == 0
    address = cluster.children["leaf-0-0"].address
    assert sample(text, "scatter_root_replica_ejected", shard="0", replica=address) == 0


def test_leaf_and_merge_metrics(cluster: Deployment) -> None:
    leaf_calls = sum(
        sample(
            fetch(cluster.children[f"leaf-1-{r}"].metrics_address, "/metrics"), "scatter_leaf_calls_total", outcome="ok"
        )
        for r in range(2)
    )
    assert leaf_calls >= 20
    merge = fetch(cluster.children["merge"].metrics_address, "/metrics")
    assert sample(merge, "scatter_merge_calls_total", outcome="ok") == 21
    assert sample(merge, "scatter_merge_call_duration_seconds_count") == 21


def test_status_page_shows_shards_and_replicas(cluster: Deployment) -> None:
    page = fetch(cluster.children["root"].metrics_address, "/")
    assert "<table>" in page
    for name in ("leaf-0-0", "leaf-0-1", "leaf-1-0", "leaf-1-1"):
        assert cluster.children[name].address in page
    assert "hedge rate" in page and "Requests: 21 (OK 21)" in page
