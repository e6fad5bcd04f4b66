"""The clock every policy reads time from.

Policies never call ``time`` themselves: they are handed a ``Clock``, a
zero-argument callable returning monotonic seconds (``time.monotonic`` in
production, a fake in tests). That is what lets the tests pin every decision to
an exact virtual time. Nothing else lives here.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
"""Monotonic seconds; only differences between readings are meaningful."""
