"""q31 requantization of 64-bit accumulators (TFLite's int64 ``MultiplyByQuantizedMultiplier``,
``tensorflow/lite/kernels/internal/common.h``) against a Python-integer oracle.

The oracle re-derives the C++ with unbounded Python ints, wrapping explicitly where int64 /
int32 would wrap; it does not import hwsim's kernels.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from hwsim.emulate.requant import (
    make_requantizer,
    multiply_by_quantized_multiplier_int64,
    quantize_multiplier,
)
from hwsim.errors import EmulationError


def _wrap(v: int, bits: int) -> int:
    return (v + 2 ** (bits - 1)) % 2 ** bits - 2 ** (bits - 1)


def _oracle(x: int, q31: int, shift: int) -> int:
    reduced = (q31 + 2 ** 15) // 2 ** 16 if q31 < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    v = _wrap(x * reduced + 2 ** (total - 1), 64)
    return _wrap(v // 2 ** total, 32)  # >> on a signed value: floor division


def test_int64_multiply_matches_python_integer_oracle():
    rng = np.random.default_rng(11)
    n = 4000
    q = rng.integers(2 ** 30, 2 ** 31, size=n, dtype=np.int64)
    q[:50] = rng.integers(0x7FFF0000, 2 ** 31, size=50)  # the 0x7FFF branch
    shift = rng.integers(-31, 8, size=n)
    x = rng.integers(-(2 ** 47), 2 ** 47, size=n, dtype=np.int64)
    x[:200] = rng.integers(-(2 ** 20), 2 ** 20, size=200)
    got = multiply_by_quantized_multiplier_int64(x, q, shift)
    want = [_oracle(int(a), int(b), int(c)) for a, b, c in zip(x, q, shift, strict=True)]
    assert got.tolist() == want


def test_int64_multiply_ties_round_toward_plus_infinity():
    # q31 = 2^30 (M = 0.5 * 2^shift): reduced = 2^14, exact halves at odd x
    q = np.full(4, 1 << 30, np.int64)
    shift = np.zeros(4, np.int64)  # M = 0.5
    x = np.array([1, -1, 3, -3], np.int64)
    assert multiply_by_quantized_multiplier_int64(x, q, shift).tolist() == [1, 0, 2, -1]


def test_int64_multiply_is_close_to_the_real_product_in_range():
    rng = np.random.default_rng(5)
    m = 10.0 ** rng.uniform(-6, 0, size=300)
    q, s = quantize_multiplier(m)
    x = rng.integers(-(2 ** 40), 2 ** 40, size=300)
    keep = np.abs(x * m) < 2 ** 30
    got = multiply_by_quantized_multiplier_int64(x[keep], q[keep], s[keep])
    for g, xi, mi in zip(got, x[keep], m[keep], strict=True):
        exact = Fraction(int(xi)) * Fraction(float(mi))
        # 16-bit multiplier: relative error <= 2^-15 plus the final rounding
        assert abs(Fraction(int(g)) - exact) <= abs(exact) / 2 ** 14 + 1


def test_requantizer_uses_int64_path_for_wide_accumulators():
    acc = np.array([[9_098_756_793, -6_673_220_549, 12345]], np.int64)
    rq = make_requantizer("q31_double_rounding", 0.02, np.float32(0.001), 40.0, 3,
                          -32768, 32767, accumulator_bits=64)
    got = rq(acc, channel_axis=0)
    q, s = quantize_multiplier(rq.real_multiplier)
    want = [min(max(_wrap(_oracle(int(a), int(q), int(s)) + 3, 32), -32768), 32767)
            for a in acc[0]]
    assert got[0].tolist() == want
    rq32 = make_requantizer("q31_double_rounding", 0.02, np.float32(0.001), 40.0, 3,
                            -32768, 32767)
    with pytest.raises(EmulationError, match="32-bit accumulator"):
        rq32(acc, channel_axis=0)


def test_int64_multiply_rejects_undefined_shift():
    with pytest.raises(EmulationError, match="shift <= 14"):
        multiply_by_quantized_multiplier_int64(np.array([1]), np.array([1 << 30]),
                                               np.array([15]))
