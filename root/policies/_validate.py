"""Small checks shared by the policy configurations.

Each returns nothing and raises ``FieldError`` (a ``ValueError``) whose message
names the field (``section.field``), states the rule and shows the value
received, in the policy's own units (seconds). ``bool`` is rejected where a
number is expected: ``True`` is an ``int`` to Python but never a sensible
count; NaN and the infinities are rejected wherever a float is.

A ``FieldError`` keeps its parts (the field, the value, the rule and the
numbers in it) so that a layer that reads the values in other words (the TOML
file: ``hedging.min_delay_ms = -5``) can say the same rule again in those
words, with ``render``: one place per rule, however many ways to spell it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def _g(number: float) -> str:
    return f"{number:g}"


class FieldError(ValueError):
    """A field's value breaks its rule.

    ``rule`` is the text after the field's name, with ``{0}``, ``{1}``, ...
    for ``bounds`` (numbers in the field's own unit) and ``{ref0}``, ...
    for ``refs`` (the other fields the rule names, as ``name`` is written).
    """

    def __init__(
        self, name: str, value: object, rule: str, bounds: Sequence[float] = (), refs: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.value = value
        self.rule = rule
        self.bounds = tuple(bounds)
        self.refs = tuple(refs)
        super().__init__(self.render())

    def render(
        self,
        rename: Callable[[str], str] = str,
        *,
        per_unit: float = 1.0,
        number: Callable[[float], str] = _g,
        value: str | None = None,
    ) -> str:
        """The message with every field renamed, bounds multiplied by ``per_unit`` and ``value`` as given."""
        bounds = [b if isinstance(b, int) and per_unit == 1 else number(b * per_unit) for b in self.bounds]
        refs = {f"ref{i}": rename(ref) for i, ref in enumerate(self.refs)}
        got = repr(self.value) if value is None else value
        return f"{rename(self.name)} {self.rule.format(*bounds, **refs)}, got {got}"


def check_int(name: str, value: object, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(name, value, "must be an integer")
    if value < low or (high is not None and value > high):
        if high is not None:
            raise FieldError(name, value, "must be in [{0}, {1}]", (low, high))
        raise FieldError(name, value, "must be >= {0}", (low,))


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
        raise FieldError(name, value, "must be a finite number")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        if high == math.inf:
            raise FieldError(name, value, "must be > {0}" if low_open else "must be >= {0}", (low,))
        rule = f"must be in {'(' if low_open else '['}{{0}}, {{1}}{')' if high_open else ']'}"
        raise FieldError(name, value, rule, (low, high))


def check_at_least(name: str, value: float, other: str, other_value: float) -> None:
    """``value`` (already checked finite) must be >= the field ``other``'s value."""
    if value < other_value:
        raise FieldError(name, value, "must be >= {ref0} ({0})", (other_value,), (other,))


def check_between(name: str, value: float, low_name: str, low: float, high_name: str, high: float) -> None:
    """``value`` must lie between two other fields' values, ends included."""
    if not low <= value <= high:
        raise FieldError(name, value, "must be in [{ref0}, {ref1}] = [{0}, {1}]", (low, high), (low_name, high_name))
