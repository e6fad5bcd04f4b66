"""``scatter bench demo-scorer``: the demo's ranking alone, per block size, to read its tail.

    flock /tmp/scatter-bench.lock scatter bench demo-scorer [--dir /tmp/bench] [--docs 1000000]
        [--block-shifts 6 8] [--mixes mid zipf head] [--queries 300] [-k 10] [--out FILE.json]

What it measures: :meth:`demo_search.search.ShardSearcher.rank` (scoring,
pruning, counting and selection; no hits) on the unsharded synthetic index
of ``scatter bench demo-scale`` (built or reused the same way, in the same
``--dir``), one query at a time, each query's second run (the first warms
the pages of its postings). p50, p99, mean and max per mix, and the three
slowest queries of each mix. The zipf mix's mean is its tail: a few
queries of frequent terms cost 10-100x the median when pruning fails.

Side by side in one run: one searcher per ``--block-shifts`` value
(blocks of ``2 ** shift`` documents; the default is the searcher's
``BLOCK_SHIFT`` beside 8, the size before it was measured), loaded in turn,
on the same queries. Rankings are exact whatever the block size; the run
checks that every size returns the same top k as the first.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from demo_search import BLOCK_SHIFT, IndexSearcher, ShardSearcher
from loadtest.demo_scale import MIXES, build_or_reuse, index_path, make_queries

__all__ = ["main", "measure"]


def measure(
    searcher: ShardSearcher, queries: list[str], k: int
) -> tuple[dict[str, float], dict[str, float], list[list[int]]]:
    """Per-query ``rank`` times (each query's second run): p50, p99, mean, max in ms; the three slowest
    queries and their ms; and the rankings."""
    times, rankings = [], []
    for query in queries:
        searcher.rank(query, k)
        start = time.perf_counter()
        ranking = searcher.rank(query, k)
        times.append(time.perf_counter() - start)
        rankings.append(ranking.docs)
    ms = np.array(times) * 1000
    stats = {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "max_ms": round(float(ms.max()), 3),
    }
    slowest = np.argsort(-ms)[:3]
    return stats, {queries[i]: round(float(ms[i]), 2) for i in slowest}, rankings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench demo-scorer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench"), help="where indexes live (default /tmp/bench)")
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    parser.add_argument(
        "--block-shifts",
        type=int,
        nargs="+",
        default=sorted({BLOCK_SHIFT, 8}),
        help=f"blocks of 2**N documents, one searcher each (default {BLOCK_SHIFT} and 8)",
    )
    parser.add_argument("--queries", type=int, default=300, help="queries per mix (default 300)")
    parser.add_argument("--query-seed", type=int, default=7)
    parser.add_argument("--mixes", nargs="+", choices=MIXES, default=list(MIXES))
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write every number as JSON here")
    args = parser.parse_args(argv)
    if not all(0 <= shift <= 20 for shift in args.block_shifts):
        parser.error("--block-shifts: every value must be in [0, 20]")

    args.dir.mkdir(parents=True, exist_ok=True)
    path = index_path(args.dir, args.docs, 1, args.seed)
    build_or_reuse(path, docs=args.docs, shards=1, seed=args.seed)
    queries = {mix: make_queries(path, mix, args.queries, args.query_seed) for mix in args.mixes}
    results: dict[str, object] = {"args": vars(args) | {"dir": str(args.dir)}, "load_average": os.getloadavg()}
    runs: list[dict[str, object]] = []
    first: dict[str, list[list[int]]] = {}
    print(
        "| blocks of | mix | p50 ms | p99 ms | mean ms | max ms | slowest queries (ms) |\n|---|---|---|---|---|---|---|"
    )
    for shift in args.block_shifts:
        (searcher,) = IndexSearcher(path, block_shift=shift).shards
        for mix, mix_queries in queries.items():
            stats, slowest, rankings = measure(searcher, mix_queries, args.k)
            if first.setdefault(mix, rankings) != rankings:
                raise SystemExit(f"blocks of {1 << shift}: a {mix} ranking differs from the first size's")
            runs.append({"block_shift": shift, "mix": mix, **stats, "slowest": slowest})
            names = ", ".join(f"{q!r} {t}" for q, t in slowest.items())
            print(
                f"| {1 << shift} | {mix} | {stats['p50_ms']} | {stats['p99_ms']} | {stats['mean_ms']} "
                f"| {stats['max_ms']} | {names} |",
                flush=True,
            )
        del searcher
    results["runs"] = runs
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0
