"""``hwsim lut build|import|show|fusion``: build, import, summarise latency tables; detect
fusion rules of a host backend."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hwsim.errors import LatencyError


def _rules_for_device(device: str):  # noqa: ANN202
    from hwsim.latency.fusion import rules_for

    return rules_for(device)


def _build(args: argparse.Namespace) -> int:
    from hwsim.latency.build import build_table
    from hwsim.latency.measure import TimingPolicy
    from hwsim.latency.op_space import model_keys, space_keys

    if (args.space is None) == (args.model is None):
        raise LatencyError("give exactly one of --space SPACE or --model FILE")
    rules = _rules_for_device(args.device)
    keys = (space_keys(args.space, rules) if args.space is not None
            else model_keys(args.model, rules))
    out = Path(args.out) if args.out else Path("lut") / f"{args.device}.csv"
    policy = TimingPolicy(rel_tol=args.rel_tol, budget_s=args.budget_s)
    report = build_table(args.device, keys, out, threads=args.threads,
                         progress=not args.no_progress, policy=policy, method=args.method)
    print(f"{out}: {report.total} keys, {report.already_present} already present, "
          f"{len(report.added)} added, {len(report.failed)} failed")
    for key, why in report.failed:
        print(f"  failed: {key}: {why}", file=sys.stderr)
    return 1 if report.failed else 0


def _import(args: argparse.Namespace) -> int:
    from hwsim.latency.table import import_published

    table = import_published(args.file, args.format, args.device)
    table.save(args.out)
    print(f"{args.out}: {len(table)} rows imported from {args.file} ({args.format})")
    return 0


def _show(args: argparse.Namespace) -> int:
    from hwsim.latency.table import LatencyTable

    summary = LatencyTable.load(args.file).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{args.file}: {summary['rows']} rows")
    print(f"  ops:      {', '.join(f'{k} {v}' for k, v in summary['ops'].items())}")
    print(f"  sources:  {', '.join(f'{k} {v}' for k, v in summary['sources'].items())}")
    print(f"  devices:  {', '.join(summary['devices'])}   backends: "
          f"{', '.join(b or '-' for b in summary['backends'])}   threads: "
          f"{', '.join(map(str, summary['threads'])) or '-'}")
    if summary["methods"]:
        print(f"  methods:  {', '.join(f'{k} {v}' for k, v in summary['methods'].items())}")
    lat = summary["latency_ms"]
    if lat:
        print(f"  latency_ms: min {lat['min']:.4g}  median {lat['median']:.4g}  max "
              f"{lat['max']:.4g}")
    spread = summary["relative_spread"]
    if spread:
        print(f"  spread ({spread['measure']}): median {spread['median']:.3f}  max "
              f"{spread['max']:.3f}")
    print(f"  rows whose median CI half-width exceeds 2 %: {summary['unstable_rows']}")
    return 0


def _fusion(args: argparse.Namespace) -> int:
    from hwsim.latency.fusion import RULES_DIR, detect_rules, detect_rules_from_graph
    from hwsim.latency.host_backends import make_backend
    from hwsim.latency.measure import OpMeasurer

    backend = make_backend(args.device, args.threads)
    if hasattr(backend, "optimized_ops") and not args.timing:
        rules = detect_rules_from_graph(backend)
    else:
        rules = detect_rules(backend, OpMeasurer(backend, method="wall"), margin_rel=args.margin)
    out = Path(args.out) if args.out else RULES_DIR / f"{args.device}.yaml"
    rules.save(out)
    for r in rules.rules:
        ev = r.evidence
        if "optimized_with_sequence" in ev:
            times = (f"runtime runs {ev['optimized_with_sequence']} (context "
                     f"{ev['optimized_context']})")
        elif "t_parts_ms" in ev:
            times = f"parts {ev['t_parts_ms']} ms, sequence {ev['t_sequence_ms']} ms"
        else:
            times = ev.get("untested", "")
        print(f"  {'+'.join(r.ops):24s} {'fused' if r.fused else 'separate':8s} {times}")
    print(f"{out}: {sum(r.fused for r in rules.rules)} of {len(rules.rules)} sequences fused")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lut`` verb with build / import / show / fusion."""
    parser = subparsers.add_parser("lut", help="latency lookup tables",
                                   description="Build, import and summarise latency tables.")
    sub = parser.add_subparsers(dest="lut_command", metavar="ACTION", required=True)

    p = sub.add_parser("build", help="measure (host-*) or model (device YAML) a table")
    p.add_argument("--device", required=True,
                   help="host-ort | host-torch | host-cuda | a device name or YAML path")
    p.add_argument("--space", help="proxyless | proxyless-kernels | common-cnn")
    p.add_argument("--model", help="ONNX file whose kernels to measure")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--out", help="CSV to write/resume (default lut/<device>.csv)")
    p.add_argument("--rel-tol", type=float, default=0.02,
                   help="stop when the median's 95%% CI half-width is below this (default 0.02)")
    p.add_argument("--budget-s", type=float, default=3.0,
                   help="time budget per op in seconds (default 3)")
    p.add_argument("--method", choices=["kernel", "wall", "wall-cold"],
                   help="what a sample times (default: the backend's; host-ort: kernel = ORT "
                        "profiler kernel time without boundary layout conversions; wall = "
                        "warm wall time minus empty-model overhead; wall-cold = wall cycling "
                        "through copies exceeding the last-level cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_build)

    p = sub.add_parser("import", help="import a published YAML LUT")
    p.add_argument("file")
    p.add_argument("--format", required=True, choices=["proxyless", "ofa", "fbnet"])
    p.add_argument("--device", required=True, help="name of the device the LUT was made on")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_import)

    p = sub.add_parser("show", help="summary of a table")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_show)

    p = sub.add_parser("fusion", help="detect the fusion rules of a host backend")
    p.add_argument("--device", required=True, choices=["host-ort", "host-torch", "host-cuda"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--margin", type=float, default=0.5,
                   help="fused when sum(parts) - t(seq) > MARGIN * min(parts) (default 0.5)")
    p.add_argument("--timing", action="store_true",
                   help="detect by timing A, B and A+B even where the runtime's optimized graph "
                        "can be read (host-ort)")
    p.add_argument("--out", help="YAML to write (default: the shipped rules file)")
    p.set_defaults(func=_fusion)
