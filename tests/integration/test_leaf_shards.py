"""leaf_sdk: one process serving several shards (``--shards``), and its ExecuteShards calls.

A real leaf process (``tests/fixtures/marker_leaf.py``, sync and async
handlers) serving shards 0-2 of 4, over real gRPC: Execute for any of its
shards, ExecuteShards answering each shard as Execute would have (its own
failure in its own answer), the whole call refused only for what holds for
every shard, and cancellation reaching every shard's handler.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from leaf_sdk import LeafOptions
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc
from scatter_common.payload import pack, unpack
from tests._marker_leaf import (
    DESCRIBE,
    INVALID,
    POLL_CANCELLED,
    RAISE,
    STATS,
    rpc_error,
    wait_for,
    wait_until,
)
from tests._procs import FIXTURES, PYTHON, Proc, start_healthy

SERVES = "this leaf serves shards 0, 1, 2 of 4"


def test_shards_flag_lists_indexes_and_ranges() -> None:
    options = LeafOptions.from_args(["--shards", "4-6,1", "--shard-count", "8"], environ={})
    assert (options.served, options.shard_index) == ((4, 5, 6, 1), 4)
    env = {"SCATTER_SHARDS": "0-1", "SCATTER_SHARD_COUNT": "2"}
    assert LeafOptions.from_args([], environ=env).served == (0, 1)
    assert LeafOptions.from_args(["--shard-index", "1", "--shard-count", "2"], environ={}).served == (1,)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shards", "3-1", "--shard-count", "4"], "argument --shards: expected shard indexes and ranges"),
        (["--shards", "0,x", "--shard-count", "4"], "argument --shards: expected shard indexes and ranges"),
        (["--shards", "0-2,1", "--shard-count", "4"], "argument --shards: a shard appears twice in '0-2,1'"),
        (["--shards", "0-4", "--shard-count", "4"], "shard 4 is out of range for shard count 4 (--shards"),
    ],
)
def test_bad_shard_lists_name_the_flag(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        LeafOptions.from_args(argv, environ={})
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_options_check_the_shard_list() -> None:
    with pytest.raises(ValueError, match=r"shards must be in 0\.\.3, got 4"):
        LeafOptions(shards=(0, 4), shard_count=4)
    with pytest.raises(ValueError, match="lists a shard twice"):
        LeafOptions(shards=(1, 1), shard_count=4)


@pytest.fixture(scope="module", params=["sync", "async"])
def leaf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Path]]:
    markers = tmp_path_factory.mktemp(f"shards-{request.param}")
    proc = start_healthy(
        [PYTHON, str(FIXTURES / "marker_leaf.py"), "--shards", "0-2", "--shard-count", "4"],
        {"HANDLER": request.param, "MARKER_DIR": str(markers)},
    )
    yield proc, markers
    proc.stop()


@pytest.fixture(scope="module")
def stub(leaf: tuple[Proc, Path]) -> Iterator[leaf_pb2_grpc.LeafStub]:
    with grpc.insecure_channel(leaf[0].address) as channel:
        yield leaf_pb2_grpc.LeafStub(channel)


def batch(
    stub: leaf_pb2_grpc.LeafStub, mode: int, shards: list[int], shard_count: int = 4, **fields: object
) -> leaf_pb2.ExecuteShardsResponse:
    request = leaf_pb2.ExecuteShardsRequest(
        payload=pack(probe_pb2.ProbeRequest(value=mode)), shard_indexes=shards, shard_count=shard_count, **fields
    )
    response: leaf_pb2.ExecuteShardsResponse = stub.ExecuteShards(request, timeout=10)
    return response


def described(answer: leaf_pb2.ShardAnswer) -> dict[str, object]:
    assert answer.code == 0, answer.message
    facts: dict[str, object] = json.loads(unpack(answer.payload, probe_pb2.ProbePartial).replica)
    del facts["metadata"]
    return facts


def test_the_start_hook_is_told_every_shard(leaf: tuple[Proc, Path]) -> None:
    assert (leaf[1] / "serves-0,1,2").exists()


def test_execute_serves_each_of_its_shards_and_refuses_another(stub: leaf_pb2_grpc.LeafStub) -> None:
    for shard in (0, 2):
        request = leaf_pb2.ExecuteRequest(payload=pack(probe_pb2.ProbeRequest(value=DESCRIBE)), shard_index=shard)
        response = stub.Execute(request, timeout=10)
        assert json.loads(unpack(response.payload, probe_pb2.ProbePartial).replica)["shard_index"] == shard
    request = leaf_pb2.ExecuteRequest(payload=pack(probe_pb2.ProbeRequest()), shard_index=3, shard_count=4)
    error = rpc_error(lambda: stub.Execute(request, timeout=10))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"{SERVES}; the request is for shard 3 of 4"


def test_execute_shards_answers_each_shard_in_the_requests_order(stub: leaf_pb2_grpc.LeafStub) -> None:
    response = batch(stub, DESCRIBE, [2, 0], attempt=1, request_id="rid-9")
    assert [a.shard_index for a in response.answers] == [2, 0]
    assert [described(a) for a in response.answers] == [
        dict(shard_index=s, shard_count=4, attempt=1, hedge=False, request_id="rid-9") for s in (2, 0)
    ]


def test_one_shards_failure_is_its_own_answer(stub: leaf_pb2_grpc.LeafStub) -> None:
    response = batch(stub, DESCRIBE, [0, 3])
    ok, wrong = response.answers
    assert described(ok)["shard_index"] == 0
    assert (wrong.shard_index, wrong.code, wrong.message) == (
        3,
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
        f"{SERVES}; the request is for shard 3",
    )
    assert not wrong.HasField("payload")
    for mode, code, message in [
        (INVALID, grpc.StatusCode.INVALID_ARGUMENT, "value 3 is not allowed"),
        (RAISE, grpc.StatusCode.INTERNAL, "ValueError: boom"),
    ]:
        answers = batch(stub, mode, [0, 1]).answers
        assert [(a.code, a.message) for a in answers] == [(code.value[0], message)] * 2


@pytest.mark.parametrize(
    ("shards", "shard_count", "code", "message"),
    [
        ([], 4, grpc.StatusCode.INVALID_ARGUMENT, "shard_indexes must list distinct shards, got []"),
        ([1, 1], 4, grpc.StatusCode.INVALID_ARGUMENT, "shard_indexes must list distinct shards, got [1, 1]"),
        ([0], 5, grpc.StatusCode.FAILED_PRECONDITION, f"{SERVES}; the request is for shards of 5"),
    ],
)
def test_what_holds_for_every_shard_ends_the_whole_call(
    stub: leaf_pb2_grpc.LeafStub, shards: list[int], shard_count: int, code: grpc.StatusCode, message: str
) -> None:
    error = rpc_error(lambda: batch(stub, DESCRIBE, shards, shard_count))
    assert (error.code(), error.details()) == (code, message)


def test_a_body_that_does_not_parse_is_invalid_argument(leaf: tuple[Proc, Path]) -> None:
    with grpc.insecure_channel(leaf[0].address) as channel:
        call = channel.unary_unary("/scatter_gather.v1.Leaf/ExecuteShards")
        error = rpc_error(lambda: call(b"\xff\xff\xff", timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cancelling_the_call_reaches_every_shards_handler(
    leaf: tuple[Proc, Path], stub: leaf_pb2_grpc.LeafStub
) -> None:
    proc, markers = leaf
    stats_before = stats(stub)
    request = leaf_pb2.ExecuteShardsRequest(
        payload=pack(probe_pb2.ProbeRequest(value=POLL_CANCELLED)), shard_indexes=[0, 1], request_id="batch-cancel"
    )
    call = stub.ExecuteShards.future(request)
    assert wait_for(markers / "started-batch-cancel"), proc.output()
    call.cancel()
    assert wait_for(markers / "cancelled-batch-cancel"), "the handlers never saw the cancellation"
    assert not (markers / "finished-batch-cancel").exists()
    # One cancellation per shard of the call; then only the stats call itself is in flight.
    # (A sync handler's thread hands its slot back just after it returns: poll briefly.)
    assert wait_until(lambda: stats(stub)["cancelled"] - stats_before["cancelled"] == 2), stats(stub)
    assert wait_until(lambda: stats(stub)["in_flight"] == 1), stats(stub)


def stats(stub: leaf_pb2_grpc.LeafStub) -> dict[str, int]:
    (answer,) = batch(stub, STATS, [0]).answers
    return json.loads(unpack(answer.payload, probe_pb2.ProbePartial).replica)  # type: ignore[no-any-return]
