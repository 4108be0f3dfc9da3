"""Holm's adjustment and the paired bootstrap of HAQ's margin (tools/haq_significance.py)."""

import math

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tool(import_tool):
    return import_tool("haq_significance")


def test_holm_matches_the_adjustment_worked_by_hand(tool):
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert tool.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert tool.holm([0.5, 0.6]) == [1.0, 1.0]  # 0.5 * 2 capped at 1; 0.6 kept monotone
    assert tool.holm([]) == []


def _paired(n, haq_only, base_only, both=0):
    haq = np.zeros(n, bool)
    base = np.zeros(n, bool)
    haq[:haq_only] = True
    base[haq_only:haq_only + base_only] = True
    haq[-both:] = base[-both:] = both > 0
    return haq, base


def test_bootstrap_interval_of_one_baseline_matches_the_normal_approximation(tool):
    # 2000 paired images, 60 only HAQ right, 30 only the baseline, 1800 both:
    # d = 30/2000; Var(d) = ((b + c)/n - d^2)/n (paired proportions, large n)
    n, b, c = 2000, 60, 30
    haq, base = _paired(n, b, c, both=1800)
    d = (b - c) / n
    se = math.sqrt(((b + c) / n - d * d) / n)
    gap, lo, hi = tool.bootstrap_gap(haq, [base])
    assert gap == pytest.approx(0.015)
    assert lo == pytest.approx(d - 1.959964 * se, abs=1e-3)
    assert hi == pytest.approx(d + 1.959964 * se, abs=1e-3)


def test_bootstrap_best_baseline_is_chosen_in_each_resample(tool):
    n = 400
    haq, base = _paired(n, 12, 10, both=300)
    # a copy of the baseline changes nothing (same patterns, same draws)
    assert tool.bootstrap_gap(haq, [base, base.copy()]) == tool.bootstrap_gap(haq, [base])
    # a second baseline, as accurate as the first on other images: the observed gap is HAQ minus
    # the larger accuracy, and re-choosing the best per resample pulls the interval down
    other = np.roll(base, 50)
    assert other.mean() == base.mean()
    one = tool.bootstrap_gap(haq, [base])
    two = tool.bootstrap_gap(haq, [base, other])
    assert two[0] == pytest.approx(haq.mean() - base.mean())
    assert two[1] < one[1] and two[2] < one[2]
    identical = tool.bootstrap_gap(base, [base])
    assert identical == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(("args", "match"), [
    ((np.ones(3, bool), []), "at least one baseline"),
    ((np.ones(0, bool), [np.ones(0, bool)]), "one image"),
])
def test_bootstrap_refuses_what_it_cannot_measure(tool, args, match):
    with pytest.raises(ValueError, match=match):
        tool.bootstrap_gap(*args)


def test_bootstrap_refuses_a_bad_level(tool):
    with pytest.raises(ValueError, match="level 1.5 must lie in"):
        tool.bootstrap_gap(np.ones(3, bool), [np.ones(3, bool)], level=1.5)


def _swap_enumeration(haq, baselines):
    """Every assignment of the discordant images between HAQ and the best baseline, counted."""
    import itertools
    best_i = max(range(len(baselines)), key=lambda i: (baselines[i].sum(), -i))
    best = baselines[best_i]
    disc = np.flatnonzero(haq != best)
    hits = 0
    for to_haq in itertools.product([False, True], repeat=len(disc)):
        h, b = haq.copy(), best.copy()
        h[disc], b[disc] = to_haq, np.logical_not(to_haq)
        hits += h.sum() >= b.sum()
    return hits / 2 ** len(disc)


@pytest.mark.parametrize("seed", range(6))
def test_match_probability_if_equal_counts_every_swap(tool, seed):
    rng = np.random.default_rng(seed)
    n = 30
    haq = rng.random(n) < 0.85
    baselines = [rng.random(n) < p for p in (0.7, 0.85, 0.9)]
    if np.sum(haq != baselines[int(np.argmax([b.sum() for b in baselines]))]) > 14:
        pytest.skip("too many discordant images to enumerate")
    got = tool.match_probability_if_equal(haq, baselines)
    assert got == pytest.approx(_swap_enumeration(haq, baselines))


def test_match_probability_if_equal_limits(tool):
    same = np.array([1, 1, 0, 1], bool)
    assert tool.match_probability_if_equal(same, [same]) == 1.0
    # one discordant image: HAQ keeps or loses it with probability 1/2
    assert tool.match_probability_if_equal(np.array([1, 0], bool), [np.array([0, 0], bool)]) \
        == 0.5
    # 4 discordant images: HAQ needs 2 of them to tie the best (3 right): (6 + 4 + 1)/16;
    # a less accurate baseline changes nothing, and an equal one later in the list is not "best"
    haq, best = np.array([1, 0, 0, 0, 0], bool), np.array([0, 1, 1, 1, 0], bool)
    assert tool.match_probability_if_equal(haq, [best]) == pytest.approx(11 / 16)
    worse = np.array([0, 0, 0, 0, 1], bool)
    assert tool.match_probability_if_equal(haq, [worse, best]) == pytest.approx(11 / 16)
    tied = np.array([1, 1, 1, 0, 0], bool)  # 3 right, 2 discordant with HAQ: (1 + 2)/4
    assert tool.match_probability_if_equal(haq, [tied, best]) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="at least one baseline"):
        tool.match_probability_if_equal(haq, [])


def test_add_holm_without_splits_groups_by_baseline(tool):
    tests = [{"baseline": b, "p": p} for b, p in [
        ("uniform-4", 0.01), ("ilp", 0.02), ("uniform-6", 0.03), ("ilp", 0.5)]]
    tool.add_holm(tests)
    # uniform {0.01, 0.03} -> {0.02, 0.03}; ilp {0.02, 0.5} -> {0.04, 0.5}
    assert [t["p_holm"] for t in tests] == pytest.approx([0.02, 0.04, 0.03, 0.5])
