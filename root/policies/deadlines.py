"""Deadline arithmetic for one request: pure, no I/O, no clock of its own.

The total time is the client's deadline, or the configured default when the
client sent none, capped by the configured maximum (a client asking for an
hour must not pin root resources for an hour). The shards get the total
minus a reserve kept for the merge; when nothing useful is left the request
fails at once with DEADLINE_EXCEEDED instead of fanning out work that can
only be thrown away.
"""

from __future__ import annotations

from dataclasses import dataclass

from root.errors import ConfigError, DeadlineTooShort

# Below this, a shard call cannot even cross loopback and back (a gRPC unary
# call costs ~0.15 ms each way here); fanning out would only waste leaf work.
MIN_SHARD_BUDGET = 0.001


@dataclass(frozen=True)
class Budget:
    """Seconds, relative to the request's arrival."""

    total: float  # until the answer must be back at the client
    shards: float  # until every shard call must be over


@dataclass(frozen=True)
class DeadlinePolicy:
    default: float
    maximum: float
    merge_reserve: float

    def __post_init__(self) -> None:
        if self.default <= 0:
            raise ConfigError(f"default_deadline_ms must be > 0, got {self.default * 1000:g}")
        if self.maximum < self.default:
            raise ConfigError(
                f"max_deadline_ms ({self.maximum * 1000:g}) must be >= default_deadline_ms ({self.default * 1000:g})"
            )
        if not 0 <= self.merge_reserve < self.default:
            raise ConfigError(
                f"merge_reserve_ms must be in [0, default_deadline_ms), got {self.merge_reserve * 1000:g}"
            )

    def budget(self, client_remaining: float | None) -> Budget:
        """The budget for a request whose client allows ``client_remaining`` seconds (None: no deadline)."""
        total = self.default if client_remaining is None else min(client_remaining, self.maximum)
        shards = total - self.merge_reserve
        if shards < MIN_SHARD_BUDGET:
            raise DeadlineTooShort(
                f"deadline of {max(total, 0) * 1000:.1f} ms leaves no time for the shards after the "
                f"{self.merge_reserve * 1000:g} ms reserved for the merge; send a longer deadline"
            )
        return Budget(total=total, shards=shards)
