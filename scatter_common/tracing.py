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
# W3C Trace Context, "traceparent Header Field Values": version 00 is exactly
# these four fields; a higher version starts with them and may add more after
# a dash. Lowercase hex only ("Vendors MUST ... lowercase"), so no re.I and no
# .lower(): an uppercase header is invalid and restarts the trace.
_FIELDS = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_VERSION_00_LENGTH = 55
_INVALID_VERSION = "ff"
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16
_SAMPLED = "01"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, flags) of a valid ``traceparent`` value, or None.

    The spec's rules: version ff is invalid; version 00 has nothing after
    the flags; a higher version is parsed for the fields this version knows
    (the 55 characters, then the end or a dash), the rest ignored, and only
    the sampled bit of its flags is kept, the one flag whose meaning we know;
    an all-zero trace id or parent id is invalid. Surrounding whitespace is
    dropped (HTTP's optional whitespace around a field value).
    """
    if not value:
        return None
    value = value.strip()
    match = _FIELDS.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version == _INVALID_VERSION or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if version == "00":
        if len(value) != _VERSION_00_LENGTH:
            return None
    else:
        if len(value) > _VERSION_00_LENGTH and value[_VERSION_00_LENGTH] != "-":
            return None
        flags = f"{int(flags, 16) & 1:02x}"
    return trace_id, flags


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits, not all zero
    flags: str = _SAMPLED

    @classmethod
    def from_header(cls, value: str | None) -> TraceContext:
        """The caller's trace, or a new one when ``value`` is absent or invalid."""
        parsed = parse_traceparent(value)
        if parsed is not None:
            return cls(*parsed)
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
    parsed = parse_traceparent(traceparent_of(metadata))
    return parsed[0] if parsed else ""
