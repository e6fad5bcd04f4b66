"""A leaf's options and the flags (with SCATTER_* environment fallbacks) that build them."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdk_core import Flag, FlagParser, ServerOptions, int_in

# The most shards one process may serve: a list longer than this is a typo, not a plan.
MAX_SHARDS_PER_PROCESS = 4096


def shard_list(text: str) -> tuple[int, ...]:
    """``"0-3,6"`` -> (0, 1, 2, 3, 6): shard indexes and inclusive ranges, comma-separated, none twice."""
    shards: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            low = high = -1
        if low < 0 or high < low or len(shards) + high - low >= MAX_SHARDS_PER_PROCESS:
            raise argparse.ArgumentTypeError(
                f"expected shard indexes and ranges such as '0-3,6' (at most {MAX_SHARDS_PER_PROCESS}), got {text!r}"
            )
        shards.extend(range(low, high + 1))
    if len(set(shards)) != len(shards):
        raise argparse.ArgumentTypeError(f"a shard appears twice in {text!r}")
    return tuple(shards)


@dataclass(frozen=True, kw_only=True)
class LeafOptions(ServerOptions):
    """How a leaf listens and which shards it serves. Validated on construction.

    Fields: ``address`` (``host:port`` or ``unix:/path``; port 0 picks one),
    ``shard_index``, ``shard_count``, ``shards`` (several shards served by
    this one process; when set it replaces ``shard_index``, which becomes
    its first), ``max_concurrency``, ``grace_seconds``,
    ``max_message_bytes``. ``from_args`` builds them from flags and
    ``SCATTER_*`` variables.
    """

    description = "Serve one shard, or several, as a scatter/gather leaf."
    role_flags = (
        Flag("--shard-index", "SCATTER_SHARD_INDEX", int_in(0), 0, "the shard this leaf serves", "I"),
        Flag("--shard-count", "SCATTER_SHARD_COUNT", int_in(1), 1, "number of shards in the dataset", "N"),
        Flag(
            "--shards",
            "SCATTER_SHARDS",
            shard_list,
            (),
            "several shards served by this process, e.g. '0-3' or '0,4'; replaces --shard-index",
            "LIST",
        ),
    )

    shard_index: int = 0
    shard_count: int = 1
    shards: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shard_count < 1:
            raise ValueError(f"shard_count must be >= 1, got {self.shard_count}")
        if self.shards:
            object.__setattr__(self, "shards", tuple(self.shards))
            object.__setattr__(self, "shard_index", self.shards[0])
            if len(set(self.shards)) != len(self.shards):
                raise ValueError(f"shards lists a shard twice: {self.shards}")
            outside = [s for s in self.shards if not 0 <= s < self.shard_count]
            if outside:
                raise ValueError(f"shards must be in 0..{self.shard_count - 1}, got {outside[0]}")
        elif not 0 <= self.shard_index < self.shard_count:
            raise ValueError(f"shard_index must be in 0..{self.shard_count - 1}, got {self.shard_index}")

    @property
    def served(self) -> tuple[int, ...]:
        """Every shard this process serves, in the order given."""
        return self.shards or (self.shard_index,)

    @classmethod
    def check_flags(cls, parser: FlagParser, values: Mapping[str, Any]) -> None:
        count = values["shard_count"]
        outside = [s for s in values["shards"] if s >= count]
        if outside:
            parser.error(
                f"shard {outside[0]} is out of range for shard count {count}"
                " (--shards/SCATTER_SHARDS, --shard-count/SCATTER_SHARD_COUNT)"
            )
        if not values["shards"] and values["shard_index"] >= count:
            parser.error(
                f"shard index {values['shard_index']} is out of range for shard count {count}"
                " (--shard-index/SCATTER_SHARD_INDEX, --shard-count/SCATTER_SHARD_COUNT)"
            )
