"""One HAQ experiment end to end: model, data, cost table, baselines, DDPG search, outputs.

``run_haq_experiment`` builds the graph (a digits demo model by name, or an ``.onnx`` classifier
of 1-channel square digits images), the data (``digits_search_data``), the device's cost table
for the budget's metric, measures the baselines of ``haq_baselines`` and runs ``haq_ddpg.run_haq``
under the same budget and first/last rule, then writes to ``out``:

- ``result.json``: the HAQ policy (per layer name: weight bits, activation bits), its cost,
  test accuracy (``accuracy``) and validation accuracy (``val_accuracy``, what the search saw),
  the budget, the float accuracies, and the same fields for every baseline under ``baselines``.
- ``episodes.csv``: every episode (cost, validation accuracy, reward, policy).
- ``accuracy_vs_cost.png``: validation accuracy vs cost of the episodes, the best HAQ policy,
  the baselines and the budget.
- ``haq_checkpoint.pt`` (``run_haq``'s) and ``accuracy_cache.json`` (``CachedEvaluator``): a rerun
  with the same ``out`` resumes the search and re-uses every accuracy already measured.

Data (``digits_search_data``), ``reward_data``:

- ``"heldout"`` (default): fine-tune on the demo's 1437 training images, calibrate on the first
  ``CALIB_SIZE`` of them; the 360 held-out images are permuted with a fixed seed
  (``SPLIT_SEED``) into ``VAL_SIZE`` validation images (the reward, the baselines'
  sensitivities) and the rest for test (reported). Deviation from HAQ, which computes its
  reward on images of its *training* set: 160 images move top-1 in 0.625 pp steps.
- ``"train"`` (reward images from the training set the model was trained on, as in HAQ's code,
  whose ``get_split_train_dataset`` splits it into ``train_size`` 20000 and ``val_size`` 10000
  images; with its default fine-tune HAQ's code rewards the fine-tune's running top-1 on the
  20000, ``PolicyEvaluator.finetune_running``, and leaves the 10000 unused; here the reward is
  measured after the fine-tune, on separate images in HAQ's 10000 : 20000 ratio):
  the training split permuted with ``SPLIT_SEED``, its first ``TRAIN_REWARD_SIZE`` (a third)
  are the validation images, the fine-tune uses the rest (dataset order)
  and calibrates on their first ``CALIB_SIZE``; test = the same 200 held-out images as above
  (the other 160 are not used). The demo models fit their training images (100 % top-1 at 8
  bits), so on these images top-1 separates few policies: use it with ``reward_metric="nll"``.
  The final fine-tune (below) uses the whole training split, as HAQ's last step does.
- ``"finetune"`` (HAQ's released code exactly, ``LinearQuantizeEnv``: the reward is the
  fine-tune's own running top-1 on the images it trains on, ``PolicyEvaluator.
  finetune_running``, best epoch, against the float model's top-1 on those images; HAQ's
  ``val_size`` images are loaded and unused): the data of ``"train"``; the reward and the
  greedy/ILP sensitivities come from the fine-tune on its 958 images (with
  ``reward_metric="nll"``: its running NLL), the validation accuracy reported is measured
  after the fine-tune on the other 479 as with ``"train"``, and ties at the best top-1 reward
  are broken by the fine-tune's running NLL. Needs ``finetune_epochs`` >= 1.

Options beyond HAQ's search: ``final_finetune_epochs`` (HAQ's last step, a longer fine-tune of
the chosen policy, given alike to every baseline's policy, reported as ``final_finetune``) and
``reward_metric="nll"`` (``NegativeNllView``: the validation NLL instead of top-1 for the reward
and the greedy/ILP sensitivities; top-1 on 160 images moves in 0.625 pp steps).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.emulate.dump import save_png_atomic, write_json_atomic
from hwsim.errors import BudgetError, GraphError, SearchError
from hwsim.graph.digits_demo import N_TRAIN
from hwsim.graph.ir import Graph
from hwsim.latency.table import write_text_atomic
from hwsim.quant.device import Device, load_device
from hwsim.search.context_cache import ContextCache
from hwsim.search.haq_accuracy import (
    FINETUNE_TORCH_THREADS,
    PolicyEvaluator,
    SearchData,
    input_producers,
)
from hwsim.search.haq_baselines import (
    check_budget,
    greedy_policy,
    ilp_policy,
    measure_sensitivity,
    pair_scores,
    uniform_policies,
)
from hwsim.search.haq_cost import (
    METRICS,
    CostTable,
    QuantLayer,
    build_cost_table,
    quantizable_layers,
)
from hwsim.search.haq_env import Policy, candidate_bits, fixed_pairs, minimum_cost

N_CLASSES = 10
VAL_SIZE = 160   # of the 360 held-out digits; the other 200 are the test split
TRAIN_REWARD_SIZE = N_TRAIN // 3  # reward_data="train": a third of the training split
CALIB_SIZE = 128
SPLIT_SEED = 0
REFERENCE_BITS = 8  # budgets are fractions of the cost with every layer at W8A8
CACHE_FORMAT = 1
RUNNING = "running"  # accuracy-cache "split" of the fine-tune's running metrics
REWARD_METRICS = ("top1", "nll")
REWARD_DATA = ("heldout", "train", "finetune")


# ----------------------------------------------------------------------------- budget
def parse_budget(text: str) -> tuple[str, float]:
    """``"latency=0.6"`` -> ("latency", 0.6): metric and fraction in (0, 1] of the 8-bit cost.
    BudgetError for anything else."""
    metric, sep, value = str(text).partition("=")
    metric = metric.strip()
    if not sep:
        raise BudgetError(f"budget {text!r} must be METRIC=FRACTION, e.g. latency=0.6 "
                          f"(metrics: {', '.join(METRICS)})")
    if metric not in METRICS:
        raise BudgetError(f"budget {text!r}: unknown metric {metric!r}; allowed: "
                          f"{', '.join(METRICS)}")
    try:
        fraction = float(value)
    except ValueError:
        raise BudgetError(f"budget {text!r}: {value.strip()!r} is not a number; give a fraction "
                          "of the 8-bit cost, e.g. latency=0.6") from None
    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise BudgetError(f"budget {text!r}: the fraction of the 8-bit cost must lie in (0, 1], "
                          f"got {value.strip()}")
    return metric, fraction


# ----------------------------------------------------------------------------- model and data
def load_search_model(model: str) -> Graph:
    """A digits demo model by name (``digits_cnn``, ``digits_mbv2``) or an ``.onnx`` file
    holding a 10-class classifier of (N, 1, S, S) images; BatchNorm folded."""
    import torch

    from hwsim.graph.digits_demo import DEMO_MODELS, demo_model
    from hwsim.graph.load import load_model

    if model in DEMO_MODELS:
        demo = demo_model(model)
        return load_model(demo.model, torch.from_numpy(demo.calib_x[:1]))
    if not model.lower().endswith(".onnx"):
        raise GraphError(f"model {model!r} is neither a digits demo model "
                         f"({', '.join(DEMO_MODELS)}) nor an .onnx file (torch files are not "
                         "loaded: they need pickle; export the model to ONNX)")
    if not Path(model).is_file():
        raise GraphError(f"model file {model!r} does not exist")
    graph = load_model(model)
    image_size(graph)  # checks the input and output shapes
    return graph


def image_size(graph: Graph) -> int:
    """S of the graph's single (N, 1, S, S) input; GraphError unless the graph is a
    10-class classifier of such images (the digits task)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise GraphError(f"model {graph.name!r}: the digits search needs one input and one "
                         f"output, got inputs {list(graph.inputs)} and outputs "
                         f"{list(graph.outputs)}")
    (shape,) = graph.inputs.values()
    if len(shape) != 4 or shape[1] != 1 or shape[2] != shape[3]:
        raise GraphError(f"model {graph.name!r}: input shape {tuple(shape)} is not (N, 1, S, S) "
                         "(1-channel square digits images)")
    out_shape = graph.shape(graph.outputs[0])
    if int(np.prod(out_shape[1:])) != N_CLASSES:
        raise GraphError(f"model {graph.name!r}: output shape {tuple(out_shape)} is not a "
                         f"{N_CLASSES}-class classifier's (N, {N_CLASSES})")
    return int(shape[2])


def digits_search_data(size: int, val_size: int | None = None, calib_size: int = CALIB_SIZE,
                       split_seed: int = SPLIT_SEED, reward_data: str = "heldout") -> SearchData:
    """The search's splits of scikit-learn digits at ``size`` x ``size`` (module docstring);
    ``val_size`` defaults to ``VAL_SIZE`` ("heldout") or ``TRAIN_REWARD_SIZE`` ("train",
    "finetune": the same split)."""
    from hwsim.graph.digits_demo import digits_data

    _check_reward_data(reward_data)
    train_x, train_y, held_x, held_y = digits_data(size)
    held = _held_out_order(len(held_y), split_seed)
    test = held[VAL_SIZE:]
    if reward_data == "heldout":
        val_size = VAL_SIZE if val_size is None else val_size
        if not 0 < val_size < len(held_y):
            raise SearchError(f"val_size must lie in 1..{len(held_y) - 1}, got {val_size}")
        val, test = held[:val_size], held[val_size:]
        val_x, val_y = held_x[val], held_y[val]
    else:
        val_size = TRAIN_REWARD_SIZE if val_size is None else val_size
        if not 0 < val_size < len(train_y):
            raise SearchError(f"val_size must lie in 1..{len(train_y) - 1} (training images) "
                              f"for reward_data={reward_data!r}, got {val_size}")
        val, tune = _train_reward_split(len(train_y), val_size, split_seed)
        val_x, val_y = train_x[val], train_y[val]
        train_x, train_y = train_x[tune], train_y[tune]
    if not 0 < calib_size <= len(train_y):
        raise SearchError(f"calib_size must lie in 1..{len(train_y)}, got {calib_size}")
    return SearchData(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                      test_x=held_x[test], test_y=held_y[test],
                      calib_x=train_x[:calib_size].copy())


def _check_reward_data(reward_data: str) -> None:
    if reward_data not in REWARD_DATA:
        raise SearchError(f"reward_data {reward_data!r}; allowed: {', '.join(REWARD_DATA)}")


def _held_out_order(n_held: int, split_seed: int) -> np.ndarray:
    return np.random.default_rng(split_seed).permutation(n_held)


def _train_reward_split(n_train: int, val_size: int,
                        split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(reward, fine-tune) indices into the training split, each ascending."""
    order = np.random.default_rng(split_seed).permutation(n_train)
    return np.sort(order[:val_size]), np.sort(order[val_size:])


def search_val_images(val_size: int | None = None, split_seed: int = SPLIT_SEED,
                      reward_data: str = "heldout") -> np.ndarray:
    """Dataset indices (ascending) of the images the reward and the baselines' sensitivities
    were measured on: ``digits_search_data``'s validation images, or for "finetune" its
    fine-tune images (``val_size`` still sizes the validation images)."""
    from hwsim.graph.digits_demo import digits_images

    _check_reward_data(reward_data)
    if reward_data != "heldout":
        val_size = TRAIN_REWARD_SIZE if val_size is None else val_size
        if not 0 < val_size < N_TRAIN:
            raise SearchError(f"val_size must lie in 1..{N_TRAIN - 1} (training images) for "
                              f"reward_data={reward_data!r}, got {val_size}")
        val, tune = _train_reward_split(N_TRAIN, val_size, split_seed)
        return tune if reward_data == "finetune" else val
    val_size = VAL_SIZE if val_size is None else val_size
    n_held = len(digits_images()[1]) - N_TRAIN
    if not 0 < val_size < n_held:
        raise SearchError(f"val_size must lie in 1..{n_held - 1}, got {val_size}")
    return np.sort(N_TRAIN + _held_out_order(n_held, split_seed)[:val_size])


# ----------------------------------------------------------------------------- accuracy cache
def _policy_key(policy: Sequence[tuple[int, int]]) -> str:
    return ",".join(f"{int(w)}.{int(a)}" for w, a in policy)


def evaluator_context(graph: Graph, device: Device, evaluator: PolicyEvaluator) -> str:
    """sha256 of everything an accuracy depends on: the graph's ops and weights, the device's
    numerics (its ``precisions``, not its name), the evaluator's settings and data."""
    h = hashlib.sha256()
    for node in graph.nodes:
        h.update(f"{node.name}|{node.op.value}|{node.inputs}|{node.attrs}".encode())
        for k in sorted(node.weights):
            h.update(k.encode())
            h.update(np.ascontiguousarray(node.weights[k]).tobytes())
    h.update(json.dumps(device.spec.model_dump(mode="json")["precisions"],
                        sort_keys=True).encode())
    h.update(json.dumps([evaluator.base_precision, evaluator.finetune_epochs,
                         evaluator.finetune_lr, evaluator.batch_size, evaluator.seed]).encode())
    if evaluator.finetune_epochs > 1:  # multi-epoch fine-tunes re-calibrate every epoch since
        h.update(b"calibration per epoch")  # cache entries of the older procedure no longer match
    if evaluator.finetune_epochs > 0:  # fine-tunes run on a fixed torch thread count since;
        h.update(f"torch threads {FINETUNE_TORCH_THREADS}".encode())  # older entries may mix 1/2
    d = evaluator.data
    for arr in (d.train_x, d.train_y, d.val_x, d.val_y, d.test_x, d.test_y, d.calib_x):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class CachedEvaluator:
    """A ``PolicyEvaluator`` with its accuracies memoised per (policy, split), kept in the JSON
    file ``path`` (if given) under ``context`` so other runs on the same model, numerics and
    data re-use them. ``evaluations``: accuracies actually measured by this object.

    The file is a ``ContextCache``: several evaluators on one file (the search's and the final
    fine-tune's) keep each other's entries."""

    def __init__(self, evaluator: PolicyEvaluator, context: str, path: Path | None = None
                 ) -> None:
        self.evaluator = evaluator
        self.context = context
        self.path = path
        self.evaluations = 0
        self._cache = ContextCache(path, context, "accuracy cache", CACHE_FORMAT)

    @property
    def layers(self) -> list[QuantLayer]:
        return self.evaluator.layers

    @property
    def base_bits(self) -> int:
        return self.evaluator.base_bits

    def _lookup(self, tag: str, split: str, nll: bool,
                measure: Callable[[], tuple[float, float]]) -> float:
        """The cached top-1 (key ``split|tag``) or NLL (``nll|split|tag``); both are stored
        by one measurement. Caches from before the NLL was kept re-measure for an NLL only."""
        key, nll_key = f"{split}|{tag}", f"nll|{split}|{tag}"
        want = nll_key if nll else key
        entries = self._cache.entries
        if want not in entries:
            top1, loss = measure()
            entries[key], entries[nll_key] = float(top1), float(loss)
            self._cache.save()
        return self._cache.entries[want]

    def _measure(self, policy: Sequence[tuple[int, int]], split: str) -> tuple[float, float]:
        self.evaluations += 1
        return self.evaluator.evaluate(list(policy), split)

    def accuracy(self, policy: Sequence[tuple[int, int]], split: str = "val") -> float:
        """Top-1 accuracy (fraction) of ``policy`` on ``split``, measured once."""
        return self._lookup(_policy_key(policy), split, False,
                            lambda: self._measure(policy, split))

    def nll(self, policy: Sequence[tuple[int, int]], split: str = "val") -> float:
        """Mean NLL (nats) of ``policy`` on ``split``, measured once (with its accuracy)."""
        return self._lookup(_policy_key(policy), split, True,
                            lambda: self._measure(policy, split))

    def running(self, policy: Sequence[tuple[int, int]], nll: bool = False) -> float:
        """The fine-tune's running top-1 (or NLL, nats) of ``policy``
        (``PolicyEvaluator.finetune_running``), measured once."""
        def measure() -> tuple[float, float]:
            self.evaluations += 1
            return self.evaluator.finetune_running(list(policy))

        return self._lookup(_policy_key(policy), RUNNING, nll, measure)

    def fp_accuracy(self, split: str = "val") -> float:
        return self._lookup("fp", split, False, lambda: self.evaluator.fp_evaluate(split))

    def fp_nll(self, split: str = "val") -> float:
        return self._lookup("fp", split, True, lambda: self.evaluator.fp_evaluate(split))


class _ScoreView:
    """A ``CachedEvaluator`` seen through another score (subclasses define ``accuracy`` and
    ``fp_accuracy``)."""

    def __init__(self, ev: CachedEvaluator) -> None:
        self.ev = ev

    @property
    def layers(self) -> list[QuantLayer]:
        return self.ev.layers

    @property
    def base_bits(self) -> int:
        return self.ev.base_bits


class NegativeNllView(_ScoreView):
    """What the search and the sensitivities see with ``reward_metric="nll"``: the score
    ``-NLL`` (nats; higher is better) in place of top-1 accuracy, so HAQ's reward
    ``0.1 * 100 * (score_q - score_fp)`` and the baselines' "accuracy drops" become NLL increases.
    A smoother signal than top-1 on a small validation split (160 images here: top-1 moves in
    steps of 0.625 pp and is flat between many policies). Deviation from HAQ (top-1 reward)."""

    def accuracy(self, policy: Sequence[tuple[int, int]], split: str = "val") -> float:
        return -self.ev.nll(policy, split)

    def fp_accuracy(self, split: str = "val") -> float:
        return -self.ev.fp_nll(split)


class FinetuneRunningView(_ScoreView):
    """What the search and the sensitivities see with ``reward_data="finetune"`` (HAQ's
    released code): a policy's score is its fine-tune's running top-1 on the fine-tune images
    (``reward_metric="top1"``) or minus its running NLL ("nll"); the float score is the float
    model's on the same images. The validation top-1 and NLL are measured with each score, from
    the same fine-tune (so the episodes' reported validation accuracy costs no second
    fine-tune). The ``split`` argument is ignored: the reward has one set of images."""

    def __init__(self, ev: CachedEvaluator, reward_metric: str) -> None:
        super().__init__(ev)
        self.nll = reward_metric == "nll"

    def accuracy(self, policy: Sequence[tuple[int, int]], split: str = "val") -> float:
        score = self.ev.running(policy, self.nll)
        self.ev.accuracy(policy, "val")  # same fine-tune: only the emulator runs
        return -score if self.nll else score

    def fp_accuracy(self, split: str = "val") -> float:
        return -self.ev.fp_nll("train") if self.nll else self.ev.fp_accuracy("train")


# ----------------------------------------------------------------------------- outputs
def _policy_json(costs: CostTable, policy: Policy) -> dict[str, dict[str, int]]:
    return {name: {"weight_bits": int(w), "activation_bits": int(a)}
            for name, (w, a) in zip(costs.layer_names, policy, strict=True)}


def _policy_text(policy: Policy) -> str:
    return " ".join(f"{w}/{a}" for w, a in policy)


def _entry(ev: CachedEvaluator, costs: CostTable, budget: float, policy: Policy,
           final: CachedEvaluator | None = None, with_nll: bool = False,
           with_running: bool = False, **extra: Any) -> dict[str, Any]:
    cost = costs.total(policy)
    entry = {"policy": _policy_json(costs, policy), "cost": cost, "budget": budget,
             "unit": costs.unit, "cost_fraction": cost / costs.uniform(REFERENCE_BITS),
             "fits_budget": cost <= budget, "accuracy": ev.accuracy(policy, "test"),
             "val_accuracy": ev.accuracy(policy, "val"), "fp_accuracy": ev.fp_accuracy("test"),
             **extra}
    if with_nll:
        entry["val_nll"] = ev.nll(policy, "val")
    if with_running:
        entry["finetune_running"] = {"accuracy": ev.running(policy),
                                     "nll": ev.running(policy, True)}
    if final is not None:
        entry["final_finetune"] = {"epochs": final.evaluator.finetune_epochs,
                                   "accuracy": final.accuracy(policy, "test"),
                                   "val_accuracy": final.accuracy(policy, "val")}
    return entry


def _write_episodes(path: Path, episodes: Sequence[Any], ref_cost: float, ev: CachedEvaluator,
                    reward_metric: str, running: bool = False) -> None:
    """One row per episode: cost, validation top-1 (and NLL when it is the reward), the
    fine-tune's running top-1 and NLL when they are the reward's data, reward."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    nll = reward_metric == "nll" and not running
    w.writerow(["episode", "cost", "cost_fraction", "val_accuracy", *(["val_nll"] if nll else []),
                *(["running_accuracy", "running_nll"] if running else []),
                "reward", "policy_w/a"])
    for ep in episodes:
        w.writerow([ep.episode, repr(ep.cost), repr(ep.cost / ref_cost),
                    repr(ev.accuracy(ep.policy, "val")),
                    *([repr(ev.nll(ep.policy, "val"))] if nll else []),
                    *([repr(ev.running(ep.policy)), repr(ev.running(ep.policy, True))]
                      if running else []),
                    repr(ep.reward), _policy_text(ep.policy)])
    write_text_atomic(path, buf.getvalue())


def _plot(path: Path, result: dict[str, Any], episodes: Sequence[Any],
          ev: CachedEvaluator) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = result["unit"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter([e.cost for e in episodes], [ev.accuracy(e.policy, "val") for e in episodes],
               s=6, alpha=0.2,
               color="gray", label="HAQ episodes")
    ax.scatter([result["cost"]], [result["val_accuracy"]], s=70, marker="*", color="C3",
               zorder=3, label="HAQ best")
    base = result["baselines"]
    uni = sorted((v for k, v in base.items() if k.startswith("uniform")),
                 key=lambda v: v["cost"])
    ax.plot([v["cost"] for v in uni], [v["val_accuracy"] for v in uni], "o-", color="C0",
            ms=4, label="uniform W=A bits")
    for name, marker, color in (("greedy", "s", "C1"), ("ilp", "D", "C2")):
        if name in base:
            ax.scatter([base[name]["cost"]], [base[name]["val_accuracy"]], marker=marker,
                       color=color, zorder=3, label=name)
    ax.axvline(result["budget"], color="C3", lw=0.8, ls=":", label="budget")
    ax.set_xlabel(f"{result['metric']} ({unit}) on {result['device']}")
    ax.set_ylabel("validation top-1 accuracy (device numerics)")
    ax.set_title(f"{result['model']}: HAQ vs baselines, budget "
                 f"{result['budget_fraction']:g} x 8-bit {result['metric']}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_png_atomic(path, fig, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- experiment
def _check_untied(graph: Graph, layers: Sequence[QuantLayer]) -> None:
    producers = input_producers(graph, layers)
    seen: dict[str, str] = {}
    for layer, prod in zip(layers, producers, strict=True):
        if prod is None:
            continue
        if prod in seen:
            raise SearchError(f"layers {seen[prod]!r} and {layer.name!r} read the same tensor "
                              f"(output of {prod!r}); the HAQ search gives each layer its own "
                              "input-activation bits and does not support shared inputs")
        seen[prod] = layer.name


def run_haq_experiment(device: str, model: str, budget: str, episodes: int, seed: int,
                       out: Path, finetune_epochs: int = 1, progress: bool = True,
                       configuration: str | None = None, *,
                       accuracy_cache: Path | None = None,
                       final_finetune_epochs: int = 0,
                       reward_metric: str = "top1",
                       reward_data: str = "heldout") -> dict[str, Any]:
    """Run HAQ and the baselines for ``model`` on ``device`` under ``budget``
    (``metric=fraction`` of the all-W8A8 cost) and write the outputs to ``out`` (module
    docstring). ``accuracy_cache``: the accuracy cache file (default ``out/accuracy_cache.json``;
    several runs may share one). ``final_finetune_epochs`` > 0: HAQ's last step (the found
    policy fine-tuned longer before it is reported), applied alike to HAQ's policy and every
    baseline's: each entry gets ``final_finetune`` {epochs, accuracy (test), val_accuracy}, same
    optimizer, learning rate and seed as the search's fine-tune. ``reward_metric``: "top1"
    (HAQ) or "nll" (``NegativeNllView``: the reward and the greedy/ILP sensitivities use the
    validation NLL instead; reported accuracies stay top-1). ``reward_data``: which images are
    the validation split (``digits_search_data``: "heldout", or "train" as in HAQ's code), or
    "finetune": the reward is the fine-tune's running top-1 (NLL) on its own images, as in
    HAQ's released code (``FinetuneRunningView``; needs ``finetune_epochs`` >= 1).
    Returns the ``result.json`` content. BudgetError for a malformed or unreachable budget
    (checked before any accuracy is measured)."""
    from hwsim.search.haq_ddpg import DdpgConfig, run_haq

    t0 = time.perf_counter()
    metric, fraction = parse_budget(budget)
    if episodes < 1:
        raise SearchError(f"episodes must be >= 1, got {episodes}")
    if reward_metric not in REWARD_METRICS:
        raise SearchError(f"reward_metric {reward_metric!r}; allowed: {', '.join(REWARD_METRICS)}")
    _check_reward_data(reward_data)
    running = reward_data == "finetune"
    if running and finetune_epochs < 1:
        raise SearchError("reward_data='finetune' rewards the fine-tune's running accuracy: "
                          f"finetune_epochs must be >= 1, got {finetune_epochs}")
    if final_finetune_epochs < 0:
        raise SearchError(f"final_finetune_epochs must be >= 0, got {final_finetune_epochs}")
    dev = load_device(device)
    graph = load_search_model(model)
    costs = build_cost_table(graph, dev.spec, metric, configuration)
    if REFERENCE_BITS not in costs.bits:
        raise SearchError(f"device {dev.name!r} has no {REFERENCE_BITS}-bit precision: the "
                          f"budget is a fraction of the W8A8 cost (widths {list(costs.bits)})")
    ref_cost = costs.uniform(REFERENCE_BITS)
    limit = fraction * ref_cost
    bits = candidate_bits(costs)
    n = len(costs.layer_names)
    base_precision = f"int{REFERENCE_BITS}"
    fixed = fixed_pairs(n, REFERENCE_BITS)
    floor = minimum_cost(costs, fixed, bits)
    if limit < floor:
        least = math.ceil(floor / ref_cost * 1e4) / 1e4
        raise BudgetError(f"{metric} budget {fraction:g} x {ref_cost:.6g} {costs.unit} = "
                          f"{limit:.6g} {costs.unit} is below the minimum achievable cost "
                          f"{floor:.6g} {costs.unit} = {floor / ref_cost:.4f} of the 8-bit "
                          f"cost (every free layer at {bits[0]} bits, first layer W8, last "
                          f"W8A8); use at least {metric}={least:g}")
    layers = quantizable_layers(graph)
    _check_untied(graph, layers)
    data = digits_search_data(image_size(graph), reward_data=reward_data)
    final_data = final_finetune_data(data, reward_data)
    raw = PolicyEvaluator(graph, dev, layers, data, base_precision=base_precision,
                          finetune_epochs=finetune_epochs, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = Path(accuracy_cache) if accuracy_cache is not None else out / "accuracy_cache.json"
    ev = CachedEvaluator(raw, evaluator_context(graph, dev, raw), cache_path)
    final = None
    if final_finetune_epochs > 0:
        final_raw = PolicyEvaluator(graph, dev, layers, final_data, base_precision=base_precision,
                                    finetune_epochs=final_finetune_epochs, seed=seed)
        final = CachedEvaluator(final_raw, evaluator_context(graph, dev, final_raw), cache_path)
    with_nll = reward_metric == "nll"
    # what the search and the baselines see
    seen: CachedEvaluator | NegativeNllView | FinetuneRunningView
    if running:
        seen = FinetuneRunningView(ev, reward_metric)
    else:
        seen = NegativeNllView(ev) if with_nll else ev
    timings: dict[str, float] = {"setup_s": time.perf_counter() - t0}

    t = time.perf_counter()
    baselines: dict[str, Any] = {}
    uniforms = uniform_policies(costs, limit, fixed, bits)
    widest_fit = next((u.bits for u in uniforms if u.fits_budget), None)
    for u in uniforms:  # the final fine-tune for the widest uniform policy within the budget
        baselines[f"uniform-{u.bits}"] = _entry(ev, costs, limit, u.policy,
                                                final if u.bits == widest_fit else None,
                                                with_nll, running, bits=u.bits)
    timings["uniform_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sens = measure_sensitivity(_Progress(seen, progress, "sensitivity", n, bits, fixed), costs,
                               fixed, bits)
    scores = pair_scores(sens, fixed, bits)
    timings["sensitivity_s"] = time.perf_counter() - t
    for name, solve in (("greedy", greedy_policy), ("ilp", ilp_policy)):
        t = time.perf_counter()
        policy = solve(scores, costs, limit, fixed, bits)
        check_budget(name, policy, costs, limit)
        baselines[name] = _entry(ev, costs, limit, policy, final, with_nll, running,
                                 sensitivity_objective=sum(scores[i][p]
                                                           for i, p in enumerate(policy)))
        timings[f"{name}_s"] = time.perf_counter() - t

    t = time.perf_counter()
    before = ev.evaluations
    # top-1 on a small validation split ties often; the NLL was measured with each accuracy
    tie_break: Callable[[Policy], float] | None = None
    if not with_nll:
        tie_break = ((lambda policy: ev.running(policy, True)) if running else
                     (lambda policy: ev.nll(policy, "val")))
    search = run_haq(seen, costs, limit, DdpgConfig(episodes=episodes, seed=seed),
                     checkpoint=out / "haq_checkpoint.pt", progress=progress,
                     tie_break=tie_break)
    check_budget("HAQ", search.policy, costs, limit)
    timings["haq_s"] = time.perf_counter() - t
    haq_evaluations = ev.evaluations - before
    seen_name = "running" if running else "val"
    chosen = _entry(ev, costs, limit, search.policy, final, with_nll, running)
    result: dict[str, Any] = {
        "model": model, "device": dev.name, "configuration": configuration,
        "cost_source": costs.source, "metric": metric, "unit": costs.unit,
        "budget": limit, "budget_fraction": fraction, "cost_8bit": ref_cost,
        "minimum_cost": floor, "bits": list(bits),
        "fixed": {costs.layer_names[i]: list(p) for i, p in sorted(fixed.items())},
        **chosen,
        "selection": {"tied_at_best_reward": search.tied_at_best,
                      "tie_break": "earliest" if with_nll else
                      f"lowest {'fine-tune running' if running else 'validation'} NLL, "
                      "then earliest"},
        "fp_val_accuracy": ev.fp_accuracy("val"),
        **({"fp_finetune_images": {"accuracy": ev.fp_accuracy("train"),
                                   "nll": ev.fp_nll("train")}} if running else {}),
        "episodes": len(search.episodes), "seed": seed, "finetune_epochs": finetune_epochs,
        "final_finetune_epochs": final_finetune_epochs, "reward_metric": reward_metric,
        "data": {"train": len(data.train_y), "val": len(data.val_y), "test": len(data.test_y),
                 "calib": len(data.calib_x), "split_seed": SPLIT_SEED,
                 "reward_data": reward_data,
                 "final_finetune_train": len(final_data.train_y)},
        "sensitivity": {"evaluations": sens.evaluations,
                        (f"reference_{seen_name}_accuracy" if reward_metric == "top1" else
                         f"reference_{seen_name}_negative_nll"): sens.reference_accuracy,
                        "objective": "monotone envelope of the measured "
                                     + ("fine-tune running " if running else "validation ")
                                     + ("accuracy drop" if reward_metric == "top1" else
                                        "NLL increase")
                                     + " per component, summed (haq_baselines)"},
        "baselines": baselines,
        "evaluations": {"measured_this_run": ev.evaluations, "haq_measured": haq_evaluations},
        "timings": timings,
    }
    _write_episodes(out / "episodes.csv", search.episodes, ref_cost, ev, reward_metric, running)
    _plot(out / "accuracy_vs_cost.png", result, search.episodes, ev)
    timings["total_s"] = time.perf_counter() - t0
    write_json_atomic(out / "result.json", result)
    return result


def final_finetune_data(data: SearchData, reward_data: str) -> SearchData:
    """The final fine-tune's data: the search's, but on the whole training split when the
    reward images were taken from it ("train", "finetune"; HAQ fine-tunes its chosen policy
    on the full training set); calibration stays the search's."""
    if reward_data == "heldout":
        return data
    from hwsim.graph.digits_demo import digits_data

    train_x, train_y, _, _ = digits_data(int(data.train_x.shape[-1]))
    return dataclasses.replace(data, train_x=train_x, train_y=train_y)


class _Progress:
    """Passes accuracy calls through to ``ev``, with a tqdm bar over the expected count."""

    def __init__(self, ev: CachedEvaluator | NegativeNllView | FinetuneRunningView,
                 enabled: bool, desc: str,
                 n_layers: int,
                 bits: Sequence[int], fixed: dict[int, tuple[int | None, int | None]]) -> None:
        from tqdm import tqdm

        free = sum(p is None for i in range(n_layers) for p in fixed.get(i, (None, None)))
        self.ev = ev
        self.bar = tqdm(total=1 + free * (len(bits) - 1), desc=desc, unit="policy",
                        disable=not enabled, dynamic_ncols=True, leave=False)

    def accuracy(self, policy: Sequence[tuple[int, int]], split: str = "val") -> float:
        acc = self.ev.accuracy(policy, split)
        self.bar.update(1)
        if self.bar.n >= (self.bar.total or 0):
            self.bar.close()
        return acc
