"""``scatter conformance leaf|merge ADDRESS --sample FILE``: check a running leaf or merge.

Prints one row per check and exits 0 when every check passed (warnings and
skips allowed), 1 when any failed, 2 when the sample or the arguments are
unusable.
"""

from __future__ import annotations

import argparse
import sys

from scatter.conformance.checks import KitOptions, check_leaf, check_merge
from scatter.conformance.report import as_json, failed, table
from scatter.conformance.sample import SampleError, load_sample
from scatter_common.tls import ClientTls

_EPILOG = """\
sample file (JSON): {"request": {"type": "pkg.v1.Request", "json": {...}}, "slow_request": {...},
  "leaf_response_type": "pkg.v1.Partial", "partials": [{"type": "pkg.v1.Partial", "json": {...}}, ...],
  "merge_response_type": "pkg.v1.Response"}; only "request" is required. A payload may also be given
  encoded: {"type_url": "type.googleapis.com/pkg.v1.Request", "value_base64": "..."}.
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
    parser.add_argument("--shard-index", type=int, default=0, help="leaf: the shard it serves (default 0)")
    parser.add_argument("--shard-count", type=int, default=1, help="leaf: the number of shards (default 1)")
    parser.add_argument("--import", dest="imports", action="append", default=[], help="module defining the types")
    parser.add_argument(
        "--timeout-ms",
        type=float,
        default=5000.0,
        help="deadline of every call, and of the first connection (default 5000)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="calls sent at once (default 32)")
    parser.add_argument("--tls-ca", default="", help="PEM CA that signed the server's certificate: use TLS")
    parser.add_argument("--tls-cert", default="", help="PEM client certificate, for a server that requires one (mTLS)")
    parser.add_argument("--tls-key", default="", help="PEM key of --tls-cert")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.shard_index < args.shard_count:
        parser.error(f"--shard-index must be in [0, {args.shard_count}), got {args.shard_index}")
    try:
        timeout = args.timeout_ms / 1000
        tls = ClientTls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca or args.tls_cert else None
        options = KitOptions(timeout=timeout, connect_timeout=timeout, concurrency=args.concurrency, tls=tls)
        sample = load_sample(args.sample)
        if args.role == "leaf":
            results = check_leaf(
                args.address,
                sample,
                shard_index=args.shard_index,
                shard_count=args.shard_count,
                imports=tuple(args.imports),
                options=options,
            )
        else:
            results = check_merge(args.address, sample, imports=tuple(args.imports), options=options)
    except (SampleError, ValueError, ImportError) as exc:
        print(f"scatter conformance: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(as_json(args.role, args.address, results))
    else:
        print(table(f"scatter conformance {args.role} {args.address} (sample {args.sample})", results))
    return 1 if failed(results) else 0
