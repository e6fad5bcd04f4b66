"""The root's HTTP/JSON door: ``POST /v1/query``, a QueryRequest as JSON in, the QueryResponse as JSON out.

For curl, browsers and any HTTP client, beside the gRPC door (``Root.Query``)
and never instead of it: ``[http] listen`` turns it on (root.config). The
JSON is protobuf's JSON mapping of ``scatter_gather.v1.QueryRequest``
(google.protobuf.json_format; field names in lowerCamelCase or as in the
.proto), the payload an Any with ``@type``::

    {"payload": {"@type": "type.googleapis.com/demo_search.v1.SearchRequest", "query": "json"},
     "options": {"minCoverage": 0.5}}

and the answer is the QueryResponse in the same mapping: the merged payload
with its ``@type``, ``coverage``, ``shards`` (one report each), ``latency``,
``requestId``; fields at their default value are written too (0, "", []),
as grpc-gateway v2 writes them (``EmitUnpopulated``), so a client need not
know proto3's defaults.

Rules:

1. In process, on the root's event loop: the handler turns the JSON into
   QueryRequest bytes and calls ``RootService.query_admitted``, the very
   path ``Root.Query`` runs (budget, scatter, coverage, merge), with a
   stand-in for grpc's call context (``_Call``). No loopback gRPC hop: no
   second serialization, no extra call's CPU, and one place for every rule.
2. The gRPC door's limits, not a twin of them: admission is the same
   ``AdmissionLimit`` (requests and bytes in flight; the JSON body's size is
   what counts), taken before the JSON is parsed, so HTTP cannot bypass
   shedding and a refusal costs no parse; a body over ``max_message_bytes``
   is refused before it is read; deadlines go through the same
   ``DeadlinePolicy`` (the default when none is sent, capped at
   ``max_deadline_ms``). The connection limits are ``scatter_common.http_server``'s.
3. The deadline is the ``grpc-timeout`` header (gRPC's own format: ``500m``
   is 500 ms, ``2S`` two seconds; what grpc-gateway forwards as the call's
   deadline), counted from when the request head arrived. Not a JSON field:
   the body stays exactly protobuf's mapping of QueryRequest.
4. Status codes are grpc-gateway's (``scatter_common.status.HTTP_STATUS``),
   with its error body ``{"code": <gRPC code number>, "message": ..., "details": []}``.
   Refused at admission: 429 with ``Retry-After``. A body over the size
   limit, or a payload too large to forward (root.errors.TooLarge): 413,
   code 8 (RESOURCE_EXHAUSTED): grpc-gateway would say 429, but 429 invites
   a retry that cannot succeed. Wrong path 404, wrong method 405 (``Allow: POST``).
   With ``[http] static_dir``, every other path is a file of that folder
   (``root.http_static``: GET and HEAD, read-only, no listing), so a page
   can call ``/v1/query`` from the same origin.
5. JSON is converted (json_format, pure Python) on the loop when small,
   else on one thread of its own, one conversion at a time, so that a
   4 MiB body of small numbers (seconds of CPU) cannot stall the loop that
   serves every request; one that waited past its deadline is not started.
6. Message types are found by the one resolver,
   ``scatter_common.message_types`` (``HttpTypes`` below): the generated
   code of a type's package, ``[http] imports``, ``proto_files`` compiled
   at start, and the server reflection of ``types_from`` (the merge by
   default: it knows the request and the answer types). Lookups run on one
   thread of their own (reflection calls block; the resolver is not
   thread-safe), never on the loop; results are cached, bounded.
7. No traceback reaches a client: every failure is a status and a message
   saying what to fix; a bug is INTERNAL with the request id, as for gRPC.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Never, TypeVar

import grpc
from google.protobuf import json_format

from protos.scatter_gather.v1 import root_pb2
from root.config import HttpConfig, RootConfig
from root.errors import ConfigError
from root.http_static import StaticFiles
from root.service import RootService
from scatter_common.addresses import ListenError
from scatter_common.http_server import HttpLimits, HttpListener, Request, Response
from scatter_common.message_types import (
    MessageClass,
    MessageTypeError,
    MessageTypes,
    TypeSources,
    payload_message_to_dict,
    pool_of,
)
from scatter_common.payload import MAX_TYPE_URL_LENGTH, quoted
from scatter_common.status import HTTP_STATUS
from scatter_common.tls import ClientTls
from scatter_common.tracing import HEADER

__all__ = [
    "INLINE_JSON_BYTES",
    "QUERY_PATH",
    "RETRY_AFTER_SECONDS",
    "TIMEOUT_HEADER",
    "HttpIngress",
    "HttpTypes",
    "error_response",
    "parse_grpc_timeout",
]

log = logging.getLogger("scatter.root")
T = TypeVar("T")

QUERY_PATH = "/v1/query"
TIMEOUT_HEADER = "grpc-timeout"
# A shed request is worth retrying soon: admission frees a slot as soon as any request ends
# (milliseconds); one second spreads the retries of a burst (grpc-gateway sends no Retry-After).
RETRY_AFTER_SECONDS = 1
# Names remembered, found or not: an application has tens of message types; a client sending
# made-up names fills the cache, not the memory.
TYPE_CACHE_SIZE = 1024
# A name found nowhere is looked up again after this long: a merge rolled out with a new type
# is seen within it, and a client repeating an unknown name costs one lookup per period.
UNKNOWN_TYPE_TTL = 10.0
# Each reflection call; the first request of a type waits for it (within its own deadline).
REFLECTION_TIMEOUT = 2.0
# Names a reflection resolver remembers as unknown before a fresh one replaces it (it never
# asks twice: message_types' rule), so made-up names cannot grow it without bound.
MAX_REFLECTION_MISSES = 1024
JSON_TYPE = "application/json"
# Bodies and answers up to this size are converted on the loop (tens of microseconds to a
# millisecond); larger ones on the JSON thread (see HttpIngress._convert).
INLINE_JSON_BYTES = 64 * 1024
# What a client can do about a type the root cannot find.
UNKNOWN_TYPE_FIX = (
    "make it known to the root's [http] section: proto_files = [its .proto] (with proto_paths for "
    'its imports), types_from = "HOST:PORT" of a leaf or merge that serves reflection for it, or '
    "imports = [a Python module that defines it]; or send a type of this deployment"
)
EXAMPLE = '{"payload": {"@type": "type.googleapis.com/your.v1.Request", ...its fields}}'

_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# The gRPC code of an answer the HTTP layer gives itself, by HTTP status (grpc-gateway's routing errors).
_LISTENER_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED",
                   411: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED", 431: "RESOURCE_EXHAUSTED"}  # fmt: skip


def parse_grpc_timeout(text: str) -> float:
    """Seconds of a ``grpc-timeout`` value: 1 to 8 digits and a unit (H, M, S, m, u, n), as gRPC sends it."""
    value = text.strip()
    digits, unit = value[:-1], value[-1:]
    if not (1 <= len(digits) <= 8 and digits.isascii() and digits.isdigit()) or unit not in _UNITS:
        raise ValueError(
            f"the {TIMEOUT_HEADER} header must be 1 to 8 digits and a unit (H hours, M minutes, S seconds, "
            f"m milliseconds, u microseconds, n nanoseconds), e.g. 500m for 500 ms; got {value[:40]!r}"
        )
    return int(digits) * _UNITS[unit]


def error_response(
    code: str, message: str, status: int | None = None, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """grpc-gateway's error: HTTP status from the code (or ``status``), body ``{code, message, details}``."""
    number = grpc.StatusCode[code].value[0]
    body = json.dumps({"code": number, "message": message, "details": []}, ensure_ascii=False).encode()
    return Response(HTTP_STATUS[code] if status is None else status, JSON_TYPE, body, headers)


class _Aborted(Exception):
    """``_Call.abort``: the query path ended the request with a status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Call:
    """The query path's view of one HTTP request (``root.service.CallContext``)."""

    __slots__ = ("_deadline", "_metadata")

    def __init__(self, deadline: float | None, traceparent: str | None) -> None:
        self._deadline = deadline
        self._metadata = ((HEADER, traceparent),) if traceparent else ()

    def invocation_metadata(self) -> object:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    async def abort(self, code: grpc.StatusCode, details: str = "") -> Never:
        raise _Aborted(code.name, details)


class HttpTypes:
    """Message classes by full name for the HTTP door: the one resolver, off the loop, cached and bounded.

    Two ``MessageTypes``: one of the sources that never change (generated
    code, ``imports``, ``proto_files``, compiled once here), and one of the
    reflection of ``types_from``, replaced by a fresh one when a name it
    refused is asked again after ``UNKNOWN_TYPE_TTL`` or when it has refused
    ``MAX_REFLECTION_MISSES`` names (it asks each name once, then remembers).
    Both live on one thread; ``find`` is called on the loop, and a name in
    the cache costs a dict lookup there. Concurrent lookups of one name
    share one. Construct (compiles: blocking), ``await find``, ``close``.
    """

    def __init__(self, config: HttpConfig, tls: ClientTls | None) -> None:
        self.reflection = config.types_from
        self._tls = tls
        self._static = MessageTypes(TypeSources(config.imports, config.proto_files, config.proto_paths))
        self._reflected: MessageTypes | None = None
        self._refused: set[str] = set()  # names the current reflection resolver did not have
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scatter-http-types")
        # name -> (class or None, why not, when looked up); the loop's only
        self._cache: collections.OrderedDict[str, tuple[MessageClass | None, str, float]] = collections.OrderedDict()
        self._pending: dict[str, asyncio.Future[tuple[MessageClass | None, str]]] = {}

    async def find(self, name: str, timeout: float) -> tuple[MessageClass | None, str]:
        """(the class, "") or (None, why no source has it); TimeoutError after ``timeout`` seconds."""
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and (cached[0] is not None or now - cached[2] < UNKNOWN_TYPE_TTL):
            self._cache.move_to_end(name)
            return cached[0], cached[1]
        pending = self._pending.get(name)
        if pending is None:
            pending = asyncio.get_running_loop().run_in_executor(self._thread, self._lookup, name)
            self._pending[name] = pending
            pending.add_done_callback(lambda done: self._remember(name, done))
        return await asyncio.wait_for(asyncio.shield(pending), max(timeout, 0.0))

    def _remember(self, name: str, done: asyncio.Future[tuple[MessageClass | None, str]]) -> None:
        self._pending.pop(name, None)
        if done.cancelled() or done.exception() is not None:
            return
        found, why = done.result()
        self._cache[name] = (found, why, time.monotonic())
        self._cache.move_to_end(name)
        while len(self._cache) > TYPE_CACHE_SIZE:
            self._cache.popitem(last=False)

    def _lookup(self, name: str) -> tuple[MessageClass | None, str]:
        """On the types thread only."""
        try:
            found = self._static.find(name)
        except MessageTypeError as exc:  # the generated module of its package does not import
            return None, str(exc)
        if found is not None:
            return found, ""
        why = self._static.explain_unknown(name)
        if not self.reflection:
            return None, why
        if self._reflected is None or name in self._refused or len(self._refused) >= MAX_REFLECTION_MISSES:
            if self._reflected is not None:
                self._reflected.close()
            self._reflected = MessageTypes(TypeSources(reflection=self.reflection), tls=self._tls,
                                           timeout=REFLECTION_TIMEOUT)  # fmt: skip
            self._refused = set()
        found = self._reflected.find(name)
        if found is not None:
            return found, ""
        self._refused.add(name)
        # Its explanation ends with what reflection said: "..., nor in the server reflection of A (why)".
        said = self._reflected.explain_unknown(name).rsplit(", nor in ", 1)[-1]
        return None, f"{why}, nor in {said}"

    def close(self) -> None:
        """Wait for a lookup under way, then close the reflection channel."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._reflected is not None:
            self._reflected.close()
        self._static.close()


class HttpIngress:
    """``[http]`` of one root: the listener and its handler. ``await start()``, then ``await stop(grace)``."""

    def __init__(self, service: RootService, config: RootConfig) -> None:
        assert config.http is not None
        self.service = service
        self.http = config.http
        self.deadlines = config.deadlines
        self.max_body_bytes = config.max_message_bytes
        self.types: HttpTypes | None = None
        # [http] static_dir: GET and HEAD of its files on every other path (root.http_static).
        self.static = StaticFiles(self.http.static_dir, config.max_message_bytes) if self.http.static_dir else None
        self.listener = HttpListener(
            self.handle,
            HttpLimits(
                max_connections=self.http.max_connections,
                read_timeout=self.http.read_timeout,
                write_timeout=self.http.write_timeout,
                max_body_bytes=config.max_message_bytes,
            ),
            what="for HTTP/JSON queries",
            exposed="the HTTP/JSON ingress listens on %s, without TLS or authentication: anyone who can reach "
            "it can query this deployment. Keep it to a trusted network, put a TLS-terminating proxy in "
            "front, or bind 127.0.0.1.",
            refusal=self._refusal,
        )
        self._upstream_tls = config.upstream_tls
        self._json_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scatter-http-json")

    async def start(self, *, reuse_port: bool = False) -> str:
        """Compile the types' sources, then listen; a ConfigError naming the key if either fails."""
        try:
            self.types = await asyncio.to_thread(HttpTypes, self.http, self._upstream_tls)
        except MessageTypeError as exc:
            raise ConfigError(f"http: {exc}") from None
        try:
            return await self.listener.start(self.http.listen, reuse_port=reuse_port)
        except ListenError as exc:
            raise ConfigError(f"http.listen: {exc}") from None

    async def stop(self, grace: float) -> None:
        """Refuse new connections; requests under way get ``grace`` seconds."""
        await self.listener.stop(grace)
        self._json_thread.shutdown(wait=False, cancel_futures=True)
        if self.types is not None:
            await asyncio.to_thread(self.types.close)

    def _refusal(self, status: int, text: str) -> Response:
        """What the listener answers itself, in grpc-gateway's error shape."""
        if status == 413:
            text += (
                " bytes (max_message_bytes): send a smaller request, or raise max_message_bytes on the root, "
                "its leaves and its merge"
            )
        return error_response(_LISTENER_CODES.get(status, "INTERNAL"), text, status)

    def _count(self, code: str) -> None:
        codes = self.service.requests_by_code
        codes[code] = codes.get(code, 0) + 1

    def _reject(self, code: str, message: str) -> Response:
        """A request refused before the query path: counted like one it refuses."""
        self._count(code)
        return error_response(code, message)

    async def handle(self, request: Request) -> Response:
        if request.path != QUERY_PATH and self.static is not None:
            return await self.static.answer(request.method, request.path)
        if request.path != QUERY_PATH:
            return error_response(
                "NOT_FOUND", f"no such path {quoted(request.path)}: POST a QueryRequest as JSON to {QUERY_PATH}"
            )
        if request.method != "POST":
            return error_response(
                "UNIMPLEMENTED",
                f"{QUERY_PATH} takes POST (a QueryRequest as JSON), not {quoted(request.method)}",
                405,
                (("Allow", "POST"),),
            )
        deadline = None
        header = request.headers.get(TIMEOUT_HEADER)
        if header is not None:
            try:
                deadline = request.received + parse_grpc_timeout(header)
            except ValueError as exc:
                return self._reject("INVALID_ARGUMENT", str(exc))
        service = self.service
        size = len(request.body)
        if not service.admission.try_acquire(size):
            return error_response(
                "RESOURCE_EXHAUSTED", service.refusal(size), headers=(("Retry-After", str(RETRY_AFTER_SECONDS)),)
            )
        try:
            return await self._query(request, deadline)
        finally:
            service.admission.release(size)

    async def _query(self, request: Request, deadline: float | None) -> Response:
        # Type lookups wait at most until the request's deadline (the default one if it sent none).
        due = deadline if deadline is not None else request.received + self.deadlines.default
        try:
            document = await self._convert(len(request.body), due, json.loads, request.body)
        except TimeoutError:
            return self._reject("DEADLINE_EXCEEDED", "the deadline passed while the request waited to be read")
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return self._reject("INVALID_ARGUMENT", f"the body is not JSON ({exc}); send a QueryRequest: {EXAMPLE}")
        if not isinstance(document, dict):
            return self._reject(
                "INVALID_ARGUMENT", f"the body is JSON but not an object; send a QueryRequest: {EXAMPLE}"
            )
        payload = document.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("@type"), str):
            return self._reject(
                "INVALID_ARGUMENT",
                f'the QueryRequest has no "payload" with an "@type" naming its message type; send {EXAMPLE}',
            )
        type_url: str = payload["@type"]
        if len(type_url) > MAX_TYPE_URL_LENGTH:
            return self._reject(
                "INVALID_ARGUMENT",
                f"the payload's @type is {len(type_url)} characters, over the limit of {MAX_TYPE_URL_LENGTH}",
            )
        name = type_url.rsplit("/", 1)[-1]
        try:
            found, why = await self._find(name, due)
        except TimeoutError:
            return self._reject("DEADLINE_EXCEEDED", f"finding the message type {quoted(name)} outlasted the deadline")
        if found is None:
            return self._reject("INVALID_ARGUMENT", f"{why}; {UNKNOWN_TYPE_FIX}")
        try:
            raw = await self._convert(len(request.body), due, _to_query, document, pool_of(found))
        except (json_format.ParseError, RecursionError, TypeError, ValueError) as exc:
            return self._reject("INVALID_ARGUMENT", f"the body is not a valid QueryRequest: {exc}")
        except TimeoutError:
            return self._reject("DEADLINE_EXCEEDED", "the deadline passed while the request waited to be converted")
        call = _Call(deadline, request.headers.get(HEADER))
        try:
            answer = await self.service.query_admitted(raw, call)
        except _Aborted as exc:
            # The query path's only RESOURCE_EXHAUSTED is root.errors.TooLarge (shedding is
            # admission's, above): 413 like a body over the limit, not a 429 that invites a retry.
            return error_response(exc.code, exc.message, 413 if exc.code == "RESOURCE_EXHAUSTED" else None)
        response = root_pb2.QueryResponse.FromString(answer)
        found = None
        if response.payload.type_url:
            try:  # the answer's type: at least a moment, even when the deadline is near
                found, _ = await self._find(
                    response.payload.type_url.rsplit("/", 1)[-1], max(due, time.monotonic() + 0.1)
                )
            except TimeoutError:
                found = None
        # Past its deadline the answer is still written: the work is done, the client may still read it.
        body = await self._convert(len(answer), math.inf, _to_json, response, found)
        return Response(200, JSON_TYPE, body)

    async def _convert(self, size: int, due: float, convert: Callable[..., T], *args: Any) -> T:
        """``convert(*args)``: inline when ``size`` is small, else on the JSON thread, one at a time.

        protobuf's json_format is pure Python: 4 MiB of small numbers take
        seconds, which must not stall the loop that serves every request.
        A conversion that waited past ``due`` is not started (TimeoutError).
        """
        if size <= INLINE_JSON_BYTES:
            return convert(*args)

        def run() -> T:
            if time.monotonic() > due:
                raise TimeoutError
            return convert(*args)

        return await asyncio.get_running_loop().run_in_executor(self._json_thread, run)

    async def _find(self, name: str, due: float) -> tuple[MessageClass | None, str]:
        assert self.types is not None
        return await self.types.find(name, due - time.monotonic())


def _to_query(document: dict[str, Any], pool: Any) -> bytes:
    """A QueryRequest's bytes from its JSON document (json_format's errors raised as they are)."""
    query = root_pb2.QueryRequest()
    json_format.ParseDict(document, query, descriptor_pool=pool)
    return query.SerializeToString()


def _to_json(response: root_pb2.QueryResponse, found: MessageClass | None) -> bytes:
    """The answer in protobuf's JSON mapping; a payload of a type found nowhere stays encoded
    (``{"@type": ..., "value_base64": ...}``), as ``scatter query`` prints it."""
    document = payload_message_to_dict(response, found, with_defaults=True)
    return json.dumps(document, ensure_ascii=False).encode()
