"""Run the process's main coroutine, on uvloop when it is installed.

uvloop makes grpc.aio's callbacks cheaper (measured ~10-20% more calls/s on
loopback); the asyncio default loop is the fallback so nothing requires it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """Run ``main`` to completion on a fresh event loop."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
