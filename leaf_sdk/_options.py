"""A leaf's options and the flags (with SCATTER_* environment fallbacks) that build them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sdk_core import SERVER_FLAGS, Flag, FlagParser, ServerOptions, int_in

_SHARD_FLAGS = (
    Flag("--shard-index", "SCATTER_SHARD_INDEX", int_in(0), 0, "the shard this leaf serves", "I"),
    Flag("--shard-count", "SCATTER_SHARD_COUNT", int_in(1), 1, "number of shards in the dataset", "N"),
)


@dataclass(frozen=True, kw_only=True)
class LeafOptions(ServerOptions):
    """How a leaf listens and which shard it serves. Validated on construction.

    Fields: ``address`` (``host:port`` or ``unix:/path``; port 0 picks one),
    ``shard_index``, ``shard_count``, ``max_concurrency``, ``grace_seconds``,
    ``max_message_bytes``.
    """

    shard_index: int = 0
    shard_count: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shard_count < 1:
            raise ValueError(f"shard_count must be >= 1, got {self.shard_count}")
        if not 0 <= self.shard_index < self.shard_count:
            raise ValueError(f"shard_index must be in 0..{self.shard_count - 1}, got {self.shard_index}")

    @classmethod
    def from_args(
        cls,
        argv: Sequence[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        allow_extra_args: bool = False,
        prog: str | None = None,
    ) -> LeafOptions:
        """Build options from flags (``sys.argv[1:]`` when ``argv`` is None) and ``SCATTER_*`` variables.

        Unknown arguments are an error unless ``allow_extra_args``, in which
        case they are left for the user's program to parse. Bad values exit
        with status 2 and a message naming the flag or variable.
        """
        parser = FlagParser(prog, "Serve one shard as a scatter/gather leaf.", SERVER_FLAGS + _SHARD_FLAGS)
        values, explicit = parser.parse(argv, environ, allow_extra_args=allow_extra_args)
        if values["shard_index"] >= values["shard_count"]:
            parser.error(
                f"shard index {values['shard_index']} is out of range for shard count {values['shard_count']}"
                " (--shard-index/SCATTER_SHARD_INDEX, --shard-count/SCATTER_SHARD_COUNT)"
            )
        return cls(
            **parser.server_fields(values, explicit),
            shard_index=values["shard_index"],
            shard_count=values["shard_count"],
        )
