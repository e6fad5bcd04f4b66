"""The root's byte splicing equals what protobuf itself would encode."""

from __future__ import annotations

from google.protobuf import any_pb2

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, merge_pb2, root_pb2, shard_pb2
from root import wire


def _payload(value: int) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(probe_pb2.ProbePartial(shard_index=3, value=value, replica="r" * value))
    return packed


def test_varint_and_field_match_protobuf() -> None:
    for n in (1, 127, 128, 300, 2**14, 70_000):
        text = "x" * n
        assert wire.field(6, text.encode()) == leaf_pb2.ExecuteRequest(request_id=text).SerializeToString()
    assert wire.varint(0) == b"\x00"
    assert wire.varint(300) == b"\xac\x02"


def test_execute_request_splice_parses_to_the_same_message() -> None:
    payload = _payload(500)
    spliced = (
        wire.payload_field(payload)
        + leaf_pb2.ExecuteRequest(shard_index=2, shard_count=4, attempt=1, request_id="abc").SerializeToString()
    )
    expected = leaf_pb2.ExecuteRequest(payload=payload, shard_index=2, shard_count=4, attempt=1, request_id="abc")
    assert leaf_pb2.ExecuteRequest.FromString(spliced) == expected


def test_leaf_response_fast_and_slow_paths() -> None:
    payload = _payload(200)
    response = leaf_pb2.ExecuteResponse(payload=payload).SerializeToString()
    assert wire.leaf_response(response) == (payload.SerializeToString(), None, 0)
    # Unknown trailing field (a newer leaf): the slow path still finds the payload.
    assert wire.leaf_response(response + b"\x50\x01") == (payload.SerializeToString(), None, 0)
    assert wire.leaf_response(b"") == (b"", None, 0)
    # A root serving as a leaf adds its coverage and hedges.
    coverage = shard_pb2.Coverage(total=4, answered=3)
    subtree = leaf_pb2.ExecuteResponse(payload=payload, coverage=coverage, hedges=2).SerializeToString()
    assert wire.leaf_response(subtree) == (payload.SerializeToString(), coverage, 2)


def test_merge_request_and_query_response_splices() -> None:
    payload = _payload(7)
    report = shard_pb2.ShardReport(shard_index=1, status=shard_pb2.SHARD_STATUS_OK, attempts=1)
    result_bytes = wire.field(1, report.SerializeToString()) + wire.field(2, payload.SerializeToString())
    merge_bytes = wire.payload_field(payload) + wire.field(2, result_bytes) + wire.field(4, b"rid")
    parsed = merge_pb2.MergeRequest.FromString(merge_bytes)
    assert parsed == merge_pb2.MergeRequest(
        payload=payload, results=[shard_pb2.ShardResult(report=report, payload=payload)], request_id="rid"
    )
    merged = merge_pb2.MergeResponse(payload=payload).SerializeToString()
    rest = root_pb2.QueryResponse(request_id="rid").SerializeToString()
    response = root_pb2.QueryResponse.FromString(wire.merge_payload_field(merged) + rest)
    assert response.payload == payload and response.request_id == "rid"
    assert wire.merge_payload_field(b"") == b""


def test_duration() -> None:
    d = wire.duration(1.25)
    assert (d.seconds, d.nanos) == (1, 250_000_000)
    assert wire.duration(-1).ToNanoseconds() == 0


def test_attempt_fields_and_full_execute_request_splice() -> None:
    payload = _payload(3)
    fixed = leaf_pb2.ExecuteRequest(shard_index=5, shard_count=8).SerializeToString()
    for attempt, hedge in ((1, False), (2, True), (300, True)):
        spliced = wire.payload_field(payload) + wire.field(6, b"rid") + fixed + wire.attempt_fields(attempt, hedge)
        expected = leaf_pb2.ExecuteRequest(
            payload=payload, shard_index=5, shard_count=8, attempt=attempt, hedge=hedge, request_id="rid"
        )
        assert leaf_pb2.ExecuteRequest.FromString(spliced) == expected
