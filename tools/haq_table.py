"""Accuracy vs cost of HAQ and its baselines (uniform, greedy, ILP) at several budgets.

For every model x device x budget (a fraction of the all-W8A8 cost; ``--metric`` latency by
default, energy or size), runs
``hwsim.search.haq_run.run_haq_experiment`` (HAQ's DDPG search plus the baselines, same budget,
same first/last rule, accuracy under the device's numerics on digits) into
``OUT/<model>/<device>/<metric>-<budget>/`` and writes ``OUT/table.md`` and ``OUT/table.csv``.
Accuracies are cached per model in ``OUT/accuracy_cache-<model>.json`` and shared by every
device with the same numerics, every budget and every method; a rerun with the same OUT resumes
(checkpoints and cache).

Per row: the method's cost as a fraction of the 8-bit cost, validation accuracy (what the
search and the sensitivities see, after the search's 1-epoch STE fine-tune) and test accuracy
(held out from both); with ``--final-finetune-epochs E`` also the test accuracy after HAQ's last
step, a longer fine-tune of the chosen policy, given alike to every method's policy. "uniform"
is the widest uniform policy within the budget. The target of issue 7 is checked on every
split: HAQ >= the best baseline, and HAQ >= uniform within the same budget, with the margin in
percentage points (one test image = 0.5 pp).

    python tools/haq_table.py --out haq-table --episodes 80 \
        --episodes-per-model digits_cnn=150 --final-finetune-epochs 10
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError
from hwsim.latency.table import write_text_atomic
from hwsim.search.haq_run import REWARD_DATA, REWARD_METRICS, run_haq_experiment

METHODS = ("haq", "uniform", "greedy", "ilp")


def best_uniform(res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    fits = [(k, v) for k, v in res["baselines"].items()
            if k.startswith("uniform-") and v["fits_budget"]]
    return max(fits, key=lambda kv: kv[1]["cost"])


def _rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    uname, uni = best_uniform(res)
    entries = {"haq": res, "uniform": uni, "greedy": res["baselines"]["greedy"],
               "ilp": res["baselines"]["ilp"]}
    rows = []
    for method in METHODS:
        e = entries[method]
        rows.append({
            "model": res["model"], "device": res["device"], "budget": res["budget_fraction"],
            "method": uname if method == "uniform" else method,
            "metric": res["metric"], "cost_fraction": e["cost_fraction"], "cost": e["cost"],
            "unit": res["unit"], "finetune_epochs": res["finetune_epochs"],
            "final_finetune_epochs": res["final_finetune_epochs"], "seed": res["seed"],
            "reward_metric": res["reward_metric"],
            "reward_data": res["data"].get("reward_data", "heldout"),
            "fits_budget": e["fits_budget"], "val_accuracy": e["val_accuracy"],
            "val_nll": e.get("val_nll", math.nan),
            "running_accuracy": e.get("finetune_running", {}).get("accuracy", math.nan),
            "running_nll": e.get("finetune_running", {}).get("nll", math.nan),
            "test_accuracy": e["accuracy"],
            "final_test_accuracy": (e["final_finetune"]["accuracy"] if "final_finetune" in e
                                    else float("nan")),
            "policy_w/a": " ".join(f"{p['weight_bits']}/{p['activation_bits']}"
                                   for p in e["policy"].values())})
    return rows


def _score(row: dict[str, Any], split: str) -> float:
    """Higher is better: accuracy on ``split``; on "val", what the search and the
    sensitivities optimised: -val NLL under an NLL reward, the fine-tune's running top-1
    (-running NLL) with reward_data "finetune"."""
    if split == "val" and row["reward_data"] == "finetune":
        nll = row["reward_metric"] == "nll"
        return -row["running_nll"] if nll else row["running_accuracy"]
    if split == "val" and row["reward_metric"] == "nll":
        return -row["val_nll"]
    return row[f"{split}_accuracy"]


def _verdict(rows: list[dict[str, Any]], split: str) -> tuple[float, float]:
    """(HAQ - best baseline, HAQ - uniform) score (``_score``) on ``split`` for one
    model/device/budget; >= 0 means HAQ matches or beats it."""
    haq = _score(rows[0], split)
    base = [_score(r, split) for r in rows[1:]]
    return haq - max(base), haq - base[0]


def _cell(margin: float, nll: bool = False) -> str:
    if nll:
        return f"{'yes' if margin >= 0 else 'no'} ({-margin:+.4f} NLL)"
    return f"{'yes' if margin >= 0 else 'no'} ({100 * margin:+.1f} pp)"


def _markdown(all_rows: list[list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    final = meta["final_finetune_epochs"]
    splits = ("val", "test", "final_test") if final else ("val", "test")
    nll = meta["reward_metric"] == "nll"
    running = meta["reward_data"] == "finetune"
    lines = [f"# HAQ vs baselines: accuracy vs {meta['metric']} ({meta['date']})", "",
             f"Command: `{meta['command']}`", "",
             f"Episodes per HAQ search: {meta['episodes']} (HAQ used 600); fine-tune epochs "
             f"{meta['finetune_epochs']}; seed {meta['seed']}; reward metric "
             f"{meta['reward_metric']} (top1 = HAQ's; nll = an NLL in place of top-1 for the "
             "reward and the greedy/ILP sensitivities, on the images named below). Cost: "
             + ("weight bytes at each layer's weight bits (device-independent)"
                if meta["metric"] == "size" else
                f"{meta['metric']} from the devices' cost MODELS (bismo edge, bitfusion "
                "isca18: labelled models of HAQ's accelerators)")
             + "; accuracy under each "
             f"device's numerics (emulator) on scikit-learn digits: val = {meta['val']} "
             + ("held-out images (search reward, greedy/ILP sensitivities), test = the other "
                f"{meta['test']} held-out images."
                if meta["reward_data"] == "heldout" else
                "images of the training split (search reward, greedy/ILP sensitivities; HAQ's "
                f"code draws its reward images from the training set), fine-tune on the other "
                f"{meta['train']}, test = {meta['test']} held-out images."
                if meta["reward_data"] == "train" else
                "images of the training split, fine-tune on the other "
                f"{meta['train']}, test = {meta['test']} held-out images; the search reward and "
                "the greedy/ILP sensitivities are the fine-tune's running "
                + ("NLL" if nll else "top-1") + " on its own images (running acc / NLL: "
                "best epoch), against the float model's on them (HAQ's released code).")
             + " HAQ's policy: the episode with the highest "
             "reward" + (f", ties broken by the lowest {'running' if running else 'validation'} "
                         "NLL" if meta["reward_metric"] == "top1" else "") + ". "
             "Greedy and ILP minimise the summed measured per-component "
             + ("fine-tune running " if running else "validation ")
             + ("accuracy drop" if meta["reward_metric"] == "top1" else "NLL increase")
             + "; uniform = the widest uniform policy within the budget."
             + (f" final test acc: every reported policy (HAQ's and each baseline's) "
                f"fine-tuned {final} epochs"
                + (f" on the whole training split ({meta['final_train']} images)"
                   if meta["reward_data"] != "heldout" else "")
                + ", then tested (HAQ's last step)." if final else ""),
             "",
             f"| model | device | budget | method | {meta['metric']} / 8-bit | "
             + ("running acc | running NLL | " if running else "") + "val acc | "
             + ("val NLL | " if nll and not running else "") + "test acc | "
             + ("final test acc | " if final else "") + "W/A bits per layer |",
             "|---|---|---|---|---|---|---|---|" + ("---|" if final else "")
             + ("---|" if nll and not running else "") + ("---|---|" if running else "")]
    for rows in all_rows:
        for r in rows:
            fcell = f"{r['final_test_accuracy']:.2%} | " if final else ""
            ncell = f"{r['val_nll']:.4f} | " if nll and not running else ""
            rcell = (f"{r['running_accuracy']:.2%} | {r['running_nll']:.4f} | " if running
                     else "")
            lines.append(f"| {r['model']} | {r['device']} | {r['budget']:g} | {r['method']} | "
                         f"{r['cost_fraction']:.3f} | {rcell}{r['val_accuracy']:.2%} | {ncell}"
                         f"{r['test_accuracy']:.2%} | {fcell}{r['policy_w/a']} |")
    names = {sp: "val NLL" if sp == "val" and nll else sp for sp in splits}
    if running:
        names["val"] = "running NLL" if nll else "running acc"
    nll_named = {"val NLL", "running NLL"}
    head = " | ".join(f"HAQ >= best baseline ({names[sp]})" for sp in splits)
    head2 = " | ".join(f"HAQ >= uniform ({names[sp]})" for sp in splits)
    lines += ["", f"| model | device | budget | {head} | {head2} |",
              "|---|---|---|" + "---|" * (2 * len(splits))]
    met = {sp: [0, 0] for sp in splits}
    for rows in all_rows:
        cells = {}
        for split in splits:
            best, uni = _verdict(rows, split)
            met[split][0] += best >= 0
            met[split][1] += uni >= 0
            cells[split] = (best, uni)
        r = rows[0]
        lines.append(f"| {r['model']} | {r['device']} | {r['budget']:g} | "
                     + " | ".join(_cell(cells[sp][0], names[sp] in nll_named) for sp in splits)
                     + " | "
                     + " | ".join(_cell(cells[sp][1], names[sp] in nll_named) for sp in splits)
                     + " |")
    n = len(all_rows)
    lines += ["", "HAQ >= best baseline: "
              + ", ".join(f"{names[sp]} {met[sp][0]}/{n}" for sp in splits)
              + "; HAQ >= uniform: " + ", ".join(f"{names[sp]} {met[sp][1]}/{n}" for sp in splits)
              + ".", "",
              "Timings of this invocation (episodes resumed from a checkpoint and cached "
              "accuracies cost ~0 s):", "",
              "| model | device | budget | run s | new episodes | HAQ s | s per new episode | "
              "sensitivity s |", "|---|---|---|---|---|---|---|---|"]
    for t in meta["timings"]:
        lines.append(f"| {t['model']} | {t['device']} | {t['budget']:g} | {t['run_s']:.0f} | "
                     f"{t['new_episodes']} | {t['haq_s']:.0f} | {t['per_episode_s']:.2f} | "
                     f"{t['sensitivity_s']:.0f} |")
    lines += ["", f"Total wall time of this invocation: {meta['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def _csv(all_rows: list[list[dict[str, Any]]]) -> str:
    buf = io.StringIO()
    fields = list(all_rows[0][0])
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for rows in all_rows:
        for r in rows:
            w.writerow(r)
    return buf.getvalue()


def _episodes_for(model: str, default: int, overrides: list[str]) -> int:
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise SystemExit(f"--episodes-per-model {item!r}: expected MODEL=N")
        if name == model:
            return int(value)
    return default


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (resumed)")
    p.add_argument("--models", nargs="+", default=["digits_cnn", "digits_mbv2"])
    p.add_argument("--devices", nargs="+", default=["bismo", "bitfusion"])
    p.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.6, 0.75])
    p.add_argument("--episodes", type=int, default=40, help="HAQ episodes per search")
    p.add_argument("--episodes-per-model", nargs="*", default=[], metavar="MODEL=N",
                   help="override --episodes for a model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--finetune-epochs", type=int, default=1,
                   help="STE fine-tune epochs before each search accuracy (HAQ: 1)")
    p.add_argument("--metric", choices=["latency", "energy", "size"], default="latency",
                   help="what the budget limits (a fraction of its all-W8A8 value)")
    p.add_argument("--reward-metric", choices=REWARD_METRICS, default="top1",
                   help="validation metric of the reward and the sensitivities (HAQ: top1)")
    p.add_argument("--reward-data", choices=REWARD_DATA, default="heldout",
                   help="images of the reward and the sensitivities: 160 held-out, a third "
                        "of the training split (pair with --reward-metric nll), or finetune: "
                        "the fine-tune's running accuracy on its own images (HAQ's released "
                        "code)")
    p.add_argument("--final-finetune-epochs", type=int, default=0,
                   help="fine-tune every reported policy this many epochs before its final "
                        "test accuracy (HAQ's last step; 0 = skip)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    all_rows: list[list[dict[str, Any]]] = []
    timings: list[dict[str, Any]] = []
    episodes_used: dict[str, int] = {}
    data: dict[str, Any] = {}
    for model in args.models:
        episodes = _episodes_for(model, args.episodes, args.episodes_per_model)
        episodes_used[model] = episodes
        for device in args.devices:
            for budget in args.budgets:
                out = args.out / model / device / f"{args.metric}-{budget:g}"
                previous = out / "result.json"
                done_before = (json.loads(previous.read_text())["episodes"]
                               if previous.exists() else 0)
                t = time.perf_counter()
                print(f"{model} {device} {args.metric}={budget:g}: {episodes} episodes -> {out}",
                      file=sys.stderr, flush=True)
                try:
                    res = run_haq_experiment(
                        device, model, f"{args.metric}={budget:g}", episodes, args.seed, out,
                        finetune_epochs=args.finetune_epochs, progress=not args.no_progress,
                        accuracy_cache=args.out / f"accuracy_cache-{model}.json",
                        final_finetune_epochs=args.final_finetune_epochs,
                        reward_metric=args.reward_metric, reward_data=args.reward_data)
                except HwsimError as err:
                    print(f"haq_table: {model} {device} {budget:g}: {err}", file=sys.stderr)
                    return 1
                all_rows.append(_rows(res))
                data = res["data"]
                tm = res["timings"]
                new = res["episodes"] - done_before
                timings.append({"model": model, "device": device, "budget": budget,
                                "run_s": time.perf_counter() - t, "haq_s": tm["haq_s"],
                                "new_episodes": new,
                                "per_episode_s": tm["haq_s"] / new if new > 0 else math.nan,
                                "sensitivity_s": tm["sensitivity_s"]})
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"),
            "command": "python tools/haq_table.py " + " ".join(argv if argv is not None
                                                               else sys.argv[1:]),
            "episodes": ", ".join(f"{m} {e}" for m, e in episodes_used.items()),
            "finetune_epochs": args.finetune_epochs, "seed": args.seed, "timings": timings,
            "final_finetune_epochs": args.final_finetune_epochs,
            "reward_metric": args.reward_metric, "metric": args.metric,
            "val": data["val"], "test": data["test"], "train": data["train"],
            "final_train": data.get("final_finetune_train"), "reward_data": args.reward_data,
            "total_s": time.perf_counter() - t0}
    md = _markdown(all_rows, meta)
    write_text_atomic(args.out / "table.md", md)
    write_text_atomic(args.out / "table.csv", _csv(all_rows))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
