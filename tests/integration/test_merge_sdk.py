"""merge_sdk: its public face, type inference, and real merge processes over real gRPC.

``examples/probe/merge.py`` (an async merge) covers the contract with the
root: partial coverage, empty results, payload errors. A test merge,
``tests/fixtures/marker_merge.py`` (sync), reports what it was given, so the tests
see the ``Partial`` values and the ``MergeContext`` exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2
from google.protobuf.json_format import MessageToDict

import merge_sdk
from merge_sdk import Merge, MergeContext, MergeOptions, Partial, ShardStatus
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import merge_pb2, merge_pb2_grpc, shard_pb2
from scatter_common.payload import pack, unpack
from tests._procs import FIXTURES, PYTHON, REPO, Proc, start_healthy

PROBE_MERGE = str(REPO / "examples" / "probe" / "merge.py")

# Modes of the test merge (tests/fixtures/marker_merge.py), chosen by ProbeRequest.value.
DESCRIBE, POLL_CANCELLED, INVALID, RAISE = range(4)

# --- public face and types ----------------------------------------------------------------------


def test_public_names_are_exactly_the_documented_ones() -> None:
    assert sorted(merge_sdk.__all__) == [
        "CallStats",
        "DEFAULT_MAX_CONCURRENCY",
        "InvalidRequest",
        "Merge",
        "MergeContext",
        "MergeHandler",
        "MergeInfo",
        "MergeOptions",
        "Partial",
        "ShardStatus",
        "concatenate",
        "ok_shards",
        "payloads",
        "serve_merge",
        "sum_field",
        "top_k",
    ]
    for name in merge_sdk.__all__:
        assert getattr(merge_sdk, name) is not None


def test_both_sdks_raise_the_same_invalid_request() -> None:
    import leaf_sdk

    assert merge_sdk.InvalidRequest is leaf_sdk.InvalidRequest


def test_types_are_inferred_from_list_or_sequence_annotations() -> None:
    def merge_list(
        request: probe_pb2.ProbeRequest, partials: list[Partial[probe_pb2.ProbePartial]], ctx: MergeContext
    ) -> probe_pb2.ProbeResponse:
        return probe_pb2.ProbeResponse()

    async def merge_seq(
        request: probe_pb2.ProbeRequest,
        partials: Sequence[Partial[probe_pb2.ProbePartial]],
        ctx: MergeContext,
    ) -> probe_pb2.ProbeResponse:
        return probe_pb2.ProbeResponse()

    for func in (merge_list, merge_seq):
        server = Merge(func)
        assert (server.request_type, server.partial_type) == (probe_pb2.ProbeRequest, probe_pb2.ProbePartial)


def test_types_that_cannot_be_inferred_are_a_clear_error() -> None:
    def merge(request: probe_pb2.ProbeRequest, partials: list, ctx: MergeContext) -> probe_pb2.ProbeResponse:  # type: ignore[type-arg]
        return probe_pb2.ProbeResponse()

    with pytest.raises(TypeError, match=r"cannot infer the partial type .*list\[Partial\[MyPartial\]\]"):
        Merge(merge)
    assert Merge(merge, partial_type=probe_pb2.ProbePartial).partial_type is probe_pb2.ProbePartial


def test_status_mirrors_the_proto_enum() -> None:
    names = [v.name for v in shard_pb2.DESCRIPTOR.enum_types_by_name["ShardStatus"].values]
    assert [f"SHARD_STATUS_{s.value}" for s in ShardStatus] == names
    assert ShardStatus.TIMEOUT == "TIMEOUT"
    assert Partial(0, ShardStatus.OK, None).ok and not Partial(0, ShardStatus.ERROR, None).ok


def test_merge_flags_share_the_leaf_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert MergeOptions.from_args([], environ={"SCATTER_ADDRESS": "unix:/tmp/m.sock"}).address == "unix:/tmp/m.sock"
    with pytest.raises(SystemExit):
        MergeOptions.from_args(["--shard-index", "1"], environ={})
    assert "unrecognized arguments: --shard-index 1" in capsys.readouterr().err


# --- helpers ------------------------------------------------------------------------------------


def seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(value * 1e9))
    return duration


def ok(shard: int, partial: probe_pb2.ProbePartial | None = None, **report: object) -> shard_pb2.ShardResult:
    partial = partial or probe_pb2.ProbePartial(shard_index=shard, value=shard + 1)
    return shard_pb2.ShardResult(
        report=shard_pb2.ShardReport(shard_index=shard, status=shard_pb2.SHARD_STATUS_OK, **report),  # type: ignore[arg-type]
        payload=pack(partial),
    )


def failed(shard: int, status: int, error: str) -> shard_pb2.ShardResult:
    return shard_pb2.ShardResult(
        report=shard_pb2.ShardReport(shard_index=shard, status=status, error=error, attempts=2)  # type: ignore[arg-type]
    )


def coverage(total: int, *missing: tuple[int, int]) -> shard_pb2.Coverage:
    return shard_pb2.Coverage(
        total=total,
        answered=total - len(missing),
        missing=[shard_pb2.MissingShard(shard_index=i, status=s, reason="r") for i, s in missing],  # type: ignore[arg-type]
    )


def merge_call(
    stub: merge_pb2_grpc.MergeStub,
    request: probe_pb2.ProbeRequest,
    results: Sequence[shard_pb2.ShardResult],
    cov: shard_pb2.Coverage,
    *,
    timeout: float | None = 10.0,
    request_id: str = "",
) -> merge_pb2.MergeResponse:
    call = merge_pb2.MergeRequest(payload=pack(request), results=results, coverage=cov, request_id=request_id)
    return stub.Merge(call, timeout=timeout)


def rpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


# --- the probe merge ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe_stub() -> Iterator[merge_pb2_grpc.MergeStub]:
    proc = start_healthy([PYTHON, PROBE_MERGE, "--port", "0"])
    try:
        with grpc.insecure_channel(proc.address) as channel:
            yield merge_pb2_grpc.MergeStub(channel)
    finally:
        proc.stop()


def probe_answer(response: merge_pb2.MergeResponse) -> tuple[int, list[int]]:
    answer = unpack(response.payload, probe_pb2.ProbeResponse)
    return answer.sum, list(answer.shard_indices)


def test_full_coverage(probe_stub: merge_pb2_grpc.MergeStub) -> None:
    response = merge_call(probe_stub, probe_pb2.ProbeRequest(), [ok(0), ok(1), ok(2)], coverage(3))
    assert probe_answer(response) == (1 + 2 + 3, [0, 1, 2])


def test_partial_coverage_sums_the_shards_that_answered(probe_stub: merge_pb2_grpc.MergeStub) -> None:
    results = [
        ok(0),
        failed(1, shard_pb2.SHARD_STATUS_TIMEOUT, "deadline"),
        ok(2),
        failed(3, shard_pb2.SHARD_STATUS_UNAVAILABLE, "refused"),
    ]
    cov = coverage(4, (1, shard_pb2.SHARD_STATUS_TIMEOUT), (3, shard_pb2.SHARD_STATUS_UNAVAILABLE))
    assert probe_answer(merge_call(probe_stub, probe_pb2.ProbeRequest(), results, cov)) == (1 + 3, [0, 2])


def test_empty_results(probe_stub: merge_pb2_grpc.MergeStub) -> None:
    assert probe_answer(merge_call(probe_stub, probe_pb2.ProbeRequest(), [], coverage(0))) == (0, [])
    everything_failed = [failed(i, shard_pb2.SHARD_STATUS_ERROR, "boom") for i in range(3)]
    assert probe_answer(merge_call(probe_stub, probe_pb2.ProbeRequest(), everything_failed, coverage(3))) == (
        0,
        [],
    )


def test_request_of_the_wrong_type_is_invalid_argument(probe_stub: merge_pb2_grpc.MergeStub) -> None:
    call = merge_pb2.MergeRequest(payload=pack(probe_pb2.ProbePartial()))
    error = rpc_error(lambda: probe_stub.Merge(call, timeout=5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(error.details()) == "payload has type 'probe.v1.ProbePartial', expected 'probe.v1.ProbeRequest'"


def test_partial_that_does_not_decode_names_the_shard_and_type(probe_stub: merge_pb2_grpc.MergeStub) -> None:
    wrong_type = ok(1)
    wrong_type.payload.CopyFrom(pack(probe_pb2.ProbeRequest()))
    error = rpc_error(lambda: merge_call(probe_stub, probe_pb2.ProbeRequest(), [ok(0), wrong_type], coverage(2)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(error.details()) == "shard 1: payload has type 'probe.v1.ProbeRequest', expected 'probe.v1.ProbePartial'"
    garbage = ok(2)
    garbage.payload.value = b"\xff\xff"
    error = rpc_error(lambda: merge_call(probe_stub, probe_pb2.ProbeRequest(), [garbage], coverage(3)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(error.details()).startswith("shard 2: payload of type 'probe.v1.ProbePartial' does not decode")
    # A failed shard's payload is never decoded, whatever it holds.
    ignored = failed(0, shard_pb2.SHARD_STATUS_ERROR, "x")
    ignored.payload.value = b"\xff"
    assert probe_answer(merge_call(probe_stub, probe_pb2.ProbeRequest(), [ignored], coverage(1))) == (0, [])


# --- the test merge -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_merge(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Proc, merge_pb2_grpc.MergeStub, Path]]:
    tmp = tmp_path_factory.mktemp("merge")
    (tmp / "markers").mkdir()
    proc = start_healthy([PYTHON, str(FIXTURES / "marker_merge.py")], {"MARKER_DIR": str(tmp / "markers")})
    try:
        with grpc.insecure_channel(proc.address) as channel:
            yield proc, merge_pb2_grpc.MergeStub(channel), tmp / "markers"
    finally:
        proc.stop()


def test_partials_and_context_carry_every_report_field(
    test_merge: tuple[Proc, merge_pb2_grpc.MergeStub, Path],
) -> None:
    _, stub, _ = test_merge
    results = [
        ok(0, replica="10.0.0.1:7000", latency=seconds(0.25), attempts=2, hedge_won=True),
        failed(1, shard_pb2.SHARD_STATUS_SKIPPED, "coverage wait ended"),
    ]
    cov = coverage(2, (1, shard_pb2.SHARD_STATUS_SKIPPED))
    response = merge_call(stub, probe_pb2.ProbeRequest(value=DESCRIBE), results, cov, timeout=5, request_id="q-1")
    answer = MessageToDict(unpack(response.payload, struct_pb2.Struct))
    assert answer["partials"] == [
        dict(
            shard_index=0, status="OK", ok=True, replica="10.0.0.1:7000", latency_seconds=0.25,
            attempts=2, hedge_won=True, error="", value=1,
        ),
        dict(
            shard_index=1, status="SKIPPED", ok=False, replica="", latency_seconds=0,
            attempts=2, hedge_won=False, error="coverage wait ended", value=None,
        ),
    ]  # fmt: skip
    assert answer["coverage"] == [1, 2, 1]
    assert answer["request_id"] == "q-1"
    assert 4.0 < answer["time_remaining"] <= 5.1


def test_errors_map_to_codes_and_the_merge_keeps_serving(
    test_merge: tuple[Proc, merge_pb2_grpc.MergeStub, Path],
) -> None:
    proc, stub, _ = test_merge
    error = rpc_error(lambda: merge_call(stub, probe_pb2.ProbeRequest(value=INVALID), [], coverage(0)))
    assert (error.code(), str(error.details())) == (grpc.StatusCode.INVALID_ARGUMENT, "no merging on value 2")
    error = rpc_error(lambda: merge_call(stub, probe_pb2.ProbeRequest(value=RAISE), [], coverage(0)))
    assert (error.code(), str(error.details())) == (grpc.StatusCode.INTERNAL, "KeyError: 'shard'")
    assert merge_call(stub, probe_pb2.ProbeRequest(value=DESCRIBE), [], coverage(0)).payload.type_url
    proc.wait_for_output("merge handler failed: KeyError: 'shard'")


def test_deadline_reaches_a_sync_merge(test_merge: tuple[Proc, merge_pb2_grpc.MergeStub, Path]) -> None:
    _, stub, markers = test_merge
    error = rpc_error(
        lambda: merge_call(stub, probe_pb2.ProbeRequest(value=POLL_CANCELLED), [], coverage(0), timeout=0.3)
    )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 5
    while not (markers / "cancelled").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (markers / "cancelled").exists()
