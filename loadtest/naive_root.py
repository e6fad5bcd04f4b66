"""The yardstick: a root with no policies at all.

``asyncio.gather`` over the first replica of every shard, typed stubs that
decode and re-encode every message, no deadline budget, no hedging, no
failover, no admission. What a team writes in an afternoon; our root must
keep up with it while doing everything it does not.

    python -m loadtest.naive_root --config ROOT.toml
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

from protos.scatter_gather.v1 import (
    leaf_pb2,
    leaf_pb2_grpc,
    merge_pb2,
    merge_pb2_grpc,
    root_pb2,
    root_pb2_grpc,
    shard_pb2,
)
from root import RootConfig, load_root_config
from scatter_common import loop
from scatter_common.serving import ServeOptions, ServiceHost, serve_until_signal


class NaiveRoot(root_pb2_grpc.RootServicer):
    def __init__(self, config: RootConfig) -> None:
        self.leaves = [leaf_pb2_grpc.LeafStub(grpc.aio.insecure_channel(shard.replicas[0])) for shard in config.shards]
        self.merge = merge_pb2_grpc.MergeStub(grpc.aio.insecure_channel(config.merge_address))

    async def Query(
        self,
        request: root_pb2.QueryRequest,
        context: grpc.aio.ServicerContext[root_pb2.QueryRequest, root_pb2.QueryResponse],
    ) -> root_pb2.QueryResponse:
        count = len(self.leaves)
        responses = await asyncio.gather(
            *(
                stub.Execute(leaf_pb2.ExecuteRequest(payload=request.payload, shard_index=i, shard_count=count))
                for i, stub in enumerate(self.leaves)
            )
        )
        results = [
            shard_pb2.ShardResult(
                report=shard_pb2.ShardReport(shard_index=i, status=shard_pb2.SHARD_STATUS_OK),
                payload=r.payload,
            )
            for i, r in enumerate(responses)
        ]
        coverage = shard_pb2.Coverage(total=count, answered=count)
        merged = await self.merge.Merge(
            merge_pb2.MergeRequest(payload=request.payload, results=results, coverage=coverage)
        )
        return root_pb2.QueryResponse(payload=merged.payload, coverage=coverage)


async def serve(config: RootConfig) -> None:
    host = ServiceHost(ServeOptions(address=config.listen), ["scatter_gather.v1.Root"])
    root_pb2_grpc.add_RootServicer_to_server(NaiveRoot(config), host.server)
    await serve_until_signal(host, role="naive root")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the naive baseline root.")
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    loop.run(serve(load_root_config(args.config)))


if __name__ == "__main__":
    main()
