"""Root.Query: admission, deadline budget, scatter, coverage, merge, answer.

This is the wiring of one request; the decisions it applies live in
``root.policies.deadlines``, ``root.policies.coverage`` and ``root.policies``, the shard
attempts in ``root.scatter`` and the byte splicing in ``root.wire``. The
handler is registered with raw-bytes serialization for its response so the
merge's payload reaches the client without being decoded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Never, Protocol

import grpc

from protos.scatter_gather.v1 import leaf_pb2, root_pb2, shard_pb2
from root import wire
from root.config import RootConfig, payload_limit
from root.discovery import Discovery
from root.errors import (
    DeadlineTooShort,
    InvalidRequest,
    RootError,
    TooLarge,
    WrongShard,
    merge_failure,
    shard_error,
)
from root.membership import Membership
from root.memory import LARGE_REQUEST_BYTES, Allocator
from root.policies import (
    AdmissionConfig,
    AdmissionLimit,
    AnswerTimes,
    build_coverage,
    check_leaf_verdicts,
    require_coverage,
)
from root.probing import Prober
from root.scatter import Scatter, Shard
from root.slowlog import AttemptEvent, SlowLog, SlowRequest
from root.transport import MergeChannel, Replica, channel_options
from scatter_common.bodies import Undecodable, deserializer
from scatter_common.metrics import Histogram
from scatter_common.otel import Span, Tracing
from scatter_common.payload import MAX_TYPE_URL_LENGTH
from scatter_common.tracing import HEADER, TraceContext, traceparent_of

log = logging.getLogger("scatter.root")

# Coverage fractions worth telling apart: full, nearly full, half or worse.
COVERAGE_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
# Refusals at admission are summed into at most one log line per this many seconds.
SHED_LOG_INTERVAL = 1.0
# Failed shards named in one log line; a request that loses a thousand logs the first ones.
LOGGED_SHARD_FAILURES = 10
_ROOT_WORDED = (shard_pb2.SHARD_STATUS_TIMEOUT, shard_pb2.SHARD_STATUS_SKIPPED)
# A detail withheld from a client is logged at WARNING (the root's default level) at most
# this often, at INFO otherwise: the client was told the log has it, and a shard that is
# down for every request must not write a warning per request.
WITHHELD_WARNING_INTERVAL = 1.0


class CallContext(Protocol):
    """What the query path needs of a call: grpc's ServicerContext, or another door's stand-in."""

    def invocation_metadata(self) -> object: ...  # (key, value) pairs: the trace context is read from them

    def time_remaining(self) -> float | None: ...  # seconds to the client's deadline; None: it set none

    async def abort(self, code: grpc.StatusCode, details: str = "") -> Never: ...  # ends the call: raises


class RootService:
    """The state of a root process and the handling of one Query."""

    def __init__(self, config: RootConfig, shards: Sequence[Shard]) -> None:
        self.config = config
        self.shards = list(shards)
        self.merge_address = config.merge_address
        self.merge = MergeChannel(config.merge_address, channel_options(config.max_message_bytes), config.upstream_tls)
        self.admission = AdmissionLimit(AdmissionConfig(config.max_in_flight, config.max_in_flight_bytes))
        self.allocator = Allocator()  # configured by serve(): a process-wide setting
        self._next_shed_log = 0.0
        self._shed_logged = 0
        self._parse_query = deserializer(root_pb2.QueryRequest)
        self._parse_execute = deserializer(leaf_pb2.ExecuteRequest)
        self.requests_by_code: dict[str, int] = {}
        self.latency = Histogram()  # arrival to answer, successful requests
        self.coverage = Histogram(COVERAGE_BUCKETS)  # answered / total of successful requests
        self.started = time.time()
        # (first leaf shard, leaf shards) per shard, when some shard is a subtree.
        self.spans = config.leaf_spans() if any(s.leaves > 1 for s in config.shards) else None
        self.answer_times = AnswerTimes()  # the measured part of the deadline reserve
        self.slow = SlowLog()  # the slowest recent requests, for the status page
        self.tracing = Tracing.from_environment("scatter-root")  # None unless OTEL_* asks for it
        self.prober = Prober(self.shards, config.replicas.probe_interval)  # started by start(), on the loop
        options = channel_options(config.max_message_bytes)
        self.membership = Membership(
            lambda address: Replica(address, options, config.upstream_tls), self.prober, config.deadlines.maximum
        )
        self.discovery = Discovery(self.shards, config.shards, config.discovery, self.membership)
        # The largest payload field the root's own channels can carry (>= 1: the config checked it).
        self.max_payload_bytes = max(0, payload_limit(config))
        # The leaf shards this root serves when it is a shard of a higher root.
        self.first_shard = config.shard_offset
        self.leaf_shards = sum(shard.leaves for shard in config.shards)
        self._warned_at = -WITHHELD_WARNING_INTERVAL  # monotonic time of the last withheld-detail warning

    async def start(self) -> None:
        """Start the background work on the running loop: probes, health watches, discovery.

        Each discovered shard is looked up once first, so the first requests find replicas.
        """
        self.prober.start()
        await asyncio.gather(
            *(self.discovery.refresh(i) for i, shard in enumerate(self.config.shards) if shard.dns or shard.file)
        )
        self.discovery.start()

    async def close(self) -> None:
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)
        await self.discovery.close()
        await self.membership.close()
        await self.prober.close()
        await self.merge.close()
        for shard in self.shards:
            for replica in shard.replicas:
                await replica.close()

    async def query(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        """Root.Query: the request body in, a serialized QueryResponse out (or a status)."""
        return await self._handle(request, context, self._query_terms, self._query_response, "Root.Query")

    async def execute(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        """Leaf.Execute: this root as one shard of a higher root (a two-level tree).

        The whole subtree answers as one leaf: the payload is this root's
        merged answer (so its merge must answer in the parent's partial type:
        a combiner), and its coverage and hedge count travel up in the
        ExecuteResponse. The parent's deadline, already less its own merge
        reserve, is this root's deadline, so each level keeps its reserve.
        """
        return await self._handle(request, context, self._execute_terms, self._execute_response, "Leaf.Execute")

    def _query_terms(self, raw: bytes) -> Terms:
        """(payload field, type URL, min_coverage, explain) of a Query body.

        The payload field is read from the body's framing (``wire.query_request``:
        no parse, no copy); a body it does not read is parsed, and one that
        does not parse is INVALID_ARGUMENT.
        """
        min_coverage = self.config.min_coverage
        parts = wire.query_request(raw)
        if parts is not None:
            payload_field, type_url, options_bytes = parts
            if not options_bytes:
                return payload_field, type_url, min_coverage, False
            try:
                options = root_pb2.QueryOptions.FromString(options_bytes)
            except Exception:  # the parse below has the last word, and the message
                options = None
            if options is not None:
                if options.HasField("min_coverage"):
                    min_coverage = options.min_coverage
                return payload_field, type_url, min_coverage, options.explain
        request = self._parse_query(raw)
        if isinstance(request, Undecodable):
            raise InvalidRequest(request.message)
        if request.HasField("options") and request.options.HasField("min_coverage"):
            min_coverage = request.options.min_coverage
        return wire.payload_field(request.payload), request.payload.type_url, min_coverage, request.options.explain

    def _execute_terms(self, raw: bytes) -> Terms:
        """(payload field, type URL, min_coverage) of an Execute, once it asks for the shards this root serves.

        The rule a leaf applies (leaf.proto): shard_index is the first leaf
        shard beneath this root, and a non-zero shard_count is the whole
        dataset's; any other request comes from a mis-wired tree, and
        answering it would return these shards' data as another's.
        """
        request = self._parse_execute(raw)
        if isinstance(request, Undecodable):
            raise InvalidRequest(request.message)
        count = self.config.shard_count
        if request.shard_index != self.first_shard or (request.shard_count and request.shard_count != count):
            last = self.first_shard + self.leaf_shards - 1
            asked = f"shard {request.shard_index}" + (f" of {request.shard_count}" if request.shard_count else "")
            raise WrongShard(
                f"this root serves shards {self.first_shard}-{last} of {count} (its first shard is "
                f"{self.first_shard}); the request is for {asked}: check the parent root's shards and "
                "this root's shard_offset and total_shards"
            )
        return wire.payload_field(request.payload), request.payload.type_url, self.config.min_coverage, False

    def _shed(self, size: int, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        """Refuse a request at admission: RESOURCE_EXHAUSTED, before its body is read.

        The cheapest answer grpc allows: the status is set and the handler
        returns (grpc sends no message with a non-OK status), with no
        exception and no trace context (see ``refusal``).
        """
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(self.refusal(size))
        return b""

    def refusal(self, size: int) -> str:
        """Count a request of ``size`` bytes that admission refused; the message its client reads.

        No log line per refusal (a line per shed request is a flood exactly
        when the root is overloaded): refusals are counted
        (``scatter_root_shed``) and summed in one log line a second. Every
        door that refuses at admission calls it (gRPC, ``root.http_ingress``).
        """
        admission = self.admission
        if admission.over_bytes:
            message = (
                f"root is at its limit of {admission.max_in_flight_bytes} bytes of requests in flight "
                f"(max_in_flight_bytes; {admission.in_flight_bytes} in flight, this request is {size}): "
                "retry with backoff"
            )
        else:
            message = f"root is at its limit of {admission.max_in_flight} requests in flight; retry with backoff"
        codes = self.requests_by_code
        codes["RESOURCE_EXHAUSTED"] = codes.get("RESOURCE_EXHAUSTED", 0) + 1
        now = time.monotonic()
        if now >= self._next_shed_log:
            self._next_shed_log = now + SHED_LOG_INTERVAL
            log.info("shed %d requests since the last such line: %s", admission.shed - self._shed_logged, message)
            self._shed_logged = admission.shed
        return message

    async def _handle(
        self,
        raw: bytes,
        context: grpc.aio.ServicerContext[bytes, bytes],
        terms: Callable[[bytes], Terms],
        answer: Callable[[Gathered], bytes],
        method: str,
    ) -> bytes:
        size = len(raw)
        if not self.admission.try_acquire(size):
            return self._shed(size, context)
        try:
            return await self._serve(raw, context, terms, answer, method)
        finally:
            self.admission.release(size)

    async def query_admitted(self, raw: bytes, context: CallContext) -> bytes:
        """Root.Query for a door that holds the request's admission itself (``root.http_ingress``).

        ``raw`` is a serialized QueryRequest; the answer is a serialized
        QueryResponse, and an error ends in ``context.abort``.
        """
        return await self._serve(raw, context, self._query_terms, self._query_response, "Root.Query")

    async def _serve(
        self,
        raw: bytes,
        context: CallContext,
        terms: Callable[[bytes], Terms],
        answer: Callable[[Gathered], bytes],
        method: str,
    ) -> bytes:
        """One admitted request (its caller releases the admission)."""
        large = len(raw) >= LARGE_REQUEST_BYTES
        if large:
            self.allocator.large_request_started()
        arrived = time.monotonic()
        header = traceparent_of(context.invocation_metadata())
        trace = TraceContext.from_header(header)
        tracing = self.tracing
        scattered: list[Scatter] = []  # the request's fan-out, once it has one: for the slow log
        span = None
        if tracing is not None:
            span = tracing.server_span(method, header)
            trace = TraceContext(tracing.trace_id(span), trace.flags)  # one id: logs, request_id, the trace
        code = "OK"
        try:
            try:
                payload_field, type_url, min_coverage, explain = terms(raw)
                gathered = await self._gather(
                    payload_field,
                    type_url,
                    min_coverage,
                    context.time_remaining(),
                    arrived,
                    trace,
                    span,
                    scattered,
                    explain,
                )
                response = answer(gathered)
            finally:
                if large:
                    self.allocator.large_request_done()
            now = time.monotonic()
            self.answer_times.record(now - gathered.shards_due, now)
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                # Too late: the client has given up, and grpc would drop the answer. Say so,
                # so the metrics count it as the client saw it.
                late = (now - gathered.shards_due) * 1000
                raise DeadlineTooShort(
                    f"the answer was ready {-remaining * 1000:.1f} ms after the deadline"
                    f" ({late:.1f} ms after the shards were due)"
                )
            return response
        except RootError as exc:
            code = exc.code
            level = self._detail_level() if exc.detail != exc.message else logging.INFO
            log.log(level, "request failed: %s %s", exc.code, exc.detail, extra={"request_id": trace.trace_id})
            await context.abort(grpc.StatusCode[exc.code], self._client_message(exc, trace))
            raise  # unreachable: abort raises
        except Exception:
            # A bug of the root's: the traceback is the log's; the client gets a code and an id.
            code = "INTERNAL"
            log.exception("request failed unexpectedly", extra={"request_id": trace.trace_id})
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"the root failed unexpectedly; its log has the detail (request {trace.trace_id})",
            )
            raise  # unreachable: abort raises
        finally:
            self.requests_by_code[code] = self.requests_by_code.get(code, 0) + 1
            if scattered:
                self._offer_slow(scattered[0], trace.trace_id, arrived, code)
            if span is not None:
                assert tracing is not None
                span.set_attribute("rpc.grpc.status_code", code)
                if code != "OK":
                    tracing.error(span, code)
                span.end()

    def _detail_level(self) -> int:
        """WARNING for a withheld detail, at most every WITHHELD_WARNING_INTERVAL; else INFO."""
        now = time.monotonic()
        if now - self._warned_at < WITHHELD_WARNING_INTERVAL:
            return logging.INFO
        self._warned_at = now
        return logging.WARNING

    def _client_message(self, exc: RootError, trace: TraceContext) -> str:
        """What the client reads: the message, or with ``detailed_errors`` the log's detail.

        When something was withheld the message names the request, so an
        operator finds the log line that has it."""
        if exc.detail == exc.message:
            return exc.message
        if self.config.detailed_errors:
            return exc.detail
        return f"{exc.message} (request {trace.trace_id})"

    def _withhold_details(self, reports: list[shard_pb2.ShardReport], request_id: str) -> None:
        """Log the failed shards' reasons as the replicas gave them; unless ``detailed_errors``,
        leave the client and the merge the shard, the code and what to do (``shard_error``)."""
        # A shard that timed out or was cut off has the root's own words, nothing to withhold.
        failed = [r for r in reports if r.error and r.status not in _ROOT_WORDED]
        if not failed:
            return
        named = "; ".join(
            f"shard {r.shard_index} {shard_pb2.ShardStatus.Name(r.status).removeprefix('SHARD_STATUS_')}"
            f" from {r.replica or 'no replica'}: {r.error}"
            for r in failed[:LOGGED_SHARD_FAILURES]
        )
        more = len(failed) - LOGGED_SHARD_FAILURES
        log.log(
            self._detail_level(),
            "shards failed: %s%s",
            named,
            f"; and {more} more" if more > 0 else "",
            extra={"request_id": request_id},
        )
        if not self.config.detailed_errors:
            for report in failed:
                report.error = shard_error(report.status, report.error)

    async def _gather(
        self,
        payload_field: wire.Payload,
        type_url: str,
        min_coverage: float,
        client_remaining: float | None,
        arrived: float,
        trace: TraceContext,
        span: Span | None = None,
        scattered: list[Scatter] | None = None,
        explain: bool = False,
    ) -> Gathered:
        """Budget, scatter, coverage and merge of one request (``span``: its trace span, if tracing)."""
        request_id = trace.trace_id
        if not type_url:
            raise InvalidRequest("the request payload is empty: pack your request message into it")
        if len(type_url) > MAX_TYPE_URL_LENGTH:
            raise InvalidRequest(
                f"the payload's type URL is {len(type_url)} characters, over the limit of "
                f"{MAX_TYPE_URL_LENGTH}: it must name a message type (type.googleapis.com/package.Message)"
            )
        if not 0.0 <= min_coverage <= 1.0:
            raise InvalidRequest(f"options.min_coverage must be in [0, 1], got {min_coverage:g}")
        budget = self.config.deadlines.budget(client_remaining, self.answer_times.reserve(arrived))
        start = arrived  # on the monotonic clock, like everything in the scatter
        if len(payload_field) > self.max_payload_bytes:
            raise TooLarge(
                f"the request payload is {len(payload_field)} bytes; this root forwards at most "
                f"{self.max_payload_bytes} (max_message_bytes = {self.config.max_message_bytes}, less "
                f"{self.config.max_message_bytes - self.max_payload_bytes} for the framing of the leaf and "
                "merge requests): send a smaller request, or raise max_message_bytes on the root, "
                "its leaves and its merge"
            )

        scatter = Scatter(
            self.shards,
            payload_field,
            request_id,
            start,
            start + budget.shards,
            min_coverage,
            self.config.coverage_wait,
            trace,
            self.tracing if span is not None else None,
            span,
            self.config.batch_shards,
        )
        if scattered is not None:
            scattered.append(scatter)
        outcomes = await scatter.run()
        # When the answer's clock starts: the shards' deadline, or their last answer if sooner.
        shards_due = min(time.monotonic(), start + budget.shards)
        reports = [outcome.report for outcome in outcomes]
        if explain:
            _explain(reports, scatter.attempts())
        self._withhold_details(reports, request_id)
        check_leaf_verdicts({o.report.shard_index: o.invalid for o in outcomes if o.invalid is not None})
        if self.spans is None:
            coverage = build_coverage(reports)
        else:
            coverage = build_coverage(reports, [o.subtree for o in outcomes], self.spans)
        if span is not None:
            span.set_attribute("scatter.coverage.answered", coverage.answered)
            span.set_attribute("scatter.coverage.total", coverage.total)
        require_coverage(coverage, min_coverage)

        coverage_bytes = coverage.SerializeToString()
        report_bytes = [report.SerializeToString() for report in reports]  # once, for the merge and the answer
        merge_parts = wire.merge_request_parts(
            payload_field,
            zip(report_bytes, (outcome.payload for outcome in outcomes), strict=True),
            coverage_bytes,
            request_id,
        )
        merge_size = sum(map(len, merge_parts))
        if merge_size > self.config.max_message_bytes:
            answers = sum(len(outcome.payload) for outcome in outcomes)
            raise TooLarge(
                f"the shards answered {answers} bytes in all, and with the request that makes a "
                f"{merge_size}-byte merge request, over max_message_bytes = "
                f"{self.config.max_message_bytes}: ask the shards for less, or raise max_message_bytes "
                "on the root and its merge"
            )
        remaining = start + budget.total - time.monotonic()
        if remaining <= 0:
            raise DeadlineTooShort("deadline passed while waiting for the shards; no time left for the merge")
        merge_span = None
        if span is not None:
            assert self.tracing is not None
            merge_span = self.tracing.child_span("Merge.Merge", span)
            merge_header = self.tracing.traceparent(merge_span)
        else:
            merge_header = trace.child_header()
        try:
            # Joined when it is sent, and dropped once written (root.transport.send).
            merged = await self.merge.call(
                partial(b"".join, merge_parts), merge_size, remaining, ((HEADER, merge_header),)
            )
        except grpc.aio.AioRpcError as exc:
            if merge_span is not None:
                assert self.tracing is not None
                self.tracing.error(merge_span, exc.code().name)
            raise merge_failure(exc.code().name, self.merge_address, exc.details() or "") from exc
        finally:
            if merge_span is not None:
                merge_span.end()
        elapsed = time.monotonic() - start
        self.latency.observe(elapsed)
        self.coverage.observe(coverage.answered / coverage.total if coverage.total else 1.0)
        return Gathered(
            wire.merge_payload_field(merged),
            coverage,
            coverage_bytes,
            reports,
            report_bytes,
            elapsed,
            request_id,
            shards_due,
        )

    def _offer_slow(self, scatter: Scatter, request_id: str, arrived: float, code: str) -> None:
        now = time.monotonic()
        elapsed = now - arrived

        def record() -> SlowRequest:
            answered = sum(
                1 for o in scatter.outcomes if o is not None and o.report.status == shard_pb2.SHARD_STATUS_OK
            )
            return SlowRequest(
                request_id=request_id,
                at=time.time() - elapsed,
                elapsed_ms=elapsed * 1000,
                code=code,
                answered=answered,
                total=len(scatter.shards),
                attempts=scatter.attempts(),
            )

        self.slow.offer(elapsed, now, record)

    @staticmethod
    def _query_response(result: Gathered) -> bytes:
        return wire.query_response(
            result.payload_field, result.coverage_bytes, result.report_bytes, result.elapsed, result.request_id
        )

    @staticmethod
    def _execute_response(result: Gathered) -> bytes:
        hedges = sum(report.hedges for report in result.reports)
        return wire.execute_response(result.payload_field, result.coverage, hedges)


@dataclass(slots=True)
class Gathered:
    """One request's merged answer and the evidence of how it was obtained."""

    payload_field: bytes  # field 1 (the merged Any), the opening of a QueryResponse or ExecuteResponse
    coverage: shard_pb2.Coverage
    coverage_bytes: bytes
    reports: list[shard_pb2.ShardReport]
    report_bytes: list[bytes]
    elapsed: float
    request_id: str
    shards_due: float  # monotonic: the shard deadline, or the last shard's answer if that came first


# (payload field, payload type URL, min_coverage, explain) of one request: what the fan-out needs of it.
Terms = tuple[wire.Payload, str, float, bool]


_KINDS = {
    "first": shard_pb2.ATTEMPT_KIND_FIRST,
    "hedge": shard_pb2.ATTEMPT_KIND_HEDGE,
    "failover": shard_pb2.ATTEMPT_KIND_FAILOVER,
}


def _explain(reports: list[shard_pb2.ShardReport], attempts: Sequence[AttemptEvent]) -> None:
    """Every attempt into its shard's report (QueryOptions.explain), in the order they started."""
    by_shard = {report.shard_index: report for report in reports}
    for event in sorted(attempts, key=lambda e: e.start_ms):
        added = by_shard[event.shard].attempt_reports.add(
            attempt=event.attempt, replica=event.replica, kind=_KINDS[event.kind], outcome=event.outcome
        )
        added.started.FromNanoseconds(round(event.start_ms * 1e6))
        if event.end_ms == event.end_ms:
            added.ended.FromNanoseconds(round(event.end_ms * 1e6))
