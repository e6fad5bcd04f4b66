"""``Merge``: one user function served as a ``scatter_gather.v1.Merge``; and ``serve_merge``, its sugar.

What a merge adds to ``sdk_core.HandlerServer``: its service, the partial
type (read from ``list[Partial[X]]``) and the ``MergeInfo`` its hooks get.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message

from merge_sdk._context import MergeContext, MergeInfo
from merge_sdk._options import MergeOptions
from merge_sdk._partial import Partial
from merge_sdk._servicer import SERVICE_NAME, MergeServicer
from protos.scatter_gather.v1 import merge_pb2
from sdk_core import (
    Decoder,
    HandlerServer,
    UserHook,
    add_method,
    main_or_exit,
    message_class,
    parameter_annotations,
    resolve_message_type,
)

Req = TypeVar("Req", bound=Message)
Part = TypeVar("Part", bound=Message)

# What users write: (request, partials in shard order, context) -> answer, sync or async.
MergeHandler = Callable[[Req, list[Partial[Part]], MergeContext], Message | Awaitable[Message]]


def _partial_type_of(merge: Callable[..., object]) -> type[Message] | None:
    """The partial type from ``merge``'s second parameter, ``list[Partial[X]]`` or ``Sequence[Partial[X]]``."""
    annotations = parameter_annotations(merge)
    partial_type = None
    if len(annotations) >= 2:
        for item in typing.get_args(annotations[1]):
            if typing.get_origin(item) is Partial:
                partial_type = message_class(typing.get_args(item)[0])
    return partial_type


class Merge(HandlerServer[MergeOptions, MergeInfo], Generic[Req, Part]):
    """A merge server around ``merge``.

    ``merge(request, partials, ctx)`` gets the client's decoded request, one
    ``Partial`` per shard in shard order (failed shards included, with
    ``payload`` None) and a ``MergeContext``, and returns the answer as a
    protobuf message. A plain function runs in a thread pool; an
    ``async def`` on the event loop. Hooks as for ``Leaf``, given a
    ``MergeInfo``. ``stats`` counts calls since the process started.
    """

    role = "merge"
    service_name = SERVICE_NAME
    options_type = MergeOptions

    def __init__(
        self,
        merge: MergeHandler[Req, Part],
        *,
        request_type: type[Req] | None = None,
        partial_type: type[Part] | None = None,
        on_start: UserHook[MergeInfo] | None = None,
        on_stop: UserHook[MergeInfo] | None = None,
    ) -> None:
        super().__init__(merge, request_type=request_type, on_start=on_start, on_stop=on_stop)
        self.partial_type: type[Message] = resolve_message_type(
            partial_type,
            lambda: _partial_type_of(merge),
            handler=merge,
            param="partial_type",
            annotate="second parameter as list[Partial[MyPartial]]",
            example="MyPartial",
        )
        self._decode_partial = Decoder(self.partial_type)

    def _add_servicer(self, server: grpc.aio.Server, options: MergeOptions) -> None:
        servicer = MergeServicer(self._runner, self._decode_request, self._decode_partial)
        add_method(server, SERVICE_NAME, "Merge", servicer.Merge, merge_pb2.MergeRequest, merge_pb2.MergeResponse)

    def _info(self, options: MergeOptions, address: str) -> MergeInfo:
        return MergeInfo(address)


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
    main_or_exit(server, argv, allow_extra_args=allow_extra_args)
