"""leaf_sdk: its public face, its flags, and real leaf processes over real gRPC.

The integration tests start ``examples/probe/leaf.py`` and a test leaf,
``tests/fixtures/marker_leaf.py`` (sync or async handler by environment
variable), each once per module, and talk gRPC to them. The
test leaf picks its behaviour from ``ProbeRequest.value`` and leaves marker
files behind, which is how the tests see what a cancelled handler did.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

import leaf_sdk
from leaf_sdk import Leaf, LeafContext, LeafInfo, LeafOptions
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc
from scatter_common.payload import pack, unpack
from tests._marker_leaf import (
    DESCRIBE,
    INVALID,
    POLL_CANCELLED,
    RAISE,
    RETURN_STRING,
    STATS,
    TIME_REMAINING,
    rpc_error,
    wait_for,
    wait_until,
)
from tests._procs import FIXTURES, PYTHON, REPO, Proc, health_status, start_healthy, start_process, wait_healthy

PROBE_LEAF = str(REPO / "examples" / "probe" / "leaf.py")

MARKERS: dict[int, Path] = {}  # pid of a running test leaf -> its marker folder

# --- public face --------------------------------------------------------------------------------


def test_public_names_are_exactly_the_documented_ones() -> None:
    assert sorted(leaf_sdk.__all__) == [
        "CallStats",
        "DEFAULT_MAX_CONCURRENCY",
        "InvalidRequest",
        "Leaf",
        "LeafContext",
        "LeafHandler",
        "LeafInfo",
        "LeafOptions",
        "serve_leaf",
    ]
    for name in leaf_sdk.__all__:
        assert getattr(leaf_sdk, name) is not None


def test_request_type_is_inferred_from_the_annotation() -> None:
    def handle(request: probe_pb2.ProbeRequest, ctx: LeafContext) -> probe_pb2.ProbePartial:
        return probe_pb2.ProbePartial()

    assert Leaf(handle).request_type is probe_pb2.ProbeRequest


def test_request_type_that_cannot_be_inferred_is_a_clear_error() -> None:
    def handle(request, ctx):  # type: ignore[no-untyped-def]
        return probe_pb2.ProbePartial()

    with pytest.raises(TypeError, match=r"cannot infer the request type of .*pass request_type="):
        Leaf(handle)
    with pytest.raises(TypeError, match="request_type must be a protobuf message class"):
        Leaf(handle, request_type=int)  # type: ignore[type-var]


def test_leaf_embeds_in_a_running_loop_and_stops_when_its_task_is_cancelled() -> None:
    async def handle(request: probe_pb2.ProbeRequest, ctx: LeafContext) -> probe_pb2.ProbePartial:
        return probe_pb2.ProbePartial(shard_index=ctx.shard_index, value=request.value * 2)

    async def scenario() -> Leaf[probe_pb2.ProbeRequest]:
        bound: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_start(info: LeafInfo) -> None:
            bound.set_result(info.address)

        leaf = Leaf(handle, on_start=on_start)
        task = asyncio.create_task(leaf.serve(LeafOptions(shard_index=1, shard_count=2, grace_seconds=1)))
        address = await asyncio.wait_for(bound, 10)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = leaf_pb2_grpc.LeafStub(channel)
            request = leaf_pb2.ExecuteRequest(payload=pack(probe_pb2.ProbeRequest(value=21)), shard_index=1)
            for _ in range(100):  # ready right after on_start returns; poll instead of sleeping
                try:
                    response = await stub.Execute(request, timeout=5)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    await asyncio.sleep(0.01)
        assert unpack(response.payload, probe_pb2.ProbePartial).value == 42
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return leaf

    leaf = asyncio.run(scenario())
    assert (leaf.stats.ok, leaf.stats.in_flight) == (1, 0)


# --- flags and environment ----------------------------------------------------------------------


def test_defaults() -> None:
    options = LeafOptions.from_args([], environ={})
    assert options == LeafOptions(address="127.0.0.1:0", shard_index=0, shard_count=1, max_concurrency=64)


def test_environment_fills_in_and_flags_win() -> None:
    env = {"SCATTER_PORT": "5000", "SCATTER_SHARD_INDEX": "2", "SCATTER_SHARD_COUNT": "4"}
    assert LeafOptions.from_args([], environ=env).address == "127.0.0.1:5000"
    options = LeafOptions.from_args(["--port", "6000", "--shard-index", "3"], environ=env)
    assert (options.address, options.shard_index, options.shard_count) == ("127.0.0.1:6000", 3, 4)


def test_address_replaces_host_and_port_but_explicit_flags_beat_the_environment() -> None:
    env = {"SCATTER_ADDRESS": "unix:/tmp/leaf.sock", "SCATTER_PORT": "5000"}
    assert LeafOptions.from_args([], environ=env).address == "unix:/tmp/leaf.sock"
    assert LeafOptions.from_args(["--port", "7"], environ=env).address == "127.0.0.1:7"
    assert LeafOptions.from_args(["--address", "[::1]:9"], environ={}).address == "[::1]:9"
    assert LeafOptions.from_args(["--host", "::1"], environ={}).address == "[::1]:0"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "70000"], {}, "argument --port: expected an integer 0..65535, got '70000'"),
        ([], {"SCATTER_MAX_CONCURRENCY": "0"}, "environment variable SCATTER_MAX_CONCURRENCY='0'"),
        (["--grace-seconds", "-1"], {}, "argument --grace-seconds"),
        (["--address", "nowhere"], {}, "argument --address: 'nowhere': expected 'host:port'"),
        (["--shard-index", "4", "--shard-count", "4"], {}, "--shard-index/SCATTER_SHARD_INDEX"),
        (["--address", "unix:/x", "--port", "1"], {}, "--address replaces --host and --port"),
        (["--verbose"], {}, "unrecognized arguments: --verbose"),
    ],
)
def test_bad_values_name_the_flag_or_variable(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        LeafOptions.from_args(argv, environ=env)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_extra_args_pass_through_only_when_asked() -> None:
    options = LeafOptions.from_args(["--seed", "3", "--port", "8"], environ={}, allow_extra_args=True)
    assert options.address == "127.0.0.1:8"


def test_options_are_validated_on_construction() -> None:
    with pytest.raises(ValueError, match=r"shard_index must be in 0\.\.1, got 2"):
        LeafOptions(shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match=r"max_concurrency must be in \[1, 100000\], got 0"):
        LeafOptions(max_concurrency=0)


# --- helpers ------------------------------------------------------------------------------------


def execute(
    stub: leaf_pb2_grpc.LeafStub,
    request: probe_pb2.ProbeRequest,
    *,
    shard: int,
    shard_count: int = 0,
    timeout: float | None = 10.0,
    request_id: str = "",
) -> probe_pb2.ProbePartial:
    response = stub.Execute(
        leaf_pb2.ExecuteRequest(
            payload=pack(request), shard_index=shard, shard_count=shard_count, request_id=request_id
        ),
        timeout=timeout,
    )
    return unpack(response.payload, probe_pb2.ProbePartial)


def seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


# --- the probe leaf -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe() -> Iterator[Proc]:
    proc = start_healthy(
        [PYTHON, PROBE_LEAF, "--port", "0", "--shard-index", "1", "--shard-count", "3"],
        {"SCATTER_MAX_CONCURRENCY": "4", "SCATTER_REPLICA_ID": "r1"},
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def probe_stub(probe: Proc) -> Iterator[leaf_pb2_grpc.LeafStub]:
    with grpc.insecure_channel(probe.address) as channel:
        yield leaf_pb2_grpc.LeafStub(channel)


def test_happy_path(probe_stub: leaf_pb2_grpc.LeafStub) -> None:
    partial = execute(probe_stub, probe_pb2.ProbeRequest(value=10), shard=1, shard_count=3)
    assert partial.remaining_ms > 0  # the deadline reached the handler
    partial.ClearField("remaining_ms")
    assert partial == probe_pb2.ProbePartial(shard_index=1, value=12, replica="r1")


def test_per_shard_delay_applies_to_this_shard_only(probe_stub: leaf_pb2_grpc.LeafStub) -> None:
    request = probe_pb2.ProbeRequest(shard_delays={0: seconds(5), 1: seconds(0.2)})
    started = time.monotonic()
    execute(probe_stub, request, shard=1)
    assert 0.2 <= time.monotonic() - started < 2


def test_payload_of_the_wrong_type_is_invalid_argument(probe_stub: leaf_pb2_grpc.LeafStub) -> None:
    call = leaf_pb2.ExecuteRequest(payload=pack(probe_pb2.ProbePartial()), shard_index=1)
    error = rpc_error(lambda: probe_stub.Execute(call, timeout=5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 'probe.v1.ProbeRequest'" in str(error.details())


def test_garbage_bytes_are_invalid_argument(probe_stub: leaf_pb2_grpc.LeafStub) -> None:
    payload = pack(probe_pb2.ProbeRequest())
    payload.value = b"\xff\xff\xff"
    error = rpc_error(lambda: probe_stub.Execute(leaf_pb2.ExecuteRequest(payload=payload, shard_index=1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'probe.v1.ProbeRequest' does not decode" in str(error.details())


def test_empty_payload_is_invalid_argument(probe_stub: leaf_pb2_grpc.LeafStub) -> None:
    error = rpc_error(lambda: probe_stub.Execute(leaf_pb2.ExecuteRequest(shard_index=1), timeout=5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "probe.v1.ProbeRequest" in str(error.details())


def test_wrong_shard_is_failed_precondition(probe_stub: leaf_pb2_grpc.LeafStub) -> None:
    error = rpc_error(lambda: execute(probe_stub, probe_pb2.ProbeRequest(), shard=2, shard_count=3))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(error.details()) == "this leaf serves shard 1 of 3; the request is for shard 2 of 3"
    error = rpc_error(lambda: execute(probe_stub, probe_pb2.ProbeRequest(), shard=1, shard_count=4))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_handler_exception_is_internal_and_the_leaf_keeps_serving(
    probe: Proc, probe_stub: leaf_pb2_grpc.LeafStub
) -> None:
    error = rpc_error(lambda: execute(probe_stub, probe_pb2.ProbeRequest(fail_shards=[1]), shard=1))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert str(error.details()) == "RuntimeError: shard 1 was asked to fail"
    assert execute(probe_stub, probe_pb2.ProbeRequest(fail_shards=[0]), shard=1).value == 2
    assert any("Traceback" in line for line in probe.lines), "handler failures are logged with traceback"


def test_over_the_concurrency_limit_is_refused_at_once(probe_stub: leaf_pb2_grpc.LeafStub) -> None:
    slow = probe_pb2.ProbeRequest(delay=seconds(1.5))
    with ThreadPoolExecutor(4) as pool:
        busy = [pool.submit(execute, probe_stub, slow, shard=1) for _ in range(4)]
        # The four slow calls may take a moment to arrive: until they do, a quick call is admitted.
        deadline = time.monotonic() + 1.3
        refused = None
        while refused is None and time.monotonic() < deadline:
            try:
                execute(probe_stub, probe_pb2.ProbeRequest(), shard=1, timeout=0.5)
            except grpc.RpcError as exc:
                refused = exc
        assert refused is not None, "no call was refused"
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "concurrency limit (4 calls in flight)" in str(refused.details())
        assert [f.result(timeout=5).value for f in busy] == [2, 2, 2, 2]
    assert execute(probe_stub, probe_pb2.ProbeRequest(), shard=1).value == 2


def test_async_handler_is_cancelled_with_the_call(probe_stub: leaf_pb2_grpc.LeafStub) -> None:
    started = time.monotonic()
    error = rpc_error(lambda: execute(probe_stub, probe_pb2.ProbeRequest(delay=seconds(5)), shard=1, timeout=0.3))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2


# --- start and stop -----------------------------------------------------------------------------


def test_not_serving_until_the_start_hook_finished() -> None:
    started = time.monotonic()
    proc = start_process([PYTHON, PROBE_LEAF, "--start-delay-ms", "2000"])
    try:
        assert health_status(proc.address) == "NOT_SERVING"
        assert health_status(proc.address, "scatter_gather.v1.Leaf") == "NOT_SERVING"
        with grpc.insecure_channel(proc.address) as channel:
            stub = leaf_pb2_grpc.LeafStub(channel)
            error = rpc_error(lambda: execute(stub, probe_pb2.ProbeRequest(), shard=0))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            wait_healthy(proc.address, timeout=10)
            assert time.monotonic() - started >= 1.9
            assert execute(stub, probe_pb2.ProbeRequest(), shard=0).value == 1
    finally:
        proc.stop()


def test_sigterm_reports_not_serving_finishes_in_flight_calls_and_exits_0() -> None:
    proc = start_healthy([PYTHON, PROBE_LEAF, "--grace-seconds", "5"])
    try:
        with grpc.insecure_channel(proc.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stub = leaf_pb2_grpc.LeafStub(channel)
            in_flight = stub.Execute.future(
                leaf_pb2.ExecuteRequest(payload=pack(probe_pb2.ProbeRequest(delay=seconds(1.5)))), timeout=10
            )
            # A quick call answered on the same connection: the leaf has read the slow call's
            # stream, sent before it, so the slow call is in flight when the signal comes.
            assert execute(stub, probe_pb2.ProbeRequest(), shard=0).value == 1
            proc.send_signal(signal.SIGTERM)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            assert unpack(in_flight.result(timeout=5).payload, probe_pb2.ProbePartial).value == 1
        assert proc.wait(timeout=10) == 0
        assert "leaf stopped: CallStats(calls=2, ok=2" in proc.output()
    finally:
        proc.stop()


# --- the test leaf: cancellation, deadlines, error mapping --------------------------------------


def start_test_leaf(tmp: Path, handler: str) -> Proc:
    script = FIXTURES / "marker_leaf.py"
    markers = tmp / "markers"
    markers.mkdir()
    # The sync leaf also has a slow *sync* start hook: it runs in a thread, so
    # the loop still answers health checks (NOT_SERVING) instead of hanging.
    start_delay = "1.0" if handler == "sync" else "0"
    proc = start_process(
        [PYTHON, str(script), "--shard-index", "0", "--shard-count", "2"],
        {"HANDLER": handler, "MARKER_DIR": str(markers), "START_DELAY": start_delay},
    )
    try:
        if handler == "sync":
            assert health_status(proc.address, timeout=0.5) == "NOT_SERVING"
        wait_healthy(proc.address)
    except BaseException:
        proc.stop()
        raise
    MARKERS[proc.popen.pid] = markers
    return proc


@pytest.fixture(scope="module", params=["sync", "async"])
def test_leaf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_test_leaf(tmp_path_factory.mktemp(request.param), request.param)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stub(test_leaf: Proc) -> Iterator[leaf_pb2_grpc.LeafStub]:
    with grpc.insecure_channel(test_leaf.address) as channel:
        yield leaf_pb2_grpc.LeafStub(channel)


def markers_of(proc: Proc) -> Path:
    return MARKERS[proc.popen.pid]


def stats(stub: leaf_pb2_grpc.LeafStub) -> dict[str, int]:
    return json.loads(execute(stub, probe_pb2.ProbeRequest(value=STATS), shard=0).replica)  # type: ignore[no-any-return]


def test_context_describes_the_call(stub: leaf_pb2_grpc.LeafStub) -> None:
    request = leaf_pb2.ExecuteRequest(
        payload=pack(probe_pb2.ProbeRequest(value=DESCRIBE)),
        shard_index=0,
        shard_count=2,
        attempt=2,
        hedge=True,
        request_id="req-7",
    )
    response = stub.Execute(request, timeout=5, metadata=(("x-trace", "abc"),))
    facts = json.loads(unpack(response.payload, probe_pb2.ProbePartial).replica)
    assert facts["metadata"]["x-trace"] == "abc"
    del facts["metadata"]
    assert facts == dict(shard_index=0, shard_count=2, attempt=2, hedge=True, request_id="req-7")


def test_time_remaining_reflects_the_client_deadline(stub: leaf_pb2_grpc.LeafStub) -> None:
    remaining = float(execute(stub, probe_pb2.ProbeRequest(value=TIME_REMAINING), shard=0, timeout=5).replica)
    # grpc rounds the deadline it sends on the wire up, hence the few ms of slack above 5.
    assert 4.0 < remaining <= 5.1
    assert execute(stub, probe_pb2.ProbeRequest(value=TIME_REMAINING), shard=0, timeout=None).replica == "None"


def test_cancel_reaches_the_handler_and_it_stops_working(test_leaf: Proc, stub: leaf_pb2_grpc.LeafStub) -> None:
    markers = markers_of(test_leaf)
    before = stats(stub)["cancelled"]
    call = stub.Execute.future(
        leaf_pb2.ExecuteRequest(
            payload=pack(probe_pb2.ProbeRequest(value=POLL_CANCELLED)), shard_index=0, request_id="cancel-1"
        )
    )
    assert wait_for(markers / "started-cancel-1"), test_leaf.output()
    call.cancel()
    assert wait_for(markers / "cancelled-cancel-1"), "the handler never saw the cancellation"
    assert not (markers / "finished-cancel-1").exists()
    assert stats(stub)["cancelled"] == before + 1


def test_deadline_reaches_the_handler_and_it_stops_working(test_leaf: Proc, stub: leaf_pb2_grpc.LeafStub) -> None:
    markers = markers_of(test_leaf)
    error = rpc_error(
        lambda: execute(stub, probe_pb2.ProbeRequest(value=POLL_CANCELLED), shard=0, timeout=0.3, request_id="dl-1")
    )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_for(markers / "cancelled-dl-1"), "the handler never saw the deadline pass"
    assert not (markers / "finished-dl-1").exists()
    # The thread hands its slot back just after it returns: poll briefly. Only the
    # stats call itself is then in flight: the cancelled work has ended.
    assert wait_until(lambda: stats(stub)["in_flight"] == 1)


def test_error_mapping_and_the_leaf_keeps_serving(test_leaf: Proc, stub: leaf_pb2_grpc.LeafStub) -> None:
    cases = [
        (
            RETURN_STRING,
            grpc.StatusCode.INTERNAL,
            "handler returned str ('not a message'), expected a protobuf message",
        ),
        (INVALID, grpc.StatusCode.INVALID_ARGUMENT, "value 3 is not allowed"),
        (RAISE, grpc.StatusCode.INTERNAL, "ValueError: boom"),
    ]
    before = stats(stub)
    for mode, code, details in cases:
        error = rpc_error(lambda mode=mode: execute(stub, probe_pb2.ProbeRequest(value=mode), shard=0))
        assert (error.code(), str(error.details())) == (code, details)
        assert execute(stub, probe_pb2.ProbeRequest(value=TIME_REMAINING), shard=0).replica
    after = stats(stub)
    assert after["errors"] - before["errors"] == 3
    assert after["ok"] - before["ok"] == 4  # three probes in between, and the first stats call
    assert "WARNING scatter.leaf: leaf handler failed: ValueError: boom" in test_leaf.output()
