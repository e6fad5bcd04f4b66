"""The one place where SDK failures become gRPC status codes.

The hierarchy, and the code each maps to (most specific first)::

    Exception
    ├── InvalidRequest     INVALID_ARGUMENT     raised by user code: the request is bad
    ├── PayloadError       INVALID_ARGUMENT     payload of the wrong type or undecodable
    └── SdkError
        ├── UndecodableBody INVALID_ARGUMENT    the request body does not parse as the RPC's message
        ├── WrongShard     FAILED_PRECONDITION  a leaf asked for a shard it does not serve
        ├── Overloaded     RESOURCE_EXHAUSTED   at the concurrency limit; refused at once
        ├── NotReady       UNAVAILABLE          the start hook has not finished
        ├── TooLate        DEADLINE_EXCEEDED    the handler returned after the call's deadline
        └── BadResult      INTERNAL             the handler returned something not a message
    anything else          INTERNAL             "TypeName: message"; logged with traceback

``InvalidRequest`` is ``scatter_common.status.InvalidRequest`` itself, and
``Overloaded`` a kind of ``scatter_common.status.Overloaded``: the same faults
as the root's, one class each. What each code makes the root do is the status
table's (``scatter_common.status``): it retries NotReady's and Overloaded's
codes on another replica at once (counting the first against the replica's
health, not the second), passes InvalidRequest's to the client, and ends the
shard as ERROR on the others. ``tests/unit/test_status.py`` checks that this
table agrees with that one.

Only the last row is a bug in the user's code; it is the only one logged at
WARNING with a traceback. The others are the caller's or the operator's
business and are logged at DEBUG so a misbehaving client cannot flood logs,
except an undecodable body, logged at INFO in one line (``log_level``): a
client speaking another protocol, or built from another .proto, is worth an
operator's notice, and one line per call is what the root logs for any
failed request.
"""

from __future__ import annotations

import logging

import grpc

from scatter_common import status
from scatter_common.payload import PayloadError

# Users raise it from a handler (``leaf_sdk.InvalidRequest``): the caller gets
# INVALID_ARGUMENT with ``str(exc)`` as the message, and the root does not
# retry it on another replica. One class for every role (see its docstring).
InvalidRequest = status.InvalidRequest


class SdkError(Exception):
    """A failure the SDK itself detects, with a message meant for the caller."""

    log_level = logging.DEBUG  # how the call's refusal is logged (one line, no traceback)


class UndecodableBody(SdkError):
    """The request body is not the RPC's message (``scatter_common.bodies.Undecodable``)."""

    log_level = logging.INFO


class WrongShard(SdkError):
    """The request names a shard this leaf does not serve."""


class Overloaded(SdkError, status.Overloaded):
    """The process is at its concurrency limit."""


class NotReady(SdkError):
    """The start hook is still running (or the process is stopping)."""


class TooLate(SdkError):
    """The handler returned after its call's deadline passed: its answer would arrive for nobody.

    gRPC itself ends such a call with DEADLINE_EXCEEDED when its deadline timer wins the race
    with the answer; the SDK makes that the outcome every time, so a late answer never counts.
    """


class BadResult(SdkError):
    """The handler returned a value that is not a protobuf message."""


# Status names, as in the status table; the grpc.StatusCode view is made once, below.
CODES: tuple[tuple[type[Exception], str], ...] = (
    (InvalidRequest, InvalidRequest.code),
    (PayloadError, "INVALID_ARGUMENT"),
    (UndecodableBody, "INVALID_ARGUMENT"),
    (WrongShard, "FAILED_PRECONDITION"),
    (Overloaded, Overloaded.code),
    (NotReady, "UNAVAILABLE"),
    (TooLate, "DEADLINE_EXCEEDED"),
    (BadResult, "INTERNAL"),
)
_TABLE = tuple((kind, grpc.StatusCode[name]) for kind, name in CODES)


def to_status(exc: Exception) -> tuple[grpc.StatusCode, str, bool]:
    """Return ``(code, message, unexpected)`` for ``exc``.

    ``unexpected`` is True when the exception is a bug in the handler rather
    than a verdict on the request; those deserve a traceback in the log.
    """
    for kind, code in _TABLE:
        if isinstance(exc, kind):
            return code, str(exc), False
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}", True
