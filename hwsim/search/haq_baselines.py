"""Baselines for the HAQ search, in the same harness (cost table, first/last rule, budget).

Every baseline works on the same problem as ``haq_env.HaqEnv``: per quantizable layer a pair
(weight bits, input-activation bits) from the candidate widths ``bits``, components fixed by
``fixed`` (HAQ's first/last rule, ``haq_env.fixed_pairs``) left alone, total cost
(``CostTable.total``, in ``costs.unit``) at most an absolute ``budget``.

- ``uniform_policies``: every layer at b bits (weights and activations) for each candidate
  width b, fixed components kept; reported with its cost and whether it fits the budget (the
  ones that do not are reference points, never returned as a method's answer).
- ``greedy_policy``: a sensitivity/cost knapsack. Start from the all-max-bits policy; while over
  budget, apply the lowering (one layer's weight or activation bits to any lower width) with the
  smallest increase of the summed sensitivity per unit of cost saved; then spend what is left
  of the budget on the raise with the largest sensitivity decrease per unit of cost that
  still fits (a lowering may overshoot the budget).
- ``ilp_policy``: HAWQ-V3's integer linear program (Yao et al., ICML 2021) solved exactly with
  ``scipy.optimize.milp`` (HiGHS branch and bound, relative gap 0, the objective in units of
  ``TIE_BREAK`` so HiGHS's absolute gap of 1e-6 cannot hide a tie-break): a binary per (layer,
  pair), one pair per layer, one budget constraint, minimise the summed per-layer sensitivity.
  HAWQ-V3's objective is a Hessian-trace-weighted quantization perturbation over weight widths
  {4, 8}; here it is the **measured** accuracy drop under the device's numerics (below), over
  every candidate pair, because the evaluator measures it where HAWQ-V3 needed a second-order
  proxy.

Sensitivity (``measure_sensitivity``): the validation accuracy drop (fraction) when only one
component of one layer is lowered, every other component at the maximum width: ``weight[i][b]``
(layer i's weights at b bits) and ``activation[i][b]`` (its input activation at b bits). A
pair's sensitivity is their sum, ``weight[i][w] + activation[i][a]``: the accuracy drop is
assumed additive over components, as HAWQ-V3 assumes over layers. This needs
``2 * (len(bits) - 1)`` evaluations per free layer instead of ``len(bits)**2``.

Scores (``pair_scores``, what greedy and ILP minimise): measured drops are noisy (one
validation image is 1/len(val), and quantization noise can even help), and a negative or
non-monotone drop would make the optimisers lower bits they have budget for. Each component's
drops are replaced by their monotone envelope ``envelope[b] = max(0, max over b' >= b of
drop[b'])``: a narrower width never scores better than a wider one (a deliberate correction of
the raw measurement, which ``Sensitivity`` keeps). Both add ``TIE_BREAK`` per bit removed, so
that among equally sensitive choices the one with more bits wins; it is far below one
validation image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from hwsim.errors import SearchError
from hwsim.search.haq_cost import CostTable
from hwsim.search.haq_env import FixedPairs, Policy, apply_fixed, check_bits, minimum_cost

TIE_BREAK = 1e-7  # score per bit removed (accuracies are fractions; 1 image of 1000 is 1e-3)
_ILP_RETRIES = 3  # re-solves with a tightened budget row when HiGHS's feasibility tolerance
#                   lets a solution exceed the budget by a rounding error


class AccuracyFunction(Protocol):
    """Anything that measures a policy's top-1 accuracy (fraction) on a split."""

    def accuracy(self, policy: Sequence[tuple[int, int]], split: str = "val") -> float: ...


@dataclass(frozen=True)
class UniformPolicy:
    """Every free component at ``bits``; ``cost`` in the cost table's unit."""

    bits: int
    policy: Policy
    cost: float
    fits_budget: bool


@dataclass(frozen=True)
class Sensitivity:
    """Validation accuracy drops (fractions) of single-component lowerings, per layer index:
    ``weight[i][b]`` / ``activation[i][b]`` for each candidate width b (0 at the maximum width
    and for fixed components, which are never lowered). ``reference_accuracy``: accuracy of the
    all-max-bits policy the drops are measured from."""

    weight: tuple[Mapping[int, float], ...]
    activation: tuple[Mapping[int, float], ...]
    reference_accuracy: float
    evaluations: int

    def pair(self, layer: int, w: int, a: int) -> float:
        """Sensitivity of layer ``layer`` at (w, a): weight drop + activation drop."""
        try:
            return self.weight[layer][w] + self.activation[layer][a]
        except (IndexError, KeyError):
            raise SearchError(f"no sensitivity for layer {layer} at w{w}a{a}") from None


def check_budget(name: str, policy: Policy, costs: CostTable, budget: float) -> float:
    """The cost of ``policy``; SearchError naming ``name`` when it exceeds ``budget``."""
    cost = costs.total(policy)
    if not cost <= budget:
        raise SearchError(f"{name} policy costs {cost:.6g} {costs.unit}, over the {costs.metric} "
                          f"budget {budget:.6g} {costs.unit}: {policy}")
    return cost


def _check_feasible(costs: CostTable, budget: float, fixed: FixedPairs, cand: list[int]) -> None:
    if not math.isfinite(budget):
        raise SearchError(f"budget must be a finite number of {costs.unit}, got {budget}")
    floor = minimum_cost(costs, fixed, cand)
    if budget < floor:
        raise SearchError(f"{costs.metric} budget {budget:.6g} {costs.unit} is below the minimum "
                          f"achievable cost {floor:.6g} {costs.unit} (every free component at "
                          f"{cand[0]} bits, first/last rule kept)")


def uniform_policies(costs: CostTable, budget: float, fixed: FixedPairs,
                     bits: Sequence[int]) -> list[UniformPolicy]:
    """One uniform policy per candidate width, widest first, with cost and budget fit."""
    cand = check_bits(bits, costs)
    n = len(costs.layer_names)
    out = []
    for b in reversed(cand):
        policy = apply_fixed([(b, b)] * n, fixed)
        cost = costs.total(policy)
        out.append(UniformPolicy(b, policy, cost, cost <= budget))
    return out


def _free_components(n: int, fixed: FixedPairs) -> list[tuple[int, int]]:
    """(layer, role) of every free component; role 0 weight, 1 activation."""
    out = []
    for i in range(n):
        pair = fixed.get(i, (None, None))
        for role in (0, 1):
            if pair[role] is None:
                out.append((i, role))
    return out


def measure_sensitivity(evaluator: AccuracyFunction, costs: CostTable, fixed: FixedPairs,
                        bits: Sequence[int], split: str = "val") -> Sensitivity:
    """Accuracy drops of single-component lowerings measured with ``evaluator`` on ``split``
    (module docstring). Evaluations: 1 + (len(bits) - 1) per free component."""
    cand = check_bits(bits, costs)
    n = len(costs.layer_names)
    top = cand[-1]
    reference = apply_fixed([(top, top)] * n, fixed)
    ref_acc = float(evaluator.accuracy(reference, split))
    weight: list[dict[int, float]] = [{b: 0.0 for b in cand} for _ in range(n)]
    activation: list[dict[int, float]] = [{b: 0.0 for b in cand} for _ in range(n)]
    count = 1
    for i, role in _free_components(n, fixed):
        table = weight if role == 0 else activation
        for b in cand[:-1]:
            policy = list(reference)
            pair = list(policy[i])
            pair[role] = b
            policy[i] = (pair[0], pair[1])
            table[i][b] = ref_acc - float(evaluator.accuracy(policy, split))
            count += 1
    # fixed components keep their one width: give it sensitivity 0 too
    for i, (fw, fa) in fixed.items():
        if fw is not None:
            weight[i].setdefault(fw, 0.0)
        if fa is not None:
            activation[i].setdefault(fa, 0.0)
    return Sensitivity(tuple(weight), tuple(activation), ref_acc, count)


def _allowed(i: int, role: int, fixed: FixedPairs, cand: list[int]) -> list[int]:
    f = fixed.get(i, (None, None))[role]
    return [f] if f is not None else list(cand)


def monotone_envelope(drops: Mapping[int, float]) -> dict[int, float]:
    """``envelope[b] = max(0, max over b' >= b of drops[b'])`` (module docstring)."""
    out: dict[int, float] = {}
    running = 0.0
    for b in sorted(drops, reverse=True):
        running = max(running, drops[b])
        out[b] = running
    return out


def pair_scores(sens: Sensitivity, fixed: FixedPairs, bits: Sequence[int]
                ) -> list[dict[tuple[int, int], float]]:
    """Per layer, the score of every allowed pair: the monotone envelopes of the weight and
    activation drops, summed, + ``TIE_BREAK`` per bit removed from the maximum width (what
    greedy and ILP minimise)."""
    cand = sorted(set(int(b) for b in bits))
    top = cand[-1]
    out = []
    for i in range(len(sens.weight)):
        env_w = monotone_envelope(sens.weight[i])
        env_a = monotone_envelope(sens.activation[i])
        scores = {}
        for w in _allowed(i, 0, fixed, cand):
            for a in _allowed(i, 1, fixed, cand):
                scores[(w, a)] = env_w[w] + env_a[a] + TIE_BREAK * ((top - w) + (top - a))
        out.append(scores)
    return out


def greedy_policy(scores: Sequence[Mapping[tuple[int, int], float]], costs: CostTable,
                  budget: float, fixed: FixedPairs, bits: Sequence[int]) -> Policy:
    """Greedy knapsack over ``scores`` (per layer, pair -> score to minimise) under ``budget``
    (module docstring). SearchError if the budget is below the minimum achievable cost."""
    cand = check_bits(bits, costs)
    n = len(costs.layer_names)
    if len(scores) != n:
        raise SearchError(f"scores cover {len(scores)} layers, the cost table {n}")
    _check_feasible(costs, budget, fixed, cand)
    top = cand[-1]
    policy = apply_fixed([(top, top)] * n, fixed)
    free = _free_components(n, fixed)
    cost = costs.total(policy)

    def moved(i: int, role: int, b: int) -> tuple[int, int]:
        w, a = policy[i]
        return (b, a) if role == 0 else (w, b)

    while cost > budget:
        best: tuple[float, int, int, int, int] | None = None  # ratio, bits down, i, role, b
        for i, role in free:
            cur = policy[i]
            c_cur = costs.layer_cost(i, *cur)
            for b in cand:
                if b >= cur[role]:
                    break
                new = moved(i, role, b)
                saved = c_cur - costs.layer_cost(i, *new)
                if saved <= 0:
                    continue
                key = ((scores[i][new] - scores[i][cur]) / saved, cur[role] - b, i, role, b)
                if best is None or key < best:
                    best = key
        if best is None:  # cannot happen when the budget is feasible; kept as a hard stop
            raise SearchError(f"greedy: no lowering saves cost but {cost:.6g} {costs.unit} "
                              f"exceeds the budget {budget:.6g}")
        _, _, i, role, b = best
        policy[i] = moved(i, role, b)
        cost = costs.total(policy)
    while True:  # spend the slack: best score decrease per unit of extra cost that still fits
        best_up: tuple[float, int, int, int] | None = None
        for i, role in free:
            cur = policy[i]
            c_cur = costs.layer_cost(i, *cur)
            for b in cand:
                if b <= cur[role]:
                    continue
                new = moved(i, role, b)
                gain = scores[i][cur] - scores[i][new]
                extra = costs.layer_cost(i, *new) - c_cur
                if gain <= 0 or cost + extra > budget:
                    continue
                key = (-gain / extra if extra > 0 else -math.inf, i, role, b)
                if best_up is None or key < best_up:
                    best_up = key
        if best_up is None:
            break
        _, i, role, b = best_up
        policy[i] = moved(i, role, b)
        cost = costs.total(policy)
    check_budget("greedy", policy, costs, budget)
    return policy


def ilp_policy(scores: Sequence[Mapping[tuple[int, int], float]], costs: CostTable,
               budget: float, fixed: FixedPairs, bits: Sequence[int],
               time_limit_s: float = 60.0) -> Policy:
    """The policy minimising the summed ``scores`` under ``budget``, by ``scipy.optimize.milp``
    (module docstring). SearchError if the budget is infeasible or the solver does not prove
    an optimum within ``time_limit_s``."""
    cand = check_bits(bits, costs)
    n = len(costs.layer_names)
    if len(scores) != n:
        raise SearchError(f"scores cover {len(scores)} layers, the cost table {n}")
    _check_feasible(costs, budget, fixed, cand)
    index: list[tuple[int, tuple[int, int]]] = []
    for i in range(n):
        for w in _allowed(i, 0, fixed, cand):
            for a in _allowed(i, 1, fixed, cand):
                if (w, a) not in scores[i]:
                    raise SearchError(f"ilp: no score for layer {i} at w{w}a{a}")
                index.append((i, (w, a)))
    nv = len(index)
    # HiGHS stops within an absolute objective gap of 1e-6 (scipy's milp cannot change it),
    # which would swallow TIE_BREAK steps; in units of TIE_BREAK the gap is far below one step.
    c = np.array([scores[i][p] for i, p in index], dtype=np.float64) / TIE_BREAK
    onehot = np.zeros((n, nv))
    for k, (i, _) in enumerate(index):
        onehot[i, k] = 1.0
    # budget row normalised by the budget so the solver's absolute tolerance is relative
    scale = budget if budget > 0 else 1.0
    row = np.array([costs.layer_cost(i, *p) / scale for i, p in index])
    onehot_rows = LinearConstraint(onehot, 1.0, 1.0)
    ub = budget / scale
    for _ in range(_ILP_RETRIES):
        res = milp(c, constraints=[onehot_rows, LinearConstraint(row[None, :], -np.inf, ub)],
                   integrality=np.ones(nv), bounds=Bounds(0.0, 1.0),
                   options={"time_limit": time_limit_s, "mip_rel_gap": 0.0})
        if res.status != 0 or res.x is None:
            raise SearchError(f"ilp: scipy.optimize.milp found no optimal policy (status "
                              f"{res.status}: {res.message})")
        policy: Policy = [(0, 0)] * n
        for k, (i, p) in enumerate(index):
            if res.x[k] > 0.5:
                policy[i] = p
        cost = costs.total(policy)
        if cost <= budget:
            return policy
        ub -= (cost - budget) / scale + 1e-12
    raise SearchError(f"ilp: after {_ILP_RETRIES} solves the policy still costs {cost:.9g} "
                      f"{costs.unit}, over the budget {budget:.9g} (solver tolerance)")


def score_total(scores: Sequence[Mapping[tuple[int, int], float]], policy: Policy) -> float:
    """Summed score of ``policy`` (the ILP's objective)."""
    return math.fsum(scores[i][p] for i, p in enumerate(policy))
