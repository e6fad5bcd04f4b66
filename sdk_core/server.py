"""One server base for both SDKs: ``HandlerServer``, ``HandlerServicer``, ``HandlerContext``.

Rules of this module:

- A leaf and a merge are the same server: one user function behind one
  unary RPC. Everything they do alike lives here, once: resolving the
  request type, the counters, adapting the lifecycle hooks, ``serve`` and
  ``main``; and in the servicer, decoding the request, the call scope and
  packing the answer (admission, invocation and error mapping are
  ``calls``' and ``errors``' business, reached through ``HandlerRunner``).
- A role (``leaf_sdk``, ``merge_sdk``) supplies only what differs: its name
  (log lines, metric names, worker threads), its service name and the
  generated ``add_*Servicer_to_server`` that registers its servicer, its
  options class (with its flags), the info its hooks get; and in its
  servicer, what it refuses before decoding, what it decodes besides the
  request, and the context it hands over.
- Call order of one RPC in the servicer: ``check`` (refuse before any
  decoding), decode the request's payload, ``arguments`` (the handler's
  arguments between the request and the context), ``context``; then the
  handler gets ``(request, *arguments, ctx)``. Whatever is raised on the
  way becomes a status through ``errors``.
- Nothing here names a role's messages: a request is anything with an Any
  ``payload`` and a ``request_id``; a role's RPC method wraps ``answer``'s
  Any in its own response message.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from scatter_common.bodies import Undecodable, deserializer
from scatter_common.payload import pack
from scatter_common.serving import ServiceHost
from sdk_core.callables import UserHook, adapt_hook, message_class, parameter_annotations, resolve_message_type
from sdk_core.calls import CallScope, CallStats, Decoder, HandlerRunner, ServicerContext
from sdk_core.errors import UndecodableBody
from sdk_core.flags import ServerOptions
from sdk_core.lifecycle import run_main, serve_handler


class SdkRequest(Protocol):
    """What every SDK request carries: the client's payload and the request id."""

    @property
    def payload(self) -> any_pb2.Any: ...

    @property
    def request_id(self) -> str: ...


Opts = TypeVar("Opts", bound=ServerOptions)
Info = TypeVar("Info")
Req = TypeVar("Req", bound=SdkRequest)


class HandlerContext(CallScope):
    """What every handler is told: the call's scope (deadline, cancellation, metadata) and its request id.

    A role's context adds its attributes and names them in ``repr`` by
    overriding ``_describe``.
    """

    __slots__ = ("request_id",)

    def __init__(self, context: ServicerContext, request: SdkRequest) -> None:
        super().__init__(context)
        self.request_id: str = request.request_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._describe()}, "
            f"time_remaining={self.time_remaining()}, cancelled={self.cancelled})"
        )

    def _describe(self) -> str:
        """The role's attributes for ``repr``, before the call's time and cancellation."""
        return f"request_id={self.request_id!r}"


class HandlerServicer(abc.ABC, Generic[Req]):
    """The servicer skeleton: wire in, handler call, wire out.

    A role subclasses it together with its generated servicer class, and
    its RPC method returns its response message around ``answer(...)``.
    """

    def __init__(self, runner: HandlerRunner, decode_request: Decoder[Any]) -> None:
        self._runner = runner
        self._decode_request = decode_request

    async def answer(self, request: Req | Undecodable, context: ServicerContext) -> any_pb2.Any:
        """The handler's answer to one call, packed; or the call aborted with the mapped status."""
        return pack(await self._runner.call(request, context, self._prepare))

    def check(self, request: Req) -> None:
        """Refuse the call before anything is decoded, by raising (an ``SdkError``)."""

    def arguments(self, request: Req) -> Sequence[object]:
        """The handler's arguments between the decoded request and the context; none here."""
        return ()

    @abc.abstractmethod
    def context(self, request: Req, context: ServicerContext) -> HandlerContext:
        """The context the handler gets for this call."""

    def _prepare(self, request: Req | Undecodable, context: ServicerContext) -> tuple[Sequence[object], CallScope]:
        if isinstance(request, Undecodable):
            raise UndecodableBody(request.message)
        self.check(request)
        decoded = self._decode_request(request.payload)
        arguments = self.arguments(request)
        ctx = self.context(request, context)
        return (decoded, *arguments, ctx), ctx


def add_method(
    server: grpc.aio.Server,
    service_name: str,
    method: str,
    handler: Callable[[Any, ServicerContext], Awaitable[Message]],
    request_type: type[Message],
    response_type: type[Message],
) -> None:
    """Serve ``handler`` as ``service_name``/``method``: what a generated ``add_*Servicer_to_server`` does,
    with requests decoded by ``scatter_common.bodies.deserializer``.

    grpc's own deserializer raises on a body that does not parse, and grpc
    then answers UNKNOWN and logs a traceback; this one hands the servicer
    an ``Undecodable``, which ``HandlerServicer`` answers INVALID_ARGUMENT
    and counts as an error.
    """
    rpc: grpc.RpcMethodHandler[Any, Message] = grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=deserializer(request_type), response_serializer=response_type.SerializeToString
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service_name, {method: rpc})])


def _first_parameter_type(handler: Callable[..., object]) -> type[Message] | None:
    annotations = parameter_annotations(handler)
    return message_class(annotations[0]) if annotations else None


class HandlerServer(abc.ABC, Generic[Opts, Info]):
    """One user function served as a gRPC service until a signal: the body of ``Leaf`` and ``Merge``.

    ``request_type`` is the message the handler's first argument is decoded
    into: given, or read from the first parameter's annotation. ``stats``
    counts calls since the process started (see ``CallStats``). The hooks
    get an ``Info`` built when they run (the bound address is known then).
    """

    # What a role declares: its name, its service, how to annotate its
    # handler's first parameter (for "cannot infer"), and its options.
    role: ClassVar[str]
    service_name: ClassVar[str]
    request_annotation: ClassVar[str] = "first parameter with a protobuf message class"
    options_type: type[Opts]

    def __init__(
        self,
        handler: Callable[..., object],
        *,
        request_type: type[Message] | None,
        on_start: UserHook[Info] | None,
        on_stop: UserHook[Info] | None,
    ) -> None:
        self.request_type: type[Message] = resolve_message_type(
            request_type,
            lambda: _first_parameter_type(handler),
            handler=handler,
            param="request_type",
            annotate=self.request_annotation,
            example="MyRequest",
        )
        self.stats = CallStats()
        self._log = logging.getLogger(f"scatter.{self.role}")
        self._decode_request = Decoder(self.request_type)
        self._runner = HandlerRunner(handler, stats=self.stats, log=self._log, role=self.role)
        self._on_start = on_start
        self._on_stop = on_stop

    @abc.abstractmethod
    def _add_servicer(self, server: grpc.aio.Server, options: Opts) -> None:
        """Register the role's servicer (built on ``self._runner``) with ``server``."""

    @abc.abstractmethod
    def _info(self, options: Opts, address: str) -> Info:
        """What the hooks get, once the server listens on ``address``."""

    async def serve(self, options: Opts) -> None:
        """Serve until SIGTERM/SIGINT, or until the task running this is cancelled; then drain."""
        host = ServiceHost(options.serve_options(), [self.service_name])
        self._add_servicer(host.server, options)

        def info() -> Info:
            return self._info(options, host.address)

        await serve_handler(
            host,
            self._runner,
            max_concurrency=options.max_concurrency,
            metrics_address=options.metrics_address,
            role=self.role,
            on_start=adapt_hook(self._on_start, info),
            on_stop=adapt_hook(self._on_stop, info),
            log=self._log,
        )

    def main(self, argv: Sequence[str] | None = None, *, allow_extra_args: bool = False) -> int:
        """Parse flags and environment, serve until a signal; return the exit status."""
        options = self.options_type.from_args(argv, allow_extra_args=allow_extra_args)
        return run_main(self.serve(options), role=self.role, log=self._log)


def main_or_exit(
    server: HandlerServer[Any, Any], argv: Sequence[str] | None = None, *, allow_extra_args: bool = False
) -> None:
    """``server.main``, then exit the process with its status when it is not 0 (``serve_leaf``, ``serve_merge``)."""
    status = server.main(argv, allow_extra_args=allow_extra_args)
    if status:
        raise SystemExit(status)
