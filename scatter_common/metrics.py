"""Metrics every process exposes: cheap histograms on the hot path, and a
small HTTP server for Prometheus' ``/metrics`` and any other page.

Counters live where the work happens (plain ints on the event-loop thread);
a collector turns them into Prometheus families only when scraped, so the
request path pays for a bisect into a bucket list and nothing else. The
HTTP server runs in a daemon thread: a scrape never waits for the event
loop, and reads of Python ints under the GIL are safe (a scrape may see one
request half-counted, which Prometheus tolerates).
"""

from __future__ import annotations

import bisect
import http.server
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Bucket bounds in seconds: from a fast leaf call on loopback (0.25 ms) to a
# request that used a long deadline (10 s); roughly x2 apart, 16 buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032,
    0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


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

    def buckets(self) -> list[tuple[str, float]]:
        """Prometheus buckets: cumulative counts keyed by upper bound."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


def histogram_family(
    name: str, documentation: str, labels: Sequence[str], series: Iterable[tuple[Sequence[str], Histogram]]
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


Page = Callable[[], tuple[str, bytes]]  # () -> (content type, body)


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
                if path == "/metrics":
                    content_type, body = "text/plain; version=0.0.4; charset=utf-8", generate_latest(registry)
                elif path in pages:
                    content_type, body = pages[path]()
                else:
                    self.send_error(404, "not found; try /metrics" + (" or /" if "/" in pages else ""))
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
