"""Metrics every process exposes: cheap histograms on the hot path, and a
small HTTP server for Prometheus' ``/metrics`` and any other page.

Counters live where the work happens (plain ints on the event-loop thread);
a collector turns them into Prometheus families only when scraped, so the
request path pays for a bisect into a bucket list and nothing else. The
HTTP server runs in a daemon thread. A collector that reads only ints and
histograms (the SDKs') may read them from there: each read is safe under the
GIL, and a scrape that sees one call half-counted is tolerated. A process
whose pages read more of what the loop changes (the root: policies with
internal caches, counters that must agree) takes a snapshot on the loop
with ``call_on_loop`` and renders that; a page that cannot get one raises
``PageUnavailable`` and the server answers 503.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import http.server
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Bucket bounds in seconds: from a fast leaf call on loopback (0.25 ms) to a
# request that used a long deadline (10 s); roughly x2 apart, 16 buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032,
    0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram's numbers at one instant: immutable, safe to read from any thread."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, not cumulative; the last one is +Inf
    total: float

    def buckets(self) -> list[tuple[str, float]]:
        """Prometheus buckets: cumulative counts keyed by upper bound."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class Histogram:
    """Cumulative-on-read histogram: ``observe`` is one bisect and two adds."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def snapshot(self) -> HistogramSnapshot:
        """A copy of the counts (one list copy); take it on the thread that observes."""
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.total)

    def buckets(self) -> list[tuple[str, float]]:
        """Prometheus buckets: cumulative counts keyed by upper bound."""
        return self.snapshot().buckets()


def histogram_family(
    name: str,
    documentation: str,
    labels: Sequence[str],
    series: Iterable[tuple[Sequence[str], Histogram | HistogramSnapshot]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, hist in series:
        family.add_metric(list(values), hist.buckets(), hist.total)
    return family


class FamiliesCollector(Collector):
    """A collector whose families come from a function called at scrape time."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families()


class PageUnavailable(Exception):
    """A page cannot be rendered now (its process's loop did not answer); served as 503."""


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` on ``loop``'s thread and return its result, from any thread.

    For readers off the loop (the HTTP thread) of state the loop owns: ``fn``
    runs as one callback, between two steps of any request, so what it reads
    is consistent and nothing else runs on the loop meanwhile. Called on the
    loop's own thread (a collector registered from a coroutine) it runs
    ``fn`` at once: waiting for the loop there would wait for itself. Raises
    ``PageUnavailable`` if the loop is closed or has not run ``fn`` within
    ``timeout`` seconds; ``fn`` is then skipped if it has not started.
    """
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return fn()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return  # the caller gave up waiting
        try:
            future.set_result(fn())
        except Exception as exc:
            future.set_exception(exc)

    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError as exc:  # the loop is closed: the process is stopping
        raise PageUnavailable("the process is shutting down") from exc
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError as exc:
        future.cancel()
        raise PageUnavailable(f"the event loop did not answer within {timeout:g} s") from exc


Page = Callable[[], tuple[str, bytes]]  # () -> (content type, body); may raise PageUnavailable


class MetricsServer:
    """HTTP on its own thread: ``/metrics`` from ``registry``, plus extra ``pages`` by path."""

    def __init__(self, registry: CollectorRegistry, pages: Mapping[str, Page] | None = None) -> None:
        self.registry = registry
        self.pages = dict(pages or {})
        self._server: http.server.ThreadingHTTPServer | None = None
        self.address = ""

    def start(self, address: str) -> str:
        """Listen on ``host:port`` (port 0 picks one); return the bound address."""
        host, _, port = address.rpartition(":")
        registry, pages = self.registry, self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        content_type, body = "text/plain; version=0.0.4; charset=utf-8", generate_latest(registry)
                    elif path in pages:
                        content_type, body = pages[path]()
                    else:
                        self.send_error(404, "not found; try /metrics" + (" or /" if "/" in pages else ""))
                        return
                except PageUnavailable as exc:
                    self.send_error(503, str(exc))
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the process's own log

        self._server = http.server.ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="scatter-metrics", daemon=True).start()
        bound_port = self._server.server_address[1]
        self.address = f"{host}:{bound_port}"
        return self.address

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
