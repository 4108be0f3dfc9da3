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
(nn-Meter's metrics, ``hwsim.latency.metrics``). Everything is measured in this one run on this
machine; absolute times are not asserted anywhere.

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
    ap.add_argument("--json", help="write per-network results and metrics here")
    args = ap.parse_args(argv)

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
    print(f"[{time.time() - t0:.0f}s] tables: {len(kernel_keys)} kernel keys, "
          f"{len(block_keys)} block keys", file=sys.stderr)

    backend = make_backend("host-ort", args.threads)
    e2e_policy = TimingPolicy(rel_tol=args.rel_tol, budget_s=args.e2e_budget_s,
                              min_samples=10)
    results = []
    for s in specs:
        timing = time_runner(backend.model_runner(models[s]), e2e_policy)
        measured = float(np.median(timing.samples)) * 1e3
        fused = model_latency(graphs[s], table, rules).total_ms
        unfused = model_latency(graphs[s], table, naive).total_ms
        block = (None if s == "resnet18" else
                 sum(block_table.lookup(k).latency_ms for k in mbnet_block_keys(parse_arch(s))))
        results.append({"arch": s, "measured_ms": measured, "lut_fused_ms": fused,
                        "lut_naive_ms": unfused, "lut_block_ms": block,
                        "e2e_samples": int(timing.samples.size),
                        "e2e_converged": timing.converged, "calibration_only": s in calib})
        name = s if len(s) < 24 else s[:21] + "..."
        print(f"{name:24s} measured {measured:8.3f} ms  fused {fused:8.3f} "
              f"({fused / measured:5.3f})  naive {unfused:8.3f} ({unfused / measured:5.3f})"
              + (f"  block {block:8.3f} ({block / measured:5.3f})" if block else ""))

    cal = [r for r in results if r["calibration_only"]]
    results = [r for r in results if not r["calibration_only"]]
    true = [r["measured_ms"] for r in results]
    summary = {
        "with_fusion": _metrics(true, [r["lut_fused_ms"] for r in results]),
        "naive_no_fusion": _metrics(true, [r["lut_naive_ms"] for r in results]),
    }
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
    print(f"\n{len(results)} networks evaluated, {args.threads} thread(s), table method "
          f"{method}, fusion rules {rules.backend} ({rules.basis}); elapsed "
          f"{time.time() - t0:.0f} s")
    if cal:
        print(f"calibration (labelled; fitted on {len(cal)} other random networks only): "
              + ", ".join(f"{k} x{v:.4f}" for k, v in scales.items()))
    for name, m in summary.items():
        print(f"  {name:16s} +-10% acc {100 * m['acc10']:5.1f} %   RMSPE {m['rmspe_pct']:6.2f} %"
              f"   Spearman {m['spearman']:.3f}   mean pred/true {m['mean_ratio']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "calibration": cal,
                                               "summary": summary, "method": method,
                                               "versions": backend.versions(),
                                               "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
