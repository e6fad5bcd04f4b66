"""AdmissionLimit: a pure in-flight counter that sheds at once."""

from __future__ import annotations

import pytest

from root.policies import AdmissionConfig, AdmissionLimit


def test_admits_up_to_the_limit_then_sheds() -> None:
    limit = AdmissionLimit(AdmissionConfig(max_in_flight=2))
    assert [limit.try_acquire() for _ in range(4)] == [True, True, False, False]
    assert (limit.in_flight, limit.shed) == (2, 2)
    limit.release()
    assert limit.try_acquire()
    assert not limit.try_acquire()
    assert (limit.in_flight, limit.shed) == (2, 3)
    limit.release()
    limit.release()
    assert limit.in_flight == 0


def test_release_without_acquire_is_a_bug() -> None:
    limit = AdmissionLimit(AdmissionConfig(max_in_flight=1))
    with pytest.raises(RuntimeError, match="without a matching try_acquire"):
        limit.release()


def test_defaults_and_validation() -> None:
    assert AdmissionLimit().max_in_flight == 128
    with pytest.raises(ValueError) as info:
        AdmissionConfig(max_in_flight=0)
    assert str(info.value) == "admission.max_in_flight must be >= 1, got 0"


def test_bytes_in_flight_are_capped_but_a_request_alone_is_always_admitted() -> None:
    limit = AdmissionLimit(AdmissionConfig(max_in_flight=10, max_in_flight_bytes=100))
    assert limit.try_acquire(150)  # alone: admitted whatever its size
    assert not limit.try_acquire(1)
    assert (limit.shed, limit.shed_bytes, limit.over_bytes) == (1, 1, True)
    limit.release(150)
    assert limit.try_acquire(60) and limit.try_acquire(40)
    assert not limit.try_acquire(1)
    limit.release(40)
    assert limit.try_acquire(40)
    assert (limit.in_flight, limit.in_flight_bytes, limit.shed_bytes) == (2, 100, 2)
    with pytest.raises(RuntimeError):
        limit.release(101)
