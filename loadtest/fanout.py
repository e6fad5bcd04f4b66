"""Fan-out benchmark: one root over 1 to 256 shards on this machine.

    python -m loadtest.fanout [--fanouts 1 4 16 64 256] [--concurrency 1 8] [--duration 10] [--workers 1]

Shards are served by a few light multi-shard leaf processes
(loadtest.multi_shard_leaf; the shard index travels in the request), the
probe merge sums the partials, and the closed-loop generator drives the root.
Prints throughput, p50/p99 and the root's CPU time per request and per
shard call (from /proc, all of the root's threads and workers included).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loadtest.closed_loop import run
from loadtest.overhead import cpu_seconds
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from root.runtime.supervisor import Child, free_port
from root.runtime.tomlwrite import dumps

PROBE_DIR = Path(__file__).resolve().parent.parent / "examples" / "probe"
LEAF_PROCESSES = 4  # enough to keep two cores busy; more only adds context switches


def start(child: Child) -> Child:
    child.start()
    child.wait_healthy(30)
    return child


@contextlib.contextmanager
def cluster(shards: int, workers: int, run_dir: Path, hedging: bool = True) -> Iterator[tuple[str, list[Child]]]:
    children: list[Child] = []
    try:
        leaves = []
        for i in range(min(shards, LEAF_PROCESSES)):
            port = free_port()
            leaves.append(
                start(
                    Child(
                        f"leaf{i}", [sys.executable, "-m", "loadtest.multi_shard_leaf", "--port", str(port)], {},
                        PROBE_DIR, f"127.0.0.1:{port}", run_dir / f"leaf{i}.log",
                    )
                )
            )  # fmt: skip
        children += leaves
        merge_port = free_port()
        merge = Child(
            "merge", [sys.executable, "merge.py", "--port", str(merge_port)], {}, PROBE_DIR,
            f"127.0.0.1:{merge_port}", run_dir / "merge.log",
        )  # fmt: skip
        children.append(start(merge))
        listen = f"127.0.0.1:{free_port()}"
        config = {
            "root": {"listen": listen, "workers": workers, "max_in_flight": 4096},
            "hedging": {"enabled": hedging},
            "merge": {"address": merge.address},
            "shards": [{"replicas": [leaves[s % len(leaves)].address]} for s in range(shards)],
        }
        path = run_dir / f"root-{shards}.toml"
        path.write_text(dumps(config))
        root = Child("root", [sys.executable, "-m", "root.cli", "root", "--config", str(path)], {}, PROBE_DIR, listen,
                     run_dir / "root.log")  # fmt: skip
        children.append(start(root))
        yield listen, children
    finally:
        for child in reversed(children):
            child.signal(signal.SIGTERM)
        for child in children:
            if child.proc is not None:
                child.proc.wait(timeout=30)


def root_cpu(root: Child) -> float:
    """CPU seconds of the root process and its worker processes."""
    import os

    assert root.pid is not None
    total = cpu_seconds(root.pid)
    for task in Path(f"/proc/{root.pid}/task").iterdir():
        children = Path(f"/proc/{root.pid}/task/{task.name}/children")
        if children.exists():
            for pid in children.read_text().split():
                with contextlib.suppress(FileNotFoundError):
                    total += cpu_seconds(int(pid))
    del os
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fanouts", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=0))
    print(f"root workers: {args.workers}; {args.duration:g} s per run; leaves answer at once\n")
    print("| fan-out | in flight | req/s | p50 ms | p99 ms | root CPU us/request | root CPU us/shard call |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="scatter-fanout-") as tmp:
        for fanout in args.fanouts:
            with cluster(fanout, args.workers, Path(tmp)) as (address, children):
                root = children[-1]
                run(address, request, 4, 2.0)  # warm up
                for concurrency in args.concurrency:
                    before = root_cpu(root)
                    result = run(address, request, concurrency, args.duration)
                    used = root_cpu(root) - before
                    per_request = used / max(1, len(result.latencies)) * 1e6
                    print(
                        f"| {fanout} | {concurrency} | {result.throughput:.0f} | {result.percentile_ms(0.5):.2f} | "
                        f"{result.percentile_ms(0.99):.2f} | {per_request:.0f} | {per_request / fanout:.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
