"""The root's Prometheus metrics, built at scrape time from a snapshot.

Runs on the HTTP thread and reads only a ``RootSnapshot`` (``root.snapshot``
says why and how it is taken on the event loop), never the live service.

Names follow Prometheus conventions (``_total`` counters, ``_seconds``
histograms, base units). Labels are bounded by the configuration: ``shard``
(one per configured shard), ``replica`` (its configured address), ``code``
(gRPC status names), ``status`` (shard statuses). No request ids in labels.
The list is in docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from protos.scatter_gather.v1 import shard_pb2
from root.snapshot import RootSnapshot
from scatter_common.metrics import histogram_family


def _status_name(status: int) -> str:
    return str(shard_pb2.ShardStatus.Name(status)).removeprefix("SHARD_STATUS_")  # type: ignore[arg-type]


def root_families(snapshot: RootSnapshot) -> Iterable[Metric]:
    requests = CounterMetricFamily("scatter_root_requests", "Client requests, by gRPC status.", labels=["code"])
    for code, count in snapshot.requests_by_code:
        requests.add_metric([code], count)
    yield requests
    yield histogram_family(
        "scatter_root_request_duration_seconds",
        "Time from a request's arrival to its answer, successful requests.",
        [],
        [((), snapshot.duration)],
    )
    yield histogram_family(
        "scatter_root_coverage_ratio",
        "Fraction of shards answered, per successful request.",
        [],
        [((), snapshot.coverage)],
    )
    yield GaugeMetricFamily("scatter_root_in_flight", "Requests in progress.", value=snapshot.in_flight)
    yield CounterMetricFamily(
        "scatter_root_shed",
        "Requests refused with RESOURCE_EXHAUSTED at the in-flight limit.",
        value=snapshot.shed,
    )

    shards = snapshot.shards
    per_shard = {
        "calls": ("scatter_root_shard_calls", "Shard calls (one per request per shard)."),
        "attempts": ("scatter_root_shard_attempts", "Leaf calls started: first attempts, hedges and failovers."),
        "hedges_sent": ("scatter_root_hedges_sent", "Hedged (backup) leaf calls started."),
        "hedges_won": ("scatter_root_hedges_won", "Shard answers that came from a hedge."),
        "budget_exhausted": ("scatter_root_hedge_budget_exhausted", "Hedges not sent: the hedge budget was spent."),
        "failovers": ("scatter_root_failovers", "Attempts started at once after an UNAVAILABLE reply."),
        "cancelled": ("scatter_root_cancelled_attempts", "Leaf calls cancelled: losers of a race, or cut off."),
        "batched": (
            "scatter_root_batched_attempts",
            "First attempts sent in one ExecuteShards call with other shards of the same leaf process.",
        ),
    }
    for field, (name, documentation) in per_shard.items():
        family = CounterMetricFamily(name, documentation, labels=["shard"])
        for shard in shards:
            family.add_metric([str(shard.index)], getattr(shard, field))
        yield family
    changes = CounterMetricFamily(
        "scatter_root_membership_changes",
        "Replica sets applied to a shard since start (discovery or a config reload).",
        labels=["shard"],
    )
    failures = CounterMetricFamily(
        "scatter_root_discovery_failures",
        "Replica lookups of a shard that failed (the last good set was kept).",
        labels=["shard"],
    )
    for shard in shards:
        changes.add_metric([str(shard.index)], shard.membership_changes)
        failures.add_metric([str(shard.index)], shard.discovery_failures)
    yield changes
    yield failures
    results = CounterMetricFamily(
        "scatter_root_shard_results", "Shard outcomes, by status.", labels=["shard", "status"]
    )
    for shard in shards:
        for status, count in shard.outcomes:
            results.add_metric([str(shard.index), _status_name(status)], count)
    yield results
    yield histogram_family(
        "scatter_root_shard_duration_seconds",
        "Time from a shard's first attempt to its answer, answered shards.",
        ["shard"],
        [((str(shard.index),), shard.duration) for shard in shards],
    )

    outstanding = GaugeMetricFamily(
        "scatter_root_replica_outstanding", "Leaf calls in flight per replica.", labels=["shard", "replica"]
    )
    ejected = GaugeMetricFamily(
        "scatter_root_replica_ejected", "1 while a replica is ejected as an outlier.", labels=["shard", "replica"]
    )
    ejections = CounterMetricFamily(
        "scatter_root_replica_ejections", "Outlier ejections of a replica.", labels=["shard", "replica"]
    )
    attempts = CounterMetricFamily(
        "scatter_root_replica_attempts",
        "Leaf calls started on a replica: first attempts, hedges and failovers.",
        labels=["shard", "replica"],
    )
    probes = CounterMetricFamily(
        "scatter_root_replica_probes",
        "Health probes of a replica while it was ejected.",
        labels=["shard", "replica"],
    )
    returns = CounterMetricFamily(
        "scatter_root_replica_returns",
        "Ejections of a replica ended early by a probe that found it SERVING.",
        labels=["shard", "replica"],
    )
    for shard in shards:
        for replica in shard.replicas:
            labels = [str(shard.index), replica.address]
            attempts.add_metric(labels, replica.attempts)
            probes.add_metric(labels, replica.probes)
            returns.add_metric(labels, replica.returned)
            outstanding.add_metric(labels, replica.outstanding)
            ejected.add_metric(labels, 1.0 if replica.ejected else 0.0)
            ejections.add_metric(labels, replica.ejections)
    yield outstanding
    yield ejected
    yield ejections
    yield attempts
    yield probes
    yield returns
