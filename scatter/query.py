"""``scatter query ADDRESS --type NAME JSON``: one request, printed as JSON.

The request message is given as JSON (protobuf's JSON mapping) and packed
into QueryRequest.payload; the answer is printed as JSON with its coverage
and per-shard timings; with ``--explain`` the root also reports every
attempt, drawn on stderr as a text timeline. Message types are found by
``scatter_common.message_types`` from the flags of ``scatter.messages``:
``.proto`` files (``--proto``), a leaf's or merge's server reflection
(``--types-from``), the generated code of the type's package under
``protos`` or a Python module (``--import``). No Python code needs to be
generated for them. An answer of a type found nowhere is printed encoded
(type URL and base64).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import grpc
from google.protobuf import json_format

from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc, shard_pb2
from scatter.messages import UNKNOWN_TYPE_FIX, add_type_flags, type_sources
from scatter_common.message_types import MessageTypeError, MessageTypes, payload_message_to_dict, pool_of
from scatter_common.tls import ClientTls, sync_channel


def _as_json(response: root_pb2.QueryResponse, types: MessageTypes) -> dict[str, Any]:
    """The response as protobuf's JSON mapping; a payload of a type no source defines stays encoded."""
    payload = response.payload
    cls = None
    if payload.type_url:
        try:
            cls = types.find(payload.type_url.rsplit("/", 1)[-1])
        except MessageTypeError:  # its package's generated module does not import: show the bytes
            cls = None
    return payload_message_to_dict(response, cls)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scatter query", description="Send one request to a root.")
    parser.add_argument("address", help="root address, e.g. 127.0.0.1:50051")
    parser.add_argument(
        "--type", required=True, dest="type_name", help="request message type, e.g. probe.v1.ProbeRequest"
    )
    parser.add_argument("json", help='the request message as JSON, e.g. \'{"query": "json"}\'')
    parser.add_argument("--deadline-ms", type=float, default=2000.0, help="deadline of the call (default 2000)")
    parser.add_argument("--min-coverage", type=float, help="override the root's min_coverage for this request")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="ask for every attempt of every shard, and draw them on stderr (the JSON stays on stdout)",
    )
    add_type_flags(parser)
    parser.add_argument("--tls-ca", default="", help="PEM CA that signed the root's certificate: use TLS")
    parser.add_argument("--tls-cert", default="", help="PEM client certificate, for mutual TLS")
    parser.add_argument("--tls-key", default="", help="PEM key of --tls-cert")
    args = parser.parse_args(argv)
    use_tls = bool(args.tls_ca or args.tls_cert)
    try:
        tls = ClientTls(args.tls_ca, args.tls_cert, args.tls_key) if use_tls else None
        types = MessageTypes(type_sources(args), tls=tls, timeout=args.deadline_ms / 1000)
    except ValueError as exc:  # MessageTypeError is one
        print(f"scatter query: {exc}", file=sys.stderr)
        return 2
    with types:
        return _query(args, tls, types)


def _query(args: argparse.Namespace, tls: ClientTls | None, types: MessageTypes) -> int:
    try:
        cls = types.find(args.type_name)
    except MessageTypeError as exc:
        print(f"scatter query: {exc}", file=sys.stderr)
        return 2
    if cls is None:
        print(f"scatter query: {types.explain_unknown(args.type_name)}; {UNKNOWN_TYPE_FIX}", file=sys.stderr)
        return 2
    message = cls()
    try:
        json_format.Parse(args.json, message, descriptor_pool=pool_of(cls))
    except json_format.ParseError as exc:
        print(f"scatter query: the JSON is not a valid {args.type_name}: {exc}", file=sys.stderr)
        return 2
    request = root_pb2.QueryRequest()
    request.payload.Pack(message)
    if args.min_coverage is not None:
        request.options.min_coverage = args.min_coverage
    if args.explain:
        request.options.explain = True
    with sync_channel(args.address, tls) as channel:
        try:
            response = root_pb2_grpc.RootStub(channel).Query(request, timeout=args.deadline_ms / 1000)
        except grpc.RpcError as exc:
            print(f"scatter query: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json.dumps(_as_json(response, types), indent=2))
    if args.explain:
        print(explain(response), file=sys.stderr)
    return 0


BAR = 40  # characters of the time axis


def explain(response: root_pb2.QueryResponse) -> str:
    """The request's attempts, shard by shard, as text: when each started and ended, and how."""
    total_ms = response.latency.ToNanoseconds() / 1e6
    ends = [a.ended.ToNanoseconds() / 1e6 for s in response.shards for a in s.attempt_reports]
    axis = max([total_ms, *ends]) or 1.0
    lines = [
        f"request {response.request_id}: {total_ms:.1f} ms, "
        f"{response.coverage.answered}/{response.coverage.total} shards answered"
    ]
    width = max([len(a.replica) for s in response.shards for a in s.attempt_reports] or [0])
    for shard in response.shards:
        status = shard_pb2.ShardStatus.Name(shard.status).removeprefix("SHARD_STATUS_")
        won = " (a hedge won)" if shard.hedge_won else ""
        reason = f": {shard.error}" if shard.error else ""
        lines.append(f"shard {shard.shard_index}  {status}{won}{reason}")
        for a in shard.attempt_reports:
            start = a.started.ToNanoseconds() / 1e6
            end = a.ended.ToNanoseconds() / 1e6 if a.HasField("ended") else total_ms
            first = min(BAR - 1, int(start / axis * BAR))
            last = max(first + 1, min(BAR, round(end / axis * BAR)))
            mark = "=" if a.outcome == "OK" else ("-" if a.outcome == "CANCELLED" else "x")
            bar = " " * first + mark * (last - first) + " " * (BAR - last)
            kind = shard_pb2.AttemptKind.Name(a.kind).removeprefix("ATTEMPT_KIND_").lower()
            lines.append(
                f"  #{a.attempt} {kind:<8} {a.replica:<{width}} {start:7.1f} -{end:7.1f} ms  {a.outcome:<11} |{bar}|"
            )
    lines.append(f"  (= answered, - cancelled: lost or cut off, x failed; the axis is {axis:.1f} ms)")
    return "\n".join(lines)
