"""Coverage of one request and the decision to answer with partial results.

Pure: takes the shards' outcomes, builds the Coverage message and decides
whether enough shards answered. A response with coverage below min_coverage
is refused with UNAVAILABLE naming the missing shards (Elasticsearch's
``allow_partial_search_results=false``), or with DEADLINE_EXCEEDED when every
missing shard ran out of time (a retry with the same deadline cannot help);
at or above it the client gets the partial answer and the coverage that
says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from protos.scatter_gather.v1 import shard_pb2
from root.errors import CoverageTimedOut, InsufficientCoverage, InvalidRequest

# Float fractions like 2/3 must compare equal to a configured 0.6666666666666666.
_EPSILON = 1e-9
# How many missing shards an error message lists before it says "and N more".
_MAX_NAMED = 8


def build_coverage(
    reports: Sequence[shard_pb2.ShardReport],
    subtrees: Sequence[shard_pb2.Coverage | None] | None = None,
    spans: Sequence[tuple[int, int]] | None = None,
) -> shard_pb2.Coverage:
    """Coverage over ``reports`` (one per shard, in shard order), counted in leaf shards.

    A shard served by another root (a subtree) answers with its own coverage
    in ``subtrees[i]``, which is added in. ``spans[i]`` is (first leaf shard
    index, number of leaf shards) of shard i, used when it did not answer:
    each of its leaf shards is then missing. Without subtrees and spans
    (a flat root) every shard is one leaf shard with its own index.
    """
    coverage = shard_pb2.Coverage()
    total = answered = 0
    for i, report in enumerate(reports):
        subtree = subtrees[i] if subtrees is not None else None
        if report.status == shard_pb2.SHARD_STATUS_OK:
            if subtree is None:
                total += 1
                answered += 1
            else:
                total += subtree.total
                answered += subtree.answered
                coverage.missing.extend(subtree.missing)
            continue
        first, count = spans[i] if spans is not None else (report.shard_index, 1)
        total += count
        for leaf in range(first, first + count):
            coverage.missing.add(shard_index=leaf, status=report.status, reason=report.error)
    coverage.total = total
    coverage.answered = answered
    return coverage


def check_leaf_verdicts(invalid: dict[int, str]) -> None:
    """Fail the request when a leaf said the request itself is invalid.

    ``invalid`` maps shard index to the leaf's INVALID_ARGUMENT message. One
    such verdict is enough: every shard runs the same code on the same bytes.
    """
    if invalid:
        shard, message = min(invalid.items())
        raise InvalidRequest(f"shard {shard} rejected the request: {message}")


def require_coverage(coverage: shard_pb2.Coverage, min_coverage: float) -> None:
    """Raise InsufficientCoverage when fewer than ``min_coverage`` of the shards answered."""
    if coverage.total and coverage.answered / coverage.total + _EPSILON >= min_coverage:
        return
    names = [
        f"shard {m.shard_index} ({shard_pb2.ShardStatus.Name(m.status).removeprefix('SHARD_STATUS_')}"
        + (f": {m.reason}" if m.reason else "")
        + ")"
        for m in coverage.missing[:_MAX_NAMED]
    ]
    more = len(coverage.missing) - len(names)
    listed = "; ".join(names) + (f"; and {more} more" if more > 0 else "")
    message = f"coverage {coverage.answered}/{coverage.total} is below min_coverage {min_coverage:g}; missing: {listed}"
    if coverage.missing and all(m.status == shard_pb2.SHARD_STATUS_TIMEOUT for m in coverage.missing):
        raise CoverageTimedOut(message + "; the shards ran out of time: raise the deadline or lower min_coverage")
    raise InsufficientCoverage(message)
