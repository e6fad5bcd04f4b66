"""What shedding costs the root: CPU per rejection, and admitted latency under 2x overload.

    scatter bench shed [--shards 4] [--max-in-flight 8] [--duration 8] [--baseline CHECKOUT]

Starts the probe application (leaves answering at once) with a root whose
``max_in_flight`` is small, then per root:

1. *Rejection cost*: ``--max-in-flight`` requests held at the leaves (a
   long delay) keep the root at its limit while a closed loop of 16 sends
   requests that are all refused; root CPU (/proc/PID/stat, all threads)
   per refusal, less the CPU of the same seconds with only the held
   requests.
2. *Capacity*: a closed loop of ``--max-in-flight`` users (all admitted):
   throughput C and its p99 (the unloaded value).
3. *2x overload*: Poisson arrivals at 2 C for ``--duration`` s, sent from a
   process of their own: the admitted requests' p99, against the unloaded
   one. Meanwhile a *light client* in this process sends one request at a
   time, 20 ms apart, and reports its own p99: what a well-behaved client
   sees while others overload the root, without the overload generator's
   own queueing (its process is as busy as the root at 2 C).

A *front* row: the same root behind the admission front in C that ``scatter
front nginx`` configures (nginx, its cap ``--max-in-flight`` less 1/16), so
the front refuses first: measured as above through the front, with root CPU
and nginx CPU (master and workers) per refusal, and the front's capacity and
2x overload.

Beside the roots, a *floor* row: ``loadtest.bare_root``, a grpc.aio server
whose ``maximum_concurrent_rpcs`` refuses every call over the limit before
any handler runs, measured as in 1. It is what grpc's Python layer costs per
call, the least any handler-level refusal can cost.

``--baseline CHECKOUT`` measures a second root, started from another
checkout (its code on PYTHONPATH) on the same leaves and merge, the same way
and alternated with ours: old and new side by side. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
import tomllib
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

from loadtest.closed_loop import RunResult, run
from loadtest.deployments import probe_spec
from loadtest.open_loop import run_open
from loadtest.processes import processes
from loadtest.procfs import tree_cpu_seconds
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc
from root import load_root_config
from scatter.runtime import Deployment, free_port, plan_front, run_nginx

HOLD_SECONDS = 30.0  # how long the held requests stay at the leaves: longer than phase 1
LIGHT_GAP = 0.02  # seconds between the light client's requests


def query(delay_s: float = 0.0) -> root_pb2.QueryRequest:
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=1, delay=duration_pb2.Duration(seconds=int(delay_s))))
    return request


async def _held_and_rejected(address: str, held: int, pids: Sequence[int], seconds: float) -> tuple[list[float], int]:
    """(CPU us per rejection of each of ``pids`` and its children, rejections) with ``held`` requests parked."""

    def cpu() -> list[float]:
        return [tree_cpu_seconds(pid) for pid in pids]

    async with grpc.aio.insecure_channel(address) as channel:
        stub = root_pb2_grpc.RootStub(channel)
        parked = [asyncio.ensure_future(stub.Query(query(HOLD_SECONDS), timeout=HOLD_SECONDS + 5)) for _ in range(held)]
        await asyncio.sleep(1.0)  # admitted and at the leaves
        before = cpu()
        await asyncio.sleep(seconds)
        idle = [after - b for after, b in zip(cpu(), before, strict=True)]
        rejected = 0
        end = time.perf_counter() + seconds

        async def reject() -> None:
            nonlocal rejected
            while time.perf_counter() < end:
                try:
                    await stub.Query(query(), timeout=2)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        rejected += 1

        before = cpu()
        await asyncio.gather(*(reject() for _ in range(16)))
        used = [after - b - i for after, b, i in zip(cpu(), before, idle, strict=True)]
        for call in parked:
            call.cancel()
    return [u * 1e6 / max(rejected, 1) for u in used], rejected


def _overload(address: str, rate: float, seconds: float, results: multiprocessing.Queue[RunResult]) -> None:
    results.put(run_open(address, query(), rate, seconds))


def _light_client(address: str, seconds: float) -> list[float]:
    """Latencies (ms) of one request at a time, LIGHT_GAP apart, for ``seconds``; refusals left out."""
    latencies = []
    with grpc.insecure_channel(address) as channel:
        stub = root_pb2_grpc.RootStub(channel)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            try:
                stub.Query(query(), timeout=2)
            except grpc.RpcError:
                pass
            else:
                latencies.append((time.perf_counter() - began) * 1000)
            time.sleep(LIGHT_GAP)
    return sorted(latencies)


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[int(q * (len(sorted_ms) - 1))] if sorted_ms else float("nan")


def measure(name: str, address: str, pids: Sequence[int], args: argparse.Namespace, users: int) -> None:
    """One row: ``pids`` = (the root, the front) or (the root,); ``users``: what the door admits."""
    per_rejection, rejected = asyncio.run(_held_and_rejected(address, users, pids, args.duration / 2))
    time.sleep(1.0)
    run(address, query(), users, 1.0)  # warm up
    capacity = run(address, query(), users, args.duration)
    rate = 2 * capacity.throughput
    # spawn, not fork: this process holds grpc state, which a forked child must not inherit.
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[RunResult] = context.Queue()
    generator = context.Process(target=_overload, args=(address, rate, args.duration, results))
    generator.start()
    time.sleep(1.0)  # the generator's interpreter starts; then the light client runs inside the overload
    light = _light_client(address, max(args.duration - 2.0, 1.0))
    overload = results.get(timeout=args.duration + 60)
    generator.join()
    shed = overload.failures.get("RESOURCE_EXHAUSTED", 0)
    offered = len(overload.latencies) + sum(overload.failures.values())
    p99_unloaded, p99_overload = capacity.percentile_ms(0.99), overload.percentile_ms(0.99)
    p99_light = _percentile(light, 0.99)
    front = f"{per_rejection[1]:6.0f}" if len(per_rejection) > 1 else "—"
    print(
        f"| {name:<8} | {per_rejection[0]:6.0f} ({rejected}) | {front} | {capacity.throughput:6.0f} | "
        f"{p99_unloaded:7.2f} | {rate:6.0f} | {overload.throughput:6.0f} | {shed / max(offered, 1) * 100:5.1f}% | "
        f"{p99_overload:7.2f} | {p99_overload / p99_unloaded:5.2f}x | {p99_light:7.2f} ({len(light)}) | "
        f"{p99_light / p99_unloaded:5.2f}x |",
        flush=True,
    )


def measure_floor(address: str, pid: int, args: argparse.Namespace) -> None:
    per_rejection, rejected = asyncio.run(_held_and_rejected(address, args.max_in_flight, [pid], args.duration / 2))
    dash = "—"
    print(f"| floor    | {per_rejection[0]:6.0f} ({rejected}) | " + " | ".join([dash] * 10) + " |", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench shed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--max-in-flight", type=int, default=8, help="the root's max_in_flight")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=1, help="new/baseline alternations")
    parser.add_argument("--baseline", type=Path, help="a checkout whose root to measure beside this one")
    parser.add_argument("--out", type=Path, help="logs folder (default bench-results/shed-TIMESTAMP)")
    args = parser.parse_args(argv)
    out = args.out or Path("bench-results") / f"shed-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    spec = probe_spec(args.shards, 1, root={"max_in_flight": args.max_in_flight, "default_deadline_ms": 2000})
    print(
        f"fan-out {args.shards} x 1, leaves answering at once, root max_in_flight = {args.max_in_flight}, "
        f"{args.duration:g} s per measurement\n"
    )
    print(
        "| root | root CPU us per rejection (rejections) | front CPU us per rejection | capacity req/s | "
        "p99 ms at capacity | "
        "offered req/s | admitted req/s | shed | admitted p99 ms | p99 vs capacity | "
        "light client p99 ms (answers) | light p99 vs capacity |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with Deployment(spec, log_dir=out / "logs") as dep, ExitStack() as stack:
        roots = [("new", dep.root_address, dep.children["root"].pid)]
        if args.baseline is not None:
            document = tomllib.loads((dep.run_dir / "root.toml").read_text())
            document["root"]["listen"] = f"127.0.0.1:{free_port()}"
            document["root"].pop("metrics_listen", None)
            group = stack.enter_context(processes(dep.spec.directory, dep.run_dir))
            base = group.start_root("baseline-root", document, env={"PYTHONPATH": str(args.baseline.resolve())})
            roots.append(("baseline", base.address, base.pid))
        group = stack.enter_context(processes(dep.spec.directory, dep.run_dir))
        floor_address = f"127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "loadtest.bare_root", "--listen", floor_address]
        floor = group.start("bare-root", [*argv, "--max-in-flight", str(args.max_in_flight)], floor_address)
        root_pid = dep.children["root"].pid
        assert root_pid is not None
        plan = plan_front(load_root_config(dep.run_dir / "root.toml"), f"127.0.0.1:{free_port()}")
        front = stack.enter_context(run_nginx(plan, out / "nginx"))
        for _ in range(args.repeats):
            for name, address, pid in roots:
                assert pid is not None
                measure(name, address, [pid], args, args.max_in_flight)
            measure("front", front.address, [root_pid, front.pid], args, plan.cap)
            assert floor.pid is not None
            measure_floor(floor.address, floor.pid, args)
    return 0
