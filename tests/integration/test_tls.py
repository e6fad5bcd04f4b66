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

SHARDS = 2


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)  # fmt: skip


def make_cert(folder: Path, ca: str, name: str) -> None:
    """A certificate for 127.0.0.1/localhost, usable by servers and clients, signed by ``ca``."""
    (folder / f"{name}.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=folder)  # fmt: skip


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


def creds(certs: Path, ca: str = "ca", client: str | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / f"{ca}.pem").read_bytes(),
        private_key=(certs / f"{client}.key").read_bytes() if client else None,
        certificate_chain=(certs / f"{client}.pem").read_bytes() if client else None,
    )


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


def test_conformance_kit_speaks_mtls(mtls_cluster: Deployment, certs: Path, tmp_path: Path) -> None:
    import json

    from tests.integration.test_conformance import PROBE_SAMPLE

    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(PROBE_SAMPLE))
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
