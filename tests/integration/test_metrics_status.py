"""Metrics and the status page show live numbers from a running deployment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from scatter.runtime import Deployment
from tests._cluster import Client, ms, probe_cluster
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


class _Timelines(HTMLParser):
    """The slow requests of the status page: each one's heading text and its attempt bars."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "div" and found.get("class") == "slow":
            self.requests.append({"text": "", "bars": [], "links": []})
        elif tag == "p" and self.requests and not self.requests[-1]["bars"]:
            self._in_heading = True
        elif tag == "rect" and found.get("class") == "attempt":
            self.requests[-1]["bars"].append(found)
        elif tag == "a" and self.requests:
            self.requests[-1]["links"].append(found.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._in_heading and self.requests:
            self.requests[-1]["text"] += data


def test_status_page_draws_the_slowest_requests_attempt_by_attempt() -> None:
    slow_replica = "shard0-replica0"  # SCATTER_REPLICA_ID of one replica of shard 0
    with probe_cluster(shards=2, replicas=2, root={"trace_url": "http://traces.example/trace/{trace_id}"}) as dep:
        client = Client(dep.root_address)
        try:
            ids = []
            for _ in range(30):
                response, _, _ = client.probe(replica_delays={slow_replica: ms(120)})
                ids.append((response.shards[0].hedge_won, response.request_id))
        finally:
            client.close()
        page = fetch(dep.children["root"].metrics_address, "/")
    parser = _Timelines()
    parser.feed(page)
    assert 1 <= len(parser.requests) <= 10, page[-2000:]
    elapsed = [float(re.search(r": ([\d.]+) ms", r["text"])[1]) for r in parser.requests]  # type: ignore[index]
    assert elapsed == sorted(elapsed, reverse=True)  # slowest first
    hedged = {rid for won, rid in ids if won}
    assert hedged, "no hedge won: the slow replica never got a first attempt"
    drawn = [r for r in parser.requests if any(rid in r["text"] for rid in hedged)]
    assert drawn, "no hedged request among the slowest"
    bars = drawn[0]["bars"]
    kinds = [(bar["data-kind"], bar["data-outcome"]) for bar in bars]
    assert ("first", "CANCELLED") in kinds and ("hedge", "OK") in kinds, kinds
    assert any(link.startswith("http://traces.example/trace/") for r in parser.requests for link in r["links"])
