"""What a leaf handler and its lifecycle hooks are told about their situation.

``LeafContext`` is built once per call on the event-loop thread and is safe
to read from the worker thread a sync handler runs in.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos.scatter_gather.v1 import leaf_pb2
from sdk_core import HandlerContext, ServicerContext


class LeafContext(HandlerContext):
    """One call to a leaf: which shard, which attempt, how much time is left.

    Attributes: ``shard_index`` and ``shard_count`` (the shard this call is
    for: one of the process's shards when it serves several),
    ``attempt`` (1 for the first attempt at this shard of this request),
    ``hedge`` (True when the root sent this as a backup of a slow attempt),
    ``request_id`` (the client request, for logs). Methods and properties
    from the call: ``time_remaining()`` (seconds to the deadline, or None),
    ``cancelled`` (True once the caller gave up; poll it in a sync handler,
    an async handler is cancelled instead) and ``invocation_metadata``.
    """

    __slots__ = ("attempt", "hedge", "shard_count", "shard_index")

    def __init__(
        self,
        context: ServicerContext,
        request: leaf_pb2.ExecuteRequest | leaf_pb2.ExecuteShardsRequest,
        shard_index: int,
        shard_count: int,
    ) -> None:
        super().__init__(context, request)
        self.shard_index = shard_index
        self.shard_count = shard_count
        # proto3 has no "unset": a caller that leaves attempt at 0 means the first.
        self.attempt: int = request.attempt or 1
        self.hedge: bool = request.hedge

    def _describe(self) -> str:
        return (
            f"shard_index={self.shard_index}, shard_count={self.shard_count}, "
            f"attempt={self.attempt}, hedge={self.hedge}, request_id={self.request_id!r}"
        )


@dataclass(frozen=True)
class LeafInfo:
    """What the start and stop hooks get: the shards this process serves and where it listens.

    ``shards`` lists every shard the process serves (``--shards``; load each
    one's data in the start hook); ``shard_index`` is the first of them, the
    only one for a process that serves one shard.
    """

    shard_index: int
    shard_count: int
    address: str
    shards: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.shards:
            object.__setattr__(self, "shards", (self.shard_index,))
