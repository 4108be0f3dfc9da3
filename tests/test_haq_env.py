"""HAQ environment: action -> bits, first/last rule, budget walk, minimum budget, state."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwsim.errors import SearchError
from hwsim.search.haq_cost import CostTable, QuantLayer
from hwsim.search.haq_env import (
    STATE_FEATURES,
    HaqEnv,
    action_to_bits,
    enforce_budget,
    fixed_pairs,
    minimum_cost,
)

BITS = (2, 3, 4, 5, 6, 7, 8)


def _table(weights: list[float], bits: tuple[int, ...] = BITS) -> CostTable:
    """Layer i costs weights[i] * w * a (a bit-serial-like model)."""
    vals = np.array([[[k * w * a for a in bits] for w in bits] for k in weights], float)
    return CostTable("latency", "ms", bits, tuple(f"l{i}" for i in range(len(weights))), vals,
                     "test: k * w * a")


def _haq_round_formula(a: float, b_min: int, b_max: int) -> int:
    # HAQ _action_wall: lbound, rbound = min - 0.5, max + 0.5; round((r - l) * a + l)
    return int(np.round((b_max + 0.5 - (b_min - 0.5)) * a + b_min - 0.5))


def test_action_to_bits_at_the_edges():
    assert action_to_bits(0.0, BITS) == 2
    assert action_to_bits(1.0, BITS) == 8  # HAQ's formula would give 8.5 -> 8 (even) here
    assert action_to_bits(1 / 7 - 1e-9, BITS) == 2
    assert action_to_bits(1 / 7 + 1e-9, BITS) == 3
    assert action_to_bits(6 / 7 - 1e-9, BITS) == 7
    assert action_to_bits(6 / 7 + 1e-9, BITS) == 8
    assert action_to_bits(0.5, BITS) == 5
    assert action_to_bits(0.49, (4, 8)) == 4 and action_to_bits(0.51, (4, 8)) == 8
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(SearchError, match=r"\[0, 1\]"):
            action_to_bits(bad, BITS)


def test_action_to_bits_equals_haq_formula_away_from_ties():
    for a in np.linspace(0.0, 0.999, 997):
        if abs(a * 7 - round(a * 7)) < 1e-6:
            continue  # a tie of HAQ's rounding
        assert action_to_bits(float(a), BITS) == _haq_round_formula(float(a), 2, 8)


def test_fixed_pairs_first_and_last_layer():
    assert fixed_pairs(5) == {0: (8, 8), 4: (8, 8)}
    assert fixed_pairs(3, base_bits=6) == {0: (8, 6), 2: (8, 8)}
    assert fixed_pairs(1, base_bits=6) == {0: (8, 6)}
    with pytest.raises(SearchError):
        fixed_pairs(0)


def test_budget_walk_lowers_activation_then_weight_from_the_last_free_layer():
    # Four layers of cost w * a; first and last fixed at W8A8 (64 each), free layers at W8A8.
    # Walk (cost after each decrement): l2 a7 248, l2 w7 241, l1 a7 234, l1 w7 226,
    # l2 a6 219, l2 w6 213, l1 a6 206 (fits 207), l1 w6 200 (fits 200).
    costs = _table([1, 1, 1, 1])
    fixed = fixed_pairs(4)
    start = [(8, 8)] * 4
    assert enforce_budget(start, costs, 207.0, fixed, BITS) == [(8, 8), (7, 6), (6, 6), (8, 8)]
    assert enforce_budget(start, costs, 200.0, fixed, BITS) == [(8, 8), (6, 6), (6, 6), (8, 8)]
    assert enforce_budget(start, costs, 241.0, fixed, BITS) == [(8, 8), (8, 8), (7, 7), (8, 8)]
    # a policy within budget only gets the first/last rule
    assert enforce_budget([(2, 2), (3, 4), (5, 6), (2, 2)], costs, 1e9, fixed, BITS) == \
        [(8, 8), (3, 4), (5, 6), (8, 8)]


def test_budget_walk_skips_widths_the_device_lacks():
    bits = (2, 4, 8)
    costs = _table([1, 1, 1], bits)
    # l1 (8,8): a -> 4 gives 64 + 32 + 64 = 160 <= 170
    assert enforce_budget([(8, 8)] * 3, costs, 170.0, fixed_pairs(3), bits) == \
        [(8, 8), (8, 4), (8, 8)]
    with pytest.raises(SearchError, match="candidate widths"):
        enforce_budget([(8, 8), (6, 8), (8, 8)], costs, 170.0, fixed_pairs(3), bits)


def test_budget_walk_always_fits_and_only_lowers_bits():
    rng = np.random.default_rng(0)
    costs = _table([3.0, 1.0, 2.0, 0.5, 1.5])
    fixed = fixed_pairs(5)
    floor = minimum_cost(costs, fixed, BITS)
    assert floor == pytest.approx(3 * 64 + 4 * (1 + 2 + 0.5) + 1.5 * 64)
    for _ in range(200):
        policy = [(int(rng.choice(BITS)), int(rng.choice(BITS))) for _ in range(5)]
        budget = float(rng.uniform(floor, costs.uniform(8)))
        out = enforce_budget(policy, costs, budget, fixed, BITS)
        assert costs.total(out) <= budget
        assert out[0] == (8, 8) and out[-1] == (8, 8)
        for (w0, a0), (w1, a1) in zip(policy[1:-1], out[1:-1], strict=True):
            assert w1 <= w0 and a1 <= a0


def test_walk_result_is_what_exhaustive_replay_of_haqs_loop_gives():
    # An independent, literal re-statement of HAQ's _final_action_wall on integer bit lists
    # (min bit 2, contiguous widths), compared on every budget of a small grid.
    costs = _table([2.0, 1.0, 3.0, 1.0])

    def haq_wall(policy, target):
        s = [list(p) for p in policy]
        s[0], s[-1] = [8, 8], [8, 8]

        def cur():
            return sum(costs.layer_cost(i, w, a) for i, (w, a) in enumerate(s))
        while target < cur():
            for i in range(len(s) - 1, -1, -1):
                if i not in (0, len(s) - 1) and s[i][1] > 2:
                    s[i][1] -= 1
                if target >= cur():
                    break
                if i not in (0, len(s) - 1) and s[i][0] > 2:
                    s[i][0] -= 1
                if target >= cur():
                    break
        return [tuple(p) for p in s]

    floor = minimum_cost(costs, fixed_pairs(4), BITS)
    for start in itertools.product([(8, 8), (5, 7), (3, 2)], repeat=2):
        policy = [(8, 8), *start, (8, 8)]
        for budget in np.linspace(floor, costs.total(policy), 23):
            assert enforce_budget(policy, costs, float(budget), fixed_pairs(4), BITS) == \
                haq_wall(policy, float(budget))


def test_budget_below_minimum_names_the_minimum_cost():
    costs = _table([1, 1, 1, 1])
    # first and last W8A8 = 64 each, free layers W2A2 = 4 each
    assert minimum_cost(costs, fixed_pairs(4), BITS) == 136.0
    with pytest.raises(SearchError, match=r"minimum achievable cost 136 ms") as err:
        enforce_budget([(8, 8)] * 4, costs, 135.9, fixed_pairs(4), BITS)
    assert "135.9 ms" in str(err.value)
    assert enforce_budget([(8, 8)] * 4, costs, 136.0, fixed_pairs(4), BITS) == \
        [(8, 8), (2, 2), (2, 2), (8, 8)]


def _layer(i, cin, cout, k, stride, hw, groups=1, op="conv2d"):
    return QuantLayer(name=f"l{i}", op=op, input_tensor=f"t{i}", in_channels=cin,
                      out_channels=cout, kernel=k, kernel_w=k, stride=stride, groups=groups,
                      in_hw=(hw, hw), out_hw=(hw // max(stride, 1), hw // max(stride, 1)),
                      macs=cin // groups * cout * k * k * hw * hw,
                      params=cin // groups * cout * k * k, in_elems=cin * hw * hw)


class _Evaluator:
    base_bits = 8

    def __init__(self):
        self.layers = [_layer(0, 1, 16, 3, 1, 16), _layer(1, 16, 16, 3, 2, 16, groups=16),
                       _layer(2, 16, 32, 1, 1, 8), _layer(3, 32, 10, 1, 0, 1, op="linear")]
        self.calls = 0

    def fp_accuracy(self, split="val"):
        return 0.9

    def accuracy(self, policy, split="val"):
        self.calls += 1
        return 0.9 - 0.01 * sum(16 - w - a for w, a in policy)


def test_env_states_are_normalised_and_alternate_weight_activation():
    ev = _Evaluator()
    costs = _table([1.0, 2.0, 1.0, 0.5])
    env = HaqEnv(ev, costs, 0.5 * costs.uniform(8))
    assert env.state_dim == len(STATE_FEATURES) == 10 and env.n_steps == 8
    static = env.embedding
    assert np.all(static.min(axis=0) == 0.0) and np.all(static.max(axis=0) == 1.0)
    assert list(static[:, STATE_FEATURES.index("is_depthwise")]) == [0, 1, 0, 0]
    assert list(static[:, STATE_FEATURES.index("layer_index")]) == [0, 1 / 3, 2 / 3, 1]
    rng = np.random.default_rng(1)
    s = env.reset()
    states, done, info = [s], False, {}
    while not done:
        s, reward, done, info = env.step(float(rng.uniform()))
        states.append(s)
    arr = np.array(states[:-1])
    assert arr.shape == (8, 10)
    assert np.all((arr >= 0.0) & (arr <= 1.0))
    assert list(arr[:, 8]) == [1, 0] * 4  # is_weight
    assert arr[0, 9] == 1.0  # HAQ's initial previous action
    chosen = [b for pair in info["raw_policy"] for b in pair]
    assert list(arr[1:, 9]) == [b / 8 for b in chosen[:-1]]
    assert info["cost"] <= 0.5 * costs.uniform(8)
    assert info["policy"][0] == (8, 8) and info["policy"][-1] == (8, 8)
    assert reward == pytest.approx(0.1 * (100 * info["accuracy"] - 90.0))


def test_env_caches_accuracy_per_policy():
    ev = _Evaluator()
    costs = _table([1.0, 2.0, 1.0, 0.5])
    env = HaqEnv(ev, costs, costs.uniform(8))
    for _ in range(3):
        env.reset()
        done = False
        while not done:
            _, _, done, info = env.step(1.0)
    assert info["policy"] == [(8, 8)] * 4
    assert ev.calls == 1


def test_env_rejects_an_unreachable_budget_and_mismatched_layers():
    ev = _Evaluator()
    costs = _table([1.0, 2.0, 1.0, 0.5])
    with pytest.raises(SearchError, match="minimum achievable cost"):
        HaqEnv(ev, costs, 10.0)
    with pytest.raises(SearchError, match="differ"):
        HaqEnv(ev, _table([1.0, 2.0, 1.0]), 1e9)
