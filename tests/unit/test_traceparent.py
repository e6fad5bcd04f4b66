"""W3C Trace Context parsing, rule by rule (https://www.w3.org/TR/trace-context/#traceparent-header)."""

from __future__ import annotations

import pytest

from scatter_common.tracing import TraceContext, parse_traceparent, trace_id_of

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
V00 = f"00-{TRACE}-{PARENT}-01"


@pytest.mark.parametrize(
    ("header", "parsed"),
    [(V00, (TRACE, "01")),
     (f"00-{TRACE}-{PARENT}-00", (TRACE, "00")),
     (f"00-{TRACE}-{PARENT}-03", (TRACE, "03")),  # version 00: the flags as sent
     (f"  {V00}\t", (TRACE, "01")),  # HTTP's optional whitespace around a value
     # A higher version: its known fields are parsed, what follows a dash ignored,
     # and of its flags only the sampled bit is kept.
     (f"01-{TRACE}-{PARENT}-01", (TRACE, "01")),
     (f"cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like", (TRACE, "01")),
     (f"fe-{TRACE}-{PARENT}-09-x", (TRACE, "01")),
     (f"fe-{TRACE}-{PARENT}-02", (TRACE, "00"))],
)  # fmt: skip
def test_valid(header: str, parsed: tuple[str, str]) -> None:
    assert parse_traceparent(header) == parsed
    assert TraceContext.from_header(header) == TraceContext(*parsed)


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage",
     V00.upper(),  # lowercase hex only
     f"00-{TRACE.upper()}-{PARENT}-01",
     f"00-{TRACE}-{PARENT.upper()}-01",
     f"00-{TRACE}-{PARENT}-0A",
     f"Cc-{TRACE}-{PARENT}-01",
     f"ff-{TRACE}-{PARENT}-01",  # version ff is invalid
     f"ff-{TRACE}-{PARENT}-01-extra",
     f"00-{'0' * 32}-{PARENT}-01",  # all-zero ids are invalid
     f"00-{TRACE}-{'0' * 16}-01",
     f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has nothing after the flags
     f"00-{TRACE}-{PARENT}-010",
     f"cc-{TRACE}-{PARENT}-01x",  # a higher version: the flags end the value or a dash follows
     f"cc-{TRACE}-{PARENT}-1",  # shorter than 55 characters
     f"00-{TRACE[:-1]}-{PARENT}-01",
     f"00_{TRACE}_{PARENT}_01",
     f"0-{TRACE}-{PARENT}-01"],
)  # fmt: skip
def test_invalid_restarts_the_trace(header: str | None) -> None:
    assert parse_traceparent(header) is None
    context = TraceContext.from_header(header)
    assert len(context.trace_id) == 32 and context.trace_id != TRACE and context.flags == "01"


def test_trace_id_of_metadata_uses_the_same_rules() -> None:
    assert trace_id_of((("x", "y"), ("traceparent", f"cc-{TRACE}-{PARENT}-01-more"))) == TRACE
    assert trace_id_of((("traceparent", V00.upper()),)) == ""
    assert trace_id_of(None) == ""


def test_child_header_is_version_00_with_the_trace_and_flags() -> None:
    child = TraceContext.from_header(f"cc-{TRACE}-{PARENT}-01-more").child_header()
    assert child.startswith(f"00-{TRACE}-") and child.endswith("-01")
    assert parse_traceparent(child) == (TRACE, "01")
