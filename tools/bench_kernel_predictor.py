"""Kernel-level latency predictors on host measurements (issue 5, kernel part).

Measured on this machine with ONNX Runtime CPU (``host-ort``, the table's threads and method):

0. **random training configurations** (``--train-random-n``): nn-Meter starts from configurations
   sampled at random, not from a grid; that many random configurations (another seed than the
   held-out ones) are measured into the table first (resumable) and are training rows.
1. **table split**: the kernel rows of the table (``--table``, default the shipped
   ``lut/host-ort.csv``) are split at random, 80 % train / 20 % held out; a predictor fitted on
   the 80 % is scored on the 20 %.
2. **off-grid held-out configurations**: ``--heldout-n`` random kernel configurations
   (``kernel_predictor.random_kernel_keys``: channels any multiple of 4, not the table's grid)
   are measured into ``--heldout-table`` (resumable) and never used for training; a predictor
   fitted on all table rows is scored on them.
3. **adaptive sampling** (``--adaptive-rounds R``): nn-Meter's loop, configurations next to
   table rows with out-of-fold error > 10 % are measured and appended to ``--adaptive-out``
   (default: the table itself, resumable), the predictor is refitted, and step 2 is repeated.
4. ``--save-predictor FILE``: the final predictor (all table rows, adaptive ones included) is
   written as JSON (``predictor_io``); ``lut/host-ort-kernels.json`` is the shipped one.

Prints +-10 % accuracy, RMSPE and Spearman rho per step and per kernel type, and the load
average before and after every measurement (the machine may be shared: a loaded machine
inflates and spreads kernel times). Absolute times are not asserted anywhere.

    python tools/bench_kernel_predictor.py --heldout-n 80 --adaptive-rounds 1 \\
        --save-predictor lut/host-ort-kernels.json --json lut/bench/kernel-predictor.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from hwsim.latency.build import build_table
from hwsim.latency.kernel_predictor import (
    KernelLatencyPredictor,
    adaptive_fit,
    kernel_type,
    random_kernel_keys,
)
from hwsim.latency.measure import TimingPolicy
from hwsim.latency.metrics import rmspe, spearman, within_accuracy
from hwsim.latency.op_key import OpKey
from hwsim.latency.predictor_io import save_predictor
from hwsim.latency.table import LatencyTable


def _load() -> str:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return " ".join(fh.read().split()[:3])


def _scores(model: KernelLatencyPredictor, keys: list[OpKey], y: np.ndarray) -> dict:
    covered = [i for i, k in enumerate(keys) if model.covers(k)]
    pred = model.predict([keys[i] for i in covered])
    t = y[covered]
    types = np.array([kernel_type(keys[i]) for i in covered])
    out = {"n": len(covered), "n_not_covered": len(keys) - len(covered),
           "acc10": within_accuracy(t, pred, 0.10), "rmspe_pct": rmspe(t, pred),
           "spearman": spearman(t, pred) if len(t) > 2 else float("nan"), "per_type": {}}
    for ktype in sorted(set(types)):
        sel = types == ktype
        out["per_type"][ktype] = {"n": int(sel.sum()),
                                  "acc10": within_accuracy(t[sel], pred[sel], 0.10),
                                  "rmspe_pct": rmspe(t[sel], pred[sel])}
    return out


def _print(name: str, s: dict) -> None:
    print(f"{name:34s} n={s['n']:4d}  +-10% {100 * s['acc10']:5.1f} %  RMSPE "
          f"{s['rmspe_pct']:6.2f} %  Spearman {s['spearman']:.3f}"
          + (f"  ({s['n_not_covered']} not covered)" if s["n_not_covered"] else ""))
    for ktype, v in s["per_type"].items():
        print(f"    {ktype:12s} n={v['n']:4d}  +-10% {100 * v['acc10']:5.1f} %  RMSPE "
              f"{v['rmspe_pct']:6.2f} %")


def _kernel_rows(path: str) -> tuple[list[OpKey], np.ndarray]:
    rows = [r for r in LatencyTable.load(path) if kernel_type(r.key) is not None]
    return [r.key for r in rows], np.array([r.latency_ms for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default="lut/host-ort.csv")
    ap.add_argument("--train-random-n", type=int, default=0)
    ap.add_argument("--train-random-seed", type=int, default=7)
    ap.add_argument("--train-wide-conv-n", type=int, default=0,
                    help="extra random training convolutions with kernels 3/5/7, inputs up to "
                         "224 and up to 200 M MACs (stems, large kernels)")
    ap.add_argument("--heldout-n", type=int, default=80)
    ap.add_argument("--heldout-table", default="lut/bench/host-ort-kernel-heldout.csv")
    ap.add_argument("--heldout-seed", type=int, default=20261125)
    ap.add_argument("--adaptive-rounds", type=int, default=0)
    ap.add_argument("--adaptive-per-round", type=int, default=60)
    ap.add_argument("--adaptive-out", help="CSV for adaptive samples (default: --table)")
    ap.add_argument("--budget-s", type=float, default=1.5, help="time budget per measured op")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-predictor")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    t0 = time.time()
    report: dict = {"load_average": {"start": _load()}}
    print(f"load average at start: {_load()}", file=sys.stderr)
    table_meta = LatencyTable.load(args.table).summary()
    threads = (table_meta["threads"] or [1])[0]
    methods = list(table_meta["methods"]) or [None]
    policy = TimingPolicy(budget_s=args.budget_s)
    held_keys = random_kernel_keys(args.heldout_n, random.Random(args.heldout_seed),
                                   types=("conv", "dwconv", "linear", "pool", "elementwise"))
    if args.train_random_n:
        rnd = random_kernel_keys(args.train_random_n, random.Random(args.train_random_seed),
                                 types=("conv", "dwconv", "linear", "pool", "elementwise"))
        rnd = [k for k in rnd if k not in set(held_keys)]
        report["load_average"]["train_random_start"] = _load()
        r = build_table("host-ort", rnd, args.table, threads=threads, progress=False,
                        policy=policy, method=methods[0])
        report["load_average"]["train_random_end"] = _load()
        print(f"random training configurations: {r.total} ({len(r.added)} measured now, "
              f"{len(r.failed)} failed); load {report['load_average']['train_random_start']} "
              f"-> {report['load_average']['train_random_end']}", file=sys.stderr)
    if args.train_wide_conv_n:
        wide = random_kernel_keys(args.train_wide_conv_n, random.Random(args.train_random_seed + 1),
                                  types=("conv",), max_macs=200_000_000, conv_kernels=(3, 5, 7),
                                  input_sizes=(7, 14, 28, 56, 112, 224))
        wide = [k for k in wide if k not in set(held_keys)]
        r = build_table("host-ort", wide, args.table, threads=threads, progress=False,
                        policy=policy, method=methods[0])
        print(f"wide random training convolutions: {r.total} ({len(r.added)} measured now, "
              f"{len(r.failed)} failed); load {_load()}", file=sys.stderr)
    keys, y = _kernel_rows(args.table)
    print(f"{args.table}: {len(keys)} kernel rows; threads {threads}, methods {methods}")

    # 1. grid split
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(keys))
    n_hold = len(keys) // 5
    hold, train = order[:n_hold], order[n_hold:]
    split_model = KernelLatencyPredictor(seed=args.seed).fit([keys[i] for i in train], y[train])
    report["table_split"] = _scores(split_model, [keys[i] for i in hold], y[hold])
    _print("table split (20 % of rows held out)", report["table_split"])

    # 2. off-grid held-out configurations (measured, never trained on)
    held_keys = [k for k in held_keys if k not in set(keys)]
    report["load_average"]["heldout_measure_start"] = _load()
    rep = build_table("host-ort", held_keys, args.heldout_table, threads=threads,
                      progress=False, policy=policy, method=methods[0])
    report["load_average"]["heldout_measure_end"] = _load()
    print(f"held-out configurations: {rep.total} ({len(rep.added)} measured now, "
          f"{rep.already_present} already in {args.heldout_table}, {len(rep.failed)} failed); "
          f"load {report['load_average']['heldout_measure_start']} -> "
          f"{report['load_average']['heldout_measure_end']}", file=sys.stderr)
    held_table = LatencyTable.load(args.heldout_table)
    hk = [k for k in held_keys if k in held_table]
    hy = np.array([held_table.lookup(k).latency_ms for k in hk])
    full_model = KernelLatencyPredictor(seed=args.seed).fit(keys, y)
    report["offgrid_before_adaptive"] = _scores(full_model, hk, hy)
    _print("off-grid held-out configurations", report["offgrid_before_adaptive"])

    final = full_model
    if args.adaptive_rounds:
        out = args.adaptive_out or args.table
        loads = []

        def measure(new_keys: list[OpKey]) -> dict[OpKey, float]:
            new_keys = [k for k in new_keys if k not in set(hk)]  # never train on held-out
            loads.append(_load())
            r = build_table("host-ort", new_keys, out, threads=threads, progress=False,
                            policy=policy, method=methods[0])
            loads.append(_load())
            measured = LatencyTable.load(out)
            print(f"adaptive: {len(r.added)} configurations measured into {out} "
                  f"({len(r.failed)} failed); load {loads[-2]} -> {loads[-1]}",
                  file=sys.stderr)
            return {k: measured.lookup(k).latency_ms for k in new_keys if k in measured}

        final, a_keys, a_y, rounds = adaptive_fit(
            KernelLatencyPredictor(seed=args.seed), keys, y, measure,
            rounds=args.adaptive_rounds, per_round=args.adaptive_per_round)
        report["adaptive_rounds"] = [vars(r) for r in rounds]
        report["adaptive_keys"] = [str(k) for k in a_keys[len(keys):]]
        report["load_average"]["adaptive_measure"] = loads
        for i, r in enumerate(rounds):
            print(f"adaptive round {i + 1}: {r.n_above}/{r.n_rows} table rows above 10 % "
                  f"out-of-fold error; {r.n_proposed} proposed, {r.n_measured} measured")
        report["offgrid_after_adaptive"] = _scores(final, hk, hy)
        _print("off-grid held-out, after adaptive", report["offgrid_after_adaptive"])
    report["selection"] = {t: m.selection for t, m in final.models_.items()}
    if args.save_predictor:
        final.extra_metrics_ = {"offgrid_heldout": report.get("offgrid_after_adaptive",
                                                              report["offgrid_before_adaptive"]),
                                "table_split": report["table_split"]}
        path = save_predictor(args.save_predictor, final, target_column="latency_ms", summary={
            "train_file": Path(args.table).name, "device": "host-ort", "threads": threads,
            "methods": methods, "heldout_file": Path(args.heldout_table).name,
            "adaptive_rounds": report.get("adaptive_rounds", []),
            "load_average": report["load_average"]})
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    report["load_average"]["end"] = _load()
    print(f"load average at end: {report['load_average']['end']}; elapsed "
          f"{time.time() - t0:.0f} s", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
