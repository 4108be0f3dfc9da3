"""``hwsim emulate`` and ``hwsim validate``: parse, call ``hwsim.emulate.job``, print."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from hwsim.cli.text_table import format_table
from hwsim.emulate.dump import write_json_atomic
from hwsim.emulate.job import emulate_job, validate_job


def _fmt(v: float, digits: int = 4) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def _emulate(args: argparse.Namespace) -> int:
    job = emulate_job(args.device, args.precision, args.model, calib=args.calib,
                      data=args.data, labels=args.labels, dump=args.dump, limit=args.limit)
    rep = job.report
    emu = job.emulator
    print(f"hwsim emulate: {job.model_name} on {rep.device} ({rep.precision}, "
          f"{rep.engine} engine), {rep.n_samples} samples")
    rows = [["LAYER", "OP", "SHAPE", "DTYPE", "SQNR dB", "COSINE", "MAX|ERR|", "OVERFLOW"]]
    for layer in rep.layers:
        rows.append([layer.name, layer.op, "x".join(str(d) for d in layer.shape), layer.dtype,
                     _fmt(layer.sqnr_db), f"{layer.cosine:.6f}", _fmt(layer.max_abs_error),
                     str(layer.overflow)])
    print(format_table(rows, right={4, 5, 6, 7}))
    if rep.fp32_accuracy is not None:
        print(f"top-1 accuracy: fp32 {rep.fp32_accuracy:.2%}  emulated "
              f"{rep.emulated_accuracy:.2%}  agreement {rep.agreement:.2%}")
    overflow = sum(layer.overflow for layer in rep.layers)
    if overflow:
        print(f"warning: {overflow} accumulator overflow(s) at "
              f"{emu.numerics.arithmetic.accumulator_bits} bits", file=sys.stderr)
    if args.report:
        write_json_atomic(Path(args.report), {"model": job.model_name, **rep.to_dict()})
        print(f"report: {args.report}")
    if args.dump:
        print(f"dump: {args.dump} ({len(rep.layers)} layers, manifest.json)")
    if args.export_onnx:
        from hwsim.emulate.model_export import export_onnx

        export_onnx(emu, args.export_onnx)
        print(f"onnx: {args.export_onnx}")
    if args.export_tflite:
        from hwsim.emulate.model_export import export_tflite

        export_tflite(emu, args.export_tflite)
        print(f"tflite: {args.export_tflite}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    model = None if args.model == "demo" else args.model
    job = validate_job(args.device, model, args.golden, precision=args.precision,
                       calib=args.calib, data=args.data)
    rep = job.report
    print(f"hwsim validate: {args.model} on {job.emulator.device.name} "
          f"({job.emulator.precision}) vs {args.golden}; qparams {job.qparams_source}")
    rows = [["LAYER", "OP", "ELEMENTS", "DIFFERENT", "MAX CODE DIFF", "STATUS"]]
    for c in rep.layers:
        rows.append([c.name, c.op, str(c.n_elements), str(c.n_different),
                     _fmt(c.max_code_difference), c.status])
    print(format_table(rows, right={2, 3, 4}))
    for name in rep.unmatched_golden:
        print(f"golden layer {name!r} matches no emulated layer")
    if args.report:
        write_json_atomic(Path(args.report), rep.to_dict())
    if rep.ok:
        print("bit-exact: every layer matches")
        return 0
    first = rep.first_different
    print(f"MISMATCH: first differing layer: {first}" if first else
          "MISMATCH: golden layers without an emulated counterpart")
    return 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``emulate`` and ``validate`` verbs."""
    p = subparsers.add_parser(
        "emulate", help="emulate a model under a device's numerics, layer by layer",
        description="Emulate MODEL (.onnx; none = the embedded digits demo CNN) bit-exactly "
                    "under DEVICE's numerics and report per-layer error and accuracy.")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help=".onnx model (default: embedded digits demo CNN)")
    p.add_argument("--device", required=True, help="device name (hwsim devices) or YAML path")
    p.add_argument("--precision", default=None, help="e.g. int8, fp16 (default: device's)")
    p.add_argument("--calib", default=None, help="calibration inputs (.npy/.npz)")
    p.add_argument("--data", default=None, help="inputs to emulate (.npy/.npz, model layout)")
    p.add_argument("--labels", default=None, help="class labels of --data (.npy/.npz)")
    p.add_argument("--limit", type=int, default=None, help="emulate only the first N inputs")
    p.add_argument("--dump", default=None, metavar="DIR", help="write per-layer tensors here")
    p.add_argument("--report", default=None, metavar="FILE.json", help="write the report")
    p.add_argument("--export-onnx", default=None, metavar="F.onnx",
                   help="export the quantized model in ONNX QLinear operator form")
    p.add_argument("--export-tflite", default=None, metavar="F.tflite",
                   help="export an int8 .tflite (devices with TFLite-style requantization)")
    p.set_defaults(func=_emulate)

    v = subparsers.add_parser(
        "validate", help="compare device/runtime layer dumps with the emulation",
        description="Re-run the emulation on the golden dump's inputs and compare every layer; "
                    "exit status 1 when any code differs.")
    v.add_argument("model", metavar="MODEL", help=".onnx model, or 'demo' for the digits CNN")
    v.add_argument("--device", required=True)
    v.add_argument("--precision", default=None)
    v.add_argument("--golden", required=True, metavar="DIR",
                   help="dump directory (.npy files, or .bin + .json sidecars; manifest.json)")
    v.add_argument("--calib", default=None, help="calibration inputs (.npy/.npz)")
    v.add_argument("--data", default=None, help="inputs (default: input.npy in DIR)")
    v.add_argument("--report", default=None, metavar="FILE.json")
    v.set_defaults(func=_validate)
