"""A merge's options and the flags (with SCATTER_* environment fallbacks) that build them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sdk_core import SERVER_FLAGS, FlagParser, ServerOptions


@dataclass(frozen=True, kw_only=True)
class MergeOptions(ServerOptions):
    """How a merge listens. Validated on construction.

    Fields: ``address`` (``host:port`` or ``unix:/path``; port 0 picks one),
    ``max_concurrency``, ``grace_seconds``, ``max_message_bytes``.
    """

    @classmethod
    def from_args(
        cls,
        argv: Sequence[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        allow_extra_args: bool = False,
        prog: str | None = None,
    ) -> MergeOptions:
        """Build options from flags (``sys.argv[1:]`` when ``argv`` is None) and ``SCATTER_*`` variables.

        Unknown arguments are an error unless ``allow_extra_args``. Bad values
        exit with status 2 and a message naming the flag or variable.
        """
        parser = FlagParser(prog, "Serve a scatter/gather merge.", SERVER_FLAGS)
        values, explicit = parser.parse(argv, environ, allow_extra_args=allow_extra_args)
        return cls(**parser.server_fields(values, explicit))
