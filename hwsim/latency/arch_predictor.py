"""Architecture-level latency predictors with few-shot transfer to a new device.

Setting (HELP protocol, Lee et al. NeurIPS'21): the new ("target") device has N measured
architectures; other ("source") devices have measured latencies of every architecture of the
space. Source latencies are the hardware side and may cover the architectures we predict; the
target latencies of those architectures are never seen.

Three estimators:

- :class:`SourceRidgePredictor` -- the baseline of issue 5: log target latency regressed by ridge
  (regularisation chosen by exact leave-one-out, LOO) on the standardised log latencies of the
  source devices.
- :class:`FewShotLatencyPredictor` -- the blend of two log-linear ridge models:
  (1) the hardware-only model above and (2) a hardware + architecture model whose inputs are the
  standardised source log latencies and the architecture encoding of
  :mod:`hwsim.latency.arch_encoding` scaled by ``arch_weight`` (relative prior weight of the
  architecture block; ``0`` drops it), with ``(alpha, arch_weight)`` chosen jointly by LOO.
  The prediction is ``exp(w * log p1 + (1 - w) * log p2)`` with ``w = hardware_weight``.
  Without source devices it is one ridge model on the architecture encoding alone.
- :class:`CrossValidatedLatencyPredictor` (the CLI's default) -- chooses by cross-validation
  between :class:`NonNegativeAdditiveModel` s (latency in ms = non-negative mix of the source
  devices' latencies + non-negative costs of op counts / per-position op choices, optionally
  ridge-penalised), the log-linear blend above, geometric means of the two, and -- from
  ``tree_min_rows`` training rows (default 200) -- the log blend plus gradient-boosted
  residual trees (:class:`ResidualTreesModel`, for devices whose cost of an op depends on
  its neighbours; the number of trees is chosen by cross-validation from ``tree_counts``).
  The non-negative additive form is the physical prior that a network's latency is a sum of
  per-op costs >= 0; with 10 rows it constrains the fit far more than ridge's shrinkage
  towards zero.

Alternatives measured during development on ``../shared/data/latency`` (leave-one-device-out,
2-3 draws; not part of ``tools/bench_arch_predictor.py``) that did not beat these: principal
components of the source log-latency matrix as inputs (NB201 mean Spearman 0.887 vs 0.941 at
N = 10), unstandardised source log latencies, a second-stage ridge on the residuals, an
empirical-Bayes prior on the target's loadings in the source devices' principal-component space
(NB201 N = 10 mean Spearman 0.929 vs 0.937 for ridge), gradient-boosted trees on sources +
features *instead of* the other models (below the log-linear blend on 2 of 3 devices tried at
N = 100 and 900; as a cross-validated residual candidate they are kept), and choosing
the candidate with the smallest CV error instead of the one-standard-error rule (NB201 N = 10
mean Spearman 0.947 vs 0.957).

Training rows whose latency is below ``min_fraction_of_median`` of the training median are
dropped before fitting (the rule of :mod:`hwsim.latency.metrics`); the count is kept in
``n_dropped_degenerate_`` and in the saved model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from hwsim.errors import PredictorError
from hwsim.latency import arch_encoding
from hwsim.latency.metrics import DEFAULT_MIN_FRACTION_OF_MEDIAN, LatencyMetrics, latency_metrics
from hwsim.latency.tree_ensemble import TreeEnsemble, fit_ensemble, sklearn_estimator

DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-4, 4, 33))
DEFAULT_ARCH_WEIGHTS: tuple[float, ...] = (0.0, 0.03, 0.1, 0.3, 1.0)
MIN_TRAIN_ROWS = 3


# ----------------------------------------------------------------------------------------------
# Source table: other devices' latencies keyed by architecture
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceTable:
    """Measured latencies (ms) of architectures of one space on the source devices.

    ``keys`` are canonical architecture keys (:func:`arch_encoding.arch_keys`), one per row of
    ``latency_ms`` (shape (len(keys), len(devices))).
    """

    space: str
    devices: tuple[str, ...]
    keys: np.ndarray
    latency_ms: np.ndarray

    def __post_init__(self) -> None:
        arch_encoding.check_space(self.space)
        lat = np.asarray(self.latency_ms, dtype=np.float64)
        if lat.ndim != 2 or lat.shape != (len(self.keys), len(self.devices)):
            raise PredictorError(
                f"source latency table must have shape ({len(self.keys)}, {len(self.devices)}) "
                f"(architectures x devices), got {lat.shape}")
        if not self.devices:
            raise PredictorError("source table has no device columns")
        if len(set(self.devices)) != len(self.devices):
            raise PredictorError(f"duplicate source device names in {self.devices}")
        bad = np.argwhere(~np.isfinite(lat) | (lat <= 0))
        if bad.size:
            r, c = (int(v) for v in bad[0])
            raise PredictorError(
                f"source latency of device {self.devices[c]!r} at row {r} is {float(lat[r, c])!r}; "
                f"need finite positive milliseconds ({len(bad)} such cells)")
        keys = np.asarray(self.keys, dtype=str)
        if keys.ndim != 1:
            raise PredictorError(f"source table keys must be 1-D, got shape {keys.shape}")
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if dup.size:
            key = sorted_keys[dup[0]]
            rows = sorted(int(r) for r in np.flatnonzero(keys == key))
            raise PredictorError(
                f"architecture {key!r} appears {len(rows)} times in the source table (rows "
                f"{rows}); keep one measurement per architecture")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "latency_ms", lat)
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_sorted_keys", sorted_keys)

    @classmethod
    def from_archs(cls, space: str, archs: np.ndarray | list, latency_ms: np.ndarray,
                   devices: list[str] | tuple[str, ...]) -> SourceTable:
        """Build from architectures in the space's own form (arch strings / op-index rows)."""
        keys = arch_encoding.arch_keys(space, archs)
        return cls(space, tuple(devices), keys, np.asarray(latency_ms, dtype=np.float64))

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``latency_ms`` for ``keys``; raises naming the first architecture not found."""
        keys = np.asarray(keys, dtype=str)
        sorted_keys: np.ndarray = self._sorted_keys  # type: ignore[attr-defined]
        pos = np.clip(np.searchsorted(sorted_keys, keys), 0, sorted_keys.size - 1)
        missing = np.flatnonzero(sorted_keys[pos] != keys)
        if missing.size:
            i = int(missing[0])
            raise PredictorError(
                f"{missing.size} of {keys.size} architectures have no source-device latency "
                f"(first: row {i}, architecture key {str(keys[i])!r}); give the source devices' "
                f"columns {list(self.devices)} with the architectures, or fit with a source "
                f"table that covers them")
        return self.latency_ms[self._order[pos]]  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------
# Log-linear ridge model (the fitted, serialisable form)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLinearModel:
    """``log(latency_ms) = intercept + ((x - mean) / scale) @ coef``.

    ``x`` is the concatenation of the log source latencies (if ``uses_source``) and the
    architecture features (if ``uses_arch``); ``scale`` of the architecture block already
    includes the division by ``arch_weight``.
    """

    uses_source: bool
    uses_arch: bool
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float
    arch_weight: float

    def predict_log(self, log_source: np.ndarray | None, arch_features: np.ndarray | None
                    ) -> np.ndarray:
        blocks = []
        if self.uses_source:
            blocks.append(log_source)
        if self.uses_arch:
            blocks.append(arch_features)
        x = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        if x.shape[1] != self.coef.size:
            raise PredictorError(
                f"model expects {self.coef.size} input features, got {x.shape[1]}")
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # constant column: centred to zero, coefficient stays 0
    return mean, scale


def _loo_ridge(z: np.ndarray, y: np.ndarray, alphas: tuple[float, ...]
               ) -> tuple[float, np.ndarray, float, np.ndarray]:
    """Ridge on standardised ``z`` with unpenalised intercept; alpha by exact LOO.

    Returns (alpha, coef, LOO mean squared error, LOO predictions). Uses the SVD of the centred
    design: hat diagonal h_i = 1/n + sum_j U_ij^2 s_j^2 / (s_j^2 + alpha).
    """
    n = y.size
    zc = z - z.mean(axis=0)
    y_mean = float(y.mean())
    yc = y - y_mean
    u, s, vt = np.linalg.svd(zc, full_matrices=False)
    uty = u.T @ yc
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in alphas:
        shrink = s ** 2 / (s ** 2 + alpha)
        fitted = u @ (shrink * uty)
        hat = (u ** 2) @ shrink + 1.0 / n
        loo_resid = (yc - fitted) / np.maximum(1.0 - hat, 1e-12)
        mse = float(np.mean(loo_resid ** 2))
        if best is None or mse < best[0]:
            best = (mse, float(alpha), y - loo_resid)
    mse, alpha, loo_pred = best
    coef = vt.T @ (s / (s ** 2 + alpha) * uty)
    return alpha, coef, mse, loo_pred


def _fit_log_linear(log_source: np.ndarray | None, arch_features: np.ndarray | None,
                    y_log: np.ndarray, alphas: tuple[float, ...],
                    arch_weights: tuple[float, ...]) -> tuple[LogLinearModel, np.ndarray]:
    """Fit one log-linear model; ``arch_weights`` only matter when both blocks are present."""
    best: tuple[float, LogLinearModel, np.ndarray] | None = None
    weights = arch_weights if (log_source is not None and arch_features is not None) else (1.0,)
    for gamma in weights:
        uses_source = log_source is not None
        uses_arch = arch_features is not None and gamma > 0
        blocks, means, scales = [], [], []
        if uses_source:
            m, s = _standardise(log_source)
            blocks.append(log_source)
            means.append(m)
            scales.append(s)
        if uses_arch:
            m, s = _standardise(arch_features)
            blocks.append(arch_features)
            means.append(m)
            scales.append(s / gamma)
        x = np.concatenate(blocks, axis=1)
        mean, scale = np.concatenate(means), np.concatenate(scales)
        z = (x - mean) / scale
        alpha, coef, mse, loo_pred = _loo_ridge(z, y_log, alphas)
        intercept = float(y_log.mean() - z.mean(axis=0) @ coef)
        model = LogLinearModel(uses_source, uses_arch, mean, scale, coef, intercept, alpha,
                               float(gamma) if uses_arch else 0.0)
        if best is None or mse < best[0]:
            best = (mse, model, loo_pred)
    return best[1], best[2]


# ----------------------------------------------------------------------------------------------
# Non-negative additive model (linear in milliseconds)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NonNegativeAdditiveModel:
    """``latency_ms = intercept + source_ms @ source_coef + features[:, arch_columns] @ arch_coef``
    with every coefficient and the intercept >= 0.

    The physical prior: a network's latency is a sum of per-op costs >= 0; a new device's per-op
    costs are modelled as a non-negative mix of the source devices' (whose whole-network
    latencies are sums of their own per-op costs) plus non-negative costs of the architecture
    features (:func:`arch_encoding.additive_feature_columns`).
    """

    source_coef: np.ndarray
    arch_columns: np.ndarray
    arch_coef: np.ndarray
    intercept: float
    penalty: float

    def predict_log(self, log_source: np.ndarray | None, arch_features: np.ndarray | None
                    ) -> np.ndarray:
        out = np.full(arch_features.shape[0], self.intercept)
        if self.source_coef.size:
            if log_source is None or log_source.shape[1] != self.source_coef.size:
                got = 0 if log_source is None else log_source.shape[1]
                raise PredictorError(f"model expects {self.source_coef.size} source devices, "
                                     f"got {got}")
            out += np.exp(log_source) @ self.source_coef
        if self.arch_columns.size:
            out += arch_features[:, self.arch_columns] @ self.arch_coef
        bad = np.flatnonzero(~(out > 0))
        if bad.size:
            raise PredictorError(
                f"additive model predicts {float(out[bad[0]])!r} ms at row {int(bad[0])}: an "
                "architecture with none of the costed features of the training rows; refit "
                "with architectures that cover it")
        return np.log(out)


def _fit_nonneg_additive(source_ms: np.ndarray | None, arch_block: np.ndarray | None,
                         arch_columns: np.ndarray, y: np.ndarray, penalty: float
                         ) -> NonNegativeAdditiveModel:
    """Non-negative least squares of relative error ``sum(((pred - y) / y) ** 2)`` plus
    ``penalty * n * sum((sd_j * arch_coef_j) ** 2)`` (``sd_j``: standard deviation of the
    relative-weighted feature column over the training rows, 1 for a constant column)."""
    n = y.size
    n_src = 0 if source_ms is None else source_ms.shape[1]
    blocks = [np.ones((n, 1))]
    if n_src:
        blocks.append(source_ms)
    if arch_block is not None and arch_block.shape[1]:
        blocks.append(arch_block)
    w = 1.0 / y
    xw = np.concatenate(blocks, axis=1) * w[:, None]
    yw = np.ones(n)
    n_arch = xw.shape[1] - 1 - n_src
    if n_arch and penalty > 0:
        sd = xw[:, 1 + n_src:].std(axis=0)
        sd[sd < 1e-12] = 1.0
        pen = np.zeros((n_arch, xw.shape[1]))
        pen[:, 1 + n_src:] = np.diag(np.sqrt(penalty * n) * sd)
        xw = np.concatenate([xw, pen])
        yw = np.concatenate([yw, np.zeros(n_arch)])
    coef, _ = nnls(xw, yw, maxiter=50 * xw.shape[1])
    return NonNegativeAdditiveModel(
        source_coef=coef[1:1 + n_src], arch_columns=np.asarray(arch_columns, dtype=np.int64),
        arch_coef=coef[1 + n_src:], intercept=float(coef[0]), penalty=float(penalty))


# ----------------------------------------------------------------------------------------------
# Residual trees (non-additive correction in log space)
# ----------------------------------------------------------------------------------------------

# the number of trees and the learning rate are the estimator's ``tree_counts`` and
# ``tree_learning_rate``
DEFAULT_TREE_PARAMS: dict[str, float | int] = {
    "max_depth": 3, "subsample": 0.8, "min_samples_leaf": 5}
DEFAULT_TREE_COUNTS: tuple[int, ...] = (25, 50, 100, 200, 400, 800)
DEFAULT_TREE_LEARNING_RATE = 0.1


def _tree_inputs(log_source: np.ndarray | None, arch_features: np.ndarray) -> np.ndarray:
    return arch_features if log_source is None else np.hstack([arch_features, log_source])


@dataclass(frozen=True)
class ResidualTreesModel:
    """Gradient-boosted regression trees whose output (log ms) is *added* to the other
    components' log prediction; inputs: the architecture features followed by the log source
    latencies (``n_source`` columns, 0 without source devices).

    Captures what neither an additive nor a log-linear model can: interactions between ops
    (e.g. a device whose cost of an op depends on its neighbours)."""

    ensemble: TreeEnsemble
    n_source: int

    def predict_log(self, log_source: np.ndarray | None, arch_features: np.ndarray
                    ) -> np.ndarray:
        got = 0 if log_source is None else log_source.shape[1]
        if got != self.n_source:
            raise PredictorError(f"residual trees expect {self.n_source} source devices, "
                                 f"got {got}")
        return self.ensemble.predict_log(_tree_inputs(log_source, arch_features))


def _fit_residual_trees(log_source: np.ndarray | None, arch_features: np.ndarray,
                        residual_log: np.ndarray, params: dict) -> ResidualTreesModel:
    """Gradient boosting (scikit-learn, ``params``, seed 0) on the log residuals."""
    n_source = 0 if log_source is None else log_source.shape[1]
    ens, _ = fit_ensemble("gradient_boosting", params, _tree_inputs(log_source, arch_features),
                          residual_log, seed=0)
    return ResidualTreesModel(ens, n_source)


def _sum_log(comps: list, weights: list[float], log_source: np.ndarray | None,
             features: np.ndarray) -> np.ndarray:
    """Weighted sum of components' log predictions (a fitted candidate's log prediction)."""
    return sum(w * m.predict_log(log_source, features)
               for w, m in zip(weights, comps, strict=True))


# ----------------------------------------------------------------------------------------------
# Estimators
# ----------------------------------------------------------------------------------------------


def _no_zero_latency(component: object, space: str, floor_ms: float) -> bool:
    """False for an additive component without source weights whose smallest prediction over
    every architecture of ``space`` is below ``floor_ms`` (typically 0 ms: intercept 0 and an
    architecture of zero-cost features). Log-linear and tree components live in log space and
    source latencies are > 0 (``SourceTable`` checks them): those pass."""
    if not isinstance(component, NonNegativeAdditiveModel) or np.any(component.source_coef > 0):
        return True
    lowest = component.intercept + arch_encoding.additive_minimum(
        space, component.arch_columns, component.arch_coef)
    return lowest > 0 and lowest >= floor_ms


def _check_grid(name: str, values: tuple[float, ...], allow_zero: bool) -> tuple[float, ...]:
    try:
        grid = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise PredictorError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if not grid:
        raise PredictorError(f"{name} must not be empty")
    for v in grid:
        if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            allowed = ">= 0" if allow_zero else "> 0"
            raise PredictorError(f"{name} values must be finite and {allowed}, got {v!r}")
    return grid


class _ArchLatencyEstimator(ABC):
    """Shared fit/predict plumbing; subclasses choose the components."""

    space: str
    alphas: tuple[float, ...]
    min_fraction_of_median: float

    def get_params(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self._param_names}

    _param_names: tuple[str, ...] = ()
    _fitted_fields: tuple[str, ...] = ()  # extra fitted state saved with the model
    # parameters a file written before they existed lacks, and the value it was fitted with
    _params_added_later: dict[str, object] = {}

    def _check_params(self) -> None:
        arch_encoding.check_space(self.space)
        self.alphas = _check_grid("alphas", self.alphas, allow_zero=False)
        if not 0.0 <= float(self.min_fraction_of_median) < 1.0:
            raise PredictorError(
                f"min_fraction_of_median must be in [0, 1), got {self.min_fraction_of_median!r}")

    def _training_rows(self, archs: np.ndarray | list, latency_ms: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys of all rows, mask of non-degenerate rows, their features, their latencies)."""
        y = np.asarray(latency_ms, dtype=np.float64)
        if y.ndim != 1:
            raise PredictorError(f"latency_ms must be 1-D, got shape {y.shape}")
        if len(archs) != y.size:
            raise PredictorError(
                f"got {len(archs)} architectures but {y.size} latencies; they must pair up")
        bad = np.flatnonzero(~np.isfinite(y) | (y <= 0))
        if bad.size:
            raise PredictorError(
                f"training latency at row {int(bad[0])} is {float(y[bad[0]])!r}; need finite "
                f"positive milliseconds ({bad.size} such rows)")
        keep = y >= self.min_fraction_of_median * float(np.median(y))
        if keep.sum() < MIN_TRAIN_ROWS:
            raise PredictorError(
                f"need at least {MIN_TRAIN_ROWS} training architectures after dropping "
                f"latencies below {self.min_fraction_of_median:g} x median, got {int(keep.sum())}")
        codes = arch_encoding.arch_codes(self.space, archs)
        keys = arch_encoding.codes_to_keys(codes)
        features = arch_encoding.encode_codes(self.space, codes)
        return keys, keep, features[keep], y[keep]

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise PredictorError(
                f"this {type(self).__name__} is not fitted yet; call fit() or load a saved model")

    def _log_source_for(self, codes: np.ndarray, source_latency_ms: np.ndarray | None
                        ) -> np.ndarray | None:
        if self.source_table_ is None:
            return None
        n = codes.shape[0]
        if source_latency_ms is None:
            lat = self.source_table_.lookup(arch_encoding.codes_to_keys(codes))
        else:
            lat = np.asarray(source_latency_ms, dtype=np.float64)
            devices = self.source_table_.devices
            if lat.ndim != 2 or lat.shape != (n, len(devices)):
                raise PredictorError(
                    f"source_latency_ms must have shape ({n}, {len(devices)}) for "
                    f"devices {list(devices)}, got {lat.shape}")
            bad = np.argwhere(~np.isfinite(lat) | (lat <= 0))
            if bad.size:
                r, c = (int(v) for v in bad[0])
                raise PredictorError(
                    f"source latency of device {devices[c]!r} at row {r} is {float(lat[r, c])!r}; "
                    "need finite positive milliseconds")
        return np.log(lat)

    @abstractmethod
    def _fit_components(self, log_source: np.ndarray | None, features: np.ndarray,
                        y_log: np.ndarray) -> tuple[list[LogLinearModel], list[float], np.ndarray]:
        """Fitted components, their blend weights (log space) and the LOO log predictions."""

    def fit(self, archs: np.ndarray | list, latency_ms: np.ndarray,
            source: SourceTable | None = None) -> _ArchLatencyEstimator:
        """Fit on the target device's measured architectures; returns self.

        ``archs``: NB201 arch strings or an (n, 22) FBNet op-index array. ``source``: other
        devices' latencies covering at least these architectures.
        """
        self._check_params()
        all_keys, keep, features, y = self._training_rows(archs, latency_ms)
        keys = all_keys[keep]
        log_source = None
        if source is not None:
            if source.space != self.space:
                raise PredictorError(
                    f"source table is for space {source.space!r}, estimator for {self.space!r}")
            log_source = np.log(source.lookup(keys))
        elif self._needs_source:
            raise PredictorError(f"{type(self).__name__} needs a source table (other devices)")
        y_log = np.log(y)
        components, weights, loo_log = self._fit_components(log_source, features, y_log)
        self.components_ = components
        self.weights_ = weights
        self.source_table_ = source
        self.train_keys_ = tuple(str(k) for k in all_keys)  # all N, degenerate rows included
        self.n_train_ = int(y.size)
        self.n_dropped_degenerate_ = int((~keep).sum())
        self.cv_metrics_: LatencyMetrics = latency_metrics(
            y, np.exp(loo_log), self.min_fraction_of_median)
        return self

    def predict_log(self, archs: np.ndarray | list,
                    source_latency_ms: np.ndarray | None = None) -> np.ndarray:
        """Natural log of the predicted latency in ms."""
        self._check_fitted()
        codes = arch_encoding.arch_codes(self.space, archs)
        features = arch_encoding.encode_codes(self.space, codes)
        log_source = self._log_source_for(codes, source_latency_ms)
        out = np.zeros(features.shape[0])
        for w, comp in zip(self.weights_, self.components_, strict=True):
            out += w * comp.predict_log(log_source, features)
        return out

    def predict(self, archs: np.ndarray | list,
                source_latency_ms: np.ndarray | None = None) -> np.ndarray:
        """Predicted latency in ms. Source latencies come from ``source_latency_ms`` (columns in
        ``source_devices_`` order) or, when omitted, from the source table given to ``fit``."""
        return np.exp(self.predict_log(archs, source_latency_ms))

    @property
    def source_devices_(self) -> tuple[str, ...]:
        self._check_fitted()
        return () if self.source_table_ is None else self.source_table_.devices

    _needs_source = False


class SourceRidgePredictor(_ArchLatencyEstimator):
    """Baseline: ridge of the target's log latency on the source devices' log latencies."""

    _param_names = ("space", "alphas", "min_fraction_of_median")
    _needs_source = True

    def __init__(self, space: str = "nb201", alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                 min_fraction_of_median: float = DEFAULT_MIN_FRACTION_OF_MEDIAN) -> None:
        self.space = space
        self.alphas = alphas
        self.min_fraction_of_median = min_fraction_of_median

    def _fit_components(self, log_source, features, y_log):
        model, loo = _fit_log_linear(log_source, None, y_log, self.alphas, (0.0,))
        return [model], [1.0], loo


class FewShotLatencyPredictor(_ArchLatencyEstimator):
    """Blend of a hardware-only and a hardware + architecture log-linear model (module doc)."""

    _param_names = ("space", "alphas", "arch_weights", "hardware_weight",
                    "min_fraction_of_median")

    def __init__(self, space: str = "nb201", alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                 arch_weights: tuple[float, ...] = DEFAULT_ARCH_WEIGHTS,
                 hardware_weight: float = 0.5,
                 min_fraction_of_median: float = DEFAULT_MIN_FRACTION_OF_MEDIAN) -> None:
        self.space = space
        self.alphas = alphas
        self.arch_weights = arch_weights
        self.hardware_weight = hardware_weight
        self.min_fraction_of_median = min_fraction_of_median

    def _check_params(self) -> None:
        super()._check_params()
        self.arch_weights = _check_grid("arch_weights", self.arch_weights, allow_zero=True)
        w = float(self.hardware_weight)
        if not 0.0 <= w <= 1.0:
            raise PredictorError(f"hardware_weight must be in [0, 1], got {w!r}")

    def _fit_components(self, log_source, features, y_log):
        if log_source is None:
            model, loo = _fit_log_linear(None, features, y_log, self.alphas, (1.0,))
            return [model], [1.0], loo
        w = float(self.hardware_weight)
        hw_model, hw_loo = _fit_log_linear(log_source, None, y_log, self.alphas, (0.0,))
        joint, joint_loo = _fit_log_linear(log_source, features, y_log, self.alphas,
                                           self.arch_weights)
        return [hw_model, joint], [w, 1.0 - w], w * hw_loo + (1.0 - w) * joint_loo


DEFAULT_PENALTIES: tuple[float, ...] = (10.0, 1.0, 0.1, 0.01, 0.0)
DEFAULT_TREE_MIN_ROWS = 200


@dataclass(frozen=True)
class _Candidate:
    name: str
    penalty: float
    blocks: tuple[str, ...]  # additive feature blocks; ("log_blend",) for the log-linear blend
    with_log_blend: bool = False  # geometric mean of this additive model and the log blend
    tree_counts: tuple[int, ...] = ()  # log blend + residual trees; CV picks the count


class CrossValidatedLatencyPredictor(_ArchLatencyEstimator):
    """Chooses between non-negative additive models and the log-linear blend by K-fold CV.

    Candidates, simplest first: the additive model on the source devices alone, then with the
    op-count features (``penalties`` from strongest to none), then with op counts and per-position
    features (same penalties), then :class:`FewShotLatencyPredictor` (log-linear, ridge
    ``alphas``), then the geometric mean of each additive candidate with that log-linear blend
    (``"<additive> x log_blend"``; its CV prediction is the mean of the two CV log predictions,
    same folds), and, with at least ``tree_min_rows`` training rows (``None``: never), the log
    blend plus :class:`ResidualTreesModel` fitted to its in-sample log residuals (gradient
    boosting with ``DEFAULT_TREE_PARAMS`` and ``tree_learning_rate``). Its number of trees is the
    one of ``tree_counts`` with the smallest CV error, so it grows with what the data supports:
    the counts are tried in ascending order, each fold's boosting run growing by warm start,
    until the CV error rises (counts above the number of training rows are not tried, except
    the smallest); the candidate is then named ``"log_blend + trees(K)"``
    and scored with that count's CV error (``selection_["tree_counts_cv"]`` has every count's).
    Each candidate is scored by cross-validated mean squared log error on the training rows
    (leave-one-out when there are at most ``loo_max_rows`` rows, else ``n_folds`` folds with a
    fixed shuffle). The choice follows the one-standard-error rule: the simplest candidate whose
    CV error is within one standard error of the smallest. The chosen candidate is refitted on
    all training rows. An additive refit without source weights whose smallest prediction over
    the space (:func:`arch_encoding.additive_minimum`) is below ``min_fraction_of_median`` x the
    training median -- typically exactly 0 ms: intercept 0 and an architecture of zero-cost
    features; the degenerate-row rule would discard such a latency -- is passed over for the
    next candidate (the rest of the band in order, then by CV error) and listed in
    ``selection_["rejected_zero_latency"]``.
    """

    _param_names = ("space", "penalties", "n_folds", "loo_max_rows", "alphas",
                    "min_fraction_of_median", "tree_min_rows", "tree_counts",
                    "tree_learning_rate")
    _fitted_fields = ("selection",)
    # files from before a parameter existed were fitted as these values say
    _params_added_later = {"tree_min_rows": None, "tree_counts": (150,),
                           "tree_learning_rate": 0.05}

    def __init__(self, space: str = "nb201", penalties: tuple[float, ...] = DEFAULT_PENALTIES,
                 n_folds: int = 10, loo_max_rows: int = 20,
                 alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                 min_fraction_of_median: float = DEFAULT_MIN_FRACTION_OF_MEDIAN,
                 tree_min_rows: int | None = DEFAULT_TREE_MIN_ROWS,
                 tree_counts: tuple[int, ...] = DEFAULT_TREE_COUNTS,
                 tree_learning_rate: float = DEFAULT_TREE_LEARNING_RATE) -> None:
        self.space = space
        self.penalties = penalties
        self.tree_min_rows = tree_min_rows
        self.tree_counts = tree_counts
        self.tree_learning_rate = tree_learning_rate
        self.alphas = alphas
        self.n_folds = n_folds
        self.loo_max_rows = loo_max_rows
        self.min_fraction_of_median = min_fraction_of_median

    def _check_params(self) -> None:
        super()._check_params()
        self.penalties = tuple(sorted(_check_grid("penalties", self.penalties, allow_zero=True),
                                      reverse=True))
        for name in ("n_folds", "loo_max_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 2:
                raise PredictorError(f"{name} must be an integer >= 2, got {v!r}")
        v = self.tree_min_rows
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | np.integer)
                              or v < 2 * MIN_TRAIN_ROWS):
            raise PredictorError(
                f"tree_min_rows must be None (no tree candidate) or an integer >= "
                f"{2 * MIN_TRAIN_ROWS}, got {v!r}")
        counts = self.tree_counts
        if (isinstance(counts, str) or not hasattr(counts, "__iter__") or not len(counts)
                or any(isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 1
                       for c in counts)):
            raise PredictorError(f"tree_counts must be a non-empty sequence of integers >= 1, "
                                 f"got {counts!r}")
        self.tree_counts = tuple(sorted({int(c) for c in counts}))
        lr = self.tree_learning_rate
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr <= 1:
            raise PredictorError(f"tree_learning_rate must be a number in (0, 1], got {lr!r}")
        self.tree_learning_rate = float(lr)

    def candidates(self, n_rows: int | None = None) -> list[_Candidate]:
        """The candidate models for ``n_rows`` training rows (``None``: without the tree
        candidate), simplest first (the order of the one-standard-error rule)."""
        out = [_Candidate("additive:sources", 0.0, ())]
        for blocks in (("counts",), ("counts", "positions")):
            out += [_Candidate(f"additive:sources+{'+'.join(blocks)}", p, blocks)
                    for p in self.penalties]
        out.append(_Candidate("log_blend", 0.0, ("log_blend",)))
        out += [_Candidate(f"{c.name} x log_blend", c.penalty, c.blocks, True)
                for c in out[:-1]]
        if (n_rows is not None and self.tree_min_rows is not None
                and n_rows >= self.tree_min_rows):
            counts = tuple(k for k in self.tree_counts if k <= n_rows) or self.tree_counts[:1]
            out.append(_Candidate("log_blend + trees", 0.0, ("log_blend",),
                                  tree_counts=counts))
        return out

    def _fit_candidate(self, cand: _Candidate, log_source: np.ndarray | None,
                       features: np.ndarray, y_log: np.ndarray
                       ) -> tuple[list[object], list[float]]:
        if cand.with_log_blend:
            add, w_add = self._fit_candidate(
                _Candidate(cand.name, cand.penalty, cand.blocks), log_source, features, y_log)
            log, w_log = self._fit_candidate(
                _Candidate("log_blend", 0.0, ("log_blend",)), log_source, features, y_log)
            return add + log, [0.5 * w for w in w_add + w_log]
        if cand.tree_counts:
            log, w_log = self._fit_candidate(
                _Candidate("log_blend", 0.0, ("log_blend",)), log_source, features, y_log)
            resid = y_log - _sum_log(log, w_log, log_source, features)
            trees = _fit_residual_trees(log_source, features, resid,
                                        self._tree_params(max(cand.tree_counts)))
            return log + [trees], w_log + [1.0]
        if cand.blocks == ("log_blend",):
            blend = FewShotLatencyPredictor(space=self.space, alphas=self.alphas)
            comps, weights, _ = blend._fit_components(log_source, features, y_log)
            return comps, weights
        cols = (np.concatenate([arch_encoding.additive_feature_columns(self.space, b)
                                for b in cand.blocks]) if cand.blocks
                else np.zeros(0, dtype=np.int64))
        source_ms = None if log_source is None else np.exp(log_source)
        model = _fit_nonneg_additive(source_ms, features[:, cols], cols, np.exp(y_log),
                                     cand.penalty)
        return [model], [1.0]

    def _tree_params(self, n_trees: int) -> dict:
        return {**DEFAULT_TREE_PARAMS, "n_estimators": int(n_trees),
                "learning_rate": self.tree_learning_rate}

    def _cv_tree_counts(self, counts: tuple[int, ...], fold_trees: list, cv_blend: np.ndarray,
                        y_log: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
        """CV log predictions of the log blend + K trees for K in ``counts`` ascending; each
        fold's boosting run grows by warm start from one count to the next (the same trees as
        one run of the larger count), and the grid stops at the first count whose CV error
        exceeds the previous one's. Returns the counts tried and their CV predictions."""
        tree_cv = np.zeros((len(counts), y_log.size))
        if not counts:
            return counts, tree_cv
        ests = [sklearn_estimator("gradient_boosting", {**self._tree_params(counts[0]),
                                                        "warm_start": True}, seed=0)
                for _ in fold_trees]
        prev = np.inf
        for j, k in enumerate(counts):
            for est, (test, x_tr, r_tr, x_te) in zip(ests, fold_trees, strict=True):
                est.set_params(n_estimators=int(k))  # type: ignore[attr-defined]
                est.fit(x_tr, r_tr)  # type: ignore[attr-defined]
                tree_cv[j, test] = cv_blend[test] + est.predict(x_te)  # type: ignore[attr-defined]
            mse = float(np.mean((tree_cv[j] - y_log) ** 2))
            if mse > prev:
                return counts[:j + 1], tree_cv[:j + 1]
            prev = mse
        return counts, tree_cv

    def _fit_components(self, log_source, features, y_log):
        n = y_log.size
        k = n if n <= self.loo_max_rows else min(self.n_folds, n)
        folds = np.random.default_rng(0).permutation(n) % k
        cands = self.candidates(n)
        cv_log = np.zeros((len(cands), n))
        base = [c for c, cand in enumerate(cands) if not cand.with_log_blend
                and not cand.tree_counts]
        tree_idx = next((c for c, cand in enumerate(cands) if cand.tree_counts), None)
        counts = () if tree_idx is None else cands[tree_idx].tree_counts
        fold_trees = []  # per fold: test mask, tree inputs and residuals of its train rows
        log_idx = next(c for c in base if cands[c].name == "log_blend")
        for fold in range(k):
            test = folds == fold
            train = ~test
            src_tr = None if log_source is None else log_source[train]
            src_te = None if log_source is None else log_source[test]
            for c in base:
                comps, weights = self._fit_candidate(cands[c], src_tr, features[train],
                                                     y_log[train])
                cv_log[c, test] = _sum_log(comps, weights, src_te, features[test])
                if c == log_idx:
                    log_comps, log_weights = comps, weights
            if counts:
                resid = y_log[train] - _sum_log(log_comps, log_weights, src_tr,
                                                features[train])
                fold_trees.append((test, _tree_inputs(src_tr, features[train]), resid,
                                   _tree_inputs(src_te, features[test])))
        counts, tree_cv = self._cv_tree_counts(counts, fold_trees, cv_log[log_idx], y_log)
        tree_sq = (tree_cv - y_log) ** 2
        if counts:
            best_count = int(np.argmin(tree_sq.mean(axis=1)))
            cv_log[tree_idx] = tree_cv[best_count]
            k_best = counts[best_count]
            cands[tree_idx] = _Candidate(f"log_blend + trees({k_best})", 0.0, ("log_blend",),
                                         tree_counts=(k_best,))
        for c, cand in enumerate(cands):
            if cand.with_log_blend:  # same folds: the blend's CV prediction is the mean of logs
                add = next(b for b in base if cands[b].blocks == cand.blocks
                           and cands[b].penalty == cand.penalty)
                cv_log[c] = 0.5 * (cv_log[add] + cv_log[log_idx])
        sq = (cv_log - y_log) ** 2
        mse = sq.mean(axis=1)
        se = sq.std(axis=1, ddof=1) / np.sqrt(n)
        best = int(np.argmin(mse))
        band = [c for c in range(len(cands)) if mse[c] <= mse[best] + se[best]]
        order = band + sorted(set(range(len(cands))) - set(band), key=lambda c: mse[c])
        rejected = []
        floor_ms = self.min_fraction_of_median * float(np.median(np.exp(y_log)))
        for chosen in order:  # the log blend always passes: the loop ends by it at last
            comps, weights = self._fit_candidate(cands[chosen], log_source, features, y_log)
            if all(_no_zero_latency(m, self.space, floor_ms) for m in comps):
                break
            rejected.append({"name": cands[chosen].name, "penalty": cands[chosen].penalty})
        self.selection_ = {
            "chosen": cands[chosen].name, "chosen_penalty": cands[chosen].penalty,
            "n_folds": int(k),
            "candidates": [{"name": c.name, "penalty": c.penalty, "cv_mse_log": float(m),
                            "cv_se_log": float(e)} for c, m, e in zip(cands, mse, se, strict=True)],
            "rejected_zero_latency": rejected,
            "tree_counts_cv": [{"n_trees": int(c), "cv_mse_log": float(m), "cv_se_log": float(e)}
                               for c, m, e in zip(counts, tree_sq.mean(axis=1),
                                                  tree_sq.std(axis=1, ddof=1) / np.sqrt(n),
                                                  strict=True)]}
        return comps, weights, cv_log[chosen]


ESTIMATORS: dict[str, type[_ArchLatencyEstimator]] = {
    "source_ridge": SourceRidgePredictor,
    "few_shot_blend": FewShotLatencyPredictor,
    "cv_select": CrossValidatedLatencyPredictor,
}
