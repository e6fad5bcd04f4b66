"""Results of the conformance checks and how they are shown: a table or JSON.

Pure: no grpc, no I/O beyond building strings.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass


class Status(enum.StrEnum):
    """PASS and FAIL are verdicts; WARN is a SHOULD of the contract; SKIP did not run."""

    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckResult:
    """One row: a stable check id, its verdict, and what happened (for a FAIL: what to fix,
    and the duty of the contract it broke, as the .proto states it)."""

    name: str
    status: Status
    detail: str
    duty: str = ""


def failed(results: Sequence[CheckResult]) -> list[str]:
    """Ids of the failed checks, in order."""
    return [r.name for r in results if r.status is Status.FAIL]


def table(title: str, results: Sequence[CheckResult]) -> str:
    """A plain-text table, one row per check, with a summary line."""
    width = max([len("check"), *(len(r.name) for r in results)])
    lines = [title, "", f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.name:<{width}}  {r.status.value:<6}  {r.detail}" for r in results]
    counts = {status: sum(r.status is status for r in results) for status in Status}
    summary = ", ".join(f"{n} {status.value.lower()}" for status, n in counts.items() if n)
    verdict = "FAILED" if counts[Status.FAIL] else "PASSED"
    lines += ["", f"{verdict}: {summary}"]
    return "\n".join(lines)


# The version of the JSON document ``as_json`` prints; docs/any-language.md ("--json") describes it.
# Adding a key keeps the version; renaming, removing or changing the meaning of one bumps it.
JSON_SCHEMA = "scatter.conformance/v1"


def as_json(
    role: str,
    address: str,
    results: Sequence[CheckResult],
    *,
    shard: tuple[int, int, bool] | None = None,
    elapsed: float = 0.0,
) -> str:
    """The results as JSON, for scripts (schema ``JSON_SCHEMA``)::

        {"schema": "scatter.conformance/v1", "role": "leaf"|"merge", "address": str, "passed": bool,
         "shard": {"index": int, "count": int, "learned": bool} | null, "elapsed_seconds": float,
         "summary": {"PASS": int, "FAIL": int, "WARN": int, "SKIP": int},
         "checks": [{"name": str, "status": "PASS"|"FAIL"|"WARN"|"SKIP", "detail": str, "duty": str}]}

    ``duty`` is present on a FAIL only; ``shard`` is null for a merge, or a leaf run that stopped before
    the shard was known.
    """
    checks = [
        {"name": r.name, "status": r.status.value, "detail": r.detail, **({"duty": r.duty} if r.duty else {})}
        for r in results
    ]
    document = {
        "schema": JSON_SCHEMA,
        "role": role,
        "address": address,
        "passed": not failed(results),
        "shard": None if shard is None else {"index": shard[0], "count": shard[1], "learned": shard[2]},
        "elapsed_seconds": round(elapsed, 3),
        "summary": {status.value: sum(r.status is status for r in results) for status in Status},
        "checks": checks,
    }
    return json.dumps(document, indent=2)
