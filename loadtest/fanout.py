"""Fan-out benchmark: one root over 1 to 256 shards on this machine.

    scatter bench fanout [--fanouts 1 4 16 64 256] [--concurrency 1 8] [--duration 10] [--workers 1]
        [--tree-groups G] [--root-source CHECKOUT]

Shards are served by a few light multi-shard leaf processes
(loadtest.multi_shard_leaf; the shard index travels in the request), the
probe merge sums the partials, and the closed-loop generator drives the root.
Prints throughput, p50/p99 and the root's CPU time per request and per
shard call (from /proc, all of the root's threads and workers included).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from loadtest.closed_loop import run
from loadtest.deployments import probe_dir
from loadtest.processes import Processes, processes
from loadtest.procfs import tree_cpu_seconds
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from scatter.runtime import Child, free_port

LEAF_PROCESSES = 4  # enough to keep two cores busy; more only adds context switches


def start_merge(group: Processes, name: str, script: str) -> Child:
    port = free_port()
    return group.start(name, [sys.executable, script, "--port", str(port)], f"127.0.0.1:{port}")


@contextlib.contextmanager
def cluster(
    shards: int,
    workers: int,
    run_dir: Path,
    hedging: bool = True,
    groups: int = 0,
    root_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, Child]]:
    """Leaves, merge and root for ``shards`` shards; with ``groups``, a two-level tree of roots.

    Yields the top root's address and process. ``root_env`` is the roots' environment
    (``--root-source`` runs them from another checkout).
    """
    with processes(probe_dir(), run_dir) as group:
        leaves = []
        for i in range(min(shards, LEAF_PROCESSES)):
            port = free_port()
            argv = [sys.executable, "-m", "loadtest.multi_shard_leaf", "--port", str(port)]
            leaves.append(group.start(f"leaf{i}", argv, f"127.0.0.1:{port}"))
        merge = start_merge(group, "merge", "merge.py")
        leaf_shards: list[dict[str, object]] = [{"replicas": [leaves[s % len(leaves)].address]} for s in range(shards)]
        top_shards = leaf_shards
        if groups:
            top_shards = []
            size = shards // groups
            for g in range(groups):
                combiner = start_merge(group, f"combiner{g}", "combine.py")
                mid = group.start_root(
                    f"root{g}",
                    {
                        "root": {"listen": f"127.0.0.1:{free_port()}", "max_in_flight": 4096, "min_coverage": 0.0,
                                 "shard_offset": g * size, "total_shards": shards},
                        "hedging": {"enabled": hedging},
                        "merge": {"address": combiner.address},
                        "shards": leaf_shards[g * size : (g + 1) * size],
                    },
                    ROOT_MODULE if root_env else "scatter.cli",
                    env=root_env,
                )  # fmt: skip
                top_shards.append({"replicas": [mid.address], "leaves": size})
        listen = f"127.0.0.1:{free_port()}"
        config = {
            "root": {"listen": listen, "workers": workers, "max_in_flight": 4096},
            "hedging": {"enabled": hedging},
            "merge": {"address": merge.address},
            "shards": top_shards,
        }
        yield listen, group.start_root("root", config, ROOT_MODULE if root_env else "scatter.cli", env=root_env)


# With --root-source the root runs as `python -m root.server`, which every
# checkout since the first has (a checkout older than the `scatter` package
# has no scatter.cli).
ROOT_MODULE = "root.server"


def root_cpu(root: Child) -> float:
    """CPU seconds of the root process and its worker processes."""
    assert root.pid is not None
    return tree_cpu_seconds(root.pid)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench fanout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fanouts", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tree-groups", type=int, default=0, help="also run each fan-out as a two-level tree")
    parser.add_argument(
        "--root-source", type=Path, help="run the root from this checkout (git worktree of an old commit)"
    )
    args = parser.parse_args(argv)
    root_env = {"PYTHONPATH": str(args.root_source.resolve())} if args.root_source else {}
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
                with cluster(fanout, args.workers, Path(tmp), groups=groups, root_env=root_env) as (address, root):
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
    return 0
