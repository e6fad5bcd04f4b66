"""The conformance kit's pure parts: the JSON schema, the load comparison, the stated time bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scatter.conformance import CheckResult, KitOptions, Status
from scatter.conformance.checks import _Load
from scatter.conformance.cli import _EPILOG
from scatter.conformance.report import JSON_SCHEMA, as_json

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "any-language.md").read_text()


def test_json_document_has_the_documented_schema() -> None:
    results = [
        CheckResult("reachable", Status.PASS, "connected"),
        CheckResult("wrong-shard", Status.FAIL, "got OK; fix: answer FAILED_PRECONDITION", duty="MUST answer"),
        CheckResult("cancel-released", Status.SKIP, "no slow_request"),
    ]
    document = json.loads(as_json("leaf", "127.0.0.1:1", results, shard=(1, 3, True), elapsed=1.23456))
    assert document["schema"] == JSON_SCHEMA == "scatter.conformance/v1"
    assert document["shard"] == {"index": 1, "count": 3, "learned": True}
    assert document["passed"] is False and document["elapsed_seconds"] == 1.235
    assert document["summary"] == {"PASS": 1, "FAIL": 1, "WARN": 0, "SKIP": 1}
    assert [set(c) for c in document["checks"]] == [
        {"name", "status", "detail"},
        {"name", "status", "detail", "duty"},  # a FAIL only
        {"name", "status", "detail"},
    ]
    assert f'`"{JSON_SCHEMA}"`' in DOCS and all(f"`{key}`" in DOCS for key in document)
    assert json.loads(as_json("merge", "x", results[:1]))["shard"] is None


@pytest.mark.parametrize(
    ("load", "worse"),
    [
        (_Load(0, 0.012, ""), False),  # noise
        (_Load(0, 0.08, ""), False),  # within 3x + 50 ms of 10 ms
        (_Load(0, 0.09, ""), True),
        (_Load(1, 0.01, "RESOURCE_EXHAUSTED"), True),  # any refusal or timeout
    ],
)
def test_a_load_is_worse_than_the_baseline_by_refusals_or_latency(load: _Load, worse: bool) -> None:
    assert load.worse_than(_Load(0, 0.01, "")) is worse


def test_the_stated_time_bound_is_the_computed_one() -> None:
    bound = KitOptions().worst_case()
    assert f"about {round(bound, -1):.0f} s" in _EPILOG and f"about {round(bound, -1):.0f} s" in DOCS
    # It grows with every bound it is made of.
    for longer in (
        KitOptions(timeout=100.0),
        KitOptions(connect_timeout=100.0),
        KitOptions(serving_timeout=100.0),
        KitOptions(release_bound=100.0),
        KitOptions(probe_timeout=100.0),
    ):
        assert longer.worst_case() > bound, longer
