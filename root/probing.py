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
    """Start with ``start()`` on the root's loop; ``close()`` stops it and every probe in flight."""

    def __init__(self, shards: Sequence[Shard], probe_interval: float | None) -> None:
        self.shards = list(shards)
        self.interval = probe_interval
        self.tick = TICK if probe_interval is None else min(TICK, probe_interval / 10)
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._watches: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.interval is not None and any(len(shard.replicas) > 1 for shard in self.shards):
            self._task = loop.create_task(self._run())
        for shard in self.shards:
            if len(shard.replicas) > 1:  # with one replica there is no choice to inform
                for index in range(len(shard.replicas)):
                    self._watches.append(loop.create_task(self._watch(shard, index)))

    async def _watch(self, shard: Shard, index: int) -> None:
        replica = shard.replicas[index]
        chooser = shard.policy.chooser
        while True:
            try:
                async for serving in replica.watch_health():
                    chooser.health(index, serving)
                    if not serving:
                        break  # close the watch: a draining server waits for it
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    log.info("replica %s has no health service: not watched", replica.address)
                    return
            await self._until_serving(replica)
            chooser.health(index, True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            for shard in self.shards:
                for index in shard.policy.chooser.due_probes():
                    task = loop.create_task(self._probe(shard, index))
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

    async def _probe(self, shard: Shard, index: int) -> None:
        healthy = False
        try:
            assert self.interval is not None
            healthy = await shard.replicas[index].serving(self.interval)
        finally:
            shard.policy.chooser.probe_result(index, healthy)

    async def close(self) -> None:
        tasks = [*self._probes, *self._watches, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
