"""``scatter bench`` end to end, briefly, plus the pure pieces of the load tests.

The smoke run starts the demo deployment and a short, tiny Locust run
through the real command and checks that it produced its report; every
scenario's ``--help`` is checked, cheaply, so a benchmark that no longer
parses its flags fails here rather than on the benchmark machine. No
performance thresholds: CI machines vary, and one run's numbers are not a
test. Locust (and gevent, which warns at import) only ever runs in a
subprocess; this process never imports it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from loadtest.bench import CLOSED_LOOP, main
from loadtest.deployments import probe_document, probe_spec
from loadtest.locust_scenarios import SCENARIOS
from loadtest.procfs import cpu_seconds, memory_kib, tree_cpu_seconds
from loadtest.queries import QueryStream, Vocabulary
from loadtest.tally import Histogram, Tally, summarise
from protos.demo_search.v1 import search_pb2
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc
from tests._procs import PYTHON, start_process, wait_healthy

REPO = Path(__file__).resolve().parents[2]
EVERY_SCENARIO = [*SCENARIOS, *CLOSED_LOOP]


def test_histogram_quantiles_are_within_half_a_percent() -> None:
    histogram = Histogram()
    values = [i / 1000 for i in range(1, 10_001)]  # 1 ms .. 10 s, uniform
    for value in values:
        histogram.add(value)
    for q in (0.5, 0.99, 0.999):
        exact = values[math.ceil(q * len(values)) - 1] * 1000
        assert histogram.quantile_ms(q) == pytest.approx(exact, rel=0.006)
    assert math.isnan(Histogram().quantile_ms(0.5))


def test_tally_round_trips_and_merges() -> None:
    a, b = Tally(), Tally()
    a.success(100.2, 4, 0.010, shard_calls=4, attempts=5, hedges_won=1, answered=4, total=4)
    a.failure(100.7, 4, 0.001, "RESOURCE_EXHAUSTED")
    b.success(100.5, 8, 0.020, shard_calls=4, attempts=4, hedges_won=0, answered=3, total=4)
    b.success(101.1, 8, 0.030, shard_calls=4, attempts=4, hedges_won=0, answered=4, total=4)
    a.merge(Tally.from_json(json.loads(json.dumps(b.to_json()))))
    assert sorted(a.seconds) == [100, 101]
    first = a.seconds[100]
    assert (first.ok, first.users_min, first.users_max, first.partial) == (2, 4, 8, 1)
    summary = summarise(a.seconds.values(), duration=2.0)
    assert summary.requests == 4 and summary.ok == 3
    assert summary.failures == {"RESOURCE_EXHAUSTED": 1}
    assert summary.throughput == 1.5
    assert summary.hedge_rate == pytest.approx(1 / 12)
    assert summary.mean_coverage == pytest.approx((1 + 0.75 + 1) / 3)


def test_query_streams_are_seeded_and_follow_the_weights() -> None:
    vocabulary = Vocabulary(("common", "rare"), np.array([0.9, 0.1]), documents=10)
    first = [QueryStream(vocabulary, seed=7).next_text() for _ in range(3)]
    again = [QueryStream(vocabulary, seed=7).next_text() for _ in range(3)]
    assert first == again
    stream = QueryStream(vocabulary, seed=1)
    texts = [stream.next_text() for _ in range(5000)]
    terms = [term for text in texts for term in text.split()]
    assert {len(text.split()) for text in texts} == {1, 2, 3}
    assert terms.count("common") / len(terms) == pytest.approx(0.9, abs=0.02)
    payload = search_pb2.SearchRequest()
    assert stream.next_request().payload.Unpack(payload) and payload.query and payload.k == 10


@pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust not installed (the loadtest extra)")
@pytest.mark.timeout(90)
def test_scatter_bench_steady_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCATTER_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # builds its own stdlib index: ~2 s
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "scatter.cli", "bench", "steady", "--duration", "8", "--users", "2", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| steady | 2 |" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "steady" and summary["reports"] == ["steady.html"]
    (row,) = summary["rows"]
    assert row["ok"] > 0 and set(row["percentiles_ms"]) == {"p50", "p95", "p99", "p99.9"}
    html = (out / "steady.html").read_text()
    assert "Root.Query" in html
    for name in ("steady_stats.csv", "steady_stats_history.csv", "steady-tally.json"):
        assert (out / name).stat().st_size > 0


@pytest.mark.timeout(60)
def test_scatter_bench_faults_runs_one_phase_end_to_end(tmp_path: Path) -> None:
    """One phase, briefly, through the real command: the tables print and the JSON has every part."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCATTER_")}
    env["PYTHONPATH"] = str(REPO)
    out = tmp_path / "faults.json"
    flags = ["--only", "replica-hung", "--steady-seconds", "0.5", "--fault-seconds", "1", "--after-seconds", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "scatter.cli", "bench", "faults", *flags, "--settle-seconds", "3", "--json", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| replica-hung | 1 | fault |" in proc.stdout and "| replica-hung | 1 | leaf-0-0 |" in proc.stdout
    document = json.loads(out.read_text())
    assert [w["window"] for w in document["windows"]] == ["steady", "fault", "after"]
    assert all(w["requests"] > 0 for w in document["windows"])
    (victim,) = document["victims"]
    assert victim["replica"] == "leaf-0-0" and victim["serving_after"] >= 1.0  # SIGCONT comes after the hang
    assert len(document["goals"]) == 2 and document["schedule"][0]["phase"] == "replica-hung"


def test_scatter_bench_rejects_an_unknown_scenario() -> None:
    assert main(["nonsense"]) == 2


def test_scatter_bench_lists_every_scenario_on_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scatter.cli", "bench", "--help"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name in ["steady", "ramp", "tail-locust", "fault", "overload", "overhead", "compare", "fanout", "tail",
                 "faults", "memory", "shed", "demo-scale", "demo-scorer", "demo-heavy", "sdk-call"]:  # fmt: skip
        assert len([line for line in lines if line.split()[:1] == [name]]) == 1, (name, proc.stdout)
    assert len(EVERY_SCENARIO) == 16


@pytest.mark.parametrize("name", EVERY_SCENARIO)
def test_every_scenario_parses_its_own_flags(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: scatter bench {name} ")


def test_the_probe_deployment_builder_takes_any_section() -> None:
    document = probe_document(
        2, 3, leaf_flags=["--seed", "1"], root={"max_in_flight": 8}, sections={"replicas": {"consecutive_failures": 0}}
    )
    assert document["root"] == {"listen": "127.0.0.1:0", "max_in_flight": 8}
    assert document["leaves"] == {"command": ["{python}", "leaf.py", "--seed", "1"], "shards": 2, "replicas": 3}
    assert document["replicas"] == {"consecutive_failures": 0}  # a section named like an argument
    spec = probe_spec(2, 3, sections={"tree": {"groups": 2, "combiner": {"command": ["{python}", "combine.py"]}}})
    assert (spec.shards, spec.replicas, spec.tree is not None) == (2, 3, True)
    assert (spec.directory / "leaf.py").is_file()


def test_procfs_reads_cpu_time_and_memory() -> None:
    before = cpu_seconds(os.getpid())
    end = time.process_time() + 0.1
    while time.process_time() < end:
        pass
    own = cpu_seconds(os.getpid())
    assert own >= before + 0.05
    assert tree_cpu_seconds(os.getpid()) >= own
    memory = memory_kib(os.getpid())
    assert set(memory) == {"VmRSS", "RssAnon", "RssFile", "VmHWM"} and memory["VmRSS"] > 1000


def test_the_open_loop_sends_at_its_rate_and_drops_beyond_its_bound() -> None:
    """Poisson arrivals at 100/s for 1 s; latency from the scheduled arrival; a bound that drops."""
    from loadtest.open_loop import run_open
    from tests._cluster import ms, probe_cluster

    with probe_cluster(shards=2, replicas=1) as dep:
        quick = root_pb2.QueryRequest()
        quick.payload.Pack(probe_pb2.ProbeRequest())
        result = run_open(dep.root_address, quick, rate=100.0, duration=1.0, seed=7)
        assert 60 <= len(result.latencies) <= 140  # Poisson(100): far outside 4 sigma otherwise
        assert not result.failures and result.shard_calls == 2 * len(result.latencies)
        assert np.all(np.diff(np.sort(result.arrivals)) >= 0) and result.arrivals.max() < 1.0
        slow = root_pb2.QueryRequest()
        slow.payload.Pack(probe_pb2.ProbeRequest(delay=ms(300)))
        bounded = run_open(dep.root_address, slow, rate=50.0, duration=0.5, seed=7, max_outstanding=2)
        assert 2 <= len(bounded.latencies) <= 4 and bounded.failures["dropped"] >= 10  # 2 at a time, 300 ms each
        assert bounded.latencies.min() >= 0.3  # from the scheduled arrival, at least the leaf's delay


def test_the_bare_root_parks_its_limit_and_grpc_refuses_the_rest() -> None:
    """The shed benchmark's floor: at its limit, grpc itself answers RESOURCE_EXHAUSTED."""
    proc = start_process([PYTHON, "-m", "loadtest.bare_root", "--max-in-flight", "1"])
    try:
        wait_healthy(proc.address)
        with grpc.insecure_channel(proc.address) as channel:
            stub = root_pb2_grpc.RootStub(channel)
            # Admitted and parked; refused instead if grpc still counted the health check of
            # wait_healthy (its count drops after the answer): then send it again.
            for _ in range(10):
                parked = stub.Query.future(root_pb2.QueryRequest(), timeout=20)
                time.sleep(1.0)
                if not parked.done():
                    break
            assert not parked.done(), parked.exception()
            with pytest.raises(grpc.RpcError) as refused:
                stub.Query(root_pb2.QueryRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert not parked.done()
            parked.cancel()
    finally:
        proc.stop()


def _run_demo_bench(tmp_path: Path, name: str, *flags: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``scatter bench NAME`` on a tiny corpus in ``tmp_path``, as a user runs it; its process and JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCATTER_")}
    env["PYTHONPATH"] = str(REPO)
    out = tmp_path / f"{name}.json"
    argv = [sys.executable, "-m", "scatter.cli", "bench", name, "--dir", str(tmp_path / "idx"), "--docs", "1500"]
    proc = subprocess.run(
        [*argv, *flags, "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


@pytest.mark.timeout(120)
def test_scatter_bench_demo_scorer_compares_block_sizes_on_the_same_rankings(tmp_path: Path) -> None:
    """A tiny corpus through the real command: one row per block size and mix, the same rankings, the JSON."""
    flags = ["--queries", "20", "--block-shifts", "2", "6", "--mixes", "zipf", "head"]
    proc, document = _run_demo_bench(tmp_path, "demo-scorer", *flags)
    runs = document["runs"]
    assert [(r["block_shift"], r["mix"]) for r in runs] == [(2, "zipf"), (2, "head"), (6, "zipf"), (6, "head")]
    assert all(0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] and len(r["slowest"]) == 3 for r in runs)
    assert "| 64 | head |" in proc.stdout


@pytest.mark.timeout(120)
def test_scatter_bench_demo_scale_reports_where_the_time_goes(tmp_path: Path) -> None:
    """A tiny corpus through the real command: every column, the floor, the goals table and the JSON."""
    flags = ["--shards", "2", "--queries", "20", "--mixes", "mid", "zipf", "--clients", "1"]
    proc, document = _run_demo_bench(tmp_path, "demo-scale", *flags)
    assert "| goal (issue #19) | value | target | met |" in proc.stdout
    runs = {(r["where"], r["mix"], r["clients"]): r for r in document["runs"]}
    unsharded = runs[("in-process unsharded", "mid", 1)]["breakdown_ms"]
    assert set(unsharded) == {"ranking", "hits and snippets"}
    assert "slowest shard" in runs[("in-process 2 shards", "zipf", 1)]["breakdown_ms"]
    root = runs[("root", "zipf", 1)]
    assert root["failures"] == 0 and root["breakdown_ms"]["root"] > 0
    assert root["breakdown_ms"]["slowest shard at the root"] <= root["breakdown_ms"]["root"]
    assert "client latency minus slowest shard alone" in root["breakdown_ms"]
    assert runs[("bare three hops", "-", 1)]["queries"] == 20
    # Served twice: a process per shard, and both shards in one process (ExecuteShards; --shards-per-process 1 4,
    # 4 capped at the 2 shards).
    batched = runs[("root, 2 shards per process", "mid", 1)]
    assert batched["failures"] == 0 and batched["queries"] == 20
    assert set(document["memory"]) == {"root", "root, 2 shards per process"}
    assert len(document["goals"]) == 13
    goal = next(g for g in document["goals"] if g["goal"].startswith("root p50 minus slowest shard"))
    assert goal["value"] is not None
    if importlib.util.find_spec("tantivy") is not None:
        assert runs[("tantivy in process", "mid", 8)]["queries"] == 20
        assert runs[("tantivy with documents", "zipf", 1)]["queries"] == 20
        overlap = document["overlap"]["zipf"]
        assert overlap["queries"] == 20 and 0.5 <= overlap["min"] <= overlap["mean"] <= 1.0
        missing = [g["goal"] for g in document["goals"] if g["value"] is None]
        assert missing == [  # this run had 1 client only
            "root q/s at 8 / tantivy q/s at 8 threads, zipf",
            "root, 2 shards per process q/s at 8 / tantivy q/s at 8 threads, zipf",
        ]
        assert document["tantivy_build"]["documents"] == 1500
