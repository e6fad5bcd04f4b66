"""Root.Query: admission, deadline budget, scatter, coverage, merge, answer.

This is the wiring of one request; the decisions it applies live in
``root.deadlines``, ``root.coverage`` and ``root.policies``, the shard
attempts in ``root.scatter`` and the byte splicing in ``root.wire``. The
handler is registered with raw-bytes serialization for its response so the
merge's payload reaches the client without being decoded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import grpc

from protos.scatter_gather.v1 import root_pb2
from root import wire
from root.config import RootConfig
from root.coverage import build_coverage, check_leaf_verdicts, require_coverage
from root.errors import DeadlineTooShort, InvalidRequest, Overloaded, RootError, merge_failure
from root.policies import AdmissionConfig, AdmissionLimit
from root.scatter import RECONNECT_OPTIONS, Scatter, Shard
from scatter_common.metrics import Histogram
from scatter_common.tls import aio_channel
from scatter_common.tracing import HEADER, TraceContext

log = logging.getLogger("scatter.root")

MERGE_METHOD = "/scatter_gather.v1.Merge/Merge"
# Coverage fractions worth telling apart: full, nearly full, half or worse.
COVERAGE_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def _traceparent(context: grpc.aio.ServicerContext[root_pb2.QueryRequest, bytes]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == HEADER:
            return str(value)
    return None


class RootService:
    """The state of a root process and the handling of one Query."""

    def __init__(self, config: RootConfig, shards: Sequence[Shard]) -> None:
        self.config = config
        self.shards = list(shards)
        self.merge_address = config.merge_address
        self.merge_channel = aio_channel(
            config.merge_address,
            config.upstream_tls,
            [
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.max_receive_message_length", config.max_message_bytes),
                *RECONNECT_OPTIONS,
            ],
        )
        self.merge: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.merge_channel.unary_unary(MERGE_METHOD)
        self.admission = AdmissionLimit(AdmissionConfig(config.max_in_flight))
        self.requests_by_code: dict[str, int] = {}
        self.latency = Histogram()  # arrival to answer, successful requests
        self.coverage = Histogram(COVERAGE_BUCKETS)  # answered / total of successful requests
        self.started = time.time()

    async def close(self) -> None:
        await self.merge_channel.close()
        for shard in self.shards:
            for replica in shard.replicas:
                await replica.close()

    async def query(
        self, request: root_pb2.QueryRequest, context: grpc.aio.ServicerContext[root_pb2.QueryRequest, bytes]
    ) -> bytes:
        """The Query handler: returns a serialized QueryResponse or aborts with a status."""
        arrived = time.monotonic()
        trace = TraceContext.from_header(_traceparent(context))
        request_id = trace.trace_id
        code = "OK"
        try:
            if not self.admission.try_acquire():
                limit = self.config.max_in_flight
                raise Overloaded(f"root is at its limit of {limit} requests in flight; retry with backoff")
            try:
                return await self._query(request, context.time_remaining(), arrived, trace)
            finally:
                self.admission.release()
        except RootError as exc:
            code = exc.code
            log.info("request failed: %s %s", exc.code, exc.message, extra={"request_id": request_id})
            await context.abort(grpc.StatusCode[exc.code], exc.message)
            raise  # unreachable: abort raises
        finally:
            self.requests_by_code[code] = self.requests_by_code.get(code, 0) + 1

    async def _query(
        self, request: root_pb2.QueryRequest, client_remaining: float | None, arrived: float, trace: TraceContext
    ) -> bytes:
        request_id = trace.trace_id
        if not request.HasField("payload") or not request.payload.type_url:
            raise InvalidRequest("QueryRequest.payload is empty: pack your request message into it")
        min_coverage = self.config.min_coverage
        if request.HasField("options") and request.options.HasField("min_coverage"):
            min_coverage = request.options.min_coverage
            if not 0.0 <= min_coverage <= 1.0:
                raise InvalidRequest(f"options.min_coverage must be in [0, 1], got {min_coverage:g}")
        budget = self.config.deadlines.budget(client_remaining)
        start = arrived  # on the monotonic clock, like everything in the scatter
        payload_field = wire.payload_field(request.payload)

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
        reports = [outcome.report for outcome in outcomes]
        check_leaf_verdicts({o.report.shard_index: o.invalid for o in outcomes if o.invalid is not None})
        coverage = build_coverage(reports)
        require_coverage(coverage, min_coverage)

        coverage_bytes = coverage.SerializeToString()
        merge_request = b"".join(
            [
                payload_field,
                *(
                    wire.field(
                        2,
                        wire.field(1, o.report.SerializeToString()) + (wire.field(2, o.payload) if o.payload else b""),
                    )
                    for o in outcomes
                ),
                wire.field(3, coverage_bytes),
                wire.field(4, request_id.encode()),
            ]
        )
        remaining = start + budget.total - time.monotonic()
        if remaining <= 0:
            raise DeadlineTooShort("deadline passed while waiting for the shards; no time left for the merge")
        try:
            merged = await self.merge(merge_request, timeout=remaining, metadata=((HEADER, trace.child_header()),))
        except grpc.aio.AioRpcError as exc:
            raise merge_failure(exc.code().name, self.merge_address, exc.details() or "") from exc
        elapsed = time.monotonic() - start
        self.latency.observe(elapsed)
        self.coverage.observe(coverage.answered / coverage.total)
        rest = root_pb2.QueryResponse(
            coverage=coverage,
            shards=reports,
            latency=wire.duration(elapsed),
            request_id=request_id,
        ).SerializeToString()
        return wire.merge_payload_field(merged) + rest
