"""The Gradient2 formula against Netflix's constants, and where ours differs, with numbers worked
out by hand from Gradient2Limit's formula (no copy of the code under test)."""

from __future__ import annotations

import pytest

from renderer.gradient2 import Gradient2


def steady(formula: Gradient2, rtt: float, samples: int) -> None:
    for _ in range(samples):
        formula.update(rtt, in_flight=int(formula.limit))


def test_netflixs_limit_grows_by_smoothing_times_queue_while_latency_holds() -> None:
    formula = Gradient2.netflix()
    steady(formula, 0.010, 10)  # gradient 1: 0.8 L + 0.2 (L + 4) = L + 0.8 a sample
    assert formula.limit == pytest.approx(28.0)


def test_netflixs_limit_shrinks_by_the_gradient_clamped_at_a_half() -> None:
    formula = Gradient2.netflix()
    steady(formula, 0.010, 10)  # warmed up: the long latency is the mean, 10 ms
    formula.update(0.040, in_flight=28)
    # long = 10 × (1 − 2/601) + 40 × 2/601 ≈ 10.1 ms; 10.1/40 < 0.5, so the gradient is 0.5:
    # 0.8 × 28 + 0.2 × (0.5 × 28 + 4) = 26.0
    assert formula.long_rtt == pytest.approx(0.010 + 0.030 * 2 / 601)
    assert formula.limit == pytest.approx(26.0)


def test_netflixs_limit_never_falls_below_its_floor_and_holds_when_underused() -> None:
    formula = Gradient2.netflix()
    steady(formula, 0.010, 10)
    assert formula.update(5.0, in_flight=3) == pytest.approx(28.0)  # fewer than half in use: no change
    steady(formula, 5.0, 50)
    assert formula.limit == 20  # min_limit


def test_the_long_latency_decays_when_calls_get_more_than_twice_as_fast() -> None:
    formula = Gradient2.netflix()
    steady(formula, 0.100, 10)
    formula.update(0.010, in_flight=0)
    assert formula.long_rtt == pytest.approx((0.100 * (1 - 2 / 601) + 0.010 * 2 / 601) * 0.9)


def test_ours_tolerates_twice_the_usual_latency_and_averages_the_short_one() -> None:
    ours = Gradient2(limit=16, min_limit=2, max_limit=200)
    steady(ours, 0.010, 1)  # the first sample sets both latencies; gradient 1: + 0.2 × √16
    assert ours.limit == pytest.approx(16.8)
    before = ours.limit
    ours.update(0.020, in_flight=int(ours.limit))
    # short = ½ (10 + 20) = 15 ms: 2 × long/short > 1, so no shrink; it still grows by the queue
    assert ours.short_rtt == pytest.approx(0.015)
    assert ours.limit == pytest.approx(before + 0.2 * before**0.5)
