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

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2, duration_pb2, message, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.scatter_gather.v1 import leaf_pb2, leaf_pb2_grpc, merge_pb2, merge_pb2_grpc, shard_pb2
from scatter.conformance.report import CheckResult, Status
from scatter.conformance.sample import Sample, TypeResolver, reflect_services, to_any
from scatter.messages import MessageClass
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
    Check("wrong-shard", "MUST answer FAILED_PRECONDITION when shard_index is not the shard it serves"),
    Check("short-deadline", _DEADLINE),
    Check("concurrent", _CONCURRENT),
    Check("cancel-released", _CANCEL),
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
)

# Bytes no protobuf parser accepts: field 1 with wire type 7, which does not exist.
GARBAGE = b"\x0f\xff\xff\xff"
OK = grpc.StatusCode.OK


@dataclass(frozen=True)
class KitOptions:
    """Bounds of a run. The defaults suit a busy 2-core machine; raise them for a slow server."""

    # Every call's deadline: a conforming server answers the sample request well within it.
    timeout: float = 5.0
    # How long to wait for the first connection.
    connect_timeout: float = 5.0
    # A call with a short deadline must end within its deadline plus this (gRPC ends it client-side;
    # what the bound catches is a server that answers with something else after a while).
    deadline_bound: float = 1.0
    # Calls sent at once by the concurrency checks: a root fans out and hedges, so a replica sees bursts.
    concurrency: int = 32
    # Calls started and cancelled before the release check; more than a typical concurrency limit
    # minus ``concurrency``, so a server that keeps working on cancelled calls runs out of slots.
    cancel_calls: int = 64
    # After those cancellations, how long the server may take to free what they held: the release
    # check retries its concurrent calls until they all succeed or this has passed.
    release_bound: float = 1.0
    # How to reach a server that serves TLS (None: plaintext).
    tls: ClientTls | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "connect_timeout", "deadline_bound", "release_bound"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.concurrency < 1 or self.cancel_calls < 0:
            raise ValueError("concurrency must be >= 1 and cancel_calls >= 0")


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

    def passed(self, name: str, detail: str) -> CheckResult:
        return CheckResult(name, Status.PASS, detail)

    def failed(self, name: str, detail: str, fix: str) -> CheckResult:
        """A FAIL, which names the duty it enforces: only a check listed with a MUST may fail."""
        check = self.checks[name]
        if not check.can_fail:
            raise AssertionError(f"check {name!r} enforces a SHOULD ({check.duty!r}): it may warn, not fail")
        return CheckResult(name, Status.FAIL, f"{detail}; fix: {fix}", duty=check.duty)

    # -- checks shared by leaf and merge ------------------------------------

    def health(self, name: str, service: str) -> CheckResult:
        stub = health_pb2_grpc.HealthStub(self.channel)
        shown = service or '""'
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.options.timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.UNIMPLEMENTED:
                return self.failed(name, "no grpc.health.v1.Health service", "serve the standard gRPC health service")
            fix = f"register {shown} with the health service and report SERVING once ready"
            details = f": {exc.details()}" if exc.details() else ""
            return self.failed(name, f"Check({shown}) failed with {code.name}{details}", fix)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        if status != "SERVING":
            fix = f"report SERVING for {shown} once ready (and NOT_SERVING only while loading or draining)"
            return self.failed(name, f"Check({shown}) reports {status}", fix)
        return self.passed(name, f"Check({shown}) reports SERVING")

    def reflection(self, name: str) -> CheckResult:
        try:
            services = reflect_services(self.channel, self.options.timeout)
        except grpc.RpcError as exc:
            detail = f"server reflection unavailable ({exc.code().name})"
            return CheckResult(name, Status.WARN, f"{detail}; serve grpc.reflection.v1alpha so grpcurl works")
        if self.service not in services:
            return CheckResult(name, Status.WARN, f"reflection lists {services}, not {self.service}")
        return self.passed(name, f"reflection lists {self.service}")

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
        outcome = _invoke(self.call, request, deadline)
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

    def cancel_released(self, name: str, valid: message.Message, slow: message.Message | None) -> CheckResult:
        started = [self.call.future(slow or valid, timeout=30.0) for _ in range(self.options.cancel_calls)]
        # A delivery barrier, not a sleep: the calls of one channel reach the server in the order they
        # were started, so once a later call has been answered (whatever the answer: a server at its
        # limit refuses it) the server has received every call to be cancelled.
        _invoke(self.call, valid, self.options.timeout)
        for future in started:
            future.cancel()
        cancelled_at = time.monotonic()
        count = self.options.concurrency
        while True:  # poll: the server may take a moment to see the cancellations and free the slots
            outcomes = _invoke_many(self.call, valid, count, self.options.timeout)
            bad = [o for o in outcomes if o.code is not OK]
            waited = time.monotonic() - cancelled_at
            if not bad or waited >= self.options.release_bound:
                break
            time.sleep(0.05)
        what = f"after {len(started)} cancelled {'slow ' if slow is not None else ''}calls"
        if bad:
            detail = (
                f"{what}, {len(bad)} of {count} concurrent calls still failed {waited * 1000:.0f} ms later, "
                f"e.g. {bad[0].describe()}"
            )
            return self.failed(name, detail, "stop work and free its slot when a call is cancelled")
        return self.passed(name, f"{what}, {count} concurrent calls succeeded within {waited * 1000:.0f} ms")


@contextmanager
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
    shard_index: int = 0,
    shard_count: int = 1,
    imports: tuple[str, ...] = (),
    options: KitOptions | None = None,
) -> list[CheckResult]:
    """Run the leaf checks against the leaf at ``address`` serving ``shard_index`` of ``shard_count``.

    Raises SampleError when the sample's payloads cannot be encoded.
    """
    options = options or KitOptions()
    with _connect(address, options) as (channel, reachable):
        if reachable.status is Status.FAIL:
            return [reachable]
        resolver = TypeResolver(channel, imports, options.timeout)
        payload = to_any(sample.request, resolver.find)
        slow_payload = None if sample.slow_request is None else to_any(sample.slow_request, resolver.find)
        run = _Run(channel, LEAF_SERVICE, leaf_pb2_grpc.LeafStub(channel).Execute, options, resolver.find, LEAF_CHECKS)

        counter = iter(range(1, 1_000_000))

        def execute(any_payload: any_pb2.Any | None, shard: int = shard_index) -> leaf_pb2.ExecuteRequest:
            return leaf_pb2.ExecuteRequest(
                payload=any_payload,
                shard_index=shard,
                shard_count=shard_count,
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
            run.health("health-overall", ""),
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
            _wrong_shard(run, execute(payload, shard=shard_count), shard_index, shard_count),
            run.short_deadline("short-deadline", valid, slow),
            run.concurrent("concurrent", valid),
            run.cancel_released("cancel-released", valid, slow),
        ]
    _in_order(results, LEAF_CHECKS)
    return results


def _in_order(results: Sequence[CheckResult], checks: Sequence[Check]) -> None:
    """The kit's own invariant: a run returns exactly the listed checks, in order."""
    ids = [r.name for r in results]
    if ids != [check.id for check in checks]:
        raise AssertionError(f"the checks run ({ids}) are not the checks listed ({[c.id for c in checks]})")


def _wrong_shard(run: _Run, request: leaf_pb2.ExecuteRequest, shard_index: int, shard_count: int) -> CheckResult:
    outcome = _invoke(run.call, request, run.options.timeout)
    what = f"a request for shard {request.shard_index} of {shard_count} (this leaf serves {shard_index})"
    if outcome.code is not grpc.StatusCode.FAILED_PRECONDITION:
        fix = "answer FAILED_PRECONDITION when shard_index is not yours (or shard_count, when set, differs)"
        return run.failed("wrong-shard", f"{what} got {outcome.describe()}", fix)
    return run.passed("wrong-shard", f"{what}: FAILED_PRECONDITION")


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
    imports: tuple[str, ...] = (),
    options: KitOptions | None = None,
) -> list[CheckResult]:
    """Run the merge checks against the merge at ``address``. Raises SampleError for a bad sample."""
    options = options or KitOptions()
    with _connect(address, options) as (channel, reachable):
        if reachable.status is Status.FAIL:
            return [reachable]
        resolver = TypeResolver(channel, imports, options.timeout)
        payload = to_any(sample.request, resolver.find)
        partials = [to_any(p, resolver.find) for p in sample.partials]
        run = _Run(
            channel, MERGE_SERVICE, merge_pb2_grpc.MergeStub(channel).Merge, options, resolver.find, MERGE_CHECKS
        )
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
            run.health("health-overall", ""),
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
            run.cancel_released("cancel-released", base, None),
        ]
    _in_order(results, MERGE_CHECKS)
    return results
