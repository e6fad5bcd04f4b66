"""Certificates made at test time with ``openssl``, and client credentials from them.

Shared by every test that speaks TLS (the Python deployment, the Node.js
processes, the conformance kit). Files are written into a folder the test
owns: ``NAME.pem`` (certificate), ``NAME.key`` (key).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> None:
    """A self-signed certificate authority ``name``."""
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


def creds(certs: Path, ca: str = "ca", client: str | None = None) -> grpc.ChannelCredentials:
    """Channel credentials trusting ``ca``, presenting ``client``'s certificate when given (mutual TLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=(certs / f"{ca}.pem").read_bytes(),
        private_key=(certs / f"{client}.key").read_bytes() if client else None,
        certificate_chain=(certs / f"{client}.pem").read_bytes() if client else None,
    )
