"""Start, watch, restart and stop the processes of a local deployment.

A pod supervisor in miniature: leaves and merge start first, in parallel;
each must report SERVING on the standard health service within the ready
timeout; then the root starts with a config naming their addresses. A
watcher thread restarts any child that exits while the deployment is up,
with exponential backoff. Stopping sends SIGTERM to the root first (so it
drains while its leaves still answer), then to the rest, and SIGKILLs what
has not exited after the grace period.

No child outlives the supervisor, however it ends (docs/operations.md,
"Signals"). A signal stops the deployment at any moment: ``interrupt()``
(the CLI's SIGINT/SIGTERM handler) makes a startup in progress give up
within one health-check poll, and a second one cuts the grace period short.
If the supervisor itself is SIGKILLed, the kernel kills every child: each
is started with PR_SET_PDEATHSIG = SIGKILL (Linux), set by a tiny program
that then execs the command (``_die_with_parent.py``), so it holds for any
command (a Node or C++ leaf, a shell script) without the child's
cooperation, and the pid the supervisor holds is the command's own. The
choices turned down: a pipe the children watch needs code in every child,
or a wrapper process per child that stays between the supervisor and the
command (hiding its pid from SIGSTOP fault tests and from the operator); a
watchdog process holding the children's pids can itself be killed and
races pid reuse; a ``preexec_fn`` hangs with grpc loaded (see that file).
The parent-death signal is tied to the *thread* that forked the child, so
every child of a deployment is started by one spawner thread that lives
until the last child is stopped (see ``_Spawner``).

Synchronous on purpose: it manages a handful of processes, and a plain
``with Deployment(spec) as dep:`` is easy to use from the CLI and the tests.
Every process is tracked by its own Popen handle, never found by name.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import tomli_w
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scatter.runtime.spec import DeploymentSpec, shard_env, shards_text
from scatter_common.tls import ClientTls, sync_channel

# How often the watcher looks at its children; a crash is noticed this late.
_WATCH_INTERVAL = 0.1
# A child that stayed up this long has its restart backoff reset.
_STABLE_AFTER = 10.0


# A second signal while stopping: children still running after this long are SIGKILLed.
_HURRY_POLL = 0.05

T = TypeVar("T")


class StartupError(RuntimeError):
    """A child did not become healthy; the message includes the end of its log."""


class StartupInterrupted(Exception):
    """``interrupt()`` was called (a signal) before the deployment was up; it has been stopped."""


# Execs a command with a parent-death signal (Linux); elsewhere commands run as they are.
_DIE_WITH_PARENT = str(Path(__file__).with_name("_die_with_parent.py"))
_PDEATHSIG = sys.platform.startswith("linux")


def _dying_with(parent: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run so that the kernel SIGKILLs it when process ``parent`` dies."""
    if not _PDEATHSIG:
        return list(argv)
    # -I -S: a bare interpreter, nothing but the standard library (about 15 ms).
    return [sys.executable, "-I", "-S", _DIE_WITH_PARENT, str(parent), *argv]


class _Spawner:
    """The one thread that starts every child of a deployment.

    Linux sends the parent-death signal when the thread that forked the
    child ends, not the process (prctl(2)): a child restarted by the watcher
    thread, or revived from a test's worker thread, would be SIGKILLed the
    moment that thread finished, drain or no drain. This thread lives until
    ``close()``, after every child has been stopped.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the spawner thread and return its result (or raise its exception)."""
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="scatter-spawner", daemon=True)
                self._thread.start()
        if threading.current_thread() is self._thread:
            return job()
        done: Future[T] = Future()
        self._jobs.put((job, done))
        return done.result()

    def _serve(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done = item
            try:
                done.set_result(job())
            except BaseException as exc:  # handed to the caller, re-raised there
                done.set_exception(exc)

    def close(self) -> None:
        with self._guard:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()


# Ports handed to children come from below Linux's ephemeral range (32768-60999
# by default), where the kernel never picks a port for a connection or a bind
# to port 0: between our check and the child's bind, nothing else takes it.
_PORT_RANGE = (20000, 32768)
_handed_out: set[int] = set()
_rng = random.Random()


def free_port(host: str = "127.0.0.1", count: int = 1) -> int:
    """A free port for a child to bind, never the same one twice in this process.

    With ``count`` > 1 the ports from the one returned up to ``count - 1``
    above it are all free and handed out (a multi-process root binds its
    worker N's metrics on the configured port + N).
    """
    for _ in range(200):
        port = _rng.randrange(_PORT_RANGE[0], _PORT_RANGE[1] - count + 1)
        block = range(port, port + count)
        if any(p in _handed_out for p in block) or not all(_can_bind(host, p) for p in block):
            continue
        _handed_out.update(block)
        return port
    if count > 1:
        raise RuntimeError(f"no {count} consecutive free ports in {_PORT_RANGE[0]}-{_PORT_RANGE[1]}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: let the kernel pick
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_health(address: str, timeout: float = 0.5, tls: ClientTls | None = None) -> str:
    """The overall health status of the server at ``address`` ("SERVING", ..., or "UNREACHABLE")."""
    with sync_channel(address, tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


class Child:
    """One supervised process: how to start it, its handle, its restarts."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, address: str, log: Path):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.address = address
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.paused = False  # True while a test or an operator holds it down
        self.metrics_address = ""  # http host:port of /metrics, when assigned
        self.http_address = ""  # a root's HTTP/JSON ingress host:port ([http] listen), when it has one
        self.tls: ClientTls | None = None  # how the supervisor's health checks reach it
        # Runs the Popen; a Deployment sets its spawner thread (see _Spawner).
        self.spawn: Callable[[Callable[[], subprocess.Popen[bytes]]], subprocess.Popen[bytes]] = _call

    def start(self) -> None:
        argv = _dying_with(os.getpid(), self.argv)

        def popen() -> subprocess.Popen[bytes]:
            with open(self.log_path, "ab") as log:
                return subprocess.Popen(
                    argv,
                    cwd=self.cwd,
                    env={**os.environ, **self.env},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in a terminal reaches the supervisor only
                )

        self.proc = self.spawn(popen)
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout: float, interrupted: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if interrupted is not None and interrupted.is_set():
                raise StartupInterrupted(f"interrupted while waiting for {self.name}")
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise StartupError(f"{self.name} exited with code {code} before it was ready:\n{self.log_tail()}")
            if check_health(self.address, tls=self.tls) == "SERVING":
                return
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{self.name} at {self.address} not SERVING after {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)


def _call(job: Callable[[], T]) -> T:
    return job()


def stop_children(children: Sequence[Child], grace: float, hurry: threading.Event | None = None) -> None:
    """SIGTERM every child at once, wait up to ``grace`` seconds in all, then SIGKILL what is left.

    Each child is stopped by its own handle. A paused (SIGSTOPped) child is
    continued first: a stopped process cannot handle SIGTERM. Once ``hurry``
    is set (a second Ctrl-C), what is left is SIGKILLed at once.
    """
    for child in children:
        if child.paused:
            child.signal(signal.SIGCONT)
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        if child.proc is None:
            continue
        while True:
            left = deadline - time.monotonic()
            if hurry is not None and hurry.is_set():
                left = 0.0
            try:
                child.proc.wait(timeout=max(0.0, min(left, _HURRY_POLL) if hurry is not None else left))
                break
            except subprocess.TimeoutExpired:
                if left <= 0:
                    child.proc.kill()
                    child.proc.wait()
                    break


class Deployment:
    """A running local deployment. Use as a context manager."""

    def __init__(self, spec: DeploymentSpec, log_dir: Path | None = None, quiet: bool = True) -> None:
        self.spec = spec
        self._tmp = tempfile.TemporaryDirectory(prefix="scatter-up-") if log_dir is None else None
        # Absolute: children run in the deployment file's folder, not ours.
        self.run_dir: Path = Path(self._tmp.name) if self._tmp is not None else Path(log_dir or ".").resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.quiet = quiet
        self.children: dict[str, Child] = {}
        self.root_address = ""
        self._stopping = threading.Event()
        self._interrupted = threading.Event()  # a signal: give up starting, then stop
        self._hurry = threading.Event()  # a second signal: SIGKILL what is still running
        self._spawner = _Spawner()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self.client_tls: ClientTls | None = None
        self._tls_env: dict[str, str] = {}
        if spec.tls is not None:
            t = spec.tls
            mutual = t.mutual
            self.client_tls = ClientTls(t.ca_file, t.cert_file if mutual else "", t.key_file if mutual else "")
            self._tls_env = {"SCATTER_TLS_CERT": t.cert_file, "SCATTER_TLS_KEY": t.key_file}
            if mutual:
                self._tls_env["SCATTER_TLS_CLIENT_CA"] = t.ca_file

    # -- building the children -------------------------------------------------

    def _format(self, command: Sequence[str], **values: object) -> list[str]:
        values = {"python": sys.executable, "config_dir": str(self.spec.directory), **values}
        try:
            return [part.format(**values) for part in command]
        except (KeyError, IndexError, ValueError) as exc:
            raise StartupError(f"bad placeholder in command {list(command)}: {exc}") from None

    def _child(self, name: str, command: Sequence[str], env: Mapping[str, str], **values: object) -> Child:
        port = free_port()
        metrics = f"127.0.0.1:{free_port()}"
        env = {
            **env,
            **self._tls_env,
            "SCATTER_HOST": "127.0.0.1",
            "SCATTER_PORT": str(port),
            "SCATTER_METRICS_ADDRESS": metrics,
        }
        child = Child(
            name,
            self._format(command, port=port, **values),
            env,
            self.spec.directory,
            f"127.0.0.1:{port}",
            self.run_dir / f"{name}.log",
        )
        child.metrics_address = metrics
        child.tls = self.client_tls
        child.spawn = self._spawner.run
        self.children[name] = child
        return child

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def interrupt(self) -> None:
        """Stop soon, from a signal handler or another thread: the first call makes a startup
        in progress raise ``StartupInterrupted`` (``__enter__`` then stops what it started);
        a second one makes ``stop`` SIGKILL at once instead of waiting out the grace period."""
        if self._interrupted.is_set():
            self._hurry.set()
        self._interrupted.set()

    def _check_interrupted(self) -> None:
        if self._interrupted.is_set():
            raise StartupInterrupted("interrupted while starting")

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()

    def start(self) -> None:
        spec = self.spec
        merge = self._child("merge", spec.merge.command, spec.merge.env)
        leaves: list[list[Child]] = []  # per shard, its replicas (a process serving several is in each list)
        for served in spec.process_shards():
            first = served[0]
            name = shards_text(served)
            replicas = []
            for replica in range(spec.replicas):
                env = {
                    **spec.leaves.env,
                    **shard_env(served, spec.shards),
                    "SCATTER_REPLICA_ID": f"shard{name}-replica{replica}",
                }
                replicas.append(
                    self._child(
                        f"leaf-{name}-{replica}",
                        spec.leaves.command,
                        env,
                        shard=first,
                        shards=spec.shards,
                        replica=replica,
                    )
                )
            leaves.extend(replicas for _ in served)
        groups = self._group_slices()
        combiners = [self._child(f"combiner-{g}", spec.tree.combiner.command, spec.tree.combiner.env) for g in
                     range(len(groups))] if spec.tree is not None else []  # fmt: skip
        for child in self.children.values():
            self._check_interrupted()
            child.start()
        for child in list(self.children.values()):
            child.wait_healthy(spec.ready_timeout, self._interrupted)

        addresses = [[c.address for c in shard] for shard in leaves]
        document = spec.root_document(merge.address, addresses)
        if spec.tree is not None:
            # Two levels: a root per group of shards (with a combiner as its
            # merge), and the top root over those roots.
            mids = []
            for g, (first, count) in enumerate(groups):
                mid_doc = spec.root_document(combiners[g].address, addresses[first : first + count])
                mid_doc["root"] = {**spec.tree.root, "shard_offset": first, "total_shards": spec.shards}
                mid_doc.pop("http", None)  # clients call the top root; a mid-level root has no HTTP door
                mids.append(self._start_root(f"root-{g}", mid_doc))
            for mid in mids:
                mid.wait_healthy(spec.ready_timeout, self._interrupted)
            document["shards"] = [
                {"replicas": [mid.address], "leaves": count} for mid, (_, count) in zip(mids, groups, strict=True)
            ]
        root = self._start_root("root", document)
        root.wait_healthy(spec.ready_timeout, self._interrupted)
        self.root_address = root.address
        self._watcher = threading.Thread(target=self._watch, name="scatter-supervisor", daemon=True)
        self._watcher.start()

    def _group_slices(self) -> list[tuple[int, int]]:
        """(first shard, shards) of each mid-level root of a two-level deployment."""
        if self.spec.tree is None:
            return []
        shards, groups = self.spec.shards, self.spec.tree.groups
        size, extra = divmod(shards, groups)
        slices, first = [], 0
        for g in range(groups):
            count = size + (1 if g < extra else 0)
            slices.append((first, count))
            first += count
        return slices

    def _start_root(self, name: str, document: dict[str, Any]) -> Child:
        """Write a root config (free ports filled in) and start that root."""
        section = dict(document.get("root", {}))
        listen = str(section.get("listen", "127.0.0.1:0"))
        if listen.endswith(":0"):
            listen = f"{listen[:-2]}:{free_port()}"
        section["listen"] = listen
        workers = section.get("workers", 1)  # worker N serves metrics on the port + N: keep them all free
        block = workers if isinstance(workers, int) and 1 <= workers <= 1024 else 1
        section.setdefault("metrics_listen", f"127.0.0.1:{free_port(count=block)}")
        document = {**document, "root": section}
        http = dict(document.get("http", {}))
        if isinstance(http.get("listen"), str) and http["listen"].endswith(":0"):
            http["listen"] = f"{http['listen'][:-2]}:{free_port()}"
            document["http"] = http
        config_path = self.run_dir / f"{name}.toml"
        config_path.write_text(tomli_w.dumps(document))
        tomllib.loads(config_path.read_text())  # what we wrote must read back
        root = Child(
            name,
            [*self.spec.root_command, "--config", str(config_path)],
            {},
            self.spec.directory,
            listen,
            self.run_dir / f"{name}.log",
        )
        root.metrics_address = str(section["metrics_listen"])
        root.http_address = str(http.get("listen", ""))
        root.tls = self.client_tls
        root.spawn = self._spawner.run
        self.children[name] = root
        self._check_interrupted()
        root.start()
        return root

    # -- watching ----------------------------------------------------------------

    def _watch(self) -> None:
        backoff: dict[str, float] = {}
        restart_at: dict[str, float] = {}
        while not self._stopping.wait(_WATCH_INTERVAL):
            now = time.monotonic()
            with self._lock:
                for name, child in self.children.items():
                    if child.paused or child.running():
                        if child.running() and now - child.started_at > _STABLE_AFTER:
                            backoff.pop(name, None)
                        continue
                    if name not in restart_at:
                        delay = backoff.get(name, self.spec.restart_backoff)
                        backoff[name] = min(delay * 2, self.spec.max_restart_backoff)
                        restart_at[name] = now + delay
                        code = child.proc.returncode if child.proc else None
                        self._say(f"{name} exited with code {code}; restarting in {delay:.1f}s")
                    elif now >= restart_at[name]:
                        del restart_at[name]
                        child.restarts += 1
                        try:
                            child.start()
                        except OSError as exc:  # e.g. the command was removed: try again later
                            self._say(f"{name} could not be restarted: {exc}")

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(f"scatter up: {message}", file=sys.stderr, flush=True)

    # -- control, for operators and fault tests ---------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL, restart: bool = False) -> None:
        """Send ``sig`` to child ``name``; unless ``restart``, keep it down until ``revive``."""
        with self._lock:
            child = self.children[name]
            child.paused = not restart
            child.signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM) and child.proc is not None:
                child.proc.wait(timeout=30)

    def pause(self, name: str) -> None:
        """SIGSTOP child ``name``: a hung machine that still holds its connections."""
        self.kill(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT a paused child."""
        with self._lock:
            child = self.children[name]
            child.signal(signal.SIGCONT)
            child.paused = False

    def revive(self, name: str, wait: bool = True) -> None:
        """Start child ``name`` again after ``kill`` and wait until it is SERVING."""
        with self._lock:
            child = self.children[name]
            if not child.running():
                child.restarts += 1
                child.start()
            child.paused = False
        if wait:
            child.wait_healthy(self.spec.ready_timeout, self._interrupted)

    # -- stopping ----------------------------------------------------------------

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the root, then everyone else; SIGKILL what is left after ``grace``."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        root = self.children.get("root")
        stop_children([root] if root else [], grace, self._hurry)
        stop_children([c for n, c in self.children.items() if n != "root"], grace, self._hurry)
        self._spawner.close()  # after the last child: its exit would SIGKILL them (see _Spawner)
        if self._tmp is not None:
            self._tmp.cleanup()
