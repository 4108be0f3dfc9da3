"""``hwsim search haq``: HAQ mixed-precision search with device cost and numerics, and baselines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwsim.cli.text_table import format_table
from hwsim.errors import BudgetError


def _policy_text(policy: dict[str, dict[str, int]]) -> str:
    return " ".join(f"{p['weight_bits']}/{p['activation_bits']}" for p in policy.values())


def _run(args: argparse.Namespace) -> int:
    from hwsim.search.haq_run import run_haq_experiment

    try:
        res = run_haq_experiment(args.device, args.model, args.budget, args.episodes, args.seed,
                                 Path(args.out), finetune_epochs=args.finetune_epochs,
                                 progress=not args.no_progress, configuration=args.configuration,
                                 final_finetune_epochs=args.final_finetune_epochs,
                                 reward_metric=args.reward_metric,
                                 reward_data=args.reward_data)
    except BudgetError as err:
        print(f"hwsim: error: {err}", file=sys.stderr)
        return 2
    unit = res["unit"]
    print(f"hwsim search haq: {res['model']} on {res['device']}, {res['metric']} budget "
          f"{res['budget']:.4g} {unit} ({res['budget_fraction']:g} x 8-bit), "
          f"{res['episodes']} episodes; fp32 test accuracy {res['fp_accuracy']:.2%}")
    final = res["final_finetune_epochs"]
    final_head = [f"TEST ACC +{final} EP"] if final else []
    rows = [["METHOD", f"COST {unit}", "x 8-BIT", "FITS", "VAL ACC", "TEST ACC", *final_head,
             "W/A BITS"]]
    entries = [("haq", res)] + list(res["baselines"].items())
    for name, e in entries:
        final_cell = ([f"{e['final_finetune']['accuracy']:.2%}" if "final_finetune" in e
                       else "-"] if final else [])
        rows.append([name, f"{e['cost']:.4g}", f"{e['cost_fraction']:.3f}",
                     "yes" if e["fits_budget"] else "no", f"{e['val_accuracy']:.2%}",
                     f"{e['accuracy']:.2%}", *final_cell, _policy_text(e["policy"])])
    print(format_table(rows, right={1, 2, 4, 5, 6} if final else {1, 2, 4, 5}))
    print(f"results: {args.out}/result.json, episodes.csv, accuracy_vs_cost.png", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search haq``."""
    p = subparsers.add_parser(
        "haq", help="HAQ mixed-precision search (DDPG) under a latency/energy/size budget",
        description="Search per-layer weight/activation bits with HAQ's DDPG agent under a "
                    "budget given as a fraction of the all-8-bit cost on DEVICE's cost model; "
                    "accuracy under the device's numerics on scikit-learn digits. Uniform, "
                    "greedy and ILP baselines run under the same budget. Resumable: rerun with "
                    "the same --out.")
    p.add_argument("--device", required=True, help="device name (hwsim devices) or YAML path")
    p.add_argument("--model", required=True,
                   help="digits_cnn | digits_mbv2 | an .onnx 10-class digits classifier")
    p.add_argument("--budget", required=True, metavar="METRIC=FRACTION",
                   help="latency=0.6, energy=0.5 or size=0.5 (fraction of the W8A8 cost)")
    p.add_argument("--episodes", type=int, default=600, help="DDPG episodes (HAQ: 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="haq-out", metavar="DIR",
                   help="results folder (resumed if it holds a checkpoint)")
    p.add_argument("--finetune-epochs", type=int, default=1,
                   help="STE fine-tune epochs before each accuracy (HAQ: 1; 0 = none)")
    p.add_argument("--final-finetune-epochs", type=int, default=0,
                   help="fine-tune every reported policy (HAQ's and the baselines') this many "
                        "epochs before its final test accuracy (HAQ's last step; 0 = skip)")
    p.add_argument("--reward-metric", choices=["top1", "nll"], default="top1",
                   help="what the reward and the greedy/ILP sensitivities measure on the "
                        "validation split: top1 accuracy (HAQ) or the NLL of the labels "
                        "(smoother on a small validation split; reported accuracies stay top-1)")
    p.add_argument("--reward-data", choices=["heldout", "train", "finetune"], default="heldout",
                   help="the reward's images: heldout = 160 held-out digits; train = a third of "
                        "the training split, the fine-tune on the rest (top-1 saturates there: "
                        "use with --reward-metric nll); finetune = HAQ's released code: the "
                        "fine-tune's running accuracy on the images it trains on (the data of "
                        "train)")
    p.add_argument("--configuration", default=None,
                   help="bit-flexible cost configuration (e.g. bismo edge|cloud)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
