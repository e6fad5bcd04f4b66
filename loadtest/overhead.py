"""What the root costs per request, against calling a leaf directly.

    scatter bench overhead [--requests 2000] [--fanouts 1 4]

Starts the probe application through the local runtime, then sends one
request at a time on one long-lived channel: first straight to a leaf
(Leaf.Execute), then through the root at each fan-out. Prints p50/p99
latency and the root's CPU time per request, read from /proc/PID/stat so it
includes grpc's own threads. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Sequence

import grpc

from loadtest.deployments import probe_spec
from loadtest.procfs import cpu_seconds
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc, root_pb2, root_pb2_grpc
from scatter.runtime import Deployment


def warm_up(call: Callable[[], object], n: int = 200) -> None:
    """Open connections and fill caches and latency windows before measuring."""
    for _ in range(n):
        call()


def timed(call: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def summary(name: str, samples: list[float], cpu: float | None = None) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    cpu_text = f"{cpu * 1e6 / len(samples):8.0f}" if cpu is not None else "       -"
    return f"| {name:<24} | {p50:7.3f} | {p99:7.3f} | {cpu_text} |"


def deployment(shards: int) -> Deployment:
    return Deployment(probe_spec(shards, 1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--fanouts", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)
    payload = probe_pb2.ProbeRequest(value=1)
    query = root_pb2.QueryRequest()
    query.payload.Pack(payload)
    print("| path | p50 ms | p99 ms | root CPU us/request |")
    print("|---|---|---|---|")
    for fanout in args.fanouts:
        with deployment(fanout) as dep:
            if fanout == args.fanouts[0]:
                execute = leaf_pb2.ExecuteRequest(shard_index=0, shard_count=fanout, attempt=1)
                execute.payload.Pack(payload)
                with grpc.insecure_channel(dep.children["leaf-0-0"].address) as channel:
                    call_leaf = functools.partial(leaf_pb2_grpc.LeafStub(channel).Execute, execute, timeout=5)
                    warm_up(call_leaf)
                    print(summary("leaf direct", timed(call_leaf, args.requests)))
            root_pid = dep.children["root"].pid
            assert root_pid is not None
            with grpc.insecure_channel(dep.root_address) as channel:
                call_root = functools.partial(root_pb2_grpc.RootStub(channel).Query, query, timeout=5)
                warm_up(call_root)
                before = cpu_seconds(root_pid)
                samples = timed(call_root, args.requests)
                used = cpu_seconds(root_pid) - before
            print(summary(f"root, fan-out {fanout}", samples, used))
    return 0
