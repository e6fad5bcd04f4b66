"""Outlier ejection counts replica faults only: no client can eject a healthy replica.

Real root, merge and leaves. The two reproductions of the hostile-client
report (a deadline too short for the request's work; a request that makes
every leaf fail) are sent 100 times each and must eject nothing; a replica
that really hangs (SIGSTOP) or refuses connections (killed) must still be
ejected, polled for with a bound.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from scatter.runtime import Deployment
from tests._cluster import Client, ms, probe_cluster

SHARDS = 3


def _metrics(dep: Deployment) -> str:
    """The root's /metrics page."""
    url = f"http://{dep.children['root'].metrics_address}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def ejections(dep: Deployment) -> dict[tuple[str, str], float]:
    """(shard, replica address) -> ejections so far, from the root's /metrics."""
    text = _metrics(dep)
    found = {}
    for labels, value in re.findall(r"^scatter_root_replica_ejections_total\{(.*)\} (\S+)$", text, re.M):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        found[(named["shard"], named["replica"])] = float(value)
    assert len(found) == SHARDS * 2, text
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployment]:
    # Defaults for hedging and ejection: what is tested is the default behaviour.
    with probe_cluster(shards=SHARDS, replicas=2, root={"default_deadline_ms": 1000}) as dep:
        client = Client(dep.root_address)
        for _ in range(50):  # warm up channels and latency windows
            client.probe()
        client.close()
        yield dep


def test_short_client_deadlines_eject_nothing(cluster: Deployment) -> None:
    client = Client(cluster.root_address)
    try:
        for _ in range(100):
            with pytest.raises(grpc.RpcError) as caught:
                client.probe(timeout=0.06, delay=ms(100))  # work longer than the client allows
            assert caught.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
        assert set(ejections(cluster).values()) == {0.0}
        _, merged, _ = client.probe()
        assert merged.sum == sum(range(1, SHARDS + 1))
    finally:
        client.close()


def test_requests_that_fail_on_every_replica_eject_nothing(cluster: Deployment) -> None:
    client = Client(cluster.root_address)
    try:
        for _ in range(100):
            with pytest.raises(grpc.RpcError):
                client.probe(fail_shards=list(range(SHARDS)))
        assert set(ejections(cluster).values()) == {0.0}
    finally:
        client.close()


def _load(address: str, stop: threading.Event, workers: int = 4) -> list[threading.Thread]:
    def run() -> None:
        client = Client(address)
        try:
            while not stop.is_set():
                with contextlib.suppress(grpc.RpcError):
                    client.probe(timeout=2.0, min_coverage=0.0)
        finally:
            client.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    return threads


def _ejected_now(dep: Deployment, child: str) -> bool:
    text = _metrics(dep)
    key = (child.split("-")[1], dep.children[child].address)
    for labels, value in re.findall(r"^scatter_root_replica_ejected\{(.*)\} (\S+)$", text, re.M):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if (named["shard"], named["replica"]) == key:
            return float(value) == 1.0
    raise AssertionError(f"no scatter_root_replica_ejected for {key}: {text}")


def _wait_ejected(dep: Deployment, child: str, timeout: float) -> float:
    key = (child.split("-")[1], dep.children[child].address)
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if ejections(dep)[key] >= 1:
            return time.monotonic() - began
        time.sleep(0.05)
    state = "\n".join(line for line in _metrics(dep).splitlines() if "_replica_" in line and line[0] != "#")
    raise AssertionError(f"{child} ({key}) was not ejected within {timeout} s; the root's replica metrics:\n{state}")


@pytest.mark.parametrize("fault", ["hang", "kill"])
def test_a_faulty_replica_is_ejected_under_load_and_back_once_healthy(cluster: Deployment, fault: str) -> None:
    """Ejected within seconds (a suspect whose health check fails), and back long before its
    30 s ejection ends: a probe finds it SERVING once it is resumed or restarted."""
    child = "leaf-1-0" if fault == "hang" else "leaf-2-1"
    stop = threading.Event()
    threads = _load(cluster.root_address, stop)
    recovered = False
    try:
        if fault == "hang":
            cluster.pause(child)
        else:
            cluster.kill(child)
        _wait_ejected(cluster, child, timeout=10.0)  # within a second on a quiet machine; slack for a busy one
        if fault == "hang":
            cluster.resume(child)
        else:
            cluster.revive(child)
        recovered = True
        deadline = time.monotonic() + 10.0
        while _ejected_now(cluster, child):
            assert time.monotonic() < deadline, f"{child} still ejected 10 s after it recovered"
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        if not recovered:
            if fault == "hang":
                cluster.resume(child)
            else:
                cluster.revive(child)
