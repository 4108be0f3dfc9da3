"""HAQ baselines: uniform costs, greedy within budget, ILP optimum = brute force, sensitivity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hwsim.errors import SearchError
from hwsim.search.haq_baselines import (
    TIE_BREAK,
    check_budget,
    greedy_policy,
    ilp_policy,
    measure_sensitivity,
    monotone_envelope,
    pair_scores,
    score_total,
    uniform_policies,
)
from hwsim.search.haq_cost import CostTable

BITS = (2, 4, 8)


def _table(values: np.ndarray, bits: tuple[int, ...] = BITS) -> CostTable:
    n = values.shape[0]
    return CostTable("latency", "ms", bits, tuple(f"l{i}" for i in range(n)), values, "test")


def _random_instance(seed: int, n: int = 4, bits: tuple[int, ...] = BITS):
    """Costs growing with w*a plus noise, random scores, HAQ-like fixed first/last layers."""
    rng = np.random.default_rng(seed)
    nb = len(bits)
    values = np.empty((n, nb, nb))
    for i in range(n):
        size = rng.uniform(0.5, 3.0)
        for wi, w in enumerate(bits):
            for ai, a in enumerate(bits):
                values[i, wi, ai] = size * w * a / 64 + rng.uniform(0, 0.05)
    fixed = {0: (8, 8), n - 1: (8, None)}
    scores = []
    for i in range(n):
        ws = [fixed.get(i, (None, None))[0]] if fixed.get(i, (None, None))[0] else bits
        as_ = [fixed.get(i, (None, None))[1]] if fixed.get(i, (None, None))[1] else bits
        scores.append({(w, a): float(rng.normal()) for w in ws for a in as_})
    return _table(values, bits), fixed, scores


def _brute_force(costs: CostTable, fixed, scores, budget: float):
    """Best summed score over every allowed policy within budget (independent of the ILP)."""
    choices = [list(s) for s in scores]
    best = None
    for policy in itertools.product(*choices):
        cost = sum(costs.values[i, BITS.index(w), BITS.index(a)]
                   for i, (w, a) in enumerate(policy))
        if cost > budget:
            continue
        obj = sum(scores[i][p] for i, p in enumerate(policy))
        if best is None or obj < best[0]:
            best = (obj, list(policy))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_ilp_optimum_equals_brute_force(seed):
    costs, fixed, scores = _random_instance(seed)
    lo = costs.total([(min(BITS), min(BITS))] * 4)
    for frac in (0.35, 0.5, 0.7, 0.9):
        budget = frac * costs.uniform(8)
        brute = _brute_force(costs, fixed, scores, budget)
        if brute is None:
            with pytest.raises(SearchError, match="minimum achievable cost"):
                ilp_policy(scores, costs, budget, fixed, BITS)
            continue
        policy = ilp_policy(scores, costs, budget, fixed, BITS)
        assert costs.total(policy) <= budget
        assert policy[0] == (8, 8) and policy[3][0] == 8
        assert math.isclose(score_total(scores, policy), brute[0], abs_tol=1e-9), (
            seed, frac, policy, brute, lo)


@pytest.mark.parametrize("seed", range(6))
def test_ilp_honours_the_tie_break_when_every_drop_is_zero(seed):
    """A saturated top-1 reward measures no drop anywhere: only TIE_BREAK per bit removed tells
    the pairs apart, and the ILP must still find the fewest bits removed that fit (scores a
    few 1e-7 apart, below HiGHS's default absolute MIP gap of 1e-6)."""
    from hwsim.search.haq_baselines import Sensitivity
    costs, fixed, _ = _random_instance(seed, n=5)
    zero = tuple({b: 0.0 for b in BITS} for _ in range(5))
    sens = Sensitivity(weight=zero, activation=zero, reference_accuracy=1.0, evaluations=0)
    scores = pair_scores(sens, fixed, BITS)
    # and drops in whole validation images (1/160) on one layer, as a top-1 reward measures
    images = [dict(s) for s in scores]
    images[2] = {(w, a): v + (w < 8) / 160 for (w, a), v in images[2].items()}
    for sc in (scores, images):
        for frac in (0.45, 0.6, 0.75, 0.9):
            budget = frac * costs.uniform(8)
            brute = _brute_force(costs, fixed, sc, budget)
            if brute is None:
                continue
            policy = ilp_policy(sc, costs, budget, fixed, BITS)
            assert costs.total(policy) <= budget
            assert score_total(sc, policy) == pytest.approx(brute[0], abs=1e-12), (
                seed, frac, policy, brute)


@pytest.mark.parametrize("seed", range(6))
def test_greedy_respects_budget_and_never_beats_the_ilp(seed):
    costs, fixed, scores = _random_instance(seed, n=5)
    floor = costs.total([(8, 8)] + [(2, 2)] * 3 + [(8, 2)])
    for frac in (0.4, 0.55, 0.75, 1.0):
        budget = frac * costs.uniform(8)
        if budget < floor:
            with pytest.raises(SearchError, match="minimum achievable cost"):
                greedy_policy(scores, costs, budget, fixed, BITS)
            continue
        greedy = greedy_policy(scores, costs, budget, fixed, BITS)
        assert costs.total(greedy) <= budget
        assert greedy[0] == (8, 8) and greedy[4][0] == 8
        ilp = ilp_policy(scores, costs, budget, fixed, BITS)
        assert score_total(scores, ilp) <= score_total(scores, greedy) + 1e-12


def test_greedy_keeps_all_max_bits_when_they_fit():
    costs, fixed, scores = _random_instance(3)
    # non-negative scores growing as bits drop: the all-8 policy is the best and it fits
    scores = [{p: (16 - p[0] - p[1]) * 0.01 for p in s} for s in scores]
    assert greedy_policy(scores, costs, costs.uniform(8), fixed, BITS) == [(8, 8)] * 4


def test_greedy_lowers_the_insensitive_layer_first():
    # two layers of equal cost; layer 1 loses nothing when lowered, layer 0 a lot
    values = np.zeros((2, 3, 3))
    for wi, w in enumerate(BITS):
        for ai, a in enumerate(BITS):
            values[:, wi, ai] = w * a
    costs = _table(values)
    scores = [{(w, a): (16 - w - a) * 1.0 for w in BITS for a in BITS},
              {(w, a): 0.0 for w in BITS for a in BITS}]
    policy = greedy_policy(scores, costs, 64 + 4, {}, BITS)
    assert policy == [(8, 8), (2, 2)]


def test_uniform_policies_costs_and_budget_flags():
    values = np.zeros((3, 3, 3))
    for wi, w in enumerate(BITS):
        for ai, a in enumerate(BITS):
            values[:, wi, ai] = [w * a, 2 * w * a, w + a]
    costs = _table(values)
    fixed = {0: (8, 8)}
    out = uniform_policies(costs, budget=100.0, fixed=fixed, bits=BITS)
    assert [u.bits for u in out] == [8, 4, 2]
    by_bits = {u.bits: u for u in out}
    assert by_bits[4].policy == [(8, 8), (4, 4), (4, 4)]
    # layer 0 fixed at W8A8 (64); layer 1: 2*w*a; layer 2: w + a
    assert by_bits[8].cost == 64 + 128 + 16
    assert by_bits[4].cost == 64 + 32 + 8
    assert by_bits[2].cost == 64 + 8 + 4
    assert [u.fits_budget for u in out] == [False, False, True]


def test_check_budget_raises_over_budget():
    costs = _table(np.ones((2, 3, 3)))
    assert check_budget("x", [(8, 8), (8, 8)], costs, 2.0) == 2.0
    with pytest.raises(SearchError, match="x policy costs 2 ms, over the latency budget 1.5"):
        check_budget("x", [(8, 8), (8, 8)], costs, 1.5)


class _FakeEvaluator:
    """Accuracy = 1 - sum of known per-component penalties; records every policy asked."""

    def __init__(self, n: int) -> None:
        self.layers = [None] * n
        self.base_bits = 8
        self.asked: list[list[tuple[int, int]]] = []

    @staticmethod
    def penalty(i: int, w: int, a: int) -> float:
        return (8 - w) * 0.01 * (i + 1) + (8 - a) * 0.002

    def accuracy(self, policy, split="val"):
        self.asked.append(list(policy))
        return 1.0 - sum(self.penalty(i, w, a) for i, (w, a) in enumerate(policy))

    def fp_accuracy(self, split="val"):
        return 1.0


def test_sensitivity_measures_single_component_drops_and_keeps_fixed_components():
    n = 3
    costs = _table(np.ones((n, 3, 3)))
    fixed = {0: (8, 8), 2: (8, None)}
    ev = _FakeEvaluator(n)
    sens = measure_sensitivity(ev, costs, fixed, BITS)
    # free components: layer 1 weight, layer 1 activation, layer 2 activation; 2 widths each
    assert sens.evaluations == 1 + 3 * 2 == len(ev.asked)
    assert all(p[0] == (8, 8) and p[2][0] == 8 for p in ev.asked)
    for b in (2, 4):
        assert sens.weight[1][b] == pytest.approx(_FakeEvaluator.penalty(1, b, 8))
        assert sens.activation[1][b] == pytest.approx(_FakeEvaluator.penalty(1, 8, b))
        assert sens.activation[2][b] == pytest.approx(_FakeEvaluator.penalty(2, 8, b))
    assert sens.pair(1, 4, 2) == pytest.approx(sens.weight[1][4] + sens.activation[1][2])
    scores = pair_scores(sens, fixed, BITS)
    assert set(scores[0]) == {(8, 8)} and set(scores[2]) == {(8, 2), (8, 4), (8, 8)}
    assert scores[1][(4, 2)] == pytest.approx(sens.pair(1, 4, 2) + TIE_BREAK * (4 + 6))


def test_scores_use_the_monotone_non_negative_envelope_of_noisy_drops():
    # a narrower width never scores better than a wider one, and no drop counts below 0
    assert monotone_envelope({8: 0.0, 6: -0.01, 4: 0.02, 3: 0.01, 2: 0.3}) == {
        8: 0.0, 6: 0.0, 4: 0.02, 3: 0.02, 2: 0.3}
