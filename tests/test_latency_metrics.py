"""Latency metrics against hand-computed values and scipy; the degenerate-row rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hwsim.errors import LatencyError
from hwsim.latency import metrics as lm

T = np.array([10.0, 20.0, 40.0, 80.0])
P = np.array([11.0, 18.0, 40.0, 100.0])  # relative errors 0.10, 0.10, 0, 0.25


def test_rmse_and_rmspe_match_hand_computation():
    assert lm.rmse(T, P) == pytest.approx(math.sqrt((1 + 4 + 0 + 400) / 4))
    assert lm.rmspe(T, P) == pytest.approx(100 * math.sqrt((0.01 + 0.01 + 0 + 0.0625) / 4))


def test_within_accuracy_counts_the_boundary_inside():
    assert lm.within_accuracy(T, P, 0.05) == 0.25
    assert lm.within_accuracy(T, P, 0.10) == 0.75
    assert lm.within_accuracy(T, P, 0.15) == 0.75
    assert lm.within_accuracy(T, P, 0.30) == 1.0


def test_rank_correlations_match_hand_and_scipy():
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    p = np.array([1.0, 3.0, 2.0, 4.0, 5.0])  # one adjacent swap
    # rho = 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 120; tau = (9 - 1) / 10
    assert lm.spearman(t, p) == pytest.approx(0.9)
    assert lm.kendall(t, p) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    a, b = rng.random(200), rng.random(200)
    b[:20] = a[:20]
    assert lm.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    ties = np.round(a * 5)
    assert lm.kendall(ties, b) == pytest.approx(stats.kendalltau(ties, b).statistic)


def test_degenerate_rows_below_five_percent_of_median_are_dropped_and_counted():
    t = np.array([0.003, 0.4, 10.0, 11.0, 12.0, 9.0, -1.0])
    keep = lm.degenerate_mask(t)
    # median of positive values = 10.0 -> floor 0.5 ms
    assert keep.tolist() == [False, False, True, True, True, True, False]
    m = lm.latency_metrics(t, np.where(t > 0, t, 1.0) * 1.02)
    assert (m.n_used, m.n_dropped) == (4, 3)
    assert m.acc5 == 1.0 and m.acc10 == 1.0 and m.spearman == pytest.approx(1.0)
    assert m.rmspe_pct == pytest.approx(2.0)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(LatencyError, match=r"shapes \(4,\) \(true\) and \(3,\)"):
        lm.rmse(T, P[:3])
    with pytest.raises(LatencyError, match="predicted latency is not finite at row 2"):
        lm.latency_metrics(T, np.array([1.0, 2.0, np.nan, 3.0]))
    with pytest.raises(LatencyError, match="non-constant"):
        lm.spearman(T, np.ones(4))
    with pytest.raises(LatencyError, match="only 1 of 2 rows remain"):
        lm.latency_metrics(np.array([0.0, 5.0]), np.array([1.0, 5.0]))
