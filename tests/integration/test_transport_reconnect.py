"""root.transport.Replica learns what its peer can do per connection.

A leaf process that has no ``Leaf.ExecuteShards`` answers it UNIMPLEMENTED,
and the fan-out stops batching for it (``Replica.batches``, tested in
``tests/unit/test_scatter_batches.py``). If that process is replaced in
place, at the same address, by one that has it (an upgrade), the new
connection asks again. Two real gRPC servers on one 127.0.0.1 port, one
after the other; the replica's own channel and keeper task.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from root.transport import Replica, channel_options
from scatter.runtime import free_port

pytestmark = pytest.mark.timeout(60)


def _identity(request: bytes) -> bytes:
    return request


async def _server(port: int, *, execute_shards: bool) -> grpc.aio.Server:
    """A server on ``port`` that answers ExecuteShards (an empty answer) or has no such method."""

    async def answer(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return b""

    handlers = {"ExecuteShards": grpc.unary_unary_rpc_method_handler(answer, _identity, _identity)}
    server = grpc.aio.server()
    if execute_shards:
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("scatter_gather.v1.Leaf", handlers)])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    assert bound == port
    await server.start()
    return server


async def _ask(replica: Replica) -> str:
    code, _ = await replica.call_shards(lambda: b"", 0, 5.0, ())
    return code


def test_a_peer_replaced_at_the_same_address_is_asked_to_batch_again() -> None:
    async def main() -> None:
        port = free_port()
        server = await _server(port, execute_shards=False)
        replica = Replica(f"127.0.0.1:{port}", channel_options(4 << 20))
        try:
            assert await _ask(replica) == "UNIMPLEMENTED"
            replica.batches = False  # what the fan-out does with that answer
            await asyncio.sleep(0.5)
            assert replica.batches is False, "the same connection: not asked again"

            await server.stop(0)
            server = await _server(port, execute_shards=True)  # upgraded in place
            for _ in range(400):  # within 20 s: the keeper redials within the capped backoff
                if replica.batches:
                    break
                await asyncio.sleep(0.05)
            assert replica.batches is True, "a new connection asks the peer again"
            assert await _ask(replica) == "OK"
        finally:
            await replica.close()
            await server.stop(0)

    asyncio.run(main())
