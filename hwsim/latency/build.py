"""Building a latency table: measure (host backends) or model (device YAMLs) every key.

Resumable: an existing output table is loaded and its keys are skipped; every measured row is
written to the CSV atomically as soon as it exists, so killing a build loses at most the op
being timed. A key that cannot be measured or modeled is listed in the report (and left out of
the table), never written as zero.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hwsim.errors import LatencyError
from hwsim.latency.host_backends import HOST_BACKENDS, default_method, make_backend
from hwsim.latency.measure import OpMeasurer, TimingPolicy
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyRow, LatencyTable

RowMaker = Callable[[OpKey], LatencyRow]


@dataclass
class BuildReport:
    out: Path
    total: int
    already_present: int
    added: list[OpKey] = field(default_factory=list)
    failed: list[tuple[OpKey, str]] = field(default_factory=list)


def make_row_maker(device: str, threads: int = 1, policy: TimingPolicy | None = None,
                   method: str | None = None) -> RowMaker:
    """A measurer for host-ort/host-torch/host-cuda (``method``: see ``measure``; default the
    backend's), else the roofline model of a device."""
    if device in HOST_BACKENDS:
        return OpMeasurer(make_backend(device, threads), policy or TimingPolicy(), method)
    if method is not None:
        raise LatencyError(f"--method applies to measured host backends, not {device!r}")
    from hwsim.devices.registry import load_device_spec
    from hwsim.latency.roofline import RooflineModel

    return RooflineModel(load_device_spec(device)).row


def _check_compatible(table: LatencyTable, device: str, threads: int | None, out: Path,
                      method: str | None = None) -> None:
    for row in table:
        if method is not None and row.source == "measured" and row.method != method:
            raise LatencyError(f"{out}: holds rows measured with method {row.method or 'wall'!r}; "
                               f"refusing to add rows measured with {method!r} (use another "
                               f"--out)")
        if row.device != device:
            raise LatencyError(f"{out}: holds rows of device {row.device!r}; refusing to add "
                               f"rows of {device!r} (use another --out)")
        if threads is not None and row.threads is not None and row.threads != threads:
            raise LatencyError(f"{out}: holds rows measured with {row.threads} thread(s); "
                               f"refusing to add rows with {threads} (use another --out)")


def build_table(device: str, configs: Iterable[OpKey], out: str | os.PathLike[str],
                threads: int = 1, progress: bool = True, row_maker: RowMaker | None = None,
                policy: TimingPolicy | None = None, method: str | None = None) -> BuildReport:
    """Fill ``out`` (CSV) with a row per key of ``configs`` for ``device``; resumes.

    ``row_maker`` overrides how a row is obtained (tests inject one); by default host backends
    are timed with ``threads`` threads and ``method`` (default: the backend's) and other
    devices are modeled from their YAML. A table's measured rows all share one method.
    """
    out = Path(out)
    keys = list(dict.fromkeys(configs))
    table = LatencyTable.load(out) if out.exists() else LatencyTable()
    is_host = device in HOST_BACKENDS
    if is_host and row_maker is None and method is None:
        method = default_method(device)
    _check_compatible(table, device, threads if is_host else None, out,
                      method if is_host else None)
    todo = [k for k in keys if k not in table]
    report = BuildReport(out, len(keys), len(keys) - len(todo))
    if not todo:
        return report
    maker = row_maker or make_row_maker(device, threads, policy, method if is_host else None)
    from tqdm import tqdm

    bar = tqdm(todo, desc=f"lut {device}", unit="op", disable=not progress,
               initial=report.already_present, total=len(keys))
    dirty = False
    try:
        for key in bar:
            try:
                row = maker(key)
            except LatencyError as err:
                report.failed.append((key, str(err)))
                continue
            if row.key != key:
                raise LatencyError(f"row maker returned key {row.key} for {key}")
            table.add(row)
            report.added.append(key)
            if row.source == "measured":
                table.save(out)  # every measurement is on disk before the next one starts
            else:
                dirty = True
    finally:
        bar.close()
        if dirty:
            table.save(out)
    return report
