"""Graceful drain under load: SIGTERM to a leaf replica, a rolling restart of
every leaf, and SIGTERM to the root lose no in-flight request."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf import duration_pb2

from root.transport import RECONNECT_OPTIONS
from scatter.runtime import Deployment, check_health
from tests._cluster import Client, probe_cluster
from tests._procs import connected, wait_until

SHARDS = 2
FULL_SUM = sum(i + 1 for i in range(SHARDS))
# Long enough that SIGTERM lands while calls are in flight on every leaf.
WORK = duration_pb2.Duration(nanos=40_000_000)
# The root redials a restarted replica within its capped reconnect backoff, plus gRPC's 20 % jitter
# (doc/connection-backoff.md); the rest is slack for a busy machine.
RECONNECT_BOUND = dict(RECONNECT_OPTIONS)["grpc.max_reconnect_backoff_ms"] / 1000 * 1.2 + 5.0


@dataclass
class Load:
    """Requests sent continuously from a few threads until stopped."""

    address: str
    workers: int = 4
    results: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, code)
    _answered: list[int] = field(default_factory=list)  # per worker: requests ended
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, worker: int) -> None:
        client = Client(self.address)
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    _, merged, _ = client.probe(timeout=5.0, delay=WORK)
                    code = "OK" if merged.sum == FULL_SUM else "WRONG"
                except grpc.RpcError as exc:
                    code = exc.code().name
                self.results.append((start, time.monotonic(), code))
                self._answered[worker] += 1
        finally:
            client.close()

    def __enter__(self) -> Load:
        self._answered = [0] * self.workers
        self._threads = [threading.Thread(target=self._run, args=(w,)) for w in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def failures(self) -> list[tuple[float, float, str]]:
        return [r for r in self.results if r[2] != "OK"]

    def wait_warm(self) -> None:
        """Wait until every worker has had two answers: each one's connection is up and in use."""
        wait_until(lambda: min(self._answered) >= 2, timeout=20, what="every load worker answered twice")

    def wait_answered(self, count: int, since: float) -> None:
        """Wait until ``count`` requests started at or after ``since`` (monotonic) have ended."""
        wait_until(
            lambda: sum(start >= since for start, _, _ in self.results) >= count,
            timeout=20,
            what=f"{count} requests answered under load",
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployment]:
    # Restart crashed children fast: the rolling restart waits for each one.
    runtime = {"ready_timeout_ms": 30_000, "restart_backoff_ms": 100, "max_restart_backoff_ms": 200}
    with probe_cluster(shards=SHARDS, replicas=2, extra={"runtime": runtime}) as dep:
        yield dep


def wait_restarted(cluster: Deployment, name: str, old_pid: int | None, root_connected: bool = True) -> None:
    """Wait until ``name`` is back, SERVING, and (``root_connected``) the root holds a connection to it again."""
    child = cluster.children[name]
    wait_until(
        lambda: child.pid != old_pid and check_health(child.address) == "SERVING", timeout=20, what=f"{name} is back"
    )
    if not root_connected:
        return
    root_pid = cluster.children["root"].pid
    assert root_pid is not None
    wait_until(
        lambda: connected(root_pid, child.address), RECONNECT_BOUND, f"the root reconnected to the restarted {name}"
    )


def test_sigterm_to_a_leaf_under_load_loses_nothing(cluster: Deployment) -> None:
    with Load(cluster.root_address) as load:
        load.wait_warm()
        old = cluster.children["leaf-0-0"].pid
        cluster.kill("leaf-0-0", signal.SIGTERM, restart=True)
        assert cluster.children["leaf-0-0"].proc is not None
        wait_restarted(cluster, "leaf-0-0", old)
        load.wait_answered(8, since=time.monotonic())  # and the deployment keeps answering after it
    assert len(load.results) > 20
    assert not load.failures(), load.failures()[:5]


def test_rolling_restart_of_every_leaf_loses_nothing(cluster: Deployment) -> None:
    """As Kubernetes rolls a StatefulSet: the next replica is stopped as soon as the last one
    reports SERVING, whether or not the root has reconnected to it yet. The root watches each
    replica's health, and a stopping leaf keeps taking calls for its drain delay."""
    with Load(cluster.root_address) as load:
        for shard in range(SHARDS):
            for replica in range(2):
                name = f"leaf-{shard}-{replica}"
                old = cluster.children[name].pid
                cluster.kill(name, signal.SIGTERM, restart=True)
                wait_restarted(cluster, name, old, root_connected=False)
    assert len(load.results) > 50
    assert not load.failures(), load.failures()[:5]


def test_sigterm_to_the_root_finishes_in_flight_requests(cluster: Deployment) -> None:
    root = cluster.children["root"]
    with Load(cluster.root_address) as load:
        load.wait_warm()
        proc = root.proc  # the supervisor will start a new one; keep this one's handle
        assert proc is not None
        term_at = time.monotonic()
        root.signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # a drained root exits 0
    in_flight = [r for r in load.results if r[0] < term_at < r[1]]
    assert in_flight, "no request was in flight when SIGTERM arrived"
    assert all(code == "OK" for _, _, code in in_flight), in_flight
    assert all(code == "OK" for start, _, code in load.results if start < term_at)
    cluster.revive("root")
