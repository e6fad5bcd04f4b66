"""``scatter front nginx --config root.toml --listen HOST:PORT``: an admission front in C for a root.

grpc Python spends about 400 us of CPU on every call it accepts, refused or
not (docs/benchmarks.md, shedding), so a root cannot shed cheaper than that
however early its handler refuses. This command prints an nginx
configuration that refuses over-limit requests before they reach the root,
at a few tens of microseconds each, the way users of gRPC Python put Envoy
in front. Rules, all derived from the root's own configuration so the two
agree:

- **Concurrency cap**: ``limit_conn`` counts each concurrent HTTP/2 stream
  (request) as a connection. The cap sits just under what the root admits
  (``max_in_flight`` x ``workers``, less ``margin``: 1/16, at least 1) so
  the front refuses first and the root's own admission stays the second
  line (for clients that bypass the front, and the byte limit).
- **Refusal**: RESOURCE_EXHAUSTED (gRPC status 8) as a trailers-only
  response (HTTP 204 with ``grpc-status`` and ``grpc-message``), with a
  message saying what to do, like the root's own.
- **Deadlines**: the client's ``grpc-timeout`` header passes through; the
  front's upstream timeouts are the root's ``max_deadline_ms`` plus
  ``UPSTREAM_SLACK_S``, so only the root decides DEADLINE_EXCEEDED.
- **Sizes**: ``client_max_body_size`` is ``max_message_bytes`` plus gRPC's
  5-byte message prefix; a larger body gets RESOURCE_EXHAUSTED naming the
  limit, as the root would answer.
- **Errors of the front itself**: the root unreachable (502) is UNAVAILABLE,
  an upstream timeout (504) DEADLINE_EXCEEDED, each with what to do.
- Health checks (``grpc.health.v1.Health``) bypass the cap: a probe must not
  be shed. The root's ``[tls]`` is not supported (the front would have to
  terminate it): such a config is refused with a message.

The file is prefix-relative (pid, temp folders): run it as
``nginx -p DIR -c DIR/nginx.conf -e stderr``; it stays in the foreground
(``daemon off``) for a supervisor or a container. nginx 1.22 (Debian 12):
``listen ... http2``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from root.config import RootConfig, load_root_config
from root.errors import ConfigError

__all__ = ["FrontPlan", "NginxFront", "front_cap", "main", "nginx_config", "plan_front", "run_nginx"]

GRPC_PREFIX_BYTES = 5  # gRPC's length prefix before every message: compressed flag + 4-byte length
UPSTREAM_SLACK_S = 5  # the front waits this much past the root's max deadline: the root answers first
SHED_STATUS = 429  # limit_conn_status: an internal code, mapped to grpc-status 8 by error_page
RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED = 8, 14, 4


def front_cap(max_in_flight: int, workers: int = 1) -> int:
    """The front's concurrency cap: what the root admits, less a margin (1/16, at least 1)."""
    total = max_in_flight * workers
    return max(1, total - max(1, total // 16))


@dataclass(frozen=True, slots=True)
class FrontPlan:
    listen: str  # where the front listens, host:port
    upstream: str  # nginx's name for the root: host:port or unix:/path
    cap: int  # concurrent requests let through
    max_body_bytes: int  # client_max_body_size
    max_message_bytes: int
    upstream_timeout_s: int
    workers: int  # nginx worker processes


def _upstream(listen: str) -> str:
    if listen.startswith("unix:"):
        return listen
    host, _, port = listen.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
    return f"{host}:{port}"


def plan_front(config: RootConfig, listen: str, cap: int | None = None, workers: int = 1) -> FrontPlan:
    """The front's settings for a root with ``config``; ``cap`` overrides ``front_cap``."""
    if config.tls is not None:
        raise ConfigError(
            "the root has [tls]: the nginx front does not terminate TLS yet; put the front on plaintext "
            "loopback (remove [tls] from the root) and terminate TLS in front of it, or run without the front"
        )
    if config.listen.rpartition(":")[2] == "0":
        raise ConfigError("root.listen has port 0: the front needs the root's fixed port; set one")
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--listen {listen!r}: expected HOST:PORT with a port from 1 to 65535 (nginx needs a fixed port)"
        )
    if cap is not None and cap < 1:
        raise ConfigError(f"--cap {cap}: must be >= 1")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    return FrontPlan(
        listen=listen,
        upstream=_upstream(config.listen),
        cap=front_cap(config.max_in_flight, config.workers) if cap is None else cap,
        max_body_bytes=config.max_message_bytes + GRPC_PREFIX_BYTES,
        max_message_bytes=config.max_message_bytes,
        upstream_timeout_s=int(config.deadlines.maximum) + 1 + UPSTREAM_SLACK_S,
        workers=workers,
    )


def _grpc_error(name: str, status: int, message: str) -> str:
    # A trailers-only response: HEADERS with END_STREAM, grpc-status among them. "always" adds the
    # headers to any status; the message must hold no '"' or '$' (nginx syntax) and no '%' (gRPC's
    # percent-encoding of grpc-message).
    assert not set(message) & set('"$%\\'), message
    return (
        f"        location {name} {{\n"
        "            internal;\n"
        "            default_type application/grpc;\n"
        f"            add_header grpc-status {status} always;\n"
        f'            add_header grpc-message "{message}" always;\n'
        "            return 204;\n"
        "        }\n"
    )


def nginx_config(plan: FrontPlan, source: str = "") -> str:
    """The nginx.conf text for ``plan`` (``source``: the root config it came from, for the header)."""
    shed = f"root front is at its limit of {plan.cap} requests in flight; retry with backoff"
    big = (
        f"request is larger than the root's max_message_bytes ({plan.max_message_bytes} bytes): "
        "send a smaller one or raise the limit on the root, the leaves and the merge"
    )
    down = "the root behind this front is unreachable: retry with backoff; if it lasts, check the root"
    slow = "the root did not answer within its longest deadline: retry with a deadline"
    streams = max(128, 2 * plan.cap)  # per client connection; past the cap they are refused, not queued
    return (
        f"# Generated by `scatter front nginx`{f' from {source}' if source else ''}; regenerate when the root's\n"
        "# max_in_flight, workers, max_message_bytes, max_deadline_ms or listen change.\n"
        "# Run: nginx -p DIR -c DIR/nginx.conf -e stderr   (paths below are relative to DIR)\n"
        "daemon off;\n"
        f"worker_processes {plan.workers};\n"
        "pid nginx.pid;\n"
        "error_log stderr warn;\n"
        "\n"
        "events {\n"
        f"    worker_connections {max(1024, 4 * plan.cap)};\n"
        "}\n"
        "\n"
        "http {\n"
        "    access_log off;\n"
        "    server_tokens off;\n"
        "    client_body_temp_path client_body_temp;\n"
        "    proxy_temp_path proxy_temp;\n"
        "    fastcgi_temp_path fastcgi_temp;\n"
        "    uwsgi_temp_path uwsgi_temp;\n"
        "    scgi_temp_path scgi_temp;\n"
        "\n"
        "    # One counter for the whole front (every worker shares the zone): each HTTP/2 stream counts.\n"
        "    limit_conn_zone $server_name zone=scatter_root:1m;\n"
        "\n"
        "    upstream scatter_root {\n"
        f"        server {plan.upstream};\n"
        f"        keepalive {plan.cap};  # nginx sends one request per upstream connection: keep them\n"
        "        keepalive_timeout 60s;\n"
        "    }\n"
        "\n"
        "    server {\n"
        f"        listen {plan.listen} http2;\n"
        "        server_name scatter-front;  # the limit_conn key: one non-empty value (an empty key counts nothing)\n"
        f"        http2_max_concurrent_streams {streams};\n"
        "        keepalive_timeout 300s;  # an idle client connection\n"
        f"        client_max_body_size {plan.max_body_bytes};  # max_message_bytes + gRPC's 5-byte prefix\n"
        "        client_body_timeout 60s;\n"
        "        large_client_header_buffers 4 16k;  # gRPC metadata\n"
        "\n"
        f"        error_page {SHED_STATUS} = @shed;\n"
        "        error_page 413 = @too_large;\n"
        "        error_page 502 503 = @unreachable;\n"
        "        error_page 504 = @upstream_timeout;\n"
        "\n"
        "        location / {\n"
        f"            limit_conn scatter_root {plan.cap};\n"
        f"            limit_conn_status {SHED_STATUS};\n"
        "            limit_conn_log_level info;\n"
        "            grpc_pass grpc://scatter_root;\n"
        "            grpc_connect_timeout 5s;\n"
        f"            grpc_read_timeout {plan.upstream_timeout_s}s;  # root's max_deadline_ms + slack\n"
        f"            grpc_send_timeout {plan.upstream_timeout_s}s;\n"
        "        }\n"
        "        location /grpc.health.v1.Health/ {  # probes are never shed\n"
        "            grpc_pass grpc://scatter_root;\n"
        "        }\n"
        "\n"
        + _grpc_error("@shed", RESOURCE_EXHAUSTED, shed)
        + _grpc_error("@too_large", RESOURCE_EXHAUSTED, big)
        + _grpc_error("@unreachable", UNAVAILABLE, down)
        + _grpc_error("@upstream_timeout", DEADLINE_EXCEEDED, slow)
        + "    }\n}\n"
    )


@dataclass(frozen=True, slots=True)
class NginxFront:
    address: str  # host:port clients connect to
    process: subprocess.Popen[bytes]
    prefix: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def _accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def run_nginx(plan: FrontPlan, prefix: Path, nginx: str = "nginx", ready_timeout: float = 10.0) -> Iterator[NginxFront]:
    """Start nginx in the foreground with ``plan`` in folder ``prefix``; stop it (by its handle) on exit.

    For tests and benchmarks on one machine; in production a supervisor or a
    container runs the printed file. Its log (stderr) is ``prefix/nginx.log``.
    """
    binary = shutil.which(nginx)
    if binary is None:
        raise FileNotFoundError(f"{nginx} is not installed (Debian: apt-get install nginx)")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(nginx_config(plan))
    argv = [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    with (prefix / "nginx.log").open("ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + ready_timeout
        while not _accepts(plan.listen):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx did not start listening on {plan.listen}: {(prefix / 'nginx.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)
        yield NginxFront(plan.listen, process, prefix)
    finally:
        if process.poll() is None:
            process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scatter front",
        description="Print an nginx configuration for an admission front before a root, its limits derived "
        "from the root's config (docs/operations.md, 'Shedding in front of the root').",
    )
    parser.add_argument("kind", choices=["nginx"], help="the front's software")
    parser.add_argument("--config", type=Path, required=True, help="the root's TOML config")
    parser.add_argument("--listen", required=True, help="HOST:PORT the front listens on (clients connect here)")
    parser.add_argument("--cap", type=int, help="concurrent requests let through (default: max_in_flight less 1/16)")
    parser.add_argument("--workers", type=int, default=1, help="nginx worker processes (default 1)")
    parser.add_argument("-o", "--out", type=Path, help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        plan = plan_front(load_root_config(args.config), args.listen, args.cap, args.workers)
    except ConfigError as exc:
        print(f"scatter front: {exc}", file=sys.stderr)
        return 2
    text = nginx_config(plan, str(args.config))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text)
    except OSError as exc:
        print(f"scatter front: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    return 0
