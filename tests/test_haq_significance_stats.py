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


def _exact_mcnemar_power(n, discordant, difference, reps=20000, seed=0):
    """Monte Carlo power of the exact two-sided McNemar test (binomial at 1/2 on the
    discordant images) for n images with the given discordant share and difference."""
    from scipy.stats import binom
    rng = np.random.default_rng(seed)
    k = rng.multinomial(n, [(discordant + difference) / 2, (discordant - difference) / 2,
                            1 - discordant], size=reps)
    first, second = k[:, 0], k[:, 1]
    m = first + second
    p = np.minimum(1.0, 2 * np.minimum(binom.cdf(first, m, 0.5), binom.sf(first - 1, m, 0.5)))
    p[m == 0] = 1.0
    return float(np.mean(p < 0.05))


@pytest.mark.parametrize("discordant, difference", [
    (0.2, 0.06), (0.01, 0.004), (0.05, -0.02), (0.02, 0.01)])
def test_images_needed_gives_the_exact_test_about_the_asked_power(tool, discordant, difference):
    n = tool.mcnemar_images_needed(discordant, difference)
    # the normal approximation is a little optimistic for the (conservative) exact test
    assert 0.72 <= _exact_mcnemar_power(round(n), discordant, difference) <= 0.85
    assert _exact_mcnemar_power(round(n / 2), discordant, difference) < 0.5


def test_images_needed_worked_by_hand(tool):
    # psi 0.2, delta 0.06: (1.95996 * 0.44721 + 0.84162 * sqrt(0.1964))^2 / 0.0036 = 433.68
    assert tool.mcnemar_images_needed(0.2, 0.06) == pytest.approx(433.68, abs=0.01)
    assert tool.mcnemar_images_needed(0.2, -0.06) == tool.mcnemar_images_needed(0.2, 0.06)
    assert tool.mcnemar_images_needed(0.2, 0.0) == math.inf
    # a stricter test or more power needs more images
    assert tool.mcnemar_images_needed(0.2, 0.06, alpha=0.01) > 433.7
    assert tool.mcnemar_images_needed(0.2, 0.06, power=0.9) > 433.7


def test_detectable_difference_inverts_images_needed(tool):
    d = tool.mcnemar_detectable_difference(0.05, 839)
    assert tool.mcnemar_images_needed(0.05, d) == pytest.approx(839)
    assert tool.mcnemar_detectable_difference(0.05, 4 * 839) < d
    # 6 discordant images of 839: even 6:0 needs (1.96 + 0.8416 sqrt(1 - psi))^2 / psi ~ 1095
    # images, so no difference is found 80% of the time on 839
    assert tool.mcnemar_detectable_difference(6 / 839, 839) is None
    assert tool.mcnemar_detectable_difference(6 / 839, 1100) == pytest.approx(6 / 839, rel=0.01)
    assert tool.mcnemar_detectable_difference(0.0, 839) is None


@pytest.mark.parametrize("args, match", [
    ((1.2, 0.1), r"discordant share 1.2 must lie in \[0, 1\]"),
    ((0.1, 0.2), "difference 0.2 cannot exceed the discordant share 0.1"),
])
def test_images_needed_refuses_impossible_shares(tool, args, match):
    with pytest.raises(ValueError, match=match):
        tool.mcnemar_images_needed(*args)
    with pytest.raises(ValueError, match=r"alpha 1.5 and power 0.8 must lie in \(0, 1\)"):
        tool.mcnemar_images_needed(0.1, 0.05, alpha=1.5)
    with pytest.raises(ValueError, match="n_images 0 must be at least 1"):
        tool.mcnemar_detectable_difference(0.1, 0)
