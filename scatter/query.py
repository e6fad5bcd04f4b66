"""``scatter query ADDRESS --type NAME JSON``: one request, printed as JSON.

The request message is given as JSON (protobuf's JSON mapping) and packed
into QueryRequest.payload; the answer is printed as JSON with its coverage
and per-shard timings. Message types are found in the generated modules
under ``protos`` and in any module named with ``--import``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory

import protos
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc
from scatter_common.tls import ClientTls, sync_channel


def _load_generated_modules(extra: list[str]) -> None:
    for info in pkgutil.walk_packages(protos.__path__, prefix="protos."):
        if info.name.endswith("_pb2"):
            importlib.import_module(info.name)
    for name in extra:
        importlib.import_module(name)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scatter query", description="Send one request to a root.")
    parser.add_argument("address", help="root address, e.g. 127.0.0.1:50051")
    parser.add_argument(
        "--type", required=True, dest="type_name", help="request message type, e.g. probe.v1.ProbeRequest"
    )
    parser.add_argument("json", help='the request message as JSON, e.g. \'{"query": "json"}\'')
    parser.add_argument("--deadline-ms", type=float, default=2000.0, help="deadline of the call (default 2000)")
    parser.add_argument("--min-coverage", type=float, help="override the root's min_coverage for this request")
    parser.add_argument("--import", dest="imports", action="append", default=[], help="module defining the type")
    parser.add_argument("--tls-ca", default="", help="PEM CA that signed the root's certificate: use TLS")
    parser.add_argument("--tls-cert", default="", help="PEM client certificate, for mutual TLS")
    parser.add_argument("--tls-key", default="", help="PEM key of --tls-cert")
    args = parser.parse_args(argv)

    try:
        _load_generated_modules(args.imports)
        descriptor = descriptor_pool.Default().FindMessageTypeByName(args.type_name)
    except (ImportError, KeyError) as exc:
        print(
            f"scatter query: unknown message type {args.type_name!r} ({exc}); use --import MODULE",
            file=sys.stderr,
        )
        return 2
    message = message_factory.GetMessageClass(descriptor)()
    try:
        json_format.Parse(args.json, message)
    except json_format.ParseError as exc:
        print(f"scatter query: the JSON is not a valid {args.type_name}: {exc}", file=sys.stderr)
        return 2
    request = root_pb2.QueryRequest()
    request.payload.Pack(message)
    if args.min_coverage is not None:
        request.options.min_coverage = args.min_coverage
    use_tls = bool(args.tls_ca or args.tls_cert)
    try:
        tls = ClientTls(args.tls_ca, args.tls_cert, args.tls_key) if use_tls else None
        channel = sync_channel(args.address, tls)
    except ValueError as exc:
        print(f"scatter query: {exc}", file=sys.stderr)
        return 2
    with channel:
        try:
            response = root_pb2_grpc.RootStub(channel).Query(request, timeout=args.deadline_ms / 1000)
        except grpc.RpcError as exc:
            print(f"scatter query: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json.dumps(json_format.MessageToDict(response), indent=2))
    return 0
