"""Row-order drift statistics against plain-loop computations and series with known drift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwsim.errors import LatencyError
from hwsim.latency import measurement_drift as md


def _loop_neighbour_mean(r: list[float], window: int) -> list[float]:
    half = window // 2
    out = []
    for i in range(len(r)):
        others = [r[j] for j in range(max(0, i - half), min(len(r), i + half + 1)) if j != i]
        out.append(sum(others) / len(others))
    return out


def _loop_stats(r: list[float]) -> tuple[float, float]:
    n = len(r)
    m = sum(r) / n
    ss = sum((x - m) ** 2 for x in r)
    lag1 = sum((r[i] - m) * (r[i + 1] - m) for i in range(n - 1)) / ss
    dw = sum((r[i + 1] - r[i]) ** 2 for i in range(n - 1)) / ss
    return lag1, dw


def _loop_var(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / len(xs)


def test_neighbour_mean_equals_a_loop_over_the_window_with_cut_ends():
    rng = np.random.default_rng(1)
    r = rng.normal(size=40)
    for window in (3, 7, 39):
        want = _loop_neighbour_mean(r.tolist(), window)
        np.testing.assert_allclose(md.neighbour_mean(r, window), want, rtol=1e-12, atol=1e-14)


def test_statistics_equal_the_loop_formulas_on_log_residuals():
    rng = np.random.default_rng(2)
    pred = rng.uniform(5.0, 20.0, size=60)
    true = pred * np.exp(rng.normal(scale=0.1, size=60))
    got = md.order_drift(true, pred, window=11)
    r = [math.log(t) - math.log(p) for t, p in zip(true, pred, strict=True)]
    lag1, dw = _loop_stats(r)
    drift = _loop_neighbour_mean(r, 11)
    rest = [a - b for a, b in zip(r, drift, strict=True)]
    assert got.lag1_autocorr == pytest.approx(lag1, rel=1e-12)
    assert got.durbin_watson == pytest.approx(dw, rel=1e-12)
    assert got.drift_share == pytest.approx(1 - _loop_var(rest) / _loop_var(r), rel=1e-10)
    assert got.white_noise_band == pytest.approx(1.96 / math.sqrt(60))
    assert (got.n, got.window) == (60, 11)


def test_independent_residuals_stay_inside_the_white_noise_band():
    rng = np.random.default_rng(3)
    pred = np.full(4000, 10.0)
    true = pred * np.exp(rng.normal(scale=0.05, size=4000))
    got = md.order_drift(true, pred)
    assert abs(got.lag1_autocorr) < got.white_noise_band
    assert got.durbin_watson == pytest.approx(2.0, abs=0.1)
    assert got.drift_share < 0.01


def test_slow_drift_plus_noise_is_found_with_about_its_variance_share():
    # log residual = a slow sine (variance 0.5 * 0.1^2) + white noise (variance 0.05^2): the
    # drift's share of the variance is 0.005 / (0.005 + 0.0025) = 2/3.
    rng = np.random.default_rng(4)
    n = 20000
    slow = 0.1 * np.sin(np.arange(n) * 2 * np.pi / 2000)
    true = 10.0 * np.exp(slow + rng.normal(scale=0.05, size=n))
    got = md.order_drift(true, np.full(n, 10.0), window=51)
    assert got.drift_share == pytest.approx(2 / 3, abs=0.03)
    assert got.lag1_autocorr == pytest.approx(2 / 3, abs=0.03)
    assert got.lag1_autocorr > 10 * got.white_noise_band


def test_bad_inputs_are_refused_with_the_reason():
    ok = np.full(30, 10.0)
    noisy = ok * np.exp(np.linspace(-0.1, 0.1, 30))
    with pytest.raises(LatencyError, match="at least 20 rows, got 5"):
        md.order_drift(ok[:5], ok[:5])
    with pytest.raises(LatencyError, match="predicted latency must be finite and positive.*row 3"):
        md.order_drift(noisy, np.where(np.arange(30) == 3, 0.0, ok))
    with pytest.raises(LatencyError, match="odd integer >= 3"):
        md.order_drift(noisy, ok, window=4)
    with pytest.raises(LatencyError, match="longer than the 30 rows"):
        md.order_drift(noisy, ok, window=31)
    with pytest.raises(LatencyError, match="not all equal"):
        md.order_drift(ok, ok, window=5)
    with pytest.raises(LatencyError, match=r"shapes \(30,\) \(true\) and \(29,\)"):
        md.order_drift(noisy, ok[:29])


def test_default_window_is_51_rows_or_the_largest_odd_count_up_to_half_the_rows():
    assert [md.default_window(n) for n in (20, 21, 22, 23, 101, 102, 103, 5000)] == \
        [9, 9, 11, 11, 49, 51, 51, 51]
    rng = np.random.default_rng(5)
    true = 10.0 * np.exp(rng.normal(scale=0.05, size=30))
    assert md.order_drift(true, np.full(30, 10.0)).window == 15


def test_lag1_autocorrelation_of_an_alternating_and_a_trending_series():
    # +1, -1, +1, ...: each product of neighbours is -1, n - 1 of them over n squares
    assert md.lag1_autocorrelation(np.array([1.0, -1.0] * 10)) == pytest.approx(-19 / 20)
    assert md.lag1_autocorrelation(np.arange(1000.0)) > 0.99
    with pytest.raises(LatencyError, match="not all equal"):
        md.lag1_autocorrelation(np.ones(5))
    with pytest.raises(LatencyError, match=">= 2 values"):
        md.lag1_autocorrelation(np.ones(1))
