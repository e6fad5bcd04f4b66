"""The indexing progress bar: tqdm, on stderr, only when stderr is a terminal.

In CI logs and pipes it stays silent and only the builder's final summary is
printed, so logs are not flooded; redraws are at most five a second.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

__all__ = ["progress_bar"]

MIN_REDRAW_SECONDS = 0.2  # 5 redraws a second: smooth to the eye, negligible cost


def progress_bar(total: int | None = None, label: str = "indexing") -> tqdm[Any]:
    """A bar counting documents out of an optional ``total``."""
    return tqdm(
        total=total,
        desc=label,
        unit=" docs",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        mininterval=MIN_REDRAW_SECONDS,
        leave=True,
    )
