"""Latency of architectures at search speed: a table model compiled into gather arrays.

``LatencyModel(device, space)`` resolves every key a space can use once (table row, else the
fallback predictor, else reported missing; never zero) and compiles the space's cost terms
(``SearchSpace.cost_terms``) into

- ``fixed_ms``: the keys every architecture runs,
- ``unary_ms`` (n_slots, n_ops): per-slot op costs (NaN where the op is not allowed),
- higher-order terms (MnasNet blocks, NAS-Bench-201 node sums): flat arrays indexed by the
  mixed-radix number of their slots' choices.

``predict(archs)`` is then one pass of a numba kernel over the (n, n_slots) index array (any
integer dtype; int8 is the fastest), checking bounds and NaN as it goes: no per-architecture
Python code. Latency unit: milliseconds. The result is a model (sum of per-op table latencies,
what ProxylessNAS/FBNet/HW-NAS-Bench use), not a measurement.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from hwsim.errors import LatencyError, MissingKeyError, SearchError
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyTable
from hwsim.search.space import SearchSpace

Fallback = Callable[[OpKey], "float | None"]
KEY_SOURCES = ("table", "modeled", "fallback", "missing")


@numba.njit(cache=True, nogil=True)
def _predict_kernel(archs, n_choices, unary, fixed, t_slots, t_strides, t_offsets,  # noqa: ANN001
                    t_arity, t_flat, out):  # noqa: ANN001, ANN202
    """Sum of fixed + unary[s, a_s] + term cells per row; returns the first bad row or -1."""
    n, n_slots = archs.shape
    n_terms = t_arity.shape[0]
    for i in range(n):
        acc = fixed
        for s in range(n_slots):
            c = archs[i, s]
            if c < 0 or c >= n_choices[s]:
                return i
            acc += unary[s, c]
        for t in range(n_terms):
            idx = 0
            for k in range(t_arity[t]):
                idx += archs[i, t_slots[t, k]] * t_strides[t, k]
            acc += t_flat[t_offsets[t] + idx]
        if acc != acc:  # NaN: an op not allowed here, or a missing key (strict=False)
            return i
        out[i] = acc
    return -1


@dataclass(frozen=True)
class CompiledTerm:
    """A cost term over several slots: ``cost_ms`` has one axis per slot (its choices)."""

    slots: tuple[int, ...]
    cost_ms: np.ndarray
    name: str


def roofline_fallback(device: str, precision: str | None = None) -> Fallback:
    """A fallback predicting a key with the roofline model of a device YAML (``performance:``)."""
    from hwsim.devices.registry import load_device_spec
    from hwsim.latency.roofline import RooflineModel

    model = RooflineModel(load_device_spec(device), precision)

    def predict(key: OpKey) -> float | None:
        try:
            return model.latency_ms(key)[0]
        except LatencyError:
            return None

    return predict


class LatencyModel:
    """Table lookups with predictor fallback, compiled for batched queries (module docstring).

    device: ``host-ort``/``host-torch``/... (table ``lut/<device>.csv`` or ``table``) or a
    device YAML name with a ``performance:`` section (roofline, source modeled) when no table is
    found. table: a CSV path or a ``LatencyTable`` (overrides the lookup). fallback:
    ``key -> ms | None`` for keys the table lacks (e.g. ``roofline_fallback("nnie")``).
    strict: raise ``MissingKeyError`` naming the keys nothing can price; with False they are
    reported in ``missing_keys`` and architectures using them fail in ``predict``.
    """

    def __init__(self, device: str = "host-ort", space: SearchSpace | None = None,
                 table: str | os.PathLike[str] | LatencyTable | None = None,
                 fallback: Fallback | None = None, precision: str | None = None,
                 strict: bool = True) -> None:
        if not isinstance(space, SearchSpace):
            raise SearchError("LatencyModel needs space=<a SearchSpace>, e.g. "
                              "hwsim.search.get_space('proxyless')")
        self.device, self.space, self.strict = device, space, strict
        self.table_source, lookup = _resolve_source(device, table, precision)
        self.key_ms: dict[OpKey, float] = {}
        self.key_source: dict[OpKey, str] = {}
        for key in space_keys(space):
            ms, source = lookup(key)
            if ms is None and fallback is not None:
                value = fallback(key)
                if value is not None:
                    if not (isinstance(value, (int, float)) and math.isfinite(value) and
                            value >= 0):
                        raise MissingKeyError(f"fallback returned {value!r} for {key}; expected "
                                              f"a finite latency >= 0 in ms or None")
                    ms, source = float(value), "fallback"
            self.key_source[key] = source if ms is not None else "missing"
            if ms is not None:
                self.key_ms[key] = ms
        self.missing_keys: tuple[OpKey, ...] = tuple(
            k for k, s in self.key_source.items() if s == "missing")
        if self.missing_keys and strict:
            shown = "\n  ".join(str(k) for k in self.missing_keys[:20])
            more = len(self.missing_keys) - 20
            raise MissingKeyError(
                f"{space.name} on {device} ({self.table_source}): {len(self.missing_keys)} "
                f"key(s) have no latency and no fallback covers them (never counted as zero):"
                f"\n  {shown}" + (f"\n  ... and {more} more" if more > 0 else "") +
                "\nmeasure them (hwsim lut build), pass fallback=..., or strict=False")
        self._compile()

    # -- compilation -----------------------------------------------------------------------
    def _cell_ms(self, keys: tuple[OpKey, ...] | None) -> float:
        if keys is None:
            return math.nan
        total = 0.0
        for k in keys:
            ms = self.key_ms.get(k)
            if ms is None:
                return math.nan
            total += ms
        return total

    def _compile(self) -> None:
        space = self.space
        self.fixed_ms = math.fsum(self._cell_ms((k,)) for k in space.fixed_keys())
        if math.isnan(self.fixed_ms):
            raise MissingKeyError(f"{space.name} on {self.device}: a fixed key (stem/head) has "
                                  f"no latency: {[str(k) for k in self.missing_keys]}")
        unary = np.where(space.mask, 0.0, np.nan)
        terms: list[CompiledTerm] = []
        for term in space.cost_terms():
            shape = tuple(int(space.n_choices[s]) for s in term.slots)
            cost = np.empty(shape)
            for idx in itertools.product(*(range(n) for n in shape)):
                cost[idx] = self._cell_ms(term.cell_keys(idx))
            if len(term.slots) == 1:
                unary[term.slots[0], :shape[0]] += cost
            else:
                terms.append(CompiledTerm(term.slots, cost, term.name))
        unary[~space.mask] = np.nan
        self.unary_ms = unary
        self.terms = tuple(terms)
        arity = max((len(t.slots) for t in terms), default=1)
        self._t_slots = np.zeros((len(terms), arity), dtype=np.int64)
        self._t_strides = np.zeros((len(terms), arity), dtype=np.int64)
        self._t_arity = np.array([len(t.slots) for t in terms], dtype=np.int64)
        offsets, flat = [], []
        pos = 0
        for i, t in enumerate(terms):
            self._t_slots[i, :len(t.slots)] = t.slots
            strides = np.cumprod((1,) + t.cost_ms.shape[:0:-1])[::-1]  # C order
            self._t_strides[i, :len(t.slots)] = strides
            offsets.append(pos)
            flat.append(t.cost_ms.ravel())
            pos += t.cost_ms.size
        self._t_offsets = np.array(offsets, dtype=np.int64)
        self._t_flat = np.concatenate(flat) if flat else np.zeros(0)
        self._n_choices = space.n_choices.astype(np.int64)
        self._torch_cache: dict[Any, Any] = {}

    # -- queries ---------------------------------------------------------------------------
    def predict(self, archs: Any) -> np.ndarray:
        """Latency in ms of each architecture of an (n, n_slots) integer array -> (n,)."""
        arr = np.asarray(archs)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.space.n_slots:
            raise SearchError(f"{self.space.name}: predict takes an (n, {self.space.n_slots}) "
                              f"array of op indices, got shape {np.shape(archs)}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise SearchError(f"{self.space.name}: op indices must be integers, got dtype "
                              f"{arr.dtype}")
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        out = np.empty(arr.shape[0])
        bad = _predict_kernel(arr, self._n_choices, self.unary_ms, self.fixed_ms, self._t_slots,
                              self._t_strides, self._t_offsets, self._t_arity, self._t_flat, out)
        if bad >= 0:
            self._raise_for(arr, int(bad))
        return out

    def _raise_for(self, arr: np.ndarray, row: int) -> None:
        space = self.space
        for slot, value in enumerate(arr[row]):
            v = int(value)
            if not (0 <= v < space.n_ops and space.mask[slot, v]):
                raise SearchError(space.invalid_message(row, slot, v))
        missing = [str(op.key) for op in space.ops(arr[row]) if op.key not in self.key_ms]
        raise MissingKeyError(f"{space.name} on {self.device}: architecture row {row} uses "
                              f"key(s) without latency: {missing}")

    def predict_dict(self, archs: Any) -> np.ndarray:
        """The same sum per architecture via ``space.ops`` and a key dict (slow; the way
        published code does it; for checks)."""
        arr = self.space.check(archs)
        return np.array([math.fsum(self.key_ms[op.key] for op in self.space.ops(row))
                         for row in arr])

    def torch_costs(self, dtype: Any = None, device: Any = None) -> tuple[Any, list[Any]]:
        """(unary costs with 0 where not allowed, [term costs]) as torch tensors (cached)."""
        import torch

        dtype = dtype or torch.float32
        cache_key = (dtype, str(device))
        if cache_key not in self._torch_cache:
            unary = torch.as_tensor(np.nan_to_num(self.unary_ms, nan=0.0), dtype=dtype,
                                    device=device)
            terms = [torch.as_tensor(np.nan_to_num(t.cost_ms, nan=0.0), dtype=dtype,
                                     device=device) for t in self.terms]
            self._torch_cache[cache_key] = (unary, terms)
        return self._torch_cache[cache_key]

    def report(self) -> dict[str, Any]:
        """Where the latencies come from: counts per source and the missing keys."""
        counts = dict.fromkeys(KEY_SOURCES, 0)
        for s in self.key_source.values():
            counts[s] += 1
        return {"space": self.space.name, "device": self.device, "source": self.table_source,
                "keys": len(self.key_source), "by_source": counts,
                "missing_keys": [str(k) for k in self.missing_keys],
                "fixed_ms": self.fixed_ms, "terms": len(self.terms)}

    def __repr__(self) -> str:
        r = self.report()
        return (f"LatencyModel(space={r['space']!r}, device={r['device']!r}, "
                f"keys={r['keys']}, by_source={r['by_source']})")


def space_keys(space: SearchSpace) -> list[OpKey]:
    """Every distinct key an architecture of ``space`` can run (fixed keys first)."""
    seen: dict[OpKey, None] = dict.fromkeys(space.fixed_keys())
    for term in space.cost_terms():
        shape = tuple(int(space.n_choices[s]) for s in term.slots)
        cache: dict[tuple[OpKey, ...], None] = {}
        for idx in itertools.product(*(range(n) for n in shape)):
            keys = term.cell_keys(idx)
            if keys and keys not in cache:
                cache[keys] = None
                seen.update(dict.fromkeys(keys))
    return list(seen)


def _resolve_source(device: str, table: str | os.PathLike[str] | LatencyTable | None,
                    precision: str | None) -> tuple[str, Callable[[OpKey], tuple[Any, str]]]:
    """(description, key -> (ms or None, source))."""
    from hwsim.latency.host_backends import HOST_BACKENDS
    from hwsim.latency.table import find_table

    if table is None:
        found = find_table(device)
        table = found
    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        loaded, desc = LatencyTable.load(path), str(path)
    elif isinstance(table, LatencyTable):
        loaded, desc = table, "given table"
    elif table is None:
        if device in HOST_BACKENDS:
            raise LatencyError(f"no latency table for {device!r} (looked for {device}.csv in "
                               f"lut/ folders); build one for the space's keys "
                               f"(hwsim.latency.build.build_table(device, "
                               f"hwsim.search.latency_model.space_keys(space), out)) or pass "
                               f"table=PATH")
        from hwsim.devices.registry import load_device_spec
        from hwsim.latency.roofline import RooflineModel

        model = RooflineModel(load_device_spec(device), precision)

        def modeled(key: OpKey) -> tuple[Any, str]:
            try:
                return model.latency_ms(key)[0], "modeled"
            except LatencyError:
                return None, "missing"

        return f"roofline model of {device} ({model.precision})", modeled
    else:
        raise SearchError(f"table must be a CSV path or a LatencyTable, got "
                          f"{type(table).__name__}")

    def lookup(key: OpKey) -> tuple[Any, str]:
        row = loaded.get(key)
        if row is None:
            return None, "missing"
        return row.latency_ms, ("modeled" if row.source == "modeled" else "table")

    return desc, lookup
