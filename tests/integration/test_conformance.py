"""The conformance kit: the Python SDK's probe leaf and merge pass it, a broken server fails what it should.

Real processes on 127.0.0.1: ``examples/probe/leaf.py`` and ``merge.py``,
and deliberately broken servers: ``tests/fixtures/broken_server.py`` (a
raw grpc.aio server with both services whose health knows only "", that
reports SERVING late or never, serves no reflection, accepts any payload,
ignores the shard, keeps working on cancelled calls, and whose merge crashes
on shards without a payload), ``tests/fixtures/serial_server.py`` (one call
at a time, work shielded from deadlines and cancellation, untyped answers)
and ``tests/fixtures/busy_server.py`` (a thread per call and no concurrency
limit, slow work burning CPU, ignoring cancellation or the deadline). Between
them they fail every check that can fail, each exactly what it breaks. Every
process is started once per module (the serial and busy ones once per test)
and stopped by its own handle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scatter.conformance import (
    LEAF_CHECKS,
    MERGE_CHECKS,
    CheckResult,
    KitOptions,
    SampleError,
    ShardUnknown,
    Status,
    check_leaf,
    check_merge,
    failed,
    load_sample,
    parse_sample,
    run_leaf,
)
from scatter.conformance.cli import main as conformance_main
from scatter.conformance.report import JSON_SCHEMA
from scatter.conformance.sample import to_any
from scatter_common.message_types import MessageTypes
from tests._procs import FIXTURES, PYTHON, REPO, Proc, start_healthy, start_process

PROBE = REPO / "examples" / "probe"
DOCS = (REPO / "docs" / "any-language.md").read_text()
JSON_KEYS = {"schema", "role", "address", "passed", "shard", "elapsed_seconds", "summary", "checks"}

# The probe's sample; its slow_request works ten seconds, long enough that only a
# server honouring cancellation frees its slots in time.
SAMPLE_FILE = PROBE / "conformance-sample.json"
PROBE_SAMPLE = json.loads(SAMPLE_FILE.read_text())

# A busy 2-core machine: generous per-call bounds.
OPTIONS = KitOptions(timeout=10.0, connect_timeout=10.0, deadline_bound=2.0, release_bound=2.0)
BUSY_OPTIONS = KitOptions(timeout=10.0, connect_timeout=10.0, deadline_bound=2.0, release_bound=5.0)
# For the serial server, whose calls queue behind each other: short bounds, few calls.
SERIAL_OPTIONS = KitOptions(
    timeout=0.5, connect_timeout=10.0, deadline_bound=0.5, release_bound=0.5, concurrency=8, cancel_calls=8
)


# What each broken server must fail, exactly (the tests below); together they fail every check that can fail.
BROKEN_LEAF_FAILS = {
    "health-service",  # the Leaf service is not registered with health (NOT_FOUND, like grpc++'s default)
    "wrong-type",  # any payload "parses"
    "undecodable",
    "empty-payload",
    "wrong-shard",  # the shard is ignored
    "execute-shards",  # answers the first of the shards asked, and drops the rest
    "cancel-released",  # shielded work keeps its slot after a cancel
}
BROKEN_MERGE_FAILS = {
    "health-service",
    "partial-coverage",  # crashes on a TIMEOUT shard without payload
    "no-shard-answered",
    "empty-results",  # divides by zero
    "wrong-type",
    "undecodable",
    "empty-payload",
    "wrong-partial-type",
}
SERIAL_LEAF_FAILS = {
    "valid-request",  # OK without a payload
    "wrong-type",  # OK for anything
    "undecodable",
    "empty-payload",
    "wrong-shard",
    "short-deadline",  # the slow call it kept working on holds the lock: the next call times out
    "concurrent",
    "deadline-released",  # that same call still blocks it when the release checks start
}
SERIAL_MERGE_FAILS = {  # every merge call outlives the kit's timeout: all but connection and health fail
    "valid-request",
    "partial-coverage",
    "no-shard-answered",
    "empty-results",
    "wrong-type",
    "undecodable",
    "empty-payload",
    "wrong-partial-type",
    "short-deadline",
    "concurrent",
}
NOWHERE_FAILS = {"reachable"}  # nothing listens (test_cli_exit_codes_and_output)
NEVER_SERVING_FAILS = {"health-overall"}  # test_a_server_that_never_reports_serving_is_not_checked
# busy_server.py, by mode (test_release_checks_see_work_that_goes_on_without_a_limit)
BUSY_FAILS = {"honour": set(), "ignore-cancel": {"cancel-released"}, "ignore-deadline": {"deadline-released"}}
# The probe merge has no slow request (its sample no slow_merge_request): both release checks SKIP.
MERGE_NEVER_RUN = {"cancel-released", "deadline-released"}
RELEASE_SKIPPED = "the sample has no 'slow_request'"

# busy_server.py's sample: its slow request burns CPU for 10 s. A server that stops its work
# recovers about 1 s after the cancel (one loaded measurement, then a clean one), slower on a busy
# machine: BUSY_OPTIONS gives it 5 s, and the work outlasts that so a server that goes on still fails.
BUSY_SAMPLE = {
    "request": PROBE_SAMPLE["request"],
    "slow_request": {"type": "probe.v1.ProbeRequest", "json": {"delay": "10s"}},
    "leaf_response_type": "probe.v1.ProbePartial",
    "partials": PROBE_SAMPLE["partials"],
    "slow_merge_request": {"type": "probe.v1.ProbeRequest", "json": {"delay": "10s"}},
}


@pytest.fixture(scope="module")
def sample_file() -> Path:
    return SAMPLE_FILE


@pytest.fixture(scope="module")
def probe_leaf() -> Iterator[Proc]:
    proc = start_healthy([PYTHON, str(PROBE / "leaf.py"), "--port", "0", "--shard-index", "1", "--shard-count", "2"])
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def probe_merge() -> Iterator[Proc]:
    proc = start_healthy([PYTHON, str(PROBE / "merge.py"), "--port", "0"])
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def broken() -> Iterator[Proc]:
    proc = start_process([PYTHON, str(FIXTURES / "broken_server.py")])
    yield proc
    proc.stop()


@pytest.fixture(params=sorted(BUSY_FAILS))
def busy(request: pytest.FixtureRequest) -> Iterator[tuple[str, Proc]]:
    mode: str = request.param
    proc = start_process([PYTHON, str(FIXTURES / "busy_server.py"), "--mode", mode])
    yield mode, proc
    proc.stop()


@pytest.fixture
def serial() -> Iterator[Proc]:
    # One per test: the queue of shielded work one run leaves behind must not slow the next.
    proc = start_process([PYTHON, str(FIXTURES / "serial_server.py")])
    yield proc
    proc.stop()


def _statuses(results: list[CheckResult]) -> dict[str, Status]:
    return {r.name: r.status for r in results}


def test_python_sdk_leaf_passes(probe_leaf: Proc, sample_file: Path) -> None:
    results = check_leaf(probe_leaf.address, load_sample(sample_file), shard_index=1, shard_count=2, options=OPTIONS)
    assert failed(results) == [], "\n".join(f"{r.name}: {r.detail}" for r in results)
    assert set(_statuses(results).values()) == {Status.PASS}  # reflection too: no warnings
    assert len(results) == 14


def test_python_sdk_merge_passes(probe_merge: Proc, sample_file: Path) -> None:
    results = check_merge(probe_merge.address, load_sample(sample_file), options=OPTIONS)
    assert failed(results) == [], "\n".join(f"{r.name}: {r.detail}" for r in results)
    statuses = _statuses(results)
    assert {statuses.pop(name) for name in MERGE_NEVER_RUN} == {Status.SKIP}
    assert set(statuses.values()) == {Status.PASS}
    assert len(results) == 16


def test_a_loading_leaf_is_waited_for_and_its_shard_learned() -> None:
    """Shard 1 of 3, still loading for 2 s: the kit waits for SERVING and learns the shard, then all pass."""
    cmd = [PYTHON, str(PROBE / "leaf.py"), "--port", "0", "--shard-index", "1", "--shard-count", "3"]
    proc = start_process([*cmd, "--start-delay-ms", "2000"])
    try:
        results, shard = run_leaf(proc.address, load_sample(SAMPLE_FILE), options=OPTIONS)
    finally:
        proc.stop()
    assert failed(results) == [], "\n".join(f"{r.name}: {r.detail}" for r in results)
    assert shard is not None and (shard.index, shard.count, shard.learned) == (1, 3, True)
    assert "after" in {r.name: r for r in results}["health-overall"].detail  # it did wait
    assert "learned from the leaf" in {r.name: r for r in results}["wrong-shard"].detail


def test_a_shard_that_cannot_be_learned_names_the_flags(
    probe_leaf: Proc, sample_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The probe leaf serves shard 1 of 2; told to try one shard only, the kit cannot find it.
    with pytest.raises(ShardUnknown, match="pass --shard-index and --shard-count"):
        check_leaf(probe_leaf.address, load_sample(sample_file), options=KitOptions(max_shards=1, timeout=10.0))
    # Told a shard the leaf refuses: one message that says so, exit 2, not a failure per check.
    argv = ["leaf", probe_leaf.address, "--sample", str(sample_file), "--shard-index", "0", "--shard-count", "2"]
    assert conformance_main([*argv, "--timeout-ms", "10000"]) == 2
    err = capsys.readouterr().err
    assert "does not serve shard 0 of 2" in err and "omit both to learn it" in err, err
    # Told the index, it learns the count.
    results, shard = run_leaf(probe_leaf.address, load_sample(sample_file), shard_index=1, options=OPTIONS)
    assert shard is not None and (shard.index, shard.count) == (1, 2) and failed(results) == []


def test_a_server_that_never_reports_serving_is_not_checked() -> None:
    """NOT_SERVING throughout: one FAIL that says so, the rest SKIPPED, in the bounded wait."""
    proc = start_process([PYTHON, str(FIXTURES / "broken_server.py"), "--serving-after", "-1"])
    options = KitOptions(timeout=10.0, connect_timeout=10.0, serving_timeout=1.5)
    try:
        for role, checks in (("leaf", LEAF_CHECKS), ("merge", MERGE_CHECKS)):
            results = (
                check_leaf(proc.address, load_sample(SAMPLE_FILE), options=options)
                if role == "leaf"
                else check_merge(proc.address, load_sample(SAMPLE_FILE), options=options)
            )
            assert [r.name for r in results] == [c.id for c in checks]
            assert set(failed(results)) == NEVER_SERVING_FAILS
            overall = {r.name: r for r in results}["health-overall"]
            assert (
                "still reports NOT_SERVING after waiting" in overall.detail and "--serving-timeout-ms" in overall.detail
            )
            assert {r.status for r in results[2:]} == {Status.SKIP}
            assert all("did not report SERVING within 1.5 s" in r.detail for r in results[2:])
    finally:
        proc.stop()


def test_release_checks_see_work_that_goes_on_without_a_limit(busy: tuple[str, Proc]) -> None:
    """No concurrency limit, a thread per call: work that goes on after a cancel or deadline still shows."""
    mode, proc = busy
    results = check_leaf(proc.address, parse_sample(BUSY_SAMPLE), options=BUSY_OPTIONS)
    report = "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    assert set(failed(results)) == BUSY_FAILS[mode], report
    statuses = _statuses(results)
    assert statuses["reflection"] is Status.WARN
    if mode == "honour":
        assert statuses["cancel-released"] is statuses["deadline-released"] is Status.PASS, report
    if mode == "ignore-cancel":  # its cancelled calls still work: the deadline check cannot start clean
        assert statuses["deadline-released"] is Status.SKIP, report
        assert "fix: stop work" in {r.name: r for r in results}["cancel-released"].detail


def test_release_checks_see_a_merge_that_works_on(busy: tuple[str, Proc]) -> None:
    """The same for a merge, loaded by the sample's slow_merge_request."""
    mode, proc = busy
    results = check_merge(proc.address, parse_sample(BUSY_SAMPLE), options=BUSY_OPTIONS)
    report = "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    assert set(failed(results)) == BUSY_FAILS[mode], report
    if mode == "honour":
        assert _statuses(results)["cancel-released"] is _statuses(results)["deadline-released"] is Status.PASS, report


def test_release_checks_skip_without_a_slow_request(serial: Proc) -> None:
    """Without a slow_request the kit cannot load the server: SKIP with the reason, never a PASS."""
    sample = parse_sample({"request": PROBE_SAMPLE["request"]})
    results = check_leaf(serial.address, sample, options=SERIAL_OPTIONS)
    by_name = {r.name: r for r in results}
    for name in ("cancel-released", "deadline-released"):
        assert by_name[name].status is Status.SKIP and RELEASE_SKIPPED in by_name[name].detail


def test_broken_leaf_fails_exactly_what_it_breaks(broken: Proc, sample_file: Path) -> None:
    results = check_leaf(broken.address, load_sample(sample_file), options=OPTIONS)
    statuses = _statuses(results)
    assert set(failed(results)) == BROKEN_LEAF_FAILS, "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    assert statuses["reflection"] is Status.WARN
    assert all(statuses[name] is Status.PASS for name in ("reachable", "valid-request", "short-deadline", "concurrent"))
    by_name = {r.name: r for r in results}
    assert "grpc++" in by_name["health-service"].detail and "SetServingStatus" in by_name["health-service"].detail
    assert "RESOURCE_EXHAUSTED" in by_name["cancel-released"].detail
    assert statuses["deadline-released"] is Status.SKIP  # its cancelled calls still hold every slot


def test_broken_merge_fails_exactly_what_it_breaks(broken: Proc, sample_file: Path) -> None:
    results = check_merge(broken.address, load_sample(sample_file), options=OPTIONS)
    assert set(failed(results)) == BROKEN_MERGE_FAILS, "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    statuses = _statuses(results)
    assert all(statuses[name] is Status.PASS for name in ("valid-request", "short-deadline", "concurrent"))


def test_serial_leaf_fails_exactly_what_it_breaks(serial: Proc, sample_file: Path) -> None:
    started = time.monotonic()
    results = check_leaf(serial.address, load_sample(sample_file), shard_index=0, shard_count=1, options=SERIAL_OPTIONS)
    elapsed = time.monotonic() - started
    assert set(failed(results)) == SERIAL_LEAF_FAILS, "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    statuses = _statuses(results)
    assert all(statuses[name] is Status.PASS for name in ("reachable", "health-overall", "health-service"))
    # Blocked by short-deadline's 10 s call, which it will not stop: the release checks see that it
    # keeps expired work, and cannot measure cancellation.
    by_name = {r.name: r for r in results}
    assert "after short-deadline's slow call ran out of its 50 ms deadline" in by_name["deadline-released"].detail
    assert statuses["cancel-released"] is Status.SKIP
    assert elapsed < SERIAL_OPTIONS.worst_case(), elapsed  # the stated bound holds against a blocking server


def test_serial_merge_fails_exactly_what_it_breaks(serial: Proc, sample_file: Path) -> None:
    results = check_merge(serial.address, load_sample(sample_file), options=SERIAL_OPTIONS)
    assert set(failed(results)) == SERIAL_MERGE_FAILS, "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    assert "DEADLINE_EXCEEDED" in {r.name: r for r in results}["valid-request"].detail


def test_every_check_that_can_fail_is_seen_failing() -> None:
    """The kit's own checks can fail: the servers above, between them, fail every MUST-check."""
    busy = set().union(*BUSY_FAILS.values())
    for checks, seen in (
        (LEAF_CHECKS, BROKEN_LEAF_FAILS | SERIAL_LEAF_FAILS | NOWHERE_FAILS | NEVER_SERVING_FAILS | busy),
        (MERGE_CHECKS, BROKEN_MERGE_FAILS | SERIAL_MERGE_FAILS | NOWHERE_FAILS | NEVER_SERVING_FAILS | busy),
    ):
        assert sorted(c.id for c in checks if c.can_fail) == sorted(seen)


def test_cli_exit_codes_and_output(
    probe_merge: Proc, broken: Proc, sample_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert conformance_main(["merge", probe_merge.address, "--sample", str(sample_file), "--timeout-ms", "10000"]) == 0
    out = capsys.readouterr().out
    assert "partial-coverage    PASS" in out and "PASSED: 14 pass, 2 skip in" in out and "at most" in out

    argv = ["merge", broken.address, "--sample", str(sample_file), "--json", "--timeout-ms", "10000"]
    assert conformance_main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report) == JSON_KEYS and report["schema"] == JSON_SCHEMA == "scatter.conformance/v1"
    assert report["passed"] is False and report["role"] == "merge" and report["shard"] is None
    assert sum(report["summary"].values()) == len(report["checks"]) == len(MERGE_CHECKS)
    assert all(f"`{key}`" in DOCS for key in JSON_KEYS)  # docs/any-language.md documents every key
    assert {c["name"] for c in report["checks"] if c["status"] == "FAIL"} >= {"empty-results", "health-service"}
    assert all(c["duty"].startswith("MUST ") for c in report["checks"] if c["status"] == "FAIL")  # from merge.proto

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"request": {"type": "no.such.v1.Message", "json": {}}}))
    assert conformance_main(["merge", probe_merge.address, "--sample", str(bad)]) == 2
    assert "unknown message type 'no.such.v1.Message'" in capsys.readouterr().err

    # Nothing listens on port 1: one failed row, in bounded time.
    assert conformance_main(["leaf", "127.0.0.1:1", "--sample", str(sample_file), "--timeout-ms", "500"]) == 1
    out = capsys.readouterr().out
    assert {line.split()[0] for line in out.splitlines() if " FAIL " in line} == NOWHERE_FAILS, out


def test_sample_validation() -> None:
    with pytest.raises(SampleError, match="'request' is required"):
        parse_sample({})
    with pytest.raises(SampleError, match=r"unknown keys \['partial'\]"):
        parse_sample({"request": PROBE_SAMPLE["request"], "partial": []})
    with pytest.raises(SampleError, match="request: expected exactly the keys"):
        parse_sample({"request": {"type": "probe.v1.ProbeRequest"}})
    with pytest.raises(SampleError, match="not valid base64"):
        parse_sample({"request": {"type_url": "type.googleapis.com/x.v1.X", "value_base64": "!!"}})


def test_encoded_payload_needs_no_type_knowledge() -> None:
    sample = parse_sample({"request": {"type_url": "type.example.com/x.v1.Req", "value_base64": "CAE="}})
    packed = to_any(sample.request, MessageTypes())
    assert packed.type_url == "type.example.com/x.v1.Req" and packed.value == b"\x08\x01"
    with pytest.raises(SampleError, match=r"unknown message type 'x.v1.Req'.*--proto FILE.*value_base64"):
        to_any(parse_sample({"request": {"type": "x.v1.Req", "json": {}}}).request, MessageTypes())


def test_merge_checks_without_partials_skip_what_needs_them(probe_merge: Proc) -> None:
    sample = parse_sample({"request": PROBE_SAMPLE["request"]})
    results = check_merge(probe_merge.address, sample, options=OPTIONS)
    assert failed(results) == []
    statuses = _statuses(results)
    assert statuses["valid-request"] is statuses["partial-coverage"] is Status.SKIP
    assert statuses["no-shard-answered"] is statuses["empty-results"] is Status.PASS
