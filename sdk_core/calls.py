"""One call of the user's function: admission, invocation, cancellation, counters.

Rules of this module:

- Every counter is touched on the event-loop thread only (worker threads
  report back with ``call_soon_threadsafe``), so no lock is needed.
- A call is refused at once when the process is at its concurrency limit:
  the root would rather hedge or fail over to another replica than wait in
  a queue here, so there is no queue.
- A sync handler runs on one of at most ``max_concurrency`` worker threads,
  started lazily and reused (no thread per call), and its slot is released
  when the *thread* finishes, not when the call ends. A cancelled sync
  handler keeps running until it notices ``cancelled``; counting it as free
  would let new calls queue behind it for a thread. A finished job hands
  its outcome and its slot back to the loop in one ``call_soon_threadsafe``
  (``Workers``): that hop is most of the SDK's own cost per call.
- An async handler runs in the servicer's own task; grpc.aio cancels that
  task when the client cancels or the deadline passes, so cancellation
  reaches the handler as ``CancelledError`` with no extra timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from scatter_common.metrics import Histogram
from scatter_common.otel import Tracing
from scatter_common.payload import type_url, unpack
from scatter_common.tracing import trace_id_of, traceparent_of
from sdk_core.callables import is_async_callable
from sdk_core.errors import BadResult, NotReady, Overloaded, SdkError, TooLate, to_status
from sdk_core.workers import Workers

M = TypeVar("M", bound=Message)
R = TypeVar("R")
T = TypeVar("T")

ServicerContext = grpc.aio.ServicerContext[Any, Any]


@dataclass
class CallStats:
    """Counters of one leaf or merge process since it started.

    Every call ends in exactly one of ``ok``, ``errors`` (answered with an
    error status), ``cancelled`` (by the client, or its deadline passed) or
    ``rejected`` (refused before the handler ran: over the concurrency limit,
    or not ready yet). ``in_flight`` counts handlers running now, including
    cancelled sync handlers that have not returned yet: they still hold a
    worker thread.
    """

    calls: int = 0
    ok: int = 0
    errors: int = 0
    cancelled: int = 0
    in_flight: int = 0
    rejected: int = 0


class CallScope:
    """Deadline, cancellation and metadata of one call, safe to read from any thread.

    The deadline is captured as a monotonic instant when the call starts so
    that ``time_remaining`` and ``cancelled`` never touch the grpc context
    from a worker thread.
    """

    __slots__ = ("_cancelled", "_deadline", "_metadata")

    def __init__(self, context: ServicerContext) -> None:
        remaining = context.time_remaining()
        self._deadline = None if remaining is None else time.monotonic() + remaining
        self._metadata = context.invocation_metadata()
        self._cancelled = False

    def time_remaining(self) -> float | None:
        """Seconds until the caller's deadline (never negative), or None when it set none."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    @property
    def cancelled(self) -> bool:
        """True once the caller cancelled the call or its deadline passed; a sync handler polls this."""
        return self._cancelled or (self._deadline is not None and time.monotonic() >= self._deadline)

    @property
    def invocation_metadata(self) -> dict[str, str | bytes]:
        """The call's request metadata (a key sent twice keeps its last value)."""
        return {key: value for key, value in self._metadata or ()}

    def _cancel(self) -> None:
        self._cancelled = True


class Decoder(Generic[M]):
    """Decodes an Any into one message type, with the type URL computed once."""

    __slots__ = ("_message_type", "_type_url")

    def __init__(self, message_type: type[M]) -> None:
        self._message_type = message_type
        self._type_url = type_url(message_type)

    def __call__(self, wrapped: any_pb2.Any) -> M:
        if wrapped.type_url == self._type_url:
            decoded = self._message_type()
            try:
                decoded.ParseFromString(wrapped.value)
            except DecodeError:
                pass  # fall through: unpack raises PayloadError with the uniform message
            else:
                return decoded
        # Other prefixes ("type.example.com/...") and every error case.
        return unpack(wrapped, self._message_type)


@dataclass(frozen=True, slots=True)
class Failure:
    """How one run of the handler failed: the status a call would have been aborted with."""

    code: grpc.StatusCode
    message: str


# prepare(request, context) -> (positional arguments for the handler, the call's scope)
Prepare = Callable[[R, ServicerContext], tuple[Sequence[object], CallScope]]


class HandlerRunner:
    """Runs the user's handler for each call and maps its outcome to a status.

    Call order: construct, ``open()`` on the event loop before serving,
    set ``ready`` once the start hook finished, ``close()`` after the
    server stopped.
    """

    def __init__(
        self,
        handler: Callable[..., object],
        *,
        stats: CallStats,
        log: logging.Logger,
        role: str,
    ) -> None:
        self.stats = stats
        self.ready = False
        self._handler = handler
        self._is_async = is_async_callable(handler)
        # The same function, typed for the await below; cast once, not per call.
        self._async_handler = cast(Callable[..., Awaitable[object]], handler)
        self._log = log
        self._role = role
        self._max_concurrency = 1
        self.latency = Histogram()
        self._workers: Workers | None = None
        self.tracing: Tracing | None = None  # OpenTelemetry, when the environment asks (open())

    def open(self, max_concurrency: int) -> None:
        """Start serving calls on the running loop with at most ``max_concurrency`` at once."""
        self._max_concurrency = max_concurrency
        self.tracing = Tracing.from_environment(f"scatter-{self._role}")
        if not self._is_async:
            # Threads start lazily, up to the limit, and are reused: no thread per call.
            self._workers = Workers(asyncio.get_running_loop(), max_concurrency, self._role, self._release)

    def close(self) -> None:
        """Stop taking calls. Does not wait for sync handlers still running (they saw ``cancelled``)."""
        self.ready = False
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        if self.tracing is not None:
            self.tracing.shutdown()
            self.tracing = None

    async def call(self, request: R, context: ServicerContext, prepare: Prepare[R]) -> Message:
        """Answer one call: the handler's message, or abort the call with the mapped status."""
        tracing = self.tracing
        if tracing is None:
            return await self._call(request, context, prepare)
        name = "Leaf.Execute" if self._role == "leaf" else "Merge.Merge"
        return await self._traced(request, context, self._call(request, context, prepare), name)

    async def call_many(
        self, request: R, context: ServicerContext, prepares: Sequence[Prepare[R]], span_name: str
    ) -> list[Message | Failure]:
        """Run the handler once per ``prepares`` (several shards of one call), all at once.

        Each run is admitted, counted and mapped like a call of its own, and
        its outcome is the handler's message or the ``Failure`` it maps to;
        the call itself is not aborted. Cancelling the call cancels them all.
        """
        runs = asyncio.gather(*(self._outcome(request, context, prepare) for prepare in prepares))
        if self.tracing is None:
            return await runs
        return await self._traced(request, context, runs, span_name)

    async def _traced(self, request: R, context: ServicerContext, work: Awaitable[T], name: str) -> T:
        tracing = self.tracing
        assert tracing is not None
        attributes = {
            name: getattr(request, field)
            for name, field in (
                ("scatter.shard", "shard_index"),
                ("scatter.attempt", "attempt"),
                ("scatter.hedge", "hedge"),
                ("scatter.request_id", "request_id"),
            )
            if hasattr(request, field)
        }
        span = tracing.server_span(name, traceparent_of(context.invocation_metadata()), attributes)
        try:
            result = await work
        except asyncio.CancelledError:
            span.set_attribute("scatter.cancelled", True)
            raise
        except BaseException as exc:
            tracing.error(span, f"{type(exc).__name__}: {exc}"[:200])
            raise
        finally:
            span.end()
        return result

    async def _call(self, request: R, context: ServicerContext, prepare: Prepare[R]) -> Message:
        outcome = await self._outcome(request, context, prepare)
        if isinstance(outcome, Message):
            return outcome
        await context.abort(outcome.code, outcome.message)
        raise AssertionError("context.abort returned")  # it raises; this keeps the type checker honest

    async def _outcome(self, request: R, context: ServicerContext, prepare: Prepare[R]) -> Message | Failure:
        """One run of the handler: its message, or the status it failed with (logged and counted)."""
        stats = self.stats
        stats.calls += 1
        failure: Exception
        if not self.ready:
            stats.rejected += 1
            failure = NotReady(f"{self._role} is starting or stopping; try another replica")
        elif stats.in_flight >= self._max_concurrency:
            stats.rejected += 1
            failure = Overloaded(f"{self._role} is at its concurrency limit ({self._max_concurrency} calls in flight)")
        else:
            stats.in_flight += 1
            started = time.monotonic()
            released_by_thread = False
            scope: CallScope | None = None
            try:
                args, scope = prepare(request, context)
                if self._is_async:
                    result = await self._async_handler(*args)
                else:
                    assert self._workers is not None, "open() was not called"
                    job = self._workers.submit(self._handler, args)
                    released_by_thread = True  # Workers calls _release when the thread has finished
                    result = await job
                if not isinstance(result, Message):
                    raise BadResult(
                        f"handler returned {type(result).__name__} ({result!r:.80}), expected a protobuf message"
                    )
            except asyncio.CancelledError:
                stats.cancelled += 1
                if scope is not None:
                    scope._cancel()
                raise
            except Exception as exc:
                stats.errors += 1
                self.latency.observe(time.monotonic() - started)
                failure = exc
            else:
                self.latency.observe(time.monotonic() - started)
                if scope is None or not scope.cancelled:
                    stats.ok += 1
                    return result
                # Done after the deadline (a sync handler that saw ``cancelled``): whether grpc would
                # still deliver the answer is a race with its deadline timer; it never does.
                stats.cancelled += 1
                failure = TooLate(f"the {self._role} handler returned after the call's deadline")
            finally:
                if not released_by_thread:
                    stats.in_flight -= 1
        code, message, unexpected = to_status(failure)
        if unexpected:
            request_id = trace_id_of(context.invocation_metadata())
            self._log.warning(
                "%s handler failed: %s", self._role, message, exc_info=failure, extra={"request_id": request_id}
            )
        else:
            level = failure.log_level if isinstance(failure, SdkError) else logging.DEBUG
            request_id = trace_id_of(context.invocation_metadata())
            self._log.log(
                level, "%s call refused (%s): %s", self._role, code.name, message, extra={"request_id": request_id}
            )
        return Failure(code, message)

    def _release(self) -> None:
        # On the loop thread (Workers.on_done): a sync handler's thread finished its job.
        self.stats.in_flight -= 1
