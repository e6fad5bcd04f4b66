"""The conformance kit: the Python SDK's probe leaf and merge pass it, a broken server fails what it should.

Real processes on 127.0.0.1: ``examples/probe/leaf.py`` and ``merge.py``,
and a deliberately broken server, ``tests/fixtures/broken_server.py`` (a
raw grpc.aio server with both services that never reports SERVING, serves
no reflection, accepts any payload, ignores the shard, keeps working on
cancelled calls, and whose merge crashes on shards without a payload), and
``tests/fixtures/serial_server.py`` (one call at a time, work shielded from
deadlines and cancellation, untyped answers). Between them the two fail
every check that can fail, each exactly what it breaks. Every process is
started once per module (the serial one once per test) and stopped by its
own handle.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scatter.conformance import (
    LEAF_CHECKS,
    MERGE_CHECKS,
    CheckResult,
    KitOptions,
    SampleError,
    Status,
    check_leaf,
    check_merge,
    failed,
    load_sample,
    parse_sample,
)
from scatter.conformance.cli import main as conformance_main
from scatter.conformance.sample import to_any
from tests._procs import FIXTURES, PYTHON, REPO, Proc, start_healthy, start_process

PROBE = REPO / "examples" / "probe"

# The probe's sample; its slow_request works ten seconds, long enough that only a
# server honouring cancellation frees its slots in time.
SAMPLE_FILE = PROBE / "conformance-sample.json"
PROBE_SAMPLE = json.loads(SAMPLE_FILE.read_text())

# A busy 2-core machine: generous per-call bounds.
OPTIONS = KitOptions(timeout=10.0, connect_timeout=10.0, deadline_bound=2.0, release_bound=2.0)
# For the serial server, whose calls queue behind each other: short bounds, few calls.
SERIAL_OPTIONS = KitOptions(
    timeout=0.5, connect_timeout=10.0, deadline_bound=0.5, release_bound=0.5, concurrency=8, cancel_calls=8
)


# What each broken server must fail, exactly (the tests below); together they fail every check that can fail.
BROKEN_LEAF_FAILS = {
    "health-overall",  # NOT_SERVING forever
    "health-service",  # the Leaf service is not registered with health
    "wrong-type",  # any payload "parses"
    "undecodable",
    "empty-payload",
    "wrong-shard",  # the shard is ignored
    "cancel-released",  # shielded work keeps its slot after a cancel
}
BROKEN_MERGE_FAILS = {
    "health-overall",
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
    "cancel-released",
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
    "cancel-released",
}
NOWHERE_FAILS = {"reachable"}  # nothing listens (test_cli_exit_codes_and_output)


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
    assert len(results) == 12


def test_python_sdk_merge_passes(probe_merge: Proc, sample_file: Path) -> None:
    results = check_merge(probe_merge.address, load_sample(sample_file), options=OPTIONS)
    assert failed(results) == [], "\n".join(f"{r.name}: {r.detail}" for r in results)
    assert set(_statuses(results).values()) == {Status.PASS}
    assert len(results) == 15


def test_broken_leaf_fails_exactly_what_it_breaks(broken: Proc, sample_file: Path) -> None:
    results = check_leaf(broken.address, load_sample(sample_file), options=OPTIONS)
    statuses = _statuses(results)
    assert set(failed(results)) == BROKEN_LEAF_FAILS, "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    assert statuses["reflection"] is Status.WARN
    assert all(statuses[name] is Status.PASS for name in ("reachable", "valid-request", "short-deadline", "concurrent"))
    by_name = {r.name: r for r in results}
    assert "fix: report SERVING" in by_name["health-overall"].detail
    assert "RESOURCE_EXHAUSTED" in by_name["cancel-released"].detail


def test_broken_merge_fails_exactly_what_it_breaks(broken: Proc, sample_file: Path) -> None:
    results = check_merge(broken.address, load_sample(sample_file), options=OPTIONS)
    assert set(failed(results)) == BROKEN_MERGE_FAILS, "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    statuses = _statuses(results)
    assert all(statuses[name] is Status.PASS for name in ("valid-request", "short-deadline", "concurrent"))


def test_serial_leaf_fails_exactly_what_it_breaks(serial: Proc, sample_file: Path) -> None:
    results = check_leaf(serial.address, load_sample(sample_file), options=SERIAL_OPTIONS)
    assert set(failed(results)) == SERIAL_LEAF_FAILS, "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    statuses = _statuses(results)
    assert all(statuses[name] is Status.PASS for name in ("reachable", "health-overall", "health-service"))


def test_serial_merge_fails_exactly_what_it_breaks(serial: Proc, sample_file: Path) -> None:
    results = check_merge(serial.address, load_sample(sample_file), options=SERIAL_OPTIONS)
    assert set(failed(results)) == SERIAL_MERGE_FAILS, "\n".join(f"{r.name}: {r.status} {r.detail}" for r in results)
    assert "DEADLINE_EXCEEDED" in {r.name: r for r in results}["valid-request"].detail


def test_every_check_that_can_fail_is_seen_failing() -> None:
    """The kit's own checks can fail: the servers above, between them, fail every MUST-check."""
    for checks, seen in (
        (LEAF_CHECKS, BROKEN_LEAF_FAILS | SERIAL_LEAF_FAILS | NOWHERE_FAILS),
        (MERGE_CHECKS, BROKEN_MERGE_FAILS | SERIAL_MERGE_FAILS | NOWHERE_FAILS),
    ):
        assert sorted(c.id for c in checks if c.can_fail) == sorted(seen)


def test_cli_exit_codes_and_output(
    probe_merge: Proc, broken: Proc, sample_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert conformance_main(["merge", probe_merge.address, "--sample", str(sample_file), "--timeout-ms", "10000"]) == 0
    out = capsys.readouterr().out
    assert "partial-coverage    PASS" in out and "PASSED: 15 pass" in out

    argv = ["merge", broken.address, "--sample", str(sample_file), "--json", "--timeout-ms", "10000"]
    assert conformance_main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and report["role"] == "merge"
    assert {c["name"] for c in report["checks"] if c["status"] == "FAIL"} >= {"empty-results", "health-overall"}
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
    packed = to_any(sample.request, lambda name: None)
    assert packed.type_url == "type.example.com/x.v1.Req" and packed.value == b"\x08\x01"
    with pytest.raises(SampleError, match="use --import MODULE"):
        to_any(parse_sample({"request": {"type": "x.v1.Req", "json": {}}}).request, lambda name: None)


def test_merge_checks_without_partials_skip_what_needs_them(probe_merge: Proc) -> None:
    sample = parse_sample({"request": PROBE_SAMPLE["request"]})
    results = check_merge(probe_merge.address, sample, options=OPTIONS)
    assert failed(results) == []
    statuses = _statuses(results)
    assert statuses["valid-request"] is statuses["partial-coverage"] is Status.SKIP
    assert statuses["no-shard-answered"] is statuses["empty-results"] is Status.PASS
