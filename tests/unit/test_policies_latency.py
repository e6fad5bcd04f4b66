"""LatencyWindow: ring semantics, nearest-rank percentiles, snapshot refresh rule."""

from __future__ import annotations

import math

import pytest

from root.policies import LatencyWindow, LatencyWindowConfig


def window(size: int = 1000, recompute_every: int = 1) -> LatencyWindow:
    return LatencyWindow(LatencyWindowConfig(size=size, recompute_every=recompute_every))


def test_empty_window_has_no_percentile() -> None:
    w = window()
    assert w.count == 0
    assert w.percentile(0.5) is None
    assert w.percentile(0.0) is None


def test_nearest_rank_definition_on_1_to_100() -> None:
    w = window(size=100)
    for ms in range(100, 0, -1):  # insertion order must not matter
        w.record(ms / 1000)
    assert w.count == 100
    assert w.percentile(0.0) == 0.001  # rank max(1, 0) = 1: the minimum
    assert w.percentile(0.01) == 0.001
    assert w.percentile(0.5) == 0.050
    assert w.percentile(0.95) == 0.095
    assert w.percentile(0.99) == 0.099
    assert w.percentile(0.999) == 0.100  # ceil(99.9) = 100
    assert w.percentile(1.0) == 0.100
    # 0.07 * 100 is 7.000000000000001 in floating point; the rank is still 7.
    assert w.percentile(0.07) == 0.007


def test_nearest_rank_small_windows() -> None:
    w = window()
    w.record(0.003)
    assert w.percentile(0.5) == 0.003
    w.record(0.001)
    assert w.percentile(0.5) == 0.001  # ceil(0.5 * 2) = 1
    assert w.percentile(0.51) == 0.003  # ceil(1.02) = 2
    # 20 samples, p95 is rank 19: the second largest, not the maximum.
    w = window()
    for i in range(1, 21):
        w.record(float(i))
    assert w.percentile(0.95) == 19.0
    # 19 samples, p95 is rank ceil(18.05) = 19: the maximum.
    w = window()
    for i in range(1, 20):
        w.record(float(i))
    assert w.percentile(0.95) == 19.0


def test_ring_forgets_the_oldest() -> None:
    w = window(size=3)
    for v in (10.0, 20.0, 30.0):
        w.record(v)
    assert (w.percentile(0.0), w.percentile(1.0)) == (10.0, 30.0)
    w.record(1.0)  # overwrites 10.0
    assert w.count == 3
    assert (w.percentile(0.0), w.percentile(0.5), w.percentile(1.0)) == (1.0, 20.0, 30.0)
    w.record(2.0)  # overwrites 20.0
    w.record(3.0)  # overwrites 30.0
    assert (w.percentile(0.0), w.percentile(1.0)) == (1.0, 3.0)
    w.record(4.0)  # wraps again: overwrites 1.0
    assert (w.percentile(0.0), w.percentile(1.0)) == (2.0, 4.0)


def test_size_one() -> None:
    w = window(size=1)
    w.record(5.0)
    w.record(7.0)
    assert w.count == 1
    assert w.percentile(0.0) == w.percentile(1.0) == 7.0


def test_snapshot_refresh_rule_steady_state() -> None:
    # Refresh when records since the snapshot >= min(recompute_every, snapshot size).
    w = window(size=100, recompute_every=4)
    for _ in range(8):
        w.record(1.0)
    assert w.percentile(1.0) == 1.0  # snapshot of 8 samples
    w.record(9.0)
    w.record(9.0)
    w.record(9.0)
    assert w.percentile(1.0) == 1.0  # 3 records since: stale answer, by design
    w.record(9.0)
    assert w.percentile(1.0) == 9.0  # 4th record: refreshed
    assert w.percentile(0.0) == 1.0


def test_snapshot_refresh_rule_warm_up_doubles() -> None:
    # With a large recompute_every, an early snapshot refreshes once the window
    # has grown by its own size: at 1, 2, 4, 8... samples when read each time.
    w = window(size=100, recompute_every=64)
    refreshed_at = []
    last = None
    for i in range(1, 20):
        w.record(float(i))  # increasing: the max changes exactly on refresh
        top = w.percentile(1.0)
        if top != last:
            refreshed_at.append(i)
            last = top
    assert refreshed_at == [1, 2, 4, 8, 16]


def test_recompute_every_caps_staleness() -> None:
    w = window(size=1000, recompute_every=64)
    for _ in range(200):
        w.record(0.001)
    assert w.percentile(0.99) == 0.001
    for _ in range(63):
        w.record(0.5)
    assert w.percentile(0.99) == 0.001  # 63 < 64 records since the snapshot
    w.record(0.5)
    assert w.percentile(0.99) == 0.5  # 64 of 264 above p99


def test_record_rejects_negative_and_nan() -> None:
    w = window()
    with pytest.raises(ValueError, match=r"latency must be >= 0 seconds, got -0\.1"):
        w.record(-0.1)
    with pytest.raises(ValueError, match="latency must be >= 0"):
        w.record(math.nan)
    assert w.count == 0
    w.record(0.0)
    assert w.percentile(1.0) == 0.0


def test_percentile_q_range() -> None:
    w = window()
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\], got 1.5"):
        w.percentile(1.5)
    with pytest.raises(ValueError, match="q must be"):
        w.percentile(-0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "hedging.latency_window must be >= 1, got 0"),
        ({"size": True}, "hedging.latency_window must be an integer, got True"),
        ({"size": 1.5}, "hedging.latency_window must be an integer, got 1.5"),
        ({"recompute_every": 0}, "hedging.latency_recompute_every must be >= 1, got 0"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        LatencyWindowConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_defaults() -> None:
    config = LatencyWindowConfig()
    assert (config.size, config.recompute_every) == (1000, 64)
    w = LatencyWindow()
    w.record(0.002)
    assert w.percentile(0.95) == 0.002


# --- age: the window follows the load within max_age, whatever the call rate ----------


def test_samples_older_than_max_age_leave_the_percentiles() -> None:
    w = LatencyWindow(LatencyWindowConfig(size=1000, recompute_every=1, max_age=2.0, keep_newest=3))
    for i in range(100):  # a heavy phase: 50 ms calls, t = 0 .. 0.495
        w.record(0.050, now=i * 0.005)
    for i in range(10):  # then light: 2 ms calls, t = 2.5 .. 2.59
        w.record(0.002, now=2.5 + i * 0.01)
    assert w.percentile(0.975, now=2.6) == 0.002  # the heavy phase is over 2 s old
    assert w.count == 110


def test_a_quiet_shard_keeps_its_newest_samples() -> None:
    w = LatencyWindow(LatencyWindowConfig(size=100, recompute_every=1, max_age=1.0, keep_newest=3))
    for i, latency in enumerate((0.009, 0.001, 0.002, 0.003)):
        w.record(latency, now=float(i))
    # at t = 60 nothing is fresh: the newest 3 stand in, not a percentile of nothing
    assert w.percentile(1.0, now=60.0) == 0.003
    assert w.percentile(0.0, now=60.0) == 0.001


def test_samples_age_out_without_new_records() -> None:
    """The sorted copy is refreshed at least every max_age / 4, not only every recompute_every records."""
    w = LatencyWindow(LatencyWindowConfig(size=1000, recompute_every=64, max_age=2.0, keep_newest=1))
    for _ in range(50):
        w.record(0.050, now=0.0)
    for _ in range(50):
        w.record(0.002, now=1.9)
    assert w.percentile(1.0, now=1.9) == 0.050
    assert w.percentile(1.0, now=2.2) == 0.050  # under max_age / 4 since the copy: not yet refreshed
    assert w.percentile(1.0, now=2.5) == 0.002  # refreshed; the 50 ms samples are over 2 s old


def test_age_settings_are_validated() -> None:
    with pytest.raises(ValueError, match=r"hedging\.latency_max_age must be > 0"):
        LatencyWindowConfig(max_age=0.0)
    with pytest.raises(ValueError, match=r"hedging\.latency_keep_newest must be >= 1"):
        LatencyWindowConfig(keep_newest=0)
    assert LatencyWindowConfig().max_age == 2.0 and LatencyWindowConfig(max_age=None).max_age is None
