"""Health probes of ejected replicas: the I/O half of ``ReplicaSet.due_probes``.

What lives here: ``Prober``, one task per root that asks every shard's
``ReplicaSet`` which ejected replicas are due for a probe, checks each with
the replica's gRPC health service (``Replica.serving``, on the replica's own
long-lived channel) and reports the answer back (``probe_result``). When a
probe is due, how often, and what a healthy answer changes are the
policy's (``root.policies.replicas``); nothing is decided here.

The task wakes every ``TICK`` seconds (at most; a tenth of the probe
interval when that is shorter), so a due probe goes out within that much of
its time. A probe's timeout is the probe interval: a replica that does not
answer its health check in that time is not healthy. Every probe reports
back, also when the root shuts down, so the policy never waits for a lost
probe.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from root.scatter import Shard

__all__ = ["TICK", "Prober"]

TICK = 0.1  # seconds between looks at the policies: a probe goes out within 0.1 s of being due


class Prober:
    """Start with ``start()`` on the root's loop; ``close()`` stops it and every probe in flight."""

    def __init__(self, shards: Sequence[Shard], probe_interval: float | None) -> None:
        self.shards = list(shards)
        self.interval = probe_interval
        self.tick = TICK if probe_interval is None else min(TICK, probe_interval / 10)
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self.interval is not None and any(len(shard.replicas) > 1 for shard in self.shards):
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            for shard in self.shards:
                for index in shard.policy.chooser.due_probes():
                    task = loop.create_task(self._probe(shard, index))
                    self._probes.add(task)
                    task.add_done_callback(self._probes.discard)

    async def _probe(self, shard: Shard, index: int) -> None:
        healthy = False
        try:
            assert self.interval is not None
            healthy = await shard.replicas[index].serving(self.interval)
        finally:
            shard.policy.chooser.probe_result(index, healthy)

    async def close(self) -> None:
        tasks = [*self._probes, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
