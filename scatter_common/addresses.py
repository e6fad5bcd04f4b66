"""gRPC addresses as the config and the flags accept them.

Two forms: ``host:port`` (``[v6]:port`` for IPv6) and ``unix:/abs/path``
(or ``unix:relative``), the forms grpc's channel and server both take.
"""

from __future__ import annotations

import ipaddress
import re

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


class AddressError(ValueError):
    """An address that grpc could not use; the message says what form is expected."""


class ListenError(OSError):
    """A well-formed address that cannot be bound now: in use, not this machine's, unresolvable.

    Raised by the gRPC server and the metrics server when they start; the
    caller knows which key or flag named the address and says so.
    """


def validate(address: str, *, listen: bool = False, unix: bool = True) -> str:
    """Return ``address`` unchanged if it is usable, else raise AddressError.

    ``listen=True`` also accepts port 0 (the OS picks a free port), which is
    meaningful only for an address to bind, never for one to connect to.
    ``unix=False`` refuses ``unix:`` addresses: the metrics and status pages
    are served over TCP only (scatter_common.http_server).
    """
    if address.startswith("unix:"):
        if not unix:
            raise AddressError(
                f"{address!r}: the metrics and status pages listen on host:port (e.g. '127.0.0.1:9100'), "
                "not a unix socket"
            )
        if len(address) == len("unix:"):
            raise AddressError(f"{address!r}: a unix address needs a path, e.g. 'unix:/tmp/leaf.sock'")
        return address
    match = _HOST_PORT.match(address)
    if not match:
        raise AddressError(f"{address!r}: expected 'host:port' (e.g. '127.0.0.1:50051') or 'unix:/path'")
    port = int(match["port"])
    lowest = 0 if listen else 1
    if not lowest <= port < 65536:
        raise AddressError(f"{address!r}: port must be in {lowest}..65535")
    return address


def is_loopback(address: str) -> bool:
    """True for unix sockets and loopback hosts: traffic that never leaves the machine."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
