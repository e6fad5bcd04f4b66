"""TLS and mutual TLS for every hop, from certificate files.

Two sides, one module:

- ``ServerTls``: what a process presents to its callers (certificate and
  key) and, for mutual TLS, the CA whose client certificates it accepts
  (``client_ca_file``: when set, a caller without a certificate from that CA
  is refused during the handshake).
- ``ClientTls``: what a caller trusts (``ca_file``) and, for mutual TLS, the
  certificate it presents.

Files are read once, when the process starts, and a missing or unreadable
file is a configuration error naming the file. ``check_certificates`` and
``check_key_pair`` parse them with OpenSSL first, so a file that is not PEM
(or a key that is not the certificate's) is refused when the configuration
is read, not on every call (grpc accepts any bytes, then fails each
handshake). Plaintext stays the default
for loopback; ``warn_if_exposed`` says so loudly when a process binds a
non-loopback address without TLS.
"""

from __future__ import annotations

import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc

from scatter_common.addresses import is_loopback


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path!r}: {exc.strerror or exc}") from None


def check_certificates(path: str) -> None:
    """``path`` holds one or more PEM certificates (a certificate chain, or CA certificates); else ValueError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:  # before OSError, which it is
        raise ValueError(f"{path!r} is not a PEM certificate ({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if not context.cert_store_stats()["x509"]:
        raise ValueError(f"{path!r} holds no PEM certificate")


def _no_password() -> bytes:
    return b""  # grpc cannot use an encrypted key: refuse one, never prompt for its password


def check_key_pair(cert_path: str, key_path: str) -> None:
    """``key_path`` holds the unencrypted PEM private key of the certificate in ``cert_path``; else ValueError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise ValueError(
                f"{key_path!r} is not an unencrypted PEM private key of the certificate {cert_path!r}"
                f" ({exc.reason or exc})"
            ) from None
        raise ValueError(f"cannot read {key_path!r}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ServerTls:
    cert_file: str
    key_file: str
    client_ca_file: str = ""  # set: require client certificates signed by this CA (mTLS)

    def credentials(self) -> grpc.ServerCredentials:
        key = _read(self.key_file, "tls key_file")
        cert = _read(self.cert_file, "tls cert_file")
        ca = _read(self.client_ca_file, "tls client_ca_file") if self.client_ca_file else None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


@dataclass(frozen=True)
class ClientTls:
    ca_file: str = ""  # "" trusts the system's roots
    cert_file: str = ""  # with key_file: present a client certificate (mTLS)
    key_file: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("tls: cert_file and key_file go together (a client certificate needs its key)")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "tls ca_file") if self.ca_file else None,
            private_key=_read(self.key_file, "tls key_file") if self.key_file else None,
            certificate_chain=_read(self.cert_file, "tls cert_file") if self.cert_file else None,
        )


def aio_channel(address: str, tls: ClientTls | None, options: list[tuple[str, int]] | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address``, secure when ``tls`` is given."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, tls.credentials(), options=options)


def sync_channel(address: str, tls: ClientTls | None) -> grpc.Channel:
    """A blocking channel to ``address``, secure when ``tls`` is given."""
    if tls is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, tls.credentials())


def warn_if_exposed(address: str, tls: ServerTls | None, role: str) -> None:
    """Warn on stderr when ``address`` is reachable from other machines without TLS."""
    if tls is None and not is_loopback(address):
        print(
            f"scatter: WARNING: {role} listens on {address} without TLS; anyone on the network can call it. "
            "Configure a certificate (see docs/operations.md) or bind 127.0.0.1.",
            file=sys.stderr,
            flush=True,
        )
