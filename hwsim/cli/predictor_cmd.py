"""``hwsim predictor fit|predict|eval``: latency predictors from CSV files.

Architecture level (``--space nb201|fbnet``) and kernel level (``--space kernels``, nn-Meter
style, for host measurements). Kernel level: TRAIN.csv / TEST.csv are latency tables
(``hwsim lut build`` output: ``key`` + ``latency_ms`` columns, milliseconds); ARCHS.csv for
``predict`` needs a ``key`` column of canonical kernel keys; PRED.csv gets ``key`` +
``latency_ms``. ``fit --adaptive-rounds R --device host-ort --measured-out M.csv`` adds
nn-Meter's adaptive sampling: configurations next to rows with out-of-fold error > 10 % are
measured on this machine (appended to M.csv, resumable) and the predictor is refitted.

CSV columns follow ``../shared/data/latency/*.csv``: NB201 files have ``arch_str``, FBNet files
``op0``..``op21``; every other numeric column is a device's latency in ms.

Source latencies at ``predict``/``eval`` time: when the CSV has a column for every source device
of the model, those columns are used; when it has none of them, they are looked up by
architecture in the source table stored in the model file (an architecture missing there is an
error). A CSV with only some of the source columns is rejected as ambiguous.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.errors import HwsimError, LatencyError, PredictorError
from hwsim.latency import arch_encoding
from hwsim.latency.arch_predictor import ESTIMATORS, SourceTable
from hwsim.latency.measurement_drift import MIN_ROWS, order_drift
from hwsim.latency.metrics import degenerate_mask, latency_metrics
from hwsim.latency.predictor_io import load_predictor, save_predictor

_NON_DEVICE_COLUMNS = ("arch_idx",)


def _read_csv(path: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise LatencyError(f"{path}: file not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise LatencyError(f"{path}: cannot read CSV ({err})") from None
    if frame.empty:
        raise LatencyError(f"{path}: no data rows")
    return frame


def _archs(frame: pd.DataFrame, space: str, path: str) -> np.ndarray | list:
    columns = arch_encoding.ARCH_COLUMNS[space]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LatencyError(
            f"{path}: missing architecture column(s) {missing[:5]} for space {space!r} "
            f"(expected {columns[0]}..{columns[-1]})")
    archs = frame[columns[0]].tolist() if space == "nb201" else frame[list(columns)].to_numpy()
    try:
        arch_encoding.arch_codes(space, archs)
    except LatencyError as err:
        raise LatencyError(f"{path}: {err}") from None
    return archs


def _latency_column(frame: pd.DataFrame, column: str, path: str) -> np.ndarray:
    if column not in frame.columns:
        raise LatencyError(f"{path}: no column {column!r}; columns are {list(frame.columns)}")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if bad.size:
        i = int(bad[0])
        value = frame[column].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise LatencyError(
            f"{path}: column {column!r} row {i} has {value!r}; need positive "
            f"milliseconds ({bad.size} such rows)")
    return values


def _device_columns(frame: pd.DataFrame, space: str, exclude: set[str]) -> list[str]:
    arch_cols = set(arch_encoding.ARCH_COLUMNS[space])
    return [c for c in frame.columns
            if c not in arch_cols and c not in _NON_DEVICE_COLUMNS and c not in exclude]


def _source_for(model, frame: pd.DataFrame, path: str) -> np.ndarray | None:
    """Source-device latencies from the CSV, or None to use the model's stored table."""
    devices = list(model.source_devices_)
    present = [d for d in devices if d in frame.columns]
    if not devices or not present:
        return None
    if len(present) != len(devices):
        absent = [d for d in devices if d not in frame.columns]
        raise PredictorError(
            f"{path}: has source-device columns {present} but lacks {absent}; give all of "
            f"{devices} or none (then the model's stored source table is used)")
    return np.column_stack([_latency_column(frame, d, path) for d in devices])


def _write_csv(frame: pd.DataFrame, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model/CSV file is meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            frame.to_csv(fh, index=False, float_format="%.6g")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


KERNEL_SPACE = "kernels"


def _kernel_rows(path: str, target: str):  # noqa: ANN202
    """(keys, latency_ms, table) of a latency-table CSV."""
    from hwsim.latency.table import LatencyTable

    target = target or "latency_ms"
    if target != "latency_ms":
        raise LatencyError(f"--space {KERNEL_SPACE}: the target column of a latency table is "
                           f"latency_ms (milliseconds), got {target!r}")
    table = LatencyTable.load(path)
    if not len(table):
        raise LatencyError(f"{path}: no rows")
    rows = list(table)
    return [r.key for r in rows], np.array([r.latency_ms for r in rows]), table


def _load_avg() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "na"


def _cmd_fit_kernels(args: argparse.Namespace) -> int:
    from hwsim.latency.kernel_predictor import KernelLatencyPredictor, adaptive_fit

    keys, y, table = _kernel_rows(args.train, args.target)
    summary = table.summary()
    if len(summary["devices"]) != 1:
        raise LatencyError(f"{args.train}: rows of several devices {summary['devices']}; a "
                           f"kernel predictor is fitted per device")
    predictor = KernelLatencyPredictor(seed=args.seed)
    rounds = []
    load_start = _load_avg()
    if args.adaptive_rounds:
        if not args.device or not args.measured_out:
            raise LatencyError("--adaptive-rounds needs --device (host-ort|host-torch|"
                               "host-cuda) and --measured-out CSV")
        from hwsim.latency.build import build_table
        from hwsim.latency.table import LatencyTable

        def measure(new_keys):  # noqa: ANN001, ANN202
            rep = build_table(args.device, new_keys, args.measured_out, threads=args.threads,
                              progress=not args.no_progress)
            for key, why in rep.failed:
                print(f"  not measured: {key}: {why}", file=sys.stderr)
            measured = LatencyTable.load(args.measured_out)
            return {k: measured.lookup(k).latency_ms for k in new_keys if k in measured}

        predictor, keys, y, rounds = adaptive_fit(
            predictor, keys, y, measure, rounds=args.adaptive_rounds,
            per_round=args.adaptive_per_round)
        for i, r in enumerate(rounds):
            print(f"adaptive round {i + 1}: {r.n_above} of {r.n_rows} rows above 10 % "
                  f"out-of-fold error (+-10 % share {100 * r.share_within:.1f} %); "
                  f"{r.n_proposed} neighbours proposed, {r.n_measured} measured")
    else:
        predictor.fit(keys, y)
    info = {"train_file": os.path.basename(args.train), "device": summary["devices"][0],
            "backends": summary["backends"], "threads": summary["threads"],
            "methods": summary["methods"], "sources": summary["sources"],
            "adaptive_rounds": [vars(r) for r in rounds],
            "measured_file": os.path.basename(args.measured_out) if args.measured_out else None,
            "load_average_at_fit": {"start": load_start, "end": _load_avg()}}
    save_predictor(args.out, predictor, target_column=args.target or "latency_ms",
                   summary=info)
    for ktype, tm in predictor.models_.items():
        sel = tm.selection
        scores = ", ".join(f"{m} {100 * v['acc10']:.1f} %" for m, v in sel["heldout"].items())
        print(f"  {ktype:12s} {tm.n_train:5d} rows  chosen {sel['chosen']:17s} "
              f"(held-out +-10 %: {scores})")
    if predictor.types_without_model_:
        print(f"  no model (too few rows): {predictor.types_without_model_}")
    print(f"wrote {args.out}")
    return 0


def _key_column(frame: pd.DataFrame, path: str) -> list:
    from hwsim.latency.op_key import OpKey

    if "key" not in frame.columns:
        raise LatencyError(f"{path}: needs a 'key' column of canonical kernel keys")
    out = []
    for i, text in enumerate(frame["key"].astype(str)):
        try:
            out.append(OpKey.parse(text))
        except LatencyError as err:
            raise LatencyError(f"{path}: row {i}: {err}") from None
    return out


def _cmd_predict_kernels(args: argparse.Namespace, model) -> int:  # noqa: ANN001
    frame = _read_csv(args.archs)
    keys = _key_column(frame, args.archs)
    latency = model.predict(keys)
    _write_csv(pd.DataFrame({"key": [str(k) for k in keys], "latency_ms": latency}), args.out)
    print(f"predicted {len(keys)} kernels -> {args.out}")
    return 0


def _cmd_eval_kernels(args: argparse.Namespace, model) -> int:  # noqa: ANN001
    from hwsim.latency.kernel_predictor import kernel_type

    keys, y, _ = _kernel_rows(args.test, args.target)
    keep = [i for i, k in enumerate(keys) if kernel_type(k) is not None]
    skipped = len(keys) - len(keep)
    if not args.include_train:
        train = set(model.train_keys_)
        held = [i for i in keep if str(keys[i]) not in train]
        print(f"held out: {len(keep) - len(held)} training configurations excluded, "
              f"{len(held)} evaluated (use --include-train to keep them)")
        keep = held
    uncovered = [i for i in keep if not model.covers(keys[i])]
    keep = [i for i in keep if model.covers(keys[i])]
    if skipped or uncovered:
        print(f"not scored: {skipped} block keys, {len(uncovered)} kernels of types without a "
              f"model")
    if len(keep) < 2:
        raise PredictorError(f"{args.test}: fewer than 2 kernels left to evaluate")
    pred = model.predict([keys[i] for i in keep])
    true = y[keep]
    m = latency_metrics(true, pred, 0.0)
    print(f"kernels {m.n_used}: RMSE {m.rmse_ms:.4f} ms  RMSPE {m.rmspe_pct:.3f}%  "
          f"+-5% {100 * m.acc5:.2f}%  +-10% {100 * m.acc10:.2f}%  +-15% {100 * m.acc15:.2f}%  "
          f"Spearman {m.spearman:.4f}")
    types = np.array([kernel_type(keys[i]) for i in keep])
    for t in sorted(set(types)):
        sel = types == t
        acc = float(np.mean(np.abs(pred[sel] - true[sel]) / true[sel] <= 0.10 + 1e-12))
        print(f"  {t:12s} {int(sel.sum()):5d} kernels  +-10% {100 * acc:.2f}%")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    if args.space == KERNEL_SPACE:
        return _cmd_fit_kernels(args)
    if args.target is None:
        raise LatencyError(f"--target COLUMN is required for --space {args.space}")
    space = args.space
    train = _read_csv(args.train)
    archs = _archs(train, space, args.train)
    y = _latency_column(train, args.target, args.train)
    source = None
    if args.source:
        src = _read_csv(args.source)
        src_archs = _archs(src, space, args.source)
        if args.source_devices:
            devices = [d.strip() for d in args.source_devices.split(",") if d.strip()]
            if args.target in devices:
                raise LatencyError(
                    f"--source-devices includes the target column {args.target!r}: the target's "
                    "latencies of the whole space would leak into the model")
        else:
            devices = _device_columns(src, space, {args.target})
        if not devices:
            raise LatencyError(f"{args.source}: no source-device columns besides the target")
        lat = np.column_stack([_latency_column(src, d, args.source) for d in devices])
        try:
            source = SourceTable.from_archs(space, src_archs, lat, devices)
        except HwsimError as err:
            raise PredictorError(f"{args.source}: {err}") from None
    options = {}
    if args.tree_min_rows is not None:
        if args.kind != "cv_select":
            raise LatencyError(f"--tree-min-rows applies to --kind cv_select, not {args.kind}")
        text = args.tree_min_rows.strip().lower()
        try:
            options["tree_min_rows"] = None if text == "none" else int(text)
        except ValueError:
            raise LatencyError(f"--tree-min-rows must be an integer or 'none', got "
                               f"{args.tree_min_rows!r}") from None
    if args.tree_counts is not None:
        if args.kind != "cv_select":
            raise LatencyError(f"--tree-counts applies to --kind cv_select, not {args.kind}")
        try:
            options["tree_counts"] = tuple(int(v) for v in args.tree_counts.split(","))
        except ValueError:
            raise LatencyError(f"--tree-counts must be comma-separated integers, got "
                               f"{args.tree_counts!r}") from None
    predictor = ESTIMATORS[args.kind](space=space, **options)
    try:
        predictor.fit(archs, y, source=source)
    except HwsimError as err:
        raise PredictorError(f"fitting on {args.train}: {err}") from None
    save_predictor(args.out, predictor, target_column=args.target, summary={
        "train_file": os.path.basename(args.train),
        "source_file": os.path.basename(args.source) if args.source else None})
    cv = predictor.cv_metrics_
    print(f"fitted {args.kind} ({space}) on {predictor.n_train_} architectures of "
          f"{args.target!r} ({predictor.n_dropped_degenerate_} degenerate rows dropped)")
    print(f"source devices: {', '.join(predictor.source_devices_) or '(none)'}")
    selection = getattr(predictor, "selection_", None)
    if selection is not None:
        penalty = (f" (penalty {selection['chosen_penalty']:g})"
                   if selection["chosen"].startswith("additive:sources+") else "")
        print(f"chosen by {selection['n_folds']}-fold cross-validation (one-standard-error "
              f"rule): {selection['chosen']}{penalty}")
        for r in selection.get("rejected_zero_latency", []):
            print(f"passed over: {r['name']} (penalty {r['penalty']:g}) would predict a "
                  "degenerate latency (near 0 ms) for some architecture of the space")
    how = "cross-validated" if selection is not None else "leave-one-out"
    print(f"{how} on training rows: spearman {cv.spearman:.4f}, "
          f"+-10% accuracy {100 * cv.acc10:.1f}%, RMSPE {cv.rmspe_pct:.2f}%")
    print(f"wrote {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    model = load_predictor(args.model)
    if hasattr(model, "predict_key"):
        return _cmd_predict_kernels(args, model)
    frame = _read_csv(args.archs)
    archs = _archs(frame, model.space, args.archs)
    source = _source_for(model, frame, args.archs)
    try:
        latency = model.predict(archs, source)
    except HwsimError as err:
        raise PredictorError(f"{args.archs}: {err}") from None
    out = frame[list(arch_encoding.ARCH_COLUMNS[model.space])].copy()
    out["latency_ms"] = latency
    _write_csv(out, args.out)
    print(f"predicted {len(out)} architectures -> {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    model = load_predictor(args.model)
    if hasattr(model, "predict_key"):
        return _cmd_eval_kernels(args, model)
    if args.target is None:
        raise LatencyError("--target COLUMN is required for architecture-level predictors")
    frame = _read_csv(args.test)
    archs = _archs(frame, model.space, args.test)
    y = _latency_column(frame, args.target, args.test)
    if args.target in model.source_devices_:
        raise PredictorError(
            f"{args.target!r} is one of the model's source devices; evaluate on its target")
    source = _source_for(model, frame, args.test)
    keep = np.ones(len(frame), dtype=bool)
    if not args.include_train:
        keys = arch_encoding.arch_keys(model.space, archs)
        keep = ~np.isin(keys, np.asarray(model.train_keys_, dtype=str))
        print(f"held out: {int((~keep).sum())} training architectures excluded, "
              f"{int(keep.sum())} evaluated (use --include-train to keep them)")
        if keep.sum() < 2:
            raise PredictorError(f"{args.test}: fewer than 2 rows left after excluding the "
                                 "training architectures")
    sel = np.flatnonzero(keep)
    archs_kept = [archs[i] for i in sel] if model.space == "nb201" else archs[sel]
    try:
        pred = model.predict(archs_kept, None if source is None else source[sel])
    except HwsimError as err:
        raise PredictorError(f"{args.test}: {err}") from None
    m = latency_metrics(y[sel], pred, model.min_fraction_of_median)
    print(f"rows used {m.n_used}, degenerate dropped {m.n_dropped} "
          f"(true latency < {model.min_fraction_of_median:g} x median)")
    print(f"RMSE {m.rmse_ms:.4f} ms  RMSPE {m.rmspe_pct:.3f}%")
    print(f"+-5% {100 * m.acc5:.2f}%  +-10% {100 * m.acc10:.2f}%  +-15% {100 * m.acc15:.2f}%")
    print(f"Spearman rho {m.spearman:.4f}  Kendall tau {m.kendall:.4f}")
    _print_order_drift(y[sel], pred, model.min_fraction_of_median)
    return 0


def _print_order_drift(y: np.ndarray, pred: np.ndarray, min_fraction_of_median: float) -> None:
    keep = degenerate_mask(y, min_fraction_of_median)
    n = int(keep.sum())
    if n < MIN_ROWS:
        print(f"drift check skipped: needs {MIN_ROWS} rows, {n} evaluated")
        return
    d = order_drift(y[keep], pred[keep])
    print(f"residuals in row order (drift over time, if the rows are in measurement order): "
          f"lag-1 autocorrelation {d.lag1_autocorr:.3f} (|r| < {d.white_noise_band:.3f} "
          f"expected without drift), {100 * d.drift_share:.1f}% of the log-residual variance "
          f"follows the {d.window}-row neighbourhood")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predictor", help="fit / apply / evaluate architecture-level latency predictors",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="predictor_command", metavar="ACTION", required=True)

    fit = verbs.add_parser("fit", help="fit a predictor on a target device's measurements")
    fit.add_argument("--space", required=True, choices=(*arch_encoding.SPACES, KERNEL_SPACE),
                     help="architecture space, or 'kernels' (kernel-level, host measurements)")
    fit.add_argument("--train", required=True,
                     help="CSV: architecture columns + target column (kernels: a latency table)")
    fit.add_argument("--target", default=None,
                     help="target device column (latency, ms); kernels: latency_ms (default)")
    fit.add_argument("--source", help="CSV: architectures x other devices' latencies (ms)")
    fit.add_argument("--source-devices",
                     help="comma-separated source columns (default: every column of --source "
                          "except architecture columns, arch_idx and the target)")
    fit.add_argument("--kind", choices=sorted(ESTIMATORS), default="cv_select",
                     help="estimator (default cv_select: non-negative additive models or the "
                          "log-linear few_shot_blend, chosen by cross-validation; source_ridge "
                          "is the baseline)")
    fit.add_argument("--tree-min-rows", default=None,
                     help="cv_select: fewest training rows at which the 'log_blend + trees' "
                          "candidate (gradient-boosted residual trees) is tried (default 200; "
                          "'none': never)")
    fit.add_argument("--tree-counts", default=None,
                     help="cv_select: comma-separated numbers of residual trees; "
                          "cross-validation picks one (default 25,50,100,200,400,800)")
    fit.add_argument("--out", required=True, help="model file to write (JSON)")
    fit.add_argument("--seed", type=int, default=0, help="kernels: random seed")
    fit.add_argument("--adaptive-rounds", type=int, default=0,
                     help="kernels: rounds of adaptive sampling (measures on --device)")
    fit.add_argument("--adaptive-per-round", type=int, default=60,
                     help="kernels: new configurations per round (default 60)")
    fit.add_argument("--device", help="kernels: host backend that measures adaptive samples")
    fit.add_argument("--measured-out", help="kernels: CSV the adaptive samples go to "
                                            "(resumable)")
    fit.add_argument("--threads", type=int, default=1, help="kernels: measurement threads")
    fit.add_argument("--no-progress", action="store_true")
    fit.set_defaults(func=_cmd_fit)

    pred = verbs.add_parser("predict", help="predict latency_ms for architectures")
    pred.add_argument("--model", required=True)
    pred.add_argument("--archs", required=True, help="CSV with architecture columns")
    pred.add_argument("--out", required=True, help="CSV to write: architecture columns + "
                                                   "latency_ms")
    pred.set_defaults(func=_cmd_predict)

    ev = verbs.add_parser("eval", help="print accuracy metrics against measured latencies")
    ev.add_argument("--model", required=True)
    ev.add_argument("--test", required=True, help="CSV: architecture columns + target column")
    ev.add_argument("--target", default=None,
                    help="target column (kernels: latency_ms, the default)")
    ev.add_argument("--include-train", action="store_true",
                    help="also score the architectures the model was trained on")
    ev.set_defaults(func=_cmd_eval)
