"""Small checks shared by the policy configurations.

Each returns nothing and raises ``ValueError`` with a message that names the
field as a user writes it in the configuration (``section.field``), states the
rule and shows the value received. ``bool`` is rejected where a number is
expected: ``True`` is an ``int`` to Python but never a sensible count.
"""

from __future__ import annotations

import math


def check_int(name: str, value: object, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def check_float(
    name: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        if high == math.inf:
            bound = f"> {low:g}" if low_open else f">= {low:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
