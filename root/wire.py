"""Protobuf wire-format splicing for the root's hot path.

The root never decodes application payloads; it does not even re-encode the
messages that carry them. Protobuf's encoding is a concatenation of fields,
and concatenated encodings merge, so the root builds

    ExecuteRequest  = [payload: field 1] + [shard, attempt, ... fields]
    ShardResult     = [report: field 1] + [leaf's Any, re-tagged as field 2]
    MergeRequest    = [payload] + [results...] + [coverage] + [request_id]
    QueryResponse   = [merge's Any: field 1, as sent] + [coverage, shards, ...]

from byte strings, copying each payload once into the outgoing message.
When a peer's message carries anything but field 1 (a newer peer with extra
fields), the splice falls back to a full parse, so correctness never rests on
the fast path. ``tests/test_wire.py`` checks each splice against protobuf.
"""

from __future__ import annotations

from google.protobuf import any_pb2, duration_pb2

from protos.scatter_gather.v1 import leaf_pb2, merge_pb2, shard_pb2

_LEN_DELIMITED = 2


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field (message, bytes or string) with its tag."""
    return varint(number << 3 | _LEN_DELIMITED) + varint(len(data)) + data


_HEDGE_FIELD = b"\x28\x01"  # ExecuteRequest.hedge = true (field 5, varint)


def attempt_fields(attempt: int, hedge: bool) -> bytes:
    """ExecuteRequest.attempt (field 4) and, for a hedge, ExecuteRequest.hedge (field 5)."""
    encoded = b"\x20" + varint(attempt)
    return encoded + _HEDGE_FIELD if hedge else encoded


def _sole_field_1(raw: bytes) -> int | None:
    """Offset of field 1's contents when ``raw`` is exactly one length-delimited field 1."""
    if not raw or raw[0] != 0x0A:
        return None
    length, shift, pos = 0, 0, 1
    while pos < len(raw):
        byte = raw[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return pos if pos + length == len(raw) else None
        shift += 7
    return None


def leaf_response(raw: bytes) -> tuple[bytes, shard_pb2.Coverage | None, int]:
    """(payload, subtree coverage, subtree hedges) of an ExecuteResponse.

    A plain leaf sends only the payload (the fast path, no parsing); a root
    serving as a leaf adds its coverage and hedge count.
    """
    start = _sole_field_1(raw)
    if start is not None:
        return raw[start:], None, 0
    parsed = leaf_pb2.ExecuteResponse.FromString(raw)
    payload = parsed.payload.SerializeToString() if parsed.HasField("payload") else b""
    return payload, (parsed.coverage if parsed.HasField("coverage") else None), parsed.hedges


def merge_payload_field(raw_merge_response: bytes) -> bytes:
    """Field 1 (the Any) of a MergeResponse, ready to open a QueryResponse."""
    if _sole_field_1(raw_merge_response) is not None:
        return raw_merge_response
    parsed = merge_pb2.MergeResponse.FromString(raw_merge_response)
    return field(1, parsed.payload.SerializeToString()) if parsed.HasField("payload") else b""


def payload_field(payload: any_pb2.Any) -> bytes:
    """Field 1 holding ``payload``: the common prefix of ExecuteRequest and MergeRequest."""
    return field(1, payload.SerializeToString())


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration message of ``seconds`` (negative clamps to zero)."""
    nanos = max(0, round(seconds * 1e9))
    return duration_pb2.Duration(seconds=nanos // 1_000_000_000, nanos=nanos % 1_000_000_000)
