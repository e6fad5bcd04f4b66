"""The tail benchmark: one slow call in a hundred, with and without hedging.

    scatter bench tail [--duration 20] [--repeats 3] [--concurrency 1 8] [--delay-percentile 0.95] ...

8 shards x 2 replicas of the probe leaf; every leaf call takes about 2 ms
(--base-latency-ms), and on request a seeded 1% of calls stall 100 ms more
(ProbeRequest.stall_probability). On the same leaves and merge, two roots:
one with hedging off, one with hedging on (adaptive delay at the shard's
p95, 5% budget, up to 3 attempts). Each repeat runs, at each concurrency:

    ideal        hedging-off root, no stalls: the physical limit here
    stalls       hedging-off root, 1% stalls
    hedged       hedging-on root, 1% stalls

and prints p50/p99/p99.9, throughput and extra leaf calls, then the ratios
the design targets: hedged/ideal at p99 and p99.9, stalls/hedged at p99.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from loadtest.closed_loop import RunResult, run
from loadtest.deployments import probe_spec
from loadtest.processes import extra_root
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2
from scatter.runtime import Deployment


def request(stall_probability: float, stall_ms: float) -> root_pb2.QueryRequest:
    probe = probe_pb2.ProbeRequest(stall_probability=stall_probability)
    probe.stall.FromNanoseconds(int(stall_ms * 1e6))
    wrapped = root_pb2.QueryRequest()
    wrapped.payload.Pack(probe)
    return wrapped


def line(name: str, concurrency: int, repeat: int, r: RunResult) -> str:
    fails = sum(r.failures.values())
    return (
        f"| {name:<7} | {concurrency:>2} | {repeat} | {r.percentile_ms(0.5):6.2f} | {r.percentile_ms(0.99):7.2f} | "
        f"{r.percentile_ms(0.999):7.2f} | {r.throughput:6.0f} | {r.extra_calls * 100:5.2f}% | {fails} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench tail", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--base-latency-ms", type=float, default=2.0)
    parser.add_argument("--stall-probability", type=float, default=0.01)
    parser.add_argument("--stall-ms", type=float, default=100.0)
    parser.add_argument("--delay-percentile", type=float, default=0.95)
    parser.add_argument("--max-extra-load", type=float, default=0.05)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    hedging = {
        "enabled": True,
        "delay_percentile": args.delay_percentile,
        "max_extra_load": args.max_extra_load,
        "max_attempts": args.max_attempts,
    }
    spec = probe_spec(
        args.shards,
        args.replicas,
        leaf_flags=["--base-latency-ms", str(args.base_latency_ms), "--seed", str(args.seed)],
        root={"default_deadline_ms": 2000},
        sections={"hedging": hedging},
    )
    ideal_request = request(0.0, 0.0)
    stall_request = request(args.stall_probability, args.stall_ms)
    with (
        Deployment(spec) as dep,
        extra_root(dep, "root-unhedged", lambda doc: doc.update(hedging={"enabled": False})) as unhedged,
    ):
        print(
            f"{args.shards} shards x {args.replicas} replicas, leaf ~{args.base_latency_ms:g} ms, "
            f"{args.stall_probability:.1%} of calls stall {args.stall_ms:g} ms; hedging at "
            f"p{args.delay_percentile * 100:g}, budget {args.max_extra_load:.0%}, max_attempts "
            f"{args.max_attempts}; {args.duration:g} s per run\n"
        )
        print("| run | in flight | repeat | p50 ms | p99 ms | p99.9 ms | req/s | extra calls | failures |")
        print("|---|---|---|---|---|---|---|---|---|")
        run(dep.root_address, stall_request, 4, 3.0)  # warm up channels and latency windows
        run(unhedged.address, stall_request, 4, 1.0)
        ratios = []
        for repeat in range(1, args.repeats + 1):
            for concurrency in args.concurrency:
                ideal = run(unhedged.address, ideal_request, concurrency, args.duration)
                stalls = run(unhedged.address, stall_request, concurrency, args.duration)
                hedged = run(dep.root_address, stall_request, concurrency, args.duration)
                for name, result in (("ideal", ideal), ("stalls", stalls), ("hedged", hedged)):
                    print(line(name, concurrency, repeat, result), flush=True)
                ratios.append((concurrency, repeat, ideal, stalls, hedged))
        print("\n| in flight | repeat | hedged/ideal p99 | hedged/ideal p99.9 | stalls/hedged p99 | extra calls |")
        print("|---|---|---|---|---|---|")
        for concurrency, repeat, ideal, stalls, hedged in sorted(ratios, key=lambda r: (r[0], r[1])):
            print(
                f"| {concurrency} | {repeat} | {hedged.percentile_ms(0.99) / ideal.percentile_ms(0.99):.2f}x | "
                f"{hedged.percentile_ms(0.999) / ideal.percentile_ms(0.999):.2f}x | "
                f"{stalls.percentile_ms(0.99) / hedged.percentile_ms(0.99):.1f}x | {hedged.extra_calls:.2%} |"
            )
    return 0
