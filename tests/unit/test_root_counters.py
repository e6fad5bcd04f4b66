"""The root's counters: each fact counted once, in ``ShardCounters``.

The fan-out runs on a real event loop with an in-memory transport
(``tests._fake_transport``): no sockets, no processes. The
budget decides, the shard counts; these tests pin that every hedge granted,
won or refused shows up in the shard's counters exactly once.
"""

from __future__ import annotations

import asyncio
import time

from protos.scatter_gather.v1 import shard_pb2
from root.policies import HedgeBudget, HedgeBudgetConfig
from root.scatter import Shard
from tests._fake_transport import FakeReplica, fan_out, make_shard


def scatter(shards: list[Shard], timeout: float = 1.0) -> list[int]:
    return asyncio.run(fan_out(shards, timeout))


def test_a_hedge_that_wins_is_counted_once_on_its_shard() -> None:
    budget = HedgeBudget(time.monotonic, HedgeBudgetConfig(min_per_second=10.0))
    # The first pick is replica 0 (the rotation starts there); it hangs, the hedge to 1 wins.
    shard = make_shard(0, [FakeReplica("a", hang=True), FakeReplica("b")], budget)
    assert scatter([shard]) == [shard_pb2.SHARD_STATUS_OK]
    stats = shard.stats
    assert (stats.calls, stats.attempts, stats.hedges_sent, stats.hedges_won, stats.budget_exhausted) == (1, 2, 1, 1, 0)
    assert stats.cancelled == 1  # the hung primary, cancelled when the hedge won
    assert stats.outcomes == {shard_pb2.SHARD_STATUS_OK: 1}


def test_a_hedge_the_budget_refuses_is_counted_on_its_shard() -> None:
    budget = HedgeBudget(time.monotonic, HedgeBudgetConfig(max_extra_load=0.0, min_per_second=0.0))
    shard = make_shard(0, [FakeReplica("a", hang=True), FakeReplica("b")], budget)
    assert scatter([shard], timeout=0.05) == [shard_pb2.SHARD_STATUS_TIMEOUT]
    stats = shard.stats
    assert (stats.hedges_sent, stats.hedges_won) == (0, 0)
    assert stats.budget_exhausted == 1  # refused once; a refused hedge is not asked for again
    assert stats.outcomes == {shard_pb2.SHARD_STATUS_TIMEOUT: 1}


def test_one_budget_many_shards_each_counts_its_own() -> None:
    budget = HedgeBudget(time.monotonic, HedgeBudgetConfig(min_per_second=10.0))
    hedged = make_shard(0, [FakeReplica("a", hang=True), FakeReplica("b")], budget)
    fast = make_shard(1, [FakeReplica("c"), FakeReplica("d")], budget)
    assert scatter([hedged, fast]) == [shard_pb2.SHARD_STATUS_OK] * 2
    assert (hedged.stats.hedges_sent, hedged.stats.hedges_won) == (1, 1)
    assert (fast.stats.calls, fast.stats.hedges_sent, fast.stats.hedges_won) == (1, 0, 0)
