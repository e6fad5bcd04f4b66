"""``Partial``: one shard's answer as the merge function sees it, and ``ShardStatus``.

Status is a ``StrEnum`` mirroring ``scatter_gather.v1.ShardStatus`` without
its prefix: ``partial.status is ShardStatus.OK`` reads well in code, and
``partial.status == "TIMEOUT"`` still works in a quick script or a log line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

from protos.scatter_gather.v1 import shard_pb2

T = TypeVar("T")


class ShardStatus(enum.StrEnum):
    """Outcome of one shard; the proto's ``SHARD_STATUS_*`` names without the prefix."""

    UNSPECIFIED = "UNSPECIFIED"
    OK = "OK"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"
    UNAVAILABLE = "UNAVAILABLE"
    SKIPPED = "SKIPPED"


# proto enum number -> ShardStatus, built once from the descriptor so a
# renamed value fails at import rather than at the first merge. A number
# this SDK does not know (a newer root) reads as UNSPECIFIED.
STATUS_BY_NUMBER: dict[int, ShardStatus] = {
    value.number: ShardStatus(value.name.removeprefix("SHARD_STATUS_"))
    for value in shard_pb2.DESCRIPTOR.enum_types_by_name["ShardStatus"].values
}


@dataclass(frozen=True, slots=True)
class Partial(Generic[T]):
    """One shard's result. ``payload`` is decoded for OK shards and None for the others.

    Merge functions get one ``Partial`` per shard, in shard order, failed
    shards included, so that they can tell "no hits" from "no answer".
    """

    shard_index: int
    status: ShardStatus
    payload: T | None
    replica: str = ""
    latency_seconds: float = 0.0
    attempts: int = 0
    hedge_won: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the shard answered (and ``payload`` is set)."""
        return self.status is ShardStatus.OK
