"""``scatter demo``: the first command a newcomer runs, and ``scatter demo index``.

    scatter demo                     build (once) and serve the stdlib index, run example queries, stop
    scatter demo "json decode"       the same with your query
    scatter demo --serve             keep it running; print the addresses, a `scatter query`, a curl line
                                     and the search page's URL
    scatter demo index [--corpus stdlib|synthetic|PATH] [--docs N] [--seed S] [--shards N] [--out DIR]

``scatter demo`` caches the stdlib index under ``$XDG_CACHE_HOME`` (default
``~/.cache``) ``/scatter-gather/``, keyed by the Python version (the stdlib
is the corpus), the shard count and the index format version, so a second
run starts in seconds. It runs the deployment through the local runtime
(``scatter.runtime``): 4 shards x 2 replicas of :mod:`demo_search.leaf`, one
:mod:`demo_search.merge`, one root, which also serves HTTP/JSON queries
(``[http]``, root/http_ingress.py) on a free port of 127.0.0.1. To search
for the word "index", write ``scatter demo -- index``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from demo_search import format as fmt
from demo_search.corpus import CorpusError, load_corpus
from demo_search.index import build_index
from demo_search.progress import progress_bar
from protos.demo_search.v1 import search_pb2
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc, shard_pb2

__all__ = ["EXAMPLE_QUERIES", "WEB_DIR", "cache_dir", "deployment_toml", "format_response", "main"]

DEMO_SHARDS = 4
DEMO_REPLICAS = 2
DEMO_K = 5
# Chosen by looking at their results: each finds the API a Python programmer expects.
EXAMPLE_QUERIES = (
    "json decode",
    "temporary directory",
    "thread lock acquire timeout",
    "async context manager",
    "random sample without replacement",
)
REQUEST_DEADLINE_SECONDS = 5.0  # generous: the first query also warms the leaves' page cache
REQUEST_TYPE = "demo_search.v1.SearchRequest"
# The search page (index.html, search.css, search.js): package data, served by the root's [http] static_dir.
WEB_DIR = Path(__file__).resolve().parent / "web"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "scatter-gather")


def stdlib_index_path(shards: int) -> Path:
    version = ".".join(map(str, sys.version_info[:3]))
    return cache_dir() / f"demo-stdlib-py{version}-{shards}shards-v{fmt.FORMAT_VERSION}"


def ensure_stdlib_index(shards: int, *, rebuild: bool = False) -> Path:
    """The cached stdlib index with ``shards`` shards, built first if missing or unreadable."""
    path = stdlib_index_path(shards)
    if not rebuild:
        try:
            fmt.read_index_manifest(path)
            return path
        except fmt.IndexFormatError:
            pass
    print(f"scatter demo: indexing the Python {sys.version.split()[0]} standard library docs (once)...")
    summary = build_index(
        load_corpus("stdlib"),
        path,
        shards=shards,
        corpus="stdlib",
        overwrite=True,
        progress=progress_bar(),
    )
    print(f"scatter demo: {summary}")
    return path


# --- scatter demo index ----------------------------------------------------------------------------


def index_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter demo index", description="Build a sharded BM25 index for the demo search."
    )
    parser.add_argument(
        "--corpus",
        default="stdlib",
        help="'stdlib' (the Python docs, default), 'synthetic', a .jsonl file of "
        '{"id", "title", "text"} or a directory of .txt/.md files',
    )
    parser.add_argument("--docs", type=int, help="index at most N documents (synthetic default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus (default 0)")
    parser.add_argument("--shards", type=int, default=DEMO_SHARDS, help=f"shard count (default {DEMO_SHARDS})")
    parser.add_argument("--out", type=Path, default=Path("demo-index"), help="output folder (default demo-index)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be >= 1")
    if args.docs is not None and args.docs < 1:
        parser.error("--docs must be >= 1")
    try:
        documents = load_corpus(args.corpus, docs=args.docs, seed=args.seed)
        summary = build_index(
            documents,
            args.out,
            shards=args.shards,
            corpus=args.corpus if args.corpus != "synthetic" else f"synthetic(seed={args.seed})",
            overwrite=args.force,
            progress=progress_bar(total=args.docs if args.corpus == "synthetic" else None),
        )
    except (CorpusError, FileExistsError, OSError) as exc:
        print(f"\nscatter demo index: {exc}", file=sys.stderr)
        return 1
    print(summary)
    return 0


# --- scatter demo [QUERY] [--serve] -----------------------------------------------------------------


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(value)


def _command(*parts: str) -> str:
    # The runtime formats commands with str.format ({python}, {shard}...): literal braces double.
    return "[" + ", ".join(_toml_string(p.replace("{", "{{").replace("}", "}}")) for p in parts) + "]"


def deployment_toml(
    index: Path,
    *,
    shards: int,
    replicas: int,
    listen: str = "127.0.0.1:0",
    http_listen: str = "",
    shards_per_process: int = 1,
) -> str:
    """The ``scatter up`` deployment file of the demo (see scatter/runtime/spec.py).

    ``shards_per_process`` above 1 has each leaf process serve that many shards.

    ``http_listen``: the root's HTTP/JSON address (``[http] listen``); "" serves none. The same
    listener serves the search page (``[http] static_dir`` = ``WEB_DIR``, shipped in this package).
    """
    http = (
        ["[http]", f"listen = {_toml_string(http_listen)}", f"static_dir = {_toml_string(str(WEB_DIR))}", ""]
        if http_listen
        else []
    )
    return "\n".join(
        [
            "# The demo search: generated by `scatter demo`; `scatter up` runs it too.",
            "[root]",
            f"listen = {_toml_string(listen)}",
            "",
            *http,
            "[merge]",
            'command = ["{python}", "-m", "demo_search.merge"]',
            "",
            "[leaves]",
            f'command = ["{{python}}", "-m", "demo_search.leaf", "--index", {_command(str(index))[1:-1]}]',
            f"shards = {shards}",
            f"replicas = {replicas}",
            *([f"shards_per_process = {shards_per_process}"] if shards_per_process > 1 else []),
            "",
        ]
    )


def curl_line(http_address: str, query: str = "json decode", k: int = DEMO_K) -> str:
    """A curl command for the root's HTTP/JSON door: a SearchRequest as protobuf's JSON mapping."""
    body = json.dumps({"payload": {"@type": f"type.googleapis.com/{REQUEST_TYPE}", "query": query, "k": k}})
    return f"curl -d '{body}' http://{http_address}/v1/query"


def page_url(http_address: str) -> str:
    """The search page's address: the root's HTTP listener, same origin as /v1/query."""
    return f"http://{http_address}/"


def query_line(address: str, query: str = "json decode", k: int = DEMO_K) -> str:
    payload = json.dumps({"query": query, "k": k})
    # --import: `scatter query` finds generated types by walking protos/, and
    # naming the module makes the line work whatever that walk covers.
    return f"scatter query {address} --type {REQUEST_TYPE} --import {search_pb2.__name__} '{payload}'"


def _coverage_text(coverage: shard_pb2.Coverage) -> str:
    text = f"coverage {coverage.answered}/{coverage.total} shards"
    if coverage.missing:
        missing = ", ".join(
            f"shard {m.shard_index} {shard_pb2.ShardStatus.Name(m.status).removeprefix('SHARD_STATUS_')}"
            for m in coverage.missing
        )
        text += f" (PARTIAL: missing {missing})"
    return text


def format_response(query: str, response: search_pb2.SearchResponse, latency_seconds: float) -> str:
    """The result page as the demo prints it: rank, score, title, snippet."""
    lines = [
        f'"{query}": {response.total_matches:,} matching documents, '
        f"{_coverage_text(response.coverage)}, {latency_seconds * 1000:.1f} ms"
    ]
    if not response.hits:
        lines.append("   (no hits)")
    for rank, hit in enumerate(response.hits, start=1):
        lines.append(f"  {rank:>2}. {hit.score:7.3f}  {hit.title}")
        if hit.snippet:
            lines.append(f"      {'':7}  {hit.snippet}")
    return "\n".join(lines)


def search_once(
    channel: grpc.Channel,
    query: str,
    k: int,
    *,
    offset: int = 0,
    deadline: float = REQUEST_DEADLINE_SECONDS,
) -> tuple[search_pb2.SearchResponse, float]:
    """One Root.Query round trip: the decoded answer and the client-side latency."""
    stub = root_pb2_grpc.RootStub(channel)
    request = root_pb2.QueryRequest()
    request.payload.Pack(search_pb2.SearchRequest(query=query, k=k, offset=offset))
    started = time.perf_counter()
    reply = stub.Query(request, timeout=deadline)
    latency = time.perf_counter() - started
    response = search_pb2.SearchResponse()
    if not reply.payload.Unpack(response):
        raise RuntimeError(f"the merge answered a {reply.payload.type_url}, not a SearchResponse")
    return response, latency


@dataclass(frozen=True)
class Served:
    """Where a running demo answers: gRPC ``Root.Query``, and HTTP/JSON (host:port; "" if none)."""

    address: str
    http_address: str


@contextmanager
def run_deployment(
    index: Path,
    *,
    shards: int,
    replicas: int,
    listen: str,
    http_listen: str = "127.0.0.1:0",
    shards_per_process: int = 1,
) -> Iterator[Served]:
    """Start the demo through the local runtime; yield where it answers; stop everything."""
    # Imported here: `scatter demo index` must not need the runtime (or grpc).
    from demo_search import kernels
    from scatter.runtime import Deployment, load_deployment

    # Once here, so the leaves load the scorer from numba's cache rather than
    # each compiling it at once on a new machine (seconds of CPU apiece).
    kernels.compile_all()
    with tempfile.TemporaryDirectory(prefix="scatter-demo-") as tmp:
        config = Path(tmp, "demo.toml")
        config.write_text(
            deployment_toml(
                index,
                shards=shards,
                replicas=replicas,
                listen=listen,
                http_listen=http_listen,
                shards_per_process=shards_per_process,
            )
        )
        with Deployment(load_deployment(config), log_dir=Path(tmp, "logs")) as deployment:
            yield Served(deployment.root_address, deployment.children["root"].http_address)


def demo_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter demo",
        description="Sharded BM25 search over the Python standard library docs, served by the framework. "
        "'scatter demo index --help' builds indexes of other corpora.",
    )
    parser.add_argument("query", nargs="*", help="words to search for (default: a few example queries)")
    parser.add_argument("--serve", action="store_true", help="keep serving until Ctrl-C")
    parser.add_argument("-k", type=int, default=DEMO_K, help=f"hits per query (default {DEMO_K})")
    parser.add_argument("--index", type=Path, help="serve this index instead of the cached stdlib one")
    parser.add_argument("--shards", type=int, default=DEMO_SHARDS, help=f"(default {DEMO_SHARDS})")
    parser.add_argument("--replicas", type=int, default=DEMO_REPLICAS, help=f"(default {DEMO_REPLICAS})")
    parser.add_argument(
        "--shards-per-process",
        type=int,
        default=1,
        metavar="N",
        help="shards each leaf process serves, asked in one ExecuteShards call (default 1)",
    )
    parser.add_argument("--listen", default="127.0.0.1:0", help="root address (default: a free port)")
    parser.add_argument(
        "--http-listen", default="127.0.0.1:0", help='root HTTP/JSON address (default: a free port; "" for none)'
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached stdlib index")
    args = parser.parse_args(argv)
    if args.shards < 1 or args.replicas < 1 or args.shards_per_process < 1 or args.k < 0:
        parser.error("--shards, --replicas and --shards-per-process must be >= 1, -k >= 0")

    from scatter.runtime import ConfigError, StartupError

    try:
        if args.index is not None:
            shards = fmt.read_index_manifest(args.index).shard_count
            index = args.index.resolve()
        else:
            shards = args.shards
            index = ensure_stdlib_index(shards, rebuild=args.rebuild)
    except (fmt.IndexFormatError, CorpusError, OSError) as exc:
        print(f"scatter demo: {exc}", file=sys.stderr)
        return 1
    per_process = min(args.shards_per_process, shards)
    per = f" ({per_process} per leaf process)" if per_process > 1 else ""
    print(f"scatter demo: starting {shards} shards{per} x {args.replicas} replicas + merge + root...", flush=True)
    started = time.perf_counter()
    try:
        with run_deployment(
            index,
            shards=shards,
            replicas=args.replicas,
            listen=args.listen,
            http_listen=args.http_listen,
            shards_per_process=per_process,
        ) as served:
            address = served.address
            http = (
                f", HTTP/JSON on http://{served.http_address}/v1/query, search page {page_url(served.http_address)}"
                if served.http_address
                else ""
            )
            print(f"scatter demo: root serving on {address}{http} (up in {time.perf_counter() - started:.1f} s)\n")
            with grpc.insecure_channel(address) as channel:
                queries = [" ".join(args.query)] if args.query else list(EXAMPLE_QUERIES)
                search_once(channel, queries[0], args.k)  # warm-up: connections and page cache
                for query in queries:
                    response, latency = search_once(channel, query, args.k)
                    print(format_response(query, response, latency) + "\n")
            if args.serve:
                print(f"scatter demo: serving on {address}; try:\n\n  {query_line(address)}\n")
                if served.http_address:
                    print(f"scatter demo: or over HTTP/JSON:\n\n  {curl_line(served.http_address)}\n")
                    print(f"scatter demo: or in a browser: {page_url(served.http_address)}\n")
                print("scatter demo: Ctrl-C to stop", flush=True)
                _wait_for_signal()
            print("scatter demo: stopping...", flush=True)
    except (StartupError, ConfigError) as exc:
        print(f"scatter demo: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"scatter demo: query failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    """Entry point of ``scatter demo ...`` (routed here by ``scatter.cli``)."""
    if argv and argv[0] == "index":
        return index_main(argv[1:])
    return demo_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
