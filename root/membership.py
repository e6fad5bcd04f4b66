"""Changing a shard's replicas on a running root, without dropping a request.

What lives here: ``Membership``, which swaps a shard's replica set when
discovery (``root.discovery``) or a config reload reports a new one. What
does not: finding the addresses (discovery), choosing among replicas
(``root.policies.replicas``), or watching their health (``root.probing``).

Rules of a swap (all on the root's loop, in one synchronous step, so no
request sees half of one):

1. The shard gets a new ``ReplicaSet`` built with ``carry=`` the old one: a
   replica at an address both sets have keeps its state (the same object:
   EWMA, outstanding calls, ejection), so calls in flight on the old set
   count for the new one. The shard's latency window, budget and counters
   are kept as they are.
2. A new address gets a new channel, and starts *down*: it gets calls only
   once its health says SERVING (the prober's watch reports it).
3. A removed address gets no new calls; requests already under way keep
   their view of the old set (``root.scatter`` takes one per request) and
   avoid it too (it is marked down there), so its calls in flight finish or
   are hedged away. Its channel is closed once it has no call in flight,
   or after the root's maximum deadline at the latest.
4. An empty set is never applied (discovery keeps the last good one).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from root.policies import ReplicaConfig, ReplicaSet
from root.probing import Prober
from root.scatter import Shard
from root.transport import Replica

__all__ = ["Membership"]

log = logging.getLogger("scatter.root")

CLOSE_POLL = 0.1  # seconds between looks at a removed replica's calls in flight


class Membership:
    """Applies new replica sets to the root's shards (module docstring)."""

    def __init__(
        self,
        new_replica: Callable[[str], Replica],
        prober: Prober,
        max_call_time: float,
    ) -> None:
        self.new_replica = new_replica
        self.prober = prober
        self.max_call_time = max_call_time
        self._closing: set[asyncio.Task[None]] = set()

    def set_replicas(self, shard: Shard, addresses: Sequence[str], config: ReplicaConfig | None = None) -> bool:
        """Give ``shard`` exactly ``addresses`` (and ``config``, if given); False if nothing changed."""
        old = shard.policy.chooser
        wanted = tuple(addresses)
        if not wanted:
            log.warning("shard %d: refusing an empty replica set; keeping %s", shard.index, ", ".join(old.addresses))
            return False
        if wanted == old.addresses and (config is None or config == old.config):
            return False
        chooser = ReplicaSet(wanted, time.monotonic, config or old.config, carry=old)
        existing = {replica.address: replica for replica in shard.replicas}
        replicas = [existing.get(address) or self.new_replica(address) for address in wanted]
        removed = [(old, old.addresses.index(a), r) for a, r in existing.items() if a not in wanted]
        shard.policy = dataclasses.replace(shard.policy, chooser=chooser)
        shard.replicas = replicas
        shard.membership_changes += 1
        self.prober.sync(shard)
        added = [a for a in wanted if a not in existing]
        if added or removed:
            log.info(
                "shard %d replicas: %s (added %s, removed %s)",
                shard.index,
                ", ".join(wanted),
                ", ".join(added) or "none",
                ", ".join(r.address for _, _, r in removed) or "none",
            )
        loop = asyncio.get_running_loop()
        for chooser_then, index, replica in removed:
            task = loop.create_task(self._close_when_idle(chooser_then, index, replica))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return True

    async def _close_when_idle(self, chooser: ReplicaSet, index: int, replica: Replica) -> None:
        deadline = time.monotonic() + self.max_call_time
        for _ in range(int(self.max_call_time / CLOSE_POLL) + 1):
            if chooser.status()[index].outstanding == 0 or time.monotonic() >= deadline:
                break
            await asyncio.sleep(CLOSE_POLL)
        await replica.close()

    async def close(self) -> None:
        tasks = list(self._closing)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
