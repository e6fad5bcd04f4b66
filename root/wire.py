"""Protobuf wire-format splicing for the root's hot path: every spliced message.

The root never decodes application payloads; it does not even re-encode the
messages that carry them. Protobuf's encoding is a concatenation of fields,
and concatenated encodings merge, so the root builds

    ExecuteRequest  = [payload] + [shard_index, shard_count] + [attempt, hedge] + [request_id]
    MergeRequest    = [payload] + [results: report + the leaf's Any, re-tagged] + [coverage] + [request_id]
    QueryResponse   = [the merge's Any, as sent] + [coverage] + [shards] + [latency] + [request_id]
    ExecuteResponse = [the merge's Any, as sent] + [coverage, hedges]   (a root serving as a leaf)

from byte strings, copying each payload once into the outgoing message, and
reads QueryRequest (its framing only), ExecuteResponse and MergeResponse
without parsing them. The client's payload field is held as it arrived (the
request body, or a view into it) and is never copied but into the messages
the root sends.

Rules of this file:

- Every splice lives here, as a function; the servicer and the fan-out only
  call them (``tests/unit/test_wire.py`` calls the same functions and
  compares their bytes with protobuf's own serialization and parsing).
- Every tag is built from the generated ``*_FIELD_NUMBER`` constants and
  encoded once, at import: nothing on the hot path recomputes a constant.
  The splices that move a field from one message to another (the payload
  opening ExecuteRequest, MergeRequest and QueryResponse) need the numbers
  to agree; that is checked at import, so a renumbered .proto fails loudly.
- Fields go in field-number order, as protobuf writes them, so a splice is
  byte for byte what ``SerializeToString`` would give.
- When a peer's message carries anything but its payload (a newer peer with
  extra fields, or a root serving as a leaf), reading falls back to a full
  parse, so correctness never rests on the fast path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf import any_pb2, duration_pb2

from protos.scatter_gather.v1 import leaf_pb2, merge_pb2, root_pb2, shard_pb2

_VARINT = 0
_LEN_DELIMITED = 2


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int = _LEN_DELIMITED) -> bytes:
    """The encoded key of field ``number``."""
    return varint(number << 3 | wire_type)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field (message, bytes or string) with its tag."""
    return tag(number) + varint(len(data)) + data


def _tagged(key: bytes, data: bytes) -> bytes:
    """A length-delimited field whose key is already encoded."""
    return key + varint(len(data)) + data


def _same_number(*numbers: int) -> int:
    if len(set(numbers)) != 1:
        raise ImportError(f"root.wire splices fields across messages and needs equal field numbers, got {numbers}")
    return numbers[0]


def _one_byte(key: bytes) -> bytes:
    if len(key) != 1:
        raise ImportError(f"root.wire reads a payload field by its one-byte key, got {key!r}")
    return key


# Field 1 of QueryRequest, ExecuteRequest and MergeRequest: the client's payload
# field opens the leaf and merge requests exactly as the client encoded it.
_PAYLOAD = _same_number(
    root_pb2.QueryRequest.PAYLOAD_FIELD_NUMBER,
    leaf_pb2.ExecuteRequest.PAYLOAD_FIELD_NUMBER,
    merge_pb2.MergeRequest.PAYLOAD_FIELD_NUMBER,
)
# The merge's Any opens a QueryResponse (or, for a root serving as a leaf, an
# ExecuteResponse) exactly as the merge encoded it.
_ANSWER_PAYLOAD = _same_number(
    merge_pb2.MergeResponse.PAYLOAD_FIELD_NUMBER,
    root_pb2.QueryResponse.PAYLOAD_FIELD_NUMBER,
    leaf_pb2.ExecuteResponse.PAYLOAD_FIELD_NUMBER,
)
# ExecuteShardsRequest is ExecuteRequest with field 2 repeated: the same splice builds both.
for _name in ("PAYLOAD", "SHARD_COUNT", "ATTEMPT", "HEDGE", "REQUEST_ID"):
    _same_number(
        getattr(leaf_pb2.ExecuteRequest, f"{_name}_FIELD_NUMBER"),
        getattr(leaf_pb2.ExecuteShardsRequest, f"{_name}_FIELD_NUMBER"),
    )
_same_number(leaf_pb2.ExecuteRequest.SHARD_INDEX_FIELD_NUMBER, leaf_pb2.ExecuteShardsRequest.SHARD_INDEXES_FIELD_NUMBER)
del _name
# A leaf's answer: its payload field alone is the fast path. One byte, so the check is one compare.
_LEAF_PAYLOAD_KEY = _one_byte(tag(leaf_pb2.ExecuteResponse.PAYLOAD_FIELD_NUMBER))
_MERGE_PAYLOAD_KEY = _one_byte(tag(merge_pb2.MergeResponse.PAYLOAD_FIELD_NUMBER))

_PAYLOAD_KEY = tag(_PAYLOAD)
_QUERY_PAYLOAD_KEY = _one_byte(_PAYLOAD_KEY)
_QUERY_OPTIONS_KEY = _one_byte(tag(root_pb2.QueryRequest.OPTIONS_FIELD_NUMBER))
_ANY_TYPE_URL_KEY = _one_byte(tag(any_pb2.Any.TYPE_URL_FIELD_NUMBER))
_ANY_VALUE_KEY = _one_byte(tag(any_pb2.Any.VALUE_FIELD_NUMBER))
_EXECUTE_REQUEST_ID_KEY = tag(leaf_pb2.ExecuteRequest.REQUEST_ID_FIELD_NUMBER)
_ATTEMPT_KEY = tag(leaf_pb2.ExecuteRequest.ATTEMPT_FIELD_NUMBER, _VARINT)
_HEDGE = tag(leaf_pb2.ExecuteRequest.HEDGE_FIELD_NUMBER, _VARINT) + varint(1)  # hedge = true
_MERGE_RESULT_KEY = tag(merge_pb2.MergeRequest.RESULTS_FIELD_NUMBER)
_RESULT_REPORT_KEY = tag(shard_pb2.ShardResult.REPORT_FIELD_NUMBER)
_RESULT_PAYLOAD_KEY = tag(shard_pb2.ShardResult.PAYLOAD_FIELD_NUMBER)
_MERGE_COVERAGE_KEY = tag(merge_pb2.MergeRequest.COVERAGE_FIELD_NUMBER)
_MERGE_REQUEST_ID_KEY = tag(merge_pb2.MergeRequest.REQUEST_ID_FIELD_NUMBER)
_QUERY_COVERAGE_KEY = tag(root_pb2.QueryResponse.COVERAGE_FIELD_NUMBER)
_QUERY_SHARD_KEY = tag(root_pb2.QueryResponse.SHARDS_FIELD_NUMBER)
_QUERY_LATENCY_KEY = tag(root_pb2.QueryResponse.LATENCY_FIELD_NUMBER)
_QUERY_REQUEST_ID_KEY = tag(root_pb2.QueryResponse.REQUEST_ID_FIELD_NUMBER)

# attempt (and hedge) fields of every attempt number whose varint is one byte:
# max_attempts is at most 5, so the hot path never encodes one.
_ATTEMPT_FIELDS = [(_ATTEMPT_KEY + varint(n), _ATTEMPT_KEY + varint(n) + _HEDGE) for n in range(0x80)]


# A payload field as the root holds it: the client's request body itself when the
# payload is all of it, else a view into that body (never a copy: grpc keeps the
# body alive for the whole call anyway, so a copy would be a second one).
Payload = bytes | memoryview


# -- the client's request ---------------------------------------------------------


def _len_field(raw: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """(one-byte key, start, end) of the length-delimited field at ``pos``, or None if it is anything else."""
    key = raw[pos]
    if key & 0x80 or key & 0x07 != _LEN_DELIMITED:
        return None
    length, shift, pos = 0, 0, pos + 1
    while pos < end and shift < 35:
        byte = raw[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (key, pos, pos + length) if pos + length <= end else None
        shift += 7
    return None


def query_request(raw: bytes) -> tuple[Payload, str, bytes] | None:
    """(payload field, payload type URL, encoded QueryOptions or b"") of a QueryRequest, without parsing it.

    The fast path reads only the framing: a payload field (an Any of a type
    URL and a value, each at most once) and at most one options field. The
    payload's value is never looked at, and never copied. Anything else (an
    unknown or repeated field, a type URL that is not UTF-8, a body that does
    not parse) returns None: the caller parses the body with protobuf, which
    has the last word.
    """
    end = len(raw)
    pos = 0
    payload: tuple[int, int, int] | None = None
    options = b""
    seen_options = False
    while pos < end:
        found = _len_field(raw, pos, end)
        if found is None:
            return None
        key, start, stop = found
        if key == _QUERY_PAYLOAD_KEY[0] and payload is None:
            payload = (pos, start, stop)
        elif key == _QUERY_OPTIONS_KEY[0] and not seen_options:
            options, seen_options = raw[start:stop], True
        else:
            return None
        pos = stop
    if payload is None:
        return None
    field_start, pos, end = payload
    type_url: bytes | None = None
    has_value = False
    while pos < end:
        found = _len_field(raw, pos, end)
        if found is None:
            return None
        key, start, stop = found
        if key == _ANY_TYPE_URL_KEY[0] and type_url is None:
            type_url = raw[start:stop]
        elif key == _ANY_VALUE_KEY[0] and not has_value:
            has_value = True
        else:
            return None
        pos = stop
    try:
        url = type_url.decode() if type_url is not None else ""
    except UnicodeDecodeError:
        return None
    whole = field_start == 0 and end == len(raw)
    return (raw if whole else memoryview(raw)[field_start:end]), url, options


# -- requests to the leaves -----------------------------------------------------


def payload_field(payload: any_pb2.Any) -> bytes:
    """The payload field: the common opening of ExecuteRequest and MergeRequest, encoded once per request."""
    return _tagged(_PAYLOAD_KEY, payload.SerializeToString())


def execute_shard_fields(shard_index: int, shard_count: int) -> bytes:
    """ExecuteRequest's shard_index and shard_count, encoded once per shard."""
    return leaf_pb2.ExecuteRequest(shard_index=shard_index, shard_count=shard_count).SerializeToString()


def execute_shards_fields(shard_indexes: Sequence[int], shard_count: int) -> bytes:
    """ExecuteShardsRequest's shard_indexes and shard_count, encoded once per call.

    With ``execute_request`` they make an ExecuteShardsRequest: its other
    fields have ExecuteRequest's numbers (checked at import).
    """
    return leaf_pb2.ExecuteShardsRequest(shard_indexes=shard_indexes, shard_count=shard_count).SerializeToString()


def execute_request_id_field(request_id: str) -> bytes:
    """ExecuteRequest's request_id, encoded once per request (empty when it is: proto3 omits it)."""
    return _tagged(_EXECUTE_REQUEST_ID_KEY, request_id.encode()) if request_id else b""


def execute_request(payload: Payload, shard_fields: bytes, attempt: int, hedge: bool, request_id_field: bytes) -> bytes:
    """One attempt's ExecuteRequest from the pieces above; ``attempt`` counts from 1."""
    if attempt < 0x80:
        attempt_fields = _ATTEMPT_FIELDS[attempt][hedge]
    else:
        attempt_fields = _ATTEMPT_KEY + varint(attempt) + (_HEDGE if hedge else b"")
    return b"".join((payload, shard_fields, attempt_fields, request_id_field))


def _sole_field(raw: bytes, key: bytes) -> int | None:
    """Offset of the field's contents when ``raw`` is exactly one length-delimited field with one-byte ``key``."""
    if not raw or raw[0] != key[0]:
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
    start = _sole_field(raw, _LEAF_PAYLOAD_KEY)
    if start is not None:
        return raw[start:], None, 0
    parsed = leaf_pb2.ExecuteResponse.FromString(raw)
    payload = parsed.payload.SerializeToString() if parsed.HasField("payload") else b""
    return payload, (parsed.coverage if parsed.HasField("coverage") else None), parsed.hedges


ShardAnswer = tuple[int, int, bytes, str]  # (shard index, gRPC code number, payload Any bytes, message)


def shard_answers(raw: bytes) -> list[ShardAnswer]:
    """The answers of an ExecuteShardsResponse, each with its payload's Any re-encoded (empty unless OK).

    Parsed with protobuf: the answers' framing is read, never their payloads'
    contents. Raises ``google.protobuf.message.DecodeError`` on a body that
    does not parse.
    """
    return [
        (
            answer.shard_index,
            answer.code,
            answer.payload.SerializeToString() if answer.code == 0 else b"",
            answer.message,
        )
        for answer in leaf_pb2.ExecuteShardsResponse.FromString(raw).answers
    ]


# -- the merge --------------------------------------------------------------------


def merge_request(payload: Payload, results: Iterable[tuple[bytes, bytes]], coverage: bytes, request_id: str) -> bytes:
    """A MergeRequest: ``payload`` from ``payload_field``, ``results`` as (encoded
    ShardReport, the leaf's encoded Any or b"" when it has none) in shard order,
    ``coverage`` an encoded Coverage."""
    return b"".join(merge_request_parts(payload, results, coverage, request_id))


def merge_request_parts(
    payload: Payload, results: Iterable[tuple[bytes, bytes]], coverage: bytes, request_id: str
) -> list[Payload]:
    """The pieces ``merge_request`` joins: their lengths sum to its size, before any copy of the payload."""
    parts: list[Payload] = [payload]
    for report, answer in results:
        result = _tagged(_RESULT_REPORT_KEY, report)
        if answer:
            result += _tagged(_RESULT_PAYLOAD_KEY, answer)
        parts.append(_tagged(_MERGE_RESULT_KEY, result))
    parts.append(_tagged(_MERGE_COVERAGE_KEY, coverage))
    if request_id:
        parts.append(_tagged(_MERGE_REQUEST_ID_KEY, request_id.encode()))
    return parts


def merge_payload_field(raw_merge_response: bytes) -> bytes:
    """The payload field of a MergeResponse, ready to open a QueryResponse or ExecuteResponse."""
    if _sole_field(raw_merge_response, _MERGE_PAYLOAD_KEY) is not None:
        return raw_merge_response
    parsed = merge_pb2.MergeResponse.FromString(raw_merge_response)
    return field(_ANSWER_PAYLOAD, parsed.payload.SerializeToString()) if parsed.HasField("payload") else b""


# -- sizes ---------------------------------------------------------------------------
#
# The root's channels carry at most max_message_bytes per message, and the
# payload field travels whole in every ExecuteRequest and in the MergeRequest.
# So the largest payload field the root can forward is that limit less the
# most it adds around the field in either message; a larger one is refused
# before any leaf call (root.errors.TooLarge), not failed on every replica.

_TRACE_ID_CHARS = 32  # a request id is a W3C trace id: 32 hex digits
_MAX_UINT32 = 2**32 - 1

# The most an ExecuteRequest adds to its payload field: shard index and count
# at their widest, the widest one-byte attempt with hedge = true, a request id.
EXECUTE_FRAMING_BYTES = len(
    execute_request(
        b"",
        execute_shard_fields(_MAX_UINT32, _MAX_UINT32),
        0x7F,
        True,
        execute_request_id_field("0" * _TRACE_ID_CHARS),
    )
)


def merge_framing_bytes(shards: Sequence[tuple[int, str]], leaf_shards: Iterable[int], shard_count: int) -> int:
    """The most a MergeRequest adds to its payload field, besides what the shards answer.

    ``shards``: (index, the longest replica address) of each shard the root
    calls; ``leaf_shards``: the global index of every leaf shard beneath
    them (the coverage lists those). Counted: one report per shard with
    every number at its widest, a coverage with every leaf shard missing
    and a request id. Not counted, as no bound is known before the call:
    the leaves' payloads and the text of their errors (``merge_request``'s
    caller checks the real size before sending it).
    """
    longest = duration(0)
    longest.seconds, longest.nanos = _MAX_UINT32, 999_999_999
    reports = [
        shard_pb2.ShardReport(
            shard_index=index,
            status=shard_pb2.SHARD_STATUS_UNAVAILABLE,
            replica=replica,
            latency=longest,
            attempts=0x7F,
            hedge_won=True,
            hedges=_MAX_UINT32,
        ).SerializeToString()
        for index, replica in shards
    ]
    coverage = shard_pb2.Coverage(
        total=shard_count,
        answered=shard_count,
        missing=[shard_pb2.MissingShard(shard_index=i, status=shard_pb2.SHARD_STATUS_UNAVAILABLE) for i in leaf_shards],
    )
    request = merge_request(b"", ((r, b"") for r in reports), coverage.SerializeToString(), "0" * _TRACE_ID_CHARS)
    return len(request)


# -- answers ------------------------------------------------------------------------


def query_response(
    payload: bytes, coverage: bytes, reports: Iterable[bytes], latency_seconds: float, request_id: str
) -> bytes:
    """A QueryResponse: ``payload`` from ``merge_payload_field``, ``coverage`` and
    ``reports`` (one per shard, in shard order) already encoded."""
    return b"".join(
        [
            payload,
            _tagged(_QUERY_COVERAGE_KEY, coverage),
            *(_tagged(_QUERY_SHARD_KEY, report) for report in reports),
            _tagged(_QUERY_LATENCY_KEY, duration(latency_seconds).SerializeToString()),
            _tagged(_QUERY_REQUEST_ID_KEY, request_id.encode()) if request_id else b"",
        ]
    )


def execute_response(payload: bytes, coverage: shard_pb2.Coverage, hedges: int) -> bytes:
    """The ExecuteResponse of a root serving as a leaf: ``payload`` from ``merge_payload_field``."""
    return payload + leaf_pb2.ExecuteResponse(coverage=coverage, hedges=hedges).SerializeToString()


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration message of ``seconds`` (negative clamps to zero)."""
    nanos = max(0, round(seconds * 1e9))
    return duration_pb2.Duration(seconds=nanos // 1_000_000_000, nanos=nanos % 1_000_000_000)
