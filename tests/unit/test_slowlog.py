"""SlowLog: the slowest requests of a recent window, built only when they get in."""

from __future__ import annotations

from root.slowlog import SlowLog, SlowRequest


def record(ms: float) -> SlowRequest:
    return SlowRequest(request_id=f"r{ms:g}", at=0.0, elapsed_ms=ms, code="OK", answered=1, total=1, attempts=())


def test_keeps_the_slowest_and_builds_only_those_that_get_in() -> None:
    log = SlowLog(capacity=3, max_age=60.0)
    built = []

    def offer(ms: float, now: float) -> None:
        def build() -> SlowRequest:
            built.append(ms)
            return record(ms)

        log.offer(ms / 1000, now, build)

    for n, ms in enumerate([5, 50, 7, 80, 6, 3, 60, 9]):
        offer(ms, float(n))
    assert [r.elapsed_ms for r in log.slowest(8.0)] == [80, 60, 50]
    assert built == [5, 50, 7, 80, 60]  # 6, 3 and 9 were faster than every kept one


def test_old_requests_age_out() -> None:
    log = SlowLog(capacity=3, max_age=60.0)
    log.offer(0.5, 0.0, lambda: record(500))
    log.offer(0.01, 30.0, lambda: record(10))
    assert [r.elapsed_ms for r in log.slowest(59.0)] == [500, 10]
    assert [r.elapsed_ms for r in log.slowest(61.0)] == [10]
    log.offer(0.02, 62.0, lambda: record(20))  # the 500 ms one no longer holds a place
    assert [r.elapsed_ms for r in log.slowest(62.0)] == [20, 10]
