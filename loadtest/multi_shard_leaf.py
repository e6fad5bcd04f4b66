"""A light leaf process that serves any number of shards, for fan-out benchmarks.

    python -m loadtest.multi_shard_leaf --port 0 [--delay-ms 0]

It answers Leaf.Execute for whatever shard the request names (the shard
index travels in ExecuteRequest), with a ProbePartial, so 64-256 shards fit
on two cores in a few processes. It has health and reflection like every
process, but none of the SDK's checks: it exists to measure the root.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import grpc

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import leaf_pb2
from scatter_common import loop
from scatter_common.payload import pack
from scatter_common.serving import ServeOptions, ServiceHost, serve_until_signal

SERVICE = "scatter_gather.v1.Leaf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("SCATTER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SCATTER_PORT", "0")))
    parser.add_argument("--delay-ms", type=float, default=0.0, help="work time of every call")
    parser.add_argument("--pad-bytes", type=int, default=0, help="pad every answer to about this size (a real payload)")
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    replica = os.environ.get("SCATTER_REPLICA_ID", str(os.getpid()))
    replica += "." * max(0, args.pad_bytes - len(replica))

    async def execute(request: leaf_pb2.ExecuteRequest, context: grpc.aio.ServicerContext[object, object]) -> bytes:
        if delay:
            await asyncio.sleep(delay)
        partial = probe_pb2.ProbePartial(
            shard_index=request.shard_index, value=request.shard_index + 1, replica=replica
        )
        return leaf_pb2.ExecuteResponse(payload=pack(partial)).SerializeToString()

    async def serve() -> None:
        host = ServiceHost(ServeOptions(address=f"{args.host}:{args.port}"), [SERVICE])
        handler: grpc.RpcMethodHandler[leaf_pb2.ExecuteRequest, bytes] = grpc.unary_unary_rpc_method_handler(
            execute, request_deserializer=leaf_pb2.ExecuteRequest.FromString, response_serializer=None
        )
        host.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Execute": handler})])
        await serve_until_signal(host, role="multi-shard leaf")

    loop.run(serve())


if __name__ == "__main__":
    main()
