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

import ipaddress
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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


# How long a command that should refuse its input at once may take (a cold start of grpc and numpy).
COMMAND_TIMEOUT = 60.0


def run(
    cmd: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path = REPO, timeout: float = COMMAND_TIMEOUT
) -> tuple[int, str]:
    """Run ``cmd`` to its end (at most ``timeout`` s); its exit status and stderr.

    A command still running at the timeout started instead of refusing: it
    gets SIGTERM (``scatter up`` stops its children), then SIGKILL.
    """
    proc = subprocess.Popen(
        cmd, env=child_env(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stderr = ""
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                stderr += proc.communicate(timeout=30)[1]
            except subprocess.TimeoutExpired:
                proc.kill()
                stderr += proc.communicate()[1]
    return proc.returncode, stderr


def assert_refused(code: int, stderr: str, names: str) -> None:
    """What a command shows for bad input: exit status 2, one line naming ``names``, no traceback."""
    assert "Traceback" not in stderr, stderr
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if names in line]
    assert len(lines) == 1, stderr


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


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout:g} s")
        time.sleep(0.02)


_TCP_ESTABLISHED = "01"  # the st column of /proc/net/tcp (include/net/tcp_states.h)


def _proc_net_address(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``0100007F:1F90`` (/proc/net/tcp: the address in host byte order, 32-bit words) as (ip, port)."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, int(port, 16)
    return ip, int(port, 16)


def connected(pid: int, address: str) -> bool:
    """Whether process ``pid`` holds an established TCP connection to ``address`` ("host:port").

    Read from procfs (Linux): the process's socket inodes, matched against
    its network namespace's TCP table. It shows what no RPC can: that a
    client's channel has (re)connected to a server, before any call uses it.
    """
    host, port = address.rsplit(":", 1)
    peer = (ipaddress.ip_address(host.strip("[]")), int(port))
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False  # the process has exited
    inodes = set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed since the listing (the listing's own descriptor, for one)
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == _TCP_ESTABLISHED and fields[9] in inodes and _proc_net_address(fields[2]) == peer:
                return True
    return False


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time in clock ticks) of ``pid`` from /proc/PID/stat, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": comm may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def children_of(pid: int) -> dict[int, int]:
    """The live children of ``pid`` (Linux procfs): child pid -> its start time, which tells a
    process from a later one that reuses its pid."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid and stat[0] not in "ZX":
                found[int(entry)] = stat[2]
    return found


def running(pid: int, started: int) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (a zombie does not)."""
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in "ZX"
