"""A leaf's options and the flags (with SCATTER_* environment fallbacks) that build them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdk_core import Flag, FlagParser, ServerOptions, int_in


@dataclass(frozen=True, kw_only=True)
class LeafOptions(ServerOptions):
    """How a leaf listens and which shard it serves. Validated on construction.

    Fields: ``address`` (``host:port`` or ``unix:/path``; port 0 picks one),
    ``shard_index``, ``shard_count``, ``max_concurrency``, ``grace_seconds``,
    ``max_message_bytes``. ``from_args`` builds them from flags and
    ``SCATTER_*`` variables.
    """

    description = "Serve one shard as a scatter/gather leaf."
    role_flags = (
        Flag("--shard-index", "SCATTER_SHARD_INDEX", int_in(0), 0, "the shard this leaf serves", "I"),
        Flag("--shard-count", "SCATTER_SHARD_COUNT", int_in(1), 1, "number of shards in the dataset", "N"),
    )

    shard_index: int = 0
    shard_count: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shard_count < 1:
            raise ValueError(f"shard_count must be >= 1, got {self.shard_count}")
        if not 0 <= self.shard_index < self.shard_count:
            raise ValueError(f"shard_index must be in 0..{self.shard_count - 1}, got {self.shard_index}")

    @classmethod
    def check_flags(cls, parser: FlagParser, values: Mapping[str, Any]) -> None:
        if values["shard_index"] >= values["shard_count"]:
            parser.error(
                f"shard index {values['shard_index']} is out of range for shard count {values['shard_count']}"
                " (--shard-index/SCATTER_SHARD_INDEX, --shard-count/SCATTER_SHARD_COUNT)"
            )
