"""Model latency = sum over the kernels of a graph of their table latencies (milliseconds).

Kernels come from ``fusion.graph_kernels`` under a backend's rules. A kernel key the table
lacks goes to the ``fallback`` (the kernel predictor of the predictor issue plugs in here:
``fallback(key) -> float ms``, or None when it cannot predict); if there is none, or it
returns None, the key is reported as missing: ``strict=True`` raises ``MissingKeyError``
naming every missing key, ``strict=False`` returns the breakdown with ``total_ms = None``.
A missing key is never counted as zero. Views (reshape/flatten) cost 0 and are listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from hwsim.errors import MissingKeyError
from hwsim.graph.ir import Graph
from hwsim.latency.fusion import FusionRules, Kernel, graph_kernels
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyTable

Fallback = Callable[[OpKey], float | None]
KernelSource = Literal["table", "fallback", "view", "missing"]


@dataclass(frozen=True)
class KernelLatency:
    kernel: Kernel
    latency_ms: float | None
    source: KernelSource

    def to_dict(self) -> dict[str, Any]:
        return {"kernel": self.kernel.name, "ops": list(self.kernel.classes),
                "key": None if self.kernel.key is None else str(self.kernel.key),
                "latency_ms": self.latency_ms, "source": self.source}


@dataclass(frozen=True)
class ModelLatency:
    """Per-kernel breakdown; ``total_ms`` is None when any key is missing."""

    kernels: tuple[KernelLatency, ...]
    rules_backend: str
    missing: tuple[OpKey, ...] = field(default=())

    @property
    def total_ms(self) -> float | None:
        if self.missing:
            return None
        return math.fsum(k.latency_ms or 0.0 for k in self.kernels)

    @property
    def coverage(self) -> dict[str, int]:
        counts = {"table": 0, "fallback": 0, "view": 0, "missing": 0}
        for k in self.kernels:
            counts[k.source] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"total_ms": self.total_ms, "fusion_rules": self.rules_backend,
                "coverage": self.coverage, "missing_keys": [str(k) for k in self.missing],
                "kernels": [k.to_dict() for k in self.kernels]}


def model_latency(graph: Graph, table: LatencyTable, rules: FusionRules,
                  fallback: Fallback | None = None, strict: bool = True) -> ModelLatency:
    """Sum of kernel latencies of ``graph`` (see module docstring)."""
    out: list[KernelLatency] = []
    missing: dict[OpKey, None] = {}
    for kernel in graph_kernels(graph, rules):
        if kernel.key is None:
            out.append(KernelLatency(kernel, 0.0, "view"))
            continue
        row = table.get(kernel.key)
        if row is not None:
            out.append(KernelLatency(kernel, row.latency_ms, "table"))
            continue
        value = fallback(kernel.key) if fallback is not None else None
        if value is not None:
            if not (isinstance(value, float | int) and math.isfinite(value) and value >= 0):
                raise MissingKeyError(f"fallback returned {value!r} for {kernel.key}; expected "
                                      f"a finite latency >= 0 in ms or None")
            out.append(KernelLatency(kernel, float(value), "fallback"))
            continue
        missing.setdefault(kernel.key, None)
        out.append(KernelLatency(kernel, None, "missing"))
    result = ModelLatency(tuple(out), rules.backend, tuple(missing))
    if strict and missing:
        listed = "\n  ".join(str(k) for k in missing)
        raise MissingKeyError(f"graph {graph.name!r}: {len(missing)} kernel key(s) not in the "
                              f"table and no fallback for them:\n  {listed}")
    return result
