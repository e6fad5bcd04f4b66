"""The wire side of the demo, shared by the leaf and the merge: request checks and Hit conversion.

Kept apart from :mod:`demo_search.search` (which knows nothing of protobuf)
and from the servers (so the merge does not import the leaf SDK).
"""

from __future__ import annotations

from demo_search.search import Hit
from protos.demo_search.v1 import search_pb2

__all__ = ["MAX_RESULT_WINDOW", "check_page", "hit_to_proto"]

# offset + k may not exceed this: deep pages cost every shard offset + k hits
# on the wire. The number and the rule are Elasticsearch's
# index.max_result_window (default 10,000).
MAX_RESULT_WINDOW = 10_000


def check_page(request: search_pb2.SearchRequest) -> str | None:
    """Why ``request`` asks for an unacceptable page, or None when it is fine."""
    if request.offset + request.k > MAX_RESULT_WINDOW:
        return (
            f"offset + k must be <= {MAX_RESULT_WINDOW} (got offset={request.offset}, k={request.k}); "
            "page deeper with a narrower query"
        )
    return None


def hit_to_proto(hit: Hit) -> search_pb2.Hit:
    return search_pb2.Hit(
        doc_id=hit.doc_id, score=hit.score, title=hit.title, snippet=hit.snippet, shard_index=hit.shard_index
    )
