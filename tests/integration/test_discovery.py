"""Replica discovery on a running root: a shard scaled up and down by DNS and by a file, under load.

Real processes on 127.0.0.1: probe leaves, the probe merge, a root whose
shard 0 is discovered, and a real DNS server (dnslib) on 127.0.0.1 whose SRV
records the test changes while the root serves (SRV, because every leaf
listens on 127.0.0.1 and only its port tells them apart; A records work the
same with one address per pod). Shard 1 is static.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import tomli_w
from dnslib import QTYPE, RCODE, RR, SRV, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from tests._cluster import PROBE_DIR, Client
from tests._procs import Proc, start_healthy, start_process, wait_until

SRV_NAME = "_grpc._tcp.shard0.scatter.test."
TARGET = "leaves.scatter.test."
REFRESH_MS = 200
pytestmark = pytest.mark.timeout(120)


class Zone(BaseResolver):  # type: ignore[misc]
    """SRV records for shard 0's replicas (all at TARGET, 127.0.0.1), changed by the test."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.lock = threading.Lock()

    def set_ports(self, ports: list[int]) -> None:
        with self.lock:
            self.ports = list(ports)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name, kind = str(request.q.qname), QTYPE[request.q.qtype]
        with self.lock:
            ports = list(self.ports)
        if name == SRV_NAME and kind == "SRV":
            for port in ports:
                reply.add_answer(RR(name, QTYPE.SRV, rdata=SRV(0, 0, port, TARGET), ttl=1))
        elif name == TARGET and kind == "A":
            reply.add_answer(RR(name, QTYPE.A, rdata=A("127.0.0.1"), ttl=1))
        elif name not in (SRV_NAME, TARGET):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@contextlib.contextmanager
def dns_server(zone: Zone) -> Iterator[DNSServer]:
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=DNSLogger(log="-request,-reply,-truncated"))
    server.start_thread()
    try:
        yield server
    finally:
        stop_dns(server)


def stop_dns(server: DNSServer) -> None:
    """Stop answering and close the socket (dnslib's stop() leaves it open); idempotent."""
    if server.isAlive():
        server.stop()
    server.server.server_close()


def leaf(shard: int) -> Proc:
    return start_healthy(
        [sys.executable, str(PROBE_DIR / "leaf.py"), "--port", "0", "--shard-index", str(shard), "--shard-count", "2"]
    )


@dataclass
class Load:
    """Queries from a few threads; every answer's shard-0 replica and every failure, with times."""

    address: str
    answers: list[tuple[float, str]] = field(default_factory=list)  # (time, replica that answered shard 0)
    failures: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self) -> None:
        client = Client(self.address)
        try:
            while not self.stop.is_set():
                try:
                    response, merged, _ = client.probe(timeout=5.0)
                    assert merged.sum == 1 + 2
                    self.answers.append((time.monotonic(), response.shards[0].replica))
                except (grpc.RpcError, AssertionError) as exc:
                    self.failures.append((time.monotonic(), repr(exc)[:300]))
        finally:
            client.close()

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(3)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def replicas_since(self, since: float) -> set[str]:
        return {replica for at, replica in list(self.answers) if at >= since}


@dataclass
class Cluster:
    leaves0: list[Proc]
    leaf1: Proc
    merge: Proc
    tmp: Path
    root: Proc | None = None

    def root_config(self, shard0: dict[str, Any], discovery: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "root": {"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0", "default_deadline_ms": 2000},
            "merge": {"address": self.merge.address},
            "discovery": {"refresh_ms": REFRESH_MS, **(discovery or {})},
            "shards": [shard0, {"replicas": [self.leaf1.address]}],
        }

    def start_root(self, shard0: dict[str, Any], discovery: dict[str, Any] | None = None) -> Proc:
        path = self.tmp / "root.toml"
        path.write_text(tomli_w.dumps(self.root_config(shard0, discovery)))
        self.root = start_healthy([sys.executable, "-m", "root.server", "--config", str(path), "--log-level", "INFO"])
        return self.root

    def metric(self, name: str) -> float:
        assert self.root is not None
        found = re.search(r"status page on http://(\S+)/", self.root.output())
        assert found, self.root.output()
        with urllib.request.urlopen(f"http://{found.group(1)}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(float(v) for v in re.findall(rf'^{name}\{{shard="0"\}} (\S+)$', text, re.M))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    procs: list[Proc] = []
    try:
        leaves0 = [leaf(0) for _ in range(3)]
        procs += leaves0
        leaf1 = leaf(1)
        procs.append(leaf1)
        merge = start_process([sys.executable, str(PROBE_DIR / "merge.py"), "--port", "0"])
        procs.append(merge)
        c = Cluster(leaves0, leaf1, merge, tmp_path)
        yield c
    finally:
        if "c" in locals() and c.root is not None:
            c.root.stop()
        for proc in procs:
            proc.stop()


def port(proc: Proc) -> int:
    return int(proc.address.rpartition(":")[2])


def test_dns_scale_up_and_down_under_load_loses_nothing(cluster: Cluster) -> None:
    zone = Zone()
    a, b, c = cluster.leaves0
    zone.set_ports([port(a)])
    with dns_server(zone) as server:
        dns = f"127.0.0.1:{server.server.server_address[1]}"
        root = cluster.start_root({"dns": SRV_NAME.rstrip(".")}, {"dns_server": dns})
        with Load(root.address) as load:
            wait_until(lambda: len(load.answers) >= 20, 20, "answers before the scale-up")
            assert load.replicas_since(0) == {a.address}

            changed = time.monotonic()
            zone.set_ports([port(a), port(b), port(c)])  # 1 -> 3
            wait_until(
                lambda: load.replicas_since(changed) >= {a.address, b.address, c.address},
                10,
                "every new replica answered",
            )
            first_new = min(t for t, r in load.answers if t >= changed and r in (b.address, c.address))
            print(f"first answer from a new replica {first_new - changed:.3f} s after the DNS change")
            # One re-resolution period plus a health check (the bound), with slack for a busy machine.
            assert first_new - changed < REFRESH_MS / 1000 + 2.0

            zone.set_ports([port(b)])  # 3 -> 1
            shrunk = time.monotonic()
            time.sleep(REFRESH_MS / 1000 + 1.5)
            settled = time.monotonic()
            wait_until(lambda: len(load.replicas_since(settled)) >= 1 and len(load.answers) > 0, 10, "answers")
            time.sleep(1.0)
            assert load.replicas_since(settled) == {b.address}
            assert shrunk < settled

            stop_dns(server)  # a DNS outage: the last good set keeps serving
            failures_before = cluster.metric("scatter_root_discovery_failures_total")
            outage = time.monotonic()
            time.sleep(REFRESH_MS / 1000 * 5)
            assert load.replicas_since(outage) == {b.address}
        assert not load.failures, load.failures[:3]
    assert cluster.metric("scatter_root_discovery_failures_total") > failures_before
    assert cluster.metric("scatter_root_membership_changes_total") >= 3
    assert "keeping" in root.output()


def test_file_discovery_follows_the_file_and_keeps_the_last_good_set(cluster: Cluster) -> None:
    a, b, _ = cluster.leaves0
    listing = cluster.tmp / "shard0.replicas"
    listing.write_text(f"# shard 0\n{a.address}\n")
    root = cluster.start_root({"file": str(listing)}, {})
    with Load(root.address) as load:
        wait_until(lambda: len(load.answers) >= 20, 20, "answers")
        changed = time.monotonic()
        replaced = cluster.tmp / "shard0.new"
        replaced.write_text(f"{a.address}\n{b.address}\n")
        replaced.replace(listing)  # an atomic swap, as a ConfigMap update is
        wait_until(lambda: load.replicas_since(changed) >= {a.address, b.address}, 10, "b answered")
        listing.write_text("not an address at all\n")  # a bad edit: kept the last good set
        bad = time.monotonic()
        time.sleep(REFRESH_MS / 1000 * 4)
        assert load.replicas_since(bad) == {a.address, b.address}
    assert not load.failures, load.failures[:3]
    assert cluster.metric("scatter_root_discovery_failures_total") >= 1
    assert "not an address at all" in root.output() or "shard0.replicas:1" in root.output()


def test_sighup_and_a_changed_file_reload_the_config_and_a_bad_one_is_refused(cluster: Cluster) -> None:
    a, b, _ = cluster.leaves0
    root = cluster.start_root({"replicas": [a.address]})
    path = cluster.tmp / "root.toml"

    def rewrite(document: dict[str, Any]) -> None:
        staged = cluster.tmp / "root.toml.new"
        staged.write_text(tomli_w.dumps(document))
        staged.replace(path)

    with Load(root.address) as load:
        wait_until(lambda: len(load.answers) >= 20, 20, "answers")
        changed = time.monotonic()
        grown = cluster.root_config({"replicas": [a.address, b.address]})
        grown["hedging"] = {"max_attempts": 2}
        rewrite(grown)
        wait_until(lambda: "root config reloaded" in root.output(), 10, "the reload")
        wait_until(lambda: load.replicas_since(changed) >= {a.address, b.address}, 10, "b answered")
        assert "shard 0 replicas" in root.output() and "hedging" in root.output()

        bad = cluster.root_config({"replicas": [a.address, b.address]})
        bad["root"]["default_deadline_ms"] = -5
        rewrite(bad)
        wait_until(lambda: "refused" in root.output(), 10, "the refusal")
        assert "default_deadline_ms" in root.output()

        resharded = cluster.root_config({"replicas": [a.address, b.address]})
        resharded["shards"].append({"replicas": [cluster.leaf1.address]})
        rewrite(resharded)
        wait_until(lambda: "resharding needs a restart" in root.output(), 10, "the resharding refusal")

        moved = cluster.root_config({"replicas": [a.address, b.address]})
        moved["root"]["listen"] = "127.0.0.1:1"  # what the process was started with stays
        rewrite(moved)
        wait_until(lambda: "listen kept until a restart" in root.output(), 10, "the restart-only warning")

        root.send_signal(signal.SIGHUP)  # the same file again: only the restart-only warning again
        wait_until(lambda: "reloaded (SIGHUP): listen kept until a restart" in root.output(), 10, "the SIGHUP reload")
        after = time.monotonic()
        wait_until(lambda: load.replicas_since(after) >= {a.address, b.address}, 10, "both replicas still used")
    assert not load.failures, load.failures[:3]
    assert "Traceback" not in root.output()
