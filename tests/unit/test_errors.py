"""What a client reads for a failed shard: the shard's code and what to do, not the replica's words."""

from __future__ import annotations

import pytest

from protos.scatter_gather.v1 import shard_pb2
from root.errors import merge_failure, shard_error
from scatter_common import status

ERROR = shard_pb2.SHARD_STATUS_ERROR
UNAVAILABLE = shard_pb2.SHARD_STATUS_UNAVAILABLE
# As grpc and the leaf SDK word them: an address and a Python exception.
REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:29041: "
    "Failed to connect to remote host: Connection refused"
)
RAISED = "RuntimeError: index file /srv/idx/shard3.bin is corrupt"


def test_unreachable_shard_says_retry_and_check_its_leaves() -> None:
    assert shard_error(UNAVAILABLE, REFUSED) == (
        "UNAVAILABLE: no replica could be reached: retry with backoff; if it lasts, check the shard's leaves; "
        "the root's log has the detail"
    )


def test_overloaded_shard_says_retry_with_backoff() -> None:
    assert shard_error(UNAVAILABLE, "RESOURCE_EXHAUSTED: leaf is at its concurrency limit (8 calls in flight)") == (
        "RESOURCE_EXHAUSTED: every replica tried was overloaded: retry with backoff; the root's log has the detail"
    )


def test_failing_leaf_keeps_its_code_not_its_exception() -> None:
    assert shard_error(ERROR, f"INTERNAL: {RAISED}") == (
        "INTERNAL: the leaf failed, a fault of the deployment, not of the request; the root's log has the detail"
    )


def test_leaf_verdict_on_the_request_passes() -> None:
    reason = "INVALID_ARGUMENT: value 18446744073709551615 is too large"
    assert shard_error(ERROR, reason) == reason


@pytest.mark.parametrize(
    ("shard_status", "reason"),
    [(shard_pb2.SHARD_STATUS_TIMEOUT, "deadline exceeded before any replica answered"),
     (shard_pb2.SHARD_STATUS_SKIPPED, "cut off by the coverage wait (3.1 ms after min_coverage)"),
     (ERROR, "")],
)  # fmt: skip
def test_the_roots_own_words_stay(shard_status: int, reason: str) -> None:
    assert shard_error(shard_status, reason) == reason


def test_an_unparsed_reason_is_unknown() -> None:
    assert shard_error(ERROR, "no code here").startswith("UNKNOWN: the leaf failed")


@pytest.mark.parametrize("code", sorted(status.STATUS))
def test_no_shard_message_carries_the_details(code: str) -> None:
    for shard_status in (ERROR, UNAVAILABLE):
        message = shard_error(shard_status, f"{code}: {REFUSED} {RAISED}")
        assert message.startswith(f"{code}: ")
        assert ("127.0.0.1" in message) == ("RuntimeError" in message) == (code == "INVALID_ARGUMENT")


def test_merge_down_is_unavailable_without_its_address() -> None:
    failure = merge_failure("UNAVAILABLE", "unix:/run/scatter/merge.sock", REFUSED)
    assert failure.code == "UNAVAILABLE"
    assert (
        failure.message == "the merge is unavailable (UNAVAILABLE): retry with backoff; the root's log has the detail"
    )
    assert failure.detail == f"merge at unix:/run/scatter/merge.sock failed with UNAVAILABLE: {REFUSED}"
