"""Human-readable summaries of device specs: the rows of ``hwsim devices`` and the sections of
``hwsim devices show NAME``. Pure functions of validated specs; the CLI only prints them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from hwsim.devices.registry import list_devices, load_device_spec
from hwsim.devices.spec import (
    Arithmetic,
    DeviceSpec,
    DynamicFixedPointNumerics,
    FloatNumerics,
    LogNumerics,
    MinifloatNumerics,
    PowerOfTwoNumerics,
    Precision,
    UniformNumerics,
    UnspecifiedPrecision,
)

ROLES = ("weight", "activation", "bias")


@dataclass(frozen=True)
class DeviceRow:
    """One line of the device table: identity, precisions and a scheme summary per precision."""

    name: str
    title: str
    library: str
    precisions: tuple[str, ...]
    schemes: tuple[tuple[str, str], ...]  # (precision, summary) in spec order


def _granularity(n: UniformNumerics) -> str:
    if n.granularity.value == "per_channel":
        text = f"per-channel(axis {n.axis})"
        if n.matmul_granularity is not None:
            text += f", matmul {n.matmul_granularity.value.replace('_', '-')}"
        return text
    return "per-tensor"


def numerics_summary(n: Any) -> str:
    """A one-line description of one TensorNumerics record, e.g.
    ``uint8 asym per-tensor rhaz snpe_tf``."""
    if isinstance(n, UniformNumerics):
        parts = [f"{'int' if n.signed else 'uint'}{n.bits}",
                 "sym" if n.symmetric else "asym", _granularity(n), n.rounding.value]
        if n.narrow_range:
            parts.append("narrow")
        if n.scale_rule != "standard":
            parts.append(n.scale_rule if n.scale_rule != "pow2_lsq"
                         else f"pow2_lsq({n.pow2_search_steps})")
        elif n.scale_type != "float":
            parts.append("pow2-scale")
        return " ".join(parts)
    if isinstance(n, LogNumerics):
        return (f"log{n.bits} base 2^(1/{n.levels_per_octave}) {n.code.replace('_', '-')} "
                f"{n.rounding.value}")
    if isinstance(n, DynamicFixedPointNumerics):
        return f"dfp{n.bits} il={n.il_rule} {n.rounding.value}"
    if isinstance(n, MinifloatNumerics):
        return f"minifloat{n.bits} e={n.exp_bits} {n.rounding.value}"
    if isinstance(n, PowerOfTwoNumerics):
        return f"pow2 weights 2^[{n.exp_min},{n.exp_max}] {n.rounding.value}"
    if isinstance(n, FloatNumerics):
        if n.format == "fp32":
            return "fp32"
        sub = "subnormals" if n.subnormals == "keep" else f"ftz({n.tininess})"
        return f"fp16 {sub} overflow={n.overflow} nan={n.nan}"
    raise TypeError(f"not a numerics record: {type(n).__name__}")


def arithmetic_summary(a: Arithmetic) -> str:
    """One line: accumulator and requantization, e.g. ``acc32 wrap, requant shift (rhaz)``."""
    if a.requant == "float":
        return f"float, {a.float_accumulation} accumulation"
    text = f"acc{a.accumulator_bits} {a.accumulator_overflow}, requant {a.requant}"
    if a.shift_rounding is not None:
        text += f" ({a.shift_rounding.value})"
    if a.int16_pair_saturation:
        text += ", int16 pair saturation"
    return text


def precision_summary(prec: Precision | UnspecifiedPrecision) -> str:
    """``W <weights>; A <activations>`` or ``not publicly specified``."""
    if isinstance(prec, UnspecifiedPrecision):
        return "not publicly specified"
    w, a = numerics_summary(prec.weight), numerics_summary(prec.activation)
    return f"W {w}; A {a}" if w != a else f"W/A {w}"


def device_row(spec: DeviceSpec) -> DeviceRow:
    """The table row of one validated spec."""
    return DeviceRow(
        name=spec.name, title=spec.title, library=spec.library,
        precisions=tuple(spec.precisions),
        schemes=tuple((p, precision_summary(v)) for p, v in spec.precisions.items()))


def device_rows(names: list[str] | None = None) -> list[DeviceRow]:
    """Rows of every device found (``list_devices()``), or of ``names``; loading validates."""
    return [device_row(load_device_spec(n)) for n in (list_devices() if names is None else names)]


def _value_text(value: Any) -> str:
    """YAML-like text of a field value (enums by value, booleans lower case, None omitted)."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = [f"{k}: {_value_text(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    return str(value)


def _record_lines(record: Any, indent: str) -> list[str]:
    """``key: value`` lines of a pydantic record (all fields, defaults included)."""
    lines = []
    for key, value in record.model_dump().items():
        if value is None:
            continue
        lines.append(f"{indent}{key}: {_value_text(value)}")
    return lines


def device_detail(spec: DeviceSpec) -> list[tuple[str, list[str]]]:
    """Sections ``(heading, lines)`` describing a spec completely: identity, the numerics of
    every precision (all fields), sources, assumptions, corrections, performance."""
    sections: list[tuple[str, list[str]]] = [(
        f"{spec.name}: {spec.title}",
        [f"vendor: {spec.vendor}", f"library: {spec.library}",
         f"precisions: {', '.join(spec.precisions)} (default {spec.default_precision})",
         "seed table row(s):", *[f"  {r}" for r in spec.table_row.strip().splitlines()]])]
    for pname, prec in spec.precisions.items():
        if isinstance(prec, UnspecifiedPrecision):
            sections.append((f"precision {pname}: not publicly specified",
                             [f"  {prec.unspecified}"]))
            continue
        lines: list[str] = []
        for role in ROLES:
            num = getattr(prec, role)
            lines.append(f"  {role}: {numerics_summary(num)}")
            lines.extend(_record_lines(num, "      "))
        lines.append(f"  arithmetic: {arithmetic_summary(prec.arithmetic)}")
        lines.extend(_record_lines(prec.arithmetic, "      "))
        if prec.note:
            lines.append(f"  note: {prec.note}")
        sections.append((f"precision {pname}", lines))
    for heading, items in (("sources", spec.sources), ("assumptions", spec.assumptions),
                           ("corrections", spec.corrections)):
        sections.append((heading, [f"  - {s}" for s in items] or ["  (none)"]))
    perf = spec.performance
    if perf is not None:
        lines = [f"  peak MAC/s: {_value_text(perf.peak_macs_per_s) or '{}'}",
                 f"  memory bandwidth GB/s: {perf.memory_bandwidth_gb_s}",
                 f"  op overhead us: {perf.op_overhead_us}",
                 f"  efficiency: {_value_text(perf.efficiency)}"]
        if perf.energy_pj_per_mac:
            lines.append(f"  energy pJ/MAC: {_value_text(perf.energy_pj_per_mac)}")
        if perf.energy_pj_per_byte is not None:
            lines.append(f"  energy pJ/byte: {perf.energy_pj_per_byte}")
        lines += [f"  source: {s}" for s in perf.sources]
        lines += [f"  assumption: {s}" for s in perf.assumptions]
        sections.append(("performance", lines))
    return sections
