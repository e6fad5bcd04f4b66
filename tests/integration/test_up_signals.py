"""``scatter up`` and signals: it stops at any moment, also while its children
start, and no child outlives it, not even when it is SIGKILLed.

Each test runs ``scatter up`` as a user does (a subprocess on a deployment
file), finds its children in procfs (by parent pid, never by name) and
polls procfs until every one of them is gone. Leaves that are not Python
(``sleep``, ``sh``) stand for a Node or C++ leaf: nothing in them cooperates.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from loadtest.deployments import probe_document
from tests._cluster import PROBE_DIR
from tests._procs import REPO, child_env, children_of, running, wait_until

# Generous for a busy 2-core machine: SIGKILL and a kernel reparent take microseconds.
GONE_WITHIN = 10.0
# A startup that would last this long if nothing interrupted it: far beyond every bound below.
SLOW_START_MS = 120_000


def deployment_file(tmp_path: Path, leaves: Sequence[str] | None = None, shards: int = 2, **leaf_env: str) -> Path:
    """A probe deployment (merge, ``shards`` x 1 leaves, root) with absolute commands."""
    document: dict[str, Any] = probe_document(
        shards, 1, sections={"runtime": {"ready_timeout_ms": SLOW_START_MS * 2}}, leaf_env=leaf_env or None
    )
    document["merge"]["command"] = ["{python}", str(PROBE_DIR / "merge.py")]
    document["leaves"]["command"] = list(leaves) if leaves else ["{python}", str(PROBE_DIR / "leaf.py")]
    path = tmp_path / "scatter.toml"
    path.write_text(tomli_w.dumps(document))
    return path


@contextmanager
def scatter_up(config: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``scatter up CONFIG ARGS...``, killed by its handle if the test leaves it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "scatter.cli", "up", str(config), *args],
        env=child_env(),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def wait_for_children(proc: subprocess.Popen[str], count: int, timeout: float = 30.0) -> dict[int, int]:
    """The children of ``proc`` once there are ``count`` of them."""
    found: dict[int, int] = {}

    def enough() -> bool:
        nonlocal found
        assert proc.poll() is None, f"scatter up exited early: {proc.communicate()[0]}"
        found = children_of(proc.pid)
        return len(found) >= count

    wait_until(enough, timeout, f"scatter up started {count} children")
    return found


def command_name(pid: int) -> str:
    """The name the process ``pid`` runs under (it changes at exec), or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def assert_all_gone(children: dict[int, int], timeout: float = GONE_WITHIN) -> None:
    wait_until(
        lambda: not any(running(pid, started) for pid, started in children.items()),
        timeout,
        f"every child of scatter up gone (left: {[p for p, s in children.items() if running(p, s)]})",
    )


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"{text!r} not printed by scatter up:\n{''.join(seen)}")


def test_sigkill_during_startup_leaves_no_child(tmp_path: Path) -> None:
    # The leaves never become SERVING: scatter up is still starting when it dies.
    with scatter_up(deployment_file(tmp_path, ["sleep", "600"])) as up:
        children = wait_for_children(up, 3)  # the merge and two leaves
        up.kill()
        assert_all_gone(children)


def test_sigkill_after_startup_leaves_no_child(tmp_path: Path) -> None:
    with scatter_up(deployment_file(tmp_path)) as up:
        read_until(up, "root serving on")
        children = children_of(up.pid)
        assert len(children) == 4  # merge, two leaves, root
        up.kill()
        assert_all_gone(children)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_startup_stops_at_once(tmp_path: Path, sig: signal.Signals) -> None:
    # Python leaves in a long start hook (an index being loaded): the signal
    # cancels the hook, and scatter up does not wait for the startup to end.
    config = deployment_file(tmp_path, ["{python}", str(PROBE_DIR / "leaf.py"), f"--start-delay-ms={SLOW_START_MS}"])
    logs = tmp_path / "logs"
    with scatter_up(config, "--log-dir", str(logs)) as up:
        children = wait_for_children(up, 3)
        # In their start hook: a leaf binds (and says so) before the hook starts.
        listening = [logs / f"leaf-{shard}-0.log" for shard in range(2)]
        wait_until(
            lambda: all(log.is_file() and "listening on" in log.read_text() for log in listening), 30, "leaves up"
        )
        up.send_signal(sig)
        assert up.wait(timeout=GONE_WITHIN) == 0
        assert "interrupted while starting" in up.communicate()[0]
        assert_all_gone(children, timeout=1.0)


def test_second_signal_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    # A leaf that ignores SIGTERM would hold the stop for the whole grace period (15 s).
    stubborn = ["sh", "-c", "trap '' TERM; exec sleep 600"]
    with scatter_up(deployment_file(tmp_path, stubborn, shards=1)) as up:
        children = wait_for_children(up, 2)
        # Until the shell has run its trap and exec'ed sleep, SIGTERM would still end it.
        wait_until(lambda: any(command_name(pid) == "sleep" for pid in children), 30, "the leaf ignores SIGTERM")
        up.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            up.wait(timeout=1.0)  # waiting out the grace period for the stubborn leaf
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=GONE_WITHIN) == 0
        assert_all_gone(children, timeout=1.0)
