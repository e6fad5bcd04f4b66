"""The nginx admission front (``scatter front nginx``) on real processes: nginx before a probe cluster.

nginx is started by the test in its own prefix folder, on a free port, in
the foreground, and stopped by its handle. With a cap of N, N + EXTRA
concurrent slow requests: exactly EXTRA get RESOURCE_EXHAUSTED with the
front's message, the N others answer correctly; a deadline still applies
through the front; afterwards everything serves. Skipped when nginx is not
installed (``.ci/run`` installs it; under CI=1 a missing nginx fails).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from protos.scatter_gather.v1 import root_pb2
from root.config import load_root_config
from scatter.front import NginxFront, plan_front, run_nginx
from scatter.runtime import Deployment, free_port
from tests._cluster import Client, ms, probe_cluster

SHARDS = 2
CAP = 4
EXTRA = 3
SLOW_MS = 1500  # each admitted request is held this long at the leaves: all the burst overlaps

if shutil.which("nginx") is None:
    if os.environ.get("CI"):
        raise RuntimeError("nginx is missing: .ci/run installs it (apt-get install nginx)")
    pytest.skip("nginx is not installed (apt-get install nginx); .ci/run installs it", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployment]:
    # The root admits more than the front: the front must be the one refusing.
    with probe_cluster(SHARDS, 1, root={"max_in_flight": CAP + EXTRA + 4}) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def front(cluster: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxFront]:
    config = load_root_config(cluster.run_dir / "root.toml")
    plan = plan_front(config, f"127.0.0.1:{free_port()}", cap=CAP)
    with run_nginx(plan, Path(tmp_path_factory.mktemp("nginx"))) as running:
        yield running


def _outcome(address: str, value: int, delay_ms: float) -> tuple[str, str, int]:
    """(code name, details, merged value or -1) of one request on its own channel."""
    client = Client(address)
    try:
        _, merged, _ = client.probe(timeout=10.0, value=value, delay=ms(delay_ms))
        return "OK", "", merged.sum
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or "", -1
    finally:
        client.close()


def expected(value: int) -> int:
    return sum(shard + 1 + value for shard in range(SHARDS))


def test_front_refuses_exactly_the_requests_over_its_cap(front: NginxFront) -> None:
    with ThreadPoolExecutor(CAP + EXTRA) as pool:
        # The first CAP are sent first and given time to be admitted; then the EXTRA arrive.
        first = [pool.submit(_outcome, front.address, i, SLOW_MS) for i in range(CAP)]
        time.sleep(0.5)
        over = [pool.submit(_outcome, front.address, 100 + i, SLOW_MS) for i in range(EXTRA)]
        refused = [f.result() for f in over]
        admitted = [f.result() for f in first]
    for code, details, _ in refused:
        assert code == "RESOURCE_EXHAUSTED", (code, details)
        assert details == f"root front is at its limit of {CAP} requests in flight; retry with backoff"
    assert [r[:1] for r in admitted] == [("OK",)] * CAP, admitted
    assert [r[2] for r in admitted] == [expected(i) for i in range(CAP)]
    # After the burst, everything serves again: CAP at once, all admitted.
    with ThreadPoolExecutor(CAP) as pool:
        again = list(pool.map(lambda i: _outcome(front.address, 200 + i, 50), range(CAP)))
    assert again == [("OK", "", expected(200 + i)) for i in range(CAP)]


def test_a_deadline_applies_through_the_front(cluster: Deployment, front: NginxFront) -> None:
    direct, client = Client(cluster.root_address), Client(front.address)
    try:
        # The leaves see the client's deadline (grpc-timeout passed through, less the root's reserve).
        _, merged, _ = client.probe(timeout=0.8, value=7)
        assert merged.sum == expected(7)
        assert 0 < merged.max_remaining_ms <= 800, merged.max_remaining_ms
        # A request slower than its deadline ends at the deadline, with the code the root gives directly.
        codes = []
        for via in (direct, client):
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                via.probe(timeout=0.5, value=1, delay=ms(3000))
            assert time.monotonic() - started < 2.0
            codes.append(info.value.code())
        assert codes[0] == codes[1], codes
        assert codes[1] in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    finally:
        direct.close()
        client.close()


def test_an_oversized_request_gets_resource_exhausted_naming_the_limit(front: NginxFront) -> None:
    client = Client(front.address)
    try:
        request = root_pb2.QueryRequest()
        request.payload.type_url = "type.googleapis.com/probe.v1.ProbeRequest"
        request.payload.value = b"\x00" * (4 * 1024 * 1024 + 10)
        with pytest.raises(grpc.RpcError) as info:
            client.stub.Query(request, timeout=10)
        # The front answers (client_max_body_size), before the root reads a byte, as the root would.
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
        assert info.value.details() == (
            "request is larger than the root's max_message_bytes (4194304 bytes): send a smaller one "
            "or raise the limit on the root, the leaves and the merge"
        )
    finally:
        client.close()
