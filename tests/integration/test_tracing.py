"""Trace context: parsing, and a client's traceparent reaching every log about its request."""

from __future__ import annotations

import json
import re
import time

import grpc
import pytest

from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc
from scatter_common.tracing import TraceContext, trace_id_of
from tests._cluster import probe_cluster

TRACE = "0af7651916cd43dd8448eb211c80319c"
HEADER = f"00-{TRACE}-b7ad6b7169203331-01"


def test_valid_header_keeps_the_trace() -> None:
    context = TraceContext.from_header(HEADER)
    assert context == TraceContext(TRACE, "01")
    child = context.child_header()
    assert re.fullmatch(rf"00-{TRACE}-[0-9a-f]{{16}}-01", child)
    assert child != context.child_header()  # a new span per call


@pytest.mark.parametrize(
    "bad",
    [None, "", "garbage", f"ff-{TRACE}-b7ad6b7169203331-01", f"00-{'0' * 32}-b7ad6b7169203331-01",
     f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE[:-1]}-b7ad6b7169203331-01"],
)  # fmt: skip
def test_invalid_header_starts_a_new_trace(bad: str | None) -> None:
    context = TraceContext.from_header(bad)
    assert re.fullmatch(r"[0-9a-f]{32}", context.trace_id) and context.trace_id != TRACE


def test_trace_id_of_metadata() -> None:
    assert trace_id_of((("x", "y"), ("traceparent", HEADER))) == TRACE
    assert trace_id_of((("traceparent", "nope"),)) == ""
    assert trace_id_of(None) == ""


def test_traceparent_travels_to_the_leaves_and_their_logs() -> None:
    with probe_cluster(shards=2, replicas=1) as dep:
        request = root_pb2.QueryRequest()
        request.payload.Pack(probe_pb2.ProbeRequest(fail_shards=[1]))
        request.options.min_coverage = 0.0
        with grpc.insecure_channel(dep.root_address) as channel:
            response = root_pb2_grpc.RootStub(channel).Query(request, timeout=5, metadata=(("traceparent", HEADER),))
            assert response.request_id == TRACE
            other = root_pb2_grpc.RootStub(channel).Query(request, timeout=5)
            assert re.fullmatch(r"[0-9a-f]{32}", other.request_id) and other.request_id != TRACE
        log = dep.children["leaf-1-0"].log_path
        deadline = time.monotonic() + 5
        while TRACE not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        failures = [entry for entry in lines if entry.get("request_id") == TRACE]
        assert failures and "asked to fail" in failures[0]["msg"]
