"""The ``scatter_gather.v1.Leaf`` servicer: what a leaf adds to ``sdk_core``'s skeleton.

Only the leaf's part of the translation lives here: refuse a request for
another shard, build the ``LeafContext``, wrap the answer in an
``ExecuteResponse``. Decoding, admission, invocation, error mapping and
packing belong to ``sdk_core``.
"""

from __future__ import annotations

from typing import Any

from leaf_sdk._context import LeafContext
from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc
from scatter_common.bodies import Undecodable
from sdk_core import Decoder, HandlerRunner, HandlerServicer, ServicerContext, WrongShard

SERVICE_NAME = leaf_pb2.DESCRIPTOR.services_by_name["Leaf"].full_name


class LeafServicer(HandlerServicer[leaf_pb2.ExecuteRequest], leaf_pb2_grpc.LeafServicer):
    def __init__(self, runner: HandlerRunner, decode: Decoder[Any], shard_index: int, shard_count: int) -> None:
        super().__init__(runner, decode)
        self._shard_index = shard_index
        self._shard_count = shard_count

    async def Execute(
        self, request: leaf_pb2.ExecuteRequest | Undecodable, context: ServicerContext
    ) -> leaf_pb2.ExecuteResponse:
        return leaf_pb2.ExecuteResponse(payload=await self.answer(request, context))

    def check(self, request: leaf_pb2.ExecuteRequest) -> None:
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

    def context(self, request: leaf_pb2.ExecuteRequest, context: ServicerContext) -> LeafContext:
        return LeafContext(context, request, self._shard_index, self._shard_count)
