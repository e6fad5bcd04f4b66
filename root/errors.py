"""Every error the root reports to a client, each with its gRPC status code
(the meaning of every code is the one status table, ``scatter_common.status``).

    StatusError (scatter_common.status)
    └── RootError                 base; ``code`` names the gRPC status
        ├── InvalidRequest        INVALID_ARGUMENT    bad body, payload or options (often a leaf's verdict)
        ├── WrongShard            FAILED_PRECONDITION a parent asked this root for shards it does not serve
        ├── TooLarge              RESOURCE_EXHAUSTED  the request cannot fit the root's own messages
        ├── DeadlineTooShort      DEADLINE_EXCEEDED   no time left for shards and merge
        ├── InsufficientCoverage  UNAVAILABLE         fewer shards answered than min_coverage
        ├── MergeFailed           the table's client  the merge call failed
        └── Overloaded            RESOURCE_EXHAUSTED  the in-flight limit is reached

``InvalidRequest`` and ``Overloaded`` are also the shared faults of
``scatter_common.status`` (the ones the SDKs raise), so one ``except`` or
``isinstance`` catches both roles' kinds. Codes are names (``"UNAVAILABLE"``),
not ``grpc.StatusCode`` values, so the pure policy modules can raise these
errors without importing grpc; the servicer turns the name into the status
at the wire. ConfigError is not a client error: it stops a process from
starting.
"""

from __future__ import annotations

from scatter_common import status


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field and the fix."""


class RootError(status.StatusError):
    """A request the root answers with an error status (``code``: INTERNAL unless a subclass says)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class Overloaded(RootError, status.Overloaded):
    """The root's in-flight limit is reached (``code`` from the shared class)."""


class MergeFailed(RootError):
    """The merge answered with an error or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def merge_failure(code: str, address: str, details: str) -> MergeFailed:
    """The error for a failed merge call, with the code the client should see.

    That code is the status table's "client" column (``scatter_common.status``
    says why for each): a merge that is down or overloaded makes the root
    unavailable, its deadline is the client's, anything unexpected is INTERNAL.
    """
    client_code = status.rule_for(code).client
    return MergeFailed(client_code, f"merge at {address} failed with {code}: {details}")
