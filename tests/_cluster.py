"""A local deployment of the probe application for integration tests.

Started through the real runtime (scatter.runtime), so every test talks gRPC to
real root, merge and leaf processes on 127.0.0.1; the Deployment stops every
process it started by its own handle. The document comes from the one
deployment builder the benchmarks use too (loadtest/deployments.py); only the
settings a test machine needs are added here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf import duration_pb2, message

from loadtest.deployments import probe_dir, probe_spec
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc
from scatter.runtime import Deployment

PROBE_DIR = probe_dir()


@contextmanager
def probe_cluster(
    shards: int = 3,
    replicas: int = 2,
    root: Mapping[str, Any] | None = None,
    leaf_args: tuple[str, ...] = (),
    extra: Mapping[str, Any] | None = None,
    root_flags: tuple[str, ...] = (),
) -> Iterator[Deployment]:
    spec = probe_spec(
        shards,
        replicas,
        leaf_flags=leaf_args,
        leaf_env={"SCATTER_LOG_FORMAT": "json"},  # structured logs, as an operator would ship them
        # A merge reserve that still holds when the test machine is busy.
        root={"default_deadline_ms": 2000, "merge_reserve_ms": 50, **(root or {})},
        sections={"runtime": {"ready_timeout_ms": 30_000}, **(extra or {})},
    )
    if root_flags:
        spec = dataclasses.replace(spec, root_command=(*spec.root_command, *root_flags))
    with Deployment(spec) as deployment:
        yield deployment


def ms(n: float) -> duration_pb2.Duration:
    """A Duration of ``n`` milliseconds."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(n * 1_000_000))
    return d


class Client:
    """A Root client on one long-lived channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = root_pb2_grpc.RootStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def query(
        self,
        payload: message.Message,
        timeout: float = 5.0,
        min_coverage: float | None = None,
    ) -> root_pb2.QueryResponse:
        request = root_pb2.QueryRequest()
        request.payload.Pack(payload)
        if min_coverage is not None:
            request.options.min_coverage = min_coverage
        response: root_pb2.QueryResponse = self.stub.Query(request, timeout=timeout)
        return response

    def probe(
        self, timeout: float = 5.0, min_coverage: float | None = None, **fields: Any
    ) -> tuple[root_pb2.QueryResponse, probe_pb2.ProbeResponse, float]:
        start = time.monotonic()
        response = self.query(probe_pb2.ProbeRequest(**fields), timeout, min_coverage)
        elapsed = time.monotonic() - start
        merged = probe_pb2.ProbeResponse()
        assert response.payload.Unpack(merged)
        return response, merged, elapsed


def wait_until_whole(client: Client, shards: int, timeout: float = 10.0) -> None:
    """Wait until the deployment answers with every shard again (after a revive or resume)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response, _, _ = client.probe(timeout=2.0, min_coverage=0.0)
            if response.coverage.answered == shards:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the deployment did not answer with all {shards} shards within {timeout} s")
        time.sleep(0.1)
