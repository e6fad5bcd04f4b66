"""OpenTelemetry tracing, when the ``otel`` extra is installed and the environment asks for it.

What lives here: ``Tracing``, a thin face over an OpenTelemetry tracer that
the root and the SDKs use to open spans, continue an incoming W3C
``traceparent`` and write the ``traceparent`` of an outgoing call. What does
not: deciding what a span records (the root's request and attempts in
``root.service`` / ``root.scatter``, the SDKs' calls in ``sdk_core.calls``).

On or off, by the standard variables only (no config key to learn):

- off unless ``OTEL_TRACES_EXPORTER`` names ``otlp`` or ``console``, or an
  OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``,
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` wins;
- the exporter, its endpoint, headers and timeouts, the batch processor's
  delays (``OTEL_BSP_*``), the sampler (``OTEL_TRACES_SAMPLER``, e.g.
  ``parentbased_traceidratio`` with ``OTEL_TRACES_SAMPLER_ARG=0.1``) and
  ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` are the SDK's own;
- asked for but not installed: one warning saying what to install, and off.

When off, ``Tracing.from_environment`` returns None and callers skip every
tracing line with one ``is None`` test: nothing is imported, nothing runs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["Span", "Tracing", "enabled_by_environment"]

log = logging.getLogger("scatter")

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
Span = Any  # opentelemetry.trace.Span; typed loosely so nothing here imports it when off


def enabled_by_environment(env: Mapping[str, str] = os.environ) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    if exporters & {"otlp", "console"}:
        return True
    if "none" in exporters:
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class Tracing:
    """Spans for one process. Build with ``from_environment``; ``shutdown()`` flushes at exit."""

    def __init__(self, tracer: Any, provider: Any) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = tracer
        self._provider = provider
        self.SERVER = trace.SpanKind.SERVER
        self.CLIENT = trace.SpanKind.CLIENT
        self.INTERNAL = trace.SpanKind.INTERNAL

    @classmethod
    def from_environment(cls, service_name: str) -> Tracing | None:
        if not enabled_by_environment():
            return None
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
        except ImportError:
            log.warning(
                "OpenTelemetry tracing was asked for (OTEL_* variables) but is not installed:"
                ' pip install "scatter-gather[otel]"; tracing is off'
            )
            return None
        exporter: SpanExporter
        if "console" in os.environ.get("OTEL_TRACES_EXPORTER", "").lower():
            exporter = ConsoleSpanExporter()
        else:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError:
                log.warning('the OTLP exporter is not installed: pip install "scatter-gather[otel]"; tracing is off')
                return None
            exporter = OTLPSpanExporter()
        name = os.environ.get("OTEL_SERVICE_NAME") or service_name
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider.get_tracer("scatter-gather"), provider)

    # -- spans ---------------------------------------------------------------

    def _remote_parent(self, header: str | None) -> Any:
        """The context of an incoming ``traceparent``, or None (a new trace)."""
        trace = self._trace
        match = _TRACEPARENT.match((header or "").strip())
        if not match or match[1] == "ff" or match[2] == "0" * 32 or match[3] == "0" * 16:
            return None
        parent = trace.SpanContext(
            trace_id=int(match[2], 16),
            span_id=int(match[3], 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(match[4], 16)),
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(parent))

    def server_span(self, name: str, traceparent: str | None, attributes: Mapping[str, Any] | None = None) -> Span:
        """A span for a call this process serves, the child of the caller's ``traceparent`` if any."""
        return self._tracer.start_span(
            name, context=self._remote_parent(traceparent), kind=self.SERVER, attributes=attributes
        )

    def child_span(
        self, name: str, parent: Span, kind: Any = None, attributes: Mapping[str, Any] | None = None
    ) -> Span:
        """A span for a call this process makes, the child of ``parent``."""
        return self._tracer.start_span(
            name,
            context=self._trace.set_span_in_context(parent),
            kind=self.CLIENT if kind is None else kind,
            attributes=attributes,
        )

    @staticmethod
    def trace_id(span: Span) -> str:
        return f"{span.get_span_context().trace_id:032x}"

    @staticmethod
    def traceparent(span: Span) -> str:
        """The ``traceparent`` header for a call made under ``span``."""
        context = span.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    def error(self, span: Span, description: str) -> None:
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))

    def shutdown(self, timeout: float = 3.0) -> None:
        """Export what is buffered and stop (at process exit), waiting at most ``timeout`` seconds.

        The exporter retries an unreachable collector for up to a minute; exiting
        must not wait for that, so the flush runs in a daemon thread.
        """
        import threading

        flusher = threading.Thread(target=self._provider.shutdown, name="otel-shutdown", daemon=True)
        flusher.start()
        flusher.join(timeout)
