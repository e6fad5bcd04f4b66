"""The one place where SDK failures become gRPC status codes.

The hierarchy, and the code each maps to (most specific first)::

    Exception
    ├── InvalidRequest     INVALID_ARGUMENT     raised by user code: the request is bad
    ├── PayloadError       INVALID_ARGUMENT     payload of the wrong type or undecodable
    └── SdkError
        ├── WrongShard     FAILED_PRECONDITION  a leaf asked for a shard it does not serve
        ├── Overloaded     RESOURCE_EXHAUSTED   at the concurrency limit; refused at once
        ├── NotReady       UNAVAILABLE          the start hook has not finished
        └── BadResult      INTERNAL             the handler returned something not a message
    anything else          INTERNAL             "TypeName: message"; logged with traceback

Only the last row is a bug in the user's code; it is the only one logged at
WARNING with a traceback. The others are the caller's or the operator's
business and are logged at DEBUG so a misbehaving client cannot flood logs.
"""

from __future__ import annotations

import grpc

from scatter_common.payload import PayloadError


class InvalidRequest(Exception):
    """Raise from a handler when the request itself is unacceptable.

    The caller gets INVALID_ARGUMENT with ``str(exc)`` as the message, and
    the root will not retry it on another replica.
    """


class SdkError(Exception):
    """A failure the SDK itself detects, with a message meant for the caller."""


class WrongShard(SdkError):
    """The request names a shard this leaf does not serve."""


class Overloaded(SdkError):
    """The process is at its concurrency limit."""


class NotReady(SdkError):
    """The start hook is still running (or the process is stopping)."""


class BadResult(SdkError):
    """The handler returned a value that is not a protobuf message."""


_TABLE: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (PayloadError, grpc.StatusCode.INVALID_ARGUMENT),
    (WrongShard, grpc.StatusCode.FAILED_PRECONDITION),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (BadResult, grpc.StatusCode.INTERNAL),
)


def to_status(exc: Exception) -> tuple[grpc.StatusCode, str, bool]:
    """Return ``(code, message, unexpected)`` for ``exc``.

    ``unexpected`` is True when the exception is a bug in the handler rather
    than a verdict on the request; those deserve a traceback in the log.
    """
    for kind, code in _TABLE:
        if isinstance(exc, kind):
            return code, str(exc), False
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}", True
