"""scatter_common.logs: what grpc's own records become in our logs."""

from __future__ import annotations

import logging

import pytest
from grpc._cython import cygrpc

from scatter_common import logs


def _grpc_logs_a_call_that_ended() -> None:
    """What grpc.aio's servicer loop logs when the status of a call that has ended cannot be sent."""
    grpc_log = logging.getLogger(logs.GRPC_SERVER_LOGGER)
    try:
        raise cygrpc.ExecuteBatchError('Failed "execute_batch": (SendStatusFromServerOperation,)')
    except cygrpc.ExecuteBatchError:
        grpc_log.exception("ExecuteBatchError raised in core by servicer method [%s]", "/scatter_gather.v1.Merge/Merge")


def test_a_call_that_ended_before_its_answer_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    # Found by the fuzz suite: a merge answering in the instant its client's deadline passed
    # logged grpc's ERROR with a 20-line traceback.
    logs.configure("INFO")
    with caplog.at_level(logging.INFO):
        _grpc_logs_a_call_that_ended()
    (record,) = (r for r in caplog.records if r.name == logs.GRPC_SERVER_LOGGER)
    assert record.levelno == logging.INFO and record.exc_info is None and record.exc_text is None
    assert record.getMessage() == (
        "ExecuteBatchError raised in core by servicer method [/scatter_gather.v1.Merge/Merge]: the call had "
        "ended (its deadline passed or its client went away) before its answer was sent"
    )
    assert "Traceback" not in logs.JsonFormatter().format(record)


def test_it_is_dropped_below_info_and_other_grpc_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logs.quiet_grpc()
    logs.quiet_grpc()  # once is enough: no second filter
    grpc_log = logging.getLogger(logs.GRPC_SERVER_LOGGER)
    assert sum(isinstance(f, logs.CallEndedFilter) for f in grpc_log.filters) == 1
    with caplog.at_level(logging.WARNING):
        _grpc_logs_a_call_that_ended()
        try:
            raise ValueError("boom")
        except ValueError:
            grpc_log.exception("Unexpected [%s] raised by servicer method [%s]", "ValueError", "/x/y")
    (record,) = (r for r in caplog.records if r.name == logs.GRPC_SERVER_LOGGER)
    assert record.levelno == logging.ERROR and record.exc_info is not None
