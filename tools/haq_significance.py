"""Paired significance of the HAQ comparison: exact McNemar tests on the test images.

Reads either a ``tools/haq_table.py`` output directory (its ``result.json`` files) or the
``table.csv`` it writes (as kept in ``results/haq/``), re-runs each reported policy (HAQ's, the
widest uniform within the budget, greedy, ILP) with the run's own evaluator settings (device
numerics, data split, fine-tune epochs, seed) to get per-image correctness on the test split,
checks that the re-run reproduces the stored accuracy, and tests HAQ against each baseline: the
images where exactly one of the two is right are the discordant pairs; under "equally accurate"
the split of those is Binomial(n, 1/2) (exact two-sided McNemar test,
``scipy.stats.binomtest``). With ``--final`` the same after the run's final fine-tune
(``final_finetune_epochs``).

    python tools/haq_significance.py OUT_DIR [--final] [--out significance.md]
    python tools/haq_significance.py results/haq/top1-latency.csv --finetune-epochs 1 \\
        --final-finetune-epochs 10 --seed 0 [--final]

A CSV written before ``haq_table.py`` recorded ``finetune_epochs``, ``final_finetune_epochs``
and ``seed`` as columns needs them as options (its ``.md`` states them); a CSV that has the
columns refuses options that disagree with them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from haq_table import best_uniform  # tools/ is on sys.path when run as a script
from scipy.optimize import brentq
from scipy.stats import binom, binomtest, norm

from hwsim.latency.table import write_text_atomic
from hwsim.quant.device import load_device
from hwsim.search.haq_accuracy import PolicyEvaluator
from hwsim.search.haq_cost import quantizable_layers
from hwsim.search.haq_run import (
    REWARD_DATA,
    digits_search_data,
    final_finetune_data,
    image_size,
    load_search_model,
)

SETTINGS = ("finetune_epochs", "final_finetune_epochs", "seed")


def _bits(entry: dict[str, Any], names: list[str], where: str) -> list[tuple[int, int]]:
    if list(entry["policy"]) != names:
        raise SystemExit(f"{where}: policy layers {list(entry['policy'])} differ from HAQ's "
                         f"{names}")
    return [(int(p["weight_bits"]), int(p["activation_bits"]))
            for p in entry["policy"].values()]


def cells_from_run_dir(run_dir: Path) -> list[dict[str, Any]]:
    """One cell per ``result.json``: settings and, per method (HAQ first), policy, accuracies."""
    cells = []
    for path in sorted(run_dir.glob("**/result.json")):
        res = json.loads(path.read_text())
        base = res["baselines"]
        uni_name, uni = best_uniform(res)
        entries = {"haq": res, uni_name: uni, "greedy": base["greedy"], "ilp": base["ilp"]}
        names = list(res["policy"])
        cells.append({
            "where": str(path), "model": res["model"], "device": res["device"],
            "layer_names": names,
            "reward_data": res["data"].get("reward_data", "heldout"),
            "budget": float(res["budget_fraction"]),
            **{k: int(res[k]) for k in SETTINGS},
            "methods": {name: {"policy": _bits(e, names, str(path)),
                               "accuracy": float(e["accuracy"]),
                               "final_accuracy": (float(e["final_finetune"]["accuracy"])
                                                  if "final_finetune" in e else None)}
                        for name, e in entries.items()}})
    return cells


def parse_policy(text: str, where: str) -> list[tuple[int, int]]:
    """``"8/8 4/5"`` (a ``policy_w/a`` cell) -> [(8, 8), (4, 5)]; SystemExit naming ``where``
    for anything else."""
    out = []
    for item in text.split():
        w, sep, a = item.partition("/")
        if not sep or not w.isdigit() or not a.isdigit():
            raise SystemExit(f"{where}: policy_w/a item {item!r} is not W/A bits")
        out.append((int(w), int(a)))
    return out


def cells_from_csv(path: Path, options: dict[str, int | None]) -> list[dict[str, Any]]:
    """Cells from a ``haq_table.py`` CSV; settings from its columns or from ``options``."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{path}: no rows")
    need = {"model", "device", "budget", "method", "test_accuracy", "final_test_accuracy",
            "policy_w/a"}
    missing = need - set(rows[0])
    if missing:
        raise SystemExit(f"{path}: missing columns {sorted(missing)}")
    settings: dict[str, int] = {}
    for key in SETTINGS:
        if key in rows[0]:
            values = {int(r[key]) for r in rows}
            if len(values) != 1:
                raise SystemExit(f"{path}: column {key} varies between rows {sorted(values)}")
            value = values.pop()
            if options[key] is not None and options[key] != value:
                raise SystemExit(f"{path}: column {key} is {value}, --{key.replace('_', '-')} "
                                 f"says {options[key]}")
            settings[key] = value
        elif options[key] is None:
            raise SystemExit(f"{path}: no column {key}; give --{key.replace('_', '-')} "
                             "(the run's .md states it)")
        else:
            settings[key] = int(options[key])
    cells: dict[tuple[str, str, float], dict[str, Any]] = {}
    for i, r in enumerate(rows, 2):
        key = (r["model"], r["device"], float(r["budget"]))
        cell = cells.setdefault(key, {"where": f"{path} {r['model']} {r['device']} "
                                               f"{r['budget']}",
                                      "model": key[0], "device": key[1], "budget": key[2],
                                      "reward_data": _reward_data(r, f"{path} line {i}"),
                                      **settings, "methods": {}})
        if r["method"] in cell["methods"]:
            raise SystemExit(f"{path} line {i}: method {r['method']} repeated in the cell")
        final = float(r["final_test_accuracy"])
        cell["methods"][r["method"]] = {
            "policy": parse_policy(r["policy_w/a"], f"{path} line {i}"),
            "accuracy": float(r["test_accuracy"]),
            "final_accuracy": None if np.isnan(final) else final,
            "cost_fraction": float(r["cost_fraction"]) if "cost_fraction" in r else None,
            "val_accuracy": float(r["val_accuracy"]) if r.get("val_accuracy") else None}
    for cell in cells.values():
        if next(iter(cell["methods"]), None) != "haq":
            raise SystemExit(f"{cell['where']}: the cell's first method must be haq")
    return list(cells.values())


def mcnemar(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """(a-only, b-only, exact two-sided p) for paired per-image correctness."""
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    return a_only, b_only, (float(binomtest(a_only, n, 0.5).pvalue) if n else 1.0)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given; family = all of them).

    The k-th smallest of m p-values is multiplied by m - k + 1, a running maximum keeps the
    adjusted values in the order of the raw ones, and each is capped at 1."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * float(pvalues[i])))
        out[i] = running
    return out


def _family(test: dict[str, Any]) -> tuple[str | None, str]:
    """One question per family: HAQ vs uniform, vs greedy or vs ILP (in one split, if any)."""
    name = test["baseline"]
    return test.get("split"), "uniform" if name.startswith("uniform") else name


def add_holm(tests: list[dict[str, Any]]) -> None:
    """Set each test's ``p_holm``: its ``p`` Holm-adjusted over its family (the tests against
    the same baseline, one per cell, in the same split)."""
    for family in dict.fromkeys(map(_family, tests)):
        sel = [t for t in tests if _family(t) == family]
        for t, q in zip(sel, holm([t["p"] for t in sel]), strict=True):
            t["p_holm"] = q


def bootstrap_gap(haq: np.ndarray, baselines: Sequence[np.ndarray], n_boot: int = 20000,
                  level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """HAQ's accuracy minus the best baseline's, with a paired percentile bootstrap interval.

    ``haq`` and each of ``baselines`` are per-image correctness on the same images. Images are
    resampled with replacement (``n_boot`` times) and the best baseline is chosen again in each
    resample, so the interval accounts for picking the best of several noisy baselines. Returns
    (observed gap, lower, upper) as fractions (not percentage points)."""
    cols = np.column_stack([np.asarray(haq, bool)] + [np.asarray(b, bool) for b in baselines])
    if cols.shape[1] < 2 or cols.shape[0] == 0:
        raise ValueError("bootstrap_gap needs HAQ, at least one baseline and one image")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"bootstrap_gap: level {level} must lie in (0, 1), n_boot {n_boot} >= 1")
    # An image only matters through its pattern of right/wrong across the methods, so resampling
    # images is resampling pattern counts: a multinomial over the distinct patterns.
    patterns, counts = np.unique(cols, axis=0, return_counts=True)
    n = cols.shape[0]
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_boot)
    acc = draws @ patterns.astype(float) / n
    gaps = acc[:, 0] - acc[:, 1:].max(axis=1)
    observed = float(cols[:, 0].mean() - cols[:, 1:].mean(axis=0).max())
    lo, hi = np.quantile(gaps, [(1 - level) / 2, (1 + level) / 2])
    return observed, float(lo), float(hi)


def best_baseline(baselines: Sequence[np.ndarray]) -> np.ndarray:
    """The most accurate of ``baselines`` (per-image correctness), the first of equals."""
    cols = [np.asarray(b, bool) for b in baselines]
    if not cols:
        raise ValueError("best_baseline needs at least one baseline")
    return cols[int(np.argmax([c.sum() for c in cols]))]


def match_probability_if_equal(haq: np.ndarray, baselines: Sequence[np.ndarray]) -> float:
    """P(HAQ's accuracy >= the best baseline's) if HAQ were exactly as good as it.

    The null is McNemar's, for HAQ and the most accurate baseline (the first of equals): on
    each of the m images where exactly one of the two is right, which one it is goes either way
    with probability 1/2, independently, so HAQ matches or beats it iff X >= m/2 for
    X ~ Binomial(m, 1/2). The other baselines are left out, so this is an upper bound on the
    probability of matching or beating every baseline."""
    if not baselines:
        raise ValueError("match_probability_if_equal needs at least one baseline")
    m = int(np.sum(np.asarray(haq, bool) ^ best_baseline(baselines)))
    return float(binom.sf(math.ceil(m / 2) - 1, m, 0.5))


def _check_share(discordant: float, difference: float, alpha: float, power: float) -> None:
    if not 0 <= discordant <= 1:
        raise ValueError(f"discordant share {discordant} must lie in [0, 1]")
    if abs(difference) > discordant:
        raise ValueError(f"difference {difference} cannot exceed the discordant share "
                         f"{discordant} (only images one method alone gets right differ)")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha {alpha} and power {power} must lie in (0, 1)")


def mcnemar_images_needed(discordant: float, difference: float, *, alpha: float = 0.05,
                          power: float = 0.8) -> float:
    """Images a two-sided McNemar test at level ``alpha`` needs to find an accuracy difference
    with probability ``power``.

    ``discordant`` is the share of images exactly one of the two methods gets right (psi),
    ``difference`` the first's accuracy minus the second's (delta), both fractions of the
    images. Connor's (1987) normal approximation: n = (z(1 - alpha/2) sqrt(psi) + z(power)
    sqrt(psi - delta^2))^2 / delta^2, not rounded; the exact test is conservative, so at this n
    it has a little less power (0.76-0.78 for 0.8 in simulation). ``inf`` where the difference
    is 0: no number of images separates two methods that are equally accurate."""
    _check_share(discordant, difference, alpha, power)
    if difference == 0:
        return math.inf
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
    return float((za * math.sqrt(discordant) + zb * math.sqrt(discordant - difference ** 2)) ** 2
                 / difference ** 2)


def mcnemar_detectable_difference(discordant: float, n_images: int, *, alpha: float = 0.05,
                                  power: float = 0.8) -> float | None:
    """The smallest accuracy difference (a fraction) that the test of
    :func:`mcnemar_images_needed` finds with probability ``power`` on ``n_images`` images at
    the discordant share ``discordant``; ``None`` if even the largest possible one (every
    discordant image going to one method) needs more images."""
    _check_share(discordant, 0.0, alpha, power)
    if n_images < 1:
        raise ValueError(f"n_images {n_images} must be at least 1")
    if discordant == 0 or mcnemar_images_needed(discordant, discordant, alpha=alpha,
                                                power=power) > n_images:
        return None
    return float(brentq(lambda d: mcnemar_images_needed(discordant, d, alpha=alpha, power=power)
                        - n_images, discordant * 1e-9, discordant, xtol=1e-12))


def _reward_data(row: dict[str, str], where: str) -> str:
    """The row's ``reward_data`` column; "heldout" for a CSV written before it existed."""
    value = row.get("reward_data") or "heldout"
    if value not in REWARD_DATA:
        raise SystemExit(f"{where}: reward_data {value!r}; allowed: {', '.join(REWARD_DATA)}")
    return value


def cell_tests(cell: dict[str, Any], final: bool) -> list[dict[str, Any]]:
    """Re-run the cell's policies, check the stored accuracies, McNemar-test HAQ vs each."""
    graph = load_search_model(cell["model"])
    layers = quantizable_layers(graph)
    epochs = cell["final_finetune_epochs"] if final else cell["finetune_epochs"]
    if final and not epochs:
        raise SystemExit(f"{cell['where']}: the run has no final fine-tune")
    data = digits_search_data(image_size(graph), reward_data=cell["reward_data"])
    if final:
        data = final_finetune_data(data, cell["reward_data"])
    ev = PolicyEvaluator(graph, load_device(cell["device"]), layers, data,
                         finetune_epochs=epochs, seed=cell["seed"])
    names = [q.name for q in layers]
    if cell.get("layer_names") not in (None, names):
        raise SystemExit(f"{cell['where']}: policy layers {cell['layer_names']} are not "
                         f"{cell['model']}'s quantizable layers {names}")
    methods = cell["methods"]
    correct = {}
    for name, entry in methods.items():
        if len(entry["policy"]) != len(layers):
            raise SystemExit(f"{cell['where']}: {name} policy has {len(entry['policy'])} "
                             f"layers, {cell['model']} has {len(layers)}")
        correct[name] = ev.correct(entry["policy"], "test")
        stored = entry["final_accuracy"] if final else entry["accuracy"]
        if stored is None or abs(correct[name].mean() - stored) > 1e-12:
            raise SystemExit(f"{cell['where']}: {name} re-run gives test accuracy "
                             f"{correct[name].mean():.4f}, the stored one is {stored}")
    rows = []
    for name in list(methods)[1:]:
        haq_only, other_only, p = mcnemar(correct["haq"], correct[name])
        rows.append({"model": cell["model"], "device": cell["device"],
                     "budget": cell["budget"], "baseline": name,
                     "haq_acc": float(correct["haq"].mean()),
                     "baseline_acc": float(correct[name].mean()),
                     "haq_only": haq_only, "baseline_only": other_only, "p": p})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="haq_table.py output directory, or its table CSV")
    ap.add_argument("--final", action="store_true", help="after the final fine-tune")
    ap.add_argument("--out", type=Path)
    for key in SETTINGS:
        ap.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                        help="for a CSV without this column")
    args = ap.parse_args(argv)
    if args.run.is_dir():
        given = [k for k in SETTINGS if getattr(args, k) is not None]
        if given:
            print(f"{args.run}: --{given[0].replace('_', '-')} is for a CSV; a run directory's "
                  "result.json files carry their settings", file=sys.stderr)
            return 2
        cells = cells_from_run_dir(args.run)
    elif args.run.suffix == ".csv" and args.run.is_file():
        cells = cells_from_csv(args.run, {k: getattr(args, k) for k in SETTINGS})
    else:
        print(f"{args.run}: neither a haq_table.py output directory nor a .csv file",
              file=sys.stderr)
        return 2
    if not cells:
        print(f"no result.json under {args.run}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = []
    for i, cell in enumerate(cells, 1):
        rows += cell_tests(cell, args.final)
        print(f"[{i}/{len(cells)}] {cell['where']}", file=sys.stderr, flush=True)
    add_holm(rows)
    split = "test images after the final fine-tune" if args.final else "test images"
    lines = [f"# HAQ vs each baseline: exact McNemar tests on the {split}",
             "", f"Run: `{args.run}`; {len(cells)} cells; fine-tune epochs "
             f"{cells[0]['finetune_epochs']}, final fine-tune epochs "
             f"{cells[0]['final_finetune_epochs']}, seed {cells[0]['seed']}; re-run accuracies "
             "equal the "
             "stored ones. haq-only / baseline-only: images only that method classifies "
             "correctly; p: exact two-sided binomial test of that split; Holm: p adjusted "
             "over the tests against the same baseline, one per cell.", "",
             "| model | device | budget | baseline | HAQ acc | baseline acc | HAQ-only | "
             "baseline-only | p | p (Holm) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['device']} | {r['budget']:g} | {r['baseline']} | "
                     f"{r['haq_acc']:.2%} | {r['baseline_acc']:.2%} | {r['haq_only']} | "
                     f"{r['baseline_only']} | {r['p']:.3g} | {r['p_holm']:.3g} |")
    sig = [r for r in rows if r["p"] < 0.05]
    notes = []
    for r in sig:
        better = "HAQ" if r["haq_only"] > r["baseline_only"] else "baseline"
        notes.append(f"{r['model']} {r['device']} {r['budget']:g} vs {r['baseline']} "
                     f"({better} better, p={r['p']:.3g}, Holm {r['p_holm']:.3g})")
    n_holm = sum(r["p_holm"] < 0.05 for r in rows)
    lines += ["", f"{len(sig)} of {len(rows)} comparisons have p < 0.05"
              + (": " + "; ".join(notes) if notes else "")
              + f". After Holm's adjustment: {n_holm} of {len(rows)}."]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
