"""The demo's merge: the global top-k of the shards' hits, served with the merge SDK.

    python -m demo_search.merge [SDK flags]

Ranking is the leaves' (score descending, ties by doc id ascending), so the
merged page equals the page of one unsharded index. ``total_matches`` is
summed over the shards that answered, and the root's coverage is copied
into the answer so a client sees when the result is partial.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from demo_search.messages import check_page
from merge_sdk import InvalidRequest, Merge, MergeContext, Partial, payloads, top_k
from protos.demo_search.v1 import search_pb2

__all__ = ["main", "merge"]


def merge(
    request: search_pb2.SearchRequest,
    partials: list[Partial[search_pb2.SearchPartial]],
    ctx: MergeContext,
) -> search_pb2.SearchResponse:
    problem = check_page(request)
    if problem:
        raise InvalidRequest(problem)
    answered = payloads(partials)
    hits = top_k(
        (p.hits for p in answered),
        request.k,
        score=lambda hit: hit.score,
        tie_key=lambda hit: hit.doc_id,
        offset=request.offset,
    )
    response = search_pb2.SearchResponse(hits=hits, total_matches=sum(p.total_matches for p in answered))
    response.coverage.CopyFrom(ctx.coverage)
    return response


def main(argv: Sequence[str] | None = None) -> int:
    return Merge(merge).main(argv)


if __name__ == "__main__":
    sys.exit(main())
