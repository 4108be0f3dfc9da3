"""Save and load latency predictors as checksummed JSON (no pickle; loading runs no file code).

File layout (``FORMAT_VERSION`` 1)::

    {"format": "hwsim-latency-predictor", "format_version": 1,
     "sha256": "<hex digest of the canonical payload>",
     "payload": {
        "kind": "cv_select" | "few_shot_blend" | "source_ridge",
        "feature_definition": {"space", "encoder_version", "arch_columns", "feature_names"},
        "hyper_parameters": {...},           # the estimator's __init__ arguments
        "fitted": {"components": [{"type": "log_linear", "uses_source", "uses_arch", "mean",
                                   "scale", "coef", "intercept", "alpha", "arch_weight"}
                                  | {"type": "nonneg_additive", "source_coef", "arch_columns",
                                     "arch_coef", "intercept", "penalty"}
                                  | {"type": "residual_trees", "n_source",
                                     "ensemble": {"model", "base", "scale",
                                                  "hyper_parameters", "trees": [...]}}, ...],
                   "weights": [...], "train_keys": [...], "n_train", "n_dropped_degenerate",
                   "selection": {...}},             # cv_select only: chosen model, CV table
        "source_table": null | {"devices": [...], "keys": [...], "latency_ms": [[...], ...]},
        "training_summary": {"n_rows", "n_dropped_degenerate", "target_column",
                             "source_columns", "created_utc", "versions", ...},
        "metrics": {"cv_loo": {...}}        # cross-validated metrics on the training rows
                                            # (exact LOO; cv_select: its LOO / K-fold CV)
     }}

A component without ``type`` is ``log_linear`` (files written before ``cv_select`` existed); a
``cv_select`` file without ``tree_min_rows`` was fitted before the tree candidate existed and
loads with ``tree_min_rows = None`` (what it was fitted with); one without ``tree_counts`` /
``tree_learning_rate`` had a single tree count and loads with ``(150,)`` / ``0.05``. Trees are
stored as in the kernel-level files below.

The checksum is SHA-256 of ``json.dumps(payload, sort_keys=True, separators=(",", ":"))``; JSON
floats are written with Python's shortest round-trip repr, so a load re-serialises to the same
bytes and the fitted numbers come back bit-identical. Fitted models are plain arrays evaluated by
our numpy / numba code, so files load on any newer numpy/scikit-learn.

Kernel-level predictors (kind ``kernel_trees``, space ``kernels``;
``hwsim.latency.kernel_predictor``) store per kernel type the log-linear baseline and every
tree as plain arrays::

        "feature_definition": {"space": "kernels", "feature_version", "kernel_types",
                               "feature_names": {type: [...]}, "act_codes", "elementwise_ops"},
        "fitted": {"models": {type: {"n_train", "selection", "baseline": {"coef", "intercept"},
                   "ensemble": {"model", "base", "scale", "hyper_parameters",
                                "trees": [{"feature", "threshold", "left", "right", "value"}]}}},
                   "n_skipped", "types_without_model"},
        "metrics": {"selection": {type: held-out metrics of each candidate}, ...}

Loading checks every array (lengths, child indices pointing forward, finite numbers) before a
tree is used. New predictor kinds register a pair of functions in ``_CODECS``: estimator ->
JSON-able dict and dict -> fitted estimator.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy

from hwsim.errors import PredictorError
from hwsim.latency import arch_encoding, tree_ensemble
from hwsim.latency import kernel_predictor as kp
from hwsim.latency.arch_predictor import (
    ESTIMATORS,
    LogLinearModel,
    NonNegativeAdditiveModel,
    ResidualTreesModel,
    SourceTable,
)
from hwsim.latency.metrics import LatencyMetrics

FORMAT_NAME = "hwsim-latency-predictor"
FORMAT_VERSION = 1


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _floats(values: np.ndarray) -> list:
    return np.asarray(values, dtype=np.float64).tolist()


# ----------------------------------------------------------------------------------------------
# Architecture-level predictors <-> plain dicts
# ----------------------------------------------------------------------------------------------


def _trees_to_state(ens: tree_ensemble.TreeEnsemble) -> dict[str, Any]:
    return {"model": ens.model, "base": float(ens.base), "scale": float(ens.scale),
            "hyper_parameters": ens.hyper_parameters,
            "trees": [{"feature": t.feature.tolist(), "threshold": _floats(t.threshold),
                       "left": t.left.tolist(), "right": t.right.tolist(),
                       "value": _floats(t.value)} for t in ens.trees]}


def _trees_from_state(e: Any, where: str, n_feat: int) -> tree_ensemble.TreeEnsemble:
    model = _field(e, "model", str, where)
    if model not in tree_ensemble.MODEL_KINDS:
        raise PredictorError(f"predictor file: {where}.model {model!r} unknown")
    trees = []
    for i, t in enumerate(_field(e, "trees", list, where)):
        tw = f"{where}.trees[{i}]"
        tree = tree_ensemble.Tree(_int_array(t, "feature", tw), _array(t, "threshold", tw),
                                  _int_array(t, "left", tw), _int_array(t, "right", tw),
                                  _array(t, "value", tw))
        tree.check(n_feat, f"predictor file: {tw}")
        trees.append(tree)
    if not trees:
        raise PredictorError(f"predictor file: {where} has no trees")
    return tree_ensemble.TreeEnsemble(model, _field(e, "base", float, where),
                                      _field(e, "scale", float, where), tuple(trees),
                                      _field(e, "hyper_parameters", dict, where))


def _component_to_state(c: Any) -> dict[str, Any]:
    if isinstance(c, ResidualTreesModel):
        return {"type": "residual_trees", "n_source": int(c.n_source),
                "ensemble": _trees_to_state(c.ensemble)}
    if isinstance(c, NonNegativeAdditiveModel):
        return {"type": "nonneg_additive", "source_coef": _floats(c.source_coef),
                "arch_columns": [int(i) for i in c.arch_columns],
                "arch_coef": _floats(c.arch_coef), "intercept": float(c.intercept),
                "penalty": float(c.penalty)}
    return {"type": "log_linear", "uses_source": c.uses_source, "uses_arch": c.uses_arch,
            "mean": _floats(c.mean), "scale": _floats(c.scale), "coef": _floats(c.coef),
            "intercept": float(c.intercept), "alpha": float(c.alpha),
            "arch_weight": float(c.arch_weight)}


def _arch_to_state(predictor: Any) -> dict[str, Any]:
    space = predictor.space
    params = predictor.get_params()
    hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
    table = predictor.source_table_
    return {
        "feature_definition": {
            "space": space,
            "encoder_version": arch_encoding.ENCODER_VERSIONS[space],
            "arch_columns": list(arch_encoding.ARCH_COLUMNS[space]),
            "feature_names": arch_encoding.feature_names(space),
        },
        "hyper_parameters": hyper,
        "fitted": {
            "components": [_component_to_state(c) for c in predictor.components_],
            "weights": [float(w) for w in predictor.weights_],
            "train_keys": list(predictor.train_keys_),
            "n_train": predictor.n_train_,
            "n_dropped_degenerate": predictor.n_dropped_degenerate_,
            **({"selection": predictor.selection_} if hasattr(predictor, "selection_") else {}),
        },
        "source_table": None if table is None else {
            "devices": list(table.devices), "keys": [str(k) for k in table.keys],
            "latency_ms": _floats(table.latency_ms)},
        "metrics": {"cv_loo": predictor.cv_metrics_.as_dict()},
    }


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise PredictorError(f"predictor file: missing field {where}.{key}")
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise PredictorError(
            f"predictor file: field {where}.{key} must be {names}, got {type(value).__name__}")
    return value


def _array(obj: Any, key: str, where: str, ndim: int = 1) -> np.ndarray:
    raw = _field(obj, key, list, where)
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise PredictorError(f"predictor file: {where}.{key} is not a numeric array") from None
    if arr.ndim != ndim or not np.all(np.isfinite(arr)):
        raise PredictorError(
            f"predictor file: {where}.{key} must be a finite {ndim}-D array, got shape "
            f"{arr.shape}")
    return arr


def _arch_from_state(kind: str, payload: dict[str, Any]) -> Any:
    fdef = _field(payload, "feature_definition", dict, "payload")
    space = _field(fdef, "space", str, "feature_definition")
    if space not in arch_encoding.SPACES:
        raise PredictorError(
            f"predictor file: space {space!r} is not supported by this hwsim (known: "
            f"{', '.join(arch_encoding.SPACES)})")
    version = _field(fdef, "encoder_version", int, "feature_definition")
    if version != arch_encoding.ENCODER_VERSIONS[space]:
        raise PredictorError(
            f"predictor file: {space} encoder version {version} differs from this hwsim's "
            f"{arch_encoding.ENCODER_VERSIONS[space]}; refit the predictor")
    names = _field(fdef, "feature_names", list, "feature_definition")
    if names != arch_encoding.feature_names(space):
        raise PredictorError("predictor file: feature_names do not match the encoder; refit")
    hyper = _field(payload, "hyper_parameters", dict, "payload")
    cls = ESTIMATORS[kind]
    expected = set(cls._param_names)
    hyper = {**{k: v for k, v in cls._params_added_later.items() if k not in hyper}, **hyper}
    if set(hyper) != expected:
        raise PredictorError(
            f"predictor file: hyper_parameters {sorted(hyper)} do not match {kind}'s "
            f"{sorted(expected)}")
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in hyper.items()}
    if params["space"] != space:
        raise PredictorError("predictor file: hyper_parameters.space differs from the features")
    predictor = cls(**params)
    predictor._check_params()

    fitted = _field(payload, "fitted", dict, "payload")
    table_state = payload.get("source_table")
    table = None
    if table_state is not None:
        where = "source_table"
        devices = tuple(_field(table_state, "devices", list, where))
        keys = np.asarray(_field(table_state, "keys", list, where), dtype=str)
        lat = _array(table_state, "latency_ms", where, ndim=2)
        table = SourceTable(space, devices, keys, lat)
    n_src = 0 if table is None else len(table.devices)
    n_feat = len(names)
    components = [_component_from_state(c, f"fitted.components[{i}]", n_src, n_feat)
                  for i, c in enumerate(_field(fitted, "components", list, "fitted"))]
    weights = [float(w) for w in _array(fitted, "weights", "fitted")]
    if not components or len(weights) != len(components):
        raise PredictorError(
            f"predictor file: {len(components)} components but {len(weights)} weights")
    metrics = _field(_field(payload, "metrics", dict, "payload"), "cv_loo", dict, "metrics")
    try:
        cv = LatencyMetrics(**metrics)
    except TypeError as err:
        raise PredictorError(f"predictor file: metrics.cv_loo malformed ({err})") from None
    predictor.components_ = components
    predictor.weights_ = weights
    predictor.source_table_ = table
    predictor.train_keys_ = tuple(str(k) for k in _field(fitted, "train_keys", list, "fitted"))
    predictor.n_train_ = _field(fitted, "n_train", int, "fitted")
    predictor.n_dropped_degenerate_ = _field(fitted, "n_dropped_degenerate", int, "fitted")
    predictor.cv_metrics_ = cv
    if "selection" in cls._fitted_fields:
        predictor.selection_ = _field(fitted, "selection", dict, "fitted")
    return predictor


def _component_from_state(c: Any, where: str, n_src: int, n_feat: int) -> Any:
    kind = c.get("type", "log_linear") if isinstance(c, dict) else None
    if kind == "residual_trees":
        n_source = _field(c, "n_source", int, where)
        if n_source not in (0, n_src):
            raise PredictorError(f"predictor file: {where}.n_source is {n_source} for "
                                 f"{n_src} source devices")
        ens = _trees_from_state(_field(c, "ensemble", dict, where), f"{where}.ensemble",
                                n_feat + n_source)
        return ResidualTreesModel(ens, n_source)
    if kind == "nonneg_additive":
        source_coef, arch_coef = (_array(c, k, where) for k in ("source_coef", "arch_coef"))
        cols = _int_array(c, "arch_columns", where)
        intercept = _field(c, "intercept", float, where)
        if source_coef.size not in (0, n_src):
            raise PredictorError(f"predictor file: {where}.source_coef has {source_coef.size} "
                                 f"entries for {n_src} source devices")
        if (cols.size != arch_coef.size or np.any(cols < 0) or np.any(cols >= n_feat)
                or np.unique(cols).size != cols.size):
            raise PredictorError(f"predictor file: {where}.arch_columns must be distinct "
                                 f"feature indices in [0, {n_feat}), one per arch_coef entry")
        if np.any(source_coef < 0) or np.any(arch_coef < 0) or intercept < 0:
            raise PredictorError(f"predictor file: {where} has a negative coefficient; the "
                                 "additive model's coefficients are all >= 0")
        return NonNegativeAdditiveModel(source_coef, cols, arch_coef, intercept,
                                        _field(c, "penalty", float, where))
    if kind != "log_linear":
        raise PredictorError(f"predictor file: {where}.type {kind!r} unknown (known: "
                             "log_linear, nonneg_additive, residual_trees)")
    uses_source = _field(c, "uses_source", bool, where)
    uses_arch = _field(c, "uses_arch", bool, where)
    mean, scale, coef = (_array(c, k, where) for k in ("mean", "scale", "coef"))
    width = (n_src if uses_source else 0) + (n_feat if uses_arch else 0)
    if uses_source and not n_src:
        raise PredictorError(f"predictor file: {where} uses source devices but the file "
                             "has no source_table")
    if not (mean.size == scale.size == coef.size == width) or np.any(scale <= 0):
        raise PredictorError(
            f"predictor file: {where} arrays must have {width} entries (positive scale), "
            f"got mean {mean.size}, scale {scale.size}, coef {coef.size}")
    return LogLinearModel(
        uses_source, uses_arch, mean, scale, coef,
        _field(c, "intercept", float, where), _field(c, "alpha", float, where),
        _field(c, "arch_weight", float, where))


# ----------------------------------------------------------------------------------------------
# Kernel-level predictors <-> plain dicts
# ----------------------------------------------------------------------------------------------

KERNEL_KIND = "kernel_trees"


def _kernel_feature_definition() -> dict[str, Any]:
    return {"space": "kernels", "feature_version": kp.FEATURE_VERSION,
            "kernel_types": list(kp.KERNEL_TYPES),
            "feature_names": {t: list(kp.FEATURE_NAMES[t]) for t in kp.KERNEL_TYPES},
            "act_codes": {str(k): v for k, v in kp.ACT_CODES.items()},
            "elementwise_ops": list(kp.ELEMENTWISE_OPS)}


def _kernel_to_state(predictor: Any) -> dict[str, Any]:
    models = {}
    for ktype, tm in predictor.models_.items():
        models[ktype] = {
            "n_train": tm.n_train, "selection": tm.selection,
            "baseline": {"coef": _floats(tm.baseline.coef),
                         "intercept": float(tm.baseline.intercept)},
            "ensemble": _trees_to_state(tm.ensemble)}
    params = predictor.get_params()
    params["candidates"] = params["candidates"] or kp.DEFAULT_CANDIDATES
    return {"feature_definition": _kernel_feature_definition(), "hyper_parameters": params,
            "fitted": {"models": models, "n_skipped": predictor.n_skipped_,
                       "train_keys": list(predictor.train_keys_),
                       "types_without_model": predictor.types_without_model_},
            "metrics": {"selection": {t: m["selection"] for t, m in models.items()},
                        **getattr(predictor, "extra_metrics_", {})}}


def _int_array(obj: Any, key: str, where: str) -> np.ndarray:
    raw = _field(obj, key, list, where)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        raise PredictorError(f"predictor file: {where}.{key} must be a list of integers")
    return np.asarray(raw, dtype=np.int64)


def _kernel_from_state(kind: str, payload: dict[str, Any]) -> Any:
    fdef = _field(payload, "feature_definition", dict, "payload")
    if fdef != _kernel_feature_definition():
        raise PredictorError(
            "predictor file: the kernel feature definition (feature_version "
            f"{fdef.get('feature_version')!r}, feature names, codes) differs from this hwsim's "
            f"(feature_version {kp.FEATURE_VERSION}); refit the kernel predictor")
    hyper = _field(payload, "hyper_parameters", dict, "payload")
    if set(hyper) != set(kp.KernelLatencyPredictor._param_names):
        raise PredictorError(f"predictor file: hyper_parameters {sorted(hyper)} do not match "
                             f"{sorted(kp.KernelLatencyPredictor._param_names)}")
    predictor = kp.KernelLatencyPredictor(**hyper)
    predictor._check_params()
    fitted = _field(payload, "fitted", dict, "payload")
    models = {}
    for ktype, m in _field(fitted, "models", dict, "fitted").items():
        where = f"fitted.models.{ktype}"
        if ktype not in kp.KERNEL_TYPES:
            raise PredictorError(f"predictor file: {where}: unknown kernel type")
        n_feat = len(kp.FEATURE_NAMES[ktype])
        base = _field(m, "baseline", dict, where)
        coef = _array(base, "coef", f"{where}.baseline")
        if coef.size != n_feat:
            raise PredictorError(f"predictor file: {where}.baseline.coef has {coef.size} "
                                 f"entries, expected {n_feat}")
        ens = _trees_from_state(_field(m, "ensemble", dict, where), f"{where}.ensemble",
                                n_feat)
        models[ktype] = kp.TypeModel(
            ktype, kp.LogLinearBaseline(coef, _field(base, "intercept", float,
                                                     f"{where}.baseline")),
            ens, _field(m, "n_train", int, where), _field(m, "selection", dict, where))
    if not models:
        raise PredictorError("predictor file: no kernel type models")
    predictor.models_ = models
    predictor.n_skipped_ = _field(fitted, "n_skipped", int, "fitted")
    train_keys = _field(fitted, "train_keys", list, "fitted")
    if not all(isinstance(k, str) for k in train_keys):
        raise PredictorError("predictor file: fitted.train_keys must be strings")
    predictor.train_keys_ = tuple(train_keys)
    predictor.types_without_model_ = _field(fitted, "types_without_model", dict, "fitted")
    predictor.extra_metrics_ = {k: v for k, v in _field(payload, "metrics", dict,
                                                        "payload").items() if k != "selection"}
    return predictor


_CODECS: dict[str, tuple[Callable[[Any], dict[str, Any]], Callable[[str, dict], Any]]] = {
    kind: (_arch_to_state, _arch_from_state) for kind in ESTIMATORS
}
_CODECS[KERNEL_KIND] = (_kernel_to_state, _kernel_from_state)


def _kind_of(predictor: Any) -> str:
    for kind, cls in ESTIMATORS.items():
        if type(predictor) is cls:
            return kind
    if type(predictor) is kp.KernelLatencyPredictor:
        return KERNEL_KIND
    raise PredictorError(f"cannot save a {type(predictor).__name__}: no file format for it")


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib import metadata

    try:
        hwsim_version = metadata.version("hwsim")
    except metadata.PackageNotFoundError:
        hwsim_version = "unknown"
    return {"hwsim": hwsim_version, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version()}


def save_predictor(path: str | os.PathLike, predictor: Any, *, target_column: str,
                   summary: dict[str, Any] | None = None) -> Path:
    """Write a fitted predictor to ``path`` atomically (temporary file + ``os.replace``).

    ``summary``: extra JSON-able facts about the training data (file names, ...) merged into
    ``training_summary``.
    """
    if not (hasattr(predictor, "components_") or hasattr(predictor, "models_")):
        raise PredictorError("cannot save an unfitted predictor; call fit() first")
    kind = _kind_of(predictor)
    state = _CODECS[kind][0](predictor)
    if kind == KERNEL_KIND:
        training_summary = {
            "n_rows": sum(m.n_train for m in predictor.models_.values()),
            "rows_per_type": {t: m.n_train for t, m in predictor.models_.items()},
            "n_skipped_block_keys": predictor.n_skipped_, "target_column": str(target_column),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions()}
        training_summary.update(summary or {})
        return _write_document(path, {"kind": kind, **state,
                                      "training_summary": training_summary})
    table = predictor.source_table_
    training_summary = {
        "n_rows": predictor.n_train_ + predictor.n_dropped_degenerate_,
        "n_used": predictor.n_train_,
        "n_dropped_degenerate": predictor.n_dropped_degenerate_,
        "target_column": str(target_column),
        "source_columns": [] if table is None else list(table.devices),
        "n_source_architectures": 0 if table is None else int(len(table.keys)),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    training_summary.update(summary or {})
    return _write_document(path, {"kind": kind, **state, "training_summary": training_summary})


def _write_document(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    try:
        document = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                    "sha256": _digest(payload), "payload": payload}
        text = json.dumps(document, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise PredictorError(f"predictor cannot be written as JSON: {err}") from None
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model/CSV file is meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def read_predictor_document(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and verify a predictor file; returns the payload dict (checksum verified)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PredictorError(f"predictor file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PredictorError(f"cannot read predictor file {p}: {err}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise PredictorError(
            f"predictor file {p} is not valid JSON (truncated or corrupted?): {err}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise PredictorError(f"{p} is not an hwsim latency predictor file (format field)")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise PredictorError(f"predictor file {p}: format_version missing or not an integer")
    if version > FORMAT_VERSION:
        raise PredictorError(
            f"predictor file {p} has format_version {version}; this hwsim reads up to "
            f"{FORMAT_VERSION}; upgrade hwsim")
    if version < 1:
        raise PredictorError(f"predictor file {p}: invalid format_version {version}")
    payload = document.get("payload")
    checksum = document.get("sha256")
    if not isinstance(payload, dict) or not isinstance(checksum, str):
        raise PredictorError(f"predictor file {p}: payload or sha256 missing")
    try:
        actual = _digest(payload)
    except ValueError as err:
        raise PredictorError(f"predictor file {p}: payload not canonical JSON ({err})") from None
    if actual != checksum:
        raise PredictorError(
            f"predictor file {p} failed its SHA-256 check (stored {checksum[:16]}..., computed "
            f"{actual[:16]}...): it was modified or corrupted after saving; refit or restore it")
    return payload


def load_predictor(path: str | os.PathLike) -> Any:
    """Load a predictor saved by :func:`save_predictor`; raises PredictorError on any defect."""
    payload = read_predictor_document(path)
    kind = payload.get("kind")
    if kind not in _CODECS:
        raise PredictorError(
            f"predictor file {path}: unknown predictor kind {kind!r} (known: "
            f"{', '.join(sorted(_CODECS))})")
    try:
        return _CODECS[kind][1](kind, payload)
    except PredictorError as err:
        raise PredictorError(f"{path}: {err}") from None
