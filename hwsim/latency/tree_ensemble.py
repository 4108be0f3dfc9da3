"""Regression-tree ensembles stored as plain arrays and evaluated by our own numba kernel.

scikit-learn fits the ensembles (random forest, gradient boosting); :func:`fit_ensemble` copies
every fitted tree into a :class:`Tree` of plain arrays, and :meth:`TreeEnsemble.predict_log`
evaluates them here. A fitted object and one loaded from a JSON file (``predictor_io``) therefore
give bit-identical predictions on any scikit-learn version, and loading runs no code from the
file. Features are cast to float32 before the threshold tests, as scikit-learn's trees do.
Used by the kernel-level predictors (``kernel_predictor``) and by the residual-tree candidate of
the architecture-level predictor (``arch_predictor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

from hwsim.errors import PredictorError

MODEL_KINDS = ("random_forest", "gradient_boosting")


@dataclass(frozen=True)
class Tree:
    """One regression tree: node i tests ``x[feature[i]] <= threshold[i]`` (x as float32) and
    goes to ``left[i]`` or ``right[i]``; ``feature[i] < 0`` marks a leaf with ``value[i]``."""

    feature: np.ndarray  # int64
    threshold: np.ndarray  # float64
    left: np.ndarray  # int64
    right: np.ndarray  # int64
    value: np.ndarray  # float64

    def check(self, n_features: int, where: str) -> None:
        n = self.feature.size
        if n == 0 or not (self.threshold.size == self.left.size == self.right.size ==
                          self.value.size == n):
            raise PredictorError(f"{where}: tree arrays must be non-empty and of equal length")
        inner = self.feature >= 0
        if np.any(self.feature >= n_features) or np.any(self.feature[~inner] != -2):
            raise PredictorError(f"{where}: feature indices must be in [0, {n_features}) or -2 "
                                 f"(leaf)")
        idx = np.arange(n)
        for arr in (self.left, self.right):
            # children come after their parent: no cycles, descent always ends at a leaf
            if np.any((arr[inner] <= idx[inner]) | (arr[inner] >= n)):
                raise PredictorError(f"{where}: child indices must point forward inside the "
                                     f"tree")
        if not np.all(np.isfinite(self.threshold[inner])) or \
                not np.all(np.isfinite(self.value[~inner])):
            raise PredictorError(f"{where}: thresholds and leaf values must be finite")


@numba.njit(cache=True, nogil=True)
def _sum_of_leaves(x32: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                   left: np.ndarray, right: np.ndarray, value: np.ndarray,
                   roots: np.ndarray) -> np.ndarray:
    """Per row: the sum over trees (in order) of the leaf each tree sends the row to; the
    float32 feature is compared with the float64 threshold, as scikit-learn does."""
    out = np.zeros(x32.shape[0])
    for t in range(roots.size):
        for i in range(x32.shape[0]):
            node = roots[t]
            while feature[node] >= 0:
                if x32[i, feature[node]] <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            out[i] += value[node]
    return out


@dataclass(frozen=True)
class TreeEnsemble:
    """``prediction = base + scale * sum(tree(x))`` (random forest: base 0, scale 1/n_trees;
    gradient boosting: base = initial constant, scale = learning rate); in log(ms)."""

    model: str
    base: float
    scale: float
    trees: tuple[Tree, ...]
    hyper_parameters: dict

    @cached_property
    def _packed(self) -> tuple[np.ndarray, ...]:
        """All trees in one set of arrays; child indices shifted to the packed positions."""
        sizes = np.array([t.feature.size for t in self.trees], dtype=np.int64)
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        shift = np.repeat(roots, sizes)
        feature = np.concatenate([t.feature for t in self.trees]).astype(np.int64)
        leaf = feature < 0
        left = np.where(leaf, -1, np.concatenate([t.left for t in self.trees]) + shift)
        right = np.where(leaf, -1, np.concatenate([t.right for t in self.trees]) + shift)
        return (feature, np.concatenate([t.threshold for t in self.trees]).astype(np.float64),
                left.astype(np.int64), right.astype(np.int64),
                np.concatenate([t.value for t in self.trees]).astype(np.float64), roots)

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        """``base + scale * sum(tree(x))`` per row of ``x`` (features cast to float32)."""
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if x32.ndim != 2:
            raise PredictorError(f"tree ensemble input must be 2-D (rows x features), got "
                                 f"shape {x32.shape}")
        if not self.trees:
            return np.full(x32.shape[0], self.base)
        packed = self._packed
        if x32.shape[1] <= int(packed[0].max(initial=-1)):
            raise PredictorError(f"tree ensemble tests feature {int(packed[0].max())}, but the "
                                 f"input has only {x32.shape[1]} features")
        return self.base + self.scale * _sum_of_leaves(x32, *packed)


def _tree_from_sklearn(est: object) -> Tree:
    t = est.tree_  # type: ignore[attr-defined]
    leaf = t.children_left < 0
    feature = np.where(leaf, -2, t.feature).astype(np.int64)
    threshold = np.where(leaf, 0.0, t.threshold).astype(np.float64)
    value = np.where(leaf, t.value[:, 0, 0], 0.0).astype(np.float64)
    left = np.where(leaf, -1, t.children_left).astype(np.int64)
    right = np.where(leaf, -1, t.children_right).astype(np.int64)
    return Tree(feature, threshold, left, right, value)


def sklearn_estimator(model: str, params: dict, seed: int) -> object:
    """The unfitted scikit-learn ensemble that :func:`fit_ensemble` fits."""
    if model == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(random_state=seed, n_jobs=1, **params)
    if model == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(random_state=seed, loss="squared_error", **params)
    raise PredictorError(f"unknown tree model {model!r}; allowed: {', '.join(MODEL_KINDS)}")


def fit_ensemble(model: str, params: dict, x: np.ndarray, y_log: np.ndarray, seed: int
                 ) -> tuple[TreeEnsemble, object]:
    """Fit a scikit-learn ensemble on (x, log ms) and copy it into a ``TreeEnsemble``; also
    returns the scikit-learn estimator (tests compare the two)."""
    est = sklearn_estimator(model, params, seed)
    est.fit(np.asarray(x, dtype=np.float64), y_log)  # type: ignore[attr-defined]
    if model == "random_forest":
        trees = tuple(_tree_from_sklearn(e) for e in est.estimators_)  # type: ignore[attr-defined]
        ens = TreeEnsemble(model, 0.0, 1.0 / len(trees), trees, dict(params))
    else:
        base = float(np.asarray(est.init_.constant_).ravel()[0])  # type: ignore[attr-defined]
        trees = tuple(_tree_from_sklearn(e) for e in est.estimators_[:, 0])  # type: ignore[attr-defined]
        ens = TreeEnsemble(model, base, float(est.learning_rate), trees,  # type: ignore[attr-defined]
                           dict(params))
    return ens, est
