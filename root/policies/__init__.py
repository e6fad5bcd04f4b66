"""Pure tail-tolerance policies of the root: decisions without I/O.

Every class here is plain Python driven by a ``Clock`` passed in: no grpc, no
asyncio, no threads, no sleeping. The async fan-out asks them what to do and
reports back what happened; the tests drive them with a fake clock and pin
every decision to an exact virtual time (``tests/test_policies_*.py``).

- ``latency``: ``LatencyWindow``, recent latencies of a shard and percentiles;
  ``LatencySamples``, a copy of one for readers on another thread.
- ``hedging``: ``HedgingConfig`` (gRPC vocabulary) and ``HedgeDelay``.
- ``budget``: ``HedgeBudget``, hedges as a bounded fraction of primary calls.
- ``replicas``: ``ReplicaSet``, least-outstanding choice and outlier ejection.
- ``coverage_wait``: ``CoverageWait``, when to stop waiting for stragglers
  (adaptive coverage), counted in leaf shards.
- ``attempts``: ``AttemptPlan``, every rule about one shard's attempts (the
  composition of the above, sans I/O).
- ``admission``: ``AdmissionLimit``, shed beyond a number of requests, or of their bytes, in flight.
- ``deadlines``: ``DeadlinePolicy``, the time budget of one request, and
  ``AnswerTimes``, the measured part of its reserve.
- ``coverage``: the Coverage of one request and whether it is enough.

Import from this package; the module layout may change.
"""

from root.policies.admission import DEFAULT_MAX_IN_FLIGHT_BYTES, AdmissionConfig, AdmissionLimit
from root.policies.attempts import Action, AttemptKind, AttemptPlan, Cancel, End, Launch, ShardCounters, ShardPolicy
from root.policies.budget import HedgeBudget, HedgeBudgetConfig
from root.policies.clock import Clock
from root.policies.coverage import build_coverage, check_leaf_verdicts, require_coverage
from root.policies.coverage_wait import (
    PARTIAL_COVERAGE_WAIT,
    PARTIAL_COVERAGE_WAIT_FACTOR,
    CoverageWait,
    CoverageWaitConfig,
    min_answers,
)
from root.policies.deadlines import AnswerTimes, Budget, DeadlinePolicy
from root.policies.hedging import HedgeDelay, HedgingConfig, delay_percentile_for
from root.policies.latency import LatencySamples, LatencyWindow, LatencyWindowConfig
from root.policies.replicas import (
    FailureKind,
    ReplicaConfig,
    ReplicaSet,
    ReplicaStatus,
    failure_kind_for_status,
)

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT_BYTES",
    "PARTIAL_COVERAGE_WAIT",
    "PARTIAL_COVERAGE_WAIT_FACTOR",
    "Action",
    "AdmissionConfig",
    "AdmissionLimit",
    "AnswerTimes",
    "AttemptKind",
    "AttemptPlan",
    "Budget",
    "Cancel",
    "Clock",
    "CoverageWait",
    "CoverageWaitConfig",
    "DeadlinePolicy",
    "End",
    "FailureKind",
    "HedgeBudget",
    "HedgeBudgetConfig",
    "HedgeDelay",
    "HedgingConfig",
    "LatencySamples",
    "LatencyWindow",
    "LatencyWindowConfig",
    "Launch",
    "ReplicaConfig",
    "ReplicaSet",
    "ReplicaStatus",
    "ShardCounters",
    "ShardPolicy",
    "build_coverage",
    "check_leaf_verdicts",
    "delay_percentile_for",
    "failure_kind_for_status",
    "min_answers",
    "require_coverage",
]
