"""What the tie rule at HAQ's best reward is worth: per cell of a ``tools/haq_table.py`` run
folder, the policy HAQ's released code would keep (the earliest episode at the best reward)
against the one hwsim reported (``result.json``: ties broken by an NLL, then the earliest),
both measured on the 200 test images after the run's fine-tune.

    python tools/haq_tie_rule.py RUN_DIR [--out REPORT.md]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from haq_significance import cells_from_run_dir, parse_policy  # tools/ is on sys.path

from hwsim.latency.table import write_text_atomic
from hwsim.quant.device import load_device
from hwsim.search.haq_accuracy import PolicyEvaluator
from hwsim.search.haq_cost import quantizable_layers
from hwsim.search.haq_run import digits_search_data, image_size, load_search_model


def earliest_at_best(episodes: Sequence[dict[str, str]],
                     where: str) -> tuple[int, list[tuple[int, int]], int]:
    """(episode, policy, tie count) of the first episode with the highest reward (the one
    HAQ's code keeps: it replaces its best only on a strictly higher reward)."""
    if not episodes:
        raise SystemExit(f"{where}: no episodes")
    rewards = [float(e["reward"]) for e in episodes]
    best = max(rewards)
    first = rewards.index(best)
    return (int(episodes[first]["episode"]),
            parse_policy(episodes[first]["policy_w/a"], where), rewards.count(best))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="haq_table.py output folder")
    ap.add_argument("--out", type=Path, help="markdown report")
    args = ap.parse_args(argv)
    cells = cells_from_run_dir(args.run)
    if not cells:
        print(f"{args.run}: no result.json below it", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    graphs: dict[str, Any] = {}
    lines = ["| model | device | budget | tied | earliest episode | same policy | "
             "earliest test acc | reported test acc |", "|---|---|---|---|---|---|---|---|"]
    diffs, changed = [], 0
    for cell in cells:
        episodes_csv = Path(cell["where"]).parent / "episodes.csv"
        with episodes_csv.open(newline="") as f:
            episode, policy, tied = earliest_at_best(list(csv.DictReader(f)), str(episodes_csv))
        model = cell["model"]
        graph = graphs.setdefault(model, load_search_model(model))
        data = digits_search_data(image_size(graph), reward_data=cell["reward_data"])
        ev = PolicyEvaluator(graph, load_device(cell["device"]), quantizable_layers(graph), data,
                             finetune_epochs=cell["finetune_epochs"], seed=cell["seed"])
        haq = cell["methods"]["haq"]
        if abs(ev.accuracy(haq["policy"], "test") - haq["accuracy"]) > 1e-12:
            print(f"{cell['where']}: the reported policy's re-run test accuracy differs from the "
                  f"stored {haq['accuracy']}", file=sys.stderr)
            return 1
        acc = ev.accuracy(policy, "test")
        same = policy == haq["policy"]
        changed += not same
        diffs.append(acc - haq["accuracy"])
        lines.append(f"| {model} | {cell['device']} | {cell['budget']:g} | {tied} | "
                     f"{episode} | {'yes' if same else 'no'} | {acc:.2%} | "
                     f"{haq['accuracy']:.2%} |")
        print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join([
        "# The tie rule at HAQ's best reward", "",
        "Command: `python tools/haq_tie_rule.py "
        + " ".join(argv if argv is not None else sys.argv[1:]) + "`", "",
        "Earliest: the policy HAQ's released code keeps (first episode at the best reward); "
        "reported: hwsim's (result.json). Test accuracy on the 200 test images after the run's "
        "fine-tune (the reported one re-measured and checked against result.json).", "",
        *lines, "",
        f"{changed} of {len(cells)} policies differ; earliest minus reported test accuracy, "
        f"summed over the cells: {100 * sum(diffs):+.1f} pp "
        f"({time.perf_counter() - t0:.0f} s).", ""])
    if args.out:
        write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
