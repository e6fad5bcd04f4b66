"""Real processes for integration tests: start, find the address, wait for health, stop.

Rules: a process is started with ``--port 0`` (or an equivalent) and its
address is read from the ``scatter: ROLE listening on ADDRESS`` line the
serving host prints, so there is no pick-a-free-port race. Every process is
stopped through its own ``Popen`` handle (``Proc.stop``: SIGTERM, wait, then
SIGKILL), never by name; use it in a fixture finalizer. Children get the
repository on ``PYTHONPATH`` and none of the caller's ``SCATTER_*`` variables,
so tests do not depend on how the package was installed or on the shell.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"  # programs the tests run (real, linted files)
PYTHON = sys.executable
LISTENING = re.compile(r"scatter: (?P<role>\S+) listening on (?P<address>\S+)")

# Generous: a cold Python importing grpc and numpy on a busy 2-core CI machine.
START_TIMEOUT = 30.0


class Proc:
    """A child process, its combined stdout/stderr (drained by a thread) and its address."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.cmd = list(cmd)
        self.lines: list[str] = []
        self.address = ""
        self._listening = threading.Event()
        self.popen = subprocess.Popen(
            self.cmd,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"read-{self.popen.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        # Keeps draining after the address is found: a full pipe would block the child.
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            match = LISTENING.search(line)
            if match and not self.address:
                self.address = match["address"]
                self._listening.set()
        self._listening.set()  # EOF: the process exited; waiters look at returncode

    def wait_listening(self, timeout: float) -> str:
        if not self._listening.wait(timeout) or not self.address:
            output = self.output()
            self.stop()
            raise RuntimeError(f"{self.cmd} did not start listening within {timeout}s:\n{output}")
        return self.address

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 5.0) -> str:
        """The output once it contains ``text`` (the process logs after it answers), or fail."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the output after {timeout} s:\n{self.output()}")
            time.sleep(0.02)
        return self.output()

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        self._close()
        return code

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit status."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._close()
        return self.popen.returncode

    def _close(self) -> None:
        self._reader.join(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCATTER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def start_process(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path = REPO,
    timeout: float = START_TIMEOUT,
) -> Proc:
    """Start ``cmd`` and return once it printed its listening address (``proc.address``).

    It may not be SERVING yet: call ``wait_healthy`` for that.
    """
    proc = Proc(cmd, child_env(env), cwd)
    proc.wait_listening(timeout)
    return proc


def health_status(address: str, service: str = "", timeout: float = 2.0) -> str:
    """The health status name ("SERVING", "NOT_SERVING", ...) or the RPC error code name."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def wait_healthy(address: str, timeout: float = START_TIMEOUT, service: str = "") -> None:
    """Poll the standard health service until ``service`` is SERVING, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    status = "never answered"
    while time.monotonic() < deadline:
        status = health_status(address, service, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        if status == "SERVING":
            return
        time.sleep(0.05)
    raise TimeoutError(f"{address} not SERVING after {timeout}s (last: {status})")


def start_healthy(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path = REPO,
    timeout: float = START_TIMEOUT,
) -> Proc:
    """``start_process`` then ``wait_healthy``; stops the process if it never gets healthy."""
    proc = start_process(cmd, env, cwd=cwd, timeout=timeout)
    try:
        wait_healthy(proc.address, timeout)
    except BaseException:
        proc.stop()
        raise
    return proc
