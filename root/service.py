"""Root.Query: admission, deadline budget, scatter, coverage, merge, answer.

This is the wiring of one request; the decisions it applies live in
``root.policies.deadlines``, ``root.policies.coverage`` and ``root.policies``, the shard
attempts in ``root.scatter`` and the byte splicing in ``root.wire``. The
handler is registered with raw-bytes serialization for its response so the
merge's payload reaches the client without being decoded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2

from protos.scatter_gather.v1 import leaf_pb2, root_pb2, shard_pb2
from root import wire
from root.config import RootConfig
from root.errors import (
    DeadlineTooShort,
    InvalidRequest,
    Overloaded,
    RootError,
    TooLarge,
    WrongShard,
    merge_failure,
    shard_error,
)
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
from root.transport import MergeChannel, channel_options
from scatter_common.bodies import Undecodable
from scatter_common.metrics import Histogram
from scatter_common.payload import MAX_TYPE_URL_LENGTH
from scatter_common.tracing import HEADER, TraceContext, traceparent_of

log = logging.getLogger("scatter.root")

# Coverage fractions worth telling apart: full, nearly full, half or worse.
COVERAGE_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
# Failed shards named in one log line; a request that loses a thousand logs the first ones.
LOGGED_SHARD_FAILURES = 10
_ROOT_WORDED = (shard_pb2.SHARD_STATUS_TIMEOUT, shard_pb2.SHARD_STATUS_SKIPPED)
# A detail withheld from a client is logged at WARNING (the root's default level) at most
# this often, at INFO otherwise: the client was told the log has it, and a shard that is
# down for every request must not write a warning per request.
WITHHELD_WARNING_INTERVAL = 1.0


class RootService:
    """The state of a root process and the handling of one Query."""

    def __init__(self, config: RootConfig, shards: Sequence[Shard]) -> None:
        self.config = config
        self.shards = list(shards)
        self.merge_address = config.merge_address
        self.merge = MergeChannel(config.merge_address, channel_options(config.max_message_bytes), config.upstream_tls)
        self.admission = AdmissionLimit(AdmissionConfig(config.max_in_flight))
        self.requests_by_code: dict[str, int] = {}
        self.latency = Histogram()  # arrival to answer, successful requests
        self.coverage = Histogram(COVERAGE_BUCKETS)  # answered / total of successful requests
        self.started = time.time()
        # (first leaf shard, leaf shards) per shard, when some shard is a subtree.
        self.spans = config.leaf_spans() if any(s.leaves > 1 for s in config.shards) else None
        self.answer_times = AnswerTimes()  # the measured part of the deadline reserve
        self.prober = Prober(self.shards, config.replicas.probe_interval)  # started by serve(), on the loop
        # The largest payload field the root's own channels can carry (root.wire, "sizes").
        framing = max(
            wire.EXECUTE_FRAMING_BYTES,
            wire.merge_framing_bytes(
                [(shard.index, max((r.address for r in shard.replicas), key=len, default="")) for shard in self.shards],
                (i for shard in self.shards for i in range(shard.index, shard.index + shard.leaves)),
                config.shard_count,
            ),
        )
        self.max_payload_bytes = max(0, config.max_message_bytes - framing)
        # The leaf shards this root serves when it is a shard of a higher root.
        self.first_shard = config.shard_offset
        self.leaf_shards = sum(shard.leaves for shard in config.shards)
        self._warned_at = -WITHHELD_WARNING_INTERVAL  # monotonic time of the last withheld-detail warning

    async def close(self) -> None:
        await self.prober.close()
        await self.merge.close()
        for shard in self.shards:
            for replica in shard.replicas:
                await replica.close()

    async def query(
        self,
        request: root_pb2.QueryRequest | Undecodable,
        context: grpc.aio.ServicerContext[root_pb2.QueryRequest, bytes],
    ) -> bytes:
        """Root.Query: returns a serialized QueryResponse or aborts with a status."""
        return await self._handle(request, context, self._query_terms, self._query_response)

    async def execute(
        self,
        request: leaf_pb2.ExecuteRequest | Undecodable,
        context: grpc.aio.ServicerContext[leaf_pb2.ExecuteRequest, bytes],
    ) -> bytes:
        """Leaf.Execute: this root as one shard of a higher root (a two-level tree).

        The whole subtree answers as one leaf: the payload is this root's
        merged answer (so its merge must answer in the parent's partial type:
        a combiner), and its coverage and hedge count travel up in the
        ExecuteResponse. The parent's deadline, already less its own merge
        reserve, is this root's deadline, so each level keeps its reserve.
        """
        return await self._handle(request, context, self._execute_terms, self._execute_response)

    def _query_terms(self, request: root_pb2.QueryRequest) -> tuple[any_pb2.Any, float]:
        """(payload, min_coverage) of a Query."""
        min_coverage = self.config.min_coverage
        if request.HasField("options") and request.options.HasField("min_coverage"):
            min_coverage = request.options.min_coverage
        return request.payload, min_coverage

    def _execute_terms(self, request: leaf_pb2.ExecuteRequest) -> tuple[any_pb2.Any, float]:
        """(payload, min_coverage) of an Execute, once it asks for the shards this root serves.

        The rule a leaf applies (leaf.proto): shard_index is the first leaf
        shard beneath this root, and a non-zero shard_count is the whole
        dataset's; any other request comes from a mis-wired tree, and
        answering it would return these shards' data as another's.
        """
        count = self.config.shard_count
        if request.shard_index != self.first_shard or (request.shard_count and request.shard_count != count):
            last = self.first_shard + self.leaf_shards - 1
            asked = f"shard {request.shard_index}" + (f" of {request.shard_count}" if request.shard_count else "")
            raise WrongShard(
                f"this root serves shards {self.first_shard}-{last} of {count} (its first shard is "
                f"{self.first_shard}); the request is for {asked}: check the parent root's shards and "
                "this root's shard_offset and total_shards"
            )
        return request.payload, self.config.min_coverage

    async def _handle(
        self,
        request: Any,
        context: grpc.aio.ServicerContext[Any, bytes],
        terms: Callable[[Any], tuple[any_pb2.Any, float]],
        answer: Callable[[Gathered], bytes],
    ) -> bytes:
        arrived = time.monotonic()
        trace = TraceContext.from_header(traceparent_of(context.invocation_metadata()))
        code = "OK"
        try:
            if isinstance(request, Undecodable):
                raise InvalidRequest(request.message)
            payload, min_coverage = terms(request)
            if not self.admission.try_acquire():
                limit = self.config.max_in_flight
                raise Overloaded(f"root is at its limit of {limit} requests in flight; retry with backoff")
            try:
                gathered = await self._gather(payload, min_coverage, context.time_remaining(), arrived, trace)
                response = answer(gathered)
            finally:
                self.admission.release()
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
        payload: any_pb2.Any,
        min_coverage: float,
        client_remaining: float | None,
        arrived: float,
        trace: TraceContext,
    ) -> Gathered:
        """Budget, scatter, coverage and merge of one request."""
        request_id = trace.trace_id
        if not payload.type_url:
            raise InvalidRequest("the request payload is empty: pack your request message into it")
        if len(payload.type_url) > MAX_TYPE_URL_LENGTH:
            raise InvalidRequest(
                f"the payload's type URL is {len(payload.type_url)} characters, over the limit of "
                f"{MAX_TYPE_URL_LENGTH}: it must name a message type (type.googleapis.com/package.Message)"
            )
        if not 0.0 <= min_coverage <= 1.0:
            raise InvalidRequest(f"options.min_coverage must be in [0, 1], got {min_coverage:g}")
        budget = self.config.deadlines.budget(client_remaining, self.answer_times.reserve(arrived))
        start = arrived  # on the monotonic clock, like everything in the scatter
        payload_field = wire.payload_field(payload)
        if len(payload_field) > self.max_payload_bytes:
            raise TooLarge(
                f"the request payload is {len(payload_field)} bytes; this root forwards at most "
                f"{self.max_payload_bytes} (max_message_bytes = {self.config.max_message_bytes}, less "
                f"{self.config.max_message_bytes - self.max_payload_bytes} for the framing of the leaf and "
                "merge requests): send a smaller request, or raise max_message_bytes on the root, "
                "its leaves and its merge"
            )

        outcomes = await Scatter(
            self.shards,
            payload_field,
            request_id,
            start,
            start + budget.shards,
            min_coverage,
            self.config.coverage_wait,
            trace,
        ).run()
        # When the answer's clock starts: the shards' deadline, or their last answer if sooner.
        shards_due = min(time.monotonic(), start + budget.shards)
        reports = [outcome.report for outcome in outcomes]
        self._withhold_details(reports, request_id)
        check_leaf_verdicts({o.report.shard_index: o.invalid for o in outcomes if o.invalid is not None})
        if self.spans is None:
            coverage = build_coverage(reports)
        else:
            coverage = build_coverage(reports, [o.subtree for o in outcomes], self.spans)
        require_coverage(coverage, min_coverage)

        coverage_bytes = coverage.SerializeToString()
        report_bytes = [report.SerializeToString() for report in reports]  # once, for the merge and the answer
        merge_request = wire.merge_request(
            payload_field,
            zip(report_bytes, (outcome.payload for outcome in outcomes), strict=True),
            coverage_bytes,
            request_id,
        )
        if len(merge_request) > self.config.max_message_bytes:
            answers = sum(len(outcome.payload) for outcome in outcomes)
            raise TooLarge(
                f"the shards answered {answers} bytes in all, and with the request that makes a "
                f"{len(merge_request)}-byte merge request, over max_message_bytes = "
                f"{self.config.max_message_bytes}: ask the shards for less, or raise max_message_bytes "
                "on the root and its merge"
            )
        remaining = start + budget.total - time.monotonic()
        if remaining <= 0:
            raise DeadlineTooShort("deadline passed while waiting for the shards; no time left for the merge")
        try:
            merged = await self.merge.call(merge_request, timeout=remaining, metadata=((HEADER, trace.child_header()),))
        except grpc.aio.AioRpcError as exc:
            raise merge_failure(exc.code().name, self.merge_address, exc.details() or "") from exc
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
