"""``scatter bench``: every benchmark of the project, one scenario each.

    scatter bench                      the scenarios, one line each
    scatter bench SCENARIO --help      a scenario's own flags
    scatter bench SCENARIO [FLAGS...]

Two kinds, and this module is the only list of them:

- Locust load scenarios (:mod:`loadtest.locust_scenarios`): a deployment,
  Locust users, an HTML report and ``summary.json`` in a results folder.
- Closed-loop benchmarks (:mod:`loadtest.closed_loop` drives the root):
  the precise instruments behind the tables of docs/benchmarks.md, each a
  module with ``main(argv)`` and its own flags.

Every scenario runs from the installed package; those that run the probe
application (``examples/probe``, not installed) find it in a checkout or
say where to get it (:func:`loadtest.deployments.probe_dir`). On a shared
machine run them under ``flock /tmp/scatter-bench.lock`` so that two
benchmarks never overlap. Modules are imported only when their scenario
runs: Locust itself is only ever imported by its own subprocess.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from loadtest.locust_scenarios import SCENARIOS, run_scenario

__all__ = ["CLOSED_LOOP", "main", "usage"]

# name -> (module whose main(argv) runs it and returns an exit code, one-line help)
CLOSED_LOOP: dict[str, tuple[str, str]] = {
    "overhead": ("loadtest.overhead", "what the root costs per request against calling a leaf directly"),
    "sdk-call": ("loadtest.sdk_call", "the leaf and merge SDKs' own cost per call, beside a bare grpc.aio leaf"),
    "compare": ("loadtest.compare", "our root against the naive root on the same probe leaves"),
    "fanout": ("loadtest.fanout", "one root over 1 to 256 shards (flat or a tree): CPU per request and shard call"),
    "tail": (
        "loadtest.tail",
        "tail tolerance: 1% stalls and a slow replica, 1 in flight and open-loop loads, hedging on/off",
    ),
    "faults": (
        "loadtest.faults",
        "a replica and a shard hung, killed, then a rolling restart, under steady load: errors, coverage, recovery",
    ),
    "memory": ("loadtest.memory", "32 concurrent 4 MiB requests, then over-limit ones: root RSS before, peak, after"),
    "shed": ("loadtest.shed", "root CPU per rejection, and admitted p99 under 2x overload against capacity"),
    "demo-scale": ("loadtest.demo_scale", "the demo search over 1M synthetic documents: build, memory, latency"),
    "demo-scorer": ("loadtest.demo_scorer", "the demo's ranking alone on 1M documents, per block size: p50, p99, mean"),
    "demo-heavy": ("loadtest.demo_heavy", "k = 1000 and 10,000-term demo queries, 1 s deadline: in time, or stopped?"),
}


def usage() -> str:
    width = max(len(name) for name in [*SCENARIOS, *CLOSED_LOOP])
    lines = ["usage: scatter bench SCENARIO [FLAGS...]   (scatter bench SCENARIO --help: its flags)", ""]
    lines.append("Locust load scenarios (a report in bench-results/SCENARIO-TIMESTAMP):")
    lines += [f"  {name:<{width}}  {s.help}" for name, s in SCENARIOS.items()]
    lines += ["", "closed-loop benchmarks:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in CLOSED_LOOP.items()]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Entry point of ``scatter bench ...`` (an entry point of ``scatter.commands``)."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name in SCENARIOS:
        return run_scenario(name, rest)
    if name in CLOSED_LOOP:
        run: Callable[[list[str]], int] = importlib.import_module(CLOSED_LOOP[name][0]).main
        return run(rest)
    print(f"scatter bench: unknown scenario {name!r}\n\n{usage()}", file=sys.stderr)
    return 2
