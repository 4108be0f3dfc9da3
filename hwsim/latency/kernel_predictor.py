"""Kernel-level latency predictors (nn-Meter style): one tree ensemble per kernel type.

A *kernel* is what a backend runs as one unit after fusion (``fusion.graph_kernels``); its
``OpKey`` says the anchor op, shapes, kernel size, stride, groups, fused activation and fused
residual add. Each kernel type gets its own regressor of ``log(latency_ms)`` on features that
follow nn-Meter (MobiSys'21; DESIGN.md B7) plus the tensor sizes an op moves:

============  ===============================================================================
type          features
============  ===============================================================================
conv          H, W, Cin, Cout, kernel, stride, groups, Ho, Wo, MACs, params, input/output
              elements, activation code, residual add (0/1)
dwconv        H, W, C, kernel, stride, Ho, Wo, MACs, params, input/output elements,
              activation code, residual add
linear        Cin, Cout, MACs, params, activation code, residual add
pool          H, W, C, kernel, stride, Ho, Wo, input/output elements, max (1) or avg (0)
gap           H, W, C, input elements
elementwise   H, W, C, elements, op code, inputs read (1 or 2), activation code
============  ===============================================================================

Activation codes: ``ACT_CODES``; op codes: the position in ``op_cost.ELEMENTWISE_OPS``. Keys of
other types (block keys such as ``expanded_conv``, concat) have no predictor: ``predict_key``
returns None and the caller reports the key missing (never zero).

Regressors: for each type, ``log(latency_ms)`` = a log-linear baseline (ridge regression on
``log(1 + features)``, scikit-learn ``RidgeCV``; it interpolates between the measured grid
points, which trees cannot) + a tree ensemble on the baseline's residual. Two ensembles are
tried, a random forest and gradient boosting (scikit-learn); the one with the better +-10 %
accuracy (ties: lower RMSPE) on a held-out split of the training configurations
(``selection_fraction``) is refitted on all rows and kept. Fitted trees are copied into plain
arrays (:mod:`hwsim.latency.tree_ensemble`), so saved files (JSON through ``predictor_io``) give
bit-identical predictions on any scikit-learn version, and loading runs no code from the file.

Adaptive sampling (nn-Meter): ``neighbour_keys`` proposes configurations next to training rows
whose out-of-fold prediction error exceeds 10 %; ``tools/bench_kernel_predictor.py`` and
``hwsim predictor fit --space kernels --adaptive-rounds`` measure them and refit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hwsim.errors import LatencyError, PredictorError
from hwsim.latency.metrics import rmspe, within_accuracy
from hwsim.latency.op_cost import ELEMENTWISE_OPS, op_cost
from hwsim.latency.op_key import OpKey
from hwsim.latency.tree_ensemble import MODEL_KINDS, TreeEnsemble, fit_ensemble

FEATURE_VERSION = 1
# Channel counts modulo 16 are features because ONNX Runtime's CPU kernels run channel blocks
# (NCHWc; 16 channels with AVX-512, as on this machine's AMD EPYC, 8 with AVX2) and take slower
# code paths otherwise: measured here, 2x2 average pooling costs 0.06-0.08 ns per input element
# when C % 16 == 0 and 0.27-0.35 ns otherwise; random configurations off the multiple-of-8 grid
# were predicted within 10 % for 40 % of kernels by a model without these features.
KERNEL_TYPES = ("conv", "dwconv", "linear", "pool", "gap", "elementwise")
ACT_CODES = {None: 0, "relu": 1, "relu6": 2, "clip": 3, "hswish": 4, "hsigmoid": 5,
             "sigmoid": 6, "swish": 7}
_TWO_INPUT_OPS = ("add", "mul", "add_broadcast", "mul_broadcast")

FEATURE_NAMES: dict[str, tuple[str, ...]] = {
    "conv": ("h", "w", "cin", "cout", "kernel", "stride", "groups", "ho", "wo", "macs",
             "params", "in_elems", "out_elems", "act", "idskip", "cin_mod16", "cout_mod16"),
    "dwconv": ("h", "w", "c", "kernel", "stride", "ho", "wo", "macs", "params", "in_elems",
               "out_elems", "act", "idskip", "c_mod16"),
    "linear": ("cin", "cout", "macs", "params", "act", "idskip", "cin_mod16", "cout_mod16"),
    "pool": ("h", "w", "c", "kernel", "stride", "ho", "wo", "in_elems", "out_elems", "is_max",
             "c_mod16"),
    "gap": ("h", "w", "c", "in_elems", "c_mod16"),
    "elementwise": ("h", "w", "c", "elems", "op", "inputs", "act", "c_mod16"),
}


def kernel_type(key: OpKey) -> str | None:
    """The predictor type of a kernel key, or None when no predictor covers its op."""
    if key.op in ("conv", "dwconv", "linear", "gap"):
        return key.op
    if key.op in ("avgpool", "maxpool"):
        return "pool"
    if key.op in ELEMENTWISE_OPS:
        return "elementwise"
    return None


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _hw(shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[0], shape[1]) if len(shape) == 3 else (1, 1)


def kernel_features(key: OpKey) -> tuple[str, list[float]]:
    """(kernel type, feature vector in ``FEATURE_NAMES[type]`` order); LatencyError when the
    key has no predictor type or an activation without a code."""
    ktype = kernel_type(key)
    if ktype is None:
        raise LatencyError(f"{key}: op {key.op!r} has no kernel predictor type; types cover "
                           f"conv, dwconv, linear, avgpool, maxpool, gap and elementwise ops "
                           f"({', '.join(ELEMENTWISE_OPS)})")
    if key.act not in ACT_CODES:
        raise LatencyError(f"{key}: activation {key.act!r} has no feature code; known: "
                           f"{', '.join(str(a) for a in ACT_CODES if a)}")
    act = ACT_CODES[key.act]
    skip = int(bool(key.idskip))
    (h, w), (ho, wo) = _hw(key.input), _hw(key.output)
    cin, cout = key.input[-1], key.output[-1]
    n_in, n_out = _prod(key.input), _prod(key.output)
    if ktype in ("conv", "dwconv"):
        if len(key.input) != 3 or len(key.output) != 3 or key.kernel is None or \
                key.stride is None:
            raise LatencyError(f"{key}: a {ktype} kernel needs HxWxC shapes, kernel and stride")
        cost = op_cost(key)
        if ktype == "conv":
            return ktype, [h, w, cin, cout, key.kernel, key.stride, key.groups or 1, ho, wo,
                           cost.macs, cost.params, n_in, n_out, act, skip, cin % 16, cout % 16]
        return ktype, [h, w, cin, key.kernel, key.stride, ho, wo, cost.macs, cost.params, n_in,
                       n_out, act, skip, cin % 16]
    if ktype == "linear":
        return ktype, [cin, cout, cin * cout, cin * cout + cout, act, skip, cin % 16, cout % 16]
    if ktype == "pool":
        if key.kernel is None or key.stride is None or len(key.input) != 3:
            raise LatencyError(f"{key}: a pool kernel needs HxWxC shapes, kernel and stride")
        return ktype, [h, w, cin, key.kernel, key.stride, ho, wo, n_in, n_out,
                       int(key.op == "maxpool"), cin % 16]
    if ktype == "gap":
        return ktype, [h, w, cin, n_in, cin % 16]
    return ktype, [h, w, cout, n_out, ELEMENTWISE_OPS.index(key.op),
                   2 if key.op in _TWO_INPUT_OPS else 1, act, cout % 16]


# ----------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------

DEFAULT_CANDIDATES: dict[str, dict] = {
    # Sizes keep the shipped lut/host-ort-kernels.json under 2 MB (every tree node is stored);
    # min_samples_leaf > 1 keeps a single noisy row from owning a leaf.
    "random_forest": {"n_estimators": 40, "min_samples_leaf": 3, "max_features": 0.6},
    "gradient_boosting": {"n_estimators": 300, "max_depth": 4, "learning_rate": 0.08,
                          "subsample": 0.8},
}


@dataclass(frozen=True)
class LogLinearBaseline:
    """``log(latency_ms) ~ intercept + log(1 + x) @ coef``."""

    coef: np.ndarray
    intercept: float

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(np.asarray(x, dtype=np.float64)) @ self.coef + self.intercept


def fit_baseline(x: np.ndarray, y_log: np.ndarray) -> LogLinearBaseline:
    """Ridge regression of log latency on log(1 + features); alpha by leave-one-out."""
    from sklearn.linear_model import RidgeCV

    lm = RidgeCV(alphas=np.logspace(-4, 2, 13)).fit(np.log1p(x), y_log)
    return LogLinearBaseline(np.asarray(lm.coef_, dtype=np.float64), float(lm.intercept_))


@dataclass(frozen=True)
class TypeModel:
    """The regressor of one kernel type (baseline + residual ensemble), with what chose it."""

    kernel_type: str
    baseline: LogLinearBaseline
    ensemble: TreeEnsemble
    n_train: int
    selection: dict  # model -> held-out metrics, and the choice

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        return self.baseline.predict_log(x) + self.ensemble.predict_log(x)


class KernelLatencyPredictor:
    """One regressor per kernel type (log-linear baseline + tree ensemble on its residual),
    fitted on measured kernel latencies (ms).

    Hyper-parameters (scikit-learn convention: ``__init__`` only stores them):
    ``candidates`` (model kind -> scikit-learn parameters), ``selection_fraction`` (share of a
    type's rows held out to choose the model kind), ``min_rows`` (a type with fewer measured
    rows gets no predictor), ``seed``.
    """

    _param_names = ("candidates", "selection_fraction", "min_rows", "seed")

    def __init__(self, candidates: dict | None = None, selection_fraction: float = 0.2,
                 min_rows: int = 8, seed: int = 0) -> None:
        self.candidates = candidates
        self.selection_fraction = selection_fraction
        self.min_rows = min_rows
        self.seed = seed

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in self._param_names}

    def _check_params(self) -> dict:
        cands = DEFAULT_CANDIDATES if self.candidates is None else self.candidates
        if not isinstance(cands, dict) or not cands or set(cands) - set(MODEL_KINDS):
            raise PredictorError(f"candidates must map some of {MODEL_KINDS} to parameters, got "
                                 f"{cands!r}")
        if not 0 < self.selection_fraction < 1:
            raise PredictorError(f"selection_fraction must be in (0, 1), got "
                                 f"{self.selection_fraction!r}")
        if not isinstance(self.min_rows, int) or self.min_rows < 4:
            raise PredictorError(f"min_rows must be an integer >= 4, got {self.min_rows!r}")
        return cands

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, keys: Sequence[OpKey], latency_ms: Sequence[float] | np.ndarray
            ) -> KernelLatencyPredictor:
        """Fit on measured kernel keys and their latencies (ms, > 0). Keys without a predictor
        type (block keys) are skipped and counted in ``n_skipped_``."""
        cands = self._check_params()
        y = np.asarray(latency_ms, dtype=np.float64)
        if y.ndim != 1 or y.size != len(keys):
            raise PredictorError(f"fit needs one latency per key: {len(keys)} keys, latencies "
                                 f"of shape {y.shape}")
        bad = np.flatnonzero(~np.isfinite(y) | (y <= 0))
        if bad.size:
            raise PredictorError(f"latency of {keys[int(bad[0])]} is {y[bad[0]]!r}; need "
                                 f"finite positive milliseconds ({bad.size} such rows)")
        groups: dict[str, tuple[list[list[float]], list[float]]] = {}
        skipped = 0
        for key, lat in zip(keys, y, strict=True):
            if kernel_type(key) is None:
                skipped += 1
                continue
            ktype, feats = kernel_features(key)
            groups.setdefault(ktype, ([], []))
            groups[ktype][0].append(feats)
            groups[ktype][1].append(math.log(lat))
        models: dict[str, TypeModel] = {}
        too_few: dict[str, int] = {}
        for ktype in KERNEL_TYPES:
            if ktype not in groups:
                continue
            x = np.asarray(groups[ktype][0], dtype=np.float64)
            yl = np.asarray(groups[ktype][1])
            if yl.size < self.min_rows:
                too_few[ktype] = int(yl.size)
                continue
            models[ktype] = self._fit_type(ktype, x, yl, cands)
        if not models:
            raise PredictorError(f"no kernel type has {self.min_rows} or more measured rows "
                                 f"(rows per type: {too_few or 'none'})")
        self.models_ = models
        self.train_keys_ = tuple(sorted({str(k) for k in keys if kernel_type(k) is not None}))
        self.n_skipped_ = skipped
        self.types_without_model_ = too_few
        return self

    def _fit_type(self, ktype: str, x: np.ndarray, y_log: np.ndarray, cands: dict
                  ) -> TypeModel:
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(y_log.size)
        n_hold = max(2, int(round(self.selection_fraction * y_log.size)))
        hold, train = order[:n_hold], order[n_hold:]
        scores = {}
        base = fit_baseline(x[train], y_log[train])
        resid = y_log[train] - base.predict_log(x[train])
        for model, params in cands.items():
            ens, _ = fit_ensemble(model, params, x[train], resid, self.seed)
            t = np.exp(y_log[hold])
            p = np.exp(base.predict_log(x[hold]) + ens.predict_log(x[hold]))
            scores[model] = {"acc10": within_accuracy(t, p, 0.10), "rmspe_pct": rmspe(t, p),
                             "n_heldout": int(hold.size), "n_train": int(train.size)}
        best = min(scores, key=lambda m: (-scores[m]["acc10"], scores[m]["rmspe_pct"]))
        base = fit_baseline(x, y_log)
        ens, _ = fit_ensemble(best, cands[best], x, y_log - base.predict_log(x), self.seed)
        return TypeModel(ktype, base, ens, int(y_log.size),
                         {"heldout": scores, "chosen": best})

    # -- prediction ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise PredictorError("this KernelLatencyPredictor is not fitted; call fit() or load "
                                 "a saved predictor")

    def covers(self, key: OpKey) -> bool:
        """Whether a model exists for ``key``'s kernel type (and its activation has a code)."""
        self._check_fitted()
        return kernel_type(key) in self.models_ and key.act in ACT_CODES

    def predict(self, keys: Sequence[OpKey]) -> np.ndarray:
        """Latency in ms of each key; PredictorError naming the first key no model covers."""
        self._check_fitted()
        out = np.empty(len(keys), dtype=np.float64)
        by_type: dict[str, tuple[list[int], list[list[float]]]] = {}
        for i, key in enumerate(keys):
            if not self.covers(key):
                raise PredictorError(
                    f"{key}: no kernel predictor for op {key.op!r} (kernel type "
                    f"{kernel_type(key)!r}; fitted types: {', '.join(sorted(self.models_))})")
            ktype, feats = kernel_features(key)
            by_type.setdefault(ktype, ([], []))
            by_type[ktype][0].append(i)
            by_type[ktype][1].append(feats)
        for ktype, (idx, feats) in by_type.items():
            out[idx] = np.exp(self.models_[ktype].predict_log(np.asarray(feats,
                                                                         dtype=np.float64)))
        return out

    def predict_key(self, key: OpKey) -> float | None:
        """Latency in ms of one kernel key, or None when no model covers it (the ``fallback``
        contract of ``model_latency``)."""
        if not self.covers(key):
            return None
        return float(self.predict([key])[0])


# ----------------------------------------------------------------------------------------------
# Sampling configurations
# ----------------------------------------------------------------------------------------------

_HW_CHOICES = (7, 8, 14, 16, 28, 32, 56, 112)


def _near(rng: random.Random, c: int, lo: int = 4, hi: int = 2048) -> int:
    """A channel count near ``c``: scaled by 0.7-1.4, rounded to a multiple of 4 (min 4)."""
    v = int(round(c * rng.uniform(0.7, 1.4) / 4.0)) * 4
    return max(lo, min(hi, v if v != c else c + 4))


def neighbour_keys(key: OpKey, n: int, rng: random.Random) -> list[OpKey]:
    """Up to ``n`` distinct configurations near ``key`` (same type, kernel, stride, activation
    and skip; channels scaled by 0.7-1.4, sometimes the neighbouring feature-map size)."""
    ktype = kernel_type(key)
    out: dict[OpKey, None] = {}
    for _ in range(8 * n):
        if len(out) >= n:
            break
        try:
            cand = _perturb(key, ktype, rng)
        except LatencyError:
            continue
        if cand is not None and cand != key:
            out.setdefault(cand, None)
    return list(out)


def _out_hw(h: int, k: int, s: int, pad: bool = True) -> int:
    return (h + 2 * (k // 2) - k) // s + 1 if pad else (h - k) // s + 1


def _perturb(key: OpKey, ktype: str | None, rng: random.Random) -> OpKey | None:
    if ktype == "linear":
        return key.with_(input=(_near(rng, key.input[0]),), output=(_near(rng, key.output[0]),))
    if len(key.input) != 3:
        return None
    h, _, cin = key.input
    if rng.random() < 0.3:
        i = _HW_CHOICES.index(h) if h in _HW_CHOICES else None
        if i is not None:
            h = _HW_CHOICES[max(0, min(len(_HW_CHOICES) - 1, i + rng.choice((-1, 1))))]
    if ktype == "conv":
        g = key.groups or 1
        c1 = _near(rng, cin)
        c2 = _near(rng, key.output[2])
        if g > 1:
            c1, c2 = max(g, c1 // g * g), max(g, c2 // g * g)
        ho = _out_hw(h, key.kernel, key.stride)
        return key.with_(input=(h, h, c1), output=(ho, ho, c2))
    if ktype == "dwconv":
        c = _near(rng, cin)
        ho = _out_hw(h, key.kernel, key.stride)
        return key.with_(input=(h, h, c), output=(ho, ho, c))
    if ktype == "pool":  # the feature-map size stays (pool padding is not in the key)
        c = _near(rng, cin)
        return key.with_(input=(*key.input[:2], c), output=(*key.output[:2], c))
    if ktype == "gap":
        c = _near(rng, cin)
        return key.with_(input=(h, h, c), output=(1, 1, c))
    if ktype == "elementwise":
        c = _near(rng, cin)
        return key.with_(input=(h, h, c), output=(h, h, c))
    return None


def random_kernel_keys(n: int, rng: random.Random, types: Iterable[str] = ("conv", "dwconv"),
                       max_macs: int = 60_000_000, conv_kernels: Sequence[int] = (1, 1, 1, 3),
                       input_sizes: Sequence[int] = (7, 14, 28, 56, 112)) -> list[OpKey]:
    """``n`` random kernel configurations off the usual grids (channels any multiple of 4 in
    8..1024, log-uniform), of the given types; convolutions above ``max_macs`` are redrawn
    (keeps a measurement short). ``conv_kernels``: the kernel sizes a conv draws from (repeats
    weight them); ``input_sizes``: feature-map sizes. The same arguments and seed give the same
    keys."""
    types = tuple(types)
    for t in types:
        if t not in ("conv", "dwconv", "linear", "pool", "elementwise"):
            raise LatencyError(f"random_kernel_keys: unsupported type {t!r}")
    out: dict[OpKey, None] = {}

    def chan(lo: int = 8, hi: int = 1024) -> int:
        return max(lo, int(round(math.exp(rng.uniform(math.log(lo), math.log(hi))) / 4)) * 4)

    while len(out) < n:
        t = rng.choice(types)
        h = rng.choice(tuple(input_sizes))
        act = rng.choice((None, "relu", "relu6"))
        if t == "conv":
            k = rng.choice(tuple(conv_kernels))
            s = rng.choice((1, 1, 1, 2))
            cin, cout = chan(), chan()
            ho = _out_hw(h, k, s)
            skip = 1 if (s == 1 and cin == cout and rng.random() < 0.5) else None
            key = OpKey("conv", (h, h, cin), (ho, ho, cout), kernel=k, stride=s,
                        idskip=skip, act=None if skip else act)
        elif t == "dwconv":
            k, s, c = rng.choice((3, 5, 7)), rng.choice((1, 2)), chan(16, 1536)
            ho = _out_hw(h, k, s)
            key = OpKey("dwconv", (h, h, c), (ho, ho, c), kernel=k, stride=s, act=act)
        elif t == "linear":
            key = OpKey("linear", (chan(64, 2048),), (chan(8, 1024),))
        elif t == "pool":
            c = chan()
            key = OpKey(rng.choice(("avgpool", "maxpool")), (h, h, c),
                        (h // 2, h // 2, c), kernel=2, stride=2)
        else:
            c = chan()
            key = OpKey(rng.choice(("relu", "relu6", "add", "hswish")), (h, h, c), (h, h, c))
        if t in ("conv", "dwconv") and op_cost(key).macs > max_macs:
            continue
        out.setdefault(key, None)
    return list(out)


# ----------------------------------------------------------------------------------------------
# Adaptive sampling
# ----------------------------------------------------------------------------------------------


def out_of_fold_errors(predictor: KernelLatencyPredictor, keys: Sequence[OpKey],
                       latency_ms: np.ndarray, folds: int = 3) -> np.ndarray:
    """Relative error |pred - true| / true of every covered key when predicted by a copy of
    ``predictor`` fitted without its fold (NaN for keys no fold model covers)."""
    y = np.asarray(latency_ms, dtype=np.float64)
    rng = np.random.default_rng(predictor.seed)
    fold = rng.integers(0, folds, size=len(keys))
    err = np.full(len(keys), np.nan)
    for f in range(folds):
        train = np.flatnonzero(fold != f)
        test = np.flatnonzero(fold == f)
        model = KernelLatencyPredictor(**predictor.get_params()).fit(
            [keys[i] for i in train], y[train])
        covered = [i for i in test if model.covers(keys[i])]
        if covered:
            pred = model.predict([keys[i] for i in covered])
            err[covered] = np.abs(pred - y[covered]) / y[covered]
    return err


@dataclass
class AdaptiveRound:
    """One round of adaptive sampling: how many rows were above the error threshold and how
    many new configurations were proposed and measured."""

    n_rows: int
    n_above: int
    share_within: float
    n_proposed: int
    n_measured: int


def adaptive_fit(predictor: KernelLatencyPredictor, keys: Sequence[OpKey],
                 latency_ms: Sequence[float] | np.ndarray,
                 measure: Callable[[list[OpKey]], dict[OpKey, float]], rounds: int = 1,
                 per_round: int = 60, threshold: float = 0.10, neighbours: int = 2,
                 ) -> tuple[KernelLatencyPredictor, list[OpKey], np.ndarray,
                            list[AdaptiveRound]]:
    """nn-Meter's adaptive sampling: each round, the rows whose out-of-fold error exceeds
    ``threshold`` (worst first, at most ``per_round // neighbours`` of them) get
    ``neighbours`` new configurations each (``neighbour_keys``), ``measure(keys) -> {key: ms}``
    times them, and they join the training rows. Returns the predictor fitted on all rows, the
    rows (keys, ms) and a record per round."""
    if rounds < 0 or per_round < 1 or neighbours < 1 or not 0 < threshold < 1:
        raise PredictorError("adaptive sampling needs rounds >= 0, per_round >= 1, "
                             "neighbours >= 1 and 0 < threshold < 1")
    keys = list(keys)
    y = np.asarray(latency_ms, dtype=np.float64)
    rng = random.Random(predictor.seed)
    history: list[AdaptiveRound] = []
    for _ in range(rounds):
        err = out_of_fold_errors(predictor, keys, y)
        valid = np.flatnonzero(np.isfinite(err))
        above = valid[err[valid] > threshold]
        worst = above[np.argsort(-err[above])][: max(1, per_round // neighbours)]
        known = set(keys)
        proposed: dict[OpKey, None] = {}
        for i in worst:
            for cand in neighbour_keys(keys[i], neighbours, rng):
                if cand not in known and kernel_type(cand) is not None:
                    proposed.setdefault(cand, None)
        measured = measure(list(proposed)) if proposed else {}
        for key, ms in measured.items():
            if key in known or not (math.isfinite(ms) and ms > 0):
                continue
            keys.append(key)
            y = np.append(y, ms)
            known.add(key)
        history.append(AdaptiveRound(int(valid.size), int(above.size),
                                     float(np.mean(err[valid] <= threshold)) if valid.size
                                     else float("nan"), len(proposed), len(measured)))
    fitted = KernelLatencyPredictor(**predictor.get_params()).fit(keys, y)
    return fitted, keys, y, history
