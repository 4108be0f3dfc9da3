"""Latency lookup tables: rows of (op key, latency in ms, spread, provenance), CSV on disk.

CSV columns (header required, any order; unknown columns are rejected):

- key columns: ``key`` (canonical ``OpKey`` text, required) and the op fields ``op, input,
  output, expand, mid, kernel, stride, groups, idskip, se, act, wbits, abits`` (optional; when
  present they must agree with ``key``).
- ``latency_ms`` (required): median latency in milliseconds (published tables: their mean).
- spread: ``p10_ms``, ``p90_ms`` (10th/90th percentile), ``std_ms``, ``ci_rel`` (relative
  half-width of the 95 % confidence interval of the median of the raw per-run times),
  ``overhead_ms`` (cost of an empty model of the backend, already subtracted from
  ``latency_ms``).
- provenance: ``samples``, ``source`` (measured | modeled | imported, required), ``device``
  (required), ``backend``, ``threads``, ``versions``, ``method`` (how a measured row was
  timed: ``kernel``, ``wall``, ``wall-cold``; see ``hwsim.latency.measure``; empty for
  modeled/imported rows and tables written before the column existed), ``date`` (ISO 8601),
  ``note`` (measured: inner loop, convergence, load average; modeled: formula and spec numbers;
  imported: origin).

Values must be finite and non-negative; columns carrying another unit (``latency_us``,
``latency``, ``mean`` ...) are rejected with the fix. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date as _date
from pathlib import Path
from typing import Any, Literal

import yaml

from hwsim.errors import LatencyError, MissingKeyError
from hwsim.latency.op_key import KEY_FORMATS, OpKey, format_key, parse_key

Source = Literal["measured", "modeled", "imported"]
SOURCES = ("measured", "modeled", "imported")

KEY_FIELD_COLUMNS = ("op", "input", "output", "expand", "mid", "kernel", "stride", "groups",
                     "idskip", "se", "act", "wbits", "abits")
VALUE_COLUMNS = ("latency_ms", "p10_ms", "p90_ms", "std_ms", "ci_rel", "overhead_ms", "samples",
                 "source", "device", "backend", "threads", "versions", "method", "date", "note")
MEASURE_METHODS = ("kernel", "wall", "wall-cold")
COLUMNS = ("key", *KEY_FIELD_COLUMNS, *VALUE_COLUMNS)
REQUIRED_COLUMNS = ("key", "latency_ms", "source", "device")
_FLOAT_COLUMNS = ("latency_ms", "p10_ms", "p90_ms", "std_ms", "ci_rel", "overhead_ms")
_WRONG_UNIT = {
    "latency_us": "microseconds; divide by 1000 and name the column latency_ms",
    "latency_s": "seconds; multiply by 1000 and name the column latency_ms",
    "latency": "no unit; hwsim tables are in milliseconds: name the column latency_ms",
    "mean": "a published-LUT field; import the YAML with `hwsim lut import`",
    "mean_ms": "name the column latency_ms (the median, or the mean of a published table)",
    "median_ms": "name the column latency_ms",
}


@dataclass(frozen=True)
class LatencyRow:
    """One measured, modeled or imported latency (milliseconds)."""

    key: OpKey
    latency_ms: float
    source: Source
    device: str
    p10_ms: float | None = None
    p90_ms: float | None = None
    std_ms: float | None = None
    ci_rel: float | None = None
    overhead_ms: float | None = None
    samples: int | None = None
    backend: str = ""
    threads: int | None = None
    versions: str = ""
    method: str = ""
    date: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        _check_row(self, "row")

    def to_record(self) -> dict[str, str]:
        rec: dict[str, str] = {"key": str(self.key)}
        for name, value in self.key.as_fields().items():
            rec[name] = "" if value is None else str(value)
        for name in VALUE_COLUMNS:
            value = getattr(self, name)
            if value is None:
                rec[name] = ""
            elif isinstance(value, float):
                rec[name] = repr(value)
            else:
                rec[name] = str(value)
        return rec


def _check_row(row: LatencyRow, where: str) -> None:
    if row.source not in SOURCES:
        raise LatencyError(f"{where}: source {row.source!r} must be one of {', '.join(SOURCES)}")
    if not row.device:
        raise LatencyError(f"{where}: device is empty")
    for name in _FLOAT_COLUMNS:
        v = getattr(row, name)
        if v is None:
            continue
        if not isinstance(v, float) or not math.isfinite(v) or v < 0.0:
            raise LatencyError(f"{where}: {name} must be a finite number >= 0 (milliseconds), "
                               f"got {v!r}")
    if row.p10_ms is not None and row.p10_ms > row.latency_ms * (1 + 1e-12):
        raise LatencyError(f"{where}: p10_ms {row.p10_ms} exceeds latency_ms {row.latency_ms}")
    if row.p90_ms is not None and row.p90_ms < row.latency_ms * (1 - 1e-12):
        raise LatencyError(f"{where}: p90_ms {row.p90_ms} is below latency_ms {row.latency_ms}")
    if row.samples is not None and (not isinstance(row.samples, int) or row.samples < 0):
        raise LatencyError(f"{where}: samples must be an integer >= 0, got {row.samples!r}")
    if row.threads is not None and (not isinstance(row.threads, int) or row.threads < 1):
        raise LatencyError(f"{where}: threads must be an integer >= 1, got {row.threads!r}")
    if row.method and row.method not in MEASURE_METHODS:
        raise LatencyError(f"{where}: method {row.method!r} must be one of "
                           f"{', '.join(MEASURE_METHODS)} (or empty)")
    for name in ("device", "backend", "versions", "method", "date", "note"):
        if "\n" in getattr(row, name) or "\r" in getattr(row, name):
            raise LatencyError(f"{where}: {name} must be one line")


@dataclass
class LatencyTable:
    """Rows keyed by canonical ``OpKey``; insertion order is kept (and written)."""

    rows: dict[OpKey, LatencyRow] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: Iterable[LatencyRow]) -> LatencyTable:
        table = cls()
        for row in rows:
            table.add(row)
        return table

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[LatencyRow]:
        return iter(self.rows.values())

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LatencyTable) and list(self.rows.items()) == list(
            other.rows.items())

    def add(self, row: LatencyRow, replace: bool = False) -> None:
        if row.key in self.rows and not replace:
            raise LatencyError(f"table already has key {row.key}")
        self.rows[row.key] = row

    def get(self, key: OpKey) -> LatencyRow | None:
        return self.rows.get(key)

    def lookup(self, key: OpKey) -> LatencyRow:
        """The row of ``key``; MissingKeyError (never a zero) when the table lacks it."""
        row = self.rows.get(key)
        if row is None:
            raise MissingKeyError(f"latency table has no key {key}")
        return row

    # -- CSV ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table as CSV atomically (temporary file in the same folder + rename)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in self.rows.values():
            writer.writerow(row.to_record())
        write_text_atomic(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        """Read and validate a CSV table; errors name the file, line and column."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise LatencyError(f"{path}: cannot read latency table: {err.strerror}") from None
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames
        if not header:
            raise LatencyError(f"{path}: empty file; expected a CSV header with "
                               f"{', '.join(REQUIRED_COLUMNS)}")
        for col in header:
            if col in _WRONG_UNIT:
                raise LatencyError(f"{path}: column {col!r} is {_WRONG_UNIT[col]}")
            if col not in COLUMNS:
                raise LatencyError(f"{path}: unknown column {col!r}; allowed: "
                                   f"{', '.join(COLUMNS)}")
        if len(set(header)) != len(header):
            raise LatencyError(f"{path}: duplicate column names in header")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise LatencyError(f"{path}: missing required column(s) {', '.join(missing)} "
                               f"(latency in milliseconds goes in latency_ms)")
        table = cls()
        first_line: dict[OpKey, int] = {}
        for rec in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if None in rec or any(v is None for v in rec.values()):
                raise LatencyError(f"{where}: wrong number of fields (header has "
                                   f"{len(header)})")
            row = _row_from_record(rec, where)
            if row.key in first_line:
                raise LatencyError(f"{where}: key {row.key} already on line "
                                   f"{first_line[row.key]}")
            first_line[row.key] = line
            table.rows[row.key] = row
        return table

    # -- summary -----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Rows, op counts, sources, devices/backends, latency range and relative spread."""
        lat = [r.latency_ms for r in self]
        spreads = []
        for r in self:
            if r.p10_ms is not None and r.p90_ms is not None and r.latency_ms > 0:
                spreads.append((r.p90_ms - r.p10_ms) / r.latency_ms)
            elif r.std_ms is not None and r.latency_ms > 0:
                spreads.append(r.std_ms / r.latency_ms)
        return {
            "rows": len(self),
            "ops": dict(sorted(Counter(r.key.op for r in self).items())),
            "sources": dict(sorted(Counter(r.source for r in self).items())),
            "devices": sorted({r.device for r in self}),
            "backends": sorted({r.backend for r in self}),
            "threads": sorted({r.threads for r in self if r.threads is not None}),
            "methods": dict(sorted(Counter(r.method for r in self if r.method).items())),
            "latency_ms": ({"min": min(lat), "median": statistics.median(lat), "max": max(lat),
                            "sum": math.fsum(lat)} if lat else None),
            "relative_spread": ({"median": statistics.median(spreads), "max": max(spreads),
                                 "measure": "(p90-p10)/median, or std/mean"}
                                if spreads else None),
            "unstable_rows": sum(1 for r in self if r.ci_rel is not None and r.ci_rel > 0.02),
        }


def _parse_float(text: str, name: str, where: str) -> float | None:
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise LatencyError(f"{where}: column {name}: {text!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise LatencyError(f"{where}: column {name}: {text} must be finite and >= 0 "
                           f"(milliseconds)")
    return v


def _parse_int(text: str, name: str, where: str) -> int | None:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise LatencyError(f"{where}: column {name}: {text!r} is not an integer") from None


def _row_from_record(rec: dict[str, str], where: str) -> LatencyRow:
    try:
        key = OpKey.parse(rec["key"])
    except LatencyError as err:
        raise LatencyError(f"{where}: column key: {err}") from None
    fields_ = key.as_fields()
    for name in KEY_FIELD_COLUMNS:
        if name in rec and rec[name] != ("" if fields_[name] is None else str(fields_[name])):
            raise LatencyError(f"{where}: column {name} is {rec[name]!r} but key {key} says "
                               f"{fields_[name]!r}")
    if rec["latency_ms"] == "":
        raise LatencyError(f"{where}: latency_ms is empty")
    values: dict[str, Any] = {}
    for name in _FLOAT_COLUMNS:
        if name in rec:
            values[name] = _parse_float(rec[name], name, where)
    for name in ("samples", "threads"):
        if name in rec:
            values[name] = _parse_int(rec[name], name, where)
    for name in ("source", "device", "backend", "versions", "method", "date", "note"):
        if name in rec:
            values[name] = rec[name]
    try:
        return LatencyRow(key=key, **values)
    except LatencyError as err:
        raise LatencyError(f"{where}: {str(err).removeprefix('row: ')}") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; tables are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- published YAML LUTs ---------------------------------------------------------------------
def _value_fields(value: Any, where: str) -> tuple[float, float | None, int | None]:
    """(mean_ms, std_ms, count) of a published value: {count, mean, var|std} or a number."""
    if isinstance(value, bool):
        raise LatencyError(f"{where}: value {value!r} is not a latency")
    if isinstance(value, (int, float)):
        mean, std, count = float(value), None, None
    elif isinstance(value, dict):
        allowed = {"count", "mean", "var", "std"}
        unknown = sorted(set(map(str, value)) - allowed)
        if unknown:
            raise LatencyError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: "
                               f"count, mean, var or std")
        if "mean" not in value:
            raise LatencyError(f"{where}: missing 'mean'")
        if "var" in value and "std" in value:
            raise LatencyError(f"{where}: give 'var' or 'std', not both")
        mean = _number(value["mean"], "mean", where)
        std = None
        if "var" in value:
            std = math.sqrt(_number(value["var"], "var", where))
        elif "std" in value:
            std = _number(value["std"], "std", where)
        count = None
        if "count" in value:
            c = value["count"]
            if isinstance(c, bool) or not isinstance(c, int) or c < 0:
                raise LatencyError(f"{where}: count must be an integer >= 0, got {c!r}")
            count = c
    else:
        raise LatencyError(f"{where}: value must be a mapping {{count, mean, var|std}} or a "
                           f"number, got {type(value).__name__}")
    return mean, std, count


def _number(v: Any, name: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise LatencyError(f"{where}: {name} must be a finite number >= 0, got {v!r}")
    return float(v)


def import_published(path: str | os.PathLike[str], fmt: str, device: str) -> LatencyTable:
    """Load a published YAML (or JSON) LUT in format ``proxyless``, ``ofa`` or ``fbnet``.

    Values are ``{count, mean, var|std}`` (milliseconds) or plain numbers (HW-NAS-Bench op
    tables, ms). Keys are parsed with ``parse_key(key, fmt)``; unknown keys, malformed values
    and duplicate keys raise LatencyError naming the file and line.
    """
    if fmt not in KEY_FORMATS or fmt == "canonical":
        raise LatencyError(f"unknown published format {fmt!r}; allowed: proxyless, ofa, fbnet")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise LatencyError(f"{path}: cannot read: {err.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise LatencyError(f"{path}: not valid YAML: {err}") from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise LatencyError(f"{path}: a published LUT is a mapping of key -> value")
    table = LatencyTable()
    seen: dict[str, int] = {}
    today = _date.today().isoformat()
    constructor = yaml.SafeLoader("")  # builds plain values from nodes (safe constructors only)
    for knode, vnode in root.value:
        line = knode.start_mark.line + 1
        where = f"{path}:{line}"
        if not isinstance(knode, yaml.ScalarNode) or knode.tag != "tag:yaml.org,2002:str":
            raise LatencyError(f"{where}: keys must be strings")
        text_key = knode.value
        if text_key in seen:
            raise LatencyError(f"{where}: key {text_key!r} already on line {seen[text_key]}")
        seen[text_key] = line
        try:
            key = parse_key(text_key, fmt)  # type: ignore[arg-type]
        except LatencyError as err:
            raise LatencyError(f"{where}: {err}") from None
        try:
            value = constructor.construct_object(vnode, deep=True)
        except yaml.YAMLError as err:
            raise LatencyError(f"{where}: key {text_key!r}: bad value: {err}") from None
        mean, std, count = _value_fields(value, f"{where}: key {text_key!r}")
        table.add(LatencyRow(key=key, latency_ms=mean, std_ms=std, samples=count,
                             source="imported", device=device, backend=f"published-{fmt}",
                             date=today, note=f"mean of published {fmt} LUT {path.name}"))
    return table


def export_published(table: LatencyTable, path: str | os.PathLike[str], fmt: str) -> None:
    """Write ``table`` as a published-format YAML LUT ({count, mean, std}; ms), atomically."""
    out: dict[str, dict[str, Any]] = {}
    for row in table:
        value: dict[str, Any] = {}
        if row.samples is not None:
            value["count"] = row.samples
        value["mean"] = row.latency_ms
        if row.std_ms is not None:
            value["std"] = row.std_ms
        out[format_key(row.key, fmt)] = value  # type: ignore[arg-type]
    write_text_atomic(Path(path), yaml.safe_dump(out, sort_keys=True))


def table_dirs() -> list[Path]:
    """Folders searched for ``<device>.csv``: ``HWSIM_LUT_PATH`` entries, ``./lut``, the
    project's ``lut/`` (source checkout), ``<prefix>/share/hwsim/lut`` (wheel install)."""
    import sys

    dirs = [Path(p) for p in os.environ.get("HWSIM_LUT_PATH", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "lut", Path(__file__).resolve().parents[2] / "lut",
             Path(sys.prefix) / "share" / "hwsim" / "lut"]
    return [d for d in dirs if d.is_dir()]


def find_table(device: str) -> Path | None:
    """The first ``<device>.csv`` in ``table_dirs()``, or None."""
    for d in table_dirs():
        path = d / f"{device}.csv"
        if path.is_file():
            return path
    return None
