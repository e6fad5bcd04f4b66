"""The HTTP thread reads a snapshot taken on the event loop, never the live root.

Pinned here: the snapshot copies every counter and shares nothing mutable
with the loop; rendering the page and the metrics from it changes no policy
state (the hedge delays are those of a root nobody looked at); the metric
names are those docs/operations.md lists; ``call_on_loop`` runs the copy on
the loop's thread, and a loop that does not answer makes a 503, not a hang.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import dataclasses
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from protos.scatter_gather.v1 import shard_pb2
from root.config import RootConfig, ShardConfig
from root.metrics import root_families
from root.policies import FailureKind, HedgeBudget, HedgeBudgetConfig, LatencyWindow, LatencyWindowConfig, ShardCounters
from root.policies.admission import DEFAULT_MAX_IN_FLIGHT
from root.service import RootService
from root.snapshot import RootSnapshot, snapshot_reader, take_snapshot
from root.status_page import render
from scatter_common.metrics import FamiliesCollector, MetricsServer, PageUnavailable, call_on_loop
from tests._fake_transport import FakeReplica, fan_out, make_shard

REPO = Path(__file__).resolve().parents[2]
OK = shard_pb2.SHARD_STATUS_OK
T = TypeVar("T")


def with_service(body: Callable[[RootService], Awaitable[T]]) -> T:
    """Run ``body`` on a fresh loop with a two-shard root over in-memory replicas.

    Shard 0's first replica hangs, so every request there is won by a hedge;
    shard 1 answers at once.
    """

    async def main() -> T:
        budget = HedgeBudget(time.monotonic, HedgeBudgetConfig(min_per_second=100.0))
        shards = [
            make_shard(0, [FakeReplica("a:1", hang=True), FakeReplica("b:1")], budget),
            make_shard(1, [FakeReplica("c:1"), FakeReplica("d:1")], budget),
        ]
        config = RootConfig(
            shards=tuple(ShardConfig(tuple(r.address for r in s.replicas)) for s in shards),
            merge_address="127.0.0.1:1",
        )
        service = RootService(config, shards)
        try:
            return await body(service)
        finally:
            await service.close()

    return asyncio.run(main())


async def request(service: RootService) -> None:
    """What one successful Query leaves in the service's counters (the merge aside)."""
    assert await fan_out(service.shards) == [OK, OK]
    service.requests_by_code["OK"] = service.requests_by_code.get("OK", 0) + 1
    service.latency.observe(0.003)
    service.coverage.observe(1.0)


def test_snapshot_copies_every_counter() -> None:
    async def body(service: RootService) -> tuple[RootSnapshot, list[ShardCounters]]:
        for _ in range(3):
            await request(service)
        assert service.admission.try_acquire()  # one request in flight
        live = [dataclasses.replace(s.stats, outcomes=dict(s.stats.outcomes)) for s in service.shards]
        return take_snapshot(service), live

    snap, live = with_service(body)
    assert snap.requests_by_code == (("OK", 3),)
    assert (snap.in_flight, snap.shed, snap.max_in_flight) == (1, 0, DEFAULT_MAX_IN_FLIGHT)
    assert sum(snap.duration.counts) == 3 and snap.duration.total == pytest.approx(0.009)
    assert sum(snap.coverage.counts) == 3
    # Every ShardCounters counter, as it was when the snapshot was taken; a new
    # counter in ShardCounters cannot be forgotten here.
    for shard, stats in zip(snap.shards, live, strict=True):
        for f in dataclasses.fields(ShardCounters):
            value = getattr(stats, f.name)
            expected = tuple(sorted(value.items())) if f.name == "outcomes" else value
            assert getattr(shard, f.name) == expected, f.name
    hedged, fast = snap.shards
    assert hedged.calls == 3 and hedged.outcome(OK) == 3
    assert hedged.hedges_won == hedged.hedges_sent >= 1  # the first request's primary hung: its hedge won
    assert (fast.calls, fast.attempts, fast.hedges_sent) == (3, 3, 0)
    assert sum(hedged.duration.counts) == 3 and len(hedged.latencies) == 3
    assert [r.address for r in hedged.replicas] == ["a:1", "b:1"]
    assert [r.outstanding for r in hedged.replicas] == [0, 0]  # the hung primaries were cancelled


def _leaves(value: object, path: str = "snapshot") -> Iterator[tuple[str, object]]:
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        assert type(value).__dataclass_params__.frozen, f"{path}: {type(value).__name__} is not frozen"  # type: ignore[attr-defined]
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), f"{path}.{f.name}")
    else:
        yield path, value


def test_snapshot_shares_nothing_mutable_with_the_loop() -> None:
    async def body(service: RootService) -> tuple[RootSnapshot, RootSnapshot, RootSnapshot]:
        await request(service)
        before = take_snapshot(service)
        kept = copy.deepcopy(before)
        for _ in range(5):  # the loop keeps counting after the snapshot was taken
            await request(service)
        return before, kept, take_snapshot(service)

    before, kept, after = with_service(body)
    for path, leaf in _leaves(before):
        assert isinstance(leaf, int | float | str | bytes | type(None)), f"{path} is a {type(leaf).__name__}"
    assert before == kept  # unchanged by what the loop did since
    assert before.shards[0].calls == 1 and after.shards[0].calls == 6


def test_rendering_changes_no_policy_state() -> None:
    """The hedge delay reads a window's percentile; a page rendered in between must not move it.

    The window refreshes its sorted copy when 8 records have arrived since
    the last one (warm-up: min(64, 8)). A reader that refreshed it too (what
    the status page did) would leave the newest sample out of the next
    percentile; ``twin`` is the same window that nobody rendered.
    """

    async def body(service: RootService) -> None:
        window = service.shards[0].policy.latencies = LatencyWindow(LatencyWindowConfig(recompute_every=64))
        twin = LatencyWindow(LatencyWindowConfig(recompute_every=64))
        for w in (window, twin):
            for i in range(8):
                w.record(0.001 * (i + 1))
            assert w.percentile(1.0) == 0.008  # the hedge delay looks: a sorted copy of 8
            for _ in range(8):
                w.record(0.001)
        snap = take_snapshot(service)
        render(snap)
        list(root_families(snap))
        assert snap.shards[0].latencies.percentiles(1.0) == (0.008,)
        for w in (window, twin):
            w.record(0.5)  # the 9th record since the sorted copy: the next percentile refreshes
        assert window.percentile(1.0) == twin.percentile(1.0) == 0.5

    with_service(body)


def test_latency_samples_agree_with_the_window() -> None:
    """One nearest-rank definition: a fresh window and its copy give the same percentiles."""
    rng = random.Random(11)
    for size in (1, 2, 7, 100):
        w = LatencyWindow(LatencyWindowConfig(size=size, recompute_every=1))
        for _ in range(rng.randrange(1, 3 * size + 1)):
            w.record(rng.random())
        qs = (0.0, 0.01, 0.07, 0.5, 0.95, 0.99, 1.0)
        assert w.samples().percentiles(*qs) == tuple(w.percentile(q) for q in qs)
    assert LatencyWindow().samples().percentiles(0.5) == (None,)
    with pytest.raises(ValueError, match=r"percentile q must be in \[0, 1\], got 1.5"):
        LatencyWindow().samples().percentiles(1.5)


def test_pages_render_from_a_snapshot_alone() -> None:
    async def body(service: RootService) -> RootSnapshot:
        for _ in range(2):
            await request(service)
        chooser = service.shards[1].policy.chooser
        for _ in range(5):  # eject replica d:1
            chooser.start(1)
            chooser.finish(1, 0.001, False, FailureKind.UNAVAILABLE)
            chooser.fault(1)
        return take_snapshot(service)

    snap = with_service(body)
    page = render(snap).decode()
    assert "Requests: 2 (OK 2)" in page
    hedged = snap.shards[0]
    assert hedged.hedges_won >= 1
    assert f"{hedged.hedges_sent / hedged.calls:.1%} ({hedged.hedges_won} won)" in page
    assert re.search(r"ejected, probed; back in (29|30) s at the latest", page)
    text = generate_latest(registry(snap)).decode()
    assert f'scatter_root_hedges_won_total{{shard="0"}} {float(hedged.hedges_won)}' in text
    assert 'scatter_root_replica_ejected{replica="d:1",shard="1"} 1.0' in text


def registry(snap: RootSnapshot) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=True)
    reg.register(FamiliesCollector(lambda: root_families(snap)))
    return reg


def test_metric_names_are_the_documented_ones() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    section = doc.split("### Root", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"^\| `(scatter_root_\w+)` \|", section, re.MULTILINE))

    async def body(service: RootService) -> RootSnapshot:
        await request(service)
        return take_snapshot(service)

    snap = with_service(body)
    exposed = set(re.findall(r"^# TYPE (\S+) ", generate_latest(registry(snap)).decode(), re.MULTILINE))
    assert exposed == documented


def test_http_side_reads_only_the_snapshot() -> None:
    """root.metrics and root.status_page cannot reach live state: they import none of it."""
    for name in ("metrics", "status_page"):
        tree = ast.parse((REPO / "root" / f"{name}.py").read_text())
        ours = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "root"
        }
        ours |= {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.split(".")[0] == "root"
        }
        assert ours == {"root.snapshot"}, f"root/{name}.py imports {sorted(ours)}"


# --- call_on_loop: the bridge from the HTTP thread ----------------------------------


class LoopThread:
    """An event loop running in a thread of its own, as the root's is beside its HTTP thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    if not lt.loop.is_closed():
        lt.stop()


def test_call_on_loop_runs_on_the_loop_thread(loop_thread: LoopThread) -> None:
    assert call_on_loop(loop_thread.loop, threading.get_ident, 5.0) == loop_thread.thread.ident
    with pytest.raises(ZeroDivisionError):
        call_on_loop(loop_thread.loop, lambda: 1 // 0, 5.0)


def test_call_on_loop_gives_up_on_a_wedged_loop(loop_thread: LoopThread) -> None:
    release = threading.Event()
    loop_thread.loop.call_soon_threadsafe(release.wait, 5.0)  # blocks the loop
    ran = []
    with pytest.raises(PageUnavailable, match=r"did not answer within 0\.05 s"):
        call_on_loop(loop_thread.loop, lambda: ran.append(1), 0.05)
    release.set()
    assert call_on_loop(loop_thread.loop, lambda: "alive", 5.0) == "alive"
    assert ran == []  # skipped: nobody was waiting for it any more


def test_call_on_loop_on_a_closed_loop(loop_thread: LoopThread) -> None:
    loop_thread.stop()
    with pytest.raises(PageUnavailable, match="shutting down"):
        call_on_loop(loop_thread.loop, lambda: None, 1.0)


def test_call_on_loop_from_the_loop_itself_runs_at_once() -> None:
    # A collector registered from a coroutine is collected once at registration.
    async def main() -> int:
        return call_on_loop(asyncio.get_running_loop(), threading.get_ident, 0.01)

    assert asyncio.run(main()) == threading.get_ident()


def test_reader_and_server_answer_503_when_the_loop_does_not(loop_thread: LoopThread) -> None:
    async def build() -> RootService:
        budget = HedgeBudget(time.monotonic)
        shard = make_shard(0, [FakeReplica("a:1")], budget)
        config = RootConfig(shards=(ShardConfig(("a:1",)),), merge_address="127.0.0.1:1")
        return RootService(config, [shard])

    service = asyncio.run_coroutine_threadsafe(build(), loop_thread.loop).result(5)
    snapshot = snapshot_reader(service, loop_thread.loop, timeout=0.05)
    server = MetricsServer(registry_of(snapshot), {"/": lambda: ("text/html", render(snapshot()))})
    address = server.start("127.0.0.1:0")
    try:
        assert "Requests: 0 (none yet)" in fetch(address, "/")
        assert "scatter_root_in_flight 0.0" in fetch(address, "/metrics")
        release = threading.Event()
        loop_thread.loop.call_soon_threadsafe(release.wait, 5.0)
        for path in ("/", "/metrics"):
            with pytest.raises(urllib.error.HTTPError) as info:
                fetch(address, path)
            assert info.value.code == 503
            info.value.close()
        release.set()
        assert "Requests: 0" in fetch(address, "/")
    finally:
        server.stop()
        asyncio.run_coroutine_threadsafe(service.close(), loop_thread.loop).result(5)


def registry_of(snapshot: Callable[[], RootSnapshot]) -> CollectorRegistry:
    reg = CollectorRegistry()  # no auto_describe: registering would collect from this thread
    reg.register(FamiliesCollector(lambda: root_families(snapshot())))
    return reg


def fetch(address: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()
