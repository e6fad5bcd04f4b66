"""Reloading the root's configuration while it serves: what changes, what needs a restart.

What lives here: ``apply_config``, which moves a running ``RootService`` to a
new, already validated ``RootConfig`` and says what changed, and
``ConfigWatcher``, which reloads on SIGHUP and when the file's content
changes. What does not: validating the file (``root.config``: a bad file
never gets here), swapping replica sets (``root.membership``).

Rules:

1. The file is parsed and validated first; a bad one is refused with the
   loader's message (it names the field) and the running config keeps
   serving.
2. The shards must stay the same: their number, their leaf counts, the
   tree's ``shard_offset`` and ``total_shards``. Resharding a running root
   is not supported (the data would have to move); such a file is refused.
3. Applied at once, for the requests that start after it: replica sets
   (static lists, or a shard's discovery source), `[replicas]`,
   `[hedging]` (delays, attempts, budget: a changed budget starts empty),
   the latency windows' settings (a changed window starts empty),
   deadlines, coverage, `[discovery]`. Requests already under way finish
   with the settings they started with.
4. Kept until a restart, with a warning that names them: what the process
   was started with (`listen`, `workers`, `metrics_listen`, `tls`,
   `upstream_tls`, `max_message_bytes`, `grace_seconds`, the merge
   address, `[http]`) and `max_in_flight`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from root.config import RootConfig, load_root_config
from root.errors import ConfigError
from root.policies import HedgeBudget, HedgeDelay, LatencyWindow

if TYPE_CHECKING:
    from root.service import RootService

__all__ = ["ConfigWatcher", "apply_config"]

log = logging.getLogger("scatter.root")

RESTART_ONLY = (
    "listen",
    "workers",
    "metrics_listen",
    "tls",
    "upstream_tls",
    "max_message_bytes",
    "grace_seconds",
    "merge_address",
    "max_in_flight",
    "http",
)


def apply_config(service: RootService, new: RootConfig) -> list[str]:
    """Move ``service`` to ``new``; returns what changed, one phrase each. Raises ConfigError (rule 2)."""
    old = service.config
    if len(new.shards) != len(old.shards) or any(
        a.leaves != b.leaves for a, b in zip(old.shards, new.shards, strict=True)
    ):
        raise ConfigError(
            f"the new config has {len(new.shards)} shards (leaf counts {[s.leaves for s in new.shards]}), the running"
            f" root {len(old.shards)} ({[s.leaves for s in old.shards]}): resharding needs a restart"
        )
    if (new.shard_offset, new.total_shards) != (old.shard_offset, old.total_shards):
        raise ConfigError("shard_offset and total_shards cannot change on a running root: restart it")
    kept = [name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name)]
    if kept:
        new = dataclasses.replace(new, **{name: getattr(old, name) for name in kept})
    changes = [f"{name} kept until a restart" for name in kept]

    policies = (new.hedging, new.budget, new.latency_window) != (old.hedging, old.budget, old.latency_window)
    reserve = HedgeBudget.reserve(time.monotonic, new.budget) if new.budget != old.budget else None
    for position, (shard, was, now) in enumerate(zip(service.shards, old.shards, new.shards, strict=True)):
        if policies:
            policy = shard.policy
            shard.policy = dataclasses.replace(
                policy,
                hedging=new.hedging,
                hedge_delay=HedgeDelay(new.hedging) if new.hedging != old.hedging else policy.hedge_delay,
                budget=HedgeBudget.for_shard(time.monotonic, new.budget, reserve) if reserve else policy.budget,
                latencies=LatencyWindow(new.latency_window)
                if new.latency_window != old.latency_window
                else policy.latencies,
            )
        source_changed = (was.replicas, was.dns, was.file) != (now.replicas, now.dns, now.file)
        if source_changed:
            changes.append(f"shard {shard.index} replicas")
        if now.replicas and (source_changed or new.replicas != old.replicas):
            service.membership.set_replicas(shard, now.replicas, new.replicas)
        elif new.replicas != old.replicas and shard.policy.chooser.addresses:
            service.membership.set_replicas(shard, shard.policy.chooser.addresses, new.replicas)
        if source_changed:
            service.discovery.reconfigure(position, now)
    if policies:
        changes.append("hedging")
    if new.replicas != old.replicas:
        changes.append("replicas")
    if new.discovery != old.discovery:
        service.discovery.set_config(new.discovery)
        changes.append("discovery")
    for name in ("deadlines", "min_coverage", "coverage_wait"):
        if getattr(new, name) != getattr(old, name):
            changes.append(name)
    service.config = new
    return changes


class ConfigWatcher:
    """Reloads ``path`` into ``service`` on SIGHUP and when the file's content changes."""

    def __init__(self, path: str | Path, service: RootService) -> None:
        self.path = Path(path)
        self.service = service
        self.digest = self._digest()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.applied = 0
        self.refused = 0

    def _digest(self) -> bytes | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        # No SIGHUP on Windows, and no handler outside the main thread: then only the file is watched.
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
        self._task = loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.service.config.discovery.refresh)
            digest = await asyncio.to_thread(self._digest)
            if digest is not None and digest != self.digest:
                await self.reload("the file changed")

    async def reload(self, reason: str) -> bool:
        """Load, validate and apply the file; False (and the running config kept) if it was refused."""
        async with self._lock:
            self.digest = await asyncio.to_thread(self._digest)
            try:
                new = await asyncio.to_thread(load_root_config, self.path)
                changes = apply_config(self.service, new)
            except ConfigError as exc:
                self.refused += 1
                log.error("config reload (%s) refused, the running config keeps serving: %s", reason, exc)
                print(f"scatter: root config reload ({reason}) refused: {exc}", file=sys.stderr, flush=True)
                return False
            self.applied += 1
            what = ", ".join(changes) if changes else "nothing changed"
            print(f"scatter: root config reloaded ({reason}): {what}", file=sys.stderr, flush=True)
            return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
