"""Write a scatter/gather leaf as one typed function.

    from leaf_sdk import LeafContext, serve_leaf
    from protos.probe.v1 import probe_pb2

    def handle(request: probe_pb2.ProbeRequest, ctx: LeafContext) -> probe_pb2.ProbePartial:
        return probe_pb2.ProbePartial(shard_index=ctx.shard_index, value=ctx.shard_index + 1)

    if __name__ == "__main__":
        serve_leaf(handle)

The SDK runs the gRPC server (``scatter_gather.v1.Leaf`` plus health and
reflection), decodes the request, maps errors to status codes, honours
cancellation and drains on SIGTERM. Everything public is listed in
``__all__``; the ``_private`` modules may change without notice.
"""

from leaf_sdk._context import LeafContext, LeafInfo
from leaf_sdk._leaf import Leaf, LeafHandler, serve_leaf
from leaf_sdk._options import LeafOptions
from sdk_core import DEFAULT_MAX_CONCURRENCY, CallStats, InvalidRequest

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "CallStats",
    "InvalidRequest",
    "Leaf",
    "LeafContext",
    "LeafHandler",
    "LeafInfo",
    "LeafOptions",
    "serve_leaf",
]
