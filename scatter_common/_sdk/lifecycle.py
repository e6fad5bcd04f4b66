"""The life of an SDK process around ``serve_until_signal``: ready only after
the start hook, counters logged at exit, and the ``main`` wrapper that turns
failures into an exit status.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from scatter_common import loop
from scatter_common._sdk.calls import HandlerRunner
from scatter_common.serving import Hook, ServiceHost, serve_until_signal

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def serve_handler(
    host: ServiceHost,
    runner: HandlerRunner,
    *,
    max_concurrency: int,
    role: str,
    on_start: Hook | None,
    on_stop: Hook | None,
    log: logging.Logger,
) -> None:
    """Serve until SIGTERM/SIGINT (or until the task running this is cancelled)."""
    runner.open(max_concurrency)

    async def start() -> None:
        if on_start is not None:
            await on_start()
        # Calls that arrive while the hook runs get UNAVAILABLE: the handler
        # may depend on what the hook loads.
        runner.ready = True

    try:
        await serve_until_signal(host, role=role, on_start=start, on_stop=on_stop)
    finally:
        runner.close()
        log.info("%s stopped: %s", role, runner.stats)


def run_main(main: Coroutine[Any, Any, None], *, role: str, log: logging.Logger) -> int:
    """Run a process's main coroutine; return its exit status."""
    # A no-op when the user's program configured logging itself.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        loop.run(main)
    except OSError as exc:
        log.error("%s cannot serve: %s", role, exc)
        return 1
    except Exception:
        log.exception("%s failed", role)
        return 1
    return 0
