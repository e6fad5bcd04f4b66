"""Write a scatter/gather merge as one typed function, with helpers for common merges.

    from merge_sdk import MergeContext, Partial, serve_merge, top_k

    def merge(request: SearchRequest, partials: list[Partial[SearchPartial]],
              ctx: MergeContext) -> SearchResponse:
        hits = top_k((p.payload.hits for p in partials if p.ok), request.k,
                     score=lambda h: h.score, tie_key=lambda h: h.doc_id)
        return SearchResponse(hits=hits)

    if __name__ == "__main__":
        serve_merge(merge)

``partials`` has one entry per shard in shard order, failed shards included
(``ok`` False, ``payload`` None, ``status`` says why). The SDK runs the gRPC
server (``scatter_gather.v1.Merge`` plus health and reflection), decodes the
payloads, maps errors to status codes, honours cancellation and drains on
SIGTERM. Everything public is listed in ``__all__``.
"""

from merge_sdk._context import MergeContext, MergeInfo
from merge_sdk._helpers import concatenate, ok_shards, payloads, sum_field, top_k
from merge_sdk._merge import Merge, MergeHandler, serve_merge
from merge_sdk._options import MergeOptions
from merge_sdk._partial import Partial, ShardStatus
from sdk_core import DEFAULT_MAX_CONCURRENCY, CallStats, InvalidRequest

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "CallStats",
    "InvalidRequest",
    "Merge",
    "MergeContext",
    "MergeHandler",
    "MergeInfo",
    "MergeOptions",
    "Partial",
    "ShardStatus",
    "concatenate",
    "ok_shards",
    "payloads",
    "serve_merge",
    "sum_field",
    "top_k",
]
