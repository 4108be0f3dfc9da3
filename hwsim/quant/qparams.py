"""Quantization parameters: frozen records produced by calibration and consumed by kernels.

Each scheme family has its own record; all of them convert to and from plain JSON-able dicts
(``to_dict`` / ``qparams_from_dict``) for manifests and saved models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.errors import QuantError


def _as_f32(a: Any) -> np.ndarray:
    return np.array(a, dtype=np.float32, copy=True, order="C")  # keeps 0-d as 0-d


def _as_i64(a: Any) -> np.ndarray:
    return np.array(a, dtype=np.int64, copy=True, order="C")


@dataclass(frozen=True, eq=False)
class UniformQParams:
    """Affine integer codes ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    scale: float32, shape () per tensor or (C,) per channel along ``axis``; zero_point: int64,
    same shape. ``clip_min``/``clip_max`` (real units) are set when the scheme clamps inputs to a
    nudged range before scaling (SNPE "tf"); otherwise None.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    qmin: int
    qmax: int
    axis: int | None = None
    clip_min: float | None = None
    clip_max: float | None = None
    kind: str = field(default="uniform", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _as_f32(self.scale))
        object.__setattr__(self, "zero_point", _as_i64(self.zero_point))
        if self.scale.shape != self.zero_point.shape:
            raise QuantError(f"scale shape {self.scale.shape} != zero_point shape "
                             f"{self.zero_point.shape}")
        if self.scale.ndim > 1:
            raise QuantError(f"scale must be a scalar or 1-D, got shape {self.scale.shape}")
        if (self.scale.ndim == 1) != (self.axis is not None):
            raise QuantError("per-channel qparams (1-D scale) need an axis, per-tensor none")
        if not np.all(np.isfinite(self.scale)) or np.any(self.scale <= 0):
            raise QuantError(f"scale must be finite and > 0, got {self.scale}")
        if self.qmin >= self.qmax:
            raise QuantError(f"qmin {self.qmin} must be < qmax {self.qmax}")
        if np.any(self.zero_point < self.qmin) or np.any(self.zero_point > self.qmax):
            raise QuantError(f"zero_point {self.zero_point} outside [{self.qmin}, {self.qmax}]")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scale": self.scale.tolist(),
                "zero_point": self.zero_point.tolist(), "qmin": self.qmin, "qmax": self.qmax,
                "axis": self.axis, "clip_min": self.clip_min, "clip_max": self.clip_max}


@dataclass(frozen=True)
class LogQParams:
    """NNIE log codes: clip c (float64) and z = RNE(levels * log2(c)) - (2^(bits-1) - 1)."""

    clip: float
    z: int
    levels_per_octave: int = 16
    kind: str = field(default="log", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "clip": self.clip, "z": self.z,
                "levels_per_octave": self.levels_per_octave}


@dataclass(frozen=True)
class FixedPointQParams:
    """Dynamic fixed point: value = q * 2^-fl, q in [qmin, qmax]."""

    fl: int
    qmin: int
    qmax: int
    kind: str = field(default="dynamic_fixed_point", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "fl": self.fl, "qmin": self.qmin, "qmax": self.qmax}


@dataclass(frozen=True)
class MinifloatQParams:
    """Ristretto minifloat with ``exp_bits`` exponent and ``mant_bits`` mantissa bits."""

    exp_bits: int
    mant_bits: int
    kind: str = field(default="minifloat", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "exp_bits": self.exp_bits, "mant_bits": self.mant_bits}


@dataclass(frozen=True)
class PowerOfTwoQParams:
    """Power-of-two values sign * 2^e, e in [exp_min, exp_max]."""

    exp_min: int
    exp_max: int
    kind: str = field(default="power_of_two", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "exp_min": self.exp_min, "exp_max": self.exp_max}


@dataclass(frozen=True)
class FloatQParams:
    """Float formats need no calibration; the record only names the format."""

    format: str = "fp16"
    kind: str = field(default="float", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "format": self.format}


QParams = (UniformQParams | LogQParams | FixedPointQParams | MinifloatQParams
           | PowerOfTwoQParams | FloatQParams)

_BY_KIND: dict[str, type] = {
    "uniform": UniformQParams, "log": LogQParams, "dynamic_fixed_point": FixedPointQParams,
    "minifloat": MinifloatQParams, "power_of_two": PowerOfTwoQParams, "float": FloatQParams,
}


def qparams_from_dict(d: dict[str, Any]) -> QParams:
    """Inverse of ``to_dict``; raises QuantError naming the bad field."""
    if not isinstance(d, dict) or d.get("kind") not in _BY_KIND:
        raise QuantError(f"qparams need 'kind' in {sorted(_BY_KIND)}, got {d!r:.200}")
    fields = {k: v for k, v in d.items() if k != "kind"}
    try:
        return _BY_KIND[d["kind"]](**fields)
    except TypeError as err:
        raise QuantError(f"bad {d['kind']} qparams {fields!r:.200}: {err}") from None
