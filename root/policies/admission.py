"""Admission: a cap on requests in flight, shedding the rest at once.

What lives here: ``AdmissionConfig`` and ``AdmissionLimit``, a pure counter used
by the root and by each leaf. Beyond the cap a request is refused immediately
rather than queued, so admitted requests keep their latency and memory stays
flat under overload (a queue only adds waiting time once the cores are busy:
Little's law). What does not: mapping a refusal to RESOURCE_EXHAUSTED (the
servicer does that) or any waiting; there is no queue here on purpose.

Call order: ``if limit.try_acquire(): try: ... finally: limit.release()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from root.policies._validate import check_int

# Little's law with the measured numbers: a 2-core root saturates near 900
# requests/s at 64 in flight (ARCHITECTURE.md); 128 leaves 2x headroom for
# faster hardware or cheaper requests before shedding, and every request past
# saturation only waits.
DEFAULT_MAX_IN_FLIGHT = 128


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

    def __post_init__(self) -> None:
        check_int("admission.max_in_flight", self.max_in_flight, low=1)


class AdmissionLimit:
    """At most ``max_in_flight`` requests at once; the rest are shed and counted."""

    __slots__ = ("_max", "in_flight", "shed")

    def __init__(self, config: AdmissionConfig = AdmissionConfig()) -> None:
        self._max = config.max_in_flight
        self.in_flight = 0
        """Requests admitted and not yet released."""
        self.shed = 0
        """Requests refused since start."""

    @property
    def max_in_flight(self) -> int:
        return self._max

    def try_acquire(self) -> bool:
        """Admit one request (True) or refuse it at once (False, counted in ``shed``)."""
        if self.in_flight >= self._max:
            self.shed += 1
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        """An admitted request has finished. Releasing more than was acquired is a bug."""
        if self.in_flight <= 0:
            raise RuntimeError("AdmissionLimit.release() without a matching try_acquire()")
        self.in_flight -= 1
