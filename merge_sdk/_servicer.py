"""The ``scatter_gather.v1.Merge`` servicer: what a merge adds to ``sdk_core``'s skeleton.

Only the merge's part of the translation lives here: decode the OK shards'
payloads into ``Partial`` values, build the ``MergeContext``, wrap the
answer in a ``MergeResponse``. Decoding the request, admission,
invocation, error mapping and packing belong to ``sdk_core``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from merge_sdk._context import MergeContext
from merge_sdk._partial import STATUS_BY_NUMBER, Partial, ShardStatus
from protos.scatter_gather.v1 import merge_pb2, merge_pb2_grpc, shard_pb2
from scatter_common.bodies import Undecodable
from scatter_common.payload import PayloadError
from sdk_core import Decoder, HandlerRunner, HandlerServicer, ServicerContext

SERVICE_NAME = merge_pb2.DESCRIPTOR.services_by_name["Merge"].full_name

_OK = shard_pb2.SHARD_STATUS_OK


class MergeServicer(HandlerServicer[merge_pb2.MergeRequest], merge_pb2_grpc.MergeServicer):
    def __init__(self, runner: HandlerRunner, decode_request: Decoder[Any], decode_partial: Decoder[Any]) -> None:
        super().__init__(runner, decode_request)
        self._decode_partial = decode_partial

    async def Merge(
        self, request: merge_pb2.MergeRequest | Undecodable, context: ServicerContext
    ) -> merge_pb2.MergeResponse:
        return merge_pb2.MergeResponse(payload=await self.answer(request, context))

    def arguments(self, request: merge_pb2.MergeRequest) -> Sequence[object]:
        return ([self._partial(result) for result in request.results],)

    def context(self, request: merge_pb2.MergeRequest, context: ServicerContext) -> MergeContext:
        return MergeContext(context, request)

    def _partial(self, result: shard_pb2.ShardResult) -> Partial[Any]:
        report = result.report
        payload = None
        if report.status == _OK:
            try:
                payload = self._decode_partial(result.payload)
            except PayloadError as exc:
                raise PayloadError(f"shard {report.shard_index}: {exc}") from exc
        latency = report.latency
        return Partial(
            shard_index=report.shard_index,
            status=STATUS_BY_NUMBER.get(report.status, ShardStatus.UNSPECIFIED),
            payload=payload,
            replica=report.replica,
            latency_seconds=latency.seconds + latency.nanos / 1e9,
            attempts=report.attempts,
            hedge_won=report.hedge_won,
            error=report.error,
        )
