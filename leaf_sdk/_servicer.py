"""The ``scatter_gather.v1.Leaf`` servicer: wire in, handler call, wire out.

Only translation lives here: check the shard, decode the payload, build the
context, pack the answer. Admission, invocation and error mapping belong to
``sdk_core``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leaf_sdk._context import LeafContext
from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc
from scatter_common.payload import pack
from sdk_core import CallScope, Decoder, HandlerRunner, ServicerContext, WrongShard

SERVICE_NAME = leaf_pb2.DESCRIPTOR.services_by_name["Leaf"].full_name


class LeafServicer(leaf_pb2_grpc.LeafServicer):
    def __init__(self, runner: HandlerRunner, decode: Decoder[Any], shard_index: int, shard_count: int) -> None:
        self._runner = runner
        self._decode = decode
        self._shard_index = shard_index
        self._shard_count = shard_count

    async def Execute(self, request: leaf_pb2.ExecuteRequest, context: ServicerContext) -> leaf_pb2.ExecuteResponse:
        result = await self._runner.call(request, context, self._prepare)
        return leaf_pb2.ExecuteResponse(payload=pack(result))

    def _prepare(
        self, request: leaf_pb2.ExecuteRequest, context: ServicerContext
    ) -> tuple[Sequence[object], CallScope]:
        # A shard count of 0 means the caller did not say (a hand-made call);
        # any other mismatch is a misconfigured root and must fail loudly
        # rather than return another shard's data.
        if request.shard_index != self._shard_index or (
            request.shard_count and request.shard_count != self._shard_count
        ):
            asked = f"shard {request.shard_index}"
            if request.shard_count:
                asked += f" of {request.shard_count}"
            raise WrongShard(
                f"this leaf serves shard {self._shard_index} of {self._shard_count}; the request is for {asked}"
            )
        ctx = LeafContext(context, request, self._shard_index, self._shard_count)
        return (self._decode(request.payload), ctx), ctx
