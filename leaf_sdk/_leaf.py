"""``Leaf``: one user function served as a ``scatter_gather.v1.Leaf``; and ``serve_leaf``, its sugar."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from google.protobuf.message import Message

from leaf_sdk._context import LeafContext, LeafInfo
from leaf_sdk._options import LeafOptions
from leaf_sdk._servicer import SERVICE_NAME, LeafServicer
from protos.scatter_gather.v1 import leaf_pb2_grpc
from scatter_common.serving import ServiceHost
from sdk_core import (
    CallStats,
    Decoder,
    HandlerRunner,
    UserHook,
    adapt_hook,
    message_class,
    parameter_annotations,
    require_message_class,
    run_main,
    serve_handler,
)

log = logging.getLogger("scatter.leaf")

Req = TypeVar("Req", bound=Message)

# What users write: (request, context) -> partial result, sync or async.
LeafHandler = Callable[[Req, LeafContext], Message | Awaitable[Message]]


def _request_type_of(handler: Callable[..., object]) -> type[Message]:
    annotations = parameter_annotations(handler)
    found = message_class(annotations[0]) if annotations else None
    if found is None:
        name = getattr(handler, "__qualname__", repr(handler))
        raise TypeError(
            f"cannot infer the request type of {name}: annotate its first parameter with a "
            "protobuf message class (def handle(request: MyRequest, ctx: LeafContext) -> ...) "
            "or pass request_type=MyRequest"
        )
    return found


class Leaf(Generic[Req]):
    """A leaf server around ``handler``.

    ``handler(request, ctx)`` gets the decoded request and a ``LeafContext``
    and returns a protobuf message (the shard's partial result). A plain
    function runs in a thread pool sized to ``max_concurrency``; an
    ``async def`` runs on the event loop. ``on_start(info)`` runs after the
    port is bound and before health reports SERVING (load the index there);
    ``on_stop(info)`` runs after the drain. Both may be sync or async.

    ``stats`` counts calls since the process started (see ``CallStats``).
    """

    def __init__(
        self,
        handler: LeafHandler[Req],
        *,
        request_type: type[Req] | None = None,
        on_start: UserHook[LeafInfo] | None = None,
        on_stop: UserHook[LeafInfo] | None = None,
    ) -> None:
        resolved = (
            _request_type_of(handler) if request_type is None else require_message_class(request_type, "request_type")
        )
        self.request_type: type[Message] = resolved
        self.stats = CallStats()
        self._decode = Decoder(resolved)
        self._runner = HandlerRunner(handler, stats=self.stats, log=log, role="leaf")
        self._on_start = on_start
        self._on_stop = on_stop

    async def serve(self, options: LeafOptions) -> None:
        """Serve until SIGTERM/SIGINT, or until the task running this is cancelled; then drain."""
        host = ServiceHost(options.serve_options(), [SERVICE_NAME])
        servicer = LeafServicer(self._runner, self._decode, options.shard_index, options.shard_count)
        leaf_pb2_grpc.add_LeafServicer_to_server(servicer, host.server)

        def info() -> LeafInfo:
            return LeafInfo(options.shard_index, options.shard_count, host.address)

        await serve_handler(
            host,
            self._runner,
            max_concurrency=options.max_concurrency,
            metrics_address=options.metrics_address,
            role="leaf",
            on_start=adapt_hook(self._on_start, info),
            on_stop=adapt_hook(self._on_stop, info),
            log=log,
        )

    def main(self, argv: Sequence[str] | None = None, *, allow_extra_args: bool = False) -> int:
        """Parse flags and environment, serve until a signal; return the exit status."""
        options = LeafOptions.from_args(argv, allow_extra_args=allow_extra_args)
        return run_main(self.serve(options), role="leaf", log=log)


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
    status = leaf.main(argv, allow_extra_args=allow_extra_args)
    if status:
        raise SystemExit(status)
