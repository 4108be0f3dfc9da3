"""Accuracy of the embedded digits demo CNN under every device / precision in devices/.

Runs ``hwsim emulate`` (library form) on the demo's full test split for each precision of each
device and prints a Markdown table: engine, fp32 and emulated top-1, agreement of the
predictions, and the lowest per-layer SQNR (dB) against the fp32 model. Precisions that no
public source specifies are listed with the reason instead of numbers.

Usage: python tools/device_accuracy_table.py [--limit N]
"""

from __future__ import annotations

import argparse
import math

import hwsim
from hwsim.emulate.job import emulate_job
from hwsim.errors import NotSpecifiedError


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _db(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=None, help="emulate only the first N inputs")
    args = ap.parse_args()
    rows = ["| device | precision | engine | fp32 top-1 | emulated top-1 | agreement | "
            "min layer SQNR (dB) |", "|---|---|---|---|---|---|---|"]
    n_samples = None
    for name in hwsim.list_devices():
        dev = hwsim.load_device(name)
        for precision in dev.precisions:
            try:
                job = emulate_job(dev, precision, limit=args.limit)
            except NotSpecifiedError:
                rows.append(f"| {name} | {precision} | not specified by a public source | - | "
                            "- | - | - |")
                continue
            rep = job.report
            n_samples = rep.n_samples
            sqnr = min(layer.sqnr_db for layer in rep.layers)
            rows.append(f"| {name} | {precision} | {rep.engine} | {_pct(rep.fp32_accuracy)} | "
                        f"{_pct(rep.emulated_accuracy)} | {_pct(rep.agreement)} | "
                        f"{_db(sqnr)} |")
    print(f"Digits demo CNN (scikit-learn digits test split, {n_samples} images), hwsim "
          f"{hwsim.__version__}:\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
