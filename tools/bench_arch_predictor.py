"""Leave-one-device-out benchmark of the few-shot architecture latency predictors (issue 5).

For each space (NB201, FBNet) and each device column of ``../shared/data/latency/<space>.csv``:
that device is the new ("target") one, the other columns are the source devices. N target
architectures (N = 10, 50, 100, 900; ``--seeds`` random draws each, uniform over the whole space,
degenerate rows included -- the predictors drop them as documented) train the predictor; every
other architecture of the space is the test set (HELP protocol: the source devices' latencies of
all architectures are the hardware side; the test architectures' target latencies are never
used). Metrics after the degenerate-row rule of ``hwsim.latency.metrics``.

Variants:
- ``all``: every other device is a source.
- ``strict``: source devices of the target's family are dropped as well. Family rule: the column
  name up to its first ``_`` (``1080ti``, ``titanx``, ``samsung``, ``silver``, ``gold``,
  ``pixel3``, ``essential``), i.e. the same GPU model at other batch sizes, the same phone maker,
  the same Xeon line.

Methods side by side: ``ridge`` = :class:`SourceRidgePredictor` (the issue's baseline),
``fewshot`` = :class:`FewShotLatencyPredictor` and ``cvsel`` =
:class:`CrossValidatedLatencyPredictor` (the CLI's default). Also printed: the measurement-noise
context for NB201 (agreement of isomorphic architecture twins, which compute the same ops) and
the time of ``predict`` on all 15,625 NB201 architectures (also for a model whose
cross-validation chose the residual-tree candidate, which is tried from 200 rows).

Half-space reference (``--half-space``, or alone with ``--half-space-only``): per target
device, the space is split at random into two halves; a model trained on one half's target
latencies (about 7,800 NB201 / 2,500 FBNet architectures, not N) is tested on the other half.
Two models: ``cvsel`` (the CLI's predictor, sources from the other devices as above) and
``gbm`` (scikit-learn ``HistGradientBoostingRegressor`` of log latency on the architecture
features plus the source devices' log latencies: flexible, no additivity assumed). What they
reach is a reference for the few-shot targets: a predictor trained on N = 10 or 100 rows is not
expected to beat one trained on half the space, so a target above this reference asks more than
the measurements carry (noise, whole-millisecond recording). With it, the row-order context of
the gbm's test residuals (``order_drift_context``): how much of its error follows the order of
the rows in the file, i.e. drift over the time of measurement if that is the measurement order.

Usage: python tools/bench_arch_predictor.py [--seeds 3] [--out bench_arch_predictor.csv]
                                            [--plot bench_arch_predictor.png]
       python tools/bench_arch_predictor.py --plot-from bench_arch_predictor.csv --plot P.png
       python tools/bench_arch_predictor.py --half-space-only

``--plot``: mean Spearman and mean +-10% accuracy over target devices vs N, per space and
method (variant ``all``), with issue 5's targets dotted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.ensemble import HistGradientBoostingRegressor

from hwsim.emulate.dump import save_png_atomic
from hwsim.latency import arch_encoding
from hwsim.latency.arch_predictor import (
    CrossValidatedLatencyPredictor,
    FewShotLatencyPredictor,
    SourceRidgePredictor,
    SourceTable,
)
from hwsim.latency.measurement_drift import (
    DEFAULT_DRIFT_WINDOW,
    lag1_autocorrelation,
    neighbour_mean,
    order_drift,
)
from hwsim.latency.metrics import degenerate_mask, latency_metrics

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "latency"
NS = (10, 50, 100, 900)
METHODS = {"ridge": SourceRidgePredictor, "fewshot": FewShotLatencyPredictor,
           "cvsel": CrossValidatedLatencyPredictor}


def family(column: str) -> str:
    return column.split("_")[0]


def load_space(data: Path, space: str) -> tuple[np.ndarray | list, pd.DataFrame]:
    frame = pd.read_csv(data / f"{space}.csv")
    arch_cols = list(arch_encoding.ARCH_COLUMNS[space])
    archs = frame["arch_str"].tolist() if space == "nb201" else frame[arch_cols].to_numpy()
    devices = [c for c in frame.columns if c not in arch_cols and c != "arch_idx"]
    return archs, frame[devices]


def subset(archs, idx: np.ndarray):
    return [archs[i] for i in idx] if isinstance(archs, list) else archs[idx]


def run_space(space: str, archs, lat: pd.DataFrame, seeds: int, ns: tuple[int, ...] = NS,
              variants: tuple[str, ...] = ("all", "strict")) -> list[dict]:
    rows = []
    n = len(lat)
    for variant in variants:
        for target in lat.columns:
            sources = [c for c in lat.columns if c != target
                       and (variant == "all" or family(c) != family(target))]
            table = SourceTable.from_archs(space, archs, lat[sources].to_numpy(), sources)
            y = lat[target].to_numpy(dtype=np.float64)
            for n_train in ns:
                for seed in range(seeds):
                    rng = np.random.default_rng([seed, n_train])
                    train = rng.choice(n, size=n_train, replace=False)
                    test = np.setdiff1d(np.arange(n), train)
                    for method, cls in METHODS.items():
                        model = cls(space=space).fit(subset(archs, train), y[train], source=table)
                        pred = model.predict(subset(archs, test))
                        m = latency_metrics(y[test], pred)
                        rows.append({"space": space, "variant": variant, "target": target,
                                     "n_sources": len(sources), "N": n_train, "seed": seed,
                                     "method": method, "spearman": m.spearman, "acc10": m.acc10,
                                     "rmspe_pct": m.rmspe_pct, "n_test": m.n_used,
                                     "n_test_dropped": m.n_dropped})
    return rows


def half_space_reference(space: str, archs, lat: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per target device: Spearman and +-10% of models trained on a random half of the space
    (target latencies of that half, every other device as source), tested on the other half."""
    n = len(lat)
    order = np.random.default_rng([seed, n]).permutation(n)
    train, test = np.sort(order[: n // 2]), np.sort(order[n // 2:])
    feats = arch_encoding.encode(space, archs)
    rows = []
    for target in lat.columns:
        sources = [c for c in lat.columns if c != target]
        src = lat[sources].to_numpy(dtype=np.float64)
        table = SourceTable.from_archs(space, archs, src, sources)
        y = lat[target].to_numpy(dtype=np.float64)
        model = CrossValidatedLatencyPredictor(space=space).fit(
            subset(archs, train), y[train], source=table)
        cv = latency_metrics(y[test], model.predict(subset(archs, test)))
        keep = train[degenerate_mask(y[train])]
        # a source's degenerate (zero) recordings enter as log(1e-6), a value no real row has
        z = np.hstack([feats, np.log(np.maximum(src, 1e-6))])
        gbm = HistGradientBoostingRegressor(max_iter=400, random_state=seed).fit(
            z[keep], np.log(y[keep]))
        gb_pred = np.exp(gbm.predict(z[test]))
        gb = latency_metrics(y[test], gb_pred)
        rows.append({"target": target, "n_train": int(keep.size),
                     "cvsel_rho": cv.spearman, "cvsel_acc10": cv.acc10,
                     "gbm_rho": gb.spearman, "gbm_acc10": gb.acc10,
                     "best_rho": max(cv.spearman, gb.spearman),
                     "best_acc10": max(cv.acc10, gb.acc10),
                     **order_drift_context(y[test], gb_pred)})
    return pd.DataFrame(rows).set_index("target")


def order_drift_context(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Row-order statistics of one model's test residuals (rows in file order, which for the
    shared data is arch_idx order, presumably the order of measurement): ``lat_lag1`` is the
    lag-1 autocorrelation of the measured log latencies themselves (about 0: the architectures
    are in no particular order), ``resid_lag1`` / ``drift_share`` those of
    :func:`hwsim.latency.measurement_drift.order_drift`. ``drift_acc10`` / ``drift_rho``: the
    model's predictions times ``exp(neighbour mean of the residuals)`` -- NOT a predictor (it
    reads the neighbouring test rows' measurements); the gain over the model is the error that
    follows the row order, which no architecture-level predictor can remove."""
    keep = degenerate_mask(y)
    t, p = y[keep], pred[keep]
    drift = order_drift(t, p, DEFAULT_DRIFT_WINDOW)
    corrected = p * np.exp(neighbour_mean(np.log(t) - np.log(p), DEFAULT_DRIFT_WINDOW))
    m = latency_metrics(t, corrected)
    return {"lat_lag1": lag1_autocorrelation(np.log(t)),
            "resid_lag1": drift.lag1_autocorr, "drift_share": drift.drift_share,
            "drift_rho": m.spearman, "drift_acc10": m.acc10}


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    per_device = results.groupby(["space", "variant", "N", "method", "target"])[
        ["spearman", "acc10"]].mean()
    grouped = per_device.groupby(["space", "variant", "N", "method"])
    table = pd.concat({"rho_mean": grouped["spearman"].mean(),
                       "rho_worst": grouped["spearman"].min(),
                       "acc10_mean": grouped["acc10"].mean(),
                       "acc10_worst": grouped["acc10"].min()}, axis=1)
    return table.unstack("method").swaplevel(0, 1, axis=1).sort_index(axis=1)


def nb201_twin_agreement(archs: list, lat: pd.DataFrame) -> pd.DataFrame:
    """Test-retest agreement of isomorphic NB201 twins, per device: the share measured within
    10% of each other, and the Spearman rho between the two twins' latencies over all pairs.

    With edge 1->2 = none, swapping nodes 1 and 2 (edges 0->1 <-> 0->2, 1->3 <-> 2->3) gives a
    cell computing the same ops; the two measurements differ only by measurement noise. Under
    classical test theory a noise-free predictor's rho against one measurement is about
    sqrt(twin rho): the ceiling any predictor can reach against these measurements.

    ``ceiling_acc10_*``: the +-10% accuracy of a noise-free predictor if the log-noise of one
    measurement is normal with the standard deviation estimated from the twins' log ratios
    (``mad``: 1.4826 x median absolute deviation / sqrt(2), robust to outliers; ``sd``: standard
    deviation / sqrt(2), counts heavy tails). A model-based estimate, not a bound.
    """
    codes = arch_encoding.nb201_codes(archs)
    index = {tuple(c): i for i, c in enumerate(codes.tolist())}
    pairs = []
    for i, c in enumerate(codes.tolist()):
        if c[2] == 0:
            twin = (c[1], c[0], 0, c[3], c[5], c[4])
            j = index.get(twin)
            if j is not None and j > i:
                pairs.append((i, j))
    pairs_arr = np.array(pairs)
    out = {}
    for col in lat.columns:
        v = lat[col].to_numpy(dtype=np.float64)
        a, b = v[pairs_arr[:, 0]], v[pairs_arr[:, 1]]
        floor = 0.05 * np.median(v)
        ok = (a >= floor) & (b >= floor)
        rho = float(pd.Series(a[ok]).corr(pd.Series(b[ok]), method="spearman"))
        d = np.log(a[ok] / b[ok])
        sigma = {"mad": 1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0),
                 "sd": d.std() / np.sqrt(2.0)}
        out[col] = {"within_10pct": float(np.mean(np.abs(a[ok] / b[ok] - 1.0) <= 0.10)),
                    "twin_spearman": rho, "ceiling_spearman": float(np.sqrt(max(rho, 0.0)))}
        for name, sig in sigma.items():
            out[col][f"ceiling_acc10_{name}"] = (
                1.0 if sig <= 0 else float(2.0 * norm.cdf(np.log(1.1) / sig) - 1.0))
    frame = pd.DataFrame(out).T
    frame.index.name = f"device (n_pairs={len(pairs)})"
    return frame


def time_predict(archs: list, lat: pd.DataFrame, repeats: int = 5) -> dict[str, float]:
    """Median seconds of ``predict`` on every architecture, per method (fitted on N = 100)."""
    target = lat.columns[0]
    sources = list(lat.columns[1:])
    table = SourceTable.from_archs("nb201", archs, lat[sources].to_numpy(), sources)
    rng = np.random.default_rng(0)
    train = rng.choice(len(archs), size=100, replace=False)
    src_cols = lat[sources].to_numpy()
    times = {}
    for method in ("fewshot", "cvsel"):
        model = METHODS[method](space="nb201").fit(
            subset(archs, train), lat[target].to_numpy()[train], source=table)
        for name, kwargs in (("stored_table", {}),
                             ("source_columns", {"source_latency_ms": src_cols})):
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model.predict(archs, **kwargs)
                samples.append(time.perf_counter() - t0)
            times[f"{method}, {name}"] = float(np.median(samples))
    # the residual-tree candidate is only tried from 200 rows: time a model that chose it
    train = rng.choice(len(archs), size=900, replace=False)
    for target in lat.columns:
        sources = [c for c in lat.columns if c != target]
        table = SourceTable.from_archs("nb201", archs, lat[sources].to_numpy(), sources)
        model = CrossValidatedLatencyPredictor(space="nb201").fit(
            subset(archs, train), lat[target].to_numpy()[train], source=table)
        if model.selection_["chosen"].startswith("log_blend + trees("):
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model.predict(archs)
                samples.append(time.perf_counter() - t0)
            times[f"cvsel with trees (N = 900, {target}), stored_table"] = float(
                np.median(samples))
            break
    else:
        times["cvsel with trees: no device chose them at N = 900"] = float("nan")
    return times


def plot_results(results: pd.DataFrame, path: Path) -> None:
    """PNG: per space, mean over target devices (variant ``all``) of Spearman and +-10%
    accuracy vs N for each method; issue 5's targets dotted. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = results[results.variant == "all"]
    per_dev = data.groupby(["space", "method", "N", "target"])[["spearman", "acc10"]].mean()
    mean = per_dev.groupby(["space", "method", "N"]).mean().reset_index()
    spaces = sorted(mean.space.unique())
    fig, axes = plt.subplots(len(spaces), 2, figsize=(9, 3.2 * len(spaces)), squeeze=False)
    for row, space in zip(axes, spaces, strict=True):
        for ax, metric, label, (t_n, t_v) in (
                (row[0], "spearman", "mean Spearman rho", (10, 0.97)),
                (row[1], "acc10", "mean +-10% accuracy", (100, 0.90))):
            for method, grp in mean[mean.space == space].groupby("method"):
                ax.plot(grp.N, grp[metric], "o-", label=method)
            ax.axhline(t_v, color="C3", ls=":", lw=0.8)
            ax.axvline(t_n, color="C3", ls=":", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlabel("N (target-device architectures measured)")
            ax.set_ylabel(label)
            ax.set_title(f"{space}: leave-one-device-out (target: dotted)", fontsize=9)
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_png_atomic(path, fig, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--spaces", default="nb201,fbnet")
    parser.add_argument("--out", type=Path, default=Path("bench_arch_predictor.csv"))
    parser.add_argument("--half-space", action="store_true",
                        help="also print the half-space reference (see the module doc)")
    parser.add_argument("--half-space-only", action="store_true",
                        help="print only the half-space reference")
    parser.add_argument("--ns", default=",".join(map(str, NS)),
                        help="training-set sizes N, comma-separated (default %(default)s); "
                             "the draws of each N do not depend on the others")
    parser.add_argument("--variants", default="all,strict",
                        help="source-device variants: all (every other device) and/or strict "
                             "(other device families only)")
    parser.add_argument("--plot", type=Path, help="also write a PNG of the results")
    parser.add_argument("--plot-from", type=Path,
                        help="plot a CSV written by an earlier run (needs --plot); no fitting")
    args = parser.parse_args(argv)
    try:
        ns = tuple(int(v) for v in args.ns.split(","))
    except ValueError:
        parser.error(f"--ns must be comma-separated integers, got {args.ns!r}")
    variants = tuple(args.variants.split(","))
    if not variants or set(variants) - {"all", "strict"}:
        parser.error(f"--variants must be all and/or strict, got {args.variants!r}")
    if args.plot_from is not None:
        if args.plot is None:
            parser.error("--plot-from needs --plot PNG")
        plot_results(pd.read_csv(args.plot_from), args.plot)
        print(f"wrote {args.plot}")
        return 0
    if not (args.data / "nb201.csv").exists():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    pd.set_option("display.width", 200)
    t0 = time.perf_counter()
    if args.half_space or args.half_space_only:
        for space in args.spaces.split(","):
            archs, lat = load_space(args.data, space)
            ref = half_space_reference(space, archs, lat)
            print(f"{space}: half-space reference (train on a random half, test on the other)")
            print(ref.round(3).to_string())
            print(f"mean: {ref.drop(columns='n_train').mean().round(3).to_dict()}")
            print("(lat_lag1 .. drift_acc10: row-order context of the gbm's test residuals, see "
                  "order_drift_context; drift_* are not predictors)\n")
        if args.half_space_only:
            print(f"{time.perf_counter() - t0:.0f} s")
            return 0
    rows = []
    for space in args.spaces.split(","):
        archs, lat = load_space(args.data, space)
        rows += run_space(space, archs, lat, args.seeds, ns, variants)
    results = pd.DataFrame(rows)
    results.to_csv(args.out, index=False)
    if args.plot is not None:
        plot_results(results, args.plot)
    print(f"leave-one-device-out, {args.seeds} draws per N; per-device mean over draws, then "
          "mean / worst over target devices")
    print(summarise(results).round(3).to_string())
    per_dev = results[results.variant == variants[0]].groupby(
        ["space", "target", "N", "method"])[["spearman", "acc10"]].mean().unstack(
        ["method"]).round(3)
    print(f"\nper target device (variant {variants[0]}):")
    print(per_dev.to_string())
    if "nb201" in args.spaces:
        archs, lat = load_space(args.data, "nb201")
        print("\nNB201 measurement-noise context (isomorphic twins; ceiling = sqrt(twin rho)):")
        twins = nb201_twin_agreement(archs, lat)
        print(twins.round(3).to_string())
        print(f"mean: {twins.mean().round(3).to_dict()}")
        times = time_predict(archs, lat)
        print(f"\npredict on all {len(archs)} NB201 architectures (median of 5): "
              + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items()))
    print(f"\nwrote {args.out} ({len(results)} rows) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
