"""``Leaf``: one user function served as a ``scatter_gather.v1.Leaf``; and ``serve_leaf``, its sugar.

What a leaf adds to ``sdk_core.HandlerServer``: its service, its options
(the shard it serves) and the ``LeafInfo`` its hooks get.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message

from leaf_sdk._context import LeafContext, LeafInfo
from leaf_sdk._options import LeafOptions
from leaf_sdk._servicer import SERVICE_NAME, LeafServicer
from protos.scatter_gather.v1 import leaf_pb2
from sdk_core import HandlerServer, UserHook, add_method, main_or_exit

Req = TypeVar("Req", bound=Message)

# What users write: (request, context) -> partial result, sync or async.
LeafHandler = Callable[[Req, LeafContext], Message | Awaitable[Message]]


class Leaf(HandlerServer[LeafOptions, LeafInfo], Generic[Req]):
    """A leaf server around ``handler``.

    ``handler(request, ctx)`` gets the decoded request and a ``LeafContext``
    and returns a protobuf message (the shard's partial result). A process
    that serves several shards (``--shards``) answers each with the handler,
    ``ctx.shard_index`` saying which; a call for several of them at once
    (``ExecuteShards``) runs the handler for each concurrently. A plain
    function runs in a thread pool sized to ``max_concurrency``; an
    ``async def`` runs on the event loop. ``on_start(info)`` runs after the
    port is bound and before health reports SERVING (load the index there);
    ``on_stop(info)`` runs after the drain. Both may be sync or async.

    ``stats`` counts calls since the process started (see ``CallStats``).
    """

    role = "leaf"
    service_name = SERVICE_NAME
    request_annotation = (
        "first parameter with a protobuf message class (def handle(request: MyRequest, ctx: LeafContext) -> ...)"
    )
    options_type = LeafOptions

    def __init__(
        self,
        handler: LeafHandler[Req],
        *,
        request_type: type[Req] | None = None,
        on_start: UserHook[LeafInfo] | None = None,
        on_stop: UserHook[LeafInfo] | None = None,
    ) -> None:
        super().__init__(handler, request_type=request_type, on_start=on_start, on_stop=on_stop)

    def _add_servicer(self, server: grpc.aio.Server, options: LeafOptions) -> None:
        servicer = LeafServicer(self._runner, self._decode_request, options.served, options.shard_count)
        add_method(server, SERVICE_NAME, "Execute", servicer.Execute, leaf_pb2.ExecuteRequest, leaf_pb2.ExecuteResponse)
        add_method(
            server,
            SERVICE_NAME,
            "ExecuteShards",
            servicer.ExecuteShards,
            leaf_pb2.ExecuteShardsRequest,
            leaf_pb2.ExecuteShardsResponse,
        )

    def _info(self, options: LeafOptions, address: str) -> LeafInfo:
        return LeafInfo(options.shard_index, options.shard_count, address, options.served)


def serve_leaf(
    handler: LeafHandler[Req],
    *,
    request_type: type[Req] | None = None,
    on_start: UserHook[LeafInfo] | None = None,
    on_stop: UserHook[LeafInfo] | None = None,
    argv: Sequence[str] | None = None,
    allow_extra_args: bool = False,
) -> None:
    """Serve ``handler`` as a leaf until SIGTERM/SIGINT; exit the process on failure.

    Flags come from ``argv`` (default ``sys.argv[1:]``) with ``SCATTER_*``
    environment fallbacks; run with ``--help`` to list them. Pass
    ``allow_extra_args=True`` when the program parses flags of its own.
    """
    leaf = Leaf(handler, request_type=request_type, on_start=on_start, on_stop=on_stop)
    main_or_exit(leaf, argv, allow_extra_args=allow_extra_args)
