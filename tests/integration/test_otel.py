"""OpenTelemetry: one hedged request followed attempt by attempt, through a real OTLP receiver.

Real root, leaves and merge (the probe app) export their spans over OTLP/gRPC
to a TraceService endpoint this test serves on 127.0.0.1, built from
opentelemetry-proto's own messages. One replica of shard 0 is slow, so some
request's first attempt there loses to a hedge; that request's spans must
form one tree under one trace id: the root's server span, an attempt span
per leaf call (first and hedge, the loser marked cancelled), each leaf's
server span under its attempt, the merge call and the merge's server span.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests._cluster import Client, ms, probe_cluster

SLOW = "shard0-replica0"  # SCATTER_REPLICA_ID of one replica of shard 0 (scatter.runtime)


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """Keeps every span exported to it, with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
                )
                for scope in resource_spans.scope_spans:
                    self.spans.extend((service, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_trace(self, trace_id: str) -> list[tuple[str, Any]]:
        with self.lock:
            return [(service, span) for service, span in self.spans if span.trace_id.hex() == trace_id]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(None)


def attributes(span: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for a in span.attributes:
        value = a.value
        found[a.key] = value.string_value or value.int_value or value.bool_value
    return found


def test_one_hedged_request_is_one_span_tree(receiver: tuple[Receiver, int], monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, port = receiver
    for name, value in {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }.items():
        monkeypatch.setenv(name, value)  # the deployment's processes inherit the environment
    with probe_cluster(shards=2, replicas=2) as dep:
        client = Client(dep.root_address)
        try:
            hedged = None
            for _ in range(60):
                response, _, _ = client.probe(replica_delays={SLOW: ms(300)})
                if response.shards[0].hedge_won:
                    hedged = response
                    break
            assert hedged is not None, "no request had its shard 0 rescued by a hedge"
        finally:
            client.close()
        trace_id = hedged.request_id
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            spans = servicer.of_trace(trace_id)
            names = [span.name for _, span in spans]
            # root, >= 3 attempts (2 on shard 0, 1 on shard 1), their leaf spans, merge client and server
            if names.count("Root.Query") == 1 and names.count("Merge.Merge") == 2 and names.count("Leaf.Execute") >= 5:
                break
            time.sleep(0.1)
    spans = servicer.of_trace(trace_id)
    by_id = {span.span_id: (service, span) for service, span in spans}
    roots = [span for service, span in spans if span.name == "Root.Query"]
    assert len(roots) == 1, [span.name for _, span in spans]
    root = roots[0]
    assert attributes(root)["scatter.coverage.answered"] == 2
    attempts = [span for service, span in spans if service == "scatter-root" and span.name == "Leaf.Execute"]
    assert all(span.parent_span_id == root.span_id for span in attempts)
    shard0 = sorted(
        (span for span in attempts if attributes(span)["scatter.shard"] == 0), key=lambda s: s.start_time_unix_nano
    )
    assert [attributes(s)["scatter.attempt_kind"] for s in shard0][:2] == ["first", "hedge"]
    loser = attributes(shard0[0])
    assert loser["scatter.replica"] == dep.children["leaf-0-0"].address
    assert loser["scatter.cancelled"] is True and loser["scatter.cancel_reason"] == "lost the race"
    assert attributes(shard0[1])["rpc.grpc.status_code"] == "OK"
    leaf_spans = [span for service, span in spans if service == "scatter-leaf"]
    assert len(leaf_spans) >= 3
    attempt_ids = {span.span_id for span in attempts}
    assert all(span.parent_span_id in attempt_ids for span in leaf_spans)
    merge_client = [span for service, span in spans if service == "scatter-root" and span.name == "Merge.Merge"]
    merge_server = [span for service, span in spans if service == "scatter-merge"]
    assert len(merge_client) == 1 and merge_client[0].parent_span_id == root.span_id
    assert len(merge_server) == 1 and merge_server[0].parent_span_id == merge_client[0].span_id
    assert set(by_id) >= {root.span_id, *attempt_ids}
