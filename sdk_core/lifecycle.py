"""The life of an SDK process around ``serve_until_signal``: ready only after
the start hook, counters logged at exit, and the ``main`` wrapper that turns
failures into an exit status.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Coroutine, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from scatter_common import logs, loop
from scatter_common.addresses import ListenError
from scatter_common.metrics import FamiliesCollector, MetricsServer, histogram_family
from scatter_common.serving import Hook, ServiceHost, serve_until_signal
from sdk_core.calls import HandlerRunner


async def serve_handler(
    host: ServiceHost,
    runner: HandlerRunner,
    *,
    max_concurrency: int,
    role: str,
    on_start: Hook | None,
    on_stop: Hook | None,
    log: logging.Logger,
    metrics_address: str = "",
) -> None:
    """Serve until SIGTERM/SIGINT (or until the task running this is cancelled)."""
    runner.open(max_concurrency)
    metrics: MetricsServer | None = None
    if metrics_address:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(FamiliesCollector(lambda: call_families(role, runner)))
        metrics = MetricsServer(registry)
        try:
            bound = metrics.start(metrics_address)
        except ListenError as exc:
            raise ListenError(f"--metrics-address (SCATTER_METRICS_ADDRESS): {exc}") from None
        print(f"scatter: {role} metrics on http://{bound}/metrics", file=sys.stderr, flush=True)

    async def start() -> None:
        if on_start is not None:
            await on_start()
        # Calls that arrive while the hook runs get UNAVAILABLE: the handler
        # may depend on what the hook loads.
        runner.ready = True

    try:
        await serve_until_signal(host, role=role, on_start=start, on_stop=on_stop)
    except ListenError as exc:
        if host.address:
            raise
        raise ListenError(f"--host/--port/--address (SCATTER_HOST, SCATTER_PORT, SCATTER_ADDRESS): {exc}") from None
    finally:
        if metrics is not None:
            metrics.stop()
        runner.close()
        log.info("%s stopped: %s", role, runner.stats)


def call_families(role: str, runner: HandlerRunner) -> Iterable[Metric]:
    """Prometheus families of an SDK process, read from its counters at scrape time."""
    stats = runner.stats
    calls = CounterMetricFamily(
        f"scatter_{role}_calls", f"Calls to this {role}, by how they ended.", labels=["outcome"]
    )
    for outcome in ("ok", "errors", "cancelled", "rejected"):
        calls.add_metric([outcome], getattr(stats, outcome))
    yield calls
    yield GaugeMetricFamily(f"scatter_{role}_in_flight", "Handlers running now.", value=stats.in_flight)
    yield histogram_family(
        f"scatter_{role}_call_duration_seconds",
        "Time from a call's arrival to its answer (ok or error).",
        [],
        [((), runner.latency)],
    )


def run_main(main: Coroutine[Any, Any, None], *, role: str, log: logging.Logger) -> int:
    """Run a process's main coroutine; return its exit status."""
    # A no-op when the user's program configured logging itself.
    try:
        logs.configure("INFO")
    except logs.LogConfigError as exc:
        print(f"scatter: {role}: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        loop.run(main)
    except ListenError as exc:  # an address from a flag or the environment that cannot be bound
        print(f"scatter: {role}: {exc}", file=sys.stderr, flush=True)
        return 2
    except OSError as exc:
        log.error("%s cannot serve: %s", role, exc)
        return 1
    except Exception:
        log.exception("%s failed", role)
        return 1
    return 0
