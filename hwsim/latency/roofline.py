"""Modeled latency of an op from a device's ``performance:`` figures (roofline).

    t_ms = max(MACs / (peak_macs_per_s[precision] * eff_c),
               bytes / (memory_bandwidth_gb_s * 1e9 * eff_m)) * 1e3 + op_overhead_us * 1e-3

``eff_c`` is ``efficiency[category]`` for compute categories (conv, dwconv, fc) and 1 for the
others; ``eff_m`` is ``efficiency[category]`` for memory categories (pool, elementwise) and 1
for the others (the convention of ``devices/*.yaml``: an efficiency scales the bound that
limits that op type). MACs and bytes come from ``op_cost`` (weights at the precision's weight
bits, activations at its activation bits). A block op (expanded_conv, ConvBlock, ...) is the
sum over its sub-ops. Without ``memory_bandwidth_gb_s`` only the compute term is modeled, and
ops without MACs cannot be modeled at all (LatencyError). Every row records the formula inputs.
"""

from __future__ import annotations

from datetime import date

from hwsim.devices.spec import DeviceSpec, Precision
from hwsim.errors import LatencyError
from hwsim.latency.op_cost import BLOCK_OPS, ELEMENTWISE_OPS, OpCost, op_cost
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyRow

_CATEGORY = {"conv": "conv", "ConvNorm": "conv", "Conv": "conv", "Conv_1": "conv",
             "Conv_2": "conv", "dwconv": "dwconv", "linear": "fc", "FC": "fc", "Logits": "fc",
             "avgpool": "pool", "maxpool": "pool", "gap": "pool", "AvgP": "pool",
             "AvgPool2D": "pool", **{op: "elementwise" for op in ELEMENTWISE_OPS}}
_MEMORY_CATEGORIES = ("pool", "elementwise")


def _category(op: str) -> str:
    if op not in _CATEGORY:
        raise LatencyError(f"op {op!r} has no roofline category; known ops: "
                           f"{', '.join(sorted(_CATEGORY))} and blocks {', '.join(BLOCK_OPS)}")
    return _CATEGORY[op]


class RooflineModel:
    """Roofline latency of op keys on one device (``performance:`` section required)."""

    def __init__(self, spec: DeviceSpec, precision: str | None = None) -> None:
        perf = spec.performance
        if perf is None:
            raise LatencyError(f"device {spec.name!r} has no 'performance:' section in its YAML; "
                               f"a modeled latency needs peak_macs_per_s, "
                               f"memory_bandwidth_gb_s, op_overhead_us and efficiency")
        self.spec, self.perf = spec, perf
        self.precision = precision or spec.default_precision
        if self.precision not in perf.peak_macs_per_s:
            why = ("; no public figure: see its performance.assumptions"
                   if not perf.peak_macs_per_s else "")
            raise LatencyError(f"device {spec.name!r}: performance.peak_macs_per_s has no entry "
                               f"for precision {self.precision!r} (has "
                               f"{sorted(perf.peak_macs_per_s)}){why}; a modeled latency "
                               "needs a measured or documented peak, or a measured table "
                               "(hwsim lut import / build)")
        prec: Precision = spec.precision(self.precision)
        self.wbits, self.abits = prec.weight.bits, prec.activation.bits

    def _eff(self, category: str) -> float:
        eff = self.perf.efficiency.get(category)
        if eff is None or eff <= 0:
            raise LatencyError(f"device {self.spec.name!r}: performance.efficiency has no "
                               f"positive entry for op type {category!r} (has "
                               f"{sorted(self.perf.efficiency)})")
        return eff

    def _kernel_ms(self, key: OpKey, cost: OpCost, category: str) -> tuple[float, str]:
        peak = self.perf.peak_macs_per_s[self.precision]
        bw = self.perf.memory_bandwidth_gb_s
        eff = self._eff(category)
        eff_c, eff_m = (1.0, eff) if category in _MEMORY_CATEGORIES else (eff, 1.0)
        wbits = key.wbits or self.wbits
        abits = key.abits or self.abits
        nbytes = cost.bytes_moved(wbits, abits)
        t_compute = cost.macs / (peak * eff_c)
        if bw is None:
            if cost.macs == 0:
                raise LatencyError(f"{key}: device {self.spec.name!r} gives no "
                                   f"memory_bandwidth_gb_s; a memory-bound op without MACs "
                                   f"cannot be modeled")
            t_memory, mem_text = 0.0, "memory term not modeled (no memory_bandwidth_gb_s)"
        else:
            t_memory = nbytes / (bw * 1e9 * eff_m)
            mem_text = f"bytes={nbytes:.0f}/({bw}e9*{eff_m})"
        t_ms = max(t_compute, t_memory) * 1e3 + self.perf.op_overhead_us * 1e-3
        note = (f"roofline {self.precision}: max(macs={cost.macs}/({peak:.4g}*{eff_c}), "
                f"{mem_text}) + {self.perf.op_overhead_us}us; w{wbits}a{abits}")
        return t_ms, note

    def latency_ms(self, key: OpKey) -> tuple[float, str]:
        """(modeled latency in ms, the formula with its numbers)."""
        if key.op in BLOCK_OPS and key.op not in _CATEGORY:
            from hwsim.latency.block_kernels import block_kernel_keys

            total, notes = 0.0, []
            for sub in block_kernel_keys(key):
                t, n = self._kernel_ms(sub, op_cost(sub), _category(sub.op))
                total += t
                notes.append(f"{sub.op}:{t:.4g}ms")
            return total, f"sum of sub-kernels [{', '.join(notes)}]"
        return self._kernel_ms(key, op_cost(key), _category(key.op))

    def row(self, key: OpKey) -> LatencyRow:
        t_ms, note = self.latency_ms(key)
        return LatencyRow(key=key, latency_ms=t_ms, source="modeled", device=self.spec.name,
                          backend="roofline", samples=0, date=date.today().isoformat(),
                          note=note)
