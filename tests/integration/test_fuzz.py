"""The fuzz suite: hostile inputs against real processes, and what must hold after them (issue 13).

One deployment per module, the probe application with a root over 2 shards x
2 replicas and the probe merge, on 127.0.0.1. Inputs (``tests/_fuzz.py``):
malformed, truncated and bit-flipped bodies on Root.Query, Leaf.Execute (the
leaves' and the root's own) and Merge.Merge, sent as raw bytes; odd and huge
type URLs; sizes at ``max_message_bytes``; no, zero, tiny and huge deadlines;
odd ``traceparent`` values, large, binary and many headers; and mutated root
configuration files. After each batch:

- every answer's code is one the service documents (docs/operations.md,
  "Status codes by service"), its message short, without a traceback or an
  internal address; an OK answer is right (the probe's sum, from the request
  as protobuf reads it); a body that does not parse, or a type URL over the
  limit, is only ever refused (never OK, UNAVAILABLE or UNKNOWN); every call
  ends by its deadline (10 s of grace, then it is a hang);
- every process still runs (the supervisor would restart a crashed one:
  its restart count must stay 0) and answers a known-good request correctly;
- no process's log holds "Traceback" (or grpc's "Exception calling
  application");
- at the end, no process's RSS is over twice its start plus 50 MB.

A configuration file is refused with one line naming the key, by the
validation ``scatter root`` runs (``root.config.load_root_config``), in
process for speed; a sample goes through the real command (exit status 2,
that line, no traceback), and a few accepted files start a real root.

Seeded: ``SCATTER_FUZZ_SEED`` (default 13) fixes every input; a failure
prints the seed and the inputs that failed. In CI about 2,000 inputs;
``SCATTER_FUZZ_LONG=1 python -m pytest -m slow tests/integration/test_fuzz.py``
runs 20,000 (docs/operations.md, "Fuzzing").
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from loadtest.procfs import memory_kib
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, merge_pb2, root_pb2, shard_pb2
from root.config import load_root_config
from root.errors import ConfigError
from root.server import build_policies
from scatter.runtime import Deployment
from scatter_common.payload import MAX_TYPE_URL_LENGTH
from tests import _fuzz as fuzz
from tests._cluster import Client, probe_cluster
from tests._procs import REPO, START_TIMEOUT, Proc, child_env, run

SHARDS = 2
LIMIT = 64 * 1024  # the root's and the leaves' max_message_bytes: near-limit bodies stay cheap
MERGE_LIMIT = 4 * 1024 * 1024  # the merge keeps the SDK's default
SEED = fuzz.seed_from_environment()
LONG = os.environ.get("SCATTER_FUZZ_LONG", "") not in ("", "0")
BATCH = 250  # calls between two checks of every process
CONCURRENCY = 24

# The codes each service answers with: read from the table in docs/operations.md ("Status codes by
# service"), so the suite checks what the page promises. INTERNAL is a handler's bug (logged with a
# traceback) or the root's: the traceback check catches those.
COLUMNS = {
    "Root.Query": (fuzz.QUERY, "root"),
    "Leaf.Execute of a root": (fuzz.EXECUTE, "root"),
    "Leaf.Execute (SDK leaf)": (fuzz.EXECUTE, "leaf"),
    "Merge.Merge (SDK merge)": (fuzz.MERGE, "merge"),
}


def documented_codes() -> dict[tuple[str, str], frozenset[str]]:
    """(method, kind of process) -> the codes docs/operations.md lists for it (a "-" cell: not that one)."""
    text = (REPO / "docs" / "operations.md").read_text()
    table = text.split("## Status codes by service", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("|")
    ]
    header, body = rows[0], rows[2:]
    codes: dict[tuple[str, str], set[str]] = {COLUMNS[name]: set() for name in header[1:]}
    for row in body:
        for name, cell in zip(header[1:], row[1:], strict=True):
            if cell != "-":
                codes[COLUMNS[name]].add(row[0])
    return {key: frozenset(value) for key, value in codes.items()}


DOCUMENTED = documented_codes()
LOG_ALARMS = ("Traceback", "Exception calling application", "Exception deserializing", "Exception serializing")
MAX_DETAILS = 1000  # characters of a status message: gRPC carries it in the 8 KiB of trailing metadata

# (Root.Query + the root's Leaf.Execute, the leaves, the merge): calls in CI; the long run has ten times as many.
GROUPS = {"root": 1050, "leaves": 500, "merge": 300}
CONFIGS = 150  # config mutations in CI (so ~2,000 inputs in all)
COMMANDS = (6, 3)  # of them through the real `scatter root`: refused, accepted
LONG_FACTOR = 10

SIZES = [
    pytest.param(1, id="ci"),
    pytest.param(
        LONG_FACTOR,
        id="long",
        marks=[
            pytest.mark.slow,
            pytest.mark.timeout(1800),
            pytest.mark.skipif(not LONG, reason="the 20,000-input run: set SCATTER_FUZZ_LONG=1"),
        ],
    ),
]


def _repeat(request: pytest.FixtureRequest) -> str:
    long = "SCATTER_FUZZ_LONG=1 " if "[long" in request.node.nodeid or "-long]" in request.node.nodeid else ""
    return f"repeat with: {long}SCATTER_FUZZ_SEED={SEED} python -m pytest '{request.node.nodeid}'"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployment]:
    with probe_cluster(
        shards=SHARDS,
        replicas=2,
        # max_deadline_ms: a huge client deadline on a request that asks the leaves to sleep is cut to 3 s
        root={"max_message_bytes": LIMIT, "max_deadline_ms": 3000},
        leaf_args=("--max-message-bytes", str(LIMIT)),
        root_flags=("--log-level", "INFO", "--log-format", "json"),
    ) as dep:
        yield dep


@pytest.fixture(scope="module")
def rss_at_start(cluster: Deployment) -> Iterator[dict[str, int]]:
    """Every process's RSS (KiB) after a first known-good round; checked at the module's end."""
    assert not known_good(cluster, 1)
    start = {name: memory_kib(pid)["VmRSS"] for name, pid in pids(cluster).items()}
    yield start
    end = {name: memory_kib(pid)["VmRSS"] for name, pid in pids(cluster).items()}
    grown = {name: (start[name], end[name]) for name in start if end[name] > 2 * start[name] + 50 * 1024}
    assert not grown, f"RSS (KiB, start -> end) over 2x + 50 MB: {grown} (seed {SEED})"


def pids(cluster: Deployment) -> dict[str, int]:
    found = {}
    for name, child in cluster.children.items():
        assert child.pid is not None
        found[name] = child.pid
    return found


# -- known-good requests -------------------------------------------------------------------


def _unary(address: str, method: str, request: Any, response_type: Any) -> Any:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            method, request_serializer=type(request).SerializeToString, response_deserializer=response_type.FromString
        )
        return call(request, timeout=10)


def known_good(cluster: Deployment, value: int) -> list[str]:
    """Problems with a correct request to every process (none: each answered right)."""
    problems = []
    want = sum(shard + 1 + value for shard in range(SHARDS))
    probe = probe_pb2.ProbeRequest(value=value)
    try:
        client = Client(cluster.root_address)
        try:
            response, merged, _ = client.probe(timeout=10, value=value)
        finally:
            client.close()
        if merged.sum != want or response.coverage.answered != SHARDS:
            problems.append(f"root: Root.Query answered sum {merged.sum}, coverage {response.coverage}; want {want}")
        execute = leaf_pb2.ExecuteRequest(shard_index=0, shard_count=SHARDS)
        execute.payload.Pack(probe)
        answer = _unary(cluster.root_address, fuzz.EXECUTE, execute, leaf_pb2.ExecuteResponse)
        merged = probe_pb2.ProbeResponse()
        if not answer.payload.Unpack(merged) or merged.sum != want:
            problems.append(f"root: Leaf.Execute answered {answer}; want sum {want}")
        for shard in range(SHARDS):
            for replica in range(2):
                name = f"leaf-{shard}-{replica}"
                execute = leaf_pb2.ExecuteRequest(shard_index=shard, shard_count=SHARDS)
                execute.payload.Pack(probe)
                answer = _unary(cluster.children[name].address, fuzz.EXECUTE, execute, leaf_pb2.ExecuteResponse)
                partial = probe_pb2.ProbePartial()
                if not answer.payload.Unpack(partial) or partial.value != shard + 1 + value:
                    problems.append(f"{name}: Leaf.Execute answered {answer}; want value {shard + 1 + value}")
        merge = merge_pb2.MergeRequest()
        merge.payload.Pack(probe)
        for shard, partial_value in enumerate((5, 7)):
            result = merge.results.add()
            result.report.shard_index = shard
            result.report.status = shard_pb2.SHARD_STATUS_OK
            result.payload.Pack(probe_pb2.ProbePartial(shard_index=shard, value=partial_value))
        answer = _unary(cluster.children["merge"].address, fuzz.MERGE, merge, merge_pb2.MergeResponse)
        merged = probe_pb2.ProbeResponse()
        if not answer.payload.Unpack(merged) or merged.sum != 12:
            problems.append(f"merge: Merge.Merge answered {answer}; want sum 12")
    except grpc.RpcError as exc:
        problems.append(f"a known-good request failed: {exc.code().name}: {exc.details()}")
    return problems


# -- sending ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    call: fuzz.Call
    code: str  # a status name; "HANG" when no answer came in time
    details: str
    response: bytes | None  # an OK answer's bytes


async def _send(addresses: dict[str, str], calls: list[fuzz.Call]) -> list[Outcome]:
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    channels = {name: grpc.aio.insecure_channel(address, options=options) for name, address in addresses.items()}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(call: fuzz.Call) -> Outcome:
        # A server must end every call by its deadline; ours wait 10 s more (3 s of work at most, see
        # fuzz.calls, and the root's max_deadline_ms) before calling it a hang.
        guard = min(call.timeout if call.timeout is not None else 10.0, 10.0) + 10.0
        method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channels[call.target].unary_unary(call.method)
        async with gate:
            try:
                response = await asyncio.wait_for(
                    method(call.body, timeout=call.timeout, metadata=call.metadata or None), guard
                )
            except grpc.aio.AioRpcError as exc:
                return Outcome(call, exc.code().name, exc.details() or "", None)
            except TimeoutError:
                return Outcome(call, "HANG", f"no answer {guard:g} s after the call started", None)
        return Outcome(call, "OK", "", response)

    try:
        return await asyncio.gather(*(one(call) for call in calls))
    finally:
        for channel in channels.values():
            await channel.close()


# -- judging ---------------------------------------------------------------------------------


def _kind(target: str) -> str:
    return "leaf" if target.startswith("leaf") else target


def judge(outcome: Outcome, cluster: Deployment, leaf_shards: dict[str, int]) -> str | None:
    """What is wrong with one outcome, or None."""
    call, code, details = outcome.call, outcome.code, outcome.details
    allowed = DOCUMENTED[(call.method, _kind(call.target))]
    if code not in allowed:
        return f"{code} ({details[:300]!r}) is not a code {call.method} documents on {_kind(call.target)}"
    predicted = _predicted(call)
    if predicted is not None and code not in predicted:
        return f"{code} ({details[:300]!r}) where the request can only be refused: {', '.join(sorted(predicted))}"
    if len(details) > MAX_DETAILS:
        return f"{code}: a message of {len(details)} characters"
    if "Traceback" in details:
        return f"{code}: a traceback in the message: {details[:300]!r}"
    for name, child in cluster.children.items():
        if child.address in details:
            return f"{code}: the message names {name}'s address: {details[:300]!r}"
    if outcome.response is None:
        return None
    return _wrong_answer(call, outcome.response, leaf_shards)


# What a request that no process can serve may get: its refusal, or a deadline or a limit met first.
REFUSED = frozenset({"INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})


def _predicted(call: fuzz.Call) -> frozenset[str] | None:
    """The codes a request that must be refused may get (None: any documented one)."""
    decoded = fuzz.decoded_probe(call.method, call.body)
    if decoded is None:  # a body that does not parse: INVALID_ARGUMENT (issue 13, finding 3), never UNKNOWN
        return REFUSED
    payload = decoded[0].payload  # type: ignore[attr-defined]
    if len(payload.type_url) > MAX_TYPE_URL_LENGTH:  # before any leaf call, not a failover (finding 8)
        # a leaf (and a root serving as one) may judge the shard first
        return REFUSED | {"FAILED_PRECONDITION"} if call.method == fuzz.EXECUTE else REFUSED
    return None


def _wrong_answer(call: fuzz.Call, response: bytes, leaf_shards: dict[str, int]) -> str | None:
    """What is wrong with an OK answer, by the request as protobuf reads it; None if it is right."""
    decoded = fuzz.decoded_probe(call.method, call.body)
    if call.method == fuzz.MERGE:
        return _wrong_merge(call, response)
    if decoded is None or decoded[1] is None:
        return f"OK for a request whose payload is no ProbeRequest: {response[:60]!r}"
    value = decoded[1].value
    if call.target in leaf_shards:
        answer = leaf_pb2.ExecuteResponse.FromString(response)
        partial = probe_pb2.ProbePartial()
        shard = leaf_shards[call.target]
        if not answer.payload.Unpack(partial) or (partial.shard_index, partial.value) != (shard, shard + 1 + value):
            return f"OK with {answer}; want shard {shard}, value {shard + 1 + value}"
        return None
    if call.method == fuzz.QUERY:
        query = root_pb2.QueryResponse.FromString(response)
        payload, coverage = query.payload, query.coverage
    else:
        execute = leaf_pb2.ExecuteResponse.FromString(response)
        payload, coverage = execute.payload, execute.coverage
    merged = probe_pb2.ProbeResponse()
    if not payload.Unpack(merged):
        return f"OK with a payload of type {payload.type_url!r}"
    answered = list(merged.shard_indices)
    want = fuzz.expected_sum(call, answered)
    if coverage.total != SHARDS or coverage.answered != len(answered) or merged.sum != want:
        return (
            f"OK with sum {merged.sum} of shards {answered}, coverage {coverage.answered}/{coverage.total}; want {want}"
        )
    return None


def _wrong_merge(call: fuzz.Call, response: bytes) -> str | None:
    merged = probe_pb2.ProbeResponse()
    if not merge_pb2.MergeResponse.FromString(response).payload.Unpack(merged):
        return "OK without a ProbeResponse"
    request = merge_pb2.MergeRequest.FromString(call.body)
    want = 0
    for result in request.results:
        if result.report.status == shard_pb2.SHARD_STATUS_OK:
            partial = probe_pb2.ProbePartial()
            if not result.payload.Unpack(partial):
                return f"OK for a shard {result.report.shard_index} answer that is no ProbePartial"
            want += partial.value
    if merged.sum != want:
        return f"OK with sum {merged.sum}; want {want}"
    return None


def log_alarms(cluster: Deployment) -> list[str]:
    found = []
    for name, child in cluster.children.items():
        text = child.log_path.read_text(errors="replace")
        for alarm in LOG_ALARMS:
            at = text.find(alarm)
            if at >= 0:
                found.append(f"{name}'s log has {alarm!r}:\n{text[max(0, at - 1500) : at + 1500]}")
                break
    return found


def still_up(cluster: Deployment, started: dict[str, int]) -> list[str]:
    return [
        f"{name} exited (restarts {child.restarts}, exit status {child.proc.returncode if child.proc else None})"
        for name, child in cluster.children.items()
        if not child.running() or child.restarts or child.pid != started[name]
    ]


# -- the tests -----------------------------------------------------------------------------------


def _targets(group: str) -> list[fuzz.Target]:
    if group == "root":
        query = fuzz.Target(fuzz.QUERY, "root", limit=LIMIT)
        return [query] * 6 + [fuzz.Target(fuzz.EXECUTE, "root", 0, LIMIT)]
    if group == "leaves":
        return [fuzz.Target(fuzz.EXECUTE, f"leaf-{s}-{r}", s, LIMIT) for s in range(SHARDS) for r in range(2)]
    return [fuzz.Target(fuzz.MERGE, "merge", limit=MERGE_LIMIT)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("group", list(GROUPS))
def test_fuzz_services(
    cluster: Deployment, rss_at_start: dict[str, int], group: str, size: int, request: pytest.FixtureRequest
) -> None:
    started = pids(cluster)
    addresses = {name: child.address for name, child in cluster.children.items()}
    leaf_shards = {f"leaf-{s}-{r}": s for s in range(SHARDS) for r in range(2)}
    targets = _targets(group)
    total = GROUPS[group] * size
    codes: Counter[str] = Counter()
    began = time.monotonic()
    for batch, first in enumerate(range(0, total, BATCH)):
        rng = fuzz.stream(SEED, group, batch)
        calls = fuzz.calls(rng, targets, min(BATCH, total - first), SHARDS)
        outcomes = asyncio.run(_send(addresses, calls))
        problems = []
        for i, outcome in enumerate(outcomes):
            codes[f"{outcome.call.method.rsplit('/', 1)[1]} {outcome.code}"] += 1
            wrong = judge(outcome, cluster, leaf_shards)
            if wrong is not None:
                problems.append(f"input {first + i} ({outcome.call.describe()}): {wrong}")
        problems += still_up(cluster, started) + known_good(cluster, batch) + log_alarms(cluster)
        if problems:
            shown = "\n".join(problems[:12])
            raise AssertionError(
                f"fuzz {group}, batch {batch} (inputs {first}-{first + len(calls) - 1}): {len(problems)} problems; "
                f"{_repeat(request)}\n{shown}\ncodes so far: {dict(codes)}"
            )
    print(
        f"fuzz {group}: {total} calls in {time.monotonic() - began:.1f} s, seed {SEED}: {dict(sorted(codes.items()))}"
    )


def _finite(value: object, where: str = "config") -> list[str]:
    """The non-finite floats in a parsed configuration (it must hold none)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{where} = {value}"]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [p for f in dataclasses.fields(value) for p in _finite(getattr(value, f.name), f"{where}.{f.name}")]
    if isinstance(value, tuple):
        return [p for i, item in enumerate(value) for p in _finite(item, f"{where}[{i}]")]
    return []


def _start_and_stop(command: list[str]) -> tuple[bool, int, str]:
    """Start a root; once it listens (or has exited), stop it: (listened, exit status, its output)."""
    proc = Proc(command, child_env(), REPO)
    try:
        proc.wait_listening(START_TIMEOUT)
    except RuntimeError:  # it exited first (and was stopped): a refusal at start, judged by the caller
        return False, proc.popen.returncode, proc.output()
    code = proc.stop()
    return True, code, proc.output()


def _key_named(key: str) -> str:
    """The name an error must hold for a mutated key: a list element is named by its list."""
    while key.endswith("]"):
        key = key[: key.rindex("[")]
    return key


@pytest.mark.parametrize("size", SIZES)
def test_fuzz_root_config(tmp_path: Path, size: int, request: pytest.FixtureRequest) -> None:
    rng = fuzz.stream(SEED, "config")
    refused: list[tuple[fuzz.ConfigMutation, Path, str]] = []
    accepted: list[tuple[fuzz.ConfigMutation, Path]] = []
    problems = []
    for i in range(CONFIGS * size):
        mutation = fuzz.config_mutation(rng)
        path = tmp_path / f"root-{i}.toml"
        path.write_bytes(mutation.text)
        try:
            config = load_root_config(path)
        except ConfigError as exc:
            message = str(exc)
            if "\n" in message or len(message) > MAX_DETAILS:
                problems.append(f"{mutation.what}: not one short line: {message!r}")
            elif mutation.key and _key_named(mutation.key) not in message:
                problems.append(f"{mutation.what}: the message does not name {_key_named(mutation.key)}: {message}")
            refused.append((mutation, path, message))
        except Exception as exc:  # what `scatter root` would print as a traceback
            problems.append(f"{mutation.what}: {type(exc).__name__}: {exc}")
        else:
            problems += [f"{mutation.what}: accepted with {bad}" for bad in _finite(config)]
            try:
                build_policies(config)  # what the root builds from it at start, short of the channels
            except Exception as exc:
                problems.append(
                    f"{mutation.what}: accepted, then the root's policies raise {type(exc).__name__}: {exc}"
                )
            accepted.append((mutation, path))
    # Through the real command, two at a time: a refusal is one line and exit status 2; an accepted
    # file starts a root (or is refused when it binds, by the same rule), never a traceback.
    n_refused, n_accepted = (n * size for n in COMMANDS)
    picked_refused = rng.sample(refused, min(n_refused, len(refused)))
    # Addresses first among the accepted: they can still fail at start, when the root binds them.
    accepted.sort(key=lambda item: "listen" not in item[0].what)
    picked_accepted = accepted[:n_accepted]
    command = [sys.executable, "-m", "root.server", "--config"]
    with ThreadPoolExecutor(2) as pool:
        refusals = pool.map(lambda item: run([*command, str(item[1])], cwd=REPO), picked_refused)
        starts = pool.map(lambda item: _start_and_stop([*command, str(item[1])]), picked_accepted)
        for (mutation, _, message), (code, stderr) in zip(picked_refused, refusals, strict=True):
            if code != 2 or "Traceback" in stderr or stderr.strip() != f"scatter root: {message}":
                problems.append(f"{mutation.what}: `scatter root` exited {code} with {stderr!r}; want 2, {message!r}")
        for (mutation, _), (listened, code, output) in zip(picked_accepted, starts, strict=True):
            refusal = [line for line in output.splitlines() if line.startswith("scatter root: ")]
            if "Traceback" in output or (listened and code != 0) or (not listened and (code != 2 or len(refusal) != 1)):
                problems.append(f"{mutation.what}: accepted, then `scatter root` exited {code} with {output!r}")
    assert not problems, f"{len(problems)} problems; {_repeat(request)}\n" + "\n".join(problems[:15])
    print(f"fuzz config: {len(refused)} refused, {len(accepted)} accepted; seed {SEED}")


def test_the_documented_codes_are_read() -> None:
    common = {"OK", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL"}
    assert DOCUMENTED[(fuzz.QUERY, "root")] == DOCUMENTED[(fuzz.MERGE, "merge")] == common
    assert DOCUMENTED[(fuzz.EXECUTE, "root")] == DOCUMENTED[(fuzz.EXECUTE, "leaf")] == common | {"FAILED_PRECONDITION"}


def test_the_same_seed_makes_the_same_inputs() -> None:
    """A failure is repeated by its seed: the generators depend on nothing else."""
    targets = _targets("root") + _targets("leaves") + _targets("merge")
    assert fuzz.calls(fuzz.stream(7, "x"), targets, 200, SHARDS) == fuzz.calls(
        fuzz.stream(7, "x"), targets, 200, SHARDS
    )
    assert fuzz.calls(fuzz.stream(7, "x"), targets, 50, SHARDS) != fuzz.calls(fuzz.stream(8, "x"), targets, 50, SHARDS)
    assert [fuzz.config_mutation(fuzz.stream(7, i)) for i in range(50)] == [
        fuzz.config_mutation(fuzz.stream(7, i)) for i in range(50)
    ]
