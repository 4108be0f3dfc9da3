"""HAQ's mixed-precision environment: state embedding, action -> bits, budget walk, reward.

Follows HAQ (Wang et al., CVPR 2019; mit-han-lab/haq ``lib/env/linear_quantize_env.py``) with the
facts of DESIGN.md B9. An episode has two steps per quantizable layer (graph order): first the
layer's weight bits, then the bits of its **input** activation. After the last step the first /
last layer rule (``fixed_pairs``) is applied, the policy is walked down to the budget
(``enforce_budget``) and its accuracy under the device's numerics gives the reward.

Deliberate deviations from HAQ's code (each noted where it happens):

- HAQ applies the first/last rule only inside its budget loop, so a policy that already fits
  keeps whatever the agent chose for those layers; here the rule always holds.
- HAQ's is-weight flag in the state is set after the flip of its "radio button", which makes
  it 1 on the first weight step and on every activation step; here it is 1 on weight steps and
  0 on activation steps, as the paper describes.
- Bits are chosen from the candidate widths ``bits`` (sorted, possibly not contiguous): the
  action picks index ``floor(a * n)`` (clipped to n - 1) of the n widths. For contiguous widths
  this is HAQ's ``round(b_min - 0.5 + a * (b_max - b_min + 1))`` with ties rounded up instead of
  numpy's half to even, and a = 1 mapped to b_max (HAQ's formula gives b_max + 1 there).
- The budget walk decrements to the next lower candidate width, never below ``min(bits)``,
  and never touches a component fixed by the first/last rule.
- Both accuracies come from the validation split: acc_q after the fine-tune, run through the
  emulator of the device's numerics (``PolicyEvaluator.accuracy``), acc_fp of the float model.
  HAQ's released code rewards the running top-1 of its fine-tune epoch on the training split
  (``_finetune`` returns it) against the float model's top-1 on that training split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from hwsim.errors import SearchError
from hwsim.search.haq_cost import CostTable, QuantLayer

Policy = list[tuple[int, int]]
FixedPairs = Mapping[int, tuple[int | None, int | None]]

HAQ_MIN_BITS = 2  # HAQ searches 2..8 bits (DESIGN.md B9)
HAQ_MAX_BITS = 8
FIRST_LAST_WEIGHT_BITS = 8  # HAQ ``_keep_first_last_layer``: first and last layer weights 8 bit
LAST_ACTIVATION_BITS = 8
REWARD_SCALE = 0.1  # HAQ ``reward``: 0.1 * (acc - org_acc), accuracies in percent

# Column names of the state embedding (one row per step).
STATE_FEATURES: tuple[str, ...] = (
    "layer_index", "in_channels", "out_channels", "kernel", "stride", "feature_size",
    "params", "is_depthwise", "is_weight", "previous_action")


def fixed_pairs(n_layers: int, base_bits: int = 8) -> dict[int, tuple[int | None, int | None]]:
    """HAQ's first/last layer rule as fixed (weight bits, activation bits) per layer index.

    The first layer gets 8-bit weights and reads the graph input, which the device quantizes
    at ``base_bits``; the last layer is W8A8. None marks a free component. With one layer the
    first-layer rule wins (its input is a graph input).
    """
    if n_layers < 1:
        raise SearchError(f"fixed_pairs needs at least one layer, got n_layers={n_layers}")
    out: dict[int, tuple[int | None, int | None]] = {
        n_layers - 1: (FIRST_LAST_WEIGHT_BITS, LAST_ACTIVATION_BITS)}
    out[0] = (FIRST_LAST_WEIGHT_BITS, base_bits)
    return out


def check_bits(bits: Sequence[int], costs: CostTable) -> list[int]:
    """The candidate widths ``bits``, sorted and deduplicated; each must be in ``costs.bits``."""
    cand = sorted(set(int(b) for b in bits))
    if not cand:
        raise SearchError("no candidate bit-widths given")
    missing = [b for b in cand if b not in costs.bits]
    if missing:
        raise SearchError(f"candidate widths {missing} are not in the cost table's widths "
                          f"{list(costs.bits)}")
    return cand


def _check_fixed(fixed: FixedPairs, n_layers: int, costs: CostTable) -> None:
    for i, pair in fixed.items():
        if not 0 <= i < n_layers:
            raise SearchError(f"fixed pair for layer index {i}: the model has {n_layers} layers")
        for b in pair:
            if b is not None and b not in costs.bits:
                raise SearchError(f"fixed pair {pair} of layer {i} ({costs.layer_names[i]!r}): "
                                  f"{b} bits is not a cost-table width {list(costs.bits)}")


def apply_fixed(policy: Sequence[tuple[int, int]], fixed: FixedPairs) -> Policy:
    """``policy`` with the fixed components of ``fixed`` put in."""
    out = [(int(w), int(a)) for w, a in policy]
    for i, (fw, fa) in fixed.items():
        w, a = out[i]
        out[i] = (w if fw is None else fw, a if fa is None else fa)
    return out


def minimum_cost(costs: CostTable, fixed: FixedPairs, bits: Sequence[int]) -> float:
    """Cost (in ``costs.unit``) of the policy the budget walk ends at: every free component at
    ``min(bits)``, fixed components as given. The lowest budget ``enforce_budget`` can meet."""
    n = len(costs.layer_names)
    cand = check_bits(bits, costs)
    _check_fixed(fixed, n, costs)
    return costs.total(apply_fixed([(cand[0], cand[0])] * n, fixed))


def enforce_budget(policy: Policy, costs: CostTable, budget: float, fixed: FixedPairs,
                   bits: Sequence[int]) -> Policy:
    """HAQ's budget walk: the first/last rule applied, then, while the cost exceeds ``budget``
    (absolute, in ``costs.unit``), passes from the last layer to the first lower each layer's
    activation bits, then its weight bits, by one candidate width (fixed components and
    components at ``min(bits)`` stay), stopping as soon as the cost fits.

    SearchError when ``budget`` is below ``minimum_cost`` (the message names it) or when the
    policy uses a width outside ``bits``.
    """
    n = len(costs.layer_names)
    if len(policy) != n:
        raise SearchError(f"policy has {len(policy)} layers, the cost table {n}")
    cand = check_bits(bits, costs)
    _check_fixed(fixed, n, costs)
    if not math.isfinite(budget):
        raise SearchError(f"budget must be a finite number of {costs.unit}, got {budget}")
    out = apply_fixed(policy, fixed)
    for i, (w, a) in enumerate(out):
        fw, fa = fixed.get(i, (None, None))
        for role, b, f in (("weight", w, fw), ("activation", a, fa)):
            if f is None and b not in cand:
                raise SearchError(f"layer {i} ({costs.layer_names[i]!r}): {role} bits {b} not "
                                  f"in the candidate widths {cand}")
    floor = minimum_cost(costs, fixed, cand)
    if budget < floor:
        raise SearchError(
            f"{costs.metric} budget {budget:.6g} {costs.unit} is below the minimum achievable "
            f"cost {floor:.6g} {costs.unit} (every free layer at {cand[0]} bits, first layer "
            f"W{FIRST_LAST_WEIGHT_BITS} and last layer W{FIRST_LAST_WEIGHT_BITS}A"
            f"{LAST_ACTIVATION_BITS} kept); raise the budget to at least {floor:.6g} "
            f"{costs.unit} ({floor / costs.uniform(max(costs.bits)):.4f} of the "
            f"{max(costs.bits)}-bit cost)")
    lower = {b: cand[k - 1] for k, b in enumerate(cand) if k > 0}
    cost = costs.total(out)
    while cost > budget:
        for i in range(n - 1, -1, -1):
            fw, fa = fixed.get(i, (None, None))
            for role in (1, 0):  # HAQ lowers the activation first, then the weight
                if (fa if role == 1 else fw) is not None:
                    continue
                pair = list(out[i])
                if pair[role] not in lower:
                    continue
                pair[role] = lower[pair[role]]
                out[i] = (pair[0], pair[1])
                cost = costs.total(out)
                if cost <= budget:
                    return out
    return out


class AccuracySource(Protocol):
    """What the environment needs from an evaluator (``haq_accuracy.PolicyEvaluator`` or a
    stand-in): the layers, the base bits of graph inputs and accuracies as fractions."""

    layers: list[QuantLayer]
    base_bits: int

    def accuracy(self, policy: Sequence[tuple[int, int]], split: str = "val") -> float: ...

    def fp_accuracy(self, split: str = "val") -> float: ...


def candidate_bits(costs: CostTable) -> list[int]:
    """The cost table's widths within HAQ's 2..8 (SearchError if none)."""
    out = [b for b in costs.bits if HAQ_MIN_BITS <= b <= HAQ_MAX_BITS]
    if not out:
        raise SearchError(f"cost table widths {list(costs.bits)} hold none of HAQ's "
                          f"{HAQ_MIN_BITS}..{HAQ_MAX_BITS} bits")
    return out


def action_to_bits(action: float, bits: Sequence[int]) -> int:
    """Bits for an action in [0, 1]: ``bits[min(floor(action * n), n - 1)]`` for the n sorted
    candidate widths (HAQ's ``round(b_min - 0.5 + a (b_max - b_min + 1))`` for contiguous
    widths, ties up). SearchError outside [0, 1] or for NaN."""
    a = float(action)
    if not 0.0 <= a <= 1.0:  # also rejects NaN
        raise SearchError(f"action must lie in [0, 1], got {action!r}")
    n = len(bits)
    return int(bits[min(int(math.floor(a * n)), n - 1)])


def static_embedding(layers: Sequence[QuantLayer]) -> np.ndarray:
    """(n_layers, 8) float64: layer index, c_in, c_out, kernel, stride, input feature size
    (h * w), #params, is_depthwise; each column min-max normalised over the layers. A constant
    column (HAQ leaves it unnormalised) is clipped into [0, 1] so every feature stays in range."""
    rows = [[i, lay.in_channels, lay.out_channels, lay.kernel, lay.stride,
             lay.in_hw[0] * lay.in_hw[1], lay.params, float(lay.is_depthwise)]
            for i, lay in enumerate(layers)]
    emb = np.asarray(rows, dtype=np.float64)
    lo, hi = emb.min(axis=0), emb.max(axis=0)
    span = hi - lo
    for j in range(emb.shape[1]):
        if span[j] > 0:
            emb[:, j] = (emb[:, j] - lo[j]) / span[j]
        else:
            emb[:, j] = min(max(emb[0, j], 0.0), 1.0)
    return emb


class HaqEnv:
    """One HAQ episode at a time over ``evaluator.layers`` with ``costs`` and an absolute
    ``budget`` (in ``costs.unit``).

    ``reset()`` gives the first state; ``step(action)`` takes an action in [0, 1] and returns
    ``(next_state, reward, done, info)``. The reward is 0 until the last step, then
    ``0.1 * (acc_q - acc_fp)`` with accuracies in percent (HAQ's scale), acc_q the accuracy of
    the budget-walked policy on the validation split; ``info`` then holds ``policy``, ``cost``,
    ``accuracy`` (fraction) and ``raw_policy`` (the agent's choice before the rules). Accuracies
    are cached per policy.

    State (``STATE_FEATURES``, all in [0, 1]): the static embedding of the step's layer, then
    is_weight (1 on the weight step, 0 on the activation step) and the previous action as bits
    / max bits (1 on the first step, HAQ's initial value).
    """

    def __init__(self, evaluator: AccuracySource, costs: CostTable, budget: float,
                 bits: Sequence[int] | None = None, fixed: FixedPairs | None = None,
                 fp_accuracy: float | None = None) -> None:
        layers = list(evaluator.layers)
        if [lay.name for lay in layers] != list(costs.layer_names):
            raise SearchError(f"the evaluator's layers {[lay.name for lay in layers]} differ "
                              f"from the cost table's {list(costs.layer_names)}")
        self.evaluator = evaluator
        self.costs = costs
        self.budget = float(budget)
        self.bits = check_bits(bits, costs) if bits is not None else candidate_bits(costs)
        self.fixed = dict(fixed) if fixed is not None else fixed_pairs(len(layers),
                                                                        evaluator.base_bits)
        # fails early, with the minimum cost, if the budget cannot be met
        enforce_budget(apply_fixed([(self.bits[-1], self.bits[-1])] * len(layers), self.fixed),
                       costs, self.budget, self.fixed, self.bits)
        self.layers = layers
        self.embedding = static_embedding(layers)
        self.fp_accuracy = (float(evaluator.fp_accuracy("val")) if fp_accuracy is None
                            else float(fp_accuracy))
        self.cache: dict[tuple[tuple[int, int], ...], float] = {}
        self.reset()

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_steps(self) -> int:
        """Steps per episode: weight then activation for every layer."""
        return 2 * len(self.layers)

    @property
    def state_dim(self) -> int:
        return len(STATE_FEATURES)

    def state(self, step: int, previous_bits: int | None) -> np.ndarray:
        """The state at ``step`` (layer ``step // 2``; even steps choose weights) after an action
        of ``previous_bits`` (None on the first step)."""
        if not 0 <= step < self.n_steps:
            raise SearchError(f"step {step} outside 0..{self.n_steps - 1}")
        layer, is_weight = step // 2, step % 2 == 0
        prev = 1.0 if previous_bits is None else previous_bits / self.bits[-1]
        return np.concatenate([self.embedding[layer], [float(is_weight), prev]])

    def reset(self) -> np.ndarray:
        self._step = 0
        self._chosen: list[int] = []
        return self.state(0, None)

    def reward(self, accuracy: float) -> float:
        """HAQ's reward for an accuracy (fraction): 0.1 * (acc - acc_fp) in percent points."""
        return REWARD_SCALE * (100.0 * accuracy - 100.0 * self.fp_accuracy)

    def accuracy(self, policy: Sequence[tuple[int, int]]) -> float:
        """Validation accuracy (fraction) of ``policy``, cached."""
        key = tuple((int(w), int(a)) for w, a in policy)
        if key not in self.cache:
            self.cache[key] = float(self.evaluator.accuracy(list(key), "val"))
        return self.cache[key]

    def finalize(self, raw_policy: Sequence[tuple[int, int]]) -> Policy:
        """The policy the agent's choice becomes: first/last rule, then the budget walk."""
        return enforce_budget(list(raw_policy), self.costs, self.budget, self.fixed, self.bits)

    def step(self, action: float) -> tuple[np.ndarray, float, bool, dict[str, object]]:
        if self._step >= self.n_steps:
            raise SearchError("episode is over; call reset()")
        b = action_to_bits(action, self.bits)
        self._chosen.append(b)
        self._step += 1
        if self._step < self.n_steps:
            return self.state(self._step, b), 0.0, False, {}
        raw = [(self._chosen[2 * i], self._chosen[2 * i + 1]) for i in range(self.n_layers)]
        policy = self.finalize(raw)
        acc = self.accuracy(policy)
        info: dict[str, object] = {"policy": policy, "raw_policy": raw,
                                   "cost": self.costs.total(policy), "accuracy": acc}
        # HAQ returns the last state again as the terminal observation
        return self.state(self.n_steps - 1, b), self.reward(acc), True, info
