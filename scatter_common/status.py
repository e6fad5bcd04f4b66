"""The one table of gRPC status codes: what each means to every role.

Every other mapping of status codes is derived from ``STATUS`` (or checked
against it by a test): the root's failover rule (``hedging``), replica health
(``replicas``), the ShardStatus a failed shard ends with (``root.scatter``),
the code a client sees when the merge fails (``root.errors``), and the codes
the SDKs answer with (``sdk_core.errors``). Change a rule here, nowhere else.

Codes are the ``grpc.StatusCode`` member names as strings (``"UNAVAILABLE"``)
so the pure policies can use the table without importing grpc; code at the
wire turns a name into the enum with ``grpc.StatusCode[name]``. OK is not in
the table: it is a success, never looked up. A name the table does not know
is read as UNKNOWN (``rule_for``). ``tests/unit/test_status.py`` checks that
the table covers every member of ``grpc.StatusCode``.

Columns (``StatusRule``):

    retry     the root's next attempt starts at once on another replica
              (gRPC's non_fatal_status_codes; these are its default, an
              operator may configure others); the rest end the shard
    health    how the attempt's end counts for the replica that sent it
              (``root.policies.FailureKind`` values: its latency estimate
              and failure streak). Outlier ejection counts only replica
              faults, judged against a sibling that answered the same
              request (``root.policies.attempts``, rule 8): an
              "unavailable" while another replica answered is one; no
              code alone is, since a request can fail alike everywhere
    shard     the ShardStatus a shard ends with when this code ends it; a
              retried code ends it only when no replica is left, and then
              as UNAVAILABLE (``RETRIES_EXHAUSTED``), whatever this column says
    verdict   the leaf judged the request itself: every shard would say the
              same, so the client gets this code for the whole request
    client    the code the client gets when the merge fails with this code

``HTTP_STATUS`` is the one other view of the codes, for HTTP doors (the
root's JSON ingress): grpc-gateway's mapping (``runtime.HTTPStatusFromCode``),
which HTTP clients of gRPC services already know. It covers OK and every
code of the table (``tests/unit/test_status.py``).

Also here: ``InvalidRequest`` and ``Overloaded``, the two faults that both
the root and the SDKs raise, one class each with its code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from protos.scatter_gather.v1 import shard_pb2

__all__ = [
    "HTTP_STATUS",
    "RETRIES_EXHAUSTED",
    "STATUS",
    "Health",
    "InvalidRequest",
    "Overloaded",
    "StatusError",
    "StatusRule",
    "rule_for",
]

# The values of root.policies.FailureKind that a status can map to.
Health = Literal["unavailable", "timeout", "error", "overloaded", "rejected", "cancelled"]

ERROR = shard_pb2.SHARD_STATUS_ERROR
TIMEOUT = shard_pb2.SHARD_STATUS_TIMEOUT
# The ShardStatus of a shard whose every replica failed with a retried code.
RETRIES_EXHAUSTED = shard_pb2.SHARD_STATUS_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class StatusRule:
    """What one gRPC status code means to the root and the SDKs (see the module docstring)."""

    retry: bool
    health: Health
    shard: shard_pb2.ShardStatus.ValueType
    client: str
    verdict: bool = False


STATUS: dict[str, StatusRule] = {
    # Retried elsewhere. UNAVAILABLE: the replica is down, refused the
    # connection or is draining; another may well answer (gRPC's canonical
    # retryable code). RESOURCE_EXHAUSTED: the leaf shed the call before doing
    # any work (Finagle retries such "nacks" freely); another replica may have
    # room. Shedding is no fault of health: ejecting replicas for being
    # overloaded pushes their load onto the rest and cascades. A merge that is
    # down or overloaded makes the root unavailable. (shard=ERROR only when an
    # operator removes them from non_fatal_status_codes.)
    "UNAVAILABLE": StatusRule(retry=True, health="unavailable", shard=ERROR, client="UNAVAILABLE"),
    "RESOURCE_EXHAUSTED": StatusRule(retry=True, health="overloaded", shard=ERROR, client="UNAVAILABLE"),
    # The deadline is the request's, shared by every attempt: the shard is
    # TIMEOUT once no attempt is left running; the client's own deadline.
    "DEADLINE_EXCEEDED": StatusRule(retry=False, health="timeout", shard=TIMEOUT, client="DEADLINE_EXCEEDED"),
    "CANCELLED": StatusRule(retry=False, health="cancelled", shard=ERROR, client="CANCELLED"),
    # The request's own fault: the replica did answer (its failure streak
    # ends) and another would answer the same. INVALID_ARGUMENT is the leaf's
    # verdict on the request, which the client gets as it is.
    "INVALID_ARGUMENT": StatusRule(
        retry=False, health="rejected", shard=ERROR, client="INVALID_ARGUMENT", verdict=True
    ),
    "FAILED_PRECONDITION": StatusRule(retry=False, health="rejected", shard=ERROR, client="INTERNAL"),
    "NOT_FOUND": StatusRule(retry=False, health="rejected", shard=ERROR, client="INTERNAL"),
    "ALREADY_EXISTS": StatusRule(retry=False, health="rejected", shard=ERROR, client="INTERNAL"),
    "PERMISSION_DENIED": StatusRule(retry=False, health="rejected", shard=ERROR, client="INTERNAL"),
    "UNAUTHENTICATED": StatusRule(retry=False, health="rejected", shard=ERROR, client="INTERNAL"),
    "ABORTED": StatusRule(retry=False, health="rejected", shard=ERROR, client="INTERNAL"),
    "OUT_OF_RANGE": StatusRule(retry=False, health="rejected", shard=ERROR, client="INTERNAL"),
    # A bug, an I/O error, the wrong service: retrying elsewhere cannot fix the
    # code that fails, and it may be the request that triggers it (a value
    # that makes every leaf raise), so it never counts toward ejection.
    "INTERNAL": StatusRule(retry=False, health="error", shard=ERROR, client="INTERNAL"),
    "UNKNOWN": StatusRule(retry=False, health="error", shard=ERROR, client="INTERNAL"),
    "UNIMPLEMENTED": StatusRule(retry=False, health="error", shard=ERROR, client="INTERNAL"),
    "DATA_LOSS": StatusRule(retry=False, health="error", shard=ERROR, client="INTERNAL"),
}


# gRPC status name -> HTTP status, as grpc-gateway maps them. FAILED_PRECONDITION is 400 on
# purpose (gateway: "deliberately doesn't translate to ... 412 Precondition Failed", which is about
# HTTP's own If-* headers); CANCELLED is 499, nginx's "client closed request".
HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


def rule_for(code: str) -> StatusRule:
    """The rule of status name ``code`` (not OK); a name the table does not know is UNKNOWN."""
    return STATUS.get(code) or STATUS["UNKNOWN"]


class StatusError(Exception):
    """A failure whose gRPC status is part of the contract; ``code`` names it."""

    code = "INTERNAL"


class InvalidRequest(StatusError):
    """The request itself is unacceptable: INVALID_ARGUMENT, with ``str(exc)`` as the message.

    Raise it from a leaf or merge handler (``leaf_sdk.InvalidRequest``); the
    root raises its own kind (``root.errors.InvalidRequest``) for a bad
    request it sees first. Never retried on another replica: every replica
    would say the same.
    """

    code = "INVALID_ARGUMENT"


class Overloaded(StatusError):
    """At a concurrency or in-flight limit, refused at once: RESOURCE_EXHAUSTED."""

    code = "RESOURCE_EXHAUSTED"
