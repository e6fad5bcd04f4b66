"""Seeded hostile inputs for the fuzz suite (tests/integration/test_fuzz.py).

Rules of this module:

- Pure: every generator takes a ``random.Random`` and returns data; nothing
  here opens a socket, reads a clock or calls ``os.urandom``, so one seed
  gives the same inputs on every machine. The seed is ``SCATTER_FUZZ_SEED``
  (``DEFAULT_SEED`` without it); ``stream(seed, *names)`` derives one
  independent generator per target and batch, so a batch does not depend on
  the ones before it.
- Inputs are the probe application's messages (examples/probe), mutated:
  semantic oddities first (type URLs, shard indices, options, durations,
  counts), then, for some, the bytes (bit flips, truncation, splices, length
  fields inflated, garbage). Each input carries ``what``, a short
  description a failure message can quote.
- Never generated: the probe's deliberate faults (``fail_shards``, which
  makes a leaf raise on purpose, and ``marker_dir``, which makes it write
  files). A mutated body that decodes to one of them is drawn again
  (``_harmless``): they would be the test's doing, not a finding.
- ``expected_work`` is the oracle's view of how long a leaf would sleep for
  a body (the probe's delays as protobuf decodes them), so that a caller
  can bound its deadline; ``expected_sum`` is the value a correct answer
  must carry.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tomli_w
from google.protobuf import any_pb2, message

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2, merge_pb2, root_pb2, shard_pb2
from root.wire import field, varint

SEED_VARIABLE = "SCATTER_FUZZ_SEED"
DEFAULT_SEED = 13  # issue 13: the hardening this suite keeps

QUERY = "/scatter_gather.v1.Root/Query"
EXECUTE = "/scatter_gather.v1.Leaf/Execute"
MERGE = "/scatter_gather.v1.Merge/Merge"
MESSAGES: dict[str, type[message.Message]] = {
    QUERY: root_pb2.QueryRequest,
    EXECUTE: leaf_pb2.ExecuteRequest,
    MERGE: merge_pb2.MergeRequest,
}

PROBE_REQUEST_URL = "type.googleapis.com/probe.v1.ProbeRequest"
PROBE_PARTIAL_URL = "type.googleapis.com/probe.v1.ProbePartial"
UINT64_MAX = 2**64 - 1
UINT32_MAX = 2**32 - 1
# What gRPC lets a call's metadata be without refusing it (its soft limit is 8 KiB, path and
# authority included): the headers drawn here stay under it.
METADATA_ROOM = 7000

Metadata = tuple[tuple[str, str | bytes], ...]


def seed_from_environment() -> int:
    """``SCATTER_FUZZ_SEED`` as an int, or ``DEFAULT_SEED``."""
    text = os.environ.get(SEED_VARIABLE, "").strip()
    return int(text, 0) if text else DEFAULT_SEED


def stream(seed: int, *names: object) -> random.Random:
    """An independent, reproducible generator for one part of a run (str seeds hash with SHA-512)."""
    return random.Random(":".join(str(part) for part in (seed, *names)))


@dataclass(frozen=True)
class Call:
    """One fuzzed RPC: where, what bytes, with which deadline and metadata."""

    method: str
    target: str  # the deployment child's name ("root", "leaf-0-1", "merge")
    body: bytes
    timeout: float | None
    metadata: Metadata
    what: str  # how it was made, for a failure message

    def describe(self) -> str:
        head = self.body[:24].hex()
        timeout = "none" if self.timeout is None else f"{self.timeout:g}s"
        keys = ",".join(f"{k}[{len(v)}]" for k, v in self.metadata) or "-"
        return (
            f"{self.method} on {self.target}: {self.what}; {len(self.body)} bytes ({head}...), "
            f"deadline {timeout}, metadata {keys}"
        )


# -- the messages ----------------------------------------------------------------------


def _ms(duration: Any, rng: random.Random, most: int) -> None:
    duration.FromMilliseconds(rng.randrange(most + 1))


def probe_request(rng: random.Random) -> probe_pb2.ProbeRequest:
    """A valid ProbeRequest that a leaf answers within a few milliseconds."""
    request = probe_pb2.ProbeRequest(value=rng.choice((0, 1, rng.randrange(10**6))))
    if rng.random() < 0.3:
        _ms(request.delay, rng, 3)
    if rng.random() < 0.1:
        _ms(request.shard_delays[rng.randrange(3)], rng, 3)
    if rng.random() < 0.1:
        _ms(request.replica_delays[f"shard{rng.randrange(2)}-replica{rng.randrange(2)}"], rng, 3)
    if rng.random() < 0.1:
        request.stall_probability = rng.random()
        _ms(request.stall, rng, 3)
    return request


def _odd_probe(rng: random.Random, request: probe_pb2.ProbeRequest) -> str:
    """Make one field of ``request`` odd (values the .proto allows, or nearly); say which."""
    choice = rng.randrange(6)
    if choice == 0:
        request.value = rng.choice((UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 3, 2**63))
        return f"value {request.value}"
    if choice == 1:
        seconds = rng.choice((-1, -(2**40), 2**33, 315_576_000_000, 2**62, -(2**62)))
        request.delay.seconds = seconds
        return f"delay {seconds} s"
    if choice == 2:
        request.delay.nanos = rng.choice((-1, 999_999_999, 2**31 - 1, -(2**31)))
        return f"delay nanos {request.delay.nanos}"
    if choice == 3:
        request.stall_probability = rng.choice((math.nan, math.inf, -math.inf, -1.0, 2.0, 5e-324))
        request.stall.seconds = rng.choice((0, 2**62))
        return f"stall_probability {request.stall_probability} for {request.stall.seconds} s"
    if choice == 4:
        key = rng.choice(("", "x" * 3000, "shard0-replica0", "\u2603"))
        request.replica_delays[key].nanos = rng.randrange(2**31)
        return f"replica_delays[{len(key)} chars]"
    request.shard_delays[rng.choice((0, 1, UINT32_MAX))].seconds = rng.choice((0, -5, 2**62))
    return "shard_delays odd"


def _any(type_url: bytes, value: bytes) -> bytes:
    """An Any's encoding from raw parts (a type URL need not be UTF-8 here)."""
    return field(1, type_url) + field(2, value)


def odd_type_url(rng: random.Random) -> bytes:
    """A type URL no leaf should accept, or one at the edge of what it does."""
    prefix = b"type.googleapis.com/"
    return rng.choice(
        (
            b"",
            b"/",
            prefix,
            b"probe.v1.ProbeRequest",  # no prefix: the name alone
            prefix + b"probe.v1.ProbePartial",
            prefix + b"probe.v1.probeRequest",
            b"a/b/c/probe.v1.ProbeRequest",
            prefix + b"x" * (2048 - len(prefix)),  # at the limit
            prefix + b"x" * (2049 - len(prefix)),  # one over
            prefix + b"y" * 17_000,  # issue 13, finding 8
            prefix + "probe.v1.\u041f\u0440\u043e\u0431\u0430".encode(),
            prefix + b"\x00\x01\x7f",
            prefix + b"\xff\xfe\x80",  # not UTF-8
            b"\xc3",  # a truncated UTF-8 sequence
            b"%" * 300,
        )
    )


def _payload(rng: random.Random, notes: list[str]) -> bytes:
    """The encoded Any of a probe request, odd in one way or another about a third of the time."""
    request = probe_request(rng)
    if rng.random() < 0.15:
        notes.append(_odd_probe(rng, request))
    value = request.SerializeToString()
    url = PROBE_REQUEST_URL.encode()
    roll = rng.random()
    if roll < 0.12:
        url = odd_type_url(rng)
        notes.append(f"type URL {url[:40]!r} ({len(url)} bytes)")
    elif roll < 0.16:
        value = rng.randbytes(rng.randrange(1, 40))
        notes.append("payload value random bytes")
    elif roll < 0.18:
        notes.append("payload without value")
        return field(1, url)
    elif roll < 0.20:
        notes.append("empty payload")
        return b""
    return _any(url, value)


def query_body(rng: random.Random, notes: list[str]) -> bytes:
    options = b""
    if rng.random() < 0.3:
        opts = root_pb2.QueryOptions()
        if rng.random() < 0.7:
            opts.min_coverage = rng.choice(
                (0.0, 0.5, 1.0, -0.0, 1.0000001, -1e-9, math.nan, math.inf, -math.inf, 5e-324, 1e308)
            )
            notes.append(f"min_coverage {opts.min_coverage!r}")
        opts.explain = rng.random() < 0.3
        options = field(2, opts.SerializeToString())
    return field(1, _payload(rng, notes)) + options


def execute_body(rng: random.Random, notes: list[str], shard: int, shards: int) -> bytes:
    request = leaf_pb2.ExecuteRequest(
        shard_index=shard,
        shard_count=rng.choice((shards, shards, 0)),
        attempt=rng.choice((1, 1, 2, 3)),
        hedge=rng.random() < 0.2,
        request_id=_hex_id(rng),
    )
    if rng.random() < 0.2:
        name = rng.choice(("shard_index", "shard_count", "attempt"))
        value = rng.choice((0, 1, shards, shards + 1, 2**31 - 1, UINT32_MAX))
        setattr(request, name, value)
        notes.append(f"{name} {value}")
    if rng.random() < 0.05:
        request.request_id = rng.choice(("", "x" * 20_000, "\u2603" * 100, "\x00"))
        notes.append(f"request_id of {len(request.request_id)} chars")
    return field(1, _payload(rng, notes)) + request.SerializeToString()


def _hex_id(rng: random.Random, n: int = 16) -> str:
    """``n`` random bytes as hex, from ``rng`` (a request id)."""
    return rng.randbytes(n).hex()


def merge_body(rng: random.Random, notes: list[str], shards: int) -> bytes:
    request = merge_pb2.MergeRequest(request_id=_hex_id(rng))
    count = shards if rng.random() < 0.7 else rng.choice((0, 1, 3, 40))
    answered = 0
    for index in range(count):
        result = request.results.add()
        result.report.shard_index = index
        result.report.status = shard_pb2.SHARD_STATUS_OK
        result.report.replica = f"127.0.0.1:{rng.randrange(1, 65536)}"
        result.report.attempts = 1
        result.payload.Pack(probe_pb2.ProbePartial(shard_index=index, value=index + 1 + rng.randrange(1000)))
        answered += 1
        if rng.random() < 0.1:
            odd = rng.randrange(5)
            if odd == 0:
                result.report.status = rng.choice((0, 2, 3, 4, 5, 99, -1))
                notes.append(f"result {index} status {result.report.status}")
            elif odd == 1:
                result.ClearField("payload")
                notes.append(f"result {index} OK without payload")
            elif odd == 2:
                result.payload.type_url = PROBE_REQUEST_URL
                notes.append(f"result {index} of the wrong type")
            elif odd == 3:
                result.payload.value = rng.randbytes(rng.randrange(1, 20))
                notes.append(f"result {index} random bytes")
            else:
                result.payload.Pack(probe_pb2.ProbePartial(shard_index=index, value=UINT64_MAX - rng.randrange(3)))
                notes.append(f"result {index} value near the uint64 maximum")
    request.coverage.total = shards
    request.coverage.answered = answered
    if rng.random() < 0.1:
        request.coverage.total = rng.choice((0, UINT32_MAX))
        request.coverage.answered = rng.choice((0, UINT32_MAX, 7))
        notes.append("coverage nonsense")
    return field(1, _payload(rng, notes)) + request.SerializeToString()


# -- bytes -----------------------------------------------------------------------------


def _flip(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    data = bytearray(body)
    bits = rng.choice((1, 1, 2, 3, 8))
    for _ in range(bits):
        i = rng.randrange(len(data) * 8)
        data[i // 8] ^= 1 << (i % 8)
    return bytes(data), f"{bits} bits flipped"


def _interesting(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    data = bytearray(body)
    i = rng.randrange(len(data))
    data[i] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
    return bytes(data), f"byte {i} set to {data[i]:#04x}"


def _truncate(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    cut = rng.randrange(len(body))
    return body[:cut], f"truncated at {cut}"


def _insert(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    i = rng.randrange(len(body) + 1)
    junk = rng.randbytes(rng.randrange(1, 16))
    return body[:i] + junk + body[i:], f"{len(junk)} bytes inserted at {i}"


def _delete(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    i = rng.randrange(len(body))
    n = rng.randrange(1, min(16, len(body) - i) + 1)
    return body[:i] + body[i + n :], f"{n} bytes deleted at {i}"


def _repeat(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    i = rng.randrange(len(body))
    j = rng.randrange(i, len(body)) + 1
    return body[:j] + body[i:j] * rng.randrange(1, 4) + body[j:], f"bytes {i}-{j} repeated"


def _inflate_length(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    """A length-delimited field whose length says more (or much more) than there is."""
    keys = [i for i, b in enumerate(body[:-1]) if b & 0x07 == 2 and not b & 0x80]
    if not keys:
        return _flip(rng, body)
    i = rng.choice(keys)
    length = rng.choice((0x7F, 0x3FFF, 2**31 - 1, 2**32 + 5, 2**63))
    return body[: i + 1] + varint(length) + body[i + 2 :], f"field at {i} claims {length} bytes"


def _splice(rng: random.Random, body: bytes, other: bytes) -> tuple[bytes, str]:
    i, j = rng.randrange(len(body) + 1), rng.randrange(len(other) + 1)
    return body[:i] + other[j:], f"spliced at {i} with another body at {j}"


def _deep(rng: random.Random, _body: bytes) -> tuple[bytes, str]:
    """Nested length-delimited fields a hundred deep or more (protobuf's recursion limit)."""
    depth = rng.choice((50, 101, 200, 1000))
    data = b""
    for _ in range(depth):
        data = field(1, data)
    return data, f"nested {depth} deep"


_BYTE_MUTATIONS: tuple[Callable[[random.Random, bytes], tuple[bytes, str]], ...] = (
    _flip,
    _flip,
    _flip,
    _interesting,
    _truncate,
    _truncate,
    _insert,
    _delete,
    _repeat,
    _inflate_length,
    _deep,
)


def mutate_bytes(rng: random.Random, body: bytes, other: bytes) -> tuple[bytes, str]:
    """One to three byte-level mutations of ``body`` (``other``: a second body, for splices)."""
    if not body:
        return rng.randbytes(rng.randrange(1, 64)), "random bytes"
    notes = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not body:
            break
        if rng.random() < 0.08 and other:
            body, note = _splice(rng, body, other)
        else:
            body, note = rng.choice(_BYTE_MUTATIONS)(rng, body)
        notes.append(note)
    return body, ", ".join(notes)


def padded(body: bytes, total: int) -> bytes | None:
    """``body`` (whose field 1 is a probe payload Any) grown to exactly ``total`` bytes, or None.

    The padding is an unknown field (1023) inside the ProbeRequest, which
    protobuf skips: a valid request of any size. Fields after the payload
    are kept.
    """
    try:
        first = _first_field(body)
        payload = any_pb2.Any.FromString(first)
    except (IndexError, message.DecodeError):
        return None
    rest = body[len(field(1, first)) :]
    base = payload.value
    for pad in range(max(0, total - len(body) - 16), max(0, total - len(body)) + 1):
        value = base + b"\xfa\x3f" + varint(pad) + b"x" * pad
        out = field(1, _any(payload.type_url.encode(), value)) + rest
        if len(out) == total:
            return out
    return None


def _first_field(body: bytes) -> bytes:
    """The data of field 1 at the start of ``body`` (our own encodings: one-byte key, varint length)."""
    length, shift, pos = 0, 0, 1
    while True:
        byte = body[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return body[pos : pos + length]
        shift += 7


# -- deadlines and metadata -------------------------------------------------------------


def deadline(rng: random.Random) -> float | None:
    """A gRPC timeout in seconds: none, zero, tiny, huge, or an ordinary one."""
    roll = rng.random()
    if roll < 0.06:
        return None
    if roll < 0.09:
        return 0.0
    if roll < 0.19:
        return rng.choice((1e-6, 1e-4, 1e-3, 3e-3, 0.02))
    if roll < 0.23:
        return rng.choice((3600.0, 1e6, 1e9))
    return rng.uniform(0.3, 2.0)


def _printable(rng: random.Random, n: int) -> str:
    return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(n))


def odd_traceparent(rng: random.Random) -> str:
    trace, parent = rng.randbytes(16).hex(), rng.randbytes(8).hex()
    return rng.choice(
        (
            f"00-{trace}-{parent}-01",
            f"00-{trace.upper()}-{parent}-01",
            f"ff-{trace}-{parent}-01",
            f"01-{trace}-{parent}-03-extra-fields",
            f"01-{trace}-{parent}-01garbage",
            f"00-{'0' * 32}-{parent}-01",
            f"00-{trace}-{'0' * 16}-00",
            f"00-{trace}-{parent}-01-",
            f"00-{trace[:31]}-{parent}-01",
            f"  00-{trace}-{parent}-01  ",
            "",
            "-" * 55,
            _printable(rng, rng.randrange(1, 120)),
            f"00-{trace}-{parent}-01" * 40,
        )
    )


def metadata(rng: random.Random) -> tuple[Metadata, str]:
    """Request metadata gRPC will send (lowercase keys, printable values, -bin for bytes)."""
    roll = rng.random()
    if roll < 0.55:
        return (), ""
    if roll < 0.75:
        pairs: list[tuple[str, str | bytes]] = [("traceparent", odd_traceparent(rng))]
        if rng.random() < 0.2:
            pairs.append(("traceparent", odd_traceparent(rng)))
        if rng.random() < 0.2:
            pairs.append(("tracestate", _printable(rng, rng.randrange(0, 300))))
        return tuple(pairs), "odd traceparent"
    if roll < 0.85:
        size = rng.choice((1000, 4000, METADATA_ROOM))
        return (("x-fuzz", _printable(rng, size)),), f"a {size}-byte header"
    if roll < 0.95:
        key = rng.choice(("x-fuzz-bin", "traceparent-bin", "grpc-trace-bin"))
        return ((key, rng.randbytes(rng.randrange(0, 2000))),), f"binary header {key}"
    n = rng.randrange(20, 120)
    return tuple((f"x-{i}-{rng.randrange(10**6)}", _printable(rng, 8)) for i in range(n)), f"{n} headers"


# -- what a correct server does with a body ---------------------------------------------


def decoded_probe(method: str, body: bytes) -> tuple[message.Message, probe_pb2.ProbeRequest | None] | None:
    """(the method's message, its ProbeRequest payload or None) as protobuf reads ``body``, or None."""
    try:
        outer = MESSAGES[method].FromString(body)
    except Exception:  # DecodeError, or anything hostile bytes make protobuf raise
        return None
    payload: any_pb2.Any = outer.payload  # type: ignore[attr-defined]
    if payload.type_url.rsplit("/", 1)[-1] != "probe.v1.ProbeRequest":
        return outer, None
    try:
        return outer, probe_pb2.ProbeRequest.FromString(payload.value)
    except Exception:
        return outer, None


def _harmless(method: str, body: bytes) -> bool:
    """False for a body that asks a probe leaf to fail or to write files (see the module rules)."""
    decoded = decoded_probe(method, body)
    if decoded is None or decoded[1] is None:
        return True
    probe = decoded[1]
    return not probe.fail_shards and not probe.marker_dir


def _seconds(duration: Any) -> float:
    return float(duration.seconds) + duration.nanos / 1e9


def expected_work(method: str, body: bytes) -> float:
    """The longest a probe leaf could sleep on ``body`` (seconds; inf for a nonsense duration)."""
    decoded = decoded_probe(method, body)
    if decoded is None or decoded[1] is None or method == MERGE:
        return 0.0
    probe = decoded[1]
    delays = [_seconds(probe.delay), *(_seconds(d) for d in probe.shard_delays.values())]
    extra = sum(_seconds(d) for d in probe.replica_delays.values())
    stall = _seconds(probe.stall) if probe.stall_probability == probe.stall_probability else 0.0
    return max(0.0, max(delays)) + max(0.0, extra) + max(0.0, stall)


# -- whole calls --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A process and the method a call reaches it by."""

    method: str
    name: str
    shard: int = 0  # for Leaf.Execute: the shard the process serves (a root: its first)
    limit: int = 4 * 1024 * 1024  # its max_message_bytes


def calls(rng: random.Random, targets: list[Target], n: int, shards: int) -> list[Call]:
    """``n`` fuzzed calls spread over ``targets``."""
    made: list[Call] = []
    previous = b""
    while len(made) < n:
        target = rng.choice(targets)
        notes: list[str] = []
        if target.method == QUERY:
            body = query_body(rng, notes)
        elif target.method == EXECUTE:
            body = execute_body(rng, notes, target.shard, shards)
        else:
            body = merge_body(rng, notes, shards)
        roll = rng.random()
        if roll < 0.5:
            body, note = mutate_bytes(rng, body, previous)
            notes.append(note)
        elif roll < 0.55 and body[:1] == b"\x0a":
            total = target.limit + rng.choice((-4096, -600, -300, -100, -40, -8, -1, 0, 1, 64))
            grown = padded(body, total)
            if grown is not None:
                body = grown
                notes.append(f"padded to {total} bytes (limit {target.limit})")
        if not _harmless(target.method, body):
            continue  # drawn again: the probe's own fault switches are not inputs (module rules)
        previous = body
        timeout = deadline(rng)
        if timeout is None or timeout > 2.0:
            work = expected_work(target.method, body)
            if work > 0.5:
                timeout = 1.0  # a leaf honours its deadline; without one it would sleep as long as asked
                notes.append(f"asks {work:g} s of work: deadline 1 s")
        pairs, note = metadata(rng)
        if note:
            notes.append(note)
        made.append(Call(target.method, target.name, body, timeout, pairs, "; ".join(notes) or "valid"))
    return made


def expected_sum(call: Call, shards_answered: list[int]) -> int | None:
    """The probe sum a correct OK answer to ``call`` carries, given the shards that answered; None if unknown."""
    decoded = decoded_probe(call.method, call.body)
    if decoded is None or decoded[1] is None:
        return None
    value = decoded[1].value
    return sum(shard + 1 + value for shard in shards_answered)


# -- configuration files ------------------------------------------------------------------------


def root_document() -> dict[str, Any]:
    """A valid root configuration that writes every section and most keys (the mutations' base)."""
    return {
        "root": {
            "listen": "127.0.0.1:0",
            "metrics_listen": "127.0.0.1:0",
            "default_deadline_ms": 1000,
            "max_deadline_ms": 30_000,
            "merge_reserve_ms": 10,
            "adaptive_reserve": True,
            "min_coverage": 1.0,
            "max_in_flight": 512,
            "max_in_flight_bytes": 134_217_728,
            "max_message_bytes": 4_194_304,
            "grace_seconds": 5.0,
            "workers": 1,
            "coverage_wait_ms": 5,
            "coverage_wait_factor": 0.5,
            "partial_coverage_wait": True,
            "shard_offset": 0,
            "total_shards": 0,
            "detailed_errors": False,
            "trace_url": "http://jaeger:16686/trace/{trace_id}",
        },
        "merge": {"address": "127.0.0.1:50060"},
        "hedging": {
            "enabled": True,
            "max_attempts": 2,
            "delay_percentile": 0.95,
            "min_delay_ms": 1,
            "max_delay_ms": 500,
            "initial_delay_ms": 20,
            "min_samples": 20,
            "non_fatal_status_codes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
            "max_extra_load": 0.05,
            "min_per_second": 10.0,
            "budget_ttl_ms": 10_000,
            "budget_slices": 10,
            "latency_window": 1000,
            "latency_recompute_every": 50,
            "latency_max_age_ms": 60_000,
            "latency_keep_newest": 100,
        },
        "replicas": {
            "consecutive_failures": 5,
            "base_ejection_time_ms": 30_000,
            "max_ejection_time_ms": 300_000,
            "max_ejection_percent": 50.0,
            "decay_after_successes": 10,
            "ewma_alpha": 0.3,
            "ewma_stale_after_ms": 10_000,
            "probe_interval_ms": 1000,
        },
        "discovery": {"refresh_ms": 5000, "dns_server": "127.0.0.1:53"},
        "shards": [{"replicas": ["127.0.0.1:50061", "127.0.0.1:50062"]}, {"replicas": ["127.0.0.1:50063"]}],
    }


@dataclass(frozen=True)
class ConfigMutation:
    """One mutated root configuration file."""

    text: bytes  # the file
    what: str
    key: str  # the key as an error must name it ("hedging.min_delay_ms"), "" for a mutation of the text


_ODD_VALUES: tuple[object, ...] = (
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -1e-9,
    -0.0,
    0,
    1,
    1e-300,
    2**63 - 1,
    -(2**63),
    1e308,
    -1e308,
    2**31,
    2**53 + 1,
    0.5,
    "x",
    "",
    "1000",
    True,
    [],
    [1, "a"],
    {"a": 1},
)
_ODD_ADDRESSES = (
    "",
    ":",
    "host",
    "127.0.0.1",
    "127.0.0.1:",
    ":50051",
    "127.0.0.1:99999",
    "127.0.0.1:-1",
    "127.0.0.1:0",
    "[::1",
    "[::1]:0",
    "[2001:db8::1]:0",
    "unix:",
    "unix:/nonexistent/dir/sock",
    "a b:1",
    "\u00e9t\u00e9:1",
    "h" * 300 + ":1",
    "0.0.0.0:0",
    "localhost:0",
    "no-such-host.invalid:0",
    "127.0.0.1:1:2",
)
_ADDRESS_KEYS = {("root", "listen"), ("root", "metrics_listen"), ("merge", "address"), ("discovery", "dns_server")}


def _path_name(path: tuple[str | int, ...]) -> str:
    """("shards", 0, "replicas") -> "shards[0].replicas", as the configuration's errors name keys."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _leaves(doc: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key path of ``doc`` (tables and lists included)."""
    found: list[tuple[str | int, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        found.append((*path, key))
        found.extend(_leaves(value, (*path, key)))
    return found


def _set(doc: Any, path: tuple[str | int, ...], value: object, delete: bool = False) -> None:
    for part in path[:-1]:
        doc = doc[part]
    if delete:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


def config_mutation(rng: random.Random) -> ConfigMutation:
    """One mutation of ``root_document()``: a key deleted, retyped, out of range, unknown, or the text broken."""
    doc = root_document()
    paths = _leaves(doc)
    roll = rng.random()
    if roll < 0.08:
        text = tomli_w.dumps(doc).encode()
        mutated, note = mutate_bytes(rng, text, b"")
        return ConfigMutation(mutated, f"the text: {note}", "")
    path = rng.choice(paths)
    name = _path_name(path)
    if roll < 0.2:
        _set(doc, path, None, delete=True)
        what = f"{name} deleted"
    elif roll < 0.32:
        table = rng.choice(((), ("root",), ("merge",), ("hedging",), ("replicas",), ("discovery",), ("shards", 0)))
        where: Any = doc
        for part in table:
            where = where[part]
        key = rng.choice(("typo", "max_in_fligth", "listen_address", "timeout_ms", "Root", "shards"))
        if not isinstance(where, dict) or key in where:
            key = "unknown_key"
        where[key] = rng.choice((1, "x", True))
        path = (*table, key)
        name = _path_name(path)
        what = f"unknown key {name}"
    elif roll < 0.45 and (path[:2] in _ADDRESS_KEYS or path[:3] == ("shards", 0, "replicas")):
        address = rng.choice(_ODD_ADDRESSES)
        _set(doc, path, address)
        what = f"{name} = {address!r}"
    elif roll < 0.5:
        shards = rng.choice(([], [{}], [{"replicas": []}], [{"replicas": ["127.0.0.1:1", "127.0.0.1:1"]}], {"a": 1},
                             [{"replicas": ["127.0.0.1:1"], "leaves": 0}], [{"dns": "x"}], [{"file": ""}],
                             [{"replicas": ["127.0.0.1:1"], "dns": "a:1"}], [1], "127.0.0.1:1"))  # fmt: skip
        doc["shards"] = shards
        path = ("shards",)
        name = "shards"
        what = f"shards = {shards!r}"
    else:
        value = rng.choice(_ODD_VALUES)
        _set(doc, path, value)
        what = f"{name} = {value!r}"
    return ConfigMutation(tomli_w.dumps(doc).encode(), what, name)
