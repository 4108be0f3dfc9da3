"""Scalar rounding primitives shared by the numba kernels.

Mode codes (plain ints, so kernels take scalars, never spec objects):
RNE = 0 (half to even), RHAZ = 1 (half away from zero, C ``round``), RHU = 2 (half up,
``floor(x + 0.5)``), STOCHASTIC = 3 (``floor(x + u)``, u in [0, 1) from ``uniform_from_counter``).

All functions take float64. A float32 value converts to float64 exactly, so rounding a float32
quotient here rounds exactly that quotient. Values with |x| >= 2^52 are integers already and are
returned unchanged (``x + 0.5`` would itself round there). NaN is returned as NaN: callers decide
what a NaN becomes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hwsim.devices.spec import Rounding
from hwsim.errors import QuantError

RNE = 0
RHAZ = 1
RHU = 2
STOCHASTIC = 3

MODE_CODES = {Rounding.RNE: RNE, Rounding.RHAZ: RHAZ, Rounding.RHU: RHU,
              Rounding.STOCHASTIC: STOCHASTIC}

_TWO52 = 4503599627370496.0


def mode_code(rounding: Rounding | str) -> int:
    """The kernel code of a rounding mode name (``"rne"`` ...)."""
    try:
        return MODE_CODES[Rounding(rounding)]
    except ValueError:
        raise QuantError(f"unknown rounding {rounding!r}; allowed: "
                         f"{[r.value for r in Rounding]}") from None


@numba.njit(cache=True, inline="always")
def round_rne(x: float) -> float:
    if not abs(x) < _TWO52:  # also true for NaN and +-inf
        return x
    f = math.floor(x)
    d = x - f  # exact: x and f share the exponent range below 2^52
    if d > 0.5:
        return f + 1.0
    if d < 0.5:
        return f
    return f + 1.0 if (f * 0.5) != math.floor(f * 0.5) else f


@numba.njit(cache=True, inline="always")
def round_rhaz(x: float) -> float:
    if not abs(x) < _TWO52:
        return x
    f = math.floor(abs(x))
    r = f + 1.0 if abs(x) - f >= 0.5 else f
    return -r if x < 0.0 else r


@numba.njit(cache=True, inline="always")
def round_rhu(x: float) -> float:
    if not abs(x) < _TWO52:
        return x
    f = math.floor(x)
    return f + 1.0 if x - f >= 0.5 else f


@numba.njit(cache=True, inline="always")
def splitmix64(z: np.uint64) -> np.uint64:
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def uniform_from_counter(seed: np.uint64, index: np.uint64) -> float:
    """u in [0, 1) from (seed, element index): splitmix64(seed * 2^32 + index) >> 11, * 2^-53.

    Counter-based, so the result of element i does not depend on threads or chunking.
    """
    z = splitmix64(seed * np.uint64(4294967296) + index)
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def round_mode(x: float, mode: int, seed: np.uint64, index: np.uint64) -> float:
    """Round x with mode code ``mode``; ``seed``/``index`` are used by STOCHASTIC only."""
    if mode == RNE:
        return round_rne(x)
    if mode == RHAZ:
        return round_rhaz(x)
    if mode == RHU:
        return round_rhu(x)
    if not abs(x) < _TWO52:
        return x
    return math.floor(x + uniform_from_counter(seed, index))
