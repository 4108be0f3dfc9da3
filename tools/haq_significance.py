"""Paired significance of the HAQ comparison: exact McNemar tests on the test images.

Reads the ``result.json`` files of a ``tools/haq_table.py`` output directory, re-runs each
reported policy (HAQ's, the widest uniform within the budget, greedy, ILP) with the run's own
evaluator settings (device numerics, data split, fine-tune epochs, seed) to get per-image
correctness on the test split, checks that the re-run reproduces the stored accuracy, and tests
HAQ against each baseline: the images where exactly one of the two is right are the discordant
pairs; under "equally accurate" the split of those is Binomial(n, 1/2) (exact two-sided
McNemar test, ``scipy.stats.binomtest``). With ``--final`` the same after the run's final
fine-tune (``final_finetune_epochs``).

    python tools/haq_significance.py OUT_DIR [--final] [--out significance.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from haq_table import best_uniform  # tools/ is on sys.path when run as a script
from scipy.stats import binomtest

from hwsim.latency.table import write_text_atomic
from hwsim.quant.device import load_device
from hwsim.search.haq_accuracy import PolicyEvaluator
from hwsim.search.haq_cost import quantizable_layers
from hwsim.search.haq_run import digits_search_data, image_size, load_search_model


def _policy(entry: dict[str, Any], names: list[str]) -> list[tuple[int, int]]:
    pol = entry["policy"]
    return [(int(pol[n]["weight_bits"]), int(pol[n]["activation_bits"])) for n in names]


def _methods(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    base = res["baselines"]
    uni_name, uni = best_uniform(res)
    return {"haq": res, uni_name: uni, "greedy": base["greedy"], "ilp": base["ilp"]}


def cell_tests(path: Path, final: bool) -> list[dict[str, Any]]:
    res = json.loads(path.read_text())
    graph = load_search_model(res["model"])
    layers = quantizable_layers(graph)
    names = [q.name for q in layers]
    epochs = res["final_finetune_epochs"] if final else res["finetune_epochs"]
    if final and not epochs:
        raise SystemExit(f"{path}: the run has no final fine-tune")
    ev = PolicyEvaluator(graph, load_device(res["device"]), layers,
                         digits_search_data(image_size(graph)), finetune_epochs=epochs,
                         seed=res["seed"])
    methods = _methods(res)
    correct = {}
    for name, entry in methods.items():
        correct[name] = ev.correct(_policy(entry, names), "test")
        stored = entry["final_finetune"]["accuracy"] if final else entry["accuracy"]
        if abs(correct[name].mean() - stored) > 1e-12:
            raise SystemExit(f"{path}: {name} re-run gives test accuracy "
                             f"{correct[name].mean():.4f}, result.json has {stored:.4f}")
    rows = []
    for name in list(methods)[1:]:
        haq_only = int(np.sum(correct["haq"] & ~correct[name]))
        other_only = int(np.sum(~correct["haq"] & correct[name]))
        n = haq_only + other_only
        p = binomtest(haq_only, n, 0.5).pvalue if n else 1.0
        rows.append({"model": res["model"], "device": res["device"],
                     "budget": res["budget_fraction"], "baseline": name,
                     "haq_acc": float(correct["haq"].mean()),
                     "baseline_acc": float(correct[name].mean()),
                     "haq_only": haq_only, "baseline_only": other_only, "p": float(p)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--final", action="store_true", help="after the final fine-tune")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    paths = sorted(args.run_dir.glob("**/result.json"))
    if not paths:
        print(f"no result.json under {args.run_dir}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = []
    for i, path in enumerate(paths, 1):
        rows += cell_tests(path, args.final)
        print(f"[{i}/{len(paths)}] {path.parent}", file=sys.stderr)
    split = "test after the final fine-tune" if args.final else "test"
    lines = [f"# HAQ vs each baseline: exact McNemar tests on the {split} images",
             "", f"Run: `{args.run_dir}`; {len(paths)} cells; re-run accuracies equal the "
             "stored ones. haq-only / baseline-only: images only that method classifies "
             "correctly; p: exact two-sided binomial test of that split.", "",
             "| model | device | budget | baseline | HAQ acc | baseline acc | HAQ-only | "
             "baseline-only | p |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['device']} | {r['budget']:g} | {r['baseline']} | "
                     f"{r['haq_acc']:.2%} | {r['baseline_acc']:.2%} | {r['haq_only']} | "
                     f"{r['baseline_only']} | {r['p']:.3g} |")
    sig = [r for r in rows if r["p"] < 0.05]
    notes = []
    for r in sig:
        better = "HAQ" if r["haq_only"] > r["baseline_only"] else "baseline"
        notes.append(f"{r['model']} {r['device']} {r['budget']:g} vs {r['baseline']} "
                     f"({better} better, p={r['p']:.3g})")
    lines += ["", f"{len(sig)} of {len(rows)} comparisons have p < 0.05"
              + (": " + "; ".join(notes) if notes else "") + "."]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
