"""One gRPC server per process, with the lifecycle every role shares.

The single-container lifecycle of the design: bind, report NOT_SERVING on the
standard health service while the start hook runs (a leaf loads its index),
then SERVING; on SIGTERM or SIGINT report NOT_SERVING again, keep taking
calls for the drain delay (so that whoever watches the health service, the
root or a load balancer, moves new calls elsewhere before they could be
refused), then refuse new calls, let in-flight calls finish within the grace
period, run the stop hook and return. Health and reflection are registered for every process so
Kubernetes gRPC probes and grpcurl work unchanged.

What lives here: the server's construction and lifecycle. What does not:
any service's logic (the root and the SDKs add their servicers first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scatter_common.addresses import ListenError, validate
from scatter_common.tls import ServerTls, warn_if_exposed

log = logging.getLogger("scatter")

# gRPC's own default receive limit; large enough for a page of hits, small
# enough that one bad client cannot make a process allocate without bound.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Kubernetes waits 30 s (terminationGracePeriodSeconds) before SIGKILL; a
# 10 s drain leaves room for the stop hook and for slow pods.
DEFAULT_GRACE_SECONDS = 10.0
# The root watches every replica's health and stops sending it new calls
# within a millisecond of NOT_SERVING; half a second also covers a root that
# is reconnecting to this replica's sibling (its capped reconnect backoff),
# so a rolling restart loses no call. Behind a Kubernetes Service, raise it
# to the endpoint propagation time (a few seconds, as a preStop sleep would).
DEFAULT_DRAIN_DELAY_SECONDS = 0.5

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ServeOptions:
    """How a process listens. Validated on construction."""

    address: str = "127.0.0.1:0"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    drain_delay_seconds: float = DEFAULT_DRAIN_DELAY_SECONDS
    # Several processes may share one port only when asked (root --workers);
    # otherwise a port clash must fail loudly instead of splitting traffic.
    reuse_port: bool = False
    tls: ServerTls | None = None  # None: plaintext (the default, for loopback)

    def __post_init__(self) -> None:
        validate(self.address, listen=True)
        if self.max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be > 0, got {self.max_message_bytes}")
        if not self.grace_seconds >= 0:
            raise ValueError(f"grace_seconds must be >= 0, got {self.grace_seconds}")
        if not 0 <= self.drain_delay_seconds <= 3600:
            raise ValueError(f"drain_delay_seconds must be in [0, 3600], got {self.drain_delay_seconds}")

    def channel_options(self) -> list[tuple[str, int]]:
        """Message limits for a client channel talking to a peer of this process."""
        return [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]


class ServiceHost:
    """A grpc.aio server with health and reflection, and its lifecycle.

    Call order: construct, add servicers to ``server``, ``await start()``,
    ``await set_serving(True)``, then ``await stop()`` once.
    """

    def __init__(self, options: ServeOptions, service_names: Sequence[str]) -> None:
        self.options = options
        self.service_names = tuple(service_names)
        self.server = grpc.aio.server(
            options=[
                *options.channel_options(),
                ("grpc.so_reuseport", 1 if options.reuse_port else 0),
            ]
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.address = ""

    async def start(self) -> str:
        """Bind and start serving RPCs, health NOT_SERVING; return the bound address."""
        address = self.options.address
        warn_if_exposed(address, self.options.tls, ", ".join(self.service_names) or "server")
        try:
            if self.options.tls is None:
                port = self.server.add_insecure_port(address)
            else:
                port = self.server.add_secure_port(address, self.options.tls.credentials())
        except RuntimeError as exc:
            raise ListenError(f"cannot listen on {address}: {exc}") from exc
        if not address.startswith("unix:"):
            if port == 0:
                raise ListenError(f"cannot listen on {address}: address in use or not available")
            address = f"{address.rsplit(':', 1)[0]}:{port}"
        self.address = address
        await self.server.start()
        await self.set_serving(False)
        return address

    async def set_serving(self, serving: bool) -> None:
        """Report every service (and the server as a whole, "") as SERVING or not."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Report NOT_SERVING, take calls for the drain delay, then refuse new ones and finish
        in-flight ones within the grace period."""
        await self.set_serving(False)
        if self.options.drain_delay_seconds > 0:
            await asyncio.sleep(self.options.drain_delay_seconds)
        await self.server.stop(self.options.grace_seconds)


async def _start_unless_stopped(starting: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run the start hook; a signal meanwhile cancels it (a leaf loading a large index
    would otherwise hold its supervisor's SIGTERM until loaded). True once it finished."""
    hook = asyncio.ensure_future(starting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((hook, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if hook.done():
        hook.result()  # its exception, if it failed
        return True
    hook.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await hook
    return False


async def serve_until_signal(
    host: ServiceHost,
    *,
    role: str,
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
) -> None:
    """Run ``host`` until SIGTERM/SIGINT: the whole lifecycle of one process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    address = await host.start()
    print(f"scatter: {role} listening on {address}", file=sys.stderr, flush=True)
    try:
        if on_start is not None and not await _start_unless_stopped(on_start(), stop):
            log.info("%s stopped while starting", role)
            return
        await host.set_serving(True)
        log.info("%s serving on %s", role, address)
        await stop.wait()
        log.info("%s draining (grace %.1fs)", role, host.options.grace_seconds)
    finally:
        await host.stop()
        if on_stop is not None:
            await on_stop()
