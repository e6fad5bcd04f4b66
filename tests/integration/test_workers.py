"""A multi-process root: N workers share one port (SO_REUSEPORT) and all serve."""

from __future__ import annotations

import signal

from root.server import worker_metrics_address
from tests._cluster import Client, probe_cluster
from tests._http import fetch, sample


def test_worker_metrics_address() -> None:
    assert worker_metrics_address("127.0.0.1:9100", 0) == "127.0.0.1:9100"
    assert worker_metrics_address("127.0.0.1:9100", 2) == "127.0.0.1:9102"
    assert worker_metrics_address("127.0.0.1:0", 1) == "127.0.0.1:0"


def test_two_workers_share_the_port_and_drain() -> None:
    with probe_cluster(shards=2, replicas=1, root={"workers": 2}) as dep:
        for value in range(40):  # a new connection each time: the kernel spreads them over the workers
            client = Client(dep.root_address)
            _, merged, _ = client.probe(value=value)
            assert merged.sum == 2 * value + 3
            client.close()
        root = dep.children["root"]
        served = [
            sample(
                fetch(worker_metrics_address(root.metrics_address, w), "/metrics"),
                "scatter_root_requests_total",
                code="OK",
            )
            for w in range(2)
        ]
        assert sum(served) == 40 and min(served) > 0, served
        proc = root.proc
        assert proc is not None
        dep.kill("root", signal.SIGTERM)
        assert proc.returncode == 0
