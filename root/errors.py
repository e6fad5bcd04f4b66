"""Every error the root reports to a client, and the one table that maps it
to a gRPC status code.

    RootError                   base; ``code`` names the gRPC status
    ├── InvalidRequest          INVALID_ARGUMENT   bad payload or options (often a leaf's verdict)
    ├── DeadlineTooShort        DEADLINE_EXCEEDED  no time left for shards and merge
    ├── InsufficientCoverage    UNAVAILABLE        fewer shards answered than min_coverage
    ├── MergeFailed             (the merge's code) the merge call failed
    └── Overloaded              RESOURCE_EXHAUSTED the in-flight limit is reached

Codes are names (``"UNAVAILABLE"``), not ``grpc.StatusCode`` values, so the
pure policy modules can raise these errors without importing grpc; the
servicer turns the name into the status at the wire. ConfigError is not a
client error: it stops a process from starting.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field and the fix."""


class RootError(Exception):
    """A request the root answers with an error status."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(RootError):
    code = "INVALID_ARGUMENT"


class DeadlineTooShort(RootError):
    code = "DEADLINE_EXCEEDED"


class InsufficientCoverage(RootError):
    code = "UNAVAILABLE"


class Overloaded(RootError):
    code = "RESOURCE_EXHAUSTED"


class MergeFailed(RootError):
    """The merge answered with an error or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# How a leaf's or the merge's status is reported to the client, most specific
# first. A leaf's INVALID_ARGUMENT means the request itself is bad (every
# shard would say the same), so the client gets it; a merge that is down or
# overloaded makes the root unavailable; its deadline is the client's.
MERGE_CODE_TO_CLIENT: dict[str, str] = {
    "INVALID_ARGUMENT": "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED": "DEADLINE_EXCEEDED",
    "CANCELLED": "CANCELLED",
    "UNAVAILABLE": "UNAVAILABLE",
    "RESOURCE_EXHAUSTED": "UNAVAILABLE",
    "UNIMPLEMENTED": "INTERNAL",
}


def merge_failure(code: str, address: str, details: str) -> MergeFailed:
    """The error for a failed merge call, with the code the client should see."""
    client_code = MERGE_CODE_TO_CLIENT.get(code, "INTERNAL")
    return MergeFailed(client_code, f"merge at {address} failed with {code}: {details}")
