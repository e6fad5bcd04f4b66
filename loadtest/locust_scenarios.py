"""The Locust load scenarios of ``scatter bench``: steady, ramp, tail-locust, fault, overload.

    scatter bench SCENARIO [--duration S] [--users N] [--out DIR] [--p99-target-ms MS]

The runner starts the local deployment the scenario needs (built by
:mod:`loadtest.deployments`), runs Locust headless as a subprocess
(``python -m locust -f loadtest/locustfile.py --headless --csv ... --html
...``), stops everything, prints a summary table and writes into the
results folder (default ``./bench-results/SCENARIO-YYYYMMDD-HHMMSS``):
Locust's HTML report and CSVs per run, the users' tally
(:mod:`loadtest.tally`), the deployment's logs, and ``summary.json``. It
exits 1 if the run could not be made (a process did not start, Locust
produced no report), 2 on bad arguments.

Scenarios (the full description of each is in :data:`SCENARIOS` and
docs/benchmarks.md):

    steady       demo search (4 shards x 2 replicas), fixed closed-loop users
    ramp         demo search, users doubling in steps: the highest throughput with p99 under a target
    tail-locust  probe leaves with a 1% stall of 100 ms, 8 x 2: our root with hedging off, then on
    fault        demo search; a leaf replica is killed a third of the way in and revived at two thirds
    overload     demo search behind max_in_flight = 8, offered twice its measured capacity

``tail-locust`` shows through Locust what ``scatter bench tail`` (the
closed-loop tail benchmark, :mod:`loadtest.tail`) measures precisely.

Numbers from one machine are comparable within one run only: the load
generator shares the cores with the deployment. Use ``flock
/tmp/scatter-bench.lock scatter bench ...`` on a shared machine so two
benchmarks never overlap.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.deployments import demo_spec, probe_spec, started
from loadtest.processes import extra_root
from loadtest.tally import Second, Summary, Tally, read_tally, summarise

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
RAMP_SHAPE = Path(__file__).resolve().parent / "ramp_shape.py"

# The first seconds of a run open channels, fill the root's latency windows and warm the leaves'
# page cache; the last second is cut short by the stop. Both are left out of the summaries.
WARMUP_SECONDS = 3
# Locust itself needs a few seconds to import and to stop its users; past this the run is broken.
LOCUST_SLACK_SECONDS = 60.0

# The tail benchmark's leaves (issue 4, item 10; scatter bench tail uses the same flags):
# every call takes 2 ms, 1% of calls stall 100 ms more, draws seeded per shard and replica.
TAIL_SHARDS = 8
TAIL_REPLICAS = 2
TAIL_LEAF_FLAGS = ("--base-latency-ms", "2", "--stall-probability", "0.01", "--stall-ms", "100", "--seed", "1")

RAMP_P99_TARGET_MS = 50.0  # an interactive search budget: a result page well under 100 ms
OVERLOAD_MAX_IN_FLIGHT = 8  # small on purpose: shedding must show at twice the capacity
OVERLOAD_FACTOR = 2.0
OVERLOAD_USERS_DEFAULT = 48  # paced users; enough that the offered rate holds while answers are slow
CALIBRATION_SECONDS = 10.0


class BenchError(Exception):
    """The run could not be made; the message says why."""


# --- results ------------------------------------------------------------------------------------


REPO = Path(__file__).resolve().parent.parent  # holds loadtest/locustfile.py, installed or not


@dataclass
class Row:
    """One line of the summary table."""

    label: str
    users: str
    summary: Summary


def format_failures(failures: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in failures.items()) or "0"


def format_table(rows: Sequence[Row]) -> str:
    head = "| run | users | req/s | p50 ms | p95 ms | p99 ms | p99.9 ms | failures by status | hedge rate | coverage |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        s = row.summary
        p = s.percentiles_ms
        lines.append(
            f"| {row.label} | {row.users} | {s.throughput:.0f} | {p['p50']:.2f} | {p['p95']:.2f} | {p['p99']:.2f} | "
            f"{p['p99.9']:.2f} | {format_failures(s.failures)} | {s.hedge_rate * 100:.1f}% | {s.mean_coverage:.4f} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def steady_seconds(tally: Tally, warmup: int = WARMUP_SECONDS) -> list[Second]:
    """The seconds of a run without its warm-up and its (partial) last second."""
    keys = sorted(tally.seconds)
    return [tally.seconds[k] for k in keys[warmup:-1]]


# --- processes ----------------------------------------------------------------------------------


@dataclass
class LocustRun:
    name: str
    html: Path
    tally: Tally
    seconds: list[Second]


def run_locust(
    out: Path,
    name: str,
    host: str,
    *,
    users: int,
    duration: float,
    extra: Sequence[str] = (),
    locustfiles: Sequence[Path] = (LOCUSTFILE,),
) -> LocustRun:
    """One headless Locust run against ``host``; its report files go to ``out/name*``."""
    html = out / f"{name}.html"
    tally_path = out / f"{name}-tally.json"
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        ",".join(str(f) for f in locustfiles),
        "--headless",
        "--host",
        host,
        "--csv",
        str(out / name),
        "--csv-full-history",
        "--html",
        str(html),
        "--exit-code-on-error",
        "0",  # failures are results here (fault, overload); a broken run shows as missing files
        "--only-summary",
        "--stop-timeout",
        "5",
        "--scatter-tally",
        str(tally_path),
        *extra,
    ]
    if RAMP_SHAPE not in locustfiles:
        argv += ["-u", str(users), "-r", str(users), "-t", f"{max(1, round(duration))}s"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    log = out / f"{name}-locust.log"
    with open(log, "wb") as log_file:
        try:
            proc = subprocess.run(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                timeout=duration + LOCUST_SLACK_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"locust did not finish within {duration + LOCUST_SLACK_SECONDS:.0f} s; see {log}"
            ) from None
    if proc.returncode != 0 or not html.exists() or not tally_path.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise BenchError(f"locust run {name!r} failed (exit code {proc.returncode}); end of {log}:\n{tail}")
    tally = read_tally(tally_path)
    seconds = steady_seconds(tally)
    if not seconds:
        raise BenchError(f"locust run {name!r} recorded no requests; see {log}")
    return LocustRun(name, html, tally, seconds)


# --- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration: float
    users: int
    out: Path
    p99_target_ms: float


@dataclass
class Result:
    """What a scenario hands back: table rows, notes under the table, and extra JSON."""

    rows: list[Row]
    notes: list[str]
    details: dict[str, Any]
    runs: list[LocustRun]


def scenario_steady(opts: Options) -> Result:
    with started(demo_spec(), opts.out) as dep:
        run = run_locust(opts.out, "steady", dep.root_address, users=opts.users, duration=opts.duration)
    return Result([Row("steady", str(opts.users), summarise(run.seconds))], [], {}, [run])


def ramp_steps(max_users: int) -> list[int]:
    steps, users = [], 1
    while users < max_users:
        steps.append(users)
        users *= 2
    return [*steps, max_users]


def scenario_ramp(opts: Options) -> Result:
    steps = ramp_steps(opts.users)
    step_seconds = max(5.0, opts.duration / len(steps))
    with started(demo_spec(), opts.out) as dep:
        run = run_locust(
            opts.out,
            "ramp",
            dep.root_address,
            users=opts.users,
            duration=step_seconds * len(steps),
            locustfiles=(LOCUSTFILE, RAMP_SHAPE),
            extra=[
                "--scatter-ramp-users",
                ",".join(map(str, steps)),
                "--scatter-ramp-step-seconds",
                str(step_seconds),
            ],
        )
    rows = []
    best: Row | None = None
    keys = sorted(run.tally.seconds)
    for users in steps:
        # Whole seconds at exactly this user count, without the step's first 2 s (spawn, queues settling).
        held = [k for k in keys if run.tally.seconds[k].users_min == run.tally.seconds[k].users_max == users]
        held = held[2:-1] if len(held) > 4 else held[1:]
        if not held:
            continue
        row = Row(f"step {users}", str(users), summarise(run.tally.seconds[k] for k in held))
        rows.append(row)
        p99 = row.summary.percentiles_ms["p99"]
        if p99 <= opts.p99_target_ms and (best is None or row.summary.throughput > best.summary.throughput):
            best = row
    if best is None:
        notes = [f"no step kept p99 under {opts.p99_target_ms:g} ms"]
        knee = None
    else:
        knee = {"users": int(best.users), "throughput_rps": round(best.summary.throughput, 1)}
        notes = [
            f"highest throughput with p99 <= {opts.p99_target_ms:g} ms: {best.summary.throughput:.0f} req/s "
            f"at {best.users} users (p99 {best.summary.percentiles_ms['p99']:.1f} ms)"
        ]
    return Result(rows, notes, {"steps": steps, "step_seconds": step_seconds, "knee": knee}, [run])


def scenario_tail(opts: Options) -> Result:
    probe = ["--scatter-workload", "probe"]
    with started(probe_spec(TAIL_SHARDS, TAIL_REPLICAS, leaf_flags=TAIL_LEAF_FLAGS), opts.out) as dep:

        def hedging_off(doc: dict[str, Any]) -> None:
            doc.setdefault("hedging", {})["enabled"] = False

        with extra_root(dep, "root-no-hedging", hedging_off) as unhedged:
            off = run_locust(
                opts.out, "tail-hedging-off", unhedged.address, users=opts.users, duration=opts.duration, extra=probe
            )
        on = run_locust(
            opts.out, "tail-hedging-on", dep.root_address, users=opts.users, duration=opts.duration, extra=probe
        )
    rows = [
        Row("hedging off", str(opts.users), summarise(off.seconds)),
        Row("hedging on", str(opts.users), summarise(on.seconds)),
    ]
    a, b = rows[0].summary.percentiles_ms, rows[1].summary.percentiles_ms
    ratios = {q: a[q] / b[q] for q in ("p50", "p99", "p99.9")}
    notes = [
        f"leaves: {TAIL_SHARDS} shards x {TAIL_REPLICAS} replicas, flags {' '.join(TAIL_LEAF_FLAGS)}",
        "hedging off / on: " + ", ".join(f"{q} {r:.1f}x" for q, r in ratios.items()),
        f"extra leaf calls with hedging on: {rows[1].summary.hedge_rate * 100:.1f}% "
        f"(hedges won {rows[1].summary.hedges_won * 100:.2f}% of shard calls)",
    ]
    details = {"leaf_flags": list(TAIL_LEAF_FLAGS), "off_over_on": {q: round(r, 2) for q, r in ratios.items()}}
    return Result(rows, notes, details, [off, on])


FAULT_VICTIM = "leaf-1-0"


def scenario_fault(opts: Options) -> Result:
    events: dict[str, float] = {}
    with started(demo_spec(), opts.out) as dep:
        stop = threading.Event()

        def inject() -> None:
            if stop.wait(opts.duration / 3):
                return
            events["kill"] = time.time()
            dep.kill(FAULT_VICTIM)  # SIGKILL, and held down until revive
            if stop.wait(opts.duration / 3):
                return
            events["revive_start"] = time.time()
            dep.revive(FAULT_VICTIM)  # returns once it is SERVING again
            events["revived"] = time.time()

        injector = threading.Thread(target=inject, name="fault-injector", daemon=True)
        injector.start()
        try:
            run = run_locust(opts.out, "fault", dep.root_address, users=opts.users, duration=opts.duration)
        finally:
            stop.set()
            injector.join()
    if "revived" not in events:
        raise BenchError("the fault was not injected and undone within the run; raise --duration")
    seconds = run.tally.seconds
    kill, revived = int(events["kill"]), int(events["revived"])
    keys = sorted(seconds)[WARMUP_SECONDS:-1]
    phases = {
        "before kill": [seconds[k] for k in keys if k < kill],
        "replica down": [seconds[k] for k in keys if kill <= k <= revived],
        "after revive": [seconds[k] for k in keys if k > revived],
    }
    rows = [Row(label, str(opts.users), summarise(part)) for label, part in phases.items() if part]
    rows.append(Row("whole run", str(opts.users), summarise(run.seconds)))
    notes = [
        f"{FAULT_VICTIM} (shard 1, replica 0) SIGKILLed at {events['kill'] - min(seconds):.1f} s, "
        f"restarted at {events['revive_start'] - min(seconds):.1f} s, SERVING again after "
        f"{events['revived'] - events['revive_start']:.1f} s"
    ]
    return Result(rows, notes, {"victim": FAULT_VICTIM, "events": events}, [run])


def scenario_overload(opts: Options) -> Result:
    with started(demo_spec(max_in_flight=OVERLOAD_MAX_IN_FLIGHT), opts.out) as dep:
        # Capacity: closed loop with exactly max_in_flight users, so nothing is shed.
        calibration = run_locust(
            opts.out,
            "overload-calibration",
            dep.root_address,
            users=OVERLOAD_MAX_IN_FLIGHT,
            duration=CALIBRATION_SECONDS,
        )
        capacity = summarise(calibration.seconds).throughput
        offered = OVERLOAD_FACTOR * capacity
        per_user = offered / opts.users
        run = run_locust(
            opts.out,
            "overload",
            dep.root_address,
            users=opts.users,
            duration=opts.duration,
            extra=["--scatter-rate", f"{per_user:.4f}"],
        )
    base, over = summarise(calibration.seconds), summarise(run.seconds)
    shed = over.failures.get("RESOURCE_EXHAUSTED", 0)
    attempted = over.requests / over.seconds
    rows = [
        Row(f"capacity (closed loop, {OVERLOAD_MAX_IN_FLIGHT} users)", str(OVERLOAD_MAX_IN_FLIGHT), base),
        Row(f"offered {offered:.0f} req/s", str(opts.users), over),
    ]
    notes = [
        f"root max_in_flight = {OVERLOAD_MAX_IN_FLIGHT}; offered {offered:.0f} req/s "
        f"({OVERLOAD_FACTOR:g}x the measured {capacity:.0f}), sent {attempted:.0f} req/s",
        f"shed (RESOURCE_EXHAUSTED): {shed / max(over.requests, 1) * 100:.1f}% of requests, "
        f"answered in {over.failure_p50_ms:.2f} ms (p50)",
        f"admitted: {over.throughput:.0f} req/s, p99 {over.percentiles_ms['p99']:.1f} ms "
        f"against {base.percentiles_ms['p99']:.1f} ms at capacity",
    ]
    details = {
        "max_in_flight": OVERLOAD_MAX_IN_FLIGHT,
        "capacity_rps": round(capacity, 1),
        "offered_rps": round(offered, 1),
        "sent_rps": round(attempted, 1),
        "shed_fraction": round(shed / max(over.requests, 1), 4),
    }
    return Result(rows, notes, details, [calibration, run])


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Options], Result]
    help: str
    users: int
    duration: float


SCENARIOS: dict[str, Scenario] = {
    "steady": Scenario(scenario_steady, "demo search (4x2), fixed closed-loop users", 8, 60.0),
    "ramp": Scenario(
        scenario_ramp,
        "demo search, users doubling up to --users in equal steps over --duration; finds the knee",
        32,
        60.0,
    ),
    "tail-locust": Scenario(
        scenario_tail,
        "probe leaves 8x2 with 1% stalls of 100 ms through Locust: hedging off, then on (--duration each)",
        1,
        30.0,
    ),
    "fault": Scenario(scenario_fault, "demo search; a leaf replica killed at 1/3 of the run, revived at 2/3", 8, 60.0),
    "overload": Scenario(
        scenario_overload,
        f"demo search, max_in_flight={OVERLOAD_MAX_IN_FLIGHT}, offered {OVERLOAD_FACTOR:g}x the measured capacity",
        OVERLOAD_USERS_DEFAULT,
        40.0,
    ),
}


# --- the command --------------------------------------------------------------------------------


def results_dir(out: Path | None, scenario: str) -> Path:
    if out is None:
        out = Path("bench-results") / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def run_scenario(name: str, argv: Sequence[str]) -> int:
    scenario = SCENARIOS[name]
    parser = argparse.ArgumentParser(prog=f"scatter bench {name}", description=scenario.help)
    parser.add_argument(
        "--duration", type=float, default=scenario.duration, help=f"seconds (default {scenario.duration:g})"
    )
    parser.add_argument("--users", type=int, default=scenario.users, help=f"Locust users (default {scenario.users})")
    parser.add_argument("--out", type=Path, help="results folder (default bench-results/SCENARIO-TIMESTAMP)")
    parser.add_argument(
        "--p99-target-ms",
        type=float,
        default=RAMP_P99_TARGET_MS,
        help=f"ramp: p99 target (default {RAMP_P99_TARGET_MS:g})",
    )
    args = parser.parse_args(argv)
    if args.duration < WARMUP_SECONDS + 3 or args.users < 1:
        parser.error(f"--duration must be >= {WARMUP_SECONDS + 3} and --users >= 1")
    if importlib.util.find_spec("locust") is None:
        print(f'scatter bench {name}: Locust is not installed: pip install -e ".[loadtest]"', file=sys.stderr)
        return 1
    out = results_dir(args.out, name)
    opts = Options(args.duration, args.users, out, args.p99_target_ms)
    started = time.time()
    info = machine()
    print(
        f"scatter bench {name}: {scenario.help}; {args.users} users, {args.duration:g} s; results in {out}", flush=True
    )

    from scatter.runtime import ConfigError, StartupError

    try:
        result = scenario.run(opts)
    except (BenchError, StartupError, ConfigError, OSError) as exc:
        print(f"scatter bench {name}: the run could not be made: {exc}", file=sys.stderr)
        return 1
    table = format_table(result.rows)
    print()
    print(table)
    for note in result.notes:
        print(f"- {note}")
    summary = {
        "scenario": name,
        "description": scenario.help,
        "command": "scatter bench " + " ".join([name, *argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "users": args.users,
        "duration": args.duration,
        "machine": info,
        "rows": [{"label": r.label, "users": r.users, **r.summary.to_json()} for r in result.rows],
        "notes": result.notes,
        "details": result.details,
        "reports": [str(run.html.relative_to(out)) for run in result.runs],
        "table_markdown": table,
    }
    (out / "summary.json").write_text(json.dumps(_finite(summary), indent=2, allow_nan=False))
    print(f"\nreport: {', '.join(str(run.html) for run in result.runs)}\nsummary: {out / 'summary.json'}")
    return 0


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: strict JSON has no NaN (a percentile of no requests)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
