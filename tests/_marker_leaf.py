"""What the tests of the leaf SDK share about its test leaf (``tests/fixtures/marker_leaf.py``).

Its modes, chosen by ``ProbeRequest.value``, and the small waits and
error captures the tests around it use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

# Modes of the test leaf, chosen by ProbeRequest.value (its docstring lists them).
TIME_REMAINING, POLL_CANCELLED, RETURN_STRING, INVALID, RAISE, DESCRIBE, STATS = range(7)


def rpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def wait_for(path: Path, timeout: float = 5.0) -> bool:
    return wait_until(path.exists, timeout)
