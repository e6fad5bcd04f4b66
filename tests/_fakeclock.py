"""A fake monotonic clock for the policy tests: time moves only when told to."""

from __future__ import annotations


class FakeClock:
    """Callable like ``time.monotonic``; ``advance(dt)`` moves it forward."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, dt: float) -> None:
        if dt < 0:
            raise ValueError(f"a monotonic clock cannot go back (advance({dt!r}))")
        self.now += dt
