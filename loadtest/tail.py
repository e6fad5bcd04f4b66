"""The tail benchmark: does hedging rescue the tail, with the default configuration?

    scatter bench tail [--duration 10] [--repeats 3] [--loads 0.3 0.6] [--slow-seconds 10] ...

8 shards x 2 replicas of the probe leaf, every call about 2 ms
(--base-latency-ms). Two roots on the same leaves and merge: one with the
default configuration (hedging on), one with hedging off. What is measured
is tail tolerance, not CPU saturation: a closed loop at 8 in flight
saturates these two cores (the ideal run's p99 is already queueing), so the
load is one request in flight, and open-loop Poisson arrivals
(:mod:`loadtest.open_loop`) at fractions of the capacity of the ideal
deployment, measured first (closed loop, 8 in flight, hedging off).

Each repeat runs, at each load:

    ideal    hedging off, no stalls: the physical limit of this deployment
    off      hedging off, a seeded 1% of leaf calls stall 100 ms
    hedged   defaults, the same stalls

and then the slow-replica scenario at the first open-loop load: one replica
of shard 0 becomes ``--slow-factor`` (10) times slower for
``--slow-seconds`` (10), starting ``--slow-start`` (2) s into the run, on a
freshly started default root (so no earlier run's ejection carries over);
its p99 is taken over the requests sent from one second after the slowdown
began to its end.

Every measured run follows three seconds of the same load on the same root,
not measured (the roots take turns: one that sat idle starts with an empty
budget and a latency window of another load). Printed per run: p50/p99/p99.9, throughput, extra leaf calls (attempts
beyond one per shard call), hedges refused by the budget and ejections (from
the root's /metrics, the difference over the run); then the ratios against
the ideal run of the same load and repeat, and whether each goal of
docs/benchmarks.md was met.
"""

from __future__ import annotations

import argparse
import re
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadtest.closed_loop import RunResult, run
from loadtest.deployments import probe_spec
from loadtest.open_loop import run_open
from loadtest.processes import extra_root
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from scatter.runtime import Child, Deployment

SLOW_REPLICA = "shard0-replica0"  # SCATTER_REPLICA_ID of one replica of shard 0 (scatter.runtime)
CAPACITY_IN_FLIGHT = 8  # saturates two cores: the ideal deployment's throughput is its capacity
WARM_UP = 3.0  # seconds of the same load before each measured run (see main)


def request(stall_probability: float = 0.0, stall_ms: float = 0.0, slow_ms: float = 0.0) -> root_pb2.QueryRequest:
    probe = probe_pb2.ProbeRequest(stall_probability=stall_probability)
    probe.stall.FromNanoseconds(int(stall_ms * 1e6))
    if slow_ms:
        probe.replica_delays[SLOW_REPLICA].FromNanoseconds(int(slow_ms * 1e6))
    wrapped = root_pb2.QueryRequest()
    wrapped.payload.Pack(probe)
    return wrapped


def scrape(metrics_address: str) -> tuple[float, float]:
    """(hedges refused by the budget, ejections) so far, summed over shards and replicas."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))

    return total("scatter_root_hedge_budget_exhausted_total"), total("scatter_root_replica_ejections_total")


Request = root_pb2.QueryRequest | Callable[[float], root_pb2.QueryRequest]
Drive = Callable[[str, Request], RunResult]


@dataclass
class Run:
    name: str
    load: str
    repeat: int
    result: RunResult
    refused: float
    ejections: float
    window_p99: float = float("nan")  # slow replica: p99 from one second after the slowdown


def measured(root: Child, drive: Drive, warm: Drive, req: Request) -> tuple[RunResult, float, float]:
    """``drive(root.address, req)`` after ``warm`` (the same load, not measured), with the root's
    refused hedges and ejections over the measured run."""
    warm(root.address, req)
    refused, ejections = scrape(root.metrics_address)
    result = drive(root.address, req)
    refused_after, ejections_after = scrape(root.metrics_address)
    return result, refused_after - refused, ejections_after - ejections


def no_warm_up(address: str, req: Request) -> RunResult:
    return RunResult(np.zeros(0), 0.0)


def adding(sections: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """An edit of a root config document that sets ``sections``."""

    def edit(document: dict[str, Any]) -> None:
        document.update(sections)

    return edit


def line(r: Run) -> str:
    res = r.result
    fails = sum(res.failures.values())
    window = f"{r.window_p99:.2f}" if r.window_p99 == r.window_p99 else "-"
    return (
        f"| {r.name:<6} | {r.load:<9} | {r.repeat} | {res.percentile_ms(0.5):6.2f} | {res.percentile_ms(0.99):7.2f} | "
        f"{res.percentile_ms(0.999):7.2f} | {window} | {res.throughput:5.0f} | {res.extra_calls * 100:5.2f}% | "
        f"{r.refused:.0f} | {r.ejections:.0f} | {fails} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench tail", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loads", type=float, nargs="*", default=[0.3, 0.6], help="open-loop loads, of capacity")
    parser.add_argument("--base-latency-ms", type=float, default=2.0)
    parser.add_argument("--stall-probability", type=float, default=0.01)
    parser.add_argument("--stall-ms", type=float, default=100.0)
    parser.add_argument("--slow-factor", type=float, default=10.0)
    parser.add_argument("--slow-start", type=float, default=2.0)
    parser.add_argument("--slow-seconds", type=float, default=10.0, help="0 skips the slow-replica scenario")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not all(0 < load < 1 for load in args.loads):
        parser.error("--loads must be fractions of capacity in (0, 1)")

    spec = probe_spec(
        args.shards,
        args.replicas,
        leaf_flags=["--base-latency-ms", str(args.base_latency_ms), "--seed", str(args.seed)],
        root={"default_deadline_ms": 2000},  # the only setting changed: no stalled request may time out
    )
    ideal_request = request()
    stall_request = request(args.stall_probability, args.stall_ms)
    slow_ms = (args.slow_factor - 1) * args.base_latency_ms
    slow_end = args.slow_start + args.slow_seconds

    def slow_at(t: float) -> root_pb2.QueryRequest:
        return request(slow_ms=slow_ms) if args.slow_start <= t < slow_end else ideal_request

    runs: list[Run] = []
    with (
        Deployment(spec) as dep,
        extra_root(dep, "root-unhedged", lambda doc: doc.update(hedging={"enabled": False})) as off,
    ):
        hedged = dep.children["root"]
        run(hedged.address, stall_request, 4, 3.0)  # warm up channels and latency windows
        run(off.address, stall_request, 4, 1.0)
        capacity = run(off.address, ideal_request, CAPACITY_IN_FLIGHT, 5.0).throughput
        print(
            f"{args.shards} shards x {args.replicas} replicas, leaf ~{args.base_latency_ms:g} ms, "
            f"{args.stall_probability:.1%} of calls stall {args.stall_ms:g} ms; default hedging; "
            f"{args.duration:g} s per run; capacity (hedging off, no stalls, {CAPACITY_IN_FLIGHT} in flight): "
            f"{capacity:.0f} req/s\n"
        )
        print(
            "| run | load | repeat | p50 ms | p99 ms | p99.9 ms | p99 after 1 s | req/s | extra calls | refused "
            "| ejections | failures |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")

        def one_in_flight(duration: float) -> Drive:
            def drive(address: str, req: Request) -> RunResult:
                assert isinstance(req, root_pb2.QueryRequest)
                return run(address, req, 1, duration)

            return drive

        def open_loop(rate: float, duration: float) -> Drive:
            return lambda address, req: run_open(address, req, rate, duration)

        # Each measured run follows WARM_UP seconds of the same load on the same root: the
        # roots take turns, and a root that sat idle while the other ran starts with an
        # empty budget and a latency window of another load (measured: a hedge storm in
        # the first second, up to 289 refusals per run).
        loads: list[tuple[str, Drive, Drive]] = [("1 in flight", one_in_flight(args.duration), one_in_flight(WARM_UP))]
        loads += [
            (f"{load:.0%} open", open_loop(load * capacity, args.duration), open_loop(load * capacity, WARM_UP))
            for load in args.loads
        ]
        for repeat in range(1, args.repeats + 1):
            for label, drive, warm in loads:
                for name, root, req in (("ideal", off, ideal_request), ("off", off, stall_request),
                                        ("hedged", hedged, stall_request)):  # fmt: skip
                    result, refused, ejected = measured(root, drive, warm, req)
                    runs.append(Run(name, label, repeat, result, refused, ejected))
                    print(line(runs[-1]), flush=True)
            if args.slow_seconds > 0 and args.loads:
                slow_drive = open_loop(args.loads[0] * capacity, slow_end + 2.0)
                slow_warm = open_loop(args.loads[0] * capacity, WARM_UP)
                edits: tuple[tuple[str, dict[str, Any]], ...] = (
                    ("slow-o", {"hedging": {"enabled": False}}),
                    ("slow-h", {}),
                )
                for name, edit in edits:
                    with extra_root(dep, f"root-{name}-{repeat}", adding(edit)) as fresh:
                        run(fresh.address, ideal_request, 4, 2.0)  # channels and windows of a new root
                        slow_warm(fresh.address, ideal_request)  # the same load, before the slowdown
                        result, refused, ejected = measured(fresh, slow_drive, no_warm_up, slow_at)
                    entry = Run(name, f"{args.loads[0]:.0%} open", repeat, result, refused, ejected)
                    entry.window_p99 = result.window_percentile_ms(0.99, args.slow_start + 1.0, slow_end)
                    runs.append(entry)
                    print(line(entry), flush=True)
    report(runs, args.loads)
    return 0


def report(runs: list[Run], loads: Sequence[float]) -> None:
    """The ratios against the ideal run of the same load and repeat, and the goals."""
    by_key = {(r.name, r.load, r.repeat): r for r in runs}
    print("\n| load | repeat | hedged/ideal p99 | hedged/ideal p99.9 | off/hedged p99 | extra calls | refused |")
    print("|---|---|---|---|---|---|---|")
    goals: dict[str, list[bool]] = {}
    for r in runs:
        if r.name != "hedged":
            continue
        ideal = by_key[("ideal", r.load, r.repeat)].result
        off = by_key[("off", r.load, r.repeat)].result
        h = r.result
        p99 = h.percentile_ms(0.99) / ideal.percentile_ms(0.99)
        p999 = h.percentile_ms(0.999) / ideal.percentile_ms(0.999)
        rescue = off.percentile_ms(0.99) / h.percentile_ms(0.99)
        print(
            f"| {r.load} | {r.repeat} | {p99:.2f}x | {p999:.2f}x | {rescue:.1f}x | {h.extra_calls:.2%} | "
            f"{r.refused:.0f} |"
        )
        if r.load == "1 in flight" or (loads and r.load == f"{loads[0]:.0%} open"):
            goals.setdefault(f"{r.load}: p99 <= 1.3x, p99.9 <= 1.5x ideal, <= 3% extra", []).append(
                p99 <= 1.3 and p999 <= 1.5 and h.extra_calls <= 0.03
            )
        if len(loads) > 1 and r.load == f"{loads[-1]:.0%} open":
            goals.setdefault(f"{r.load}: p99 >= 3x better than hedging off", []).append(rescue >= 3)
    for r in runs:
        if r.name == "slow-h":
            ideal_p99 = by_key[("ideal", r.load, r.repeat)].result.percentile_ms(0.99)
            print(
                f"| slow replica, {r.load} | {r.repeat} | p99 from 1 s after: {r.window_p99 / ideal_p99:.2f}x ideal |"
            )
            goals.setdefault("slow replica: p99 <= 1.5x ideal from 1 s after", []).append(
                r.window_p99 <= 1.5 * ideal_p99
            )
    client_ejections = sum(r.ejections for r in runs if r.name in ("ideal", "off", "hedged"))
    goals["no ejection in the runs without a faulty replica"] = [client_ejections == 0]
    print("\n| goal | met in repeats |")
    print("|---|---|")
    for goal, met in goals.items():
        print(f"| {goal} | {sum(met)}/{len(met)} |")
