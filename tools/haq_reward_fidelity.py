"""How well does each HAQ reward design rank policies the way cross-validation does?

Takes a ``tools/haq_table.py`` CSV (the policies) and its ``tools/haq_crossval.py`` CSV (each
policy's cross-validated accuracy, the reference). Every policy of a cell (HAQ's, uniform,
greedy, ILP) is measured, with the run's fine-tune (its ``finetune_epochs`` and seed), on the
validation images of each reward design (``digits_search_data``): ``heldout`` (160 held-out
images), ``train`` (a third of the training split, fine-tune on the rest) and ``finetune`` (the
``train`` design's fine-tune scored on its own 958 images while it trains,
``PolicyEvaluator.finetune_running``: HAQ's released code rewards this running top-1), each
scored by top-1 or by -NLL. Per design: in how many cells its best policy is the
cross-validation's best (ties split evenly), the mean Kendall tau-b against the cross-validated
accuracies per cell, and the share of within-cell pairs with different cross-validated
accuracies that it orders the same way (a tie in the design's score counts one half).
A reward that ranks policies as held-out data do is what a search needs; the search then only
has to find its best policy.

    python tools/haq_reward_fidelity.py results/haq/top1-latency.csv \\
        results/haq/crossval-top1-latency.csv --out fidelity.md
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from haq_significance import SETTINGS, cells_from_csv  # tools/ is on sys.path when run as a script
from scipy.stats import kendalltau

from hwsim.latency.table import write_text_atomic
from hwsim.quant.device import load_device
from hwsim.search.haq_accuracy import PolicyEvaluator
from hwsim.search.haq_cost import quantizable_layers
from hwsim.search.haq_run import REWARD_DATA, digits_search_data, image_size, load_search_model

# "finetune": the running score of the train design's fine-tune on its own images (HAQ's code)
RUNNING = "finetune"
MEASURED_DATA = tuple(d for d in REWARD_DATA if d != RUNNING)  # scored after the fine-tune
DESIGNS = tuple((data, metric) for data in (*MEASURED_DATA, RUNNING) for metric in ("top1", "nll"))


def cv_accuracies(path: Path, column: str = "cv_accuracy") -> dict[tuple[str, str, float, str],
                                                                     float]:
    """(model, device, budget, method) -> the cross-validated accuracy of ``path``."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"model", "device", "budget", "method", column}
    if not rows or need - set(rows[0]):
        raise SystemExit(f"{path}: not a haq_crossval.py CSV (columns {sorted(need)} needed)")
    return {(r["model"], r["device"], float(r["budget"]), r["method"]): float(r[column])
            for r in rows}


def fidelity(scores: Sequence[Sequence[float]],
             references: Sequence[Sequence[float]]) -> dict[str, float]:
    """Agreement of per-cell ``scores`` (higher = better) with per-cell ``references``:
    ``best`` (cells whose top-scored policy is a reference best; a tie at the top counts the
    share of tied policies that are reference-best), ``tau`` (mean Kendall tau-b over cells
    where it is defined), ``concordance`` (share of within-cell pairs with different references
    ordered alike; a score tie counts 1/2) and ``pairs`` (their number)."""
    best = 0.0
    taus = []
    agree = 0.0
    pairs = 0
    for s, r in zip(scores, references, strict=True):
        s, r = np.asarray(s, float), np.asarray(r, float)
        top = np.flatnonzero(s == s.max())
        best += float(np.mean(r[top] == r.max()))
        if np.ptp(s) > 0 and np.ptp(r) > 0:
            taus.append(kendalltau(s, r).statistic)
        for i, j in combinations(range(len(s)), 2):
            if r[i] == r[j]:
                continue
            pairs += 1
            d = (s[i] - s[j]) * (r[i] - r[j])
            agree += 1.0 if d > 0 else 0.5 if d == 0 else 0.0
    return {"best": best, "tau": float(np.mean(taus)) if taus else float("nan"),
            "concordance": agree / pairs if pairs else float("nan"), "pairs": pairs}


def _row(f: dict[str, float], n_cells: int) -> str:
    tau = "n/a" if np.isnan(f["tau"]) else f"{f['tau']:+.2f}"
    return f"{f['best']:.3g}/{n_cells} | {tau} | {f['concordance']:.0%} of {f['pairs']}"


def measure(cells: Sequence[dict[str, Any]], progress: bool = True
            ) -> dict[tuple[str, str], list[list[float]]]:
    """Per design, per cell, per method: the design's score (top-1, or -NLL) of the policy.
    The ``finetune`` designs only where every cell has a fine-tune (else they are left out)."""
    out: dict[tuple[str, str], list[list[float]]] = {d: [] for d in DESIGNS}
    graphs: dict[str, Any] = {}
    for k, cell in enumerate(cells, 1):
        if cell["model"] not in graphs:
            graphs[cell["model"]] = load_search_model(cell["model"])
        graph = graphs[cell["model"]]
        layers = quantizable_layers(graph)
        for data_name in MEASURED_DATA:
            ev = PolicyEvaluator(graph, load_device(cell["device"]), layers,
                                 digits_search_data(image_size(graph), reward_data=data_name),
                                 finetune_epochs=cell["finetune_epochs"], seed=cell["seed"])
            measured, running = [], []
            for m in cell["methods"].values():
                measured.append(ev.evaluate(m["policy"], "val"))
                if data_name == "train" and cell["finetune_epochs"]:  # the cached fine-tune
                    running.append(ev.finetune_running(m["policy"]))
            out[(data_name, "top1")].append([a for a, _ in measured])
            out[(data_name, "nll")].append([-nll for _, nll in measured])
            if running:
                out[(RUNNING, "top1")].append([a for a, _ in running])
                out[(RUNNING, "nll")].append([-nll for _, nll in running])
        if progress:
            print(f"[{k}/{len(cells)}] {cell['where']}", file=sys.stderr, flush=True)
    return {d: v for d, v in out.items() if len(v) == len(cells)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", type=Path, help="haq_table.py CSV (the policies)")
    ap.add_argument("crossval", type=Path, nargs="+",
                    help="its haq_crossval.py CSV(s) (the reference; one block each)")
    ap.add_argument("--out", type=Path, help="markdown report")
    ap.add_argument("--models", nargs="*", help="only these models' cells")
    args = ap.parse_args(argv)
    cells = cells_from_csv(args.table, dict.fromkeys(SETTINGS))
    if args.models:
        cells = [c for c in cells if c["model"] in args.models]
    if not cells:
        print(f"{args.table}: no cells", file=sys.stderr)
        return 2
    references: dict[Path, list[list[float]]] = {}
    for path in args.crossval:
        cv = cv_accuracies(path)
        refs = references[path] = []
        for c in cells:
            keys = [(c["model"], c["device"], c["budget"], m) for m in c["methods"]]
            missing = [k for k in keys if k not in cv]
            if missing:
                print(f"{path}: no cross-validated accuracy for {missing[0]}", file=sys.stderr)
                return 2
            refs.append([cv[k] for k in keys])
    t0 = time.perf_counter()
    scores = measure(cells)
    total_s = time.perf_counter() - t0
    # the table's val acc is the top-1 of its own reward design: the re-measurement must match
    worst = 0.0
    for i, c in enumerate(cells):
        # a "finetune" table's val acc is measured on the "train" design's validation images
        got = scores[("train" if c["reward_data"] == RUNNING else c["reward_data"], "top1")][i]
        for a, m in zip(got, c["methods"].values(), strict=True):
            if m["val_accuracy"] is not None:
                worst = max(worst, abs(a - m["val_accuracy"]))
    if worst > 1e-12:
        print(f"re-measured top-1 on the table's validation images differs from its val acc by "
              f"{worst}", file=sys.stderr)
        return 1
    models = sorted({c["model"] for c in cells})
    date = time.strftime("%Y-%m-%d")
    lines = [f"# Reward designs against cross-validated accuracy ({date})",
             "", "Command: `python tools/haq_reward_fidelity.py "
             + " ".join(argv if argv is not None else sys.argv[1:]) + "`", "",
             f"Policies: `{args.table}` ({len(cells)} cells, {len(cells[0]['methods'])} "
             f"methods each). Each policy measured with the run's fine-tune "
             f"({cells[0]['finetune_epochs']} epoch(s), seed {cells[0]['seed']}) on each "
             f"design's validation images ({total_s:.0f} s); reference: the cv acc of each "
             "cross-validation CSV."]
    for path, refs in references.items():
        lines += ["", f"Reference `{path}`:", "",
                  "| reward design | model | cells whose best is the cv best | "
                  "mean Kendall tau-b | pairs ordered as cv |", "|---|---|---|---|---|"]
        for design in (d for d in DESIGNS if d in scores):
            for model in [*models, "all"] if len(models) > 1 else models:
                sel = [i for i, c in enumerate(cells) if model in ("all", c["model"])]
                f = fidelity([scores[design][i] for i in sel], [refs[i] for i in sel])
                lines.append(f"| {design[0]} {design[1]} | {model} | {_row(f, len(sel))} |")
    paths = list(references)
    if len(paths) > 1:  # how far the references agree with each other: the noise ceiling
        lines += ["", "The references against each other (the first as the score, the others "
                  "as reference):", "", "| score | reference | cells whose best is the "
                  "reference's best | mean Kendall tau-b | pairs ordered alike |",
                  "|---|---|---|---|---|"]
        for other in paths[1:]:
            f = fidelity(references[paths[0]], references[other])
            lines.append(f"| `{paths[0].name}` | `{other.name}` | {_row(f, len(cells))} |")
    lines.append("")
    text = "\n".join(lines)
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
