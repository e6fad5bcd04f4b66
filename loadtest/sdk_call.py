"""What the SDKs cost per call, beside a bare grpc.aio leaf doing the same.

    scatter bench sdk-call [--requests 3000] [--rounds 2]

Starts one process at a time and sends it one call at a time on one
long-lived channel from a sync client (no root in the way):

- the bare leaf (``loadtest.multi_shard_leaf``: grpc.aio and a padded
  ProbePartial, none of the SDK's checks), the floor;
- the leaf SDK with an empty async handler and with an empty sync handler,
  answering the same padded ProbePartial: the difference to the floor is
  the SDK's own cost, the sync row adds the hop to a worker thread;
- the merge SDK with an empty sync handler, and the demo's merge
  (``demo_search.merge``), each given 8 partials of 10 demo hits sized like
  real ones (a title, a 150-character snippet).

Prints p50/p99 latency and the process's CPU time per call (all its
threads, from /proc/PID/stat), one table per round: the rows of a round run
back to back, so compare within a round. A benchmark, not a test.

``python -m loadtest.sdk_call --serve KIND [SDK flags]`` is the SDK leaf or
merge it starts (KIND: leaf-sync, leaf-async, merge-sync).
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from google.protobuf.message import Message

from loadtest.overhead import summary, timed, warm_up
from loadtest.processes import processes
from loadtest.procfs import cpu_seconds
from protos.demo_search.v1 import search_pb2
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc, merge_pb2, merge_pb2_grpc, shard_pb2
from scatter.runtime import free_port
from scatter_common.payload import pack

__all__ = ["main"]

PAD_BYTES = 2179  # a demo leaf's answer to a k = 10 query is about this size
SHARDS = 8
HITS = 10


def serve(kind: str, argv: Sequence[str]) -> int:
    """Serve one of the SDK processes this benchmark measures."""
    from leaf_sdk import Leaf, LeafContext
    from merge_sdk import Merge, MergeContext, Partial

    answer = probe_pb2.ProbePartial(replica="." * PAD_BYTES)
    if kind == "leaf-sync":

        def sync_leaf(request: probe_pb2.ProbeRequest, ctx: LeafContext) -> probe_pb2.ProbePartial:
            return answer

        return Leaf(sync_leaf, request_type=probe_pb2.ProbeRequest).main(argv)
    if kind == "leaf-async":

        async def async_leaf(request: probe_pb2.ProbeRequest, ctx: LeafContext) -> probe_pb2.ProbePartial:
            return answer

        return Leaf(async_leaf, request_type=probe_pb2.ProbeRequest).main(argv)
    if kind == "merge-sync":
        empty = search_pb2.SearchResponse()

        def sync_merge(
            request: search_pb2.SearchRequest, partials: list[Partial[search_pb2.SearchPartial]], ctx: MergeContext
        ) -> search_pb2.SearchResponse:
            return empty

        return Merge(sync_merge, request_type=search_pb2.SearchRequest, partial_type=search_pb2.SearchPartial).main(
            argv
        )
    raise SystemExit(f"--serve: unknown kind {kind!r} (leaf-sync, leaf-async, merge-sync)")


def merge_request(seed: int = 7) -> merge_pb2.MergeRequest:
    """8 OK shards of 10 hits each, by descending score, like the demo leaves answer a k = 10 query."""
    rng = random.Random(seed)
    request = merge_pb2.MergeRequest(payload=pack(search_pb2.SearchRequest(query="alpha beta", k=10)), request_id="b")
    for shard in range(SHARDS):
        scores = sorted((rng.uniform(2.0, 12.0) for _ in range(HITS)), reverse=True)
        partial = search_pb2.SearchPartial(total_matches=rng.randint(1000, 50000))
        for rank, score in enumerate(scores):
            partial.hits.add(
                doc_id=f"doc-{shard * 125000 + rank * 997:07d}",
                score=score,
                title=f"Synthetic document {shard}-{rank} about alpha",
                snippet=" ".join(rng.choice(("alpha", "beta", "gamma", "delta", "omega")) for _ in range(25))[:150],
                shard_index=shard,
            )
        result = request.results.add(payload=pack(partial))
        result.report.shard_index = shard
        result.report.status = shard_pb2.SHARD_STATUS_OK
        result.report.attempts = 1
    request.coverage.total = SHARDS
    request.coverage.answered = SHARDS
    return request


def measure(name: str, pid: int, call: Callable[[], object], requests: int) -> str:
    warm_up(call, 300)
    before = cpu_seconds(pid)
    samples = timed(call, requests)
    return summary(name, samples, cpu_seconds(pid) - before)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--serve"]:
        return serve(args_in[1], args_in[2:])
    parser = argparse.ArgumentParser(
        prog="scatter bench sdk-call", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="calls per row (CPU ticks are 10 ms: keep it large)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(args_in)
    execute = leaf_pb2.ExecuteRequest(
        shard_index=0, shard_count=SHARDS, attempt=1, payload=pack(probe_pb2.ProbeRequest())
    )
    merge = merge_request()
    me = [sys.executable, "-m", "loadtest.sdk_call", "--serve"]
    rows: list[tuple[str, list[str], Callable[[grpc.Channel], Callable[[], Message]]]] = [
        (
            "bare grpc.aio leaf",
            [sys.executable, "-m", "loadtest.multi_shard_leaf", "--pad-bytes", str(PAD_BYTES)],
            lambda ch: functools.partial(leaf_pb2_grpc.LeafStub(ch).Execute, execute, timeout=5),
        ),
        (
            "leaf SDK, async handler",
            [*me, "leaf-async", "--shard-count", str(SHARDS)],
            lambda ch: functools.partial(leaf_pb2_grpc.LeafStub(ch).Execute, execute, timeout=5),
        ),
        (
            "leaf SDK, sync handler",
            [*me, "leaf-sync", "--shard-count", str(SHARDS)],
            lambda ch: functools.partial(leaf_pb2_grpc.LeafStub(ch).Execute, execute, timeout=5),
        ),
        (
            "merge SDK, sync, 8x10",
            [*me, "merge-sync"],
            lambda ch: functools.partial(merge_pb2_grpc.MergeStub(ch).Merge, merge, timeout=5),
        ),
        (
            "demo merge, 8x10",
            [sys.executable, "-m", "demo_search.merge"],
            lambda ch: functools.partial(merge_pb2_grpc.MergeStub(ch).Merge, merge, timeout=5),
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="scatter-sdk-call-") as run_dir:
        for round_ in range(1, args.rounds + 1):
            print(f"\nround {round_}, {args.requests} calls per row, one at a time")
            print("| process | p50 ms | p99 ms | CPU us/call |")
            print("|---|---|---|---|")
            for name, command, stub in rows:
                port = free_port()
                with processes(Path.cwd(), Path(run_dir)) as group:
                    child = group.start(name, [*command, "--port", str(port)], f"127.0.0.1:{port}")
                    assert child.pid is not None
                    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                        print(measure(name, child.pid, stub(channel), args.requests), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
