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
