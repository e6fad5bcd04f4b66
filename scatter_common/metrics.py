"""Metrics every process exposes: cheap histograms on the hot path, and a
small HTTP server for Prometheus' ``/metrics`` and any other page.

Counters live where the work happens (plain ints on the event-loop thread);
a collector turns them into Prometheus families only when scraped, so the
request path pays for a bisect into a bucket list and nothing else. The
HTTP server runs in a daemon thread. A collector that reads only ints and
histograms (the SDKs') may read them from there (a worker of the HTTP
server, ``scatter_common.http_server``): each read is safe under the
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from scatter_common.http_server import HttpServer, Response

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
    """HTTP on its own thread: ``/metrics`` from ``registry``, plus extra ``pages`` by path.

    The server and its limits are ``scatter_common.http_server``'s.
    """

    def __init__(self, registry: CollectorRegistry, pages: Mapping[str, Page] | None = None) -> None:
        self.registry = registry
        self.pages = dict(pages or {})
        self._server: HttpServer | None = None
        self.address = ""

    def start(self, address: str) -> str:
        """Listen on ``host:port`` (port 0 picks one); return the bound address."""
        self._server = HttpServer(self._page, name="scatter-metrics")
        self.address = self._server.start(address)
        return self.address

    def _page(self, path: str) -> Response:
        try:
            if path == "/metrics":
                return Response(200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry))
            page = self.pages.get(path)
            if page is None:
                hint = "try /metrics" + (" or /" if "/" in self.pages else "")
                return Response(404, "text/plain; charset=utf-8", f"not found; {hint}\n".encode())
            content_type, body = page()
        except PageUnavailable as exc:
            return Response(503, "text/plain; charset=utf-8", f"{exc}\n".encode())
        return Response(200, content_type, body)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
