"""Active health checking of replicas: the I/O half of ``ReplicaSet`` probes and health.

What lives here: ``Prober``, which does two things on the root's loop, both
through each replica's gRPC health service (service ``""``) on the
replica's own long-lived channel:

- one task that asks every shard's ``ReplicaSet`` which replicas are due for
  a probe (ejected ones, and suspects), checks each (``Replica.serving``)
  and reports the answer back (``probe_result``);
- one watch per replica (``Replica.watch_health``, the streaming
  Health.Watch that gRPC's own client-side health checking uses) that
  reports every change to ``ReplicaSet.health``: a draining replica is left
  alone within a millisecond of reporting NOT_SERVING, and a restarted one
  is used again as soon as it reports SERVING. On NOT_SERVING, or when the
  stream ends (the replica went away), the watch is closed (a draining
  server waits for its open calls, a watch among them, before it exits) and
  the replica is polled with Health.Check every ``POLL_EVERY`` seconds until
  it answers SERVING; then it is watched again. A replica with no health
  service (UNIMPLEMENTED) is not watched.

When a probe is due, how often, and what an answer changes are the
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
import logging
from collections.abc import Sequence

import grpc

from root.policies import ReplicaSet
from root.scatter import Shard
from root.transport import Replica

__all__ = ["POLL_EVERY", "TICK", "Prober"]

log = logging.getLogger("scatter.root")

TICK = 0.1  # seconds between looks at the policies: a probe goes out within 0.1 s of being due
# While a replica is not SERVING (draining, restarting): one Health.Check
# this often, on a channel whose reconnect backoff is capped at 250 ms
# (root.transport), so a restarted replica is seen SERVING within about
# 0.35 s, inside its sibling's drain delay (0.5 s) in a rolling restart.
POLL_EVERY = 0.1


class Prober:
    """Start with ``start()`` on the root's loop; ``close()`` stops it and every probe in flight.

    Membership may change (``root.membership`` swaps a shard's replicas and
    chooser together); ``sync(shard)`` then starts watching the new replicas
    and stops watching the removed ones. Everything reaches the chooser by
    address, or through the chooser a probe was asked by, never by a
    position that a swap could have moved.
    """

    def __init__(self, shards: Sequence[Shard], probe_interval: float | None) -> None:
        self.shards = list(shards)
        self.interval = probe_interval
        self.tick = TICK if probe_interval is None else min(TICK, probe_interval / 10)
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._watches: dict[tuple[int, str], asyncio.Task[None]] = {}  # (shard position, address) -> its watch
        self._started = False

    def start(self) -> None:
        self._started = True
        if self.interval is not None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        for shard in self.shards:
            self.sync(shard)

    def sync(self, shard: Shard) -> None:
        """Watch exactly the shard's current replicas."""
        if not self._started:
            return
        position = self.shards.index(shard)
        current = {replica.address: replica for replica in shard.replicas}
        for key in [k for k in self._watches if k[0] == position and k[1] not in current]:
            self._watches.pop(key).cancel()
        loop = asyncio.get_running_loop()
        for address, replica in current.items():
            if (position, address) not in self._watches:
                self._watches[(position, address)] = loop.create_task(self._watch(shard, replica))

    async def _watch(self, shard: Shard, replica: Replica) -> None:
        def report(serving: bool) -> None:
            chooser = shard.policy.chooser
            index = chooser.index(replica.address)
            if index is not None:
                chooser.health(index, serving)

        while True:
            try:
                async for serving in replica.watch_health():
                    report(serving)
                    if not serving:
                        break  # close the watch: a draining server waits for it
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    log.info("replica %s has no health service: not watched", replica.address)
                    report(True)  # nothing to wait for: a new replica may take calls
                    return
            await self._until_serving(replica)
            report(True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            for shard in self.shards:
                chooser = shard.policy.chooser
                replicas = shard.replicas  # swapped together with the chooser
                for index in chooser.due_probes():
                    task = loop.create_task(self._probe(chooser, index, replicas[index]))
                    self._probes.add(task)
                    task.add_done_callback(self._probes.discard)

    @staticmethod
    async def _until_serving(replica: Replica) -> None:
        """Poll the replica's health until it answers SERVING (a failed check returns at once)."""
        while True:
            began = asyncio.get_running_loop().time()
            if await replica.serving(POLL_EVERY):
                return
            await asyncio.sleep(max(0.0, POLL_EVERY - (asyncio.get_running_loop().time() - began)))

    async def _probe(self, chooser: ReplicaSet, index: int, replica: Replica) -> None:
        healthy = False
        try:
            assert self.interval is not None
            healthy = await replica.serving(self.interval)
        finally:
            chooser.probe_result(index, healthy)  # the set that asked; kept replicas share their state

    async def close(self) -> None:
        tasks = [*self._probes, *self._watches.values(), *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
