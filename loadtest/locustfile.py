"""Locust user for a scatter/gather root: ``Root.Query`` over gRPC.

From the web UI, against any running root (``scatter demo --serve`` prints
its address)::

    locust -f loadtest/locustfile.py --host 127.0.0.1:50051

Headless, as ``scatter bench`` runs it::

    locust -f loadtest/locustfile.py --headless -u 8 -r 8 -t 30s --host 127.0.0.1:50051 \\
        --csv out/steady --html out/steady.html --scatter-tally out/tally.json

Every call is reported to Locust's ``request`` event (request type
``grpc``, name ``Root.Query``, response time in ms, response size in bytes,
and on failure a :class:`GrpcStatusError` named after the gRPC status, so
Locust's failure table groups by status). Each user keeps one channel for
its whole life, as a real client does. The same calls also go into a
:class:`loadtest.tally.Tally` (precise latencies, hedge rate, coverage)
written to ``--scatter-tally`` when the test stops; with Locust workers the
tallies travel to the master in the regular worker reports.

Options of our own (also in the web UI's "Custom parameters"):
``--scatter-workload demo|probe`` (default demo: real-term BM25 queries over
the stdlib index; probe: the probe application's request),
``--scatter-index DIR`` (default: the index `scatter demo` caches),
``--scatter-seed``, ``--scatter-deadline-ms``, and ``--scatter-rate``
(requests per second per user; 0, the default, is a closed loop: the next
request leaves as soon as the answer is in).
"""

# gRPC must be patched for gevent before any channel exists, and after the
# standard library is (locust patches it when imported, so import it first).
from locust import User, events, task  # isort: skip
import grpc  # isort: skip
import grpc.experimental.gevent as grpc_gevent  # isort: skip

grpc_gevent.init_gevent()

import itertools  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from locust.env import Environment  # noqa: E402
from locust.exception import StopUser  # noqa: E402
from locust.runners import WorkerRunner  # noqa: E402

from loadtest.queries import QueryStream, Vocabulary, load_vocabulary, probe_requests  # noqa: E402
from loadtest.tally import Tally  # noqa: E402
from protos.scatter_gather.v1 import root_pb2, root_pb2_grpc  # noqa: E402

REQUEST_NAME = "Root.Query"
DEFAULT_DEADLINE_MS = 2000.0  # above the root's default deadline (1 s): the root, not the client, times out first
DEFAULT_SEED = 1

TALLY = Tally()
_user_numbers = itertools.count()
_vocabulary: Vocabulary | None = None


class GrpcStatusError(Exception):
    """A failed call; its repr is the status name, which Locust uses to group failures."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    def __repr__(self) -> str:
        return f"gRPC {self.code.name}"


def _add_options(parser: Any) -> None:
    parser.add_argument("--scatter-workload", choices=["demo", "probe"], default="demo", help="what to send")
    parser.add_argument("--scatter-index", default="", help="demo index to draw query terms from")
    parser.add_argument("--scatter-seed", type=int, default=DEFAULT_SEED, help="seed of the query streams")
    parser.add_argument("--scatter-deadline-ms", type=float, default=DEFAULT_DEADLINE_MS, help="client deadline")
    parser.add_argument("--scatter-rate", type=float, default=0.0, help="requests/s per user; 0 = closed loop")
    parser.add_argument(
        "--scatter-tally",
        default="",
        help="write the tally JSON here when the test stops",
        include_in_web_ui=False,
    )


def _vocabulary_for(index: str) -> Vocabulary:
    global _vocabulary
    if _vocabulary is None:
        if index:
            path = Path(index)
        else:
            # The index `scatter demo` serves (built on first use, cached).
            from demo_search import DEMO_SHARDS, ensure_stdlib_index

            path = ensure_stdlib_index(DEMO_SHARDS)
        _vocabulary = load_vocabulary(path)
    return _vocabulary


def _on_test_start(environment: Environment, **_: Any) -> None:
    TALLY.clear()


def _on_test_stop(environment: Environment, **_: Any) -> None:
    # Workers hand their tally to the master in their reports; the master (or a lone process) writes.
    if isinstance(environment.runner, WorkerRunner):
        return
    path = environment.parsed_options.scatter_tally if environment.parsed_options else ""
    if path:
        TALLY.write(Path(path))


def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    data["scatter_tally"] = TALLY.to_json()
    TALLY.clear()


def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    if "scatter_tally" in data:
        TALLY.merge(Tally.from_json(data["scatter_tally"]))


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    # Not the decorator: locust's add_listener is untyped, and as a decorator it untypes the function.
    hook.add_listener(handler)


_listen(events.init_command_line_parser, _add_options)
_listen(events.test_start, _on_test_start)
_listen(events.test_stop, _on_test_stop)
_listen(events.quitting, _on_test_stop)  # a last write after the final worker reports
_listen(events.report_to_master, _on_report_to_master)
_listen(events.worker_report, _on_worker_report)


def _target(host: str | None) -> str:
    if not host:
        raise StopUser("no host: pass --host HOST:PORT (the root's gRPC address)")
    for scheme in ("grpc://", "http://"):
        host = host.removeprefix(scheme)
    return host.rstrip("/")


class RootUser(User):
    """One client of the root: a long-lived channel, a seeded query stream, closed loop or paced."""

    abstract = False

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        self.number = next(_user_numbers)
        self.workload = getattr(options, "scatter_workload", "demo")
        seed = getattr(options, "scatter_seed", DEFAULT_SEED)
        self.deadline = getattr(options, "scatter_deadline_ms", DEFAULT_DEADLINE_MS) / 1000
        rate = getattr(options, "scatter_rate", 0.0)
        self.interval = 1 / rate if rate > 0 else 0.0
        self.next_start = 0.0
        self.stream: QueryStream | None = None
        if self.workload == "demo":
            self.stream = QueryStream(
                _vocabulary_for(getattr(options, "scatter_index", "")), seed * 1_000_003 + self.number
            )
        self.probe = probe_requests()
        self.channel: grpc.Channel | None = None
        self.stub: root_pb2_grpc.RootStub | None = None

    def on_start(self) -> None:
        self.channel = grpc.insecure_channel(_target(self.host))
        self.stub = root_pb2_grpc.RootStub(self.channel)
        self.next_start = time.monotonic()

    def on_stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def wait_time(self) -> float:
        if not self.interval:
            return 0.0
        # Pacing like locust's constant_throughput, but from the planned start, so a slow answer
        # does not lower the offered rate (the next request leaves at once, then the plan resumes).
        self.next_start = max(self.next_start + self.interval, time.monotonic() - self.interval)
        return max(0.0, self.next_start - time.monotonic())

    def _request(self) -> root_pb2.QueryRequest:
        return self.stream.next_request() if self.stream is not None else self.probe

    @task
    def query(self) -> None:
        assert self.stub is not None
        request = self._request()
        users = self.environment.runner.user_count if self.environment.runner else 0
        started = time.perf_counter()
        exception: GrpcStatusError | None = None
        length = 0
        try:
            response: root_pb2.QueryResponse = self.stub.Query(request, timeout=self.deadline)
        except grpc.RpcError as exc:
            elapsed = time.perf_counter() - started
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            exception = GrpcStatusError(code, exc.details() if isinstance(exc, grpc.Call) else str(exc))
            TALLY.failure(time.time(), users, elapsed, code.name)
        else:
            elapsed = time.perf_counter() - started
            length = response.ByteSize()
            attempts = hedges = 0
            for report in response.shards:
                attempts += report.attempts
                hedges += report.hedge_won
            TALLY.success(
                time.time(),
                users,
                elapsed,
                len(response.shards),
                attempts,
                hedges,
                response.coverage.answered,
                response.coverage.total,
            )
        self.environment.events.request.fire(
            request_type="grpc",
            name=REQUEST_NAME,
            response_time=elapsed * 1000,
            response_length=length,
            exception=exception,
            context={"workload": self.workload},
        )
