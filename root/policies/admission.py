"""Admission: a cap on requests and on request bytes in flight, shedding the rest at once.

What lives here: ``AdmissionConfig`` and ``AdmissionLimit``, a pure counter of
the requests admitted and of their sizes. Beyond either cap a request is
refused immediately rather than queued, so admitted requests keep their
latency and memory stays flat under overload (a queue only adds waiting time
once the cores are busy: Little's law). The byte cap is Elasticsearch's
request circuit breaker and Envoy's overload manager in one counter: a count
of requests says nothing about memory when one request may be 4 MiB and the
next 40 bytes. What does not live here: mapping a refusal to
RESOURCE_EXHAUSTED and its message (the servicer does that) or any waiting;
there is no queue here on purpose.

Call order: ``if limit.try_acquire(size): try: ... finally: limit.release(size)``
with the same ``size`` (the request body's bytes) both times. A refusal says
why in ``over_bytes`` until the next call.
"""

from __future__ import annotations

from dataclasses import dataclass

from root.policies._validate import check_int

# Little's law with the measured numbers: a 2-core root saturates near 900
# requests/s at 64 in flight (ARCHITECTURE.md); 128 leaves 2x headroom for
# faster hardware or cheaper requests before shedding, and every request past
# saturation only waits.
DEFAULT_MAX_IN_FLIGHT = 128

MIB = 1024 * 1024
# The byte cap is derived from a memory budget, stated here. The root's
# container has 512 MiB (deploy/k8s/20-root.yaml); about 50 MiB is the idle
# process, and half of the limit is kept for everything that is not a request
# body (the leaves' answers and the merge request, grpc's buffers, allocator
# slack). That leaves REQUEST_MEMORY_BUDGET for request bodies, and a body
# admitted costs at most RSS_PER_ADMITTED_BYTE bytes of RSS at its peak
# (measured: `scatter bench memory`, docs/benchmarks.md): the body as it
# arrived, held once, plus the transient copy of each leaf and merge request
# being written). So 128 MiB of bodies may be in flight: 32 requests at
# gRPC's 4 MiB limit, any number of small ones.
REQUEST_MEMORY_BUDGET = 256 * MIB
RSS_PER_ADMITTED_BYTE = 2
DEFAULT_MAX_IN_FLIGHT_BYTES = REQUEST_MEMORY_BUDGET // RSS_PER_ADMITTED_BYTE


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES

    def __post_init__(self) -> None:
        check_int("admission.max_in_flight", self.max_in_flight, low=1)
        check_int("admission.max_in_flight_bytes", self.max_in_flight_bytes, low=1)


class AdmissionLimit:
    """At most ``max_in_flight`` requests and ``max_in_flight_bytes`` of them at once; the rest are shed and counted."""

    __slots__ = ("_max", "_max_bytes", "in_flight", "in_flight_bytes", "over_bytes", "shed", "shed_bytes")

    def __init__(self, config: AdmissionConfig = AdmissionConfig()) -> None:
        self._max = config.max_in_flight
        self._max_bytes = config.max_in_flight_bytes
        self.in_flight = 0
        """Requests admitted and not yet released."""
        self.in_flight_bytes = 0
        """The sizes of those requests, summed."""
        self.shed = 0
        """Requests refused since start, for either cap."""
        self.shed_bytes = 0
        """Of those, the ones refused for the byte cap."""
        self.over_bytes = False
        """Whether the last refusal was for the byte cap (else for the request cap)."""

    @property
    def max_in_flight(self) -> int:
        return self._max

    @property
    def max_in_flight_bytes(self) -> int:
        return self._max_bytes

    def try_acquire(self, size: int = 0) -> bool:
        """Admit one request of ``size`` bytes (True) or refuse it at once (False, counted in ``shed``).

        A request is refused for its bytes only when others are in flight:
        alone, any request is admitted, so one larger than the cap is not
        refused forever (the root's configuration keeps the cap above its
        largest message anyway).
        """
        if self.in_flight >= self._max:
            self.shed += 1
            self.over_bytes = False
            return False
        if self.in_flight and self.in_flight_bytes + size > self._max_bytes:
            self.shed += 1
            self.shed_bytes += 1
            self.over_bytes = True
            return False
        self.in_flight += 1
        self.in_flight_bytes += size
        return True

    def release(self, size: int = 0) -> None:
        """An admitted request of ``size`` bytes has finished. Releasing more than was acquired is a bug."""
        if self.in_flight <= 0 or size > self.in_flight_bytes:
            raise RuntimeError("AdmissionLimit.release() without a matching try_acquire()")
        self.in_flight -= 1
        self.in_flight_bytes -= size
