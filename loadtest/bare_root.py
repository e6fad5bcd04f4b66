"""A root that does nothing: grpc.aio's own refusal, the floor under what a rejection can cost.

    python -m loadtest.bare_root --max-in-flight 8

Serves ``scatter_gather.v1.Root/Query`` and health on 127.0.0.1 (a free port,
printed), with grpc's ``maximum_concurrent_rpcs`` set to ``--max-in-flight``:
each admitted call is parked (it sleeps until cancelled), and every call
beyond the limit is refused by grpc itself with RESOURCE_EXHAUSTED, before
any handler runs. ``scatter bench shed`` measures its CPU per refusal beside
the real root's: what grpc's Python layer costs per call, whatever a handler
does. A benchmark fixture, not a product.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

PARK_SECONDS = 3600.0


async def _park(_body: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await asyncio.sleep(PARK_SECONDS)
    return b""


async def serve(address: str, max_in_flight: int) -> None:
    # Health checks count against grpc's limit too: the runtime's wait for SERVING comes before any
    # call is parked, and nothing checks health while the benchmark runs.
    server = grpc.aio.server(maximum_concurrent_rpcs=max_in_flight)
    handler = grpc.method_handlers_generic_handler(
        "scatter_gather.v1.Root", {"Query": grpc.unary_unary_rpc_method_handler(_park)}
    )
    server.add_generic_rpc_handlers((handler,))
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(address)
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"scatter: bare-root listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bare_root", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--max-in-flight", type=int, default=8)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.max_in_flight))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
