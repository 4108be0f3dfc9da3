"""Cross-validated re-measurement of the HAQ comparison's policies, on 8x the test images.

Reads a ``tools/haq_table.py`` CSV (as kept in ``results/haq/``, or the ``table.csv`` of its
output folder). Every policy of the table (HAQ's, the widest uniform within the budget, greedy,
ILP) is measured by ``hwsim.search.policy_crossval`` on ``--folds`` folds of the digits without
the search's validation images (the images HAQ's policy was selected on): each image of the pool
is tested once, under the device's numerics, by a model of the same architecture trained with the
demo recipe on the other images and fine-tuned for the policy as the run did (its
``finetune_epochs``: the table's "test acc"; its ``final_finetune_epochs``: "final test acc").
The policies stay those found on the search's model.

Per cell: the accuracies, whether HAQ matches or beats the best baseline and the uniform one,
HAQ's margin over each with a paired bootstrap interval (the best baseline chosen again in each
resample), and exact two-sided McNemar tests of HAQ against each baseline on the pooled images
(raw, and Holm-adjusted over the split's tests against the same baseline), and how many images
would tell HAQ from the best baseline (the images an exact McNemar test needs to find the
observed difference 80% of the time, and the smallest difference it finds on the images here).
Measurements are kept in ``--cache`` (default: next to ``--out``); a rerun resumes.

    python tools/haq_crossval.py results/haq/top1-latency.csv \\
        --out results/haq/crossval-top1-latency.md [--folds 5] [--fold-seed 0]
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from haq_significance import (  # tools/ is on sys.path when run as a script
    SETTINGS,
    add_holm,
    best_baseline,
    bootstrap_gap,
    cells_from_csv,
    match_probability_if_equal,
    mcnemar,
    mcnemar_detectable_difference,
    mcnemar_images_needed,
)

from hwsim.errors import HwsimError
from hwsim.latency.table import write_text_atomic
from hwsim.search.haq_run import search_val_images
from hwsim.search.policy_crossval import CrossvalRequest, CrossvalResult, crossval_correct

SPLITS = (("cv", "finetune_epochs"), ("cv_final", "final_finetune_epochs"))
LEVEL = 0.95


def requests_of(cells: Sequence[dict[str, Any]]) -> dict[str, list[CrossvalRequest]]:
    """Per model, the distinct (device, policy, epochs) measurements the cells need."""
    out: dict[str, list[CrossvalRequest]] = {}
    for cell in cells:
        for _, setting in SPLITS:
            epochs = int(cell[setting])
            if setting == "final_finetune_epochs" and epochs == 0:
                continue
            for entry in cell["methods"].values():
                r = CrossvalRequest(cell["device"], tuple(entry["policy"]), epochs)
                reqs = out.setdefault(cell["model"], [])
                if r not in reqs:
                    reqs.append(r)
    return out


def excluded_images(cells: Sequence[dict[str, Any]], source: Path) -> tuple[np.ndarray, str]:
    """Dataset indices of the images the table's policies were selected on (its
    ``reward_data``), and their description; SystemExit if the cells disagree."""
    reward_data = {c["reward_data"] for c in cells}
    if len(reward_data) != 1:
        raise SystemExit(f"{source}: column reward_data varies between cells "
                         f"{sorted(reward_data)}")
    which = reward_data.pop()
    idx = search_val_images(reward_data=which)
    what = {"heldout": "held-out validation images",
            "train": "reward images (a third of the demo's training split, reward_data=train)",
            "finetune": "reward images (the fine-tune's: two thirds of the demo's training "
                        "split, reward_data=finetune)"}[which]
    return idx, f"{len(idx)} {what}"


def cell_rows(cell: dict[str, Any], result: CrossvalResult) -> list[dict[str, Any]]:
    """One row per method: the CSV's accuracies and the cross-validated ones."""
    rows = []
    for method, entry in cell["methods"].items():
        row = {"model": cell["model"], "device": cell["device"], "budget": cell["budget"],
               "method": method, "cost_fraction": entry["cost_fraction"],
               "split_test_accuracy": entry["accuracy"],
               "split_final_test_accuracy": entry["final_accuracy"]}
        for split, setting in SPLITS:
            r = CrossvalRequest(cell["device"], tuple(entry["policy"]), int(cell[setting]))
            row[f"{split}_accuracy"] = result.accuracy(r) if r in result.correct else None
        rows.append(row)
    return rows


def cell_tests(cell: dict[str, Any], result: CrossvalResult) -> list[dict[str, Any]]:
    """McNemar tests of HAQ vs each baseline, per cross-validated split."""
    tests = []
    methods = cell["methods"]
    for split, setting in SPLITS:
        correct = {name: result.correct.get(CrossvalRequest(
            cell["device"], tuple(entry["policy"]), int(cell[setting])))
            for name, entry in methods.items()}
        haq = correct["haq"]
        if haq is None:
            continue
        for name in list(methods)[1:]:
            other = correct[name]
            assert other is not None
            h, b, p = mcnemar(haq, other)
            tests.append({"model": cell["model"], "device": cell["device"],
                          "budget": cell["budget"], "split": split, "baseline": name,
                          "haq_acc": float(haq.mean()), "baseline_acc": float(other.mean()),
                          "haq_only": h, "baseline_only": b, "p": p})
    return tests


def cell_gaps(cell: dict[str, Any], result: CrossvalResult) -> list[dict[str, Any]]:
    """Per cross-validated split: HAQ's accuracy minus the best baseline's and minus the
    uniform one's, each with a paired bootstrap interval (``LEVEL``), and the probability that
    HAQ matches the best baseline were it exactly as accurate (``p_match_if_equal``)."""
    gaps = []
    for split, setting in SPLITS:
        correct = [result.correct.get(CrossvalRequest(
            cell["device"], tuple(entry["policy"]), int(cell[setting])))
            for entry in cell["methods"].values()]
        if correct[0] is None:
            continue
        best = bootstrap_gap(correct[0], correct[1:], level=LEVEL)
        uniform = bootstrap_gap(correct[0], correct[1:2], level=LEVEL)
        gaps.append({"model": cell["model"], "device": cell["device"], "budget": cell["budget"],
                     "split": split, "best": best, "uniform": uniform,
                     "p_match_if_equal": match_probability_if_equal(correct[0], correct[1:]),
                     "n_dataset": result.n_dataset, **resolution(correct[0], correct[1:])})
    return gaps


def resolution(haq: np.ndarray, baselines: Sequence[np.ndarray]) -> dict[str, Any]:
    """How many images would tell HAQ from the most accurate baseline (the first of equals):
    the share of images exactly one of the two gets right, HAQ's accuracy minus its, the images
    an exact McNemar test (alpha 0.05) needs to find that difference 80% of the time, and the
    smallest difference it finds 80% of the time on these images (None: none does)."""
    haq = np.asarray(haq, bool)
    best = best_baseline(baselines)
    n = len(best)
    # from integer counts, so that |difference| <= discordant holds exactly in floating point
    haq_only, best_only = int(np.sum(haq & ~best)), int(np.sum(~haq & best))
    discordant = (haq_only + best_only) / n
    difference = (haq_only - best_only) / n
    return {"n_images": n, "discordant": discordant, "difference": difference,
            "images_needed": mcnemar_images_needed(discordant, difference),
            "detectable": mcnemar_detectable_difference(discordant, n)}


def _interval(g: tuple[float, float, float]) -> str:
    return f"{100 * g[0]:+.2f} [{100 * g[1]:+.2f}, {100 * g[2]:+.2f}]"


def _side(g: tuple[float, float, float]) -> str:
    return "below" if g[2] < 0 else "above" if g[1] > 0 else "contains"


def _train_sizes(r: CrossvalResult) -> str:
    sizes = sorted({r.n_dataset - int(n) for n in np.bincount(r.fold)})
    return "-".join(str(n) for n in (sizes[0], sizes[-1])) if len(sizes) > 1 else str(sizes[0])


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _verdict(rows: list[dict[str, Any]], col: str) -> str:
    haq, base = rows[0][col], [r[col] for r in rows[1:]]
    if haq is None:
        return "-"
    best, uni = haq - max(base), haq - base[0]
    return (f"{'yes' if best >= 0 else 'no'} ({100 * best:+.2f} pp) / "
            f"{'yes' if uni >= 0 else 'no'} ({100 * uni:+.2f} pp)")


def markdown(source: Path, all_rows: list[list[dict[str, Any]]], tests: list[dict[str, Any]],
             results: dict[str, CrossvalResult], meta: dict[str, Any],
             gaps: list[dict[str, Any]]) -> str:
    lines = [f"# HAQ vs baselines, cross-validated on the digits ({meta['date']})", "",
             f"Command: `{meta['command']}`", "",
             f"Policies from `{source}` (found on the search's model and split). Each policy "
             f"is re-measured on {meta['folds']} folds (fold seed {meta['fold_seed']}) of the "
             f"digits without the search's {meta['excluded']}: "
             + "; ".join(f"{m}: {len(r.images)} images, each tested once by a model trained "
                         f"with the demo recipe on the other {_train_sizes(r)} images (float32 "
                         f"fold models: {r.fp_accuracy:.2%})" for m, r in results.items())
             + f". Fine-tune as in the run: {meta['finetune_epochs']} epoch(s) (cv acc; the "
             f"table's test acc on its 200-image split beside it) and "
             f"{meta['final_finetune_epochs']} epochs (cv final acc; the table's final test "
             f"acc beside it); seed {meta['seed']}; accuracy under each device's numerics "
             "(emulator).", "",
             "| model | device | budget | method | cost / 8-bit | test acc (200) | cv acc | "
             "final test acc (200) | cv final acc |", "|---|---|---|---|---|---|---|---|---|"]
    for rows in all_rows:
        for r in rows:
            cost = "-" if r["cost_fraction"] is None else f"{r['cost_fraction']:.3f}"
            lines.append(f"| {r['model']} | {r['device']} | {r['budget']:g} | {r['method']} | "
                         f"{cost} | {_pct(r['split_test_accuracy'])} | "
                         f"{_pct(r['cv_accuracy'])} | "
                         f"{_pct(r['split_final_test_accuracy'])} | "
                         f"{_pct(r['cv_final_accuracy'])} |")
    lines += ["", "HAQ >= best baseline / HAQ >= uniform (margin in percentage points):", "",
              "| model | device | budget | cv | cv final |", "|---|---|---|---|---|"]
    counts = {split: [0, 0, 0] for split, _ in SPLITS}
    for rows in all_rows:
        r0 = rows[0]
        lines.append(f"| {r0['model']} | {r0['device']} | {r0['budget']:g} | "
                     f"{_verdict(rows, 'cv_accuracy')} | {_verdict(rows, 'cv_final_accuracy')} |")
        for split, _ in SPLITS:
            col = f"{split}_accuracy"
            if r0[col] is None:
                continue
            base = [r[col] for r in rows[1:]]
            counts[split][0] += r0[col] >= max(base)
            counts[split][1] += r0[col] >= base[0]
            counts[split][2] += 1
    lines.append("")
    for split, (best, uni, n) in counts.items():
        if n:
            p = [g["p_match_if_equal"] for g in gaps if g["split"] == split]
            lines.append(f"- {split}: HAQ >= best baseline in {best}/{n} cells, >= uniform in "
                         f"{uni}/{n}. Were HAQ exactly as accurate as each cell's best baseline "
                         f"(McNemar's null: each image only one of the two gets right goes "
                         f"either way at 1/2), it would match or beat that baseline in "
                         f"{sum(p):.1f}/{n} cells on average, and in all {n} with probability "
                         f"{math.prod(p):.2g} (cells taken as independent).")
    lines += ["", f"HAQ minus the best baseline and minus uniform, in percentage points, with "
              f"{LEVEL:.0%} paired bootstrap intervals (the pooled images resampled; the best "
              "baseline chosen again in each resample, so picking the best of several noisy "
              "baselines is part of the interval; that maximum is biased upwards by noise, so "
              "the intervals lean towards HAQ behind):", "",
              "| model | device | budget | split | HAQ - best baseline | HAQ - uniform |",
              "|---|---|---|---|---|---|"]
    for g in gaps:
        lines.append(f"| {g['model']} | {g['device']} | {g['budget']:g} | {g['split']} | "
                     f"{_interval(g['best'])} | {_interval(g['uniform'])} |")
    lines.append("")
    for split, _ in SPLITS:
        sel = [g for g in gaps if g["split"] == split]
        if not sel:
            continue
        parts = []
        for key, what in (("best", "best baseline"), ("uniform", "uniform")):
            sides = [_side(g[key]) for g in sel]
            parts.append(f"HAQ - {what}: interval below 0 (HAQ behind) in "
                         f"{sides.count('below')}/{len(sel)} cells, containing 0 in "
                         f"{sides.count('contains')}/{len(sel)}, above 0 (HAQ ahead) in "
                         f"{sides.count('above')}/{len(sel)}")
        lines.append(f"- {split}: " + "; ".join(parts) + ".")
    lines += resolution_lines(gaps)
    lines += ["", "Exact two-sided McNemar tests, HAQ vs each baseline on the pooled images "
              "(haq-only / baseline-only: images only that method classifies correctly; Holm: "
              "p adjusted over the split's tests against the same baseline, one per cell):",
              "",
              "| model | device | budget | split | baseline | HAQ acc | baseline acc | "
              "HAQ-only | baseline-only | p | p (Holm) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in tests:
        lines.append(f"| {t['model']} | {t['device']} | {t['budget']:g} | {t['split']} | "
                     f"{t['baseline']} | {t['haq_acc']:.2%} | {t['baseline_acc']:.2%} | "
                     f"{t['haq_only']} | {t['baseline_only']} | {t['p']:.3g} | "
                     f"{t['p_holm']:.3g} |")
    for split, _ in SPLITS:
        sel = [t for t in tests if t["split"] == split]
        if not sel:
            continue
        sig = [t for t in sel if t["p"] < 0.05]
        notes = [f"{t['model']} {t['device']} {t['budget']:g} vs {t['baseline']} "
                 f"({'HAQ' if t['haq_only'] > t['baseline_only'] else 'baseline'} better, "
                 f"p={t['p']:.3g}, Holm {t['p_holm']:.3g})" for t in sig]
        n_holm = sum(t["p_holm"] < 0.05 for t in sel)
        lines.append(f"\n{split}: {len(sig)} of {len(sel)} comparisons have p < 0.05"
                     + (": " + "; ".join(notes) if notes else "")
                     + f". After Holm's adjustment: {n_holm} of {len(sel)}.")
    lines += ["", f"Wall time of this invocation: {meta['total_s']:.0f} s "
              f"({meta['measured']} measurements made, the rest from the cache).", ""]
    return "\n".join(lines)


def _images(n: float) -> str:
    return "never (equal)" if math.isinf(n) else f"{math.ceil(n):,}"


def resolution_lines(gaps: list[dict[str, Any]]) -> list[str]:
    """The report's section on how many images would separate HAQ from the best baseline."""
    lines = ["", "How many images would tell HAQ from the best baseline: the share of the "
             "pooled images exactly one of the two gets right, HAQ's accuracy minus the "
             "baseline's, the images an exact two-sided McNemar test at alpha 0.05 needs to "
             "find a difference that large 80% of the time at that share (Connor's "
             "approximation; plug-in: the observed difference taken as the true one), and the "
             "smallest difference it finds 80% of the time on the images here (none: not even "
             "every discordant image going one way):", "",
             "| model | device | budget | split | discordant | HAQ - best (pp) | "
             "images needed | smallest findable here (pp) |", "|---|---|---|---|---|---|---|---|"]
    for g in gaps:
        found = "none" if g["detectable"] is None else f"{100 * g['detectable']:.2f}"
        lines.append(f"| {g['model']} | {g['device']} | {g['budget']:g} | {g['split']} | "
                     f"{round(g['discordant'] * g['n_images'])} of {g['n_images']} | "
                     f"{100 * g['difference']:+.2f} | {_images(g['images_needed'])} | "
                     f"{found} |")
    lines.append("")
    for split, _ in SPLITS:
        sel = [g for g in gaps if g["split"] == split]
        if not sel:
            continue
        need = sorted(g["images_needed"] for g in sel)
        finite = [n for n in need if not math.isinf(n)]
        here = sorted({g["n_images"] for g in sel})
        dataset = max(g["n_dataset"] for g in sel)
        more = sum(n > dataset for n in need)
        none = sum(g["detectable"] is None for g in sel)
        lines.append(
            f"- {split}: images needed: median {_images(float(np.median(need)))}"
            + (f", least {_images(finite[0])}" if finite else "")
            + f"; {len(need) - len(finite)}/{len(sel)} cells with no difference at all; "
            f"{more}/{len(sel)} (those included) need more than the {dataset:,} images of the "
            f"whole dataset. "
            f"On the {'/'.join(map(str, here))} images here no difference is found 80% of the "
            f"time in {none}/{len(sel)} cells; |HAQ - best| median "
            f"{100 * float(np.median([abs(g['difference']) for g in sel])):.2f} pp.")
    return lines


def rows_csv(all_rows: list[list[dict[str, Any]]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(all_rows[0][0]), lineterminator="\n")
    w.writeheader()
    for rows in all_rows:
        w.writerows(rows)
    return buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="haq_table.py CSV, or its output folder")
    ap.add_argument("--out", type=Path, required=True, help="markdown report (.md); the rows "
                    "go to the same name with .csv")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--fold-seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, help="resume file (default: OUT with "
                    ".cache.json)")
    ap.add_argument("--models", nargs="*", help="only these models' cells")
    for key in SETTINGS:
        ap.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                        help="for a CSV without this column (its .md states it)")
    args = ap.parse_args(argv)
    source = args.run / "table.csv" if args.run.is_dir() else args.run
    if source.suffix != ".csv" or not source.is_file():
        print(f"{args.run}: neither a haq_table.py CSV nor a folder holding table.csv",
              file=sys.stderr)
        return 2
    if args.out.suffix != ".md":
        print(f"--out {args.out}: give a .md path", file=sys.stderr)
        return 2
    cells = cells_from_csv(source, {k: getattr(args, k) for k in SETTINGS})
    if args.models:
        cells = [c for c in cells if c["model"] in args.models]
        if not cells:
            print(f"{source}: no cells of models {args.models}", file=sys.stderr)
            return 2
    exclude, excluded = excluded_images(cells, source)
    cache = args.cache or args.out.with_suffix(".cache.json")
    t0 = time.perf_counter()
    measured = 0

    def progress(line: str) -> None:
        nonlocal measured
        measured += 1
        print(f"[{time.perf_counter() - t0:6.0f} s] {line}", file=sys.stderr, flush=True)

    results: dict[str, CrossvalResult] = {}
    try:
        for model, reqs in requests_of(cells).items():
            results[model] = crossval_correct(
                model, reqs, n_folds=args.folds, exclude=exclude,
                fold_seed=args.fold_seed, seed=int(cells[0]["seed"]), cache_path=cache,
                progress=progress)
    except HwsimError as err:
        print(f"haq_crossval: {err}", file=sys.stderr)
        return 1
    all_rows = [cell_rows(c, results[c["model"]]) for c in cells]
    tests = [t for c in cells for t in cell_tests(c, results[c["model"]])]
    add_holm(tests)
    gaps = [g for c in cells for g in cell_gaps(c, results[c["model"]])]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"),
            "command": "python tools/haq_crossval.py " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "folds": args.folds, "fold_seed": args.fold_seed,
            "finetune_epochs": cells[0]["finetune_epochs"],
            "final_finetune_epochs": cells[0]["final_finetune_epochs"], "seed": cells[0]["seed"],
            "total_s": time.perf_counter() - t0, "measured": measured,
            "excluded": excluded}
    text = markdown(source, all_rows, tests, results, meta, gaps)
    write_text_atomic(args.out, text)
    write_text_atomic(args.out.with_suffix(".csv"), rows_csv(all_rows))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
