"""HedgingConfig validation and HedgeDelay: fixed, initial, clamped percentile, off."""

from __future__ import annotations

import pytest

from root.policies import HedgeDelay, HedgingConfig, LatencyWindow, LatencyWindowConfig, delay_percentile_for


def window_of(*seconds: float) -> LatencyWindow:
    w = LatencyWindow(LatencyWindowConfig(size=1000, recompute_every=1))
    for s in seconds:
        w.record(s)
    return w


def ms_window(n: int) -> LatencyWindow:
    """Latencies 1 ms, 2 ms, ... n ms."""
    return window_of(*(i / 1000 for i in range(1, n + 1)))


def test_defaults() -> None:
    c = HedgingConfig()
    assert c.enabled is True
    assert c.max_attempts == 3
    assert c.hedging_delay is None
    assert c.delay_percentile == 0.975  # half of the default 5% budget
    assert (c.min_delay, c.max_delay, c.initial_delay) == (0.001, 1.0, 0.02)
    assert c.min_samples == 20
    assert c.non_fatal_status_codes == ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


def test_the_default_percentile_hedges_half_of_the_budget() -> None:
    assert delay_percentile_for(0.05) == pytest.approx(0.975)
    assert delay_percentile_for(0.02) == pytest.approx(0.99)
    assert delay_percentile_for(0.0) == 1.0


def test_initial_delay_until_min_samples_then_percentile() -> None:
    delay = HedgeDelay(HedgingConfig(min_samples=20, delay_percentile=0.95))
    assert delay.delay(ms_window(0)) == 0.02
    assert delay.delay(ms_window(19)) == 0.02
    assert delay.delay(ms_window(20)) == 0.019  # nearest rank 19 of 20
    assert delay.delay(ms_window(100)) == 0.095


def test_percentile_is_clamped() -> None:
    delay = HedgeDelay(HedgingConfig(min_delay=0.005, max_delay=0.05, initial_delay=0.01, min_samples=1))
    assert delay.delay(window_of(0.0002)) == 0.005  # below min_delay
    assert delay.delay(window_of(0.007)) == 0.007  # inside: as is
    assert delay.delay(window_of(0.005)) == 0.005  # boundaries are inside
    assert delay.delay(window_of(0.05)) == 0.05
    assert delay.delay(window_of(3.0)) == 0.05  # above max_delay


def test_delay_percentile_is_configurable() -> None:
    delay = HedgeDelay(HedgingConfig(delay_percentile=0.5))
    assert delay.delay(ms_window(100)) == 0.05


def test_fixed_delay_ignores_the_window() -> None:
    delay = HedgeDelay(HedgingConfig(hedging_delay=0.004))
    assert delay.delay(ms_window(0)) == 0.004
    assert delay.delay(ms_window(100)) == 0.004
    # gRPC semantics: 0 sends every attempt at once; not clamped by min_delay.
    assert HedgeDelay(HedgingConfig(hedging_delay=0.0)).delay(ms_window(100)) == 0.0


def test_disabled_never_hedges_but_keeps_failover_settings() -> None:
    config = HedgingConfig(enabled=False, hedging_delay=0.004)
    delay = HedgeDelay(config)
    assert delay.delay(ms_window(0)) is None
    assert delay.delay(ms_window(100)) is None
    assert config.max_attempts == 3
    assert config.is_non_fatal("UNAVAILABLE")


def test_the_delay_follows_the_window() -> None:
    delay = HedgeDelay(HedgingConfig(min_samples=1))
    w = window_of(*([0.002] * 100))
    assert delay.delay(w) == 0.002
    for _ in range(6):  # 6% of the window slow: the p95 moves to the slow value
        w.record(0.2)
    assert delay.delay(w) == 0.2


def test_non_fatal_codes() -> None:
    c = HedgingConfig()
    assert c.is_non_fatal("UNAVAILABLE")
    assert c.is_non_fatal("RESOURCE_EXHAUSTED")
    for code in ("INVALID_ARGUMENT", "INTERNAL", "DEADLINE_EXCEEDED", "OK", "unavailable"):
        assert not c.is_non_fatal(code)
    only = HedgingConfig(non_fatal_status_codes=("UNAVAILABLE",))
    assert not only.is_non_fatal("RESOURCE_EXHAUSTED")
    assert not HedgingConfig(non_fatal_status_codes=()).is_non_fatal("UNAVAILABLE")


def test_list_from_toml_is_normalised_to_a_tuple() -> None:
    c = HedgingConfig(non_fatal_status_codes=["UNAVAILABLE"])  # type: ignore[arg-type]
    assert c.non_fatal_status_codes == ("UNAVAILABLE",)
    assert c == HedgingConfig(non_fatal_status_codes=("UNAVAILABLE",))
    hash(c)


def test_config_is_frozen() -> None:
    c = HedgingConfig()
    with pytest.raises(AttributeError):
        c.max_attempts = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"enabled": 1}, "hedging.enabled must be true or false, got 1"),
        ({"max_attempts": 0}, "hedging.max_attempts must be in [1, 5], got 0"),
        ({"max_attempts": 6}, "hedging.max_attempts must be in [1, 5], got 6"),
        ({"max_attempts": 2.0}, "hedging.max_attempts must be an integer, got 2.0"),
        ({"hedging_delay": -0.001}, "hedging.hedging_delay must be >= 0, got -0.001"),
        ({"hedging_delay": float("inf")}, "hedging.hedging_delay must be a finite number, got inf"),
        ({"delay_percentile": 0.0}, "hedging.delay_percentile must be in (0, 1], got 0.0"),
        ({"delay_percentile": 1.01}, "hedging.delay_percentile must be in (0, 1], got 1.01"),
        ({"min_delay": -1.0}, "hedging.min_delay must be >= 0, got -1.0"),
        (
            {"min_delay": 0.01, "max_delay": 0.005, "initial_delay": 0.01},
            "hedging.max_delay must be >= hedging.min_delay (0.01), got 0.005",
        ),
        (
            {"max_delay": 0.01},
            "hedging.initial_delay must be in [hedging.min_delay, hedging.max_delay] = [0.001, 0.01], got 0.02",
        ),
        ({"min_samples": 0}, "hedging.min_samples must be >= 1, got 0"),
        (
            {"non_fatal_status_codes": "UNAVAILABLE"},
            "hedging.non_fatal_status_codes must be a list of status code names, got 'UNAVAILABLE'",
        ),
    ],
)
def test_validation_names_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        HedgingConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize("code", ["OK", "unavailable", "TIMEOUT"])
def test_unknown_status_codes_are_refused(code: str) -> None:
    with pytest.raises(ValueError, match=rf"hedging.non_fatal_status_codes: '{code}' is not a gRPC status code"):
        HedgingConfig(non_fatal_status_codes=(code,))


@pytest.mark.parametrize("code", [["UNAVAILABLE"], {"a": 1}, 14])
def test_a_status_code_that_is_not_a_name_is_refused_by_name(code: object) -> None:
    # Found by the fuzz suite: a list in the list (TOML [[...]]) raised "unhashable type: 'list'",
    # which the configuration passed on without the key.
    with pytest.raises(ValueError, match=r"^hedging.non_fatal_status_codes: .* is not a gRPC status code name"):
        HedgingConfig(non_fatal_status_codes=(code,))  # type: ignore[arg-type]
