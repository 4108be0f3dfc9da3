"""``hwsim search nas``: latency-constrained NAS on scikit-learn digits with measured latency."""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    from hwsim.search.nas import NasConfig, run_nas

    config = NasConfig(space=args.space, device=args.device, targets_ms=tuple(args.target_ms),
                       reward=args.reward, constraint=args.constraint,
                       generations=args.generations, population=args.population,
                       tournament=args.tournament, grad_epochs=args.grad_epochs,
                       supernet_epochs=args.supernet_epochs, final_epochs=args.final_epochs,
                       threads=args.threads, seed=args.seed, calibrate=args.calibrate)
    results = run_nas(config, args.out, progress=not args.no_progress)
    print(f"{'T ms':>7} {'table ms':>8} {'pred ms':>8} {'meas ms':>8} {'meas/T':>7} "
          f"{'test acc':>8}  arch")
    for r in results:
        meas = "-" if r.measured_net_ms is None else f"{r.measured_net_ms:8.4f}"
        ratio = "-" if r.measured_net_ms is None else f"{r.measured_net_ms / r.target_ms:7.2f}"
        print(f"{r.target_ms:7.4g} {r.table_ms:8.4f} {r.predicted_ms:8.4f} {meas:>8} "
              f"{ratio:>7} {r.test_acc:8.4f}  {' '.join(r.arch_names)}")
    print(f"results: {args.out}/results.json, results.csv, pareto.png", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search nas``."""
    p = subparsers.add_parser(
        "nas", help="latency-constrained NAS (digits, measured latency)",
        description="Search a ProxylessNAS-style space trained on scikit-learn digits under a "
                    "latency target: MnasNet reward with regularized evolution, or ProxylessNAS "
                    "gradient search with E[LAT]. Host devices are measured (table + end to "
                    "end), device YAMLs modeled. Resumable: rerun with the same --out.")
    p.add_argument("--space", default="proxyless-digits",
                   help="search space with a training task (proxyless-digits)")
    p.add_argument("--device", default="host-ort", help="host-ort | a device YAML name")
    p.add_argument("--target-ms", type=float, nargs="+", required=True,
                   help="latency target(s) T in milliseconds (one search per value)")
    p.add_argument("--reward", choices=("mnas", "proxyless"), default="mnas")
    p.add_argument("--constraint", choices=("soft", "hard"), default="soft",
                   help="MnasNet constraint: soft w=-0.07, hard alpha=0 beta=-1")
    p.add_argument("--generations", "--budget", dest="generations", type=int, default=300,
                   help="candidates evaluated per target (mnas)")
    p.add_argument("--population", type=int, default=24)
    p.add_argument("--tournament", type=int, default=6)
    p.add_argument("--grad-epochs", type=int, default=6, help="epochs of gradient search")
    p.add_argument("--supernet-epochs", type=int, default=40)
    p.add_argument("--final-epochs", type=int, default=30,
                   help="epochs of training the found network from scratch")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (training and timing)")
    p.add_argument("--calibrate", type=int, default=10,
                   help="host devices: architectures timed end to end to fit measured = "
                        "scale * table + offset (0: use the table sum as is)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="nas-out", help="results folder (resumed if it exists)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
