"""``Merge``: one user function served as a ``scatter_gather.v1.Merge``; and ``serve_merge``, its sugar."""

from __future__ import annotations

import logging
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from google.protobuf.message import Message

from merge_sdk._context import MergeContext, MergeInfo
from merge_sdk._options import MergeOptions
from merge_sdk._partial import Partial
from merge_sdk._servicer import SERVICE_NAME, MergeServicer
from protos.scatter_gather.v1 import merge_pb2_grpc
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

log = logging.getLogger("scatter.merge")

Req = TypeVar("Req", bound=Message)
Part = TypeVar("Part", bound=Message)

# What users write: (request, partials in shard order, context) -> answer, sync or async.
MergeHandler = Callable[[Req, list[Partial[Part]], MergeContext], Message | Awaitable[Message]]


def _infer_types(merge: Callable[..., object]) -> tuple[type[Message] | None, type[Message] | None]:
    """Read the request type and the partial type from ``merge``'s annotations, where present.

    The second parameter is expected as ``list[Partial[X]]`` or ``Sequence[Partial[X]]``.
    """
    annotations = parameter_annotations(merge)
    request_type = message_class(annotations[0]) if annotations else None
    partial_type = None
    if len(annotations) >= 2:
        for item in typing.get_args(annotations[1]):
            if typing.get_origin(item) is Partial:
                partial_type = message_class(typing.get_args(item)[0])
    return request_type, partial_type


class Merge(Generic[Req, Part]):
    """A merge server around ``merge``.

    ``merge(request, partials, ctx)`` gets the client's decoded request, one
    ``Partial`` per shard in shard order (failed shards included, with
    ``payload`` None) and a ``MergeContext``, and returns the answer as a
    protobuf message. A plain function runs in a thread pool; an
    ``async def`` on the event loop. Hooks as for ``Leaf``, given a
    ``MergeInfo``. ``stats`` counts calls since the process started.
    """

    def __init__(
        self,
        merge: MergeHandler[Req, Part],
        *,
        request_type: type[Req] | None = None,
        partial_type: type[Part] | None = None,
        on_start: UserHook[MergeInfo] | None = None,
        on_stop: UserHook[MergeInfo] | None = None,
    ) -> None:
        inferred_request, inferred_partial = _infer_types(merge)
        name = getattr(merge, "__qualname__", repr(merge))
        if request_type is not None:
            inferred_request = require_message_class(request_type, "request_type")
        elif inferred_request is None:
            raise TypeError(
                f"cannot infer the request type of {name}: annotate its first parameter with a "
                "protobuf message class or pass request_type=MyRequest"
            )
        if partial_type is not None:
            inferred_partial = require_message_class(partial_type, "partial_type")
        elif inferred_partial is None:
            raise TypeError(
                f"cannot infer the partial type of {name}: annotate its second parameter as "
                "list[Partial[MyPartial]] or pass partial_type=MyPartial"
            )
        self.request_type: type[Message] = inferred_request
        self.partial_type: type[Message] = inferred_partial
        self.stats = CallStats()
        self._decode_request = Decoder(inferred_request)
        self._decode_partial = Decoder(inferred_partial)
        self._runner = HandlerRunner(merge, stats=self.stats, log=log, role="merge")
        self._on_start = on_start
        self._on_stop = on_stop

    async def serve(self, options: MergeOptions) -> None:
        """Serve until SIGTERM/SIGINT, or until the task running this is cancelled; then drain."""
        host = ServiceHost(options.serve_options(), [SERVICE_NAME])
        servicer = MergeServicer(self._runner, self._decode_request, self._decode_partial)
        merge_pb2_grpc.add_MergeServicer_to_server(servicer, host.server)

        def info() -> MergeInfo:
            return MergeInfo(host.address)

        await serve_handler(
            host,
            self._runner,
            max_concurrency=options.max_concurrency,
            metrics_address=options.metrics_address,
            role="merge",
            on_start=adapt_hook(self._on_start, info),
            on_stop=adapt_hook(self._on_stop, info),
            log=log,
        )

    def main(self, argv: Sequence[str] | None = None, *, allow_extra_args: bool = False) -> int:
        """Parse flags and environment, serve until a signal; return the exit status."""
        options = MergeOptions.from_args(argv, allow_extra_args=allow_extra_args)
        return run_main(self.serve(options), role="merge", log=log)


def serve_merge(
    merge: MergeHandler[Req, Part],
    *,
    request_type: type[Req] | None = None,
    partial_type: type[Part] | None = None,
    on_start: UserHook[MergeInfo] | None = None,
    on_stop: UserHook[MergeInfo] | None = None,
    argv: Sequence[str] | None = None,
    allow_extra_args: bool = False,
) -> None:
    """Serve ``merge`` until SIGTERM/SIGINT; exit the process on failure.

    Flags come from ``argv`` (default ``sys.argv[1:]``) with ``SCATTER_*``
    environment fallbacks; run with ``--help`` to list them.
    """
    server = Merge(merge, request_type=request_type, partial_type=partial_type, on_start=on_start, on_stop=on_stop)
    status = server.main(argv, allow_extra_args=allow_extra_args)
    if status:
        raise SystemExit(status)
