"""The root's splices (root.wire, the functions the servicer and the fan-out
call) are byte for byte what protobuf itself encodes, and parse back to the
same messages; its readers find what protobuf's parser finds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, merge_pb2, root_pb2, shard_pb2
from root import wire

RID = "0af7651916cd43dd8448eb211c80319c"


def _payload(value: int) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(probe_pb2.ProbePartial(shard_index=3, value=value, replica="r" * value))
    return packed


def test_varint_and_field_match_protobuf() -> None:
    for n in (0, 1, 127, 128, 300, 2**14, 70_000):
        text = "x" * n
        encoded = leaf_pb2.ExecuteRequest(request_id=text).SerializeToString()
        assert wire.execute_request_id_field(text) == encoded
        if n:  # proto3 leaves an empty string out; field() always writes it
            assert wire.field(leaf_pb2.ExecuteRequest.REQUEST_ID_FIELD_NUMBER, text.encode()) == encoded
    assert wire.varint(0) == b"\x00"
    assert wire.varint(300) == b"\xac\x02"
    assert wire.tag(leaf_pb2.ExecuteRequest.PAYLOAD_FIELD_NUMBER) == b"\x0a"


@pytest.mark.parametrize(
    ("shard_index", "shard_count", "attempt", "hedge", "request_id"),
    [
        (0, 1, 1, False, RID),  # shard 0: proto3 leaves the default out, and so must the splice
        (5, 8, 2, True, RID),
        (5, 8, 3, False, ""),
        (200, 1000, 127, True, RID),
        (7, 8, 128, True, RID),  # past the precomputed attempt fields
        (7, 8, 300, False, RID),
    ],
)
def test_execute_request_is_protobufs_own_encoding(
    shard_index: int, shard_count: int, attempt: int, hedge: bool, request_id: str
) -> None:
    payload = _payload(500)
    spliced = wire.execute_request(
        wire.payload_field(payload),
        wire.execute_shard_fields(shard_index, shard_count),
        attempt,
        hedge,
        wire.execute_request_id_field(request_id),
    )
    expected = leaf_pb2.ExecuteRequest(
        payload=payload,
        shard_index=shard_index,
        shard_count=shard_count,
        attempt=attempt,
        hedge=hedge,
        request_id=request_id,
    )
    assert spliced == expected.SerializeToString()
    assert leaf_pb2.ExecuteRequest.FromString(spliced) == expected


def test_leaf_response_fast_and_slow_paths() -> None:
    payload = _payload(200)
    response = leaf_pb2.ExecuteResponse(payload=payload).SerializeToString()
    assert wire.leaf_response(response) == (payload.SerializeToString(), None, 0)
    # Unknown trailing field (a newer leaf): the slow path still finds the payload.
    assert wire.leaf_response(response + b"\x50\x01") == (payload.SerializeToString(), None, 0)
    assert wire.leaf_response(b"") == (b"", None, 0)
    # A root serving as a leaf adds its coverage and hedges: what the servicer sends up.
    coverage = shard_pb2.Coverage(total=4, answered=3)
    merged = merge_pb2.MergeResponse(payload=payload).SerializeToString()
    subtree = wire.execute_response(wire.merge_payload_field(merged), coverage, 2)
    assert subtree == leaf_pb2.ExecuteResponse(payload=payload, coverage=coverage, hedges=2).SerializeToString()
    assert wire.leaf_response(subtree) == (payload.SerializeToString(), coverage, 2)


def test_merge_request_is_protobufs_own_encoding() -> None:
    payload, answer = _payload(7), _payload(130)
    reports = [
        shard_pb2.ShardReport(shard_index=0, status=shard_pb2.SHARD_STATUS_OK, attempts=1, replica="a:1"),
        shard_pb2.ShardReport(shard_index=1, status=shard_pb2.SHARD_STATUS_TIMEOUT, attempts=2, error="late"),
    ]
    coverage = shard_pb2.Coverage(total=2, answered=1)
    coverage.missing.add(shard_index=1, status=shard_pb2.SHARD_STATUS_TIMEOUT, reason="late")
    spliced = wire.merge_request(
        wire.payload_field(payload),
        [(reports[0].SerializeToString(), answer.SerializeToString()), (reports[1].SerializeToString(), b"")],
        coverage.SerializeToString(),
        RID,
    )
    expected = merge_pb2.MergeRequest(
        payload=payload,
        results=[shard_pb2.ShardResult(report=reports[0], payload=answer), shard_pb2.ShardResult(report=reports[1])],
        coverage=coverage,
        request_id=RID,
    )
    assert spliced == expected.SerializeToString()
    assert merge_pb2.MergeRequest.FromString(spliced) == expected


def test_query_response_is_protobufs_own_encoding() -> None:
    payload = _payload(9)
    reports = [shard_pb2.ShardReport(shard_index=i, status=shard_pb2.SHARD_STATUS_OK, attempts=1) for i in range(3)]
    coverage = shard_pb2.Coverage(total=3, answered=3)
    merged = merge_pb2.MergeResponse(payload=payload).SerializeToString()
    spliced = wire.query_response(
        wire.merge_payload_field(merged),
        coverage.SerializeToString(),
        [report.SerializeToString() for report in reports],
        1.25,
        RID,
    )
    expected = root_pb2.QueryResponse(
        payload=payload, coverage=coverage, shards=reports, latency=wire.duration(1.25), request_id=RID
    )
    assert spliced == expected.SerializeToString()
    assert root_pb2.QueryResponse.FromString(spliced) == expected


def test_merge_payload_field_fast_and_slow_paths() -> None:
    payload = _payload(7)
    merged = merge_pb2.MergeResponse(payload=payload).SerializeToString()
    assert wire.merge_payload_field(merged) == merged  # the fast path: used as it came
    # A newer merge with an extra field: parsed, and only the payload kept.
    opening = wire.merge_payload_field(merged + b"\x50\x01")
    assert opening == root_pb2.QueryResponse(payload=payload).SerializeToString()
    assert wire.merge_payload_field(b"") == b""


def test_duration() -> None:
    d = wire.duration(1.25)
    assert (d.seconds, d.nanos) == (1, 250_000_000)
    assert wire.duration(-1).ToNanoseconds() == 0


def test_no_splice_outside_wire() -> None:
    """The rest of the root calls the message functions above, never the field encoders."""
    root = Path(wire.__file__).parent
    encoders = {"field", "tag", "varint"}
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "wire.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in encoders and getattr(node.value, "id", "") == "wire":
                found.append(f"{path.name}:{node.lineno}: wire.{node.attr}")
    assert found == []


def test_execute_framing_bounds_every_execute_request() -> None:
    payload = wire.payload_field(_payload(5))
    for index, count, attempt, hedge in ((0, 1, 1, False), (2**32 - 1, 2**32 - 1, 5, True), (300, 70_000, 127, True)):
        request = wire.execute_request(
            payload, wire.execute_shard_fields(index, count), attempt, hedge, wire.execute_request_id_field(RID)
        )
        assert len(request) - len(payload) <= wire.EXECUTE_FRAMING_BYTES
    widest = wire.execute_request(
        payload, wire.execute_shard_fields(2**32 - 1, 2**32 - 1), 127, True, wire.execute_request_id_field(RID)
    )
    assert len(widest) - len(payload) == wire.EXECUTE_FRAMING_BYTES  # exact, not a guess


def test_merge_framing_bounds_a_merge_request_without_answers() -> None:
    replica = "10.0.0.1:50051"
    shards = [(0, replica), (1, replica), (2, "leaf-2.example.svc.cluster.local:50051")]
    framing = wire.merge_framing_bytes(shards, range(3), 3)
    payload = wire.payload_field(_payload(5))
    reports = [
        shard_pb2.ShardReport(
            shard_index=i,
            status=shard_pb2.SHARD_STATUS_TIMEOUT,
            replica=address,
            latency=wire.duration(12.5),
            attempts=3,
            hedge_won=True,
            hedges=2,
        ).SerializeToString()
        for i, address in shards
    ]
    coverage = shard_pb2.Coverage(
        total=3, answered=0, missing=[shard_pb2.MissingShard(shard_index=i, status=3) for i in range(3)]
    ).SerializeToString()
    request = wire.merge_request(payload, ((r, b"") for r in reports), coverage, RID)
    assert 0 < len(request) - len(payload) <= framing
    # More shards, more framing: it grows with the fan-out.
    assert wire.merge_framing_bytes([*shards, (3, replica)], range(4), 4) > framing


@pytest.mark.parametrize("with_options", [False, True])
def test_query_request_reads_the_payload_field_without_copying_it(with_options: bool) -> None:
    payload = _payload(300)
    request = root_pb2.QueryRequest(payload=payload)
    if with_options:
        request.options.min_coverage = 0.5
    raw = request.SerializeToString()
    parts = wire.query_request(raw)
    assert parts is not None
    field_bytes, type_url, options = parts
    assert bytes(field_bytes) == wire.payload_field(payload)
    assert type_url == payload.type_url
    assert root_pb2.QueryOptions.FromString(options) == request.options
    if not with_options:
        assert field_bytes is raw  # the body itself: no copy
    else:
        assert isinstance(field_bytes, memoryview) and field_bytes.obj is raw
    # What the leaves get is protobuf's own encoding either way.
    spliced = wire.execute_request(field_bytes, wire.execute_shard_fields(1, 2), 1, False, b"")
    assert leaf_pb2.ExecuteRequest.FromString(spliced).payload == payload


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # no payload: the parser decides (an empty payload)
        root_pb2.QueryRequest(payload=_payload(3)).SerializeToString() * 2,  # a repeated field merges
        root_pb2.QueryRequest(payload=_payload(3)).SerializeToString() + b"\x18\x01",  # an unknown field
        b"\x0a\x05\x0a\x03\xff\xfe\xfd",  # a type URL that is not UTF-8
        b"\x0a\x10\x0a\x03abc",  # a length past the end
        b"\xff\xff\xff\xff\x0f",  # not a message at all
    ],
)
def test_query_request_leaves_anything_unusual_to_the_parser(raw: bytes) -> None:
    assert wire.query_request(raw) is None
