"""Cross-validated accuracy of fixed mixed-precision policies on the digits.

The HAQ comparison (``haq_run``) reports accuracy on one test split of 200 images, where the
methods differ by 1-4 images. This module re-measures fixed policies (found on that split's
model) on more images: the digits not used by the search's reward are cut into ``n_folds``
folds; per fold, the demo architecture is trained afresh with its demo recipe on every other
image (``digits_demo.train_demo_architecture``), each policy is fine-tuned from that model and
measured under the device's numerics on the fold (``haq_accuracy.PolicyEvaluator``, the search's
own evaluator); every image of the pool is tested exactly once, by a model that never saw it.

What it measures is the policy as a per-layer bit allocation of the *architecture*: each fold's
model has its own weights, and the policy was chosen for the search model's. All methods'
policies are measured alike.

Images excluded from the pool (``exclude``; the tool passes the search's validation images,
on which HAQ's policy was selected) are never tested, but are trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.emulate.float_reference import run_float
from hwsim.errors import SearchError
from hwsim.graph.ir import Graph
from hwsim.quant.device import load_device
from hwsim.search.context_cache import ContextCache
from hwsim.search.haq_accuracy import PolicyEvaluator, SearchData
from hwsim.search.haq_cost import quantizable_layers
from hwsim.search.haq_run import CALIB_SIZE  # as the search: the fold's first training images

CACHE_FORMAT = 2  # 1: flat keys (before ContextCache)

PolicyBits = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class CrossvalRequest:
    """One measurement: ``policy`` (per quantizable layer, (weight bits, input activation
    bits)) on ``device`` after ``finetune_epochs`` epochs of the search's STE fine-tune."""

    device: str
    policy: PolicyBits
    finetune_epochs: int

    def key(self) -> str:
        bits = ",".join(f"{w}.{a}" for w, a in self.policy)
        return f"{self.device}|e{self.finetune_epochs}|{bits}"


@dataclass(frozen=True, eq=False)
class CrossvalResult:
    """Per pool image (dataset index ``images``, ascending): its label, its fold, and per
    request whether the policy's top-1 under the device's numerics is the label."""

    images: np.ndarray
    labels: np.ndarray
    fold: np.ndarray
    n_dataset: int  # images in the dataset: a fold trains on n_dataset minus its own
    correct: dict[CrossvalRequest, np.ndarray]
    fp_correct: np.ndarray  # the fold models in float32, no quantization

    @property
    def fp_accuracy(self) -> float:
        """Top-1 accuracy (fraction) of the float fold models over the pool."""
        return float(self.fp_correct.mean())

    def accuracy(self, request: CrossvalRequest) -> float:
        """Top-1 accuracy (fraction) of ``request`` over the whole pool."""
        return float(self.correct[request].mean())


def crossval_folds(n_images: int, exclude: Sequence[int], n_folds: int, seed: int
                   ) -> list[np.ndarray]:
    """Test indices of each fold (each ascending): a partition of ``range(n_images)`` minus
    ``exclude``, shuffled with ``seed``; fold sizes differ by at most one."""
    excluded = np.unique(np.asarray(exclude, dtype=np.int64))
    if excluded.size and (excluded[0] < 0 or excluded[-1] >= n_images):
        raise SearchError(f"exclude holds indices outside 0..{n_images - 1}")
    pool = np.setdiff1d(np.arange(n_images), excluded)
    if not 2 <= n_folds <= len(pool):
        raise SearchError(f"n_folds must lie in 2..{len(pool)} (the pool's images), "
                          f"got {n_folds}")
    shuffled = np.random.default_rng(seed).permutation(pool)
    return [np.sort(part) for part in np.array_split(shuffled, n_folds)]


def fold_data(x: np.ndarray, y: np.ndarray, test: np.ndarray,
              calib_size: int = CALIB_SIZE) -> SearchData:
    """The evaluator's data for one fold: train on every image not in ``test`` (dataset
    order), calibrate on the first ``calib_size`` of them; the fold's images are both the
    val and the test split (only test is read here)."""
    train = np.setdiff1d(np.arange(len(y)), test)
    if not 0 < calib_size <= len(train):
        raise SearchError(f"calib_size must lie in 1..{len(train)}, got {calib_size}")
    return SearchData(train_x=x[train], train_y=y[train], val_x=x[test], val_y=y[test],
                      test_x=x[test], test_y=y[test], calib_x=x[train[:calib_size]].copy())


def _cached(cache: ContextCache, key: str, n: int) -> np.ndarray | None:
    """The fold's per-image correctness stored under ``key`` (a string of 0/1), or None."""
    bits = cache.entries.get(key)
    if bits is None:
        return None
    if not isinstance(bits, str) or len(bits) != n or set(bits) - {"0", "1"}:
        raise SearchError(f"{cache.what} {str(cache.path)!r}: entry {key!r} is not {n} "
                          "characters of 0/1; delete the file to start afresh")
    return np.frombuffer(bits.encode(), np.uint8) == ord("1")


def _store(cache: ContextCache, key: str, correct: np.ndarray) -> None:
    cache.entries[key] = "".join("1" if c else "0" for c in correct)
    cache.save()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class _FoldModel:
    """The architecture trained on one fold's training images, trained on first use."""

    def __init__(self, model: str, data: SearchData,
                 train: Callable[[str, np.ndarray, np.ndarray], Any]) -> None:
        self.model, self.data, self._train = model, data, train
        self._graph: Graph | None = None

    def graph(self) -> Graph:
        if self._graph is None:
            import torch

            from hwsim.graph.load import load_model

            net = self._train(self.model, self.data.train_x, self.data.train_y)
            self._graph = load_model(net, torch.from_numpy(self.data.train_x[:1]))
        return self._graph


def crossval_correct(model: str, requests: Sequence[CrossvalRequest], *, n_folds: int = 5,
                     exclude: Sequence[int] = (), fold_seed: int = 0, seed: int = 0,
                     calib_size: int = CALIB_SIZE, cache_path: Path | None = None,
                     train: Callable[[str, np.ndarray, np.ndarray], Any] | None = None,
                     progress: Callable[[str], None] | None = None) -> CrossvalResult:
    """Measure every request on every fold of the digits (module docstring) for the demo
    architecture ``model``. ``seed``: the fine-tune's (as ``PolicyEvaluator``'s). ``train``
    (tests): replaces ``train_demo_architecture``; ``progress`` gets one line per measurement.
    Each fold's model is trained only if the cache lacks one of its measurements. Cache keys
    hold a digest of the recipe, folds, excluded images, calibration size and seed, and of the
    device's numerics (its precisions, not its name), so changed settings measure afresh."""
    from hwsim.graph.digits_demo import DEMO_MODELS, digits_images, train_demo_architecture

    if model not in DEMO_MODELS:
        raise SearchError(f"cross-validation trains demo architectures; {model!r} is not one "
                          f"of {', '.join(DEMO_MODELS)}")
    if len(set(requests)) != len(requests):
        raise SearchError("requests repeat a (device, policy, fine-tune epochs)")
    train = train or train_demo_architecture
    recipe = DEMO_MODELS[model]
    x, y = digits_images(recipe.image_size)
    folds = crossval_folds(len(y), exclude, n_folds, fold_seed)
    context = model + "|" + _digest([
        len(y), recipe.image_size, recipe.epochs, recipe.lr, recipe.version, n_folds,
        fold_seed, np.unique(np.asarray(exclude, np.int64)).tolist(), calib_size, seed])
    cache = ContextCache(cache_path, context, "cross-validation cache", CACHE_FORMAT)
    per_fold: dict[CrossvalRequest, list[np.ndarray]] = {r: [] for r in requests}
    fp_per_fold: list[np.ndarray] = []
    devices = {r.device: load_device(r.device) for r in requests}
    numerics = {name: _digest(dev.spec.model_dump(mode="json")["precisions"])
                for name, dev in devices.items()}
    for k, test in enumerate(folds):
        fold = _FoldModel(model, fold_data(x, y, test, calib_size), train)
        fp_key = f"fold{k}|fp32"
        fp = _cached(cache, fp_key, len(test))
        if fp is None:
            g = fold.graph()
            logits = run_float(g, fold.data.test_x)[g.outputs[0]]
            fp = np.argmax(logits, axis=1) == fold.data.test_y
            _store(cache, fp_key, fp)
        fp_per_fold.append(fp)
        evaluators: dict[tuple[str, int], PolicyEvaluator] = {}
        for r in requests:
            key = f"fold{k}|{numerics[r.device]}|{r.key()}"
            got = _cached(cache, key, len(test))
            if got is None:
                ev = evaluators.get((r.device, r.finetune_epochs))
                if ev is None:
                    g = fold.graph()
                    ev = PolicyEvaluator(g, devices[r.device], quantizable_layers(g), fold.data,
                                         finetune_epochs=r.finetune_epochs, seed=seed)
                    evaluators[(r.device, r.finetune_epochs)] = ev
                if len(r.policy) != len(ev.layers):
                    raise SearchError(f"{model}: policy of {len(r.policy)} layers, the model "
                                      f"has {len(ev.layers)} quantizable layers "
                                      f"({', '.join(q.name for q in ev.layers)})")
                got = ev.correct(list(r.policy), "test")
                _store(cache, key, got)
                if progress is not None:
                    progress(f"{model} fold {k + 1}/{n_folds} {r.key()}: "
                             f"{got.mean():.2%} of {len(test)}")
            per_fold[r].append(got)
    images = np.concatenate(folds)
    order = np.argsort(images)
    fold_of = np.concatenate([np.full(len(t), k) for k, t in enumerate(folds)])
    return CrossvalResult(images=images[order], labels=y[images[order]], fold=fold_of[order],
                          n_dataset=len(y),
                          correct={r: np.concatenate(v)[order] for r, v in per_fold.items()},
                          fp_correct=np.concatenate(fp_per_fold)[order])
