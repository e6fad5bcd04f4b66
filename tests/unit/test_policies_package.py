"""The policies package: its public names, and the rule that it does no I/O."""

from __future__ import annotations

import ast
import pathlib

import root.policies

PUBLIC = {
    "Action",
    "AttemptKind",
    "AttemptPlan",
    "Cancel",
    "End",
    "Launch",
    "ShardCounters",
    "ShardPolicy",
    "AdmissionConfig",
    "AdmissionLimit",
    "AnswerTimes",
    "DEFAULT_MAX_IN_FLIGHT_BYTES",
    "PARTIAL_COVERAGE_WAIT",
    "PARTIAL_COVERAGE_WAIT_FACTOR",
    "Budget",
    "Clock",
    "CoverageWait",
    "CoverageWaitConfig",
    "DeadlinePolicy",
    "FailureKind",
    "HedgeBudget",
    "HedgeBudgetConfig",
    "HedgeDelay",
    "HedgingConfig",
    "LatencySamples",
    "LatencyWindow",
    "LatencyWindowConfig",
    "ReplicaConfig",
    "ReplicaSet",
    "ReplicaStatus",
    "build_coverage",
    "check_leaf_verdicts",
    "delay_percentile_for",
    "failure_kind_for_status",
    "min_answers",
    "require_coverage",
}


def test_public_names_are_what_they_mean_to_be() -> None:
    assert set(root.policies.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(root.policies, name) is not None


FORBIDDEN_IMPORTS = {"grpc", "asyncio", "anyio", "threading", "concurrent", "time", "uvloop", "socket"}


def test_policies_do_no_io() -> None:
    """No module of the package imports I/O, a loop, threads or the system clock."""
    package = pathlib.Path(root.policies.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        tree = ast.parse(path.read_text(), str(path))
        assert ast.get_docstring(tree), f"{path.name} needs a header docstring saying what lives there"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_IMPORTS, f"{path.name} imports {name}"
