"""Command-line flags with environment fallbacks, and the options they build.

Rules: a flag given on the command line wins over its environment variable,
which wins over the default. ``--address`` (or ``SCATTER_ADDRESS``) names the
whole listen address, unix sockets included, and replaces host and port; an
explicit ``--host``/``--port`` still beats an ``SCATTER_ADDRESS`` inherited
from the environment. Every bad value is an argparse error naming the flag
or the variable it came from, raised before anything binds.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Self

from scatter_common.addresses import AddressError, validate
from scatter_common.serving import (
    DEFAULT_DRAIN_DELAY_SECONDS,
    DEFAULT_GRACE_SECONDS,
    DEFAULT_MAX_MESSAGE_BYTES,
    ServeOptions,
)
from scatter_common.tls import ServerTls, check_certificates, check_key_pair

# Loopback unless asked: a process reachable from the network should be a decision.
DEFAULT_HOST = "127.0.0.1"
# Port 0: the OS picks a free port and the process prints the one it got.
DEFAULT_PORT = 0
# Calls handled at once before refusing with RESOURCE_EXHAUSTED. A sync
# handler holds one worker thread per call, and beyond a few dozen calls a
# CPU-bound handler on a small machine only gets slower per call: past that
# point the root is better served by a quick refusal (it fails over or
# hedges to another replica) than by a queue here. It also bounds memory.
DEFAULT_MAX_CONCURRENCY = 64
# Ranges of the flags, each where a larger value breaks something: grpc's
# message limits are C ints (2**31 is an OverflowError at start); the grace
# period and the drain delay become timers, and no drain needs a day.
MAX_MESSAGE_BYTES = 2**31 - 1
MAX_GRACE_SECONDS = 86_400.0
MAX_DRAIN_DELAY_SECONDS = 3600.0
MAX_CONCURRENCY = 100_000


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """How an SDK process listens and how much it takes on. Validated on construction.

    A role's options subclass this and add their fields; ``from_args``
    builds any of them from ``SERVER_FLAGS`` plus the subclass's
    ``role_flags`` (one flag per added field, its ``dest`` the field name).
    """

    # What a role adds: the --help description, its own flags, and (in
    # check_flags) cross-field checks that must name flags, not fields.
    description: ClassVar[str] = "Serve a scatter/gather handler."
    role_flags: ClassVar[tuple[Flag, ...]] = ()

    address: str = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    drain_delay_seconds: float = DEFAULT_DRAIN_DELAY_SECONDS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # host:port for Prometheus /metrics over HTTP; "" serves no metrics.
    metrics_address: str = ""
    # TLS: certificate and key to serve with; a client CA to require client certificates (mTLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""

    def __post_init__(self) -> None:
        try:
            validate(self.address, listen=True)
        except AddressError as exc:
            raise ValueError(f"address: {exc}") from exc
        try:
            if self.metrics_address:
                validate(self.metrics_address, listen=True, unix=False)
        except AddressError as exc:
            raise ValueError(f"metrics_address: {exc}") from exc
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"max_concurrency must be in [1, {MAX_CONCURRENCY}], got {self.max_concurrency}")
        if not 0 <= self.grace_seconds <= MAX_GRACE_SECONDS:  # also refuses NaN
            raise ValueError(f"grace_seconds must be in [0, {MAX_GRACE_SECONDS:g}], got {self.grace_seconds}")
        if not 0 <= self.drain_delay_seconds <= MAX_DRAIN_DELAY_SECONDS:
            raise ValueError(
                f"drain_delay_seconds must be in [0, {MAX_DRAIN_DELAY_SECONDS:g}], got {self.drain_delay_seconds}"
            )
        if not 1 <= self.max_message_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(f"max_message_bytes must be in [1, {MAX_MESSAGE_BYTES}], got {self.max_message_bytes}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together (--tls-cert/--tls-key)")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")

    def serve_options(self) -> ServeOptions:
        return ServeOptions(
            address=self.address,
            max_message_bytes=self.max_message_bytes,
            grace_seconds=self.grace_seconds,
            drain_delay_seconds=self.drain_delay_seconds,
            tls=ServerTls(self.tls_cert, self.tls_key, self.tls_client_ca) if self.tls_cert else None,
        )

    @classmethod
    def from_args(
        cls,
        argv: Sequence[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        allow_extra_args: bool = False,
        prog: str | None = None,
    ) -> Self:
        """Build options from flags (``sys.argv[1:]`` when ``argv`` is None) and ``SCATTER_*`` variables.

        Unknown arguments are an error unless ``allow_extra_args``, in which
        case they are left for the user's program to parse. Bad values exit
        with status 2 and a message naming the flag or variable.
        """
        parser = FlagParser(prog, cls.description, SERVER_FLAGS + cls.role_flags)
        values, explicit = parser.parse(argv, environ, allow_extra_args=allow_extra_args)
        cls.check_flags(parser, values)
        _check_tls_flags(parser, values)
        role_fields = {flag.dest: values[flag.dest] for flag in cls.role_flags}
        try:
            return cls(**parser.server_fields(values, explicit), **role_fields)
        except ValueError as exc:  # a rule across flags that no converter could see
            parser.error(str(exc))

    @classmethod
    def check_flags(cls, parser: FlagParser, values: Mapping[str, Any]) -> None:
        """Cross-field checks of parsed values; call ``parser.error`` to refuse them. None here."""


def _check_tls_flags(parser: FlagParser, values: Mapping[str, Any]) -> None:
    """The TLS files parse as PEM (and the key is the certificate's): refused now, not on every call."""
    cert, key, ca = values["tls_cert"], values["tls_key"], values["tls_client_ca"]
    checks: list[tuple[str, Callable[[], None]]] = []
    if cert:
        checks.append(("--tls-cert (SCATTER_TLS_CERT)", lambda: check_certificates(cert)))
        if key:
            checks.append(("--tls-key (SCATTER_TLS_KEY)", lambda: check_key_pair(cert, key)))
    if ca:
        checks.append(("--tls-client-ca (SCATTER_TLS_CLIENT_CA)", lambda: check_certificates(ca)))
    for name, check in checks:
        try:
            check()
        except ValueError as exc:
            parser.error(f"{name}: {exc}")


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}")
        return value

    return convert


def seconds_in(low: float, high: float) -> Callable[[str], float]:
    """A converter of a number of seconds in [low, high]; NaN and the infinities are refused."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"expected a number of seconds in [{low:g}, {high:g}], got {text!r}")
        return value

    return convert


def _host(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"expected a host name or IP address, got {text!r}")
    return text


def _listen_address(text: str) -> str:
    try:
        return validate(text, listen=True)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _http_address(text: str) -> str:
    """An address for the metrics server: host:port only (an empty one serves no metrics)."""
    try:
        return validate(text, listen=True, unix=False) if text else text
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


@dataclass(frozen=True)
class Flag:
    """One flag, its environment variable, converter and default."""

    name: str
    env: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = field(default="")

    @property
    def dest(self) -> str:
        return self.name.removeprefix("--").replace("-", "_")


SERVER_FLAGS: tuple[Flag, ...] = (
    Flag("--host", "SCATTER_HOST", _host, DEFAULT_HOST, "interface to listen on", "HOST"),
    Flag("--port", "SCATTER_PORT", int_in(0, 65535), DEFAULT_PORT, "port to listen on; 0 picks one", "PORT"),
    Flag(
        "--address",
        "SCATTER_ADDRESS",
        _listen_address,
        "",
        "full listen address, 'host:port' or 'unix:/path'; replaces host and port",
        "ADDR",
    ),
    Flag(
        "--max-concurrency",
        "SCATTER_MAX_CONCURRENCY",
        int_in(1, MAX_CONCURRENCY),
        DEFAULT_MAX_CONCURRENCY,
        "calls handled at once; more are refused with RESOURCE_EXHAUSTED",
        "N",
    ),
    Flag(
        "--grace-seconds",
        "SCATTER_GRACE_SECONDS",
        seconds_in(0, MAX_GRACE_SECONDS),
        DEFAULT_GRACE_SECONDS,
        "on SIGTERM, time in-flight calls get to finish",
        "S",
    ),
    Flag(
        "--drain-delay-seconds",
        "SCATTER_DRAIN_DELAY_SECONDS",
        seconds_in(0, MAX_DRAIN_DELAY_SECONDS),
        DEFAULT_DRAIN_DELAY_SECONDS,
        "on SIGTERM, time to keep taking calls while reporting NOT_SERVING, before the grace period",
        "S",
    ),
    Flag(
        "--metrics-address",
        "SCATTER_METRICS_ADDRESS",
        _http_address,
        "",
        "host:port to serve Prometheus metrics on over HTTP (/metrics); empty: no metrics",
        "ADDR",
    ),
    Flag("--tls-cert", "SCATTER_TLS_CERT", str, "", "PEM certificate to serve TLS with", "FILE"),
    Flag("--tls-key", "SCATTER_TLS_KEY", str, "", "PEM private key of --tls-cert", "FILE"),
    Flag(
        "--tls-client-ca",
        "SCATTER_TLS_CLIENT_CA",
        str,
        "",
        "PEM CA certificate: require client certificates it signed (mutual TLS)",
        "FILE",
    ),
    Flag(
        "--max-message-bytes",
        "SCATTER_MAX_MESSAGE_BYTES",
        int_in(1, MAX_MESSAGE_BYTES),
        DEFAULT_MAX_MESSAGE_BYTES,
        "largest message sent or received",
        "BYTES",
    ),
)


class FlagParser:
    """Parses ``flags`` from argv and the environment; use ``error`` for cross-field checks."""

    def __init__(self, prog: str | None, description: str, flags: Sequence[Flag]) -> None:
        self._flags = tuple(flags)
        self._parser = argparse.ArgumentParser(
            prog=prog,
            description=description,
            epilog="Each flag falls back to its environment variable, then to its default.",
            allow_abbrev=False,  # a user's own flags must never be mistaken for an abbreviation of ours
        )
        for flag in self._flags:
            self._parser.add_argument(
                flag.name,
                dest=flag.dest,
                type=flag.convert,
                default=None,
                metavar=flag.metavar or None,
                help=f"{flag.help} (env {flag.env}; default {flag.default!r})",
            )

    def parse(
        self,
        argv: Sequence[str] | None,
        environ: Mapping[str, str] | None,
        *,
        allow_extra_args: bool,
    ) -> tuple[dict[str, Any], set[str]]:
        """Return ``(values by dest, dests given on the command line)``."""
        if allow_extra_args:
            namespace, _extra = self._parser.parse_known_args(argv)
        else:
            namespace = self._parser.parse_args(argv)
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        explicit: set[str] = set()
        for flag in self._flags:
            value = getattr(namespace, flag.dest)
            if value is not None:
                explicit.add(flag.dest)
            elif env.get(flag.env):
                raw = env[flag.env]
                try:
                    value = flag.convert(raw)
                except argparse.ArgumentTypeError as exc:
                    self.error(f"environment variable {flag.env}={raw!r}: {exc}")
            else:
                value = flag.default
            values[flag.dest] = value
        return values, explicit

    def server_fields(self, values: Mapping[str, Any], explicit: set[str]) -> dict[str, Any]:
        """The ``ServerOptions`` fields from parsed ``SERVER_FLAGS`` values, for a subclass's constructor."""
        names = ("max_concurrency", "grace_seconds", "drain_delay_seconds", "max_message_bytes", "metrics_address")
        tls = {"tls_cert": values["tls_cert"], "tls_key": values["tls_key"], "tls_client_ca": values["tls_client_ca"]}
        return {"address": self.listen_address(values, explicit), **{n: values[n] for n in names}, **tls}

    def listen_address(self, values: Mapping[str, Any], explicit: set[str]) -> str:
        """The address to bind, following the precedence in the module docstring."""
        host_port_given = bool(explicit & {"host", "port"})
        if "address" in explicit:
            if host_port_given:
                self.error("--address replaces --host and --port; give one or the other")
            return str(values["address"])
        if values["address"] and not host_port_given:
            return str(values["address"])
        host = str(values["host"])
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # a bare IPv6 literal
        address = f"{host}:{values['port']}"
        try:
            return validate(address, listen=True)
        except AddressError as exc:
            self.error(f"--host/--port (or SCATTER_HOST/SCATTER_PORT): {exc}")

    def error(self, message: str) -> NoReturn:
        """Exit with status 2 and ``message``, argparse style."""
        self._parser.error(message)
