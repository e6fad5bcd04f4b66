"""The demo search at scale: build, memory, and latency through the root against one in-process index.

    flock /tmp/scatter-bench.lock scatter bench demo-scale [--dir /tmp/bench] [--docs 1000000]
        [--shards 8] [--replicas 1] [--shards-per-process 1 4] [--queries 500] [--clients 1 8]
        [--mixes mid zipf head] [--out FILE.json] [--no-tantivy] [--no-serve]

A benchmark, not a test (docs/benchmarks.md, "Demo search at scale", has the
numbers). Steps:

1. *Build* (or reuse) the synthetic corpus of ``--docs`` documents twice:
   ``--shards`` shards, and one shard (the unsharded reference). Each build is
   ``scatter demo index`` in a child process; its wall time and peak RSS
   (``ru_maxrss`` from ``wait4``) are kept next to the index in
   ``NAME.build.json``, so a reused index still reports how it was built. An
   index is reused only if it has the current format version.
2. *Queries*: seeded, ``--queries`` per mix, 1-3 terms each, drawn from the
   terms of the unsharded index by their corpus-wide document frequency
   (df). ``mid``, the realistic mix: terms with 0.01% <= df/N <= 1%, the
   specific words people type (in 1M documents: 100 to 10,000 matches per
   term). ``zipf``: terms with probability proportional to df (a random word
   of a random document), so most queries hold a head term that nearly
   every document contains. ``head``, the worst case: 3 of the 10 most
   frequent terms, every document matches. There is no stop-word list: the
   engine scores every term, sharded or not, and the mixes only choose what
   is asked.
3. *In process*: the same queries, one at a time, on the unsharded index
   and on the sharded index searched shard after shard in one process (the
   CPU a query costs across all shards), each shard timed alone (the
   slowest per query is kept). Phases: the shards' ``rank`` (scoring,
   pruning, counting and selection), timed in a second pass; the rest of
   the ``k``-hit search is the hits (snippets) and the merge.
   *Tantivy* (:mod:`loadtest.tantivy_ref`, the optional ``bench`` extra):
   the same documents, indexed once beside ours; p50/p99 at 1 thread, q/s at
   8 threads, and overlap@k of its top-k with ours (mean, min, identical);
   then *with documents*, 1 thread: each hit's stored document read and a
   snippet cut from it, the work our hits do (id, title, snippet).
4. *Through the root*: the sharded index served by the local runtime
   (``--shards`` x ``--replicas`` leaves, merge, root, the default root
   configuration, as ``scatter demo --index`` runs it); each leaf's resident
   memory from ``/proc/PID/status``; then the same queries with 1 and 8
   concurrent clients (the closed loop of :mod:`loadtest.closed_loop` on one
   ``grpc.aio`` channel: each client sends the next query of the list when
   its answer arrives), with the CPU time each process spent per query, from
   ``/proc/PID/stat`` (:mod:`loadtest.procfs`). Per query, from the
   QueryResponse: the root's latency and its slowest shard's, which split
   the client's time into the client-root hop, the slowest shard at the
   root (against that shard alone in process: the root-leaf hop and the
   wait for a core), and the root after the shards (merge call and root).
   Once per ``--shards-per-process`` value: 1 is a process per shard (the
   runs named ``root``); N > 1 has each leaf process serve N shards, which
   the root asks in one ExecuteShards call (``root, N shards per process``).
5. *The floor* (:func:`bare_three_hops`): the naive root over bare leaves
   and the probe merge, handlers that answer at once, 1 client.
6. *Goals*: issue 19's goals from these numbers, printed as a table and
   kept in the JSON (``goals``).

Needs nothing outside the installed package: the corpus is generated and
the indexes are built into ``--dir``.

The load generator shares the machine with the deployment; the load
average is recorded with every run so a busy machine shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demo_search import (
    FORMAT_VERSION,
    IndexFormatError,
    IndexSearcher,
    hit_to_proto,
    merge_results,
    read_document_frequencies,
    read_index_manifest,
)
from loadtest import closed_loop, tantivy_ref
from loadtest.deployments import demo_spec, probe_dir
from loadtest.fanout import start_merge
from loadtest.processes import processes
from loadtest.procfs import cpu_seconds, memory_kib
from protos.demo_search.v1 import search_pb2
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from scatter.runtime import Deployment, free_port

__all__ = ["MIXES", "build_or_reuse", "main", "make_queries"]

MIXES = ("mid", "zipf", "head")
MID_DF = (1e-4, 1e-2)  # the realistic mix: terms in 0.01% to 1% of the documents
HEAD_TERMS = 10  # the worst case draws from this many most frequent terms
WARM_UP_QUERIES = 50
QUERY_TIMEOUT = 10.0  # seconds: far above any answer here; a call that takes it is a failure


# --- build ------------------------------------------------------------------------------------------------------


@dataclass
class BuildRecord:
    path: str
    documents: int
    shards: int
    seconds: float
    peak_rss_mib: float
    bytes_on_disk: int
    postings: int
    terms: int
    command: str
    load_average: tuple[float, float, float]
    reused: bool = False


def index_path(directory: Path, docs: int, shards: int, seed: int) -> Path:
    return directory / f"syn{docs}-seed{seed}-{shards}shards-v{FORMAT_VERSION}"


def _is_current(path: Path) -> bool:
    try:
        read_index_manifest(path)
    except IndexFormatError:
        return False
    return True


def build_or_reuse(path: Path, *, docs: int, shards: int, seed: int) -> BuildRecord:
    """Build the synthetic index at ``path`` in a child process, or reuse a current one and its record."""
    record_path = path.with_name(path.name + ".build.json")
    if _is_current(path) and record_path.exists():
        record = BuildRecord(**json.loads(record_path.read_text()))
        record.reused = True
        return record
    argv = [sys.executable, "-m", "demo_search.cli", "index", "--corpus", "synthetic", "--docs", str(docs)]
    argv += ["--seed", str(seed), "--shards", str(shards), "--out", str(path), "--force"]
    print(f"bench: building {path} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"index build failed ({child.returncode}): {output}")
    manifest = read_index_manifest(path)
    record = BuildRecord(
        path=str(path),
        documents=manifest.documents,
        shards=manifest.shard_count,
        seconds=round(seconds, 1),
        peak_rss_mib=round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        bytes_on_disk=sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
        postings=manifest.postings,
        terms=manifest.terms,
        command="scatter demo index " + " ".join(argv[4:]),
        load_average=os.getloadavg(),
    )
    record_path.write_text(json.dumps(asdict(record), indent=2) + "\n")
    return record


# --- queries ----------------------------------------------------------------------------------------------------


def make_queries(index: Path, mix: str, count: int, seed: int) -> list[str]:
    """``count`` seeded queries of the ``mix`` (see the module docstring), from the unsharded ``index``."""
    terms, frequencies = read_document_frequencies(index)
    words = np.array(terms, dtype=object)
    df = frequencies.astype(np.float64)
    n = read_index_manifest(index).documents
    rng = np.random.default_rng([seed, MIXES.index(mix)])
    if mix == "mid":
        pool = np.flatnonzero((df >= MID_DF[0] * n) & (df <= MID_DF[1] * n))
        p = None
    elif mix == "zipf":
        pool, p = np.arange(len(df)), df / df.sum()
    elif mix == "head":
        pool, p = np.argsort(-df, kind="stable")[:HEAD_TERMS], None
    else:
        raise ValueError(f"unknown mix {mix!r}; choose from {MIXES}")
    queries = []
    for _ in range(count):
        size = 3 if mix == "head" else int(rng.integers(1, 4))
        queries.append(" ".join(words[rng.choice(pool, size=size, replace=mix != "head", p=p)]))
    return queries


# --- measuring --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    where: str  # "in-process unsharded", "in-process 8 shards", "root", "root, 4 shards per process"
    mix: str
    clients: int
    queries: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    qps: float
    load_average: tuple[float, float, float]
    failures: int = 0
    cpu_ms_per_query: dict[str, float] = field(default_factory=dict)
    extra_leaf_calls: float = 0.0
    # Where the time goes (medians over the queries, ms); see _print_breakdown for each key.
    breakdown_ms: dict[str, float] = field(default_factory=dict)


def _summarise(where: str, mix: str, clients: int, latencies: Sequence[float], seconds: float, **extra: Any) -> Run:
    ms = np.array(latencies) * 1000
    return Run(
        where=where,
        mix=mix,
        clients=clients,
        queries=len(ms),
        p50_ms=round(float(np.median(ms)), 2),
        p99_ms=round(float(np.quantile(ms, 0.99)), 2),
        mean_ms=round(float(ms.mean()), 2),
        qps=round(len(ms) / seconds, 1),
        load_average=os.getloadavg(),
        **extra,
    )


def in_process(
    searcher: IndexSearcher, where: str, mix: str, queries: list[str], k: int, slowest: list[float] | None = None
) -> Run:
    """The queries one at a time, shard after shard; ``slowest`` gets each query's slowest shard (s).

    Phases: ``ranking`` is each shard's ``rank`` (scoring, pruning,
    counting and selection, summed over the shards), timed in a second pass;
    ``hits and snippets`` is the rest of the search (building the hits, and
    the merge).
    """
    for query in queries[:WARM_UP_QUERIES]:
        searcher.search(query, k)
    latencies, scoring = [], []
    began = time.perf_counter()
    for query in queries:
        shard_times = []
        results = []
        for shard in searcher.shards:
            start = time.perf_counter()
            results.append(shard.search(query, k))
            shard_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        merge_results(results, k)
        latencies.append(sum(shard_times) + time.perf_counter() - start)
        if slowest is not None:
            slowest.append(max(shard_times))
    seconds = time.perf_counter() - began
    for query in queries:
        start = time.perf_counter()
        for shard in searcher.shards:
            shard.rank(query, k)
        scoring.append(time.perf_counter() - start)
    run = _summarise(where, mix, 1, latencies, seconds)
    score_ms = float(np.median(scoring)) * 1000
    run.breakdown_ms = {"ranking": round(score_ms, 2), "hits and snippets": round(run.p50_ms - score_ms, 2)}
    if slowest is not None:
        run.breakdown_ms["slowest shard"] = round(float(np.median(slowest[-len(queries) :])) * 1000, 2)
    return run


def tantivy_runs(
    path: Path, queries: dict[str, list[str]], k: int, ours: dict[str, list[list[int]]]
) -> tuple[list[Run], dict[str, Any]]:
    """Tantivy's p50/p99 at 1 thread and q/s at 8, and overlap@k of its top-k with ours, per mix."""
    from loadtest.tantivy_ref import TantivyIndex

    index = TantivyIndex(path)
    runs, overlap = [], {}
    for mix, mix_queries in queries.items():
        index.latencies(mix_queries[:WARM_UP_QUERIES], k)
        began = time.perf_counter()
        one = index.latencies(mix_queries, k)
        runs.append(_summarise("tantivy in process", mix, 1, one, time.perf_counter() - began))
        many, seconds = index.throughput(mix_queries, k, 8)
        runs.append(_summarise("tantivy in process", mix, 8, many, seconds))
        index.latencies(mix_queries[:WARM_UP_QUERIES], k, documents=True)
        began = time.perf_counter()
        docs = index.latencies(mix_queries, k, documents=True)
        runs.append(_summarise("tantivy with documents", mix, 1, docs, time.perf_counter() - began))
        shares, identical = [], 0
        for query, mine in zip(mix_queries, ours[mix], strict=True):
            theirs = index.top_numbers(query, k)
            shares.append(len(set(mine) & set(theirs)) / max(1, min(k, len(mine))))
            identical += theirs == mine
        overlap[mix] = {
            "mean": round(float(np.mean(shares)), 4),
            "min": round(float(np.min(shares)), 4),
            "identical": identical,
            "queries": len(mix_queries),
        }
        print(f"tantivy overlap@{k} {mix}: {overlap[mix]}", flush=True)
    return runs, overlap


def _requests(queries: list[str], k: int) -> list[root_pb2.QueryRequest]:
    requests = []
    for query in queries:
        request = root_pb2.QueryRequest()
        request.payload.Pack(search_pb2.SearchRequest(query=query, k=k))
        requests.append(request)
    return requests


def through_root(
    address: str,
    pids: dict[str, int],
    mix: str,
    queries: list[str],
    clients: int,
    k: int,
    slowest: list[float] | None = None,
) -> Run:
    """Closed loop through the root; per query, from the QueryResponse: the root's time and its slowest shard.

    ``slowest`` is each query's slowest shard searched alone in process (s), in query order.
    """
    requests = _requests(queries, k)
    closed_loop.run(address, requests[:WARM_UP_QUERIES], 1, timeout=QUERY_TIMEOUT)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own = time.process_time()
    order: list[tuple[float, float, float]] = []  # per answer: client latency, root's latency, slowest shard (s)

    def observe(_sent: float, latency: float, code: str, response: root_pb2.QueryResponse | None) -> None:
        if response is not None:
            shard = max((r.latency.ToTimedelta().total_seconds() for r in response.shards), default=0.0)
            order.append((latency, response.latency.ToTimedelta().total_seconds(), shard))

    result = closed_loop.run(address, requests, clients, timeout=QUERY_TIMEOUT, observe=observe)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    cpu = {
        "client": time.process_time() - own,
        "root": used.pop("root"),
        "merge": used.pop("merge"),
        "leaves": sum(used.values()),
    }
    per_query = {name: round(seconds_ * 1000 / len(queries), 2) for name, seconds_ in cpu.items()}
    breakdown: dict[str, float] = {}
    if order:
        client, root, shard = (np.array(column) * 1000 for column in zip(*order, strict=True))
        breakdown = {
            "client-root hop": float(np.median(client - root)),
            "root": float(np.median(root)),
            "slowest shard at the root": float(np.median(shard)),
            "root after the shards (merge call + root)": float(np.median(root - shard)),
        }
        if slowest is not None and clients == 1 and len(slowest) == len(client):
            alone = np.array(slowest) * 1000
            breakdown["slowest shard alone, in process"] = float(np.median(alone))
            breakdown["root-leaf hop + leaf contention"] = float(np.median(shard - alone))
            breakdown["client latency minus slowest shard alone"] = float(np.median(client - alone))
    run = _summarise(
        "root",
        mix,
        clients,
        result.latencies.tolist(),
        result.seconds,
        failures=sum(result.failures.values()),
        cpu_ms_per_query=per_query,
        # Leaf attempts beyond one per shard call: hedges and failovers, as a fraction.
        extra_leaf_calls=round(result.extra_calls, 4),
    )
    run.breakdown_ms = {name: round(ms, 2) for name, ms in breakdown.items()}
    return run


def bare_three_hops(shards: int, requests: int, pad_bytes: int) -> Run:
    """The floor: client -> naive root -> ``shards`` bare leaves in parallel -> the probe merge, 1 client.

    The naive root (:mod:`loadtest.naive_root`: ``asyncio.gather``, typed
    stubs, no policies) over one :mod:`loadtest.multi_shard_leaf` process per
    shard (bare ``grpc.aio``, each answer padded to ``pad_bytes``, the size
    of a demo shard's partial) and the probe merge (a trivial handler on the
    merge SDK). Every handler returns at once: what three gRPC hops cost here.
    """
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=0))
    with tempfile.TemporaryDirectory(prefix="demo-bench-floor-") as tmp, processes(probe_dir(), Path(tmp)) as group:
        leaves = []
        for i in range(shards):
            port = free_port()
            argv = [sys.executable, "-m", "loadtest.multi_shard_leaf", "--port", str(port)]
            leaves.append(group.start(f"leaf{i}", [*argv, "--pad-bytes", str(pad_bytes)], f"127.0.0.1:{port}"))
        merge = start_merge(group, "merge", "merge.py")
        listen = f"127.0.0.1:{free_port()}"
        config = {
            "root": {"listen": listen},
            "merge": {"address": merge.address},
            "shards": [{"replicas": [leaf.address]} for leaf in leaves],
        }
        group.start_root("root", config, "loadtest.naive_root")
        closed_loop.run(listen, [request] * WARM_UP_QUERIES, 1, timeout=QUERY_TIMEOUT)
        result = closed_loop.run(listen, [request] * requests, 1, timeout=QUERY_TIMEOUT)
    return _summarise("bare three hops", "-", 1, result.latencies.tolist(), result.seconds)


def partial_bytes(searcher: IndexSearcher, queries: list[str], k: int) -> int:
    """Median size of one shard's answer (a SearchPartial of ``k`` hits) for ``queries``."""
    sizes = [
        search_pb2.SearchPartial(hits=[hit_to_proto(h) for h in searcher.search(q, k).hits]).ByteSize() for q in queries
    ]
    return int(np.median(sizes)) if sizes else 0


# --- main -------------------------------------------------------------------------------------------------------


def _print_run(run: Run) -> None:
    cpu = " ".join(f"{name}={ms}" for name, ms in run.cpu_ms_per_query.items())
    if run.breakdown_ms:
        cpu += " | " + ", ".join(f"{name} {ms}" for name, ms in run.breakdown_ms.items())
    print(
        f"| {run.where:<22} | {run.mix:<4} | {run.clients} | {run.p50_ms:7.2f} | {run.p99_ms:7.2f} | "
        f"{run.qps:7.1f} | {cpu} | load {run.load_average[0]:.1f}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench demo-scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench"), help="where indexes live (default /tmp/bench)")
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument(
        "--shards-per-process",
        type=int,
        nargs="+",
        default=[1, 4],
        help="serve once per value: shards per leaf process (default 1 4; capped at --shards)",
    )
    parser.add_argument("--queries", type=int, default=500, help="queries per mix (default 500)")
    parser.add_argument("--query-seed", type=int, default=7)
    parser.add_argument("--mixes", nargs="+", choices=MIXES, default=list(MIXES))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--no-serve", action="store_true", help="only build and measure in process")
    parser.add_argument("--no-tantivy", action="store_true", help="skip the tantivy reference column")
    parser.add_argument("--out", type=Path, help="write every number as JSON here")
    args = parser.parse_args(argv)
    if min(args.shards_per_process) < 1:
        parser.error("--shards-per-process: every value must be >= 1")
    args.shards_per_process = sorted({min(n, args.shards) for n in args.shards_per_process})

    args.dir.mkdir(parents=True, exist_ok=True)
    sharded_path = index_path(args.dir, args.docs, args.shards, args.seed)
    single_path = index_path(args.dir, args.docs, 1, args.seed)
    builds = [
        build_or_reuse(path, docs=args.docs, shards=shards, seed=args.seed)
        for path, shards in ((sharded_path, args.shards), (single_path, 1))
    ]
    for build in builds:
        print(
            f"build {build.shards} shard(s): {build.seconds} s, peak RSS {build.peak_rss_mib} MiB, "
            f"{build.bytes_on_disk / 2**30:.2f} GiB, {build.postings:,} postings"
            + (" (reused; measured when built)" if build.reused else ""),
            flush=True,
        )
    queries = {mix: make_queries(single_path, mix, args.queries, args.query_seed) for mix in args.mixes}
    results: dict[str, Any] = {"builds": [asdict(b) for b in builds], "args": vars(args) | {"dir": str(args.dir)}}
    runs: list[Run] = []
    matches: dict[str, list[float]] = {}

    tantivy_path = single_path.with_name(single_path.name + tantivy_ref.INDEX_SUFFIX)
    if not args.no_tantivy and not tantivy_ref.available():
        print(f"bench: {tantivy_ref.INSTALL_HINT}; the tantivy column is skipped", file=sys.stderr, flush=True)
        args.no_tantivy = True
    if not args.no_tantivy:
        results["tantivy_build"] = tantivy_ref.build_or_reuse(tantivy_path, docs=args.docs, seed=args.seed)
        print(f"build tantivy: {results['tantivy_build']}", flush=True)

    single = IndexSearcher(single_path)
    ours: dict[str, list[list[int]]] = {}
    for mix, mix_queries in queries.items():
        runs.append(in_process(single, "in-process unsharded", mix, mix_queries, args.k))
        _print_run(runs[-1])
        totals = [single.search(q, 0).total_matches for q in mix_queries[:100]]
        matches[mix] = [float(np.median(totals)), float(np.max(totals))]
        ours[mix] = [[int(h.doc_id.rsplit("-", 1)[1]) for h in single.search(q, args.k).hits] for q in mix_queries]
    pad_bytes = partial_bytes(single, next(iter(queries.values()))[:50], args.k)
    del single
    sharded = IndexSearcher(sharded_path)
    slowest: dict[str, list[float]] = {mix: [] for mix in queries}
    for mix, mix_queries in queries.items():
        where = f"in-process {args.shards} shards"
        runs.append(in_process(sharded, where, mix, mix_queries, args.k, slowest[mix]))
        _print_run(runs[-1])
    del sharded
    results["matches_median_max"] = matches
    if not args.no_tantivy:
        tantivy, results["overlap"] = tantivy_runs(tantivy_path, queries, args.k, ours)
        for run in tantivy:
            _print_run(run)
        runs += tantivy

    if not args.no_serve:
        results["memory"] = serve_and_measure(args, sharded_path, queries, runs, slowest)
        runs.append(bare_three_hops(args.shards, args.queries, pad_bytes))
        runs[-1].breakdown_ms = {"leaf answer bytes": pad_bytes}
        _print_run(runs[-1])
    results["runs"] = [asdict(r) for r in runs]
    results["goals"] = goals(runs, args.shards, [served_label(n) for n in args.shards_per_process])
    print("\n| goal (issue #19) | value | target | met |\n|---|---|---|---|")
    for goal in results["goals"]:
        met = "n/a" if goal["met"] is None else ("yes" if goal["met"] else "no")
        print(f"| {goal['goal']} | {goal['value']} | {goal['target']} | {met} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def served_label(shards_per_process: int) -> str:
    """The ``where`` of the runs through the root with this many shards per leaf process."""
    return "root" if shards_per_process == 1 else f"root, {shards_per_process} shards per process"


def goals(runs: list[Run], shards: int, served: Sequence[str] = ("root",)) -> list[dict[str, Any]]:
    """Issue #19's goals from one run's numbers: value, target, met (None when a number is missing)."""

    def find(where: str, mix: str, clients: int = 1) -> Run | None:
        return next((r for r in runs if (r.where, r.mix, r.clients) == (where, mix, clients)), None)

    out: list[dict[str, Any]] = []

    def p50(run: Run | None) -> float | None:
        return run.p50_ms if run is not None else None

    def ratio(name: str, a: float | None, b: float | None, target: float, below: bool = True) -> None:
        value = round(a / b, 2) if a is not None and b else None
        met = None if value is None else (value <= target if below else value >= target)
        out.append({"goal": name, "value": value, "target": f"{'<=' if below else '>='} {target}", "met": met})

    for mix in ("mid", "zipf"):
        ours, theirs = find("in-process unsharded", mix), find("tantivy in process", mix)
        ratio(f"unsharded p50 / tantivy p50, {mix}", p50(ours), p50(theirs), 2.0)
        with_docs = find("tantivy with documents", mix)
        ratio(f"unsharded p50 / tantivy with documents p50, {mix}", p50(ours), p50(with_docs), 2.0)
    sharded, single = find(f"in-process {shards} shards", "mid"), find("in-process unsharded", "mid")
    ratio(f"{shards} shards in process / unsharded, mid p50", p50(sharded), p50(single), 1.5)
    for label in served:
        for mix in ("mid", "zipf"):
            root = find(label, mix)
            minus = root.breakdown_ms.get("client latency minus slowest shard alone") if root else None
            floor = find("bare three hops", "-")
            ratio(f"{label} p50 minus slowest shard / bare 3 hops, {mix}", minus, p50(floor), 1.5)
        root, single = find(label, "zipf"), find("in-process unsharded", "zipf")
        ratio(f"{label} p50 / unsharded p50, zipf", p50(root), p50(single), 1.0)
        root8, tantivy8 = find(label, "zipf", 8), find("tantivy in process", "zipf", 8)
        ratio(
            f"{label} q/s at 8 / tantivy q/s at 8 threads, zipf",
            root8.qps if root8 else None,
            tantivy8.qps if tantivy8 else None,
            0.25,
            False,
        )
    return out


def serve_and_measure(
    args: argparse.Namespace,
    index: Path,
    queries: dict[str, list[str]],
    runs: list[Run],
    slowest: dict[str, list[float]],
) -> dict[str, Any]:
    """Each ``--shards-per-process`` deployment in turn: its memory, and the runs through its root."""
    return {served_label(n): serve_one(args, index, queries, runs, slowest, n) for n in args.shards_per_process}


def serve_one(
    args: argparse.Namespace,
    index: Path,
    queries: dict[str, list[str]],
    runs: list[Run],
    slowest: dict[str, list[float]],
    shards_per_process: int,
) -> dict[str, Any]:
    memory: dict[str, Any] = {}
    spec = demo_spec(index, shards=args.shards, replicas=args.replicas, shards_per_process=shards_per_process)
    label = served_label(shards_per_process)
    with tempfile.TemporaryDirectory(prefix="demo-bench-") as tmp:
        started = time.perf_counter()
        with Deployment(spec, log_dir=Path(tmp, "logs")) as deployment:
            memory["start_seconds"] = round(time.perf_counter() - started, 1)
            pids = {name: child.pid for name, child in deployment.children.items() if child.pid is not None}
            memory["after_start"] = {name: memory_kib(pid) for name, pid in pids.items()}
            print(f"{label}: deployment up in {memory['start_seconds']} s; memory (KiB):", flush=True)
            for name, kib in memory["after_start"].items():
                print(f"  {name}: {kib}", flush=True)
            for mix, mix_queries in queries.items():
                for clients in args.clients:
                    address = deployment.root_address
                    run = through_root(address, pids, mix, mix_queries, clients, args.k, slowest[mix])
                    run.where = label
                    runs.append(run)
                    _print_run(runs[-1])
            memory["after_queries"] = {name: memory_kib(pid) for name, pid in pids.items()}
            for name, kib in memory["after_queries"].items():
                print(f"  {name}: {kib}", flush=True)
    return memory
