"""Channels from the root to its replicas and its merge, and the one call shape.

Everything the root knows about reaching another process lives here: the
options of every channel it opens (message size limits, a capped reconnect
backoff), one long-lived channel per leaf replica and one to the merge, and
the calls on them, raw bytes in and out (the root splices messages; see
``root.wire``). The fan-out (``root.scatter``) sees only
``Replica.call(build, size, timeout, metadata) -> AttemptResult``: the seam where
tests and benchmarks can put another transport.

Not here: what to call and when (``root.policies``), message layout
(``root.wire``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from scatter_common.tls import ClientTls, aio_channel

__all__ = [
    "EXECUTE_METHOD",
    "EXECUTE_SHARDS_METHOD",
    "MERGE_METHOD",
    "AttemptResult",
    "MergeChannel",
    "Replica",
    "channel_options",
]

EXECUTE_METHOD = "/scatter_gather.v1.Leaf/Execute"
EXECUTE_SHARDS_METHOD = "/scatter_gather.v1.Leaf/ExecuteShards"
MERGE_METHOD = "/scatter_gather.v1.Merge/Merge"
HEALTH_METHOD = "/grpc.health.v1.Health/Check"
WATCH_METHOD = "/grpc.health.v1.Health/Watch"
# The whole server's health (service ""): every gRPC health implementation
# knows it, grpc++'s default one included, and the SDKs set it NOT_SERVING
# while loading and draining.
_HEALTH_REQUEST = health_pb2.HealthCheckRequest(service="").SerializeToString()
_SERVING: int = health_pb2.HealthCheckResponse.SERVING

# gRPC reconnects to a dead peer with exponential backoff up to 120 s; a
# replica that comes back would then sit idle for minutes. Cap the backoff
# so a restarted leaf is reconnected within a quarter of a second (inside
# its sibling's drain delay in a rolling restart; see root.probing); a
# connection attempt four times a second to a dead address costs nothing.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
]

AttemptResult = tuple[str, bytes | str]  # ("OK", response bytes) or (code name, details)
Metadata = tuple[tuple[str, str], ...]

# A request at least this large is sent as a one-message stream (see ``send``);
# a smaller one as a plain unary call, one batch cheaper in CPU.
STREAMED_REQUEST_BYTES = 64 * 1024


async def send(
    unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes],
    streamed: grpc.aio.StreamUnaryMultiCallable[bytes, bytes],
    gate: asyncio.Lock,
    build: Callable[[], bytes],
    size: int,
    timeout: float,
    metadata: Metadata,
) -> bytes:
    """One unary call of the request ``build()`` makes (``size`` bytes); raises ``grpc.aio.AioRpcError``.

    grpc.aio keeps a unary call's request bytes until the answer is in, so
    a 4 MiB payload sent to F shards, hedges included, stayed F times in
    memory for as long as the leaves worked on it (issue 13). A large
    request is therefore sent on the same method as a client stream of one
    message, which is the same HTTP/2 exchange (the server sees a unary
    call): write it, half-close, await the answer; grpc lets go of the
    message once it is written. And it is built only once the channel's
    ``gate`` is free: one large request is being written per channel at a
    time (the connection carries them one after another anyway), so the
    copies that wait for a slow or hung peer are never made, and the one
    copy being written is the only one.
    """
    if size < STREAMED_REQUEST_BYTES:
        return await unary(build(), timeout=timeout, metadata=metadata)
    call = streamed(timeout=timeout, metadata=metadata)
    try:
        async with gate:
            try:
                await call.write(build())
                await call.done_writing()
            except asyncio.InvalidStateError:
                pass  # the call ended before the request was written: its status says why
        return await call
    except asyncio.CancelledError:
        call.cancel()
        raise


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Options of every channel the root opens (to leaves and to the merge)."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *RECONNECT_OPTIONS,
    ]


class Replica:
    """One leaf replica: its address and the long-lived channel to it, kept connected.

    A gRPC channel whose connection drops goes IDLE and dials again only when
    the next call is sent. A replica the root avoids (ejected, or slower than
    its sibling) gets no calls, so after a restart it would stay unconnected
    and the first call sent there, perhaps a failover when its sibling is the
    next to restart, would fail at once. So each replica's channel is asked to
    connect whenever it goes IDLE (one task per replica, asleep while the
    connection holds), and a restarted replica is redialled within the capped
    backoff.

    What the peer can do (``batches``: whether it has ``ExecuteShards``) is
    learned per connection: a new connection may be a new process, upgraded
    in place at the same address, so each one starts from "it batches" and
    its first answer says otherwise.
    """

    def __init__(self, address: str, options: list[tuple[str, int]], tls: ClientTls | None = None) -> None:
        self.address = address
        self.channel = aio_channel(address, tls, options)
        self.execute: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(EXECUTE_METHOD)
        self._streamed: grpc.aio.StreamUnaryMultiCallable[bytes, bytes] = self.channel.stream_unary(EXECUTE_METHOD)
        self._gate = asyncio.Lock()
        self._shards: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(EXECUTE_SHARDS_METHOD)
        self._shards_streamed: grpc.aio.StreamUnaryMultiCallable[bytes, bytes] = self.channel.stream_unary(
            EXECUTE_SHARDS_METHOD
        )
        # False once the peer answered ExecuteShards UNIMPLEMENTED: it gets one Execute per shard.
        self.batches = True
        self._health: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(HEALTH_METHOD)
        self._watch: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = self.channel.unary_stream(WATCH_METHOD)
        self._keeper: asyncio.Task[None] | None = None
        # No loop yet (a tool building shards outside one): it connects on the first call.
        with contextlib.suppress(RuntimeError):
            self._keeper = asyncio.get_running_loop().create_task(self._keep_connected())

    async def _keep_connected(self) -> None:
        state = self.channel.get_state(try_to_connect=True)
        while True:
            await self.channel.wait_for_state_change(state)
            state = self.channel.get_state(try_to_connect=True)
            if state is grpc.ChannelConnectivity.READY:
                self.batches = True  # a new connection, perhaps a new process: ask it again

    async def call(self, build: Callable[[], bytes], size: int, timeout: float, metadata: Metadata) -> AttemptResult:
        """One Leaf.Execute attempt of the request ``build()`` makes (``size`` bytes, see ``send``).

        A failed call is its status name and details, never an exception.
        """
        try:
            return "OK", await send(self.execute, self._streamed, self._gate, build, size, timeout, metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details() or ""
        except grpc.aio.UsageError:
            # The channel was closed: the replica left the shard (root.membership) while a
            # request that started before still had it as its last resort.
            return "UNAVAILABLE", f"replica {self.address} was removed from the shard"

    async def call_shards(
        self, build: Callable[[], bytes], size: int, timeout: float, metadata: Metadata
    ) -> AttemptResult:
        """One Leaf.ExecuteShards call (several shards of one request, see ``root.scatter``), as ``call``."""
        try:
            return "OK", await send(self._shards, self._shards_streamed, self._gate, build, size, timeout, metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details() or ""
        except grpc.aio.UsageError:
            return "UNAVAILABLE", f"replica {self.address} was removed from the shard"

    async def serving(self, timeout: float) -> bool:
        """Whether the replica's health service answers SERVING within ``timeout`` seconds."""
        try:
            reply = await self._health(_HEALTH_REQUEST, timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        try:
            status: int = health_pb2.HealthCheckResponse.FromString(reply).status
        except DecodeError:  # a peer that is not a gRPC health service
            return False
        return status == _SERVING

    async def watch_health(self) -> AsyncIterator[bool]:
        """The replica's health as it changes: True for SERVING, False for anything else.

        Waits for the channel to be connected (``wait_for_ready``), so a
        replica that is down is watched again as soon as it is back. Ends
        when the stream does (the replica went away); raises
        ``grpc.aio.AioRpcError`` if the call fails (UNIMPLEMENTED: it has no
        health service to watch).
        """
        call = self._watch(_HEALTH_REQUEST, wait_for_ready=True)
        try:
            async for reply in call:
                try:
                    status: int = health_pb2.HealthCheckResponse.FromString(reply).status
                except DecodeError:
                    return
                yield status == _SERVING
        finally:
            call.cancel()

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        await self.channel.close()


class MergeChannel:
    """The long-lived channel to the merge; ``call`` raises ``grpc.aio.AioRpcError`` on failure."""

    def __init__(self, address: str, options: list[tuple[str, int]], tls: ClientTls | None = None) -> None:
        self.address = address
        self.channel = aio_channel(address, tls, options)
        self._unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(MERGE_METHOD)
        self._streamed: grpc.aio.StreamUnaryMultiCallable[bytes, bytes] = self.channel.stream_unary(MERGE_METHOD)
        self._gate = asyncio.Lock()

    async def call(self, build: Callable[[], bytes], size: int, timeout: float, metadata: Metadata) -> bytes:
        """One Merge.Merge of the request ``build()`` makes (``size`` bytes, see ``send``)."""
        return await send(self._unary, self._streamed, self._gate, build, size, timeout, metadata)

    async def close(self) -> None:
        await self.channel.close()
