"""How far HAQ's agent gets on its own reward, and when: per cell of a ``tools/haq_table.py``
run folder, the best reward score the search had reached after a quarter, half, three
quarters and all of its episodes, against the score of the greedy and ILP policies on the
same signal (``result.json``). No policy is re-measured: the scores are the run's.

    python tools/haq_convergence.py RUN_DIR [--out REPORT.md] [--plot CURVES.png]

The score is what the run's reward is a function of: the fine-tune's running top-1 or NLL
(``--reward-data finetune``), else the validation top-1 or NLL. Top-1 is higher-better, NLL
lower-better; "reached" compares the agent's best so far with the better of greedy and ILP.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwsim.emulate.dump import save_png_atomic
from hwsim.latency.table import write_text_atomic

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def reward_score(result: dict[str, Any], where: str) -> tuple[str, str, bool]:
    """(episodes.csv column, result-entry field, higher is better) of the score a run's reward
    is computed from. Entry fields are dotted paths (``finetune_running.nll``)."""
    metric = result.get("reward_metric", "top1")
    if metric not in ("top1", "nll"):
        raise SystemExit(f"{where}: reward_metric {metric!r} is not top1 or nll")
    if result.get("data", {}).get("reward_data") == "finetune":
        return (("running_accuracy", "finetune_running.accuracy", True) if metric == "top1"
                else ("running_nll", "finetune_running.nll", False))
    return ("val_accuracy", "val_accuracy", True) if metric == "top1" else \
        ("val_nll", "val_nll", False)


def entry_score(entry: dict[str, Any], field: str, where: str) -> float:
    value: Any = entry
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            raise SystemExit(f"{where}: no {field!r} in a result entry (a run of an older "
                             "hwsim, or not a haq_table run)")
        value = value[key]
    return float(value)


def best_so_far(values: Sequence[float], higher: bool) -> list[float]:
    """The running best (max if ``higher`` else min) of ``values``."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max(out[-1], v) if higher else min(out[-1], v)))
    return out


def cell_convergence(result: dict[str, Any], episodes: Sequence[dict[str, str]],
                     where: str) -> dict[str, Any]:
    """Best score after each of ``FRACTIONS`` of the episodes, the first episode at the final
    best, the greedy and ILP scores, and how many episodes scored at least the better one."""
    column, field, higher = reward_score(result, where)
    if not episodes:
        raise SystemExit(f"{where}: no episodes")
    if column not in episodes[0]:
        raise SystemExit(f"{where}: episodes.csv has no {column!r} column "
                         f"(columns: {', '.join(episodes[0])})")
    scores = [float(e[column]) for e in episodes]
    running = best_so_far(scores, higher)
    n = len(scores)
    base = {name: entry_score(result["baselines"][name], field, where)
            for name in ("greedy", "ilp")}
    best_base = max(base.values()) if higher else min(base.values())

    def at_least(s: float) -> bool:
        return s >= best_base if higher else s <= best_base

    return {"score": column, "higher_is_better": higher, "episodes": n, "curve": running,
            "at": {f: running[max(1, round(f * n)) - 1] for f in FRACTIONS},
            "first_at_best": scores.index(running[-1]),
            "greedy": base["greedy"], "ilp": base["ilp"], "best_baseline": best_base,
            "reached": {f: at_least(running[max(1, round(f * n)) - 1]) for f in FRACTIONS},
            "episodes_at_least_baseline": sum(at_least(s) for s in scores),
            "chosen": entry_score(result, field, where),
            "sensitivity_measurements": int(result.get("sensitivity", {}).get("evaluations", 0))
            or None}


def _plot(path: Path, cells: Sequence[tuple[str, dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    for ax, (title, c) in zip(axes.flat, cells, strict=False):
        ax.plot(range(1, c["episodes"] + 1), c["curve"], color="C3", lw=1.2,
                label="HAQ best so far")
        ax.axhline(c["greedy"], color="C1", ls="--", lw=0.9, label="greedy")
        ax.axhline(c["ilp"], color="C2", ls=":", lw=1.2, label="ILP")
        if not c["higher_is_better"]:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("episode", fontsize=7)
        ax.set_ylabel(c["score"], fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    save_png_atomic(path, fig, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="haq_table.py output folder")
    ap.add_argument("--out", type=Path, help="markdown report")
    ap.add_argument("--plot", type=Path, help="PNG: best score so far per cell vs episode")
    args = ap.parse_args(argv)
    paths = sorted(args.run.glob("**/result.json"))
    if not paths:
        print(f"{args.run}: no result.json below it", file=sys.stderr)
        return 2
    pct = [f"{round(100 * f)}%" for f in FRACTIONS]
    lines = ["| model | device | budget | score | episodes | "
             + " | ".join(f"best after {p}" for p in pct)
             + " | first at best | greedy | ILP | reported HAQ | episodes >= best baseline | "
             "greedy/ILP measurements |",
             "|---|---|---|---|---|" + "---|" * len(FRACTIONS) + "---|---|---|---|---|---|"]
    cells = []
    reached = dict.fromkeys(FRACTIONS, 0)
    for path in paths:
        result = json.loads(path.read_text())
        with (path.parent / "episodes.csv").open(newline="") as f:
            c = cell_convergence(result, list(csv.DictReader(f)), str(path))
        for frac in FRACTIONS:
            reached[frac] += c["reached"][frac]
        title = f"{result['model']} {result['device']} {result['budget_fraction']:g}"
        cells.append((title, c))
        lines.append(
            f"| {result['model']} | {result['device']} | {result['budget_fraction']:g} | "
            f"{c['score']} | {c['episodes']} | "
            + " | ".join(f"{c['at'][f]:.4g}{' *' if c['reached'][f] else ''}"
                         for f in FRACTIONS)
            + f" | {c['first_at_best']} | {c['greedy']:.4g} | {c['ilp']:.4g} | "
            f"{c['chosen']:.4g} | {c['episodes_at_least_baseline']} | "
            f"{c['sensitivity_measurements'] or 'not recorded'} |")
    text = "\n".join([
        "# HAQ's search on its own reward: best score so far vs the greedy and ILP policies", "",
        "Command: `python tools/haq_convergence.py "
        + " ".join(argv if argv is not None else sys.argv[1:]) + "`", "",
        "Score: what the run's reward is computed from (running_*: the fine-tune's running "
        "score on its own images; val_*: the validation images'); accuracy higher-better, NLL "
        "lower-better. `*`: the agent's best so far is at least as good as the better of greedy "
        "and ILP. First at best: the episode (from 0) that first reached the final best score. "
        "Reported HAQ: the chosen policy's score (it differs from the best where ties at the "
        "best reward were broken by another score). Greedy/ILP measurements: the policies measured "
        "for their per-layer sensitivities (one per episode for HAQ).", "",
        *lines, "",
        "Cells where the agent's best so far was at least the best baseline's: "
        + ", ".join(f"after {p}: {reached[f]}/{len(cells)}"
                    for p, f in zip(pct, FRACTIONS, strict=True)) + ".", ""])
    if args.plot:
        _plot(args.plot, cells)
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
