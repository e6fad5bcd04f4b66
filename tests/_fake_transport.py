"""An in-memory transport for the root's fan-out: shards whose replicas are Python objects.

``root.transport.Replica.call`` is the seam: these replicas answer at once
with an empty ExecuteResponse, or hang until cancelled, with no channel and
no socket, so the driver (``root.scatter``) and what reads its counters run
on a real event loop without any process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from root.policies import HedgeBudget, HedgeDelay, HedgingConfig, LatencyWindow, ReplicaSet, ShardPolicy
from root.scatter import Scatter, Shard
from root.transport import AttemptResult, Metadata, Replica


class FakeReplica(Replica):
    """Answers at once with an empty ExecuteResponse, or never (until cancelled)."""

    def __init__(self, address: str, hang: bool = False) -> None:  # no channel
        self.address = address
        self.hang = hang
        self.calls = 0
        self.batches = False  # no ExecuteShards: one call per shard

    async def call(self, build: Callable[[], bytes], size: int, timeout: float, metadata: Metadata) -> AttemptResult:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        return "OK", b""

    async def close(self) -> None:
        pass


def make_shard(
    index: int, replicas: Sequence[FakeReplica], budget: HedgeBudget, hedging: HedgingConfig | None = None
) -> Shard:
    """A shard over ``replicas``; by default it hedges after a fixed 1 ms."""
    hedging = hedging or HedgingConfig(hedging_delay=0.001)
    policy = ShardPolicy(
        chooser=ReplicaSet([r.address for r in replicas], time.monotonic),
        latencies=LatencyWindow(),
        hedging=hedging,
        hedge_delay=HedgeDelay(hedging),
        budget=budget,
    )
    return Shard(index=index, count=1, replicas=list(replicas), policy=policy)


async def fan_out(shards: list[Shard], timeout: float = 1.0) -> list[int]:
    """One request's fan-out over ``shards``, on the running loop; the shard statuses, in order."""
    start = time.monotonic()
    outcomes = await Scatter(shards, b"", "request", start, start + timeout).run()
    return [o.report.status for o in outcomes]
