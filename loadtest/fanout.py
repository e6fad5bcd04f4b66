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

import tomli_w

from loadtest.closed_loop import run
from loadtest.processes import probe_dir
from loadtest.procfs import tree_cpu_seconds
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from scatter.runtime import Child, free_port

LEAF_PROCESSES = 4  # enough to keep two cores busy; more only adds context switches


def start(child: Child) -> Child:
    child.start()
    child.wait_healthy(30)
    return child


# Set by --root-source: run the roots from another checkout (a before/after comparison).
ROOT_ENV: dict[str, str] = {}


def start_root(name: str, config: dict[str, object], run_dir: Path) -> Child:
    path = run_dir / f"{name}.toml"
    path.write_text(tomli_w.dumps(config))
    listen = str(config["root"]["listen"])  # type: ignore[index]
    return start(
        Child(name, [sys.executable, "-m", "scatter.cli", "root", "--config", str(path)], ROOT_ENV, probe_dir(), listen,
              run_dir / f"{name}.log")
    )  # fmt: skip


def start_merge(name: str, script: str, run_dir: Path) -> Child:
    port = free_port()
    return start(
        Child(name, [sys.executable, script, "--port", str(port)], {}, probe_dir(), f"127.0.0.1:{port}",
              run_dir / f"{name}.log")
    )  # fmt: skip


@contextlib.contextmanager
def cluster(
    shards: int, workers: int, run_dir: Path, hedging: bool = True, groups: int = 0
) -> Iterator[tuple[str, list[Child]]]:
    """Leaves, merge and root for ``shards`` shards; with ``groups``, a two-level tree of roots."""
    children: list[Child] = []
    try:
        leaves = []
        for i in range(min(shards, LEAF_PROCESSES)):
            port = free_port()
            leaves.append(
                start(
                    Child(
                        f"leaf{i}", [sys.executable, "-m", "loadtest.multi_shard_leaf", "--port", str(port)], {},
                        probe_dir(), f"127.0.0.1:{port}", run_dir / f"leaf{i}.log",
                    )
                )
            )  # fmt: skip
        children += leaves
        merge = start_merge("merge", "merge.py", run_dir)
        children.append(merge)
        leaf_shards = [{"replicas": [leaves[s % len(leaves)].address]} for s in range(shards)]
        top_shards: list[dict[str, object]] = leaf_shards
        if groups:
            top_shards = []
            size = shards // groups
            for g in range(groups):
                combiner = start_merge(f"combiner{g}", "combine.py", run_dir)
                children.append(combiner)
                mid = start_root(
                    f"root{g}",
                    {
                        "root": {"listen": f"127.0.0.1:{free_port()}", "max_in_flight": 4096, "min_coverage": 0.0,
                                 "shard_offset": g * size, "total_shards": shards},
                        "hedging": {"enabled": hedging},
                        "merge": {"address": combiner.address},
                        "shards": leaf_shards[g * size : (g + 1) * size],
                    },
                    run_dir,
                )  # fmt: skip
                children.append(mid)
                top_shards.append({"replicas": [mid.address], "leaves": size})
        listen = f"127.0.0.1:{free_port()}"
        config = {
            "root": {"listen": listen, "workers": workers, "max_in_flight": 4096},
            "hedging": {"enabled": hedging},
            "merge": {"address": merge.address},
            "shards": top_shards,
        }
        children.append(start_root("root", config, run_dir))
        yield listen, children
    finally:
        for child in reversed(children):
            child.signal(signal.SIGTERM)
        for child in children:
            if child.proc is not None:
                child.proc.wait(timeout=30)


def root_cpu(root: Child) -> float:
    """CPU seconds of the root process and its worker processes."""
    assert root.pid is not None
    return tree_cpu_seconds(root.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fanouts", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tree-groups", type=int, default=0, help="also run each fan-out as a two-level tree")
    parser.add_argument(
        "--root-source", type=Path, help="run the root from this checkout (git worktree of an old commit)"
    )
    args = parser.parse_args()
    if args.root_source:
        ROOT_ENV["PYTHONPATH"] = str(args.root_source.resolve())
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=0))
    print(f"root workers: {args.workers}; {args.duration:g} s per run; leaves answer at once\n")
    print("| shape | fan-out | in flight | req/s | p50 ms | p99 ms | top root CPU us/request | us/shard call |")
    print("|---|---|---|---|---|---|---|---|")
    shapes = [0] + ([args.tree_groups] if args.tree_groups else [])
    with tempfile.TemporaryDirectory(prefix="scatter-fanout-") as tmp:
        for fanout in args.fanouts:
            for groups in shapes:
                if groups and fanout < 2 * groups:
                    continue
                shape = f"tree {groups}x{fanout // groups}" if groups else "flat"
                with cluster(fanout, args.workers, Path(tmp), groups=groups) as (address, children):
                    root = children[-1]
                    run(address, request, 4, 2.0)  # warm up
                    for concurrency in args.concurrency:
                        before = root_cpu(root)
                        result = run(address, request, concurrency, args.duration)
                        used = root_cpu(root) - before
                        per_request = used / max(1, len(result.latencies)) * 1e6
                        print(
                            f"| {shape} | {fanout} | {concurrency} | {result.throughput:.0f} | "
                            f"{result.percentile_ms(0.5):.2f} | {result.percentile_ms(0.99):.2f} | "
                            f"{per_request:.0f} | {per_request / fanout:.1f} |",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
