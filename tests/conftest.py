"""What every test session does first: compile the demo scorer's kernels once.

A cold machine compiles them in 6-20 s (numba's cache then keeps them). Done
here, before any test, so that the demo tests' leaves, started several at a
time, load them from the cache instead of each compiling them at once, and
a first run on a new machine stays within the tests' start timeouts.
"""

from __future__ import annotations

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    from demo_search import kernels

    kernels.compile_all()
