"""The fault benchmark: what clients see while leaves hang, die and restart under steady load.

    scatter bench faults [--fault-seconds 5] [--steady-seconds 3] [--after-seconds 5] [--repeats 1] [--json PATH]

The probe application, 4 shards x 2 replicas, leaves working about 2 ms a
call (--base-latency-ms); the root's config sets only
``default_deadline_ms = 500`` and ``min_coverage = 0.5``, everything else
is the default, the supervisor's too (it restarts a killed leaf after
0.5 s). One closed loop keeps 4 requests in flight for the whole schedule,
with no client deadline (the root's 500 ms default applies) and each
answer's latency measured by the client. Each repeat runs, in order, one
phase per fault, each on other shards than the one before:

    replica-hung    SIGSTOP leaf-0-0 for --fault-seconds, then SIGCONT
    shard-hung      SIGSTOP both replicas of shard 1, then SIGCONT
    replica-killed  SIGKILL leaf-2-1; the supervisor restarts it
    shard-killed    SIGKILL both replicas of shard 3; the supervisor restarts them
    rolling         SIGTERM every leaf in turn, the next once the last one
                    is back and answering its health check SERVING

A phase is three windows: ``steady`` (--steady-seconds before the fault,
after waiting until every replica carries traffic), ``fault`` (from the
first signal until every faulty replica answers health SERVING again:
after SIGCONT, or once the restarted process is up) and ``after``
(--after-seconds more). Per window: requests, errors by code, full and
partial answers and the shards named missing, p50/p99 of the answers and
the answers later than deadline + 10 ms. Per faulty replica, from the
root's /metrics (polled every --metrics-interval s) and the answers:

- ejected after: fault -> the first poll with ``scatter_root_replica_ejected`` 1;
- last used after: fault -> the last poll, before it is SERVING again, at
  which ``scatter_root_replica_attempts_total`` of that replica had grown
  (the root stopped starting calls on it by then, to a poll interval), and
  the attempts started on it in that time (0: never used once faulty);
- serving after: fault -> its first SERVING answer to grpc.health.v1
  Health.Check on its own address, polled every 50 ms from the benchmark;
- traffic after: that SERVING -> the first answer whose shard report names
  it as the replica that answered.

Then the goals of issue 18, each met or missed per repeat (a benchmark, not
a test: one run's numbers decide nothing on a shared machine):

- one replica hung or killed: every request fully covered, zero errors;
- a whole shard hung or killed (min_coverage 0.5 is below the lost 0.25):
  zero client errors, every partial answer naming that shard, and only it;
- a recovered replica carries traffic within 2 s of answering health again;
- a rolling restart of every leaf: zero errors, full coverage.

The phases share one deployment and one root, so what a root remembers of a
replica (its ejection count decays with successes) carries from a repeat to
the next; the shards differ within a repeat so that no phase starts on a
replica the last one just hurt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import statistics
import sys
import threading
import time
import tomllib
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from loadtest.closed_loop import run
from loadtest.deployments import probe_spec
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2, shard_pb2
from scatter.runtime import Child, Deployment, check_health

SHARDS = 4
REPLICAS = 2
IN_FLIGHT = 4
ROOT = {"default_deadline_ms": 500, "min_coverage": 0.5}  # the measurement; the rest is default
DEADLINE = ROOT["default_deadline_ms"] / 1000
LATE = DEADLINE + 0.010  # "answers later than deadline + 10 ms"
TRAFFIC_GOAL = 2.0  # s from SERVING again to carrying traffic (issue 18)
HEALTH_INTERVAL = 0.05  # s between the benchmark's own health checks of a faulty replica
HEALTH_TIMEOUT = 0.2  # s: a hung leaf never answers; don't let one check hide the next
RECOVERY_TIMEOUT = 60.0  # s for a restarted leaf to be SERVING: a cold Python on a busy machine
# s to wait before a phase (and after the last) until every replica carries traffic: longer than
# the root's default base ejection time (30 s, Envoy's), so that a replica ejected in one phase is
# back before the next phase starts and its time to carry traffic is measured, however long.
SETTLE_SECONDS = 45.0

Kind = Literal["hang", "kill", "roll"]
DONE: dict[Kind, str] = {"hang": "hung", "kill": "killed", "roll": "restarted"}


@dataclass(frozen=True)
class Phase:
    name: str
    kind: Kind
    victims: tuple[str, ...]  # children of the deployment, leaf-SHARD-REPLICA
    shard: int | None = None  # the shard lost whole, if any


def phases() -> list[Phase]:
    every_leaf = tuple(f"leaf-{s}-{r}" for s in range(SHARDS) for r in range(REPLICAS))
    return [
        Phase("replica-hung", "hang", ("leaf-0-0",)),
        Phase("shard-hung", "hang", ("leaf-1-0", "leaf-1-1"), shard=1),
        Phase("replica-killed", "kill", ("leaf-2-1",)),
        Phase("shard-killed", "kill", ("leaf-3-0", "leaf-3-1"), shard=3),
        Phase("rolling", "roll", every_leaf),
    ]


# -- what the benchmark observes, each in its own thread ------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One call: when it was sent (perf_counter), its latency, code and, if answered, its coverage."""

    sent: float
    latency: float
    code: str
    answered: int = 0
    total: int = 0
    missing: tuple[int, ...] = ()
    missing_status: tuple[str, ...] = ()  # ShardStatus of each missing shard, without SHARD_STATUS_
    missing_reasons: tuple[str, ...] = ()  # the root's reason for each missing shard
    replicas: tuple[str, ...] = ()  # per shard, the address whose answer was used ("" if none)

    @property
    def arrived(self) -> float:
        return self.sent + self.latency


class Answers:
    """Every call of the closed loop, as an ``Observer`` of it (appended from the loop's thread)."""

    def __init__(self) -> None:
        self.all: list[Answer] = []

    def __call__(self, sent: float, latency: float, code: str, response: root_pb2.QueryResponse | None) -> None:
        if response is None:
            self.all.append(Answer(sent, latency, code))
            return
        coverage = response.coverage
        replicas = tuple(r.replica if r.status == shard_pb2.SHARD_STATUS_OK else "" for r in response.shards)
        missing = tuple(m.shard_index for m in coverage.missing)
        status = tuple(shard_pb2.ShardStatus.Name(m.status).removeprefix("SHARD_STATUS_") for m in coverage.missing)
        reasons = tuple(m.reason for m in coverage.missing)
        self.all.append(
            Answer(sent, latency, code, coverage.answered, coverage.total, missing, status, reasons, replicas)
        )

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.all if start <= a.sent < end]


Sample = tuple[float, dict[str, float], dict[str, float]]  # (time, attempts by address, ejected by address)
_SERIES = re.compile(r"^(scatter_root_replica_(?:attempts_total|ejected))\{([^}]*)\} (\S+)$", re.M)
_REPLICA_LABEL = re.compile(r'replica="([^"]*)"')


def scrape_replicas(metrics_address: str) -> tuple[dict[str, float], dict[str, float]]:
    """The root's leaf calls started and ejected gauge, per replica address."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=2) as response:
        text = response.read().decode()
    attempts: dict[str, float] = {}
    ejected: dict[str, float] = {}
    for name, labels, value in _SERIES.findall(text):
        replica = _REPLICA_LABEL.search(labels)
        if replica:
            (attempts if name.endswith("_total") else ejected)[replica.group(1)] = float(value)
    return attempts, ejected


class Poller:
    """Runs ``poll`` every ``interval`` seconds in a thread until stopped; subclasses keep what it sees."""

    def __init__(self, interval: float, name: str) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def poll(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            self.poll()
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class MetricsPoller(Poller):
    def __init__(self, metrics_address: str, interval: float) -> None:
        super().__init__(interval, "faults-metrics")
        self.address = metrics_address
        self.samples: list[Sample] = []
        self.failed = 0

    def poll(self) -> None:
        try:
            attempts, ejected = scrape_replicas(self.address)
        except OSError:
            self.failed += 1
            return
        self.samples.append((time.perf_counter(), attempts, ejected))

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


class HealthWatch(Poller):
    """The health status of one leaf, asked every 50 ms: (sent, replied, status) of each check."""

    def __init__(self, address: str) -> None:
        super().__init__(HEALTH_INTERVAL, f"faults-health-{address}")
        self.address = address
        self.checks: list[tuple[float, float, str]] = []

    def poll(self) -> None:
        sent = time.perf_counter()
        status = check_health(self.address, timeout=HEALTH_TIMEOUT)
        self.checks.append((sent, time.perf_counter(), status))

    def serving_since(self, since: float) -> float | None:
        """When the first check sent at or after ``since`` came back SERVING."""
        return next((replied for sent, replied, status in self.checks if sent >= since and status == "SERVING"), None)

    def wait_serving(self, since: float, timeout: float = RECOVERY_TIMEOUT) -> float:
        deadline = time.perf_counter() + timeout
        while (at := self.serving_since(since)) is None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.address} not SERVING {timeout:.0f} s after its fault")
            time.sleep(HEALTH_INTERVAL / 2)
        return at


# -- the schedule ----------------------------------------------------------------------------------


@dataclass
class Victim:
    name: str
    address: str
    shard: int
    fault_at: float  # the signal that made it faulty
    undone_at: float  # SIGCONT, or the killed process gone (the supervisor then restarts it)
    serving_at: float  # its first SERVING health answer after undone_at


@dataclass
class PhaseRun:
    phase: Phase
    repeat: int
    steady_at: float
    fault_at: float
    recovered_at: float  # every victim SERVING again
    end: float
    victims: list[Victim] = field(default_factory=list)


def shard_of(name: str) -> int:
    return int(name.split("-")[1])


def wait_all_in_use(dep: Deployment, poller: MetricsPoller, timeout: float) -> bool:
    """Wait until every leaf is SERVING and every replica's attempts grew: the steady state."""
    leaves = [c for n, c in dep.children.items() if n.startswith("leaf-")]
    deadline = time.perf_counter() + timeout
    while any(check_health(c.address) != "SERVING" for c in leaves):
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.1)
    first = poller.latest()
    while time.perf_counter() < deadline:
        time.sleep(poller.interval)
        now = poller.latest()
        if first is None:
            first = now
            continue
        if now is not None and all(now[1].get(c.address, 0) > first[1].get(c.address, 0) for c in leaves):
            return True
    return False


def settle(dep: Deployment, poller: MetricsPoller, timeout: float, when: str) -> None:
    began = time.perf_counter()
    if wait_all_in_use(dep, poller, timeout):
        print(f"  {when}: every replica carries traffic ({time.perf_counter() - began:.1f} s)", flush=True)
    else:
        print(f"  {when}: not every replica carried traffic within {timeout:g} s; going on", flush=True)


def run_phase(dep: Deployment, poller: MetricsPoller, phase: Phase, repeat: int, args: argparse.Namespace) -> PhaseRun:
    settle(dep, poller, args.settle_seconds, f"before {phase.name}")
    steady_at = time.perf_counter()
    time.sleep(args.steady_seconds)
    children = {name: dep.children[name] for name in phase.victims}
    victims: list[Victim] = []
    fault_at = time.perf_counter()
    if phase.kind == "roll":
        for name, child in children.items():
            with HealthWatch(child.address) as watch:
                signalled = time.perf_counter()
                dep.kill(name, signal.SIGTERM, restart=True)  # returns once it has exited (drained)
                gone = time.perf_counter()
                victims.append(Victim(name, child.address, shard_of(name), signalled, gone, watch.wait_serving(gone)))
    else:
        with contextlib.ExitStack() as stack:
            watches = {name: stack.enter_context(HealthWatch(child.address)) for name, child in children.items()}
            signalled_at: dict[str, float] = {}
            for name in children:
                signalled_at[name] = time.perf_counter()
                if phase.kind == "hang":
                    dep.pause(name)
                else:
                    dep.kill(name, signal.SIGKILL, restart=True)  # returns once it is gone
            if phase.kind == "hang":
                time.sleep(max(0.0, fault_at + args.fault_seconds - time.perf_counter()))
            undone: dict[str, float] = {}
            for name in children:
                if phase.kind == "hang":
                    dep.resume(name)
                undone[name] = time.perf_counter()
            for name, child in children.items():
                serving = watches[name].wait_serving(undone[name])
                victims.append(Victim(name, child.address, shard_of(name), signalled_at[name], undone[name], serving))
    recovered_at = max(v.serving_at for v in victims)
    time.sleep(max(0.0, recovered_at + args.after_seconds - time.perf_counter()))
    return PhaseRun(phase, repeat, steady_at, fault_at, recovered_at, time.perf_counter(), victims)


# -- the numbers -----------------------------------------------------------------------------------


@dataclass
class WindowStats:
    phase: str
    repeat: int
    window: str
    seconds: float
    requests: int
    errors: dict[str, int]
    full: int
    partial: int
    missing: dict[str, int]  # "SHARD STATUS" -> answers that named that shard missing with that status
    p50_ms: float
    p99_ms: float
    late: int


def window_stats(phase: str, repeat: int, window: str, start: float, end: float, answers: Answers) -> WindowStats:
    inside = answers.between(start, end)
    ok = [a for a in inside if a.code == "OK"]
    latencies = np.array([a.latency for a in ok])
    missing: Counter[str] = Counter(
        f"{shard} {status}" for a in ok for shard, status in zip(a.missing, a.missing_status, strict=True)
    )

    def pct(q: float) -> float:
        return float(np.quantile(latencies, q)) * 1000 if len(latencies) else float("nan")

    return WindowStats(
        phase,
        repeat,
        window,
        end - start,
        len(inside),
        dict(Counter(a.code for a in inside if a.code != "OK")),
        sum(a.answered == a.total for a in ok),
        sum(a.answered < a.total for a in ok),
        dict(sorted(missing.items())),
        pct(0.5),
        pct(0.99),
        sum(a.latency > LATE for a in inside),
    )


@dataclass
class VictimStats:
    phase: str
    repeat: int
    replica: str  # child name
    address: str
    ejected_after: float | None  # s from the fault; None: never ejected while faulty
    last_used_after: float | None  # s from the fault to the last poll with more attempts; None: none
    attempts_while_faulty: float
    serving_after: float
    traffic_after: float | None  # s from SERVING to the first answer it gave; None: none in the run


def victim_stats(pr: PhaseRun, v: Victim, samples: Sequence[Sample], answers: Answers) -> VictimStats:
    # The polls from the last one before the fault to the first SERVING again.
    before = [s for s in samples if s[0] <= v.fault_at]
    during = [s for s in samples if v.fault_at < s[0] <= v.serving_at]
    ejected_after = next((s[0] - v.fault_at for s in during if s[2].get(v.address, 0) >= 1), None)
    last_used_after = None
    attempts = 0.0
    previous = before[-1] if before else None
    for s in during:
        if previous is not None:
            grew = s[1].get(v.address, 0) - previous[1].get(v.address, 0)
            if grew > 0:
                attempts += grew
                last_used_after = s[0] - v.fault_at
        previous = s
    gave = (a for a in answers.all if a.arrived >= v.serving_at and a.replicas[v.shard : v.shard + 1] == (v.address,))
    first = next(gave, None)
    # Searched past the phase's end: the next phase waits until every replica carries traffic.
    traffic_after = first.arrived - v.serving_at if first is not None else None
    return VictimStats(
        pr.phase.name,
        pr.repeat,
        v.name,
        v.address,
        ejected_after,
        last_used_after,
        attempts,
        v.serving_at - v.fault_at,
        traffic_after,
    )


def goals_of(pr: PhaseRun, answers: Answers, victims: Sequence[VictimStats]) -> dict[str, bool]:
    phase = pr.phase
    inside = answers.between(pr.steady_at, pr.end)
    errors = sum(a.code != "OK" for a in inside)
    ok = [a for a in inside if a.code == "OK"]
    met: dict[str, bool] = {}
    if phase.kind == "roll":
        met["rolling restart of every leaf: zero errors, full coverage"] = errors == 0 and all(
            a.answered == a.total for a in ok
        )
    elif phase.shard is None:
        met[f"one replica {DONE[phase.kind]}: every request fully covered, zero errors"] = errors == 0 and all(
            a.answered == a.total for a in ok
        )
    else:
        met[f"a whole shard {DONE[phase.kind]}: zero errors, every partial answer names that shard"] = (
            errors == 0 and all(set(a.missing) <= {phase.shard} and a.answered + len(a.missing) == a.total for a in ok)
        )
    met[f"recovered replica carries traffic within {TRAFFIC_GOAL:g} s of SERVING"] = all(
        v.traffic_after is not None and v.traffic_after <= TRAFFIC_GOAL for v in victims
    )
    return met


# -- printing --------------------------------------------------------------------------------------


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def window_line(w: WindowStats) -> str:
    errors = ", ".join(f"{code} {n}" for code, n in sorted(w.errors.items())) or "0"
    missing = ", ".join(f"{shard}: {n}" for shard, n in w.missing.items()) or "-"
    return (
        f"| {w.phase} | {w.repeat} | {w.window} | {w.seconds:.1f} | {w.requests} | {errors} | {w.full} | "
        f"{w.partial} | {missing} | {w.p50_ms:.1f} | {w.p99_ms:.1f} | {w.late} |"
    )


def victim_line(v: VictimStats) -> str:
    return (
        f"| {v.phase} | {v.repeat} | {v.replica} | {fmt_s(v.ejected_after)} | {fmt_s(v.last_used_after)} | "
        f"{v.attempts_while_faulty:.0f} | {v.serving_after:.2f} | {fmt_s(v.traffic_after)} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter bench faults", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fault-seconds", type=float, default=5.0, help="how long a hang lasts (default 5)")
    parser.add_argument("--steady-seconds", type=float, default=3.0, help="steady load before each fault")
    parser.add_argument("--after-seconds", type=float, default=5.0, help="load after every victim is SERVING")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--base-latency-ms", type=float, default=2.0, help="each leaf call's work (default 2)")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=SETTLE_SECONDS,
        help=f"at most this long before each phase, until every replica carries traffic (default {SETTLE_SECONDS:g})",
    )
    parser.add_argument("--answers", type=Path, help="also write every answer, one JSON object a line")
    parser.add_argument("--metrics-interval", type=float, default=0.05, help="s between /metrics polls")
    parser.add_argument("--only", nargs="*", choices=[p.name for p in phases()], help="run only these phases")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    parser.add_argument(
        "--client-deadline-ms",
        type=float,
        help="each request's client deadline (default none: the root's 500 ms applies); late answers are then errors",
    )
    parser.add_argument(
        "--root-set",
        action="append",
        default=[],
        metavar="KEY=TOML",
        help="another [root] setting, e.g. partial_coverage_wait=false (repeatable)",
    )
    args = parser.parse_args(argv)
    root_config: dict[str, object] = dict(ROOT)
    for item in args.root_set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--root-set wants KEY=VALUE, got {item!r}")
        try:
            root_config[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as exc:
            parser.error(f"--root-set {item!r}: the value is not TOML: {exc}")
    client_timeout = None if args.client_deadline_ms is None else args.client_deadline_ms / 1000
    if args.repeats < 1 or min(args.fault_seconds, args.steady_seconds, args.after_seconds) < 0:
        parser.error("--repeats must be >= 1 and the durations >= 0")
    schedule = [p for p in phases() if not args.only or p.name in args.only]

    spec = probe_spec(SHARDS, REPLICAS, leaf_flags=["--base-latency-ms", str(args.base_latency_ms)], root=root_config)
    probe = probe_pb2.ProbeRequest()
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe)
    answers = Answers()
    stop = threading.Event()

    def requests() -> Iterator[root_pb2.QueryRequest]:
        while not stop.is_set():
            yield request

    runs: list[PhaseRun] = []
    with Deployment(spec) as dep:
        root: Child = dep.children["root"]
        run(root.address, request, IN_FLIGHT, 2.0)  # warm up channels and the latency windows
        print(
            f"{SHARDS} shards x {REPLICAS} replicas of the probe leaf (~{args.base_latency_ms:g} ms a call), "
            f"root {root_config}, {IN_FLIGHT} in flight, "
            + ("no client deadline" if client_timeout is None else f"client deadline {args.client_deadline_ms:g} ms")
            + f"; late = over {LATE * 1000:.0f} ms",
            flush=True,
        )
        load = threading.Thread(
            target=run,
            args=(root.address, requests(), IN_FLIGHT),
            kwargs={"timeout": client_timeout, "observe": answers},
            name="faults-load",
            daemon=True,
        )
        with MetricsPoller(root.metrics_address, args.metrics_interval) as poller:
            load.start()
            try:
                for repeat in range(1, args.repeats + 1):
                    for phase in schedule:
                        runs.append(run_phase(dep, poller, phase, repeat, args))
                        print(f"  {phase.name} (repeat {repeat}) done", flush=True)
                settle(dep, poller, args.settle_seconds, "after the last phase")
            finally:
                stop.set()
                load.join(timeout=10)
        if load.is_alive():
            print("faults: the load did not end within 10 s of the schedule (a call without an answer?)")
        samples = list(poller.samples)
        if poller.failed:
            print(f"faults: {poller.failed} /metrics polls failed", file=sys.stderr)
    report(runs, answers, samples, args.json, root_config)
    if args.answers is not None:
        began = runs[0].steady_at if runs else 0.0
        with args.answers.open("w") as out:
            for a in answers.all:
                out.write(json.dumps({**asdict(a), "sent": a.sent - began}) + "\n")
    return 0


def timeline(pr: PhaseRun, began: float) -> dict[str, Any]:
    """A phase's moments, in seconds from ``began`` (the first phase's steady window)."""
    return {
        "phase": pr.phase.name,
        "repeat": pr.repeat,
        **{key: getattr(pr, key) - began for key in ("steady_at", "fault_at", "recovered_at", "end")},
        "victims": [
            {
                "name": v.name,
                "address": v.address,
                **{k: getattr(v, k) - began for k in ("fault_at", "undone_at", "serving_at")},
            }
            for v in pr.victims
        ],
    }


def report(
    runs: Sequence[PhaseRun],
    answers: Answers,
    samples: Sequence[Sample],
    json_path: Path | None,
    root_config: dict[str, object] | None = None,
) -> None:
    windows: list[WindowStats] = []
    victims: list[VictimStats] = []
    goals: dict[str, list[bool]] = {}
    for pr in runs:
        name = pr.phase.name
        windows.append(window_stats(name, pr.repeat, "steady", pr.steady_at, pr.fault_at, answers))
        windows.append(window_stats(name, pr.repeat, "fault", pr.fault_at, pr.recovered_at, answers))
        windows.append(window_stats(name, pr.repeat, "after", pr.recovered_at, pr.end, answers))
        mine = [victim_stats(pr, v, samples, answers) for v in pr.victims]
        victims += mine
        for goal, this in goals_of(pr, answers, mine).items():
            goals.setdefault(f"{name}: {goal}", []).append(this)
    print(
        "\n| phase | repeat | window | s | requests | errors | full | partial | missing (shard status: answers) "
        "| p50 ms | p99 ms | late |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for w in windows:
        print(window_line(w))
    print(
        "\nper faulty replica, seconds: ejected and last used after its fault (by the root's /metrics), "
        "attempts started on it meanwhile, SERVING again after the fault, first answer after SERVING"
    )
    print(
        "\n| phase | repeat | replica | ejected after | last used after | attempts while faulty | serving after "
        "| traffic after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for v in victims:
        print(victim_line(v))
    rolling = [v.traffic_after for v in victims if v.phase == "rolling" and v.traffic_after is not None]
    if rolling:
        print(
            f"\nrolling restart, traffic after SERVING: median {statistics.median(rolling):.2f} s, "
            f"max {max(rolling):.2f} s over {len(rolling)} leaves"
        )
    print("\n| goal | met in repeats |")
    print("|---|---|")
    for goal, met in goals.items():
        print(f"| {goal} | {sum(met)}/{len(met)} |")
    if json_path is not None:
        began = runs[0].steady_at if runs else 0.0
        document: dict[str, Any] = {
            "root": root_config if root_config is not None else ROOT,
            "schedule": [timeline(pr, began) for pr in runs],
            "windows": [asdict(w) for w in windows],
            "victims": [asdict(v) for v in victims],
            "goals": {goal: met for goal, met in goals.items()},
        }
        json_path.write_text(json.dumps(document, indent=1) + "\n")
