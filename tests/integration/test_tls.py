"""TLS and mutual TLS on every hop, with certificates made at test time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from loadtest.deployments import probe_spec
from protos.probe.v1 import probe_pb2
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc
from scatter.runtime import Deployment
from tests._cluster import PROBE_DIR
from tests._tls import creds, make_ca, make_cert

SHARDS = 2


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    make_ca(folder, "ca")
    make_cert(folder, "ca", "node")
    make_cert(folder, "ca", "client")
    make_ca(folder, "other-ca")
    make_cert(folder, "other-ca", "stranger")
    return folder


def deployment(certs: Path, mutual: bool) -> Deployment:
    tls = {
        "cert_file": str(certs / "node.pem"),
        "key_file": str(certs / "node.key"),
        "ca_file": str(certs / "ca.pem"),
        "mutual": mutual,
    }
    return Deployment(probe_spec(SHARDS, 1, sections={"tls": tls}))


def query(address: str, credentials: grpc.ChannelCredentials | None) -> root_pb2.QueryResponse:
    request = root_pb2.QueryRequest()
    request.payload.Pack(probe_pb2.ProbeRequest(value=1))
    channel = grpc.insecure_channel(address) if credentials is None else grpc.secure_channel(address, credentials)
    with channel:
        response: root_pb2.QueryResponse = root_pb2_grpc.RootStub(channel).Query(request, timeout=5)
    return response


@pytest.fixture(scope="module")
def tls_cluster(certs: Path) -> Iterator[Deployment]:
    with deployment(certs, mutual=False) as dep:
        yield dep


@pytest.fixture(scope="module")
def mtls_cluster(certs: Path) -> Iterator[Deployment]:
    with deployment(certs, mutual=True) as dep:
        yield dep


def test_tls_deployment_answers(tls_cluster: Deployment, certs: Path) -> None:
    response = query(tls_cluster.root_address, creds(certs))
    assert response.coverage.answered == SHARDS


def test_plaintext_client_is_refused_by_a_tls_root(tls_cluster: Deployment) -> None:
    with pytest.raises(grpc.RpcError) as info:
        query(tls_cluster.root_address, None)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_deployment_answers_a_client_with_a_certificate(mtls_cluster: Deployment, certs: Path) -> None:
    response = query(mtls_cluster.root_address, creds(certs, client="client"))
    assert response.coverage.answered == SHARDS


@pytest.mark.parametrize("client", [None, "stranger"])
def test_mtls_refuses_strangers(mtls_cluster: Deployment, certs: Path, client: str | None) -> None:
    with pytest.raises(grpc.RpcError) as info:
        query(mtls_cluster.root_address, creds(certs, client=client))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_leaves_refuse_strangers_too(mtls_cluster: Deployment, certs: Path) -> None:
    from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc

    address = mtls_cluster.children["leaf-0-0"].address
    with grpc.secure_channel(address, creds(certs, client="stranger")) as channel, pytest.raises(grpc.RpcError) as info:
        leaf_pb2_grpc.LeafStub(channel).Execute(leaf_pb2.ExecuteRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_exposed_plaintext_listener_warns() -> None:
    code = "from scatter_common.tls import warn_if_exposed; warn_if_exposed('0.0.0.0:1', None, 'leaf')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert "without TLS" in result.stderr


def test_conformance_kit_speaks_mtls(mtls_cluster: Deployment, certs: Path) -> None:
    sample = PROBE_DIR / "conformance-sample.json"
    address = mtls_cluster.children["leaf-0-0"].address
    command = [sys.executable, "-m", "scatter.cli", "conformance", "leaf", address, "--sample", str(sample),
               "--shard-count", str(SHARDS), "--timeout-ms", "3000"]  # fmt: skip
    tls = [
        "--tls-ca",
        str(certs / "ca.pem"),
        "--tls-cert",
        str(certs / "client.pem"),
        "--tls-key",
        str(certs / "client.key"),
    ]
    passed = subprocess.run([*command, *tls], capture_output=True, text=True, timeout=120, check=False)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1 and "reachable" in refused.stdout
