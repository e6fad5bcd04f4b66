"""A merge's options and the flags (with SCATTER_* environment fallbacks) that build them."""

from __future__ import annotations

from dataclasses import dataclass

from sdk_core import ServerOptions


@dataclass(frozen=True, kw_only=True)
class MergeOptions(ServerOptions):
    """How a merge listens. Validated on construction.

    Fields: ``address`` (``host:port`` or ``unix:/path``; port 0 picks one),
    ``max_concurrency``, ``grace_seconds``, ``max_message_bytes``.
    ``from_args`` builds them from flags and ``SCATTER_*`` variables.
    """

    description = "Serve a scatter/gather merge."
