"""The HTTP/1.1 server of every process: metrics and status pages, and the root's JSON door. Small, bounded, quiet.

What it serves: one request per connection (``Connection: close``), with a
body when it has a ``Content-Length`` within the limit, to a handler. Two
faces over one connection engine (``HttpListener``):

- ``HttpServer``: GET and HEAD of a few pages, each page a function run in a
  small thread pool, on a loop in its own thread (metrics, status pages);
- ``HttpListener`` itself: any method, an ``async`` handler on the caller's
  running loop (the root's HTTP/JSON ingress, ``root.http_ingress``, which
  calls the query path in process).

What it does not: keep-alive, chunked bodies (a ``Transfer-Encoding`` is
answered 411: send ``Content-Length``), TLS, or anything else its two users
do not need. A proxy in front (Envoy, nginx) adds those.

Why not ``http.server.ThreadingHTTPServer`` (what this replaced): it starts
a thread per connection with no timeout (437 stalled clients held 446
threads for minutes), listens with a backlog of 5, prints a traceback to
stderr for every client that goes away (breaking JSON logs) and announces
the Python version in ``Server:``. Why not aiohttp for the JSON door: it
would be one more dependency for one route whose needs (one POST with a
bounded body, one answer) are these 300 lines, which the metrics pages
already exercise. Here connections are read and written on an asyncio
loop, so a client that never finishes its request costs a coroutine and a
socket, not a thread, until its timeout; only a complete request reaches
the handler.

The limits (``HttpLimits``; the module constants are the pages' defaults, each with its reason):

    HTTP_WORKERS           threads rendering pages at once (the pages' pool; more wait in it)
    HTTP_MAX_CONNECTIONS   connections open at once; a new one beyond is closed at once
    HTTP_BACKLOG           the listen backlog
    HTTP_READ_TIMEOUT      seconds for a client to send its whole request, head and body
    HTTP_WRITE_TIMEOUT     seconds for a client to take the whole answer
    HTTP_MAX_HEAD_BYTES    request line and headers; more is 431
    max_body_bytes         a body over it is refused before it is read (413); 0 for the pages

Every failure of a connection (a timeout, a reset, garbage) ends it without
a word in the log: it is the client's business, and a port open to a
network sees plenty. A handler that raises is a bug, logged once at
WARNING through ``logging`` (so JSON logs stay JSON), and answered 500 with
no detail. An answer sent before the request's body was read (413, 431) is
followed by a lingering close: the server stops writing and reads what the
client still sends for up to ``LINGER_SECONDS``, so the client reads the
answer instead of a reset. A bind to an address other than loopback logs
the caller's warning. Every answer says ``X-Content-Type-Options: nosniff``
(a browser must not guess a type: a JSON answer that echoes a query is not
HTML), unless the handler set that header itself.

Call order: ``HttpServer``: construct, ``start(address)`` (returns the bound
address; raises ``ListenError`` if it cannot listen), ``stop()`` once.
``HttpListener``: construct, ``await start(address)`` on the loop that will
serve it (same return and error), ``await stop(grace)`` once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from scatter_common.addresses import ListenError, is_loopback

__all__ = [
    "HTTP_BACKLOG",
    "HTTP_MAX_CONNECTIONS",
    "HTTP_MAX_HEAD_BYTES",
    "HTTP_READ_TIMEOUT",
    "HTTP_WORKERS",
    "HTTP_WRITE_TIMEOUT",
    "LINGER_SECONDS",
    "Handler",
    "HttpLimits",
    "HttpListener",
    "HttpServer",
    "Request",
    "Response",
]

log = logging.getLogger("scatter.http")

# A scrape or a status page renders in milliseconds, but a root's page waits
# for its event loop (metrics.call_on_loop, up to a second or so when the
# loop is busy); 4 threads keep a few slow renders from blocking a scrape.
HTTP_WORKERS = 4
# Prometheus, a person or two and a health checker need a handful; 128 leaves
# room for bursts while bounding sockets and coroutines held by idle clients.
HTTP_MAX_CONNECTIONS = 128
# socketserver's default is 5, so a burst of connects was refused by the
# kernel; 128 is the classic SOMAXCONN (Linux caps it at net.core.somaxconn).
HTTP_BACKLOG = 128
# A scraper sends its request at once; a client still sending after 5 s is
# stalled or hostile (nginx's client_header_timeout is 60 s, for browsers on
# slow links; nothing here needs that).
HTTP_READ_TIMEOUT = 5.0
# The answer is at most a few hundred KiB; a client that has not taken it in
# 10 s (Prometheus' default scrape timeout) no longer waits for it.
HTTP_WRITE_TIMEOUT = 10.0
# Request line and headers. A scrape sends a few hundred bytes; nginx's
# default header buffer is 8 KiB too (large_client_header_buffers).
HTTP_MAX_HEAD_BYTES = 8 * 1024
# After an answer sent before the body was read: how long the rest of the body is
# read and dropped so the client sees the answer, not a reset (nginx's lingering_time
# is 30 s, for slow links; a client that has the answer stops sending at once).
LINGER_SECONDS = 2.0
_LINGER_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    """One request, read whole: header names are lower case (a repeated one: its values joined by ", ")."""

    method: str
    path: str  # the target without its query
    headers: Mapping[str, str]
    body: bytes
    received: float  # time.monotonic() when its head was complete


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()  # more headers, e.g. ("Retry-After", "1")


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one listener allows (see the module docstring)."""

    max_connections: int = HTTP_MAX_CONNECTIONS
    read_timeout: float = HTTP_READ_TIMEOUT
    write_timeout: float = HTTP_WRITE_TIMEOUT
    max_head_bytes: int = HTTP_MAX_HEAD_BYTES
    max_body_bytes: int = 0
    backlog: int = HTTP_BACKLOG


# A request in, its answer out; None: close without a word (the process is stopping).
Handler = Callable[[Request], Awaitable[Response | None]]
# (status, text) -> the answer to a request the listener refuses itself (its format is the caller's).
Refusal = Callable[[int, str], Response]


def _plain(status: int, text: str) -> Response:
    return Response(status, "text/plain; charset=utf-8", (text + "\n").encode())


class _Refused(Exception):
    """A request the listener answers itself; ``unread`` when its body may still be on the way."""

    def __init__(self, status: int, text: str, unread: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.unread = unread


class HttpListener:
    """One listening socket on the running loop: each connection's one request goes to ``handler``.

    ``what`` ends the ListenError's message ("for metrics"); ``exposed``
    is the warning logged for a bind beyond loopback (``%s`` is the
    address); ``refusal`` formats what the listener answers itself (400,
    408, 411, 413, 431, and 500 for a handler that raised).
    """

    def __init__(
        self,
        handler: Handler,
        limits: HttpLimits = HttpLimits(),
        *,
        what: str = "",
        exposed: str = "",
        refusal: Refusal = _plain,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.what = what
        self.exposed = exposed
        self.refusal = refusal
        self.address = ""
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # connections whose request is in its handler

    async def start(self, address: str, *, reuse_port: bool = False) -> str:
        """Listen on ``host:port`` (port 0 picks one; an empty host is every IPv4 address)."""
        host, _, port = address.rpartition(":")
        bind_host = host.strip("[]") or "0.0.0.0"
        if self.exposed and not is_loopback(f"{bind_host}:{port}"):
            log.warning(self.exposed, address)
        try:
            self._server = await asyncio.start_server(
                self._connection,
                bind_host,
                int(port),
                backlog=self.limits.backlog,
                limit=self.limits.max_head_bytes,
                reuse_port=reuse_port or None,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            suffix = f" {self.what}" if self.what else ""
            raise ListenError(f"cannot listen on {bind_host}:{port}{suffix}: {reason}") from None
        self.address = f"{host}:{self._server.sockets[0].getsockname()[1]}"
        return self.address

    @property
    def open(self) -> int:
        """Connections open now."""
        return len(self._connections)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop listening; give requests in their handler up to ``grace`` seconds; drop the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._busy and grace > 0:
            await asyncio.wait(set(self._busy), timeout=grace)
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.limits.max_connections:
            writer.transport.abort()  # at capacity: the cheapest refusal there is
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                request = await self._read(reader, writer)
            except _Refused as refused:
                await self._send(writer, self.refusal(refused.status, refused.text), False)
                if refused.unread:
                    await self._linger(reader, writer)
                writer.close()
                return
            if request is None:
                return  # closed before a whole request
            self._busy.add(task)
            try:
                response = await self._answer(request)
            finally:
                self._busy.discard(task)
            if response is not None:
                await self._send(writer, response, request.method == "HEAD")
                writer.close()  # the answer is with the kernel (see _send): a plain close loses nothing
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away, reset the connection, or stalled: its business
        finally:
            self._connections.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
        """The whole request on ``reader``, within the read timeout; None if the client closed first."""
        limits = self.limits
        try:
            async with asyncio.timeout(limits.read_timeout):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    raise _Refused(431, f"request head over {limits.max_head_bytes} bytes", unread=True) from None
                except asyncio.IncompleteReadError:
                    return None
                received = time.monotonic()
                method, path, headers = _parse_head(head)
                length = _body_length(headers, limits.max_body_bytes)
                if length and headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await reader.readexactly(length) if length else b""
        except TimeoutError:
            raise _Refused(408, f"no complete request within {limits.read_timeout:g} s") from None
        return Request(method, path, headers, body, received)

    async def _answer(self, request: Request) -> Response | None:
        try:
            return await self.handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            name = type(exc).__name__
            log.warning("HTTP %s %s failed: %s: %s", request.method, request.path, name, exc, exc_info=exc)
            return self.refusal(500, "the request failed; see the process's log")

    async def _send(self, writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        reason = http.HTTPStatus(response.status).phrase
        extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
        if not any(name.lower() == "x-content-type-options" for name, _ in response.headers):
            extra += "X-Content-Type-Options: nosniff\r\n"
        head = (
            f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            f"{extra}"
            "Connection: close\r\n"
            "\r\n"
        ).encode("latin-1")
        # A zero high-water mark makes drain() wait until the kernel has every byte,
        # so the write timeout bounds the whole answer and closing loses nothing.
        writer.transport.set_write_buffer_limits(high=0)
        writer.write(head if head_only else head + response.body)
        await asyncio.wait_for(writer.drain(), self.limits.write_timeout)

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Stop writing, and drop what the client still sends for a while (see the module docstring)."""
        if writer.can_write_eof():
            writer.write_eof()
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while await reader.read(_LINGER_CHUNK):
                    pass
        except (TimeoutError, OSError):
            pass


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, path without the query, headers) of a request head; _Refused 400 if it is not HTTP/1.x."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _Refused(400, "expected an HTTP/1.x request line", unread=True)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise _Refused(400, "malformed header line", unread=True)
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    path = parts[1].split(b"?", 1)[0].decode("latin-1")
    return parts[0].decode("latin-1"), path, headers


def _body_length(headers: Mapping[str, str], limit: int) -> int:
    """The body's length from Content-Length (none: 0), or _Refused (400, 411, 413)."""
    if "transfer-encoding" in headers:
        raise _Refused(411, "chunked request bodies are not read: send the body with a Content-Length", True)
    text = headers.get("content-length")
    if text is None:
        return 0
    values = {value.strip() for value in text.split(",")}
    if len(values) != 1 or not all(v.isdigit() and v.isascii() for v in values):
        raise _Refused(400, f"Content-Length must be one number of bytes, got {text[:40]!r}", True)
    length = int(values.pop())
    if length > limit:
        raise _Refused(413, f"the request body is {length} bytes, over the limit of {limit}", True)
    return length


class HttpServer:
    """Answers GET and HEAD with ``route(path)`` on its own thread, within the default limits."""

    def __init__(self, route: Callable[[str], Response], name: str = "scatter-http") -> None:
        self._route = route
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.address = ""

    def start(self, address: str) -> str:
        """Listen on ``host:port`` (port 0 picks one; an empty host is every IPv4 address)."""
        self._pool = concurrent.futures.ThreadPoolExecutor(HTTP_WORKERS, thread_name_prefix=f"{self._name}-page")
        loop = self._loop = asyncio.new_event_loop()
        bound: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(loop, address, bound), name=self._name, daemon=True)
        self._thread.start()
        try:
            self.address = bound.result(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self.address

    def stop(self) -> None:
        """Stop listening, drop open connections, and wait for the server's thread."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None and thread.is_alive():
            # The thread may be closing its loop on its own (it failed to bind): nothing to stop then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    # -- the server's thread ---------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, address: str, bound: concurrent.futures.Future[str]) -> None:
        asyncio.set_event_loop(loop)
        listener = HttpListener(
            self._page,
            what="for metrics",
            exposed="the metrics and status pages listen on %s: anyone who can reach it sees this deployment's "
            "addresses, health and load. Keep it to a trusted network (a Kubernetes NetworkPolicy, a "
            "firewall) or bind 127.0.0.1.",
        )
        try:
            try:
                bound.set_result(loop.run_until_complete(listener.start(address)))
            except ListenError as exc:
                bound.set_exception(exc)
                return
            loop.run_forever()
            loop.run_until_complete(listener.stop())
        finally:
            loop.close()

    async def _page(self, request: Request) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return _plain(405, "only GET and HEAD are served")
        pool = self._pool
        if pool is None:
            return None  # stopping
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, self._render, request.path)
        except RuntimeError:
            return None  # the pool was shut down under us: stopping

    def _render(self, path: str) -> Response:
        try:
            return self._route(path)
        except Exception as exc:
            log.warning("HTTP page %s failed: %s: %s", path, type(exc).__name__, exc, exc_info=exc)
            return _plain(500, "the page failed; see the process's log")
