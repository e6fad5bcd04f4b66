"""The local runtime and the CLI as a user runs them: scatter up, scatter query,
restarts of crashed children, clear errors for broken deployments."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scatter.runtime import Deployment, StartupError, check_health, parse_deployment
from tests._cluster import PROBE_DIR, probe_cluster
from tests._procs import running


def scatter(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scatter.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_crashed_child_is_restarted() -> None:
    runtime = {"ready_timeout_ms": 30_000, "restart_backoff_ms": 100}
    with probe_cluster(shards=1, replicas=1, extra={"runtime": runtime}) as dep:
        child = dep.children["leaf-0-0"]
        old = child.pid
        dep.kill("leaf-0-0", signal.SIGKILL, restart=True)
        deadline = time.monotonic() + 15
        while child.pid == old or check_health(child.address) != "SERVING":
            assert time.monotonic() < deadline, "the supervisor did not restart the crashed leaf"
            time.sleep(0.05)
        assert child.restarts == 1


def test_child_revived_from_a_thread_outlives_that_thread() -> None:
    # Children die with their supervisor (a parent-death signal), which Linux ties to the
    # thread that forked them: one revived from a short-lived thread must survive its end.
    with probe_cluster(shards=1, replicas=1) as dep:
        dep.kill("leaf-0-0")
        reviver = threading.Thread(target=dep.revive, args=("leaf-0-0",))
        reviver.start()
        reviver.join(timeout=60)
        child = dep.children["leaf-0-0"]
        assert child.pid is not None and check_health(child.address) == "SERVING"
        started = int(Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # a SIGKILL would come at once; give it a second
            assert running(child.pid, started), "the revived leaf died with the thread that revived it"
            time.sleep(0.05)
        assert child.running()


def test_broken_command_fails_startup_with_its_log() -> None:
    document = {
        "merge": {"command": ["{python}", "merge.py"]},
        "leaves": {"command": ["{python}", "-c", "import sys; print('no index here'); sys.exit(3)"]},
        "runtime": {"ready_timeout_ms": 10_000},
    }
    pattern = r"leaf-0-0 exited with code 3 before it was ready:\n.*no index here"
    with pytest.raises(StartupError, match=pattern), Deployment(parse_deployment(document, PROBE_DIR)):
        pass


def test_missing_command_fails_startup_with_its_log() -> None:
    document = {
        "merge": {"command": ["{python}", "merge.py"]},
        "leaves": {"command": ["/nonexistent/leaf", "--port", "{port}"]},
        "runtime": {"ready_timeout_ms": 10_000},
    }
    pattern = r"leaf-0-0 exited with code 127 before it was ready:\n.*cannot run '/nonexistent/leaf'"
    with pytest.raises(StartupError, match=pattern), Deployment(parse_deployment(document, PROBE_DIR)):
        pass


def test_scatter_up_reports_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[merge]\ncommand = ["m"]\n[leaves]\ncommand = ["l"]\nshard = 2\n')
    result = scatter("up", str(config))
    assert result.returncode == 2
    assert "unknown key 'leaves.shard'; did you mean 'shards'?" in result.stderr
    assert scatter("up", str(tmp_path / "missing.toml")).returncode == 2
    assert scatter("nonsense").returncode == 2


def test_scatter_up_and_query_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "scatter.toml"
    config.write_text(
        (PROBE_DIR / "scatter.toml").read_text().replace("127.0.0.1:50051", "127.0.0.1:0")
        + f"\n[runtime]\nready_timeout_ms = 30000\n# commands run in {PROBE_DIR}\n"
    )
    # Commands are relative to the config's folder: point them at the probe app.
    text = (
        config.read_text()
        .replace('"merge.py"', f'"{PROBE_DIR / "merge.py"}"')
        .replace('"leaf.py"', f'"{PROBE_DIR / "leaf.py"}"')
    )
    config.write_text(text)
    up = subprocess.Popen(
        [sys.executable, "-m", "scatter.cli", "up", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address = ""
        assert up.stdout is not None
        deadline = time.monotonic() + 60
        while not address and time.monotonic() < deadline:
            line = up.stdout.readline()
            match = re.search(r"root serving on (\S+)", line)
            address = match.group(1) if match else ""
        assert address, "scatter up did not print the root's address"
        result = scatter("query", address, "--type", "probe.v1.ProbeRequest", '{"value": 10}')
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["coverage"] == {"total": 4, "answered": 4}
        assert answer["payload"]["sum"] == str(sum(i + 1 + 10 for i in range(4)))  # uint64 is a JSON string
        bad = scatter("query", address, "--type", "probe.v1.ProbeRequest", '{"valu": 1}')
        assert bad.returncode == 2 and "not a valid probe.v1.ProbeRequest" in bad.stderr
        unknown = scatter("query", address, "--type", "nope.Missing", "{}")
        assert unknown.returncode == 2 and "unknown message type" in unknown.stderr
    finally:
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
