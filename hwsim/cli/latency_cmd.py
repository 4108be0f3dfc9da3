"""``hwsim latency --device NAME MODEL|--arch SPEC``: per-kernel latency breakdown and total.

Kernel keys the table lacks are predicted by a kernel predictor: ``--predictor FILE``, or,
when neither ``--table`` nor ``--predictor`` is given, the shipped ``<device>-kernels.json``
found next to ``<device>.csv`` in the ``lut/`` folders (``--no-predictor`` turns it off); such
kernels are labelled ``predicted`` and counted.
Keys neither the table nor the predictor covers are named and the command fails (exit 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from hwsim.errors import LatencyError


def _load_table(device: str, table_path: str | None):  # noqa: ANN202
    from hwsim.latency.host_backends import HOST_BACKENDS
    from hwsim.latency.table import LatencyTable, find_table

    path = table_path or find_table(device)
    if path is not None:
        return LatencyTable.load(path), str(path), None
    if device in HOST_BACKENDS:
        raise LatencyError(f"no latency table for {device!r} (looked for {device}.csv in lut/ "
                           f"folders); build one: hwsim lut build --device {device} --space "
                           f"common-cnn")
    from hwsim.devices.registry import load_device_spec
    from hwsim.latency.roofline import RooflineModel

    return None, "modeled on the fly (roofline)", RooflineModel(load_device_spec(device))


def _load_predictor(device: str, path: str | None, disabled: bool,
                    custom_table: bool):  # noqa: ANN202
    """(predictor or None, its file) for ``device``."""
    from hwsim.latency.predictor_io import load_predictor
    from hwsim.latency.table import table_dirs

    if disabled:
        return None, None
    if path is None and not custom_table:
        for d in table_dirs():
            candidate = d / f"{device}-kernels.json"
            if candidate.is_file():
                path = str(candidate)
                break
    if path is None:
        return None, None
    predictor = load_predictor(path)
    if not hasattr(predictor, "predict_key"):
        raise LatencyError(f"{path}: not a kernel-level predictor (fit one with hwsim predictor "
                           f"fit --space kernels)")
    return predictor, path


def _block_level(args: argparse.Namespace, table) -> dict | None:  # noqa: ANN001
    """ProxylessNAS-style block sum when the table holds every block key of the arch."""
    from hwsim.latency.mbnet import mbnet_block_keys, parse_arch

    if table is None or args.arch in (None, "resnet18"):
        return None
    keys = mbnet_block_keys(parse_arch(args.arch))
    if not all(k in table for k in keys):
        return None
    rows = [{"kernel": f"block{i}", "ops": [k.op], "key": str(k),
             "latency_ms": table.lookup(k).latency_ms, "source": "table"}
            for i, k in enumerate(keys)]
    return {"total_ms": math.fsum(r["latency_ms"] for r in rows), "level": "block",
            "fusion_rules": None, "coverage": {"table": len(rows)}, "missing_keys": [],
            "kernels": rows}


def _run(args: argparse.Namespace) -> int:
    from hwsim.graph import load_model
    from hwsim.latency.fusion import FusionRules, rules_for
    from hwsim.latency.model_latency import model_latency
    from hwsim.latency.table import LatencyTable

    if (args.model is None) == (args.arch is None):
        raise LatencyError("give exactly one of MODEL or --arch SPEC")
    table, table_desc, roofline = _load_table(args.device, args.table)
    result = _block_level(args, table)
    if result is None:
        if args.arch is not None:
            from hwsim.latency.mbnet import arch_onnx

            graph = load_model(arch_onnx(args.arch))
        else:
            graph = load_model(args.model)
        if args.no_fusion:
            rules = FusionRules.none()
        elif args.rules:
            rules = FusionRules.load(args.rules)
        else:
            rules = rules_for(args.device)
        if roofline is not None:
            from hwsim.latency.fusion import graph_kernels

            table = LatencyTable()
            for k in graph_kernels(graph, rules):
                if k.key is not None and k.key not in table:
                    table.add(roofline.row(k.key))
        predictor, predictor_path = (None, None)
        if roofline is None:
            predictor, predictor_path = _load_predictor(args.device, args.predictor,
                                                        args.no_predictor, args.table is not None)
        ml = model_latency(graph, table, rules, strict=False, predictor=predictor,
                           predictor_name=predictor_path or "kernel predictor")
        result = {"level": "kernel", **ml.to_dict()}
    result["device"] = args.device
    result["table"] = table_desc
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k in result["kernels"]:
            lat = "MISSING" if k["latency_ms"] is None else f"{k['latency_ms']:.4f} ms"
            print(f"{'+'.join(k['ops']):22s} {lat:>14s}  {k['source']:9s}  "
                  f"{k['key'] or '(view, no data moved)'}")
        total = result["total_ms"]
        print(f"total: {'unknown (missing keys)' if total is None else f'{total:.4f} ms'}  "
              f"[{args.device}; {table_desc}; level {result['level']}; fusion rules "
              f"{result['fusion_rules']}]")
        if result.get("predictor"):
            print(f"{result['predicted_kernels']} kernel(s) predicted by {result['predictor']}"
                  f" (not in the table)")
    if result["missing_keys"]:
        also = " and not covered by the kernel predictor" if result.get("predictor") else ""
        print(f"hwsim: error: {len(result['missing_keys'])} kernel key(s) missing from the "
              f"table{also} (never counted as zero):", file=sys.stderr)
        for key in result["missing_keys"]:
            print(f"  {key}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``latency`` verb."""
    p = subparsers.add_parser("latency", help="latency of a model from a table",
                              description="Per-kernel latency breakdown and total (ms).")
    p.add_argument("model", nargs="?", help="ONNX model file")
    p.add_argument("--arch", help="proxyless:<21 choices> | mobilenetv2 | resnet18")
    p.add_argument("--device", required=True,
                   help="host-ort | host-torch | host-cuda | a device name (modeled)")
    p.add_argument("--table", help="table CSV (default: lut/<device>.csv)")
    p.add_argument("--rules", help="fusion rules YAML (default: the device's shipped rules)")
    p.add_argument("--predictor", help="kernel predictor JSON for keys the table lacks "
                                       "(default without --table: the shipped "
                                       "<device>-kernels.json in the lut/ folders)")
    p.add_argument("--no-predictor", action="store_true",
                   help="no kernel predictor: keys missing from the table are an error")
    p.add_argument("--no-fusion", action="store_true",
                   help="every op its own kernel (the naive sum)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
