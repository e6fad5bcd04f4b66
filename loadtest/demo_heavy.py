"""Heavy demo queries through the root under a short deadline: answered in time, or stopped.

    flock /tmp/scatter-bench.lock scatter bench demo-heavy [--shards 4] [--replicas 2]
        [--repeat 10] [--deadline 1.0] [--seed 0] [--out FILE.json]

A benchmark, not a test (docs/benchmarks.md, "Demo search: heavy queries",
has the numbers; the tests check the behaviour). It serves the stdlib index
as ``scatter demo`` does (built or reused in the same cache, so its format
is the running code's), then sends each query of a fixed list ``--repeat``
times, one at a time, with a deadline of ``--deadline`` seconds:

- ``k=10`` and ``k=1000`` for one and two common words, the reference;
- 5,000 and 10,000 distinct terms drawn (seeded) from the index's terms,
  with ``k=10`` and ``k=1000``: the long queries of issue 17.

Per query it reports the client's latency of the answered calls (p50 and
max), the status codes of the others, and the leaves' CPU seconds from the
end of a call until every leaf is idle (``scatter_leaf_in_flight`` at 0 on
each leaf's metrics): the work a leaf does for nobody after a call has
ended. Leaf CPU is read from ``/proc/PID/stat`` (:mod:`loadtest.procfs`).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import grpc

from demo_search import DEMO_REPLICAS, DEMO_SHARDS, ensure_stdlib_index, read_document_frequencies
from loadtest.deployments import demo_spec, started
from loadtest.procfs import cpu_seconds
from protos.demo_search.v1 import search_pb2
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc
from scatter.runtime import Child

__all__ = ["main"]

IDLE_TIMEOUT_SECONDS = 120.0  # a leaf that runs on longer than this is reported, not waited for


def _in_flight(leaf: Child) -> float:
    with urllib.request.urlopen(f"http://{leaf.metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^scatter_leaf_in_flight (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _cpu_until_idle(leaves: list[Child]) -> float:
    """Leaf CPU seconds from now until no leaf has a handler running."""
    before = sum(cpu_seconds(leaf.pid or 0) for leaf in leaves)
    deadline = time.monotonic() + IDLE_TIMEOUT_SECONDS
    while any(_in_flight(leaf) for leaf in leaves) and time.monotonic() < deadline:
        time.sleep(0.01)
    return sum(cpu_seconds(leaf.pid or 0) for leaf in leaves) - before


def _search(stub: root_pb2_grpc.RootStub, query: str, k: int, deadline: float) -> float:
    """One Root.Query; the client's latency in seconds."""
    request = root_pb2.QueryRequest()
    request.payload.Pack(search_pb2.SearchRequest(query=query, k=k))
    started_at = time.perf_counter()
    stub.Query(request, timeout=deadline)
    return time.perf_counter() - started_at


def _queries(index: Path, seed: int) -> list[tuple[str, str, int]]:
    terms, _ = read_document_frequencies(index)
    rng = random.Random(seed)
    long = {n: " ".join(rng.sample(terms, n)) for n in (5000, 10000)}
    return [
        ("'json decode', k=10", "json decode", 10),
        ("'the', k=1000", "the", 1000),
        ("'return value', k=1000", "return value", 1000),
        ("5,000 terms, k=10", long[5000], 10),
        ("5,000 terms, k=1000", long[5000], 1000),
        ("10,000 terms, k=10", long[10000], 10),
        ("10,000 terms, k=1000", long[10000], 1000),
    ]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scatter bench demo-heavy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=DEMO_SHARDS)
    parser.add_argument("--replicas", type=int, default=DEMO_REPLICAS)
    parser.add_argument("--repeat", type=int, default=10, help="calls per query (default 10)")
    parser.add_argument("--deadline", type=float, default=1.0, help="seconds per call (default 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    index = ensure_stdlib_index(args.shards)
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="demo-heavy-") as tmp,
        started(demo_spec(index, shards=args.shards, replicas=args.replicas), Path(tmp)) as deployment,
        grpc.insecure_channel(deployment.root_address) as channel,
    ):
        stub = root_pb2_grpc.RootStub(channel)
        leaves = [child for name, child in deployment.children.items() if name.startswith("leaf-")]
        _search(stub, "json", 10, 10.0)  # warm: connections, page cache
        print(f"{'query':<22} {'p50 ms':>8} {'max ms':>8}  {'outcomes':<34} leaf CPU after the call ends")
        for name, query, k in _queries(index, args.seed):
            latencies, codes, after = [], Counter[str](), []
            for _ in range(args.repeat):
                try:
                    latencies.append(_search(stub, query, k, args.deadline) * 1e3)
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1
                after.append(_cpu_until_idle(leaves))
            row = {
                "query": name,
                "k": k,
                "p50_ms": statistics.median(latencies) if latencies else None,
                "max_ms": max(latencies) if latencies else None,
                "outcomes": dict(codes),
                "leaf_cpu_after_end_s_mean": statistics.fmean(after),
                "leaf_cpu_after_end_s_max": max(after),
            }
            results.append(row)
            p50 = f"{row['p50_ms']:8.1f}" if latencies else f"{'-':>8}"
            top = f"{row['max_ms']:8.1f}" if latencies else f"{'-':>8}"
            outcomes = ", ".join(f"{code} {n}" for code, n in sorted(codes.items()))
            cpu = f"mean {statistics.fmean(after):.3f} s, max {max(after):.2f} s"
            print(f"{name:<22} {p50} {top}  {outcomes:<34} {cpu}")
    if args.out is not None:
        setup = {"shards": args.shards, "replicas": args.replicas, "deadline_s": args.deadline, "repeat": args.repeat}
        args.out.write_text(json.dumps({"setup": setup, "results": results}, indent=2) + "\n", encoding="utf-8")
    return 0
