"""Re-measure rows of a host latency table that were timed before preempted samples were
dropped (``hwsim.latency.measure``: rows without ``kept=`` in their note) on a loaded machine.

Selection: rows without ``kept=`` whose note shows a 1-minute load average >= ``--min-load``
or whose median exceeds ``--max-median-over-p10`` x their 10th percentile; worst first. Each
row is measured again with the table's method and threads and replaced in place; the table is
saved after every row (an interruption loses nothing). ``--deadline-s`` bounds the run.

    python tools/remeasure_lut.py --table lut/host-ort.csv --min-load 5 --deadline-s 1500
"""

from __future__ import annotations

import argparse
import sys
import time

from hwsim.errors import LatencyError
from hwsim.latency.host_backends import make_backend
from hwsim.latency.measure import OpMeasurer, TimingPolicy
from hwsim.latency.table import LatencyTable


def _load1(note: str) -> float:
    for part in note.split(";"):
        if part.startswith("load1="):
            try:
                return float(part[len("load1="):])
            except ValueError:
                return float("nan")
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default="lut/host-ort.csv")
    ap.add_argument("--min-load", type=float, default=5.0)
    ap.add_argument("--max-median-over-p10", type=float, default=1.15)
    ap.add_argument("--budget-s", type=float, default=1.5, help="time budget per op")
    ap.add_argument("--deadline-s", type=float, default=1500.0)
    args = ap.parse_args(argv)

    t0 = time.time()
    table = LatencyTable.load(args.table)
    todo = []
    for row in table:
        if row.source != "measured" or "kept=" in row.note:
            continue
        ratio = row.latency_ms / row.p10_ms if row.p10_ms else 1.0
        load = _load1(row.note)
        if load >= args.min_load or ratio > args.max_median_over_p10:
            todo.append((ratio, load, row))
    todo.sort(key=lambda t: (-t[0], -t[1]))
    devices = {r.device for _, _, r in todo}
    if len(devices) > 1:
        raise LatencyError(f"{args.table}: rows of several devices {sorted(devices)}")
    print(f"{len(todo)} rows to re-measure; load {open('/proc/loadavg').read().split()[:3]}",
          file=sys.stderr)
    if not todo:
        return 0
    first = todo[0][2]
    measurer = OpMeasurer(make_backend(first.device, first.threads or 1),
                          TimingPolicy(budget_s=args.budget_s), first.method or None)
    done = failed = 0
    for _, _, row in todo:
        if time.time() - t0 > args.deadline_s:
            break
        try:
            new = measurer(row.key)
        except LatencyError as err:
            failed += 1
            print(f"  failed: {row.key}: {err}", file=sys.stderr)
            continue
        table.add(new, replace=True)
        table.save(args.table)
        done += 1
    print(f"re-measured {done}, failed {failed}, left {len(todo) - done - failed}; "
          f"{time.time() - t0:.0f} s; load {open('/proc/loadavg').read().split()[:3]}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
