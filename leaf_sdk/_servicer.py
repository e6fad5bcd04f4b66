"""The ``scatter_gather.v1.Leaf`` servicer: what a leaf adds to ``sdk_core``'s skeleton.

Only the leaf's part of the translation lives here: refuse a request for
another shard, build the ``LeafContext``, wrap the answer in an
``ExecuteResponse``; and ``ExecuteShards``, several of the process's shards
in one call, each run like an ``Execute`` of its own and answered in a
``ShardAnswer`` (its failure is its answer's code, not the call's). Decoding, admission, invocation, error mapping and
packing belong to ``sdk_core``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import grpc
from google.protobuf.message import Message

from leaf_sdk._context import LeafContext
from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc
from scatter_common.bodies import Undecodable
from scatter_common.payload import pack
from sdk_core import Decoder, HandlerRunner, HandlerServicer, ServicerContext, WrongShard

SERVICE_NAME = leaf_pb2.DESCRIPTOR.services_by_name["Leaf"].full_name


class LeafServicer(HandlerServicer[leaf_pb2.ExecuteRequest], leaf_pb2_grpc.LeafServicer):
    def __init__(self, runner: HandlerRunner, decode: Decoder[Any], shards: Sequence[int], shard_count: int) -> None:
        super().__init__(runner, decode)
        self._shards = frozenset(shards)
        self._shard_count = shard_count
        listed = ", ".join(map(str, shards))
        self._serves = f"shard {listed}" if len(shards) == 1 else f"shards {listed}"

    async def Execute(
        self, request: leaf_pb2.ExecuteRequest | Undecodable, context: ServicerContext
    ) -> leaf_pb2.ExecuteResponse:
        return leaf_pb2.ExecuteResponse(payload=await self.answer(request, context))

    async def ExecuteShards(
        self, request: leaf_pb2.ExecuteShardsRequest | Undecodable, context: ServicerContext
    ) -> leaf_pb2.ExecuteShardsResponse:
        """Every listed shard through the handler at once; each answer is what Execute would have said."""
        if isinstance(request, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            raise AssertionError("context.abort returned")
        indexes = list(request.shard_indexes)
        refusal: tuple[grpc.StatusCode, str] | None = None
        if not indexes or len(set(indexes)) != len(indexes):
            refusal = grpc.StatusCode.INVALID_ARGUMENT, f"shard_indexes must list distinct shards, got {indexes}"
        elif request.shard_count and request.shard_count != self._shard_count:
            refusal = grpc.StatusCode.FAILED_PRECONDITION, self._wrong(f"shards of {request.shard_count}")
        elif not self._runner.ready:
            refusal = grpc.StatusCode.UNAVAILABLE, "leaf is starting or stopping; try another replica"
        if refusal is not None:
            await context.abort(*refusal)
            raise AssertionError("context.abort returned")
        prepares = [partial(self._prepare_shard, shard) for shard in indexes]
        outcomes = await self._runner.call_many(request, context, prepares, "Leaf.ExecuteShards")
        return leaf_pb2.ExecuteShardsResponse(
            answers=[
                leaf_pb2.ShardAnswer(shard_index=shard, payload=pack(outcome))
                if isinstance(outcome, Message)
                else leaf_pb2.ShardAnswer(shard_index=shard, code=outcome.code.value[0], message=outcome.message)
                for shard, outcome in zip(indexes, outcomes, strict=True)
            ]
        )

    def _wrong(self, asked: str) -> str:
        return f"this leaf serves {self._serves} of {self._shard_count}; the request is for {asked}"

    def check(self, request: leaf_pb2.ExecuteRequest) -> None:
        # A shard count of 0 means the caller did not say (a hand-made call);
        # any other mismatch is a misconfigured root and must fail loudly
        # rather than return another shard's data.
        if request.shard_index not in self._shards or (
            request.shard_count and request.shard_count != self._shard_count
        ):
            asked = f"shard {request.shard_index}"
            if request.shard_count:
                asked += f" of {request.shard_count}"
            raise WrongShard(self._wrong(asked))

    def context(self, request: leaf_pb2.ExecuteRequest, context: ServicerContext) -> LeafContext:
        return LeafContext(context, request, request.shard_index, self._shard_count)

    def _prepare_shard(
        self, shard: int, request: leaf_pb2.ExecuteShardsRequest, context: ServicerContext
    ) -> tuple[Sequence[object], LeafContext]:
        """One shard of an ExecuteShards call: checked, decoded and given its own context."""
        if shard not in self._shards:
            raise WrongShard(self._wrong(f"shard {shard}"))
        ctx = LeafContext(context, request, shard, self._shard_count)
        return (self._decode_request(request.payload), ctx), ctx
