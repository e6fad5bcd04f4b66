"""Bad configuration, flags and environment, through the real commands (issue #13, findings 5 and 6).

Each case runs a real process (``python -m root.server``, ``python -m
scatter.cli up``, a leaf) with one bad input and checks what a user sees:
exit status 2, one line naming the key, flag or variable to fix, and no
Python traceback. Every process is bounded by a timeout and killed by its
own handle if it outlives it.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from root.config import parse_root_config
from root.errors import ConfigError
from tests._cluster import PROBE_DIR
from tests._procs import assert_refused, run
from tests._tls import make_ca, make_cert

# An IPv6 address no machine has (RFC 3849, documentation only): binding it always fails.
FOREIGN_V6 = "[2001:db8::1]:0"
UNRESOLVABLE = "no-such-host.invalid:0"  # RFC 6761: .invalid never resolves


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on, for as long as the test runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _root_doc(**root: Any) -> dict[str, Any]:
    return {"root": root, "merge": {"address": "127.0.0.1:1"}, "shards": [{"replicas": ["127.0.0.1:2"]}]}


def root_server(tmp_path: Path, doc: dict[str, Any] | bytes | None = None, *args: str, **env: str) -> tuple[int, str]:
    path = tmp_path / "root.toml"
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    elif doc is not None:
        path.write_text(tomli_w.dumps(doc))
    else:
        path = tmp_path  # a directory
    return run([sys.executable, "-m", "root.server", "--config", str(path), *args], env)


@pytest.mark.parametrize(
    ("doc", "names"),
    [
        (b'[root]\nlisten = "\xff"\n', "not UTF-8 text"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
        (None, "is a directory"),
        (_root_doc(listen=UNRESOLVABLE), "root.listen: cannot listen on no-such-host.invalid:0"),
        (_root_doc(listen=FOREIGN_V6), "root.listen: cannot listen on [2001:db8::1]:0"),
        (_root_doc(listen="127.0.0.1:0", metrics_listen=UNRESOLVABLE), "root.metrics_listen: cannot listen"),
        (_root_doc(listen="127.0.0.1:0", metrics_listen=FOREIGN_V6), "root.metrics_listen: cannot listen"),
        # found by the fuzz suite: accepted, then a ValueError traceback when the HTTP server started
        (_root_doc(listen="127.0.0.1:0", metrics_listen="unix:/tmp/m.sock"), "root.metrics_listen: 'unix:/tmp/m.sock'"),
        (_root_doc(grace_seconds=float("nan")), "root.grace_seconds must be a finite number, got nan"),
        (_root_doc(max_message_bytes=2**31), "root.max_message_bytes must be in [1, 2147483647]"),
        ({**_root_doc(), "replicas": {"max_ejection_time_ms": 1.7e308}}, "replicas.max_ejection_time_ms must be <="),
    ],
)
def test_root_refuses_bad_files(tmp_path: Path, doc: dict[str, Any] | bytes | None, names: str) -> None:
    assert_refused(*root_server(tmp_path, doc), names)


@pytest.mark.parametrize("key", ["listen", "metrics_listen"])
def test_root_refuses_an_address_in_use(tmp_path: Path, busy_port: int, key: str) -> None:
    doc = _root_doc(**{"listen": "127.0.0.1:0", key: f"127.0.0.1:{busy_port}"})
    assert_refused(*root_server(tmp_path, doc), f"root.{key}: cannot listen on 127.0.0.1:{busy_port}")


def test_root_refuses_bad_log_settings(tmp_path: Path) -> None:
    assert_refused(*root_server(tmp_path, _root_doc(), "--log-level", "foo"), "--log-level: expected one of DEBUG")
    code, stderr = root_server(tmp_path, _root_doc(), SCATTER_LOG_FORMAT="xml")
    assert_refused(code, stderr, "SCATTER_LOG_FORMAT='xml': expected 'text' or 'json'")


def _up_file(tmp_path: Path, extra: str = "", leaf: str = '"{python}", "leaf.py"') -> Path:
    path = tmp_path / "scatter.toml"
    path.write_text(
        f'[merge]\ncommand = ["{{python}}", "{PROBE_DIR / "merge.py"}"]\n'
        f"[leaves]\ncommand = [{leaf.replace('leaf.py', str(PROBE_DIR / 'leaf.py'))}]\n{extra}"
    )
    return path


def scatter_up(path: Path, **env: str) -> tuple[int, str]:
    return run([sys.executable, "-m", "scatter.cli", "up", str(path)], env)


@pytest.mark.parametrize(
    ("extra", "leaf", "names"),
    [
        ("[runtime]\nready_timeout_ms = nan\n", '"{python}", "leaf.py"', "runtime.ready_timeout_ms must be a finite"),
        ("", '"no-such-leaf-binary"', "leaves.command: 'no-such-leaf-binary' is not a program on PATH"),
        ("[root]\nlisten = 'no-such-host.invalid:0'\n", '"{python}", "leaf.py"', "root.listen: cannot listen"),
        ("[root]\nlisten = '[2001:db8::1]:0'\n", '"{python}", "leaf.py"', "root.listen: cannot listen"),
        ("[replicas]\nbase_ejection_time_ms = 1e300\n", '"{python}", "leaf.py"', "replicas.base_ejection_time_ms"),
        ("[root]\nmax_message_bytes = 10\n", '"{python}", "leaf.py"', "root.max_message_bytes = 10 leaves no room"),
    ],
)
def test_scatter_up_refuses_bad_files(tmp_path: Path, extra: str, leaf: str, names: str) -> None:
    assert_refused(*scatter_up(_up_file(tmp_path, extra, leaf)), names)


def test_scatter_up_refuses_unreadable_files_and_environment(tmp_path: Path, busy_port: int) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[merge]\ncommand = ['\xff']\n")
    assert_refused(*scatter_up(binary), "not UTF-8 text")
    assert_refused(*scatter_up(tmp_path), "is a directory")
    code, stderr = scatter_up(_up_file(tmp_path), SCATTER_LOG_FORMAT="xml")
    assert_refused(code, stderr, "SCATTER_LOG_FORMAT='xml'")
    busy = _up_file(tmp_path, f"[root]\nlisten = '127.0.0.1:{busy_port}'\n")
    assert_refused(*scatter_up(busy), f"root.listen: cannot listen on 127.0.0.1:{busy_port}")


def leaf(*args: str, **env: str) -> tuple[int, str]:
    return run([sys.executable, str(PROBE_DIR / "leaf.py"), *args], env, cwd=PROBE_DIR)


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (("--drain-delay-seconds", "5000"), {}, "--drain-delay-seconds: expected a number of seconds in [0, 3600]"),
        (("--drain-delay-seconds", "1e400"), {}, "--drain-delay-seconds: expected a number of seconds"),
        (("--grace-seconds", "inf"), {}, "--grace-seconds: expected a number of seconds in [0, 86400]"),
        ((), {"SCATTER_GRACE_SECONDS": "inf"}, "SCATTER_GRACE_SECONDS='inf'"),
        (("--max-message-bytes", str(2**31)), {}, "--max-message-bytes: expected an integer 1..2147483647"),
        ((), {"SCATTER_LOG_FORMAT": "xml"}, "SCATTER_LOG_FORMAT='xml': expected 'text' or 'json'"),
        (("--host", "no-such-host.invalid"), {}, "--host/--port/--address"),
        (("--address", FOREIGN_V6), {}, "--host/--port/--address"),
        (("--metrics-address", UNRESOLVABLE), {}, "--metrics-address (SCATTER_METRICS_ADDRESS): cannot listen"),
        (("--metrics-address", "unix:/tmp/m.sock"), {}, "--metrics-address: 'unix:/tmp/m.sock': the metrics"),
    ],
)
def test_leaf_refuses_bad_flags_and_environment(args: tuple[str, ...], env: dict[str, str], names: str) -> None:
    assert_refused(*leaf(*args, **env), names)


def test_leaf_refuses_a_port_in_use(busy_port: int) -> None:
    assert_refused(*leaf("--port", str(busy_port)), "--host/--port/--address")
    assert_refused(*leaf("--metrics-address", f"127.0.0.1:{busy_port}"), "--metrics-address")


def test_tls_files_that_are_not_pem_are_refused_at_start(tmp_path: Path) -> None:
    make_ca(tmp_path, "ca")
    make_cert(tmp_path, "ca", "server")
    make_cert(tmp_path, "ca", "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cert, key, ca = str(tmp_path / "server.pem"), str(tmp_path / "server.key"), str(tmp_path / "ca.pem")
    good = {"cert_file": cert, "key_file": key}
    assert parse_root_config({**_root_doc(), "tls": good}).tls is not None
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tls": {"cert_file": str(garbage), "key_file": key}}, r"^tls.cert_file: '.*garbage.pem' is not a PEM"),
        ({"tls": {"cert_file": cert, "key_file": str(garbage)}}, r"^tls.key_file: '.*garbage.pem' is not an"),
        ({"tls": {**good, "client_ca_file": str(garbage)}}, r"^tls.client_ca_file: '.*garbage.pem' is not a PEM"),
        ({"tls": {"cert_file": cert, "key_file": str(tmp_path / "other.key")}}, r"^tls.key_file: .* of the cert"),
        ({"upstream_tls": {"ca_file": str(garbage)}}, r"^upstream_tls.ca_file: '.*garbage.pem' is not a PEM"),
        ({"upstream_tls": {"ca_file": ca, "cert_file": cert, "key_file": str(garbage)}}, r"^upstream_tls.key_file"),
    ]
    for section, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_root_config({**_root_doc(), **section})
    # Through the real commands: the root, and a leaf's flags.
    assert_refused(*root_server(tmp_path, {**_root_doc(), "tls": {**good, "cert_file": str(garbage)}}), "tls.cert_file")
    assert_refused(*leaf("--tls-cert", str(garbage), "--tls-key", key), "--tls-cert (SCATTER_TLS_CERT)")
    assert_refused(*leaf("--tls-cert", cert, "--tls-key", str(garbage)), "--tls-key (SCATTER_TLS_KEY)")
