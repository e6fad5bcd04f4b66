"""The HTTP server of every process's metrics and status pages: small, bounded, quiet.

What it serves: GET (and HEAD) of a few pages, one request per connection,
each page a function run in a small thread pool. What it does not: bodies,
keep-alive, chunking, TLS or anything else a scrape does not need.

Why not ``http.server.ThreadingHTTPServer`` (what this replaced): it starts
a thread per connection with no timeout (437 stalled clients held 446
threads for minutes), listens with a backlog of 5, prints a traceback to
stderr for every client that goes away (breaking JSON logs) and announces
the Python version in ``Server:``. A WSGI server (waitress, say) would do
better but is one more dependency for three pages. Here connections are
read and written on one asyncio loop in one thread, so a client that never
finishes its request costs a coroutine and a socket, not a thread, until
its timeout; only a complete request reaches a worker.

The limits (module constants, each with its reason):

    HTTP_WORKERS           threads rendering pages at once (the pool; more wait in it)
    HTTP_MAX_CONNECTIONS   connections open at once; a new one beyond is closed at once
    HTTP_BACKLOG           the listen backlog
    HTTP_READ_TIMEOUT      seconds for a client to send its whole request head
    HTTP_WRITE_TIMEOUT     seconds for a client to take the whole answer
    HTTP_MAX_HEAD_BYTES    request line and headers; more is 431

Every failure of a connection (a timeout, a reset, garbage) ends it without
a word in the log: it is the client's business, and a port open to a
network sees plenty. A page that raises is a bug, logged once at WARNING
through ``logging`` (so JSON logs stay JSON). A bind to an address other
than loopback logs a warning: the pages show the deployment's addresses and
health to whoever can connect.

Call order: construct, ``start(address)`` (returns the bound address;
raises ``ListenError`` if it cannot listen), ``stop()`` once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from scatter_common.addresses import ListenError, is_loopback

__all__ = [
    "HTTP_BACKLOG",
    "HTTP_MAX_CONNECTIONS",
    "HTTP_MAX_HEAD_BYTES",
    "HTTP_READ_TIMEOUT",
    "HTTP_WORKERS",
    "HTTP_WRITE_TIMEOUT",
    "HttpServer",
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


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes


Route = Callable[[str], Response]  # path (without the query) -> response; runs in a worker thread


def _plain(status: int, text: str) -> Response:
    return Response(status, "text/plain; charset=utf-8", (text + "\n").encode())


class HttpServer:
    """Answers GET and HEAD with ``route(path)``, within the limits above, on its own thread."""

    def __init__(self, route: Route, name: str = "scatter-http") -> None:
        self._route = route
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._open = 0  # connections open now (touched on the server's loop only)
        self.address = ""

    def start(self, address: str) -> str:
        """Listen on ``host:port`` (port 0 picks one; an empty host is every IPv4 address)."""
        host, _, port = address.rpartition(":")
        bind_host = host.strip("[]") or "0.0.0.0"
        if not is_loopback(f"{bind_host}:{port}"):
            log.warning(
                "the metrics and status pages listen on %s: anyone who can reach it sees this deployment's "
                "addresses, health and load. Keep it to a trusted network (a Kubernetes NetworkPolicy, a "
                "firewall) or bind 127.0.0.1.",
                address,
            )
        self._pool = concurrent.futures.ThreadPoolExecutor(HTTP_WORKERS, thread_name_prefix=f"{self._name}-page")
        loop = self._loop = asyncio.new_event_loop()
        bound: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, bind_host, int(port), bound), name=self._name, daemon=True
        )
        self._thread.start()
        try:
            bound_port = bound.result(timeout=30)
        except BaseException:
            self.stop()
            raise
        self.address = f"{host}:{bound_port}"
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

    def _run(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, bound: concurrent.futures.Future[int]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                server = loop.run_until_complete(
                    asyncio.start_server(self._connection, host, port, backlog=HTTP_BACKLOG, limit=HTTP_MAX_HEAD_BYTES)
                )
            except OSError as exc:
                reason = exc.strerror or str(exc)
                bound.set_exception(ListenError(f"cannot listen on {host}:{port} for metrics: {reason}"))
                return
            bound.set_result(server.sockets[0].getsockname()[1])
            loop.run_forever()
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= HTTP_MAX_CONNECTIONS:
            writer.transport.abort()  # at capacity: the cheapest refusal there is
            return
        self._open += 1
        try:
            response, head_only = await self._respond(reader)
            if response is not None:
                await self._send(writer, response, head_only)
                writer.close()  # the answer is with the kernel (see _send): a plain close loses nothing
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away, reset the connection, or stalled: its business
        finally:
            self._open -= 1
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[Response | None, bool]:
        """The answer to the request on ``reader`` and whether it is for HEAD; None: say nothing."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HTTP_READ_TIMEOUT)
        except asyncio.LimitOverrunError:
            return _plain(431, f"request head over {HTTP_MAX_HEAD_BYTES} bytes"), False
        except asyncio.IncompleteReadError:
            return None, False  # closed before a whole request
        except TimeoutError:
            return _plain(408, f"no complete request within {HTTP_READ_TIMEOUT:g} s"), False
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _plain(400, "expected an HTTP/1.x request line"), False
        method, target = parts[0], parts[1]
        if method not in (b"GET", b"HEAD"):
            return _plain(405, "only GET and HEAD are served"), False
        path = target.split(b"?", 1)[0].decode("latin-1")
        pool = self._pool
        if pool is None:
            return None, False  # stopping
        try:
            response = await asyncio.get_running_loop().run_in_executor(pool, self._render, path)
        except RuntimeError:
            return None, False  # the pool was shut down under us: stopping
        return response, method == b"HEAD"

    def _render(self, path: str) -> Response:
        try:
            return self._route(path)
        except Exception as exc:
            log.warning("HTTP page %s failed: %s: %s", path, type(exc).__name__, exc, exc_info=exc)
            return _plain(500, "the page failed; see the process's log")

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        reason = http.HTTPStatus(response.status).phrase
        head = (
            f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            "Connection: close\r\n"
            "\r\n"
        ).encode("latin-1")
        # A zero high-water mark makes drain() wait until the kernel has every byte,
        # so the write timeout bounds the whole answer and closing loses nothing.
        writer.transport.set_write_buffer_limits(high=0)
        writer.write(head if head_only else head + response.body)
        await asyncio.wait_for(writer.drain(), HTTP_WRITE_TIMEOUT)
