"""The one status table (scatter_common.status) and every mapping derived from it."""

from __future__ import annotations

import grpc
import pytest

import leaf_sdk
import merge_sdk
from root import errors
from root.policies import FailureKind, HedgingConfig, failure_kind_for_status
from root.policies.hedging import DEFAULT_NON_FATAL_STATUS_CODES, STATUS_CODE_NAMES
from root.policies.replicas import FAILURE_KIND_BY_STATUS
from scatter_common import status
from scatter_common.payload import PayloadError
from sdk_core import errors as sdk_errors


def test_the_table_covers_every_grpc_status_code() -> None:
    names = {code.name for code in grpc.StatusCode}
    assert set(status.STATUS) == names - {"OK"}  # OK is a success, never looked up
    assert "OK" in names


def test_an_unknown_name_is_read_as_unknown() -> None:
    assert status.rule_for("NOT_A_CODE") is status.STATUS["UNKNOWN"]
    assert failure_kind_for_status("NOT_A_CODE") is FailureKind.ERROR
    assert errors.merge_failure("NOT_A_CODE", "m:1", "x").code == "INTERNAL"


def test_hedging_reads_the_table() -> None:
    assert frozenset(status.STATUS) == STATUS_CODE_NAMES
    assert DEFAULT_NON_FATAL_STATUS_CODES == ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
    assert set(DEFAULT_NON_FATAL_STATUS_CODES) == {code for code, rule in status.STATUS.items() if rule.retry}
    config = HedgingConfig()
    for code, rule in status.STATUS.items():
        assert config.is_non_fatal(code) is rule.retry


def test_replica_health_reads_the_table() -> None:
    assert {rule.health for rule in status.STATUS.values()} <= {kind.value for kind in FailureKind}
    for code, rule in status.STATUS.items():
        assert FAILURE_KIND_BY_STATUS[code] is failure_kind_for_status(code) is FailureKind(rule.health)


# What the client got for a failed merge before the table existed (root/errors.py's old
# MERGE_CODE_TO_CLIENT, anything else INTERNAL): the table must not change it.
MERGE_BEFORE = {
    "INVALID_ARGUMENT": "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED": "DEADLINE_EXCEEDED",
    "CANCELLED": "CANCELLED",
    "UNAVAILABLE": "UNAVAILABLE",
    "RESOURCE_EXHAUSTED": "UNAVAILABLE",
}


@pytest.mark.parametrize("code", sorted(status.STATUS))
def test_merge_failures_reach_the_client_as_the_table_says(code: str) -> None:
    failure = errors.merge_failure(code, "127.0.0.1:1", "boom")
    assert failure.code == status.STATUS[code].client == MERGE_BEFORE.get(code, "INTERNAL")
    # The log's detail names the merge and its words; the client's message neither, except
    # the merge's own verdict on the request (INVALID_ARGUMENT), written for the client.
    assert failure.detail == f"merge at 127.0.0.1:1 failed with {code}: boom"
    assert "127.0.0.1" not in failure.message
    assert ("boom" in failure.message) == (code == "INVALID_ARGUMENT")
    assert failure.message.startswith("the merge ")


def test_only_invalid_argument_is_a_verdict_on_the_request() -> None:
    assert [code for code, rule in status.STATUS.items() if rule.verdict] == ["INVALID_ARGUMENT"]
    assert [code for code, rule in status.STATUS.items() if rule.shard == status.TIMEOUT] == ["DEADLINE_EXCEEDED"]


def test_one_invalid_request_and_one_overloaded_for_every_role() -> None:
    assert leaf_sdk.InvalidRequest is merge_sdk.InvalidRequest is status.InvalidRequest
    assert issubclass(errors.InvalidRequest, status.InvalidRequest)
    assert issubclass(errors.Overloaded, status.Overloaded)
    assert issubclass(sdk_errors.Overloaded, status.Overloaded)
    assert issubclass(sdk_errors.Overloaded, sdk_errors.SdkError)
    # The root's kinds are RootErrors (the servicer's except) with the shared codes.
    assert errors.InvalidRequest("x").code == status.InvalidRequest.code == "INVALID_ARGUMENT"
    assert errors.Overloaded("x").code == sdk_errors.Overloaded.code == "RESOURCE_EXHAUSTED"
    assert isinstance(errors.InvalidRequest("x"), errors.RootError)
    assert errors.RootError("x").code == "INTERNAL"
    # Users may raise it as any exception: no argument, or several.
    assert str(leaf_sdk.InvalidRequest()) == ""
    assert str(leaf_sdk.InvalidRequest("bad offset")) == "bad offset"


def test_the_sdk_table_agrees_with_the_status_table() -> None:
    codes = dict(sdk_errors.CODES)
    assert set(codes.values()) <= set(status.STATUS)
    for kind, code in sdk_errors.CODES:
        if issubclass(kind, status.StatusError):
            assert kind.code == code
        assert sdk_errors.to_status(kind("m"))[0] is grpc.StatusCode[code]
    rule = {kind: status.STATUS[code] for kind, code in sdk_errors.CODES}
    # Not ready, and overloaded: the root tries another replica at once; only the
    # first says something about the replica's health.
    assert rule[sdk_errors.NotReady].retry and rule[sdk_errors.NotReady].health == "unavailable"
    assert rule[sdk_errors.Overloaded].retry and rule[sdk_errors.Overloaded].health == "overloaded"
    # The request's fault: the client gets it, and no replica is blamed.
    for kind in (sdk_errors.InvalidRequest, PayloadError, sdk_errors.UndecodableBody):
        assert rule[kind].verdict and not rule[kind].retry and rule[kind].health == "rejected"
    # A shard the leaf does not serve, and a broken handler: the shard ends as ERROR.
    for kind in (sdk_errors.WrongShard, sdk_errors.BadResult):
        assert not rule[kind].retry and rule[kind].shard == status.ERROR
    assert rule[sdk_errors.BadResult].health == "error"
    assert sdk_errors.to_status(KeyError("k")) == (grpc.StatusCode.INTERNAL, "KeyError: 'k'", True)


def test_http_statuses_are_grpc_gateways_for_every_code() -> None:
    assert set(status.HTTP_STATUS) == {code.name for code in grpc.StatusCode}
    expected = {"OK": 200, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
                "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
                "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "UNIMPLEMENTED": 501,
                "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}  # fmt: skip
    assert {name: code for name, code in status.HTTP_STATUS.items() if code != 500} == expected
