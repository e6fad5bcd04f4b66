"""Our root against the naive baseline, on the same leaves, in one run.

    scatter bench compare [--shards 4] [--replicas 1] [--concurrency 1 16 64] [--duration 10] [--repeats 2]

Starts the probe application (leaves, merge, our root with every policy on:
admission, deadline budget, adaptive hedging under its budget, replica
choice, ejection, coverage) through the local runtime, starts the naive root
(:mod:`loadtest.naive_root`) on the same leaves and merge, and drives each
with the closed-loop generator (:mod:`loadtest.closed_loop`) at each
concurrency, alternating ours/naive ``--repeats`` times so both see the same
machine state. Prints throughput, percentiles and the root's CPU time per
request, then the ratios ours / naive (throughput: the sum over the repeats).

The generator is the asyncio closed loop rather than Locust on purpose: a
throughput ratio is only meaningful if the generator is not the bottleneck,
and Locust (a sync gRPC client under gevent, plus its statistics) costs more
CPU per call than one grpc.aio channel, on the same two cores as both roots.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.closed_loop import RunResult, run
from loadtest.deployments import probe_spec
from loadtest.processes import extra_root
from loadtest.procfs import cpu_seconds
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from scatter.runtime import Deployment

WARMUP_SECONDS = 1.0


@dataclass
class Measured:
    result: RunResult
    cpu_us_per_request: float


def row(name: str, concurrency: int, m: Measured) -> str:
    result = m.result
    failures = sum(result.failures.values())
    return (
        f"| {name:<6} | {concurrency:>3} | {result.throughput:8.0f} | {result.percentile_ms(0.5):6.2f} | "
        f"{result.percentile_ms(0.99):6.2f} | {result.percentile_ms(0.999):6.2f} | {m.cpu_us_per_request:6.0f} | "
        f"{failures} |"
    )


def measure(address: str, pid: int, request: root_pb2.QueryRequest, concurrency: int, duration: float) -> Measured:
    before = cpu_seconds(pid)
    result = run(address, request, concurrency, duration)
    used = cpu_seconds(pid) - before
    calls = len(result.latencies) + sum(result.failures.values())
    return Measured(result, used * 1e6 / calls if calls else float("nan"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scatter bench compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=1, help="replicas per shard (the naive root uses the first)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="ours/naive alternations per concurrency")
    parser.add_argument("--out", type=Path, help="results folder (default bench-results/compare-TIMESTAMP)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path("bench-results") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=1))
    rows: list[dict[str, Any]] = []
    print(f"scatter bench compare: results in {out.resolve()}", flush=True)
    with (
        Deployment(probe_spec(args.shards, args.replicas, root={"max_in_flight": 4096}), log_dir=out / "logs") as dep,
        extra_root(dep, "naive-root", lambda _: None, module="loadtest.naive_root") as naive,
    ):
        ours_pid, naive_pid = dep.children["root"].pid, naive.pid
        assert ours_pid is not None and naive_pid is not None
        print(
            f"\nfan-out {args.shards} x {args.replicas} replica(s), probe leaves answering at once, "
            f"{args.duration:g} s per run, {args.repeats} alternation(s)\n"
        )
        print("| root | in flight | req/s | p50 ms | p99 ms | p99.9 ms | root CPU us/req | failures |")
        print("|---|---|---|---|---|---|---|---|")
        for concurrency in args.concurrency:
            run(dep.root_address, request, concurrency, WARMUP_SECONDS)
            run(naive.address, request, concurrency, WARMUP_SECONDS)
            for repeat in range(args.repeats):
                ours = measure(dep.root_address, ours_pid, request, concurrency, args.duration)
                base = measure(naive.address, naive_pid, request, concurrency, args.duration)
                print(row("ours", concurrency, ours))
                print(row("naive", concurrency, base), flush=True)
                for name, m in (("ours", ours), ("naive", base)):
                    rows.append(
                        {
                            "root": name,
                            "concurrency": concurrency,
                            "repeat": repeat,
                            "throughput_rps": round(m.result.throughput, 1),
                            "p50_ms": round(m.result.percentile_ms(0.5), 3),
                            "p99_ms": round(m.result.percentile_ms(0.99), 3),
                            "p999_ms": round(m.result.percentile_ms(0.999), 3),
                            "cpu_us_per_request": round(m.cpu_us_per_request, 1),
                            "failures": dict(m.result.failures),
                        }
                    )
    ratios = []
    print("\n| in flight | throughput ours/naive | p50 ours/naive | p99 ours/naive | root CPU/req ours/naive |")
    print("|---|---|---|---|---|")
    for concurrency in args.concurrency:
        mine = [r for r in rows if r["concurrency"] == concurrency and r["root"] == "ours"]
        theirs = [r for r in rows if r["concurrency"] == concurrency and r["root"] == "naive"]

        def total(rs: list[dict[str, Any]], key: str) -> float:
            return float(sum(r[key] for r in rs))

        ratio = {
            "concurrency": concurrency,
            "throughput": total(mine, "throughput_rps") / total(theirs, "throughput_rps"),
            "p50": total(mine, "p50_ms") / total(theirs, "p50_ms"),
            "p99": total(mine, "p99_ms") / total(theirs, "p99_ms"),
            "cpu_per_request": total(mine, "cpu_us_per_request") / total(theirs, "cpu_us_per_request"),
        }
        ratios.append(ratio)
        print(
            f"| {concurrency} | {ratio['throughput']:.2f}x | {ratio['p50']:.2f}x | {ratio['p99']:.2f}x | "
            f"{ratio['cpu_per_request']:.2f}x |"
        )
    summary = {
        "scenario": "compare",
        "command": "scatter bench compare " + " ".join(argv or []),
        "shards": args.shards,
        "replicas": args.replicas,
        "duration": args.duration,
        "repeats": args.repeats,
        "rows": rows,
        "ratios": [{k: round(v, 3) for k, v in r.items()} for r in ratios],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nsummary: {(out / 'summary.json').resolve()}")
    return 0
