"""Our root against the naive baseline, on the same leaves, in one run.

    python -m loadtest.compare [--shards 4] [--concurrency 1 16 64] [--duration 10]

Starts the probe application (leaves, merge, our root) through the local
runtime, starts the naive root (loadtest.naive_root) on the same leaves and
merge, and drives each with the closed-loop generator at each concurrency,
alternating so both see the same machine state. Prints throughput and
percentiles, and the ratio ours / naive.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tomllib
from pathlib import Path

from loadtest.closed_loop import RunResult, run
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from root.runtime.spec import parse_deployment
from root.runtime.supervisor import Child, Deployment, free_port
from root.runtime.tomlwrite import dumps

PROBE_DIR = Path(__file__).resolve().parent.parent / "examples" / "probe"


def row(name: str, concurrency: int, result: RunResult) -> str:
    failures = sum(result.failures.values())
    return (
        f"| {name:<6} | {concurrency:>3} | {result.throughput:8.0f} | {result.percentile_ms(0.5):6.2f} | "
        f"{result.percentile_ms(0.99):6.2f} | {result.percentile_ms(0.999):6.2f} | {failures} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    document = {
        "root": {"listen": "127.0.0.1:0", "max_in_flight": 4096},
        "merge": {"command": ["{python}", "merge.py"]},
        "leaves": {"command": ["{python}", "leaf.py"], "shards": args.shards, "replicas": 1},
    }
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=1))
    with Deployment(parse_deployment(document, PROBE_DIR)) as dep:
        naive_doc = tomllib.loads((dep.run_dir / "root.toml").read_text())
        naive_doc["root"]["listen"] = f"127.0.0.1:{free_port()}"
        naive_config = dep.run_dir / "naive.toml"
        naive_config.write_text(dumps(naive_doc))
        naive = Child(
            "naive-root",
            [sys.executable, "-m", "loadtest.naive_root", "--config", str(naive_config)],
            {},
            PROBE_DIR,
            naive_doc["root"]["listen"],
            dep.run_dir / "naive.log",
        )
        naive.start()
        try:
            naive.wait_healthy(30)
            print(f"fan-out {args.shards}, probe leaves answering at once, {args.duration:g} s per run\n")
            print("| root | in flight | req/s | p50 ms | p99 ms | p99.9 ms | failures |")
            print("|---|---|---|---|---|---|---|")
            ratios = []
            for concurrency in args.concurrency:
                run(dep.root_address, request, concurrency, 1.0)  # warm up
                run(naive.address, request, concurrency, 1.0)
                ours = run(dep.root_address, request, concurrency, args.duration)
                base = run(naive.address, request, concurrency, args.duration)
                print(row("ours", concurrency, ours))
                print(row("naive", concurrency, base))
                ratios.append(
                    (
                        concurrency,
                        ours.throughput / base.throughput,
                        ours.percentile_ms(0.5) / base.percentile_ms(0.5),
                    )
                )
            print("\n| in flight | throughput ours/naive | p50 ours/naive |\n|---|---|---|")
            for concurrency, throughput, p50 in ratios:
                print(f"| {concurrency} | {throughput:.2f}x | {p50:.2f}x |")
        finally:
            naive.signal(signal.SIGTERM)
            if naive.proc is not None:
                naive.proc.wait(timeout=30)


if __name__ == "__main__":
    main()
