"""``scatter front nginx``: the front's limits follow the root's config; bad input gets a message."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from root.config import RootConfig, parse_root_config
from root.errors import ConfigError
from scatter.front import front_cap, main, nginx_config, plan_front

BASE = {"merge": {"address": "127.0.0.1:1"}, "shards": [{"replicas": ["127.0.0.1:2"]}]}


def config(**root: object) -> RootConfig:
    return parse_root_config({"root": {"listen": "0.0.0.0:50051", **root}, **BASE})


@pytest.mark.parametrize(
    ("max_in_flight", "workers", "cap"), [(1, 1, 1), (2, 1, 1), (8, 1, 7), (16, 1, 15), (128, 1, 120), (64, 2, 120)]
)
def test_cap_sits_just_under_what_the_root_admits(max_in_flight: int, workers: int, cap: int) -> None:
    assert front_cap(max_in_flight, workers) == cap


def test_plan_follows_the_root_config() -> None:
    plan = plan_front(config(max_in_flight=64, max_message_bytes=1000, max_deadline_ms=20_000), "0.0.0.0:8080")
    assert (plan.upstream, plan.cap, plan.max_body_bytes, plan.upstream_timeout_s) == ("127.0.0.1:50051", 60, 1005, 26)
    text = nginx_config(plan)
    for line in (
        "listen 0.0.0.0:8080 http2;",
        "limit_conn scatter_root 60;",
        "client_max_body_size 1005;",
        "grpc_read_timeout 26s;",
        "server 127.0.0.1:50051;",
        'add_header grpc-message "root front is at its limit of 60 requests in flight; retry with backoff" always;',
    ):
        assert line in text, line


def test_a_root_on_port_zero_or_a_bad_listen_is_refused_with_a_message() -> None:
    with pytest.raises(ConfigError, match="listen has port 0"):
        plan_front(parse_root_config({"root": {"listen": "127.0.0.1:0"}, **BASE}), "127.0.0.1:8080")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        plan_front(config(), "8080")


def test_cli_prints_a_config_nginx_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root.toml"
    root.write_text(
        '[root]\nlisten = "127.0.0.1:50051"\n[merge]\naddress = "127.0.0.1:1"\n[[shards]]\nreplicas = ["x:2"]\n'
    )
    assert (
        main(["nginx", "--config", str(root), "--listen", "127.0.0.1:50050", "-o", str(tmp_path / "nginx.conf")]) == 0
    )
    assert main(["nginx", "--config", str(tmp_path / "missing.toml"), "--listen", "127.0.0.1:1"]) == 2
    assert "scatter front:" in capsys.readouterr().err
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed: the syntax check needs it")
    check = subprocess.run(
        ["nginx", "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
