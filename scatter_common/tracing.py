"""W3C Trace Context (``traceparent``) for requests that cross processes.

A client may send ``traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2
hex flags>`` in its gRPC metadata; the root keeps the trace id (or starts a
new trace when the header is absent or malformed, as the spec asks), uses it
as the request id in its logs and in ExecuteRequest/MergeRequest, and sends
each leaf and merge call a ``traceparent`` with the same trace id and a new
span id. Pure string work: no grpc import, no clock.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

HEADER = "traceparent"
_VALID = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_SAMPLED = "01"


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits, not all zero
    flags: str = _SAMPLED

    @classmethod
    def from_header(cls, value: str | None) -> TraceContext:
        """The caller's trace, or a new one when ``value`` is absent or invalid."""
        if value:
            match = _VALID.match(value.strip().lower())
            if match and match[1] != "ff" and match[2] != "0" * 32 and match[3] != "0" * 16:
                return cls(match[2], match[4])
        return cls(os.urandom(16).hex())

    def child_header(self) -> str:
        """A ``traceparent`` for one outgoing call: same trace, a new span id."""
        return f"00-{self.trace_id}-{os.urandom(8).hex()}-{self.flags}"


def traceparent_of(metadata: object) -> str | None:
    """The ``traceparent`` value in a call's metadata (a sequence of (key, value) pairs), if any."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == HEADER and isinstance(value, str):
            return value
    return None


def trace_id_of(metadata: object) -> str:
    """The trace id in a call's metadata, or "" when it carries no valid ``traceparent``."""
    match = _VALID.match((traceparent_of(metadata) or "").strip().lower())
    return match[2] if match else ""
