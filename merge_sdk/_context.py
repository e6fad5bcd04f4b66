"""What a merge function and its lifecycle hooks are told about their situation."""

from __future__ import annotations

from dataclasses import dataclass

from protos.scatter_gather.v1 import merge_pb2, shard_pb2
from sdk_core import HandlerContext, ServicerContext


class MergeContext(HandlerContext):
    """One call to a merge.

    Attributes: ``coverage`` (the ``scatter_gather.v1.Coverage`` the root
    computed: total, answered, missing shards and why), ``request_id``.
    From the call: ``time_remaining()`` (seconds to the deadline, or None),
    ``cancelled`` (poll it in a sync merge; an async one is cancelled
    instead) and ``invocation_metadata``.
    """

    __slots__ = ("coverage",)

    def __init__(self, context: ServicerContext, request: merge_pb2.MergeRequest) -> None:
        super().__init__(context, request)
        self.coverage: shard_pb2.Coverage = request.coverage

    def _describe(self) -> str:
        return f"request_id={self.request_id!r}, coverage={self.coverage.answered}/{self.coverage.total}"


@dataclass(frozen=True)
class MergeInfo:
    """What the start and stop hooks get: where this process listens."""

    address: str
