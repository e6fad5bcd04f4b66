"""Pure tail-tolerance policies of the root: decisions without I/O.

Every class here is plain Python driven by a ``Clock`` passed in: no grpc, no
asyncio, no threads, no sleeping. The async fan-out asks them what to do and
reports back what happened; the tests drive them with a fake clock and pin
every decision to an exact virtual time (``tests/test_policies_*.py``).

- ``latency``: ``LatencyWindow``, recent latencies of a shard and percentiles.
- ``hedging``: ``HedgingConfig`` (gRPC vocabulary) and ``HedgeDelay``.
- ``budget``: ``HedgeBudget``, hedges as a bounded fraction of primary calls.
- ``replicas``: ``ReplicaSet``, least-outstanding choice and outlier ejection.
- ``coverage_wait``: ``CoverageWait``, when to stop waiting for stragglers
  (adaptive coverage), counted in leaf shards.
- ``admission``: ``AdmissionLimit``, shed beyond a number of requests in flight.
- ``deadlines``: ``DeadlinePolicy``, the time budget of one request.
- ``coverage``: the Coverage of one request and whether it is enough.

Import from this package; the module layout may change.
"""

from root.policies.admission import AdmissionConfig, AdmissionLimit
from root.policies.budget import HedgeBudget, HedgeBudgetConfig, HedgeBudgetStats
from root.policies.clock import Clock
from root.policies.coverage import build_coverage, check_leaf_verdicts, require_coverage
from root.policies.coverage_wait import CoverageWait, CoverageWaitConfig, min_answers
from root.policies.deadlines import Budget, DeadlinePolicy
from root.policies.hedging import HedgeDelay, HedgingConfig
from root.policies.latency import LatencyWindow, LatencyWindowConfig
from root.policies.replicas import (
    FailureKind,
    ReplicaConfig,
    ReplicaSet,
    ReplicaStatus,
    failure_kind_for_status,
)

__all__ = [
    "AdmissionConfig",
    "AdmissionLimit",
    "Budget",
    "Clock",
    "CoverageWait",
    "CoverageWaitConfig",
    "DeadlinePolicy",
    "FailureKind",
    "HedgeBudget",
    "HedgeBudgetConfig",
    "HedgeBudgetStats",
    "HedgeDelay",
    "HedgingConfig",
    "LatencyWindow",
    "LatencyWindowConfig",
    "ReplicaConfig",
    "ReplicaSet",
    "ReplicaStatus",
    "build_coverage",
    "check_leaf_verdicts",
    "failure_kind_for_status",
    "min_answers",
    "require_coverage",
]
