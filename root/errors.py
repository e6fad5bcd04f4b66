"""Every error the root reports to a client, each with its gRPC status code
(the meaning of every code is the one status table, ``scatter_common.status``).

    StatusError (scatter_common.status)
    └── RootError                 base; ``code`` names the gRPC status
        ├── InvalidRequest        INVALID_ARGUMENT    bad body, payload or options (often a leaf's verdict)
        ├── WrongShard            FAILED_PRECONDITION a parent asked this root for shards it does not serve
        ├── TooLarge              RESOURCE_EXHAUSTED  the request cannot fit the root's own messages
        ├── DeadlineTooShort      DEADLINE_EXCEEDED   no time left for shards and merge
        ├── InsufficientCoverage  UNAVAILABLE         fewer shards answered than min_coverage
        │   └── CoverageTimedOut  DEADLINE_EXCEEDED   ... and every missing shard ran out of time
        ├── MergeFailed           the table's client  the merge call failed
        └── Overloaded            RESOURCE_EXHAUSTED  the in-flight limit is reached

``InvalidRequest`` and ``Overloaded`` are also the shared faults of
``scatter_common.status`` (the ones the SDKs raise), so one ``except`` or
``isinstance`` catches both roles' kinds. Codes are names (``"UNAVAILABLE"``),
not ``grpc.StatusCode`` values, so the pure policy modules can raise these
errors without importing grpc; the servicer turns the name into the status
at the wire. ConfigError is not a client error: it stops a process from
starting.

What a client reads: which shard (or the merge) failed and what to do, never
an internal address or another process's exception text. A RootError's
``message`` is the client's, its ``detail`` the log's (the same unless
something was withheld); ``shard_error`` rewrites a failed shard's reason
the same way. ``[root] detailed_errors = true`` hands the detail to clients
too (for debugging). The leaves' and the merge's INVALID_ARGUMENT messages
pass through: they are the application's verdict on the request, written
for its client.
"""

from __future__ import annotations

from protos.scatter_gather.v1 import shard_pb2
from scatter_common import status


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field and the fix."""


class RootError(status.StatusError):
    """A request the root answers with an error status (``code``: INTERNAL unless a subclass says)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message  # for the client
        self.detail = detail or message  # for the log: may name addresses and carry other processes' text


class InvalidRequest(RootError, status.InvalidRequest):
    """The client's request is bad, or a leaf said so (``code`` from the shared class)."""


class WrongShard(RootError):
    """Leaf.Execute on a root for another span of shards: a mis-wired tree (as a leaf answers it)."""

    code = "FAILED_PRECONDITION"


class TooLarge(RootError):
    """A request, or the merge request it leads to, is over the root's ``max_message_bytes``.

    RESOURCE_EXHAUSTED, as gRPC itself answers a message over its limit;
    unlike ``Overloaded`` a retry of the same request cannot succeed.
    """

    code = "RESOURCE_EXHAUSTED"


class DeadlineTooShort(RootError):
    code = "DEADLINE_EXCEEDED"


class InsufficientCoverage(RootError):
    code = "UNAVAILABLE"


class CoverageTimedOut(InsufficientCoverage):
    """Coverage below min_coverage, and every missing shard is TIMEOUT: the deadline was too short.

    DEADLINE_EXCEEDED, not UNAVAILABLE: a client (or a retry policy) that
    retries UNAVAILABLE with the same deadline would only add load; the fix
    is a longer deadline or a lower min_coverage.
    """

    code = "DEADLINE_EXCEEDED"


class Overloaded(RootError, status.Overloaded):
    """The root's in-flight limit is reached (``code`` from the shared class)."""


class MergeFailed(RootError):
    """The merge answered with an error or could not be reached."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(message, detail)
        self.code = code


_SEE_LOGS = "the root's log has the detail"


def merge_failure(code: str, address: str, details: str) -> MergeFailed:
    """The error for a failed merge call, with the code the client should see.

    That code is the status table's "client" column (``scatter_common.status``
    says why for each): a merge that is down or overloaded makes the root
    unavailable, its deadline is the client's, anything unexpected is INTERNAL.
    The merge's address and its details go to ``detail`` only, except an
    INVALID_ARGUMENT's message: the merge's verdict on the request.
    """
    client_code = status.rule_for(code).client
    detail = f"merge at {address} failed with {code}: {details}"
    if code == "INVALID_ARGUMENT":
        message = f"the merge rejected the request: {details}"
    elif client_code == "UNAVAILABLE":
        message = f"the merge is unavailable ({code}): retry with backoff; {_SEE_LOGS}"
    elif client_code == "DEADLINE_EXCEEDED":
        message = "the merge did not answer before the deadline: retry with a longer deadline"
    elif client_code == "CANCELLED":
        message = "the merge call was cancelled"
    else:
        message = f"the merge failed with {code}, a fault of the deployment, not of the request; {_SEE_LOGS}"
    return MergeFailed(client_code, message, detail)


# What a client reads for a shard that failed with a code (the report's status says how).
_SHARD_ADVICE = {
    "UNAVAILABLE": "no replica could be reached: retry with backoff; if it lasts, check the shard's leaves",
    "RESOURCE_EXHAUSTED": "every replica tried was overloaded: retry with backoff",
    "CANCELLED": "the call was cancelled",
    "FAILED_PRECONDITION": "the leaf refused the call (it may serve another shard): check the deployment",
}


def shard_error(shard_status: int, reason: str) -> str:
    """The client's version of a failed shard's reason (``ShardReport.error``, ``MissingShard.reason``).

    ``reason`` is what the attempt plan wrote: "CODE: the replica's details"
    (just the details for UNAVAILABLE), or the root's own words for a shard
    that timed out or was cut off, which have nothing to withhold. Keeps
    the code, drops the details (addresses, the leaf's exception text),
    says what to do. An INVALID_ARGUMENT is the leaf's verdict and passes.
    """
    if shard_status in (shard_pb2.SHARD_STATUS_TIMEOUT, shard_pb2.SHARD_STATUS_SKIPPED) or not reason:
        return reason
    code, sep, _ = reason.partition(": ")
    if not sep or code not in status.STATUS:
        code = "UNAVAILABLE" if shard_status == shard_pb2.SHARD_STATUS_UNAVAILABLE else "UNKNOWN"
    if code == "INVALID_ARGUMENT":
        return reason
    advice = _SHARD_ADVICE.get(code, "the leaf failed, a fault of the deployment, not of the request")
    return f"{code}: {advice}; {_SEE_LOGS}"
