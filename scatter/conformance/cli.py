"""``scatter conformance leaf|merge ADDRESS --sample FILE``: check a running leaf or merge.

Prints one row per check and exits 0 when every check passed (warnings and
skips allowed), 1 when any failed, 2 when the sample or the arguments are
unusable.
"""

from __future__ import annotations

import argparse
import sys
import time

from scatter.conformance.checks import KitOptions, Shard, check_merge, run_leaf
from scatter.conformance.report import as_json, failed, table
from scatter.conformance.sample import SampleError, load_sample
from scatter.messages import add_type_flags, type_sources
from scatter_common.tls import ClientTls

_EPILOG = """\
sample file (JSON): {"request": {"type": "pkg.v1.Request", "json": {...}}, "slow_request": {...},
  "leaf_response_type": "pkg.v1.Partial", "partials": [{"type": "pkg.v1.Partial", "json": {...}}, ...],
  "merge_response_type": "pkg.v1.Response", "slow_merge_request": {...}}; only "request" is required.
  The slow requests keep a leaf (a merge) busy for seconds: without them the release checks SKIP.
  A payload may also be given encoded: {"type_url": "type.googleapis.com/pkg.v1.Request", "value_base64": "..."}.
The types are found in --proto files, through the reflection of the server checked (or --types-from),
in the generated code of their package under protos/, or in --import modules: no code generation needed.
The kit waits for SERVING, learns a leaf's shard unless told, and takes about 2-5 s against a
conforming server; against a misbehaving one at most KitOptions.worst_case() (about 150 s with the
defaults, mostly the SERVING wait and one --timeout-ms per call), stated after the table.
See docs/any-language.md.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scatter conformance",
        description="Check a running leaf or merge, in any language, against the scatter/gather contract.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("role", choices=["leaf", "merge"], help="what runs at ADDRESS")
    parser.add_argument("address", help="host:port or unix:/path of the server")
    parser.add_argument("--sample", required=True, help="JSON file with a valid request (see below)")
    parser.add_argument(
        "--shard-index", type=int, default=None, help="leaf: the shard it serves (default: learned from the leaf)"
    )
    parser.add_argument(
        "--shard-count", type=int, default=None, help="leaf: the number of shards (default: learned from the leaf)"
    )
    add_type_flags(parser, " (default: the server checked)")
    parser.add_argument(
        "--timeout-ms",
        type=float,
        default=5000.0,
        help="deadline of every call, and of the first connection (default 5000)",
    )
    parser.add_argument(
        "--serving-timeout-ms",
        type=float,
        default=30000.0,
        help="how long to wait for the server to report SERVING before checking (default 30000)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="calls sent at once (default 32)")
    parser.add_argument(
        "--cancel-calls",
        type=int,
        default=64,
        help="slow calls the release checks start, then cancel or let run out of time (default 64)",
    )
    parser.add_argument("--tls-ca", default="", help="PEM CA that signed the server's certificate: use TLS")
    parser.add_argument("--tls-cert", default="", help="PEM client certificate, for a server that requires one (mTLS)")
    parser.add_argument("--tls-key", default="", help="PEM key of --tls-cert")
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON (schema scatter.conformance/v1, see docs)"
    )
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.shard_index is not None and args.shard_count is not None and not 0 <= args.shard_index < args.shard_count:
        parser.error(f"--shard-index must be in [0, {args.shard_count}), got {args.shard_index}")
    started = time.monotonic()
    shard: Shard | None = None
    try:
        timeout = args.timeout_ms / 1000
        tls = ClientTls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca or args.tls_cert else None
        options = KitOptions(
            timeout=timeout,
            connect_timeout=timeout,
            serving_timeout=args.serving_timeout_ms / 1000,
            concurrency=args.concurrency,
            cancel_calls=args.cancel_calls,
            tls=tls,
        )
        sample = load_sample(args.sample)
        types = type_sources(args)
        if args.role == "leaf":
            results, shard = run_leaf(
                args.address,
                sample,
                shard_index=args.shard_index,
                shard_count=args.shard_count,
                types=types,
                options=options,
            )
        else:
            results = check_merge(args.address, sample, types=types, options=options)
    except (SampleError, ValueError) as exc:  # ShardUnknown and MessageTypeError are ValueErrors
        print(f"scatter conformance: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    if args.json:
        learned = None if shard is None else (shard.index, shard.count, shard.learned)
        print(as_json(args.role, args.address, results, shard=learned, elapsed=elapsed))
    else:
        where = ""
        if shard is not None:
            where = f", shard {shard.index} of {shard.count}{' learned from the leaf' if shard.learned else ''}"
        title = f"scatter conformance {args.role} {args.address} (sample {args.sample}{where})"
        print(table(title, results) + f" in {elapsed:.1f} s (at most {options.worst_case():.0f} s with these bounds)")
    return 1 if failed(results) else 0
