"""The root server: fans a request out to every shard, gathers, merges.

Only the server lives here; the ``scatter`` command's other tools (the local
runtime, ``scatter query``, the conformance kit) are in ``scatter``.

- ``policies/``: every pure decision (latency, hedge delay, budget, replica
  choice, deadlines, coverage), no I/O;
- ``transport``: the channels to replicas and the merge;
- ``scatter``: the asyncio driver of one request's attempts;
- ``wire``: every spliced message;
- ``service``, ``server``: the servicer and the process; ``config`` its
  TOML; ``errors`` what a client can be told; ``metrics``, ``status_page``.

This package imports ``protos`` and ``scatter_common`` only: never an SDK,
the demo, the benchmarks or the command (``tests/test_boundaries.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from root.config import RootConfig, load_root_config, parse_root_config
from root.errors import ConfigError

if TYPE_CHECKING:
    from root.server import main, serve


def __getattr__(name: str) -> object:
    # root.server is imported when first asked for, not with the package: `python -m
    # root.server` would otherwise find it imported already and warn (runpy).
    if name in ("main", "serve"):
        from root import server

        return getattr(server, name)
    raise AttributeError(f"module 'root' has no attribute {name!r}")


__all__ = ["ConfigError", "RootConfig", "load_root_config", "main", "parse_root_config", "serve"]
