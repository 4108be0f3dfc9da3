"""LUT sum vs measured end-to-end latency under ONNX Runtime CPU (issue 4's check).

For N random ProxylessNAS-space networks plus MobileNetV2 and ResNet-18 (ONNX built with BN
folded, 224x224, batch 1):
  1. the kernel keys of every network, fused under the backend's fusion rules and unfused, are
     measured into a table (resumable; ``--table``),
  2. the ProxylessNAS block keys of the MobileNet-style networks are measured into a block table,
  3. each network is timed end to end in one ONNX Runtime session (same threads),
  4. predictions: kernel LUT sum with fusion rules, the naive sum (every ONNX op its own
     kernel, no fusion), and the block-level LUT sum (ProxylessNAS style; not for ResNet-18),
and prints +-10 % accuracy, RMSPE and Spearman rho of each against the measurements
(nn-Meter's metrics, ``hwsim.latency.metrics``). Absolute times are not asserted anywhere.

Kernel predictor (``--kernel-predictor``, issue 5; on by default): two more predictions, both
with predictors fitted here on the kernel table *minus* keys of the evaluated networks:

- ``pred_unseen``: every kernel key of every evaluated network (fused and unfused) is removed
  from the training rows; each network's latency is the sum of predicted kernels (fusion
  rules): the kernel predictor on whole unseen networks. Kernel types left with too few rows
  for a model (global pooling) are taken from the table and counted (``unseen_from_table``).
- ``lut_with_fallback``: a random half of those keys (``--fallback-drop``) is removed from the
  table and from the predictor's training rows; the LUT sum uses the table where it has the key
  and the predictor for the rest (kernels labelled ``predicted``).

The load average is printed and stored at the start and end of every measurement phase (a
shared machine inflates and spreads times).

``--method`` picks how table rows are timed (``hwsim.latency.measure``: kernel, wall,
wall-cold); each method gets its own tables. ``--calibrate N`` additionally measures N more
random networks (other seeds, never evaluated), fits one scale factor per prediction kind
(median of measured / predicted over them) and reports the calibrated metrics on the evaluated
networks only: a per-backend calibration term, labelled as such.

    python tools/bench_lut_vs_measured.py --quick          # 2 random nets + MobileNetV2 + R18
    python tools/bench_lut_vs_measured.py --n-random 30    # the full check (quiet machine)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from hwsim.graph import load_model
from hwsim.latency.build import build_table
from hwsim.latency.fusion import FusionRules, rules_for
from hwsim.latency.host_backends import default_method, make_backend
from hwsim.latency.mbnet import (
    arch_onnx,
    mbnet_block_keys,
    parse_arch,
    random_proxyless_choices,
)
from hwsim.latency.measure import TimingPolicy, time_runner
from hwsim.latency.metrics import rmspe, spearman, within_accuracy
from hwsim.latency.model_latency import model_latency
from hwsim.latency.op_space import graphs_kernel_keys
from hwsim.latency.table import LatencyTable


def _metrics(true: list[float], pred: list[float]) -> dict[str, float]:
    t, p = np.array(true), np.array(pred)
    out = {"acc10": within_accuracy(t, p, 0.10), "rmspe_pct": rmspe(t, p),
           "mean_ratio": float(np.mean(p / t))}
    out["spearman"] = spearman(t, p) if len(t) >= 3 else float("nan")
    return out


def _load() -> str:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return " ".join(fh.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-random", type=int, default=30, help="random ProxylessNAS networks")
    ap.add_argument("--quick", action="store_true", help="2 random networks (a smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--method", default=None, choices=["kernel", "wall", "wall-cold"],
                    help="how table rows are timed (default: the backend's)")
    ap.add_argument("--table", help="kernel table to build/resume (default "
                                    "lut/bench/host-ort-<method>-kernels.csv)")
    ap.add_argument("--block-table", help="block table to build/resume (default "
                                          "lut/bench/host-ort-<method>-blocks.csv)")
    ap.add_argument("--calibrate", type=int, default=0,
                    help="extra random networks used only to fit a scale factor")
    ap.add_argument("--rules", help="fusion rules YAML (default: shipped host-ort rules)")
    ap.add_argument("--rel-tol", type=float, default=0.02)
    ap.add_argument("--budget-s", type=float, default=3.0, help="time budget per op")
    ap.add_argument("--e2e-budget-s", type=float, default=10.0,
                    help="time budget per end-to-end network measurement")
    ap.add_argument("--e2e-clock", default="thread-cpu", choices=["wall", "thread-cpu"],
                    help="end-to-end sample clock (hwsim.latency.measure): thread-cpu (default; "
                         "whole networks are rarely free of preemption on a shared machine) "
                         "or wall (kept samples only)")
    ap.add_argument("--json", help="write per-network results and metrics here")
    ap.add_argument("--no-kernel-predictor", action="store_true",
                    help="skip the kernel-predictor predictions")
    ap.add_argument("--fallback-drop", type=float, default=0.5,
                    help="share of the networks' kernel keys removed for lut_with_fallback")
    args = ap.parse_args(argv)
    loads = {"start": _load()}
    print(f"load average at start: {loads['start']}", file=sys.stderr)

    n_random = 2 if args.quick else args.n_random
    method = args.method or default_method("host-ort")
    table_path = args.table or f"lut/bench/host-ort-{method}-kernels.csv"
    block_path = args.block_table or f"lut/bench/host-ort-{method}-blocks.csv"
    rng = random.Random(args.seed)
    specs = [f"proxyless:{','.join(random_proxyless_choices(rng))}" for _ in range(n_random)]
    specs += ["mobilenetv2", "resnet18"]
    cal_rng = random.Random(args.seed + 1_000_003)
    calib = [f"proxyless:{','.join(random_proxyless_choices(cal_rng))}"
             for _ in range(args.calibrate)]
    calib = [c for c in calib if c not in specs]
    specs += calib
    rules = FusionRules.load(args.rules) if args.rules else rules_for("host-ort")
    naive = FusionRules.none()
    policy = TimingPolicy(rel_tol=args.rel_tol, budget_s=args.budget_s)

    t0 = time.time()
    models = {s: arch_onnx(s, seed=i) for i, s in enumerate(specs)}
    graphs = {s: load_model(m) for s, m in models.items()}
    print(f"[{time.time() - t0:.0f}s] {len(specs)} networks built", file=sys.stderr)

    kernel_keys = graphs_kernel_keys(graphs.values(), rules)
    rep = build_table("host-ort", kernel_keys, table_path, threads=args.threads, policy=policy,
                      method=method)
    block_keys = list(dict.fromkeys(k for s in specs if s != "resnet18"
                                    for k in mbnet_block_keys(parse_arch(s))))
    rep_b = build_table("host-ort", block_keys, block_path, threads=args.threads,
                        policy=policy, method=method)
    for r in (rep, rep_b):
        for key, why in r.failed:
            print(f"failed to measure {key}: {why}", file=sys.stderr)
    table, block_table = LatencyTable.load(table_path), LatencyTable.load(block_path)
    loads["after_tables"] = _load()
    print(f"[{time.time() - t0:.0f}s] tables: {len(kernel_keys)} kernel keys, "
          f"{len(block_keys)} block keys; load {loads['after_tables']}", file=sys.stderr)
    unseen_model = fallback_model = None
    if not args.no_kernel_predictor:
        from hwsim.latency.kernel_predictor import KernelLatencyPredictor, kernel_type

        eval_keys = set(kernel_keys)
        rows = [r for r in table if kernel_type(r.key) is not None]
        unseen_model = KernelLatencyPredictor(seed=args.seed).fit(
            [r.key for r in rows if r.key not in eval_keys],
            [r.latency_ms for r in rows if r.key not in eval_keys])
        drop_rng = random.Random(args.seed + 17)
        dropped = {k for k in kernel_keys if drop_rng.random() < args.fallback_drop}
        kept = [r for r in rows if r.key not in dropped]
        fallback_model = KernelLatencyPredictor(seed=args.seed).fit(
            [r.key for r in kept], [r.latency_ms for r in kept])
        fallback_table = LatencyTable.from_rows(r for r in table if r.key not in dropped)
        # kernel types too rare without the networks' keys to get a model (e.g. gap) come from
        # the table; counted per network as unseen_from_table
        uncovered_table = LatencyTable.from_rows(r for r in table
                                                 if not unseen_model.covers(r.key))
        print(f"[{time.time() - t0:.0f}s] kernel predictors: unseen-networks model on "
              f"{len(rows) - sum(r.key in eval_keys for r in rows)} rows; fallback model on "
              f"{len(kept)} rows ({len(dropped)} of {len(kernel_keys)} network keys dropped)",
              file=sys.stderr)

    backend = make_backend("host-ort", args.threads)
    e2e_policy = TimingPolicy(rel_tol=args.rel_tol, budget_s=args.e2e_budget_s,
                              min_samples=10, clock=args.e2e_clock)
    results = []
    loads["e2e_start"] = _load()
    for s in specs:
        timing = time_runner(backend.model_runner(models[s]), e2e_policy)
        measured = float(np.median(timing.clean)) * 1e3
        fused = model_latency(graphs[s], table, rules).total_ms
        unfused = model_latency(graphs[s], table, naive).total_ms
        block = (None if s == "resnet18" else
                 sum(block_table.lookup(k).latency_ms for k in mbnet_block_keys(parse_arch(s))))
        extra = {}
        if unseen_model is not None:
            mu = model_latency(graphs[s], uncovered_table, rules, predictor=unseen_model)
            extra["pred_unseen_ms"] = mu.total_ms
            extra["unseen_from_table"] = mu.coverage["table"]
            ml = model_latency(graphs[s], fallback_table, rules, predictor=fallback_model)
            extra["lut_with_fallback_ms"] = ml.total_ms
            extra["fallback_predicted_kernels"] = ml.n_predicted
        results.append({"arch": s, "measured_ms": measured, "lut_fused_ms": fused,
                        "lut_naive_ms": unfused, "lut_block_ms": block, **extra,
                        "load1_at_e2e": _load().split()[0],
                        "e2e_samples": int(timing.samples.size),
                        "e2e_kept": int(timing.kept_mask.sum()),
                        "e2e_converged": timing.converged, "calibration_only": s in calib})
        name = s if len(s) < 24 else s[:21] + "..."
        print(f"{name:24s} measured {measured:8.3f} ms  fused {fused:8.3f} "
              f"({fused / measured:5.3f})  naive {unfused:8.3f} ({unfused / measured:5.3f})"
              + (f"  block {block:8.3f} ({block / measured:5.3f})" if block else ""))

    loads["e2e_end"] = _load()
    print(f"load average during end-to-end timing: {loads['e2e_start']} -> {loads['e2e_end']}",
          file=sys.stderr)
    cal = [r for r in results if r["calibration_only"]]
    results = [r for r in results if not r["calibration_only"]]
    true = [r["measured_ms"] for r in results]
    summary = {
        "with_fusion": _metrics(true, [r["lut_fused_ms"] for r in results]),
        "naive_no_fusion": _metrics(true, [r["lut_naive_ms"] for r in results]),
    }
    if unseen_model is not None:
        summary["pred_unseen"] = _metrics(true, [r["pred_unseen_ms"] for r in results])
        summary["lut_with_fallback"] = _metrics(true, [r["lut_with_fallback_ms"]
                                                       for r in results])
    blk = [r for r in results if r["lut_block_ms"] is not None]
    summary["block_lut"] = _metrics([r["measured_ms"] for r in blk],
                                    [r["lut_block_ms"] for r in blk])
    scales = {}
    if cal:
        for name, col in (("with_fusion", "lut_fused_ms"), ("naive_no_fusion", "lut_naive_ms")):
            scale = float(np.median([r["measured_ms"] / r[col] for r in cal]))
            scales[name] = scale
            summary[f"{name}_calibrated"] = _metrics(true, [scale * r[col] for r in results])
            summary[f"{name}_calibrated"]["scale"] = scale
    print(f"\n{len(results)} networks evaluated, {args.threads} thread(s), end-to-end clock "
          f"{args.e2e_clock}, table method {method}, fusion rules {rules.backend} "
          f"({rules.basis}); elapsed {time.time() - t0:.0f} s")
    if cal:
        print(f"calibration (labelled; fitted on {len(cal)} other random networks only): "
              + ", ".join(f"{k} x{v:.4f}" for k, v in scales.items()))
    for name, m in summary.items():
        print(f"  {name:16s} +-10% acc {100 * m['acc10']:5.1f} %   RMSPE {m['rmspe_pct']:6.2f} %"
              f"   Spearman {m['spearman']:.3f}   mean pred/true {m['mean_ratio']:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"results": results, "calibration": cal,
                                               "summary": summary, "method": method,
                                               "load_average": loads,
                                               "e2e_clock": args.e2e_clock,
                                               "versions": backend.versions(),
                                               "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
