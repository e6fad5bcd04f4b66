"""The demo's leaf: one shard of the BM25 index, or several, served with the leaf SDK.

    python -m demo_search.leaf --index DIR --shard-index I --shard-count N [SDK flags]
    python -m demo_search.leaf --index DIR --shards 0-3 --shard-count N [SDK flags]

``--index`` (or ``SCATTER_DEMO_INDEX``) is the index root written by
``scatter demo index``; this process opens ``DIR/shard-NNNN`` for each of
its shards, and answers each call with the searcher of the call's shard.
Everything is loaded and validated in the start hook, before health reports
SERVING, so a missing or corrupt file, or an index built for another shard
count, stops the process at start with a message naming the problem.

The handler answers ``offset + k`` hits so that the merge can cut any page of
the global ranking exactly; ``k`` and ``offset`` are checked against
``MAX_RESULT_WINDOW``.

Work stops when the call ends. The handler is synchronous, so the SDK runs it
in a worker thread that nothing can interrupt; the searcher polls the call's
``ctx.cancelled`` (true once the root cancels a losing hedge or the deadline
passes) between its phases and inside its loops, and stops with ``Stopped``
(see :mod:`demo_search.search` for where it polls). The handler then returns
an empty partial that nobody reads: the SDK answers DEADLINE_EXCEEDED for a
call past its deadline, and a cancelled call has no one left to answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from demo_search import format as fmt
from demo_search.messages import check_page
from demo_search.search import ShardSearcher, Stopped
from leaf_sdk import InvalidRequest, Leaf, LeafContext, LeafInfo
from protos.demo_search.v1 import search_pb2

__all__ = ["INDEX_ENV", "SearchLeaf", "main"]

INDEX_ENV = "SCATTER_DEMO_INDEX"


class SearchLeaf:
    """The shard searchers behind the handler, one per shard served; loaded by ``on_start``."""

    def __init__(self, index: Path) -> None:
        self.index = index
        self._searchers: dict[int, ShardSearcher] = {}

    def on_start(self, info: LeafInfo) -> None:
        manifest = fmt.read_index_manifest(self.index)
        if manifest.shard_count != info.shard_count:
            raise fmt.IndexFormatError(
                f"{self.index}: the index has {manifest.shard_count} shard(s) but this leaf was started "
                f"with --shard-count {info.shard_count}; rebuild with --shards {info.shard_count} "
                "or start the leaves with the index's shard count"
            )
        for shard in info.shards:
            searcher = ShardSearcher(fmt.shard_dir(self.index, shard))
            if searcher.shard_index != shard or searcher.manifest.corpus_documents != manifest.documents:
                raise fmt.IndexFormatError(f"{searcher.path}: does not belong to the index at {self.index}")
            self._searchers[shard] = searcher

    def handle(self, request: search_pb2.SearchRequest, ctx: LeafContext) -> search_pb2.SearchPartial:
        problem = check_page(request)
        if problem:
            raise InvalidRequest(problem)
        searcher = self._searchers[ctx.shard_index]  # the SDK calls only for a shard served, after on_start
        try:
            result = searcher.search(request.query, request.offset + request.k, stop=lambda: ctx.cancelled)
        except Stopped:
            return search_pb2.SearchPartial()
        if ctx.cancelled:
            # Ended while the last hit was built: building messages is wasted work.
            return search_pb2.SearchPartial()
        partial = search_pb2.SearchPartial(total_matches=result.total_matches)
        add = partial.hits.add  # in place: a Hit built apart and then copied in costs twice as much
        for hit in result.hits:
            add(doc_id=hit.doc_id, score=hit.score, title=hit.title, snippet=hit.snippet, shard_index=hit.shard_index)
        return partial


def _parse(argv: Sequence[str]) -> tuple[Path, list[str]]:
    parser = argparse.ArgumentParser(
        prog="demo_search.leaf",
        description="Serve one shard of a demo search index.",
        epilog="The other flags are the leaf SDK's, listed below.",
        # --help falls through to the SDK's parser too, so both sets of flags are listed.
        add_help=False,
    )
    parser.add_argument(
        "--index",
        type=Path,
        default=os.environ.get(INDEX_ENV),
        help=f"index root written by 'scatter demo index' (env {INDEX_ENV})",
    )
    args, rest = parser.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        parser.print_help()
        print()
        return Path(), rest
    if args.index is None:
        parser.error(f"--index DIR (or {INDEX_ENV}) is required")
    return args.index, rest


def main(argv: Sequence[str] | None = None) -> int:
    index, rest = _parse(sys.argv[1:] if argv is None else argv)
    leaf = SearchLeaf(index)
    return Leaf(leaf.handle, request_type=search_pb2.SearchRequest, on_start=leaf.on_start).main(rest)


if __name__ == "__main__":
    sys.exit(main())
