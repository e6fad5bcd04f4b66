"""The contract's checks, run against a live leaf or merge over gRPC.

Each check sends real calls and returns one ``CheckResult``: PASS, FAIL
(with what to fix), WARN (a SHOULD of the contract, not a MUST) or SKIP.
Every call carries a timeout, so a run ends in bounded time whatever the
server does. ``LEAF_CHECKS`` and ``MERGE_CHECKS`` list the checks in the
order they run, each with the duty it enforces, quoted from the service's
comment in ``protos/scatter_gather/v1/`` (the normative contract;
``tests/unit/test_protos_contract.py`` keeps every quote true). The ids are
stable (tests and scripts match on them); ``docs/any-language.md`` explains
each check.

What lives here: the checks and the requests they send. What does not:
reading the sample (``sample``) and printing (``report``).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2, duration_pb2, message, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc, merge_pb2, merge_pb2_grpc, shard_pb2
from scatter.conformance.report import CheckResult, Status
from scatter.conformance.sample import Sample, to_any
from scatter_common.message_types import MessageClass, MessageTypes, Reflection, TypeSources
from scatter_common.tls import ClientTls, sync_channel

LEAF_SERVICE = leaf_pb2.DESCRIPTOR.services_by_name["Leaf"].full_name
MERGE_SERVICE = merge_pb2.DESCRIPTOR.services_by_name["Merge"].full_name


@dataclass(frozen=True)
class Check:
    """One check of the kit: its stable id and the duty of the contract it enforces.

    ``duty`` is quoted from the comment of the service (or its rpc) in the
    .proto, whitespace aside. A check enforcing a MUST reports FAIL when the
    server breaks it; one enforcing a SHOULD only warns.
    """

    id: str
    duty: str

    @property
    def can_fail(self) -> bool:
        return self.duty.startswith("MUST")


_CONNECT = "MUST accept gRPC connections on the address it is given"
_HEALTH = 'MUST serve grpc.health.v1.Health and report SERVING for "" once ready'
_REFLECTION = "SHOULD serve server reflection"
_DEADLINE = "MUST honour the gRPC deadline"
_CANCEL = "MUST stop work and release what it holds (a worker, a concurrency slot) when the call is cancelled"
_CONCURRENT = "MUST serve many calls at once"
_LEAF_INVALID = (
    "MUST answer INVALID_ARGUMENT when the payload is missing, of another type, or does not decode, "
    "with a message that names the expected type"
)
_MERGE_INVALID = (
    "MUST answer INVALID_ARGUMENT when the request payload is missing, of another type, or does not decode, "
    "with a message that names the expected type"
)

# The leaf's checks, in the order they run; duties from leaf.proto, service Leaf.
LEAF_CHECKS = (
    Check("reachable", _CONNECT),
    Check("health-overall", _HEALTH),
    Check("health-service", 'MUST report the same status for the service name "scatter_gather.v1.Leaf"'),
    Check("reflection", _REFLECTION),
    Check(
        "valid-request",
        "MUST answer a valid request with OK and its partial result packed as an Any with its type URL",
    ),
    Check("wrong-type", _LEAF_INVALID),
    Check("undecodable", _LEAF_INVALID),
    Check("empty-payload", _LEAF_INVALID),
    Check("wrong-shard", "MUST answer FAILED_PRECONDITION when shard_index is not a shard it serves"),
    Check(
        "execute-shards",
        "MUST answer every shard of `shard_indexes` with one ShardAnswer, in the request's order, "
        "each what Execute would have answered for that shard alone",
    ),
    Check("short-deadline", _DEADLINE),
    Check("concurrent", _CONCURRENT),
    Check("cancel-released", _CANCEL),
    Check("deadline-released", _DEADLINE),
)

# The merge's checks, in the order they run; duties from merge.proto, service Merge.
MERGE_CHECKS = (
    Check("reachable", _CONNECT),
    Check("health-overall", _HEALTH),
    Check("health-service", 'MUST report the same status for the service name "scatter_gather.v1.Merge"'),
    Check("reflection", _REFLECTION),
    Check("valid-request", "MUST answer with OK and the merged answer packed as an Any with its type URL"),
    Check("partial-coverage", "MUST skip failed shards (they carry no payload), not fail on them"),
    Check("no-shard-answered", "MUST answer OK when no shard answered"),
    Check("empty-results", "MUST answer OK when no shard answered and for an empty `results`"),
    Check("wrong-type", _MERGE_INVALID),
    Check("undecodable", _MERGE_INVALID),
    Check("empty-payload", _MERGE_INVALID),
    Check(
        "wrong-partial-type",
        "MUST answer INVALID_ARGUMENT when the payload of an OK shard is of another type or does not decode",
    ),
    Check("short-deadline", _DEADLINE),
    Check("concurrent", _CONCURRENT),
    Check("cancel-released", _CANCEL),
    Check("deadline-released", _DEADLINE),
)

# Bytes no protobuf parser accepts: field 1 with wire type 7, which does not exist.
GARBAGE = b"\x0f\xff\xff\xff"
OK = grpc.StatusCode.OK


@dataclass(frozen=True)
class KitOptions:
    """Bounds of a run. The defaults suit a busy 2-core machine; raise them for a slow server.

    ``worst_case()`` is what a whole run can take with these bounds, whatever the server does.
    """

    # Every call's deadline: a conforming server answers the sample request well within it.
    timeout: float = 5.0
    # How long to wait for the first connection.
    connect_timeout: float = 5.0
    # How long to wait for the server to report SERVING (a leaf loading its index) before checking.
    serving_timeout: float = 30.0
    # A call with a short deadline must end within its deadline plus this (gRPC ends it client-side;
    # what the bound catches is a server that answers with something else after a while).
    deadline_bound: float = 1.0
    # Calls sent at once by the concurrency checks: a root fans out and hedges, so a replica sees bursts.
    concurrency: int = 32
    # Slow calls the release checks start (then cancel, or let run out of time) to load the server.
    cancel_calls: int = 64
    # After those calls were cancelled or ran out of time, how long the server may take to be
    # back to its unloaded latency: the release checks measure it again until then.
    release_bound: float = 1.0
    # Deadline of each call of a latency measurement in the release checks.
    probe_timeout: float = 1.0
    # Deadline of the slow calls of ``deadline-released``.
    probe_deadline: float = 0.5
    # Highest shard count tried when the shard is learned from the leaf.
    max_shards: int = 256
    # How to reach a server that serves TLS (None: plaintext).
    tls: ClientTls | None = None

    def __post_init__(self) -> None:
        for name in (
            "timeout",
            "connect_timeout",
            "serving_timeout",
            "deadline_bound",
            "release_bound",
            "probe_timeout",
            "probe_deadline",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.concurrency < 1 or self.cancel_calls < 1 or self.max_shards < 1:
            raise ValueError("concurrency, cancel_calls and max_shards must be >= 1")

    def worst_case(self) -> float:
        """Seconds a whole run can take at most, whatever the server does (plus scheduling noise).

        Connection and SERVING waits; resolving the sample's types by reflection (one ``timeout``
        per type, four allowed); learning the shard (``2 * timeout`` in all); then every check
        is bounded: a call per check with ``timeout``, the ``concurrent`` burst, and the release
        checks' measurements, each ``probe_timeout`` (a baseline, a delivery barrier, a loaded one,
        then polls for ``release_bound`` plus one more: after short-deadline's slow call, for
        cancellation and again for the deadline).
        """
        learn = 2 * self.timeout
        calls = 12 * self.timeout + 2 * (self.deadline_bound + self.timeout)  # one-call checks, short-deadline
        bursts = self.timeout  # concurrent: one burst
        release = 3 * (self.probe_timeout + self.release_bound) + 3 * self.probe_timeout + self.probe_deadline
        types = 4 * self.timeout
        return self.connect_timeout + self.serving_timeout + types + learn + calls + bursts + release


class ShardUnknown(ValueError):
    """The kit could not learn a leaf's shard; the message says which flag to pass."""


@dataclass(frozen=True)
class _Outcome:
    code: grpc.StatusCode
    details: str
    response: Any
    elapsed: float

    def describe(self) -> str:
        return "OK" if self.code is OK else f"{self.code.name}: {self.details}"


Call: TypeAlias = "grpc.UnaryUnaryMultiCallable[Any, Any]"  # subscriptable only in the type stubs
TypeFinder = Callable[[str], MessageClass | None]


def _invoke(call: Call, request: message.Message, timeout: float) -> _Outcome:
    start = time.monotonic()
    try:
        response = call(request, timeout=timeout)
    except grpc.RpcError as exc:
        return _Outcome(exc.code(), exc.details() or "", None, time.monotonic() - start)
    return _Outcome(OK, "", response, time.monotonic() - start)


def _invoke_many(call: Call, request: message.Message, count: int, timeout: float) -> list[_Outcome]:
    start = time.monotonic()
    futures = [call.future(request, timeout=timeout) for _ in range(count)]
    outcomes = []
    for future in futures:
        try:
            response = future.result()
        except grpc.RpcError as exc:
            outcomes.append(_Outcome(exc.code(), exc.details() or "", None, time.monotonic() - start))
        else:
            outcomes.append(_Outcome(OK, "", response, time.monotonic() - start))
    return outcomes


def _wrong_type_payload(avoid: Sequence[str]) -> tuple[any_pb2.Any, str]:
    """A well-formed payload of a type the server does not expect."""
    for candidate in (wrappers_pb2.StringValue(value="conformance: wrong type"), wrappers_pb2.Int64Value(value=7)):
        name = candidate.DESCRIPTOR.full_name
        if name not in avoid:
            packed = any_pb2.Any()
            packed.Pack(candidate)
            return packed, name
    raise AssertionError("unreachable: two distinct candidates")


class _Run:
    """What every check of one run shares: channel, stubs, options, decoded sample, the role's checks."""

    def __init__(
        self,
        channel: grpc.Channel,
        service: str,
        call: Call,
        options: KitOptions,
        find: TypeFinder,
        checks: Sequence[Check],
    ):
        self.channel = channel
        self.service = service
        self.call = call
        self.options = options
        self.find = find
        self.checks = {check.id: check for check in checks}
        self.waited = 0.0  # seconds spent waiting for SERVING
        # Set by short-deadline when it let a slow call run out of time: the latency before that
        # call and when it ended. A server that works on after a deadline is still busy with it
        # when the release checks start; they wait for it to be gone (``baseline``).
        self.expired: _Expired | None = None

    def passed(self, name: str, detail: str) -> CheckResult:
        return CheckResult(name, Status.PASS, detail)

    def failed(self, name: str, detail: str, fix: str) -> CheckResult:
        """A FAIL, which names the duty it enforces: only a check listed with a MUST may fail."""
        check = self.checks[name]
        if not check.can_fail:
            raise AssertionError(f"check {name!r} enforces a SHOULD ({check.duty!r}): it may warn, not fail")
        return CheckResult(name, Status.FAIL, f"{detail}; fix: {fix}", duty=check.duty)

    # -- checks shared by leaf and merge ------------------------------------

    def skipped(self, name: str, reason: str) -> CheckResult:
        return CheckResult(name, Status.SKIP, reason)

    def wait_serving(self) -> tuple[str, float]:
        """Poll Check("") until SERVING or ``serving_timeout``: the last status (or error code name) and the wait.

        Stops at once when waiting cannot help: no health service, or "" unknown to it.
        """
        stub = health_pb2_grpc.HealthStub(self.channel)
        start = time.monotonic()
        deadline = start + self.options.serving_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(), timeout=max(0.05, min(self.options.timeout, remaining))
                )
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                status = exc.code().name
                if exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND):
                    return status, time.monotonic() - start
            if status == "SERVING" or time.monotonic() + 0.1 >= deadline:
                return status, time.monotonic() - start
            time.sleep(0.1)

    def health(self, name: str, service: str, waited: float = 0.0) -> CheckResult:
        stub = health_pb2_grpc.HealthStub(self.channel)
        shown = f'"{service}"'
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.options.timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.UNIMPLEMENTED:
                return self.failed(name, "no grpc.health.v1.Health service", "serve the standard gRPC health service")
            fix = f"register {shown} with the health service and report SERVING once ready"
            if code is grpc.StatusCode.NOT_FOUND and service:
                fix += (
                    f' (grpc++: the default health service of EnableDefaultHealthCheckService knows only "" until '
                    f'you call server->GetHealthCheckService()->SetServingStatus("{service}", true); '
                    "see docs/any-language.md)"
                )
            details = f": {exc.details()}" if exc.details() else ""
            return self.failed(name, f"Check({shown}) failed with {code.name}{details}", fix)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        if status != "SERVING":
            if not service:
                detail = f"Check({shown}) still reports {status} after waiting {waited:.1f} s for SERVING"
                fix = (
                    "report SERVING once ready (NOT_SERVING only while loading or draining); a server that takes "
                    "longer to load: raise --serving-timeout-ms"
                )
                return self.failed(name, detail, fix)
            fix = f'report SERVING for {shown} once ready, the same status as for ""'
            return self.failed(name, f"Check({shown}) reports {status}", fix)
        after = f" (after {waited:.1f} s of waiting for it)" if waited >= 0.2 else ""
        return self.passed(name, f"Check({shown}) reports SERVING{after}")

    def reflection(self, name: str) -> CheckResult:
        reflection = Reflection(self.channel, self.options.timeout)
        try:
            services = reflection.services()
        except grpc.RpcError as exc:
            detail = f"server reflection unavailable ({exc.code().name} for grpc.reflection.v1 and v1alpha)"
            fix = "serve grpc.reflection.v1 or v1alpha, with your message types, so grpcurl and the kit find them"
            return CheckResult(name, Status.WARN, f"{detail}; {fix}")
        if self.service not in services:
            return CheckResult(name, Status.WARN, f"{reflection.version} lists {services}, not {self.service}")
        return self.passed(name, f"{reflection.version} lists {self.service}")

    def typed(self, name: str, outcome: _Outcome, declared: str, what: str) -> CheckResult:
        """PASS when ``outcome`` is OK with a payload whose type URL is set (and of type ``declared``)."""
        fix = f"answer {what} with OK and a payload packed as an Any with its type URL"
        if outcome.code is not OK:
            return self.failed(name, f"{what} got {outcome.describe()}", fix)
        payload: any_pb2.Any = outcome.response.payload
        if not payload.type_url:
            return self.failed(name, f"{what} got OK with an untyped payload (empty type URL)", fix)
        actual = payload.type_url.rsplit("/", 1)[-1]
        if declared and actual != declared:
            return self.failed(name, f"{what} got a payload of type {actual!r}", f"answer with a {declared}")
        cls = self.find(actual) if declared else None
        if cls is not None:
            try:
                cls().ParseFromString(payload.value)
            except message.DecodeError as exc:
                return self.failed(name, f"the {actual} payload does not decode: {exc}", "encode the answer properly")
        return self.passed(name, f"{what}: OK in {outcome.elapsed * 1000:.0f} ms, payload {actual}")

    def invalid_argument(self, name: str, request: message.Message, what: str, expected: str = "") -> CheckResult:
        outcome = _invoke(self.call, request, self.options.timeout)
        fix = "answer INVALID_ARGUMENT when the payload is not of the expected type or does not decode"
        if outcome.code is not grpc.StatusCode.INVALID_ARGUMENT:
            return self.failed(name, f"{what} got {outcome.describe()}", fix)
        if expected and expected not in outcome.details:
            detail = f"INVALID_ARGUMENT does not name the expected type {expected!r}: {outcome.details!r}"
            return self.failed(name, detail, "say which type was expected in the status message")
        return self.passed(name, f"{what}: INVALID_ARGUMENT ({outcome.details})")

    def short_deadline(self, name: str, valid: message.Message, slow: message.Message | None) -> CheckResult:
        request, deadline = (slow, 0.05) if slow is not None else (valid, 0.001)
        before = self.measure(valid) if slow is not None else None
        outcome = _invoke(self.call, request, deadline)
        if before is not None:
            self.expired = _Expired(before, time.monotonic())
        bound = deadline + self.options.deadline_bound
        fix = "honour the gRPC deadline: stop work and let the call end with DEADLINE_EXCEEDED"
        what = f"a call with a {deadline * 1000:g} ms deadline"
        if outcome.code not in (OK, grpc.StatusCode.DEADLINE_EXCEEDED):
            return self.failed(name, f"{what} got {outcome.describe()}", fix)
        if outcome.elapsed > bound:
            return self.failed(name, f"{what} took {outcome.elapsed * 1000:.0f} ms (bound {bound * 1000:.0f})", fix)
        after = _invoke(self.call, valid, self.options.timeout)
        if after.code is not OK:
            detail = f"after {what}, a valid request got {after.describe()}"
            return self.failed(name, detail, "a call that ran out of time must not break the server")
        return self.passed(name, f"{what} ended with {outcome.code.name}; the next call succeeded")

    def concurrent(self, name: str, valid: message.Message) -> CheckResult:
        count = self.options.concurrency
        outcomes = _invoke_many(self.call, valid, count, self.options.timeout)
        bad = [o for o in outcomes if o.code is not OK]
        if bad:
            detail = f"{len(bad)} of {count} concurrent calls failed, e.g. {bad[0].describe()}"
            return self.failed(name, detail, f"serve at least {count} calls at once (no global lock, no queue)")
        slowest = max(o.elapsed for o in outcomes)
        return self.passed(name, f"{count} concurrent calls succeeded within {slowest * 1000:.0f} ms")

    def measure(self, valid: message.Message) -> _Load:
        """``concurrency`` valid calls at once, each with ``probe_timeout``: how many failed, the median latency."""
        outcomes = _invoke_many(self.call, valid, self.options.concurrency, self.options.probe_timeout)
        bad = [o for o in outcomes if o.code is not OK]
        return _Load(len(bad), statistics.median(o.elapsed for o in outcomes), bad[0].describe() if bad else "")

    def baseline(self, valid: message.Message) -> tuple[_Load, float]:
        """The unloaded baseline of the release checks, and how long the server took to be back to
        the latency it had before short-deadline's slow call (0 when there was none).

        That call ran out of time after 50 ms; a server that works on after a deadline is still
        busy with it, and would otherwise count as "unloaded" (seen in CI: the cancelled calls
        were then blamed for the deadline's work). The kit waits for that latency, for up to
        ``release_bound`` since the call ended, like the release checks themselves.
        """
        expired = self.expired
        if expired is None or expired.before.failures:
            return self.measure(valid), 0.0
        load, waited = self.recovery(valid, expired.before, expired.ended)
        return load, waited

    def recovery(self, valid: message.Message, baseline: _Load, since: float) -> tuple[_Load, float]:
        """Measure until the server is back to ``baseline`` or ``release_bound`` has passed since ``since``."""
        while True:
            load = self.measure(valid)
            waited = time.monotonic() - since
            if not load.worse_than(baseline) or waited >= self.options.release_bound:
                return load, waited
            time.sleep(0.05)

    def release_probe(
        self, valid: message.Message, slow: message.Message | None, key: str = "slow_request"
    ) -> tuple[CheckResult, CheckResult]:
        """``cancel-released`` and ``deadline-released``: does work stop when its call does?

        The kit cannot see inside the server, so it watches its capacity: the latency and refusals
        of ``concurrency`` valid calls, unloaded (the baseline), while ``cancel_calls`` slow calls run
        (loaded), and after those slow calls were cancelled (or, second, ran out of time). A server
        whose slow calls visibly load it (a concurrency limit, busy workers, a busy CPU) must be back
        to its baseline within ``release_bound``. When the slow calls do not load it visibly, or the
        sample has no slow request, the kit cannot tell, and both checks are SKIPPED, saying why.
        """
        cancel, deadline = "cancel-released", "deadline-released"
        if slow is None:
            why = (
                f"the sample has no {key!r}: without a request that keeps the server busy the kit "
                "cannot tell whether work stops when its call ends"
            )
            return self.skipped(cancel, why), self.skipped(deadline, why)
        baseline, waited = self.baseline(valid)
        if self.expired is not None and baseline.worse_than(self.expired.before):
            what = f"{waited * 1000:.0f} ms after short-deadline's slow call ran out of its 50 ms deadline"
            detail = f"{what}, the server was still {baseline}, against {self.expired.before} before that call"
            fix = "honour the gRPC deadline: stop work and free its worker and slot when the deadline passes"
            why = "not run: the server had not recovered from short-deadline's expired call (see deadline-released)"
            return self.skipped(cancel, why), self.failed(deadline, detail, fix)
        if baseline.failures:
            why = f"{baseline.failures} of {self.options.concurrency} concurrent calls failed unloaded (see concurrent)"
            return self.skipped(cancel, why), self.skipped(deadline, why)
        count = self.options.cancel_calls
        started = [self.call.future(slow, timeout=max(30.0, self.options.timeout)) for _ in range(count)]
        # A delivery barrier, not a sleep: the calls of one channel reach the server in the order they
        # were started, so once a later call has been answered (whatever the answer: a server at its
        # limit refuses it) the server has received every slow call. A loaded server may be too slow to
        # answer it at all: ``probe_timeout`` bounds the wait (that call was sent, after all the others).
        _invoke(self.call, valid, self.options.probe_timeout)
        loaded = self.measure(valid)
        for future in started:
            future.cancel()
        cancelled_at = time.monotonic()
        if not loaded.worse_than(baseline):
            why = (
                f"{count} slow calls in flight did not visibly load the server ({loaded} vs {baseline} unloaded): "
                "it has no limit they reach, enough workers, or idle CPU, so the kit cannot tell from outside "
                "whether work stops when its call ends; raise --cancel-calls past its limit or worker count, "
                "or use a slow_request that keeps it busier"
            )
            return self.skipped(cancel, why), self.skipped(deadline, why)
        after, waited = self.recovery(valid, baseline, cancelled_at)
        shape = f"unloaded {baseline}; with {count} slow calls in flight {loaded}"
        if after.worse_than(baseline):
            detail = f"{shape}; {waited * 1000:.0f} ms after cancelling them still {after}"
            fix = "stop work and free its worker and slot when the call is cancelled (check the call's cancelled flag)"
            return self.failed(cancel, detail, fix), self.skipped(
                deadline, "not run: the server had not recovered from the cancelled calls of cancel-released"
            )
        cancel_result = self.passed(cancel, f"{shape}; {waited * 1000:.0f} ms after cancelling them {after}")
        limit = self.options.probe_deadline
        timed = [self.call.future(slow, timeout=limit) for _ in range(count)]
        for future in timed:
            with contextlib.suppress(grpc.RpcError, grpc.FutureCancelledError):
                future.result()
        expired_at = time.monotonic()
        after, waited = self.recovery(valid, baseline, expired_at)
        what = f"{count} slow calls with a {limit * 1000:g} ms deadline"
        if after.worse_than(baseline):
            detail = f"{shape}; {waited * 1000:.0f} ms after {what} ran out of time still {after}"
            fix = "honour the gRPC deadline: stop work and free its worker and slot when the deadline passes"
            return cancel_result, self.failed(deadline, detail, fix)
        return cancel_result, self.passed(deadline, f"{waited * 1000:.0f} ms after {what} ran out of time {after}")


@dataclass(frozen=True)
class _Expired:
    """short-deadline's slow call: the latency measured before it, and when it ran out of time."""

    before: _Load
    ended: float


@dataclass(frozen=True)
class _Load:
    """One latency measurement of the release checks."""

    failures: int
    median: float
    example: str

    def worse_than(self, baseline: _Load) -> bool:
        """Refusals or timeouts, or a median latency over 3 times the baseline's plus 50 ms."""
        return self.failures > 0 or self.median > 3 * baseline.median + 0.05

    def __str__(self) -> str:
        failed = f", {self.failures} failed (e.g. {self.example})" if self.failures else ""
        return f"median {self.median * 1000:.0f} ms{failed}"


def _message_types(address: str, types: TypeSources | None, options: KitOptions) -> MessageTypes:
    """The run's resolver, built before connecting (a .proto that does not compile stops the run at once).

    Without ``types.reflection`` it asks the reflection of the server checked, on a channel of its own.
    """
    sources = types or TypeSources()
    if not sources.reflection:
        sources = replace(sources, reflection=address)
    return MessageTypes(sources, tls=options.tls, timeout=options.timeout)


@contextlib.contextmanager
def _connect(address: str, options: KitOptions) -> Iterator[tuple[grpc.Channel, CheckResult]]:
    with sync_channel(address, options.tls) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=options.connect_timeout)
        except grpc.FutureTimeoutError:
            detail = f"no connection to {address} within {options.connect_timeout:g} s"
            failure = CheckResult(
                "reachable", Status.FAIL, f"{detail}; fix: start the server, check the address", _CONNECT
            )
            yield channel, failure
        else:
            yield channel, CheckResult("reachable", Status.PASS, f"connected to {address}")


def check_leaf(
    address: str,
    sample: Sample,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
    types: TypeSources | None = None,
    options: KitOptions | None = None,
) -> list[CheckResult]:
    """Run the leaf checks against the leaf at ``address`` serving ``shard_index`` of ``shard_count``.

    Either left None is learned from the leaf (``learn_shard``). ``types`` says where the sample's
    message types come from (``_message_types``). Raises SampleError when the sample's payloads
    cannot be encoded, MessageTypeError when a type source is unusable (a .proto that does not
    compile), ShardUnknown when the shard cannot be learned.
    """
    return run_leaf(address, sample, shard_index=shard_index, shard_count=shard_count, types=types, options=options)[0]


@dataclass(frozen=True)
class Shard:
    """The shard a leaf was checked as, and whether the kit learned it (rather than being told)."""

    index: int
    count: int
    learned: bool


def run_leaf(
    address: str,
    sample: Sample,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
    types: TypeSources | None = None,
    options: KitOptions | None = None,
) -> tuple[list[CheckResult], Shard | None]:
    """``check_leaf``, also returning the shard checked (None when the run stopped before learning it)."""
    options = options or KitOptions()
    if shard_index is not None and shard_count is not None and not 0 <= shard_index < shard_count:
        raise ShardUnknown(
            f"--shard-index must be in [0, {shard_count}) for --shard-count {shard_count}, got {shard_index}"
        )
    with _message_types(address, types, options) as resolver, _connect(address, options) as (channel, reachable):
        if reachable.status is Status.FAIL:
            return [reachable], None
        run = _Run(channel, LEAF_SERVICE, leaf_pb2_grpc.LeafStub(channel).Execute, options, resolver.find, LEAF_CHECKS)
        not_serving = _wait_serving(run, LEAF_CHECKS, reachable)
        if not_serving:
            return not_serving, None
        payload = to_any(sample.request, resolver)
        slow_payload = None if sample.slow_request is None else to_any(sample.slow_request, resolver)
        learned = shard_index is None or shard_count is None
        if learned:
            shard_index, shard_count = learn_shard(run.call, payload, shard_index, shard_count, options)
        assert shard_index is not None and shard_count is not None
        if not learned:
            _confirm_shard(run.call, payload, shard_index, shard_count, options)
        shard = Shard(shard_index, shard_count, learned)

        counter = iter(range(1, 1_000_000))

        def execute(any_payload: any_pb2.Any | None, index: int = shard.index) -> leaf_pb2.ExecuteRequest:
            return leaf_pb2.ExecuteRequest(
                payload=any_payload,
                shard_index=index,
                shard_count=shard.count,
                attempt=1,
                request_id=f"conformance-{next(counter)}",
            )

        valid = execute(payload)
        slow = None if slow_payload is None else execute(slow_payload)
        expected = sample.request.type_name
        wrong, wrong_name = _wrong_type_payload([expected])
        garbage = any_pb2.Any(type_url=payload.type_url, value=GARBAGE)
        results = [
            reachable,
            run.health("health-overall", "", run.waited),
            run.health("health-service", LEAF_SERVICE),
            run.reflection("reflection"),
            run.typed(
                "valid-request",
                _invoke(run.call, valid, options.timeout),
                sample.leaf_response_type,
                "the sample request",
            ),
            run.invalid_argument("wrong-type", execute(wrong), f"a {wrong_name} payload", expected),
            run.invalid_argument("undecodable", execute(garbage), "undecodable payload bytes"),
            run.invalid_argument("empty-payload", execute(None), "a request without a payload"),
            _wrong_shard(run, execute(payload, index=shard.count), shard),
            _execute_shards(run, leaf_pb2_grpc.LeafStub(channel).ExecuteShards, valid, shard),
            run.short_deadline("short-deadline", valid, slow),
            run.concurrent("concurrent", valid),
            *run.release_probe(valid, slow),
        ]
    _in_order(results, LEAF_CHECKS)
    return results, shard


def learn_shard(
    call: Call, payload: any_pb2.Any, index: int | None, count: int | None, options: KitOptions
) -> tuple[int, int]:
    """The shard a leaf serves, learned from its FAILED_PRECONDITION answers (the contract's wrong-shard duty).

    The index: the first of 0, 1, ... the leaf answers (``shard_count`` unset, so only the index is
    compared); the count: the first of index+1, index+2, ... it answers. At most ``max_shards`` of
    each, and ``2 * timeout`` in all. Raises ShardUnknown, naming the flag to pass, when an answer
    is neither OK nor FAILED_PRECONDITION or the bounds run out.
    """
    give_up = time.monotonic() + 2 * options.timeout

    def first_ok(candidates: range, request: Callable[[int], leaf_pb2.ExecuteRequest], flag: str) -> int:
        tried = candidates.start
        for candidate in candidates:
            tried = candidate + 1
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                break
            outcome = _invoke(call, request(candidate), min(options.timeout, remaining))
            if outcome.code is OK:
                return candidate
            if outcome.code is not grpc.StatusCode.FAILED_PRECONDITION:
                raise ShardUnknown(
                    f"cannot learn the leaf's shard: the sample request for {flag} {candidate} got "
                    f"{outcome.describe()} (neither OK nor FAILED_PRECONDITION); pass {_FLAGS}"
                )
        raise ShardUnknown(
            f"cannot learn the leaf's shard: it answered no {flag} in [{candidates.start}, {tried}) "
            f"within {2 * options.timeout:g} s; pass {_FLAGS}"
        )

    def request(shard_index: int, shard_count: int) -> leaf_pb2.ExecuteRequest:
        return leaf_pb2.ExecuteRequest(
            payload=payload, shard_index=shard_index, shard_count=shard_count, attempt=1, request_id="conformance-shard"
        )

    if index is None:
        top = count if count is not None else options.max_shards
        index = first_ok(range(top), lambda i: request(i, 0), "--shard-index")
    if count is None:
        count = first_ok(
            range(index + 1, max(index + 1, options.max_shards) + 1), lambda c: request(index, c), "--shard-count"
        )
    return index, count


_FLAGS = "--shard-index and --shard-count"


def _confirm_shard(call: Call, payload: any_pb2.Any, index: int, count: int, options: KitOptions) -> None:
    """A shard given by the flags that the leaf refuses as not its own stops the run with that said, instead of
    failing every check that sends the sample request."""
    request = leaf_pb2.ExecuteRequest(
        payload=payload, shard_index=index, shard_count=count, attempt=1, request_id="conformance-shard"
    )
    outcome = _invoke(call, request, options.timeout)
    if outcome.code is grpc.StatusCode.FAILED_PRECONDITION:
        raise ShardUnknown(
            f"the leaf does not serve shard {index} of {count} (FAILED_PRECONDITION: {outcome.details}); "
            f"pass the shard it serves with {_FLAGS}, or omit both to learn it from the leaf"
        )


def _wait_serving(run: _Run, checks: Sequence[Check], reachable: CheckResult) -> list[CheckResult]:
    """Wait for SERVING; when it does not come, the rows of the run (the others SKIPPED, saying why), else []."""
    status, run.waited = run.wait_serving()
    if status in ("SERVING", "UNIMPLEMENTED", "NOT_FOUND"):  # the health checks say what is wrong with the latter
        return []
    overall = run.health("health-overall", "", run.waited)
    if overall.status is Status.PASS:  # SERVING just now
        return []
    why = (
        f"not run: the server did not report SERVING within {run.options.serving_timeout:g} s, and checking a "
        "server that is still loading gives misleading failures"
    )
    return [reachable, overall, *(run.skipped(c.id, why) for c in checks[2:])]


def _in_order(results: Sequence[CheckResult], checks: Sequence[Check]) -> None:
    """The kit's own invariant: a run returns exactly the listed checks, in order."""
    ids = [r.name for r in results]
    if ids != [check.id for check in checks]:
        raise AssertionError(f"the checks run ({ids}) are not the checks listed ({[c.id for c in checks]})")


def _wrong_shard(run: _Run, request: leaf_pb2.ExecuteRequest, shard: Shard) -> CheckResult:
    outcome = _invoke(run.call, request, run.options.timeout)
    how = "learned from the leaf" if shard.learned else "as given"
    what = f"a request for shard {request.shard_index} of {shard.count} (this leaf serves {shard.index}, {how})"
    if outcome.code is not grpc.StatusCode.FAILED_PRECONDITION:
        fix = "answer FAILED_PRECONDITION when shard_index is not yours (or shard_count, when set, differs)"
        return run.failed("wrong-shard", f"{what} got {outcome.describe()}", fix)
    return run.passed("wrong-shard", f"{what}: FAILED_PRECONDITION")


def _execute_shards(run: _Run, call: Call, valid: leaf_pb2.ExecuteRequest, shard: Shard) -> CheckResult:
    """ExecuteShards, when the leaf has it (optional): its own shard and one it cannot serve, then none."""
    name = "execute-shards"
    other = shard.count  # out of range: no leaf of this dataset serves it
    request = leaf_pb2.ExecuteShardsRequest(
        payload=valid.payload,
        shard_indexes=[shard.index, other],
        shard_count=shard.count,
        attempt=1,
        request_id=valid.request_id,
    )
    outcome = _invoke(call, request, run.options.timeout)
    if outcome.code is grpc.StatusCode.UNIMPLEMENTED:
        return run.skipped(
            name, "not implemented: optional for a process that serves one shard (the root then sends Execute calls)"
        )
    what = f"ExecuteShards for shards [{shard.index}, {other}] (the second is not this leaf's)"
    fix = (
        "answer one ShardAnswer per requested shard, in order: the shard's partial with code 0, or the "
        "shard's own error code (FAILED_PRECONDITION for a shard you do not serve), never the whole call's"
    )
    if outcome.code is not OK:
        return run.failed(name, f"{what} got {outcome.describe()}", fix)
    single = _invoke(run.call, valid, run.options.timeout)
    expected_url = single.response.payload.type_url if single.code is OK else ""
    answers = list(outcome.response.answers)
    got = [(a.shard_index, a.code, a.payload.type_url) for a in answers]
    mine_ok = (
        len(answers) == 2
        and got[0][:2] == (shard.index, 0)
        and bool(got[0][2])
        and (not expected_url or got[0][2] == expected_url)
    )
    other_refused = len(answers) == 2 and got[1][:2] == (other, grpc.StatusCode.FAILED_PRECONDITION.value[0])
    if not (mine_ok and other_refused):
        shown = ", ".join(f"shard {index}: code {code}" + (f" ({url})" if url else "") for index, code, url in got)
        expected = (
            f"shard {shard.index}: code 0 ({expected_url or 'a type URL'}), "
            f"shard {other}: code {grpc.StatusCode.FAILED_PRECONDITION.value[0]} (FAILED_PRECONDITION)"
        )
        return run.failed(name, f"{what} answered [{shown or 'nothing'}], expected [{expected}]", fix)
    empty = _invoke(call, leaf_pb2.ExecuteShardsRequest(payload=valid.payload), run.options.timeout)
    if empty.code is not grpc.StatusCode.INVALID_ARGUMENT:
        return run.failed(
            name,
            f"ExecuteShards with no shard_indexes got {empty.describe()}",
            "answer INVALID_ARGUMENT when shard_indexes is empty or repeats a shard",
        )
    return run.passed(name, f"{what}: its partial and FAILED_PRECONDITION, in order; with no shards: INVALID_ARGUMENT")


def _merge_request(
    payload: any_pb2.Any | None,
    partials: Sequence[any_pb2.Any],
    failed: Sequence[shard_pb2.ShardStatus.ValueType],
    request_id: str,
) -> merge_pb2.MergeRequest:
    """OK results for ``partials`` (shards 0..n-1), then the shard statuses in ``failed`` without payloads."""
    results = [
        shard_pb2.ShardResult(
            report=shard_pb2.ShardReport(
                shard_index=index,
                status=shard_pb2.SHARD_STATUS_OK,
                replica="conformance",
                latency=duration_pb2.Duration(nanos=1_000_000),
                attempts=1,
            ),
            payload=partial,
        )
        for index, partial in enumerate(partials)
    ]
    missing = []
    for offset, status in enumerate(failed):
        index = len(partials) + offset
        reason = f"conformance: shard {index} is {shard_pb2.ShardStatus.Name(status)}"
        results.append(
            shard_pb2.ShardResult(
                report=shard_pb2.ShardReport(shard_index=index, status=status, attempts=2, error=reason)
            )
        )
        missing.append(shard_pb2.MissingShard(shard_index=index, status=status, reason=reason))
    coverage = shard_pb2.Coverage(total=len(results), answered=len(partials), missing=missing)
    return merge_pb2.MergeRequest(payload=payload, results=results, coverage=coverage, request_id=request_id)


def check_merge(
    address: str,
    sample: Sample,
    *,
    types: TypeSources | None = None,
    options: KitOptions | None = None,
) -> list[CheckResult]:
    """Run the merge checks against the merge at ``address``. Raises SampleError for a bad sample,
    MessageTypeError for an unusable type source (``check_leaf``)."""
    options = options or KitOptions()
    with _message_types(address, types, options) as resolver, _connect(address, options) as (channel, reachable):
        if reachable.status is Status.FAIL:
            return [reachable]
        run = _Run(
            channel, MERGE_SERVICE, merge_pb2_grpc.MergeStub(channel).Merge, options, resolver.find, MERGE_CHECKS
        )
        not_serving = _wait_serving(run, MERGE_CHECKS, reachable)
        if not_serving:
            return not_serving
        payload = to_any(sample.request, resolver)
        partials = [to_any(p, resolver) for p in sample.partials]
        slow_spec = sample.slow_merge_request
        slow = None if slow_spec is None else _merge_request(to_any(slow_spec, resolver), partials, [], "slow")
        declared = sample.merge_response_type
        timeout = shard_pb2.SHARD_STATUS_TIMEOUT
        every_failure = [timeout, shard_pb2.SHARD_STATUS_ERROR, shard_pb2.SHARD_STATUS_UNAVAILABLE]

        def typed(name: str, request: merge_pb2.MergeRequest, what: str, needs_partials: bool = False) -> CheckResult:
            if needs_partials and not partials:
                detail = "the sample has no 'partials'; add one valid leaf answer per shard to run this check"
                return CheckResult(name, Status.SKIP, detail)
            return run.typed(name, _invoke(run.call, request, options.timeout), declared, what)

        valid = _merge_request(payload, partials, [], "conformance-valid")
        nobody = _merge_request(payload, [], every_failure, "conformance-none")
        base = valid if partials else nobody
        request_types = [sample.request.type_name, *(p.type_name for p in sample.partials)]
        wrong, wrong_name = _wrong_type_payload(request_types)
        garbage = any_pb2.Any(type_url=payload.type_url, value=GARBAGE)
        partial_coverage = _merge_request(payload, partials, [timeout], "conformance-partial")
        results = [
            reachable,
            run.health("health-overall", "", run.waited),
            run.health("health-service", MERGE_SERVICE),
            run.reflection("reflection"),
            typed("valid-request", valid, f"{len(partials)} OK shards", needs_partials=True),
            typed("partial-coverage", partial_coverage, "OK shards and a TIMEOUT shard", needs_partials=True),
            typed("no-shard-answered", nobody, "every shard failed (TIMEOUT, ERROR, UNAVAILABLE)"),
            typed("empty-results", _merge_request(payload, [], [], "conformance-empty"), "an empty result list"),
            run.invalid_argument(
                "wrong-type",
                _merge_request(wrong, partials, [], "conformance-wrong"),
                f"a {wrong_name} request payload",
                sample.request.type_name,
            ),
            run.invalid_argument(
                "undecodable", _merge_request(garbage, partials, [], "conformance-garbage"), "undecodable request bytes"
            ),
            run.invalid_argument(
                "empty-payload",
                _merge_request(None, partials, [], "conformance-empty-payload"),
                "a request without a payload",
            ),
            run.invalid_argument(
                "wrong-partial-type",
                _merge_request(payload, [*partials, wrong], [], "conformance-wrong-partial"),
                f"an OK shard whose payload is a {wrong_name}",
            ),
            run.short_deadline("short-deadline", base, None),
            run.concurrent("concurrent", base),
            *run.release_probe(base, slow, "slow_merge_request"),
        ]
    _in_order(results, MERGE_CHECKS)
    return results
