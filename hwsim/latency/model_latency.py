"""Model latency = sum over the kernels of a graph of their table latencies (milliseconds).

Kernels come from ``fusion.graph_kernels`` under a backend's rules. A kernel key the table
lacks goes first to the kernel ``predictor`` (``KernelLatencyPredictor`` or anything with
``predict_key(key) -> float ms | None`` and a ``name``; such kernels are labelled
``predicted``), then to a generic ``fallback(key) -> float ms | None`` (labelled
``fallback``); if neither gives a value the key is reported as missing: ``strict=True`` raises
``MissingKeyError`` naming every missing key, ``strict=False`` returns the breakdown with
``total_ms = None``. A missing key is never counted as zero. Views (reshape/flatten) cost 0 and
are listed. The coverage counts gain a ``predicted`` entry when a predictor was given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hwsim.errors import MissingKeyError
from hwsim.graph.ir import Graph
from hwsim.latency.fusion import FusionRules, Kernel, graph_kernels
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyTable

Fallback = Callable[[OpKey], float | None]
KernelSource = Literal["table", "predicted", "fallback", "view", "missing"]


class KernelPredictor(Protocol):
    """What ``model_latency`` needs of a kernel predictor."""

    def predict_key(self, key: OpKey) -> float | None: ...


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
    predictor: str | None = None  # description of the kernel predictor used, if any

    @property
    def total_ms(self) -> float | None:
        if self.missing:
            return None
        return math.fsum(k.latency_ms or 0.0 for k in self.kernels)

    @property
    def coverage(self) -> dict[str, int]:
        counts = {"table": 0, "fallback": 0, "view": 0, "missing": 0}
        if self.predictor is not None:
            counts["predicted"] = 0
        for k in self.kernels:
            counts[k.source] += 1
        return counts

    @property
    def n_predicted(self) -> int:
        return sum(1 for k in self.kernels if k.source == "predicted")

    def to_dict(self) -> dict[str, Any]:
        return {"total_ms": self.total_ms, "fusion_rules": self.rules_backend,
                "coverage": self.coverage, "predictor": self.predictor,
                "predicted_kernels": self.n_predicted,
                "missing_keys": [str(k) for k in self.missing],
                "kernels": [k.to_dict() for k in self.kernels]}


def _checked(value: object, what: str, key: OpKey) -> float:
    if not (isinstance(value, float | int) and math.isfinite(value) and value >= 0):
        raise MissingKeyError(f"{what} returned {value!r} for {key}; expected a finite latency "
                              f">= 0 in ms or None")
    return float(value)


def model_latency(graph: Graph, table: LatencyTable, rules: FusionRules,
                  fallback: Fallback | None = None, strict: bool = True,
                  predictor: KernelPredictor | None = None,
                  predictor_name: str = "kernel predictor") -> ModelLatency:
    """Sum of kernel latencies of ``graph`` (see module docstring); ``predictor_name``
    describes the predictor in the result (e.g. its file)."""
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
        value = predictor.predict_key(kernel.key) if predictor is not None else None
        if value is not None:
            out.append(KernelLatency(kernel, _checked(value, "predictor", kernel.key),
                                     "predicted"))
            continue
        value = fallback(kernel.key) if fallback is not None else None
        if value is not None:
            out.append(KernelLatency(kernel, _checked(value, "fallback", kernel.key),
                                     "fallback"))
            continue
        missing.setdefault(kernel.key, None)
        out.append(KernelLatency(kernel, None, "missing"))
    result = ModelLatency(tuple(out), rules.backend, tuple(missing),
                          None if predictor is None else predictor_name)
    if strict and missing:
        listed = "\n  ".join(str(k) for k in missing)
        how = "the kernel predictor does not cover them" if predictor is not None else \
            "no kernel predictor or fallback for them"
        raise MissingKeyError(f"graph {graph.name!r}: {len(missing)} kernel key(s) not in the "
                              f"table and {how}:\n  {listed}")
    return result
