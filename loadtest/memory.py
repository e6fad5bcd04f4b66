"""What large requests cost the root in memory: RSS before, at the peak and after.

    scatter bench memory [--shards 3] [--replicas 2] [--concurrent 32] [--size-mib 4] [--baseline CHECKOUT]

Starts the probe application and sends ``--concurrent`` requests of
``--size-mib`` MiB at once (each leaf holds them ``--delay-ms``, so all are
in flight together), waits for every answer, lets the root settle
(``--settle`` s), then sends ``--failing`` requests one at a time, each a
few bytes over what the root forwards (refused with RESOURCE_EXHAUSTED after
the body was received). Reads the root's RSS from /proc/PID/status before,
at its peak (VmHWM, reset before the run through /proc/PID/clear_refs) and
after each phase, and prints the rise against the bytes admitted.

``--baseline CHECKOUT`` starts a second root from another checkout of the
project (its code on PYTHONPATH) on the same leaves and merge, measured the
same way right after ours: old and new side by side. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

from loadtest.deployments import probe_spec
from loadtest.processes import processes
from loadtest.procfs import memory_kib
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from scatter.runtime import Deployment, free_port

MIB = 1024 * 1024
QUERY_METHOD = "/scatter_gather.v1.Root/Query"


def padded_request(total: int, delay_ms: float) -> bytes:
    """A probe QueryRequest body of ``total`` bytes: the padding is an unknown field the leaves skip."""
    request = root_pb2.QueryRequest()
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(delay_ms * 1e6))
    request.payload.Pack(probe_pb2.ProbeRequest(value=1, delay=delay))
    base = request.payload.value
    for pad in range(total, max(0, total - 256), -1):
        request.payload.value = base + b"\xfa\x3f" + _varint(pad) + b"x" * pad  # field 1023, length-delimited
        body = request.SerializeToString()
        if len(body) == total:
            return body
    raise ValueError(f"cannot build a request of exactly {total} bytes")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def send(address: str, bodies: Sequence[bytes], concurrent: bool, timeout: float) -> Counter[str]:
    """Send every body (all at once, or one after another); the status code names, counted."""
    options = [("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]
    codes: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        query: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(QUERY_METHOD)

        async def one(body: bytes) -> None:
            try:
                await query(body, timeout=timeout)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1

        if concurrent:
            await asyncio.gather(*(one(body) for body in bodies))
        else:
            for body in bodies:
                await one(body)
    return codes


def mib(kib: int) -> str:
    return f"{kib / 1024:7.1f}"


def measure(name: str, address: str, pid: int, args: argparse.Namespace, over_limit: int) -> None:
    size = int(args.size_mib * MIB) - 64 * 1024  # under the limit with room for the framing
    body = padded_request(size, args.delay_ms)
    # Warm up: channels connected, caches filled, one large request through (the first one's copies).
    asyncio.run(send(address, [padded_request(1024, 0)] * 20 + [body], False, 30))
    time.sleep(args.settle)
    start = memory_kib(pid)
    exact_peak = reset_peak(pid)
    admitted = args.concurrent * size
    codes = asyncio.run(send(address, [body] * args.concurrent, True, 30))
    peak = memory_kib(pid)["VmHWM" if exact_peak else "VmRSS"]
    time.sleep(args.settle)
    after = memory_kib(pid)["VmRSS"]
    failing = padded_request(over_limit, 0)
    failed = asyncio.run(send(address, [failing] * args.failing, False, 30))
    time.sleep(args.settle)
    after_failing = memory_kib(pid)
    rise = (peak - start["VmRSS"]) * 1024
    print(
        f"| {name:<8} | {mib(start['VmRSS'])} | {mib(peak)} | {mib(after)} | {mib(after_failing['VmRSS'])} | "
        f"{rise / admitted:5.2f} | {(after - start['VmRSS']) / start['VmRSS'] * 100:+6.1f}% | "
        f"{dict(codes)} | {dict(failed)} |",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrent", type=int, default=32, help="large requests sent at once")
    parser.add_argument("--size-mib", type=float, default=4.0, help="size of each request body (MiB)")
    parser.add_argument("--delay-ms", type=float, default=300.0, help="how long each leaf holds a request")
    parser.add_argument("--failing", type=int, default=20, help="over-limit requests sent one after another")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS")
    parser.add_argument("--baseline", type=Path, help="a checkout whose root to measure beside this one")
    parser.add_argument("--out", type=Path, help="logs folder (default bench-results/memory-TIMESTAMP)")
    args = parser.parse_args(argv)
    out = args.out or Path("bench-results") / f"memory-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    limit = int(args.size_mib * MIB)
    spec = probe_spec(args.shards, args.replicas, root={"max_message_bytes": limit, "default_deadline_ms": 30_000})
    print(
        f"{args.concurrent} concurrent requests of {args.size_mib:g} MiB, fan-out {args.shards} x "
        f"{args.replicas} replicas, leaves hold each {args.delay_ms:g} ms; then {args.failing} over-limit "
        "requests one at a time. RSS in MiB.\n"
    )
    print("| root | start | peak | after | after failing | peak rise / admitted | after vs start | codes | failing |")
    print("|---|---|---|---|---|---|---|---|---|")
    with Deployment(spec, log_dir=out / "logs") as dep:
        pid = dep.children["root"].pid
        assert pid is not None
        measure("new", dep.root_address, pid, args, limit - 16)
        if args.baseline is not None:
            import tomllib

            document = tomllib.loads((dep.run_dir / "root.toml").read_text())
            document["root"]["listen"] = f"127.0.0.1:{free_port()}"
            document["root"].pop("metrics_listen", None)
            with processes(dep.spec.directory, dep.run_dir) as group:
                env = {"PYTHONPATH": str(args.baseline.resolve())}
                base = group.start_root("baseline-root", document, env=env)
                assert base.pid is not None
                measure("baseline", base.address, base.pid, args, limit - 16)
    return 0
