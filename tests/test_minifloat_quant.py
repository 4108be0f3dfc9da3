"""Ristretto minifloat against the value-based oracle: mantissa ties per rounding mode, carries,
underflow on the unrounded exponent, saturation, NaN/Inf, exp_bits rule, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import nonuniform_oracle as ref

from hwsim.devices.spec import MinifloatNumerics
from hwsim.errors import QuantError
from hwsim.quant.factory import make_quantizer
from hwsim.quant.minifloat import (
    minifloat_dequantize,
    minifloat_qparams,
    minifloat_quantize,
    minifloat_zero_code,
    ristretto_exp_bits,
)

MODES = ["rne", "rhaz", "rhu", "stochastic"]
FORMATS = [(4, 3), (5, 10), (2, 1), (7, 8), (3, 23)]


def _values(e: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Mantissa ties and their neighbours in every binade, the underflow and saturation
    borders, random values over the whole range, +-0, subnormals, +-Inf, NaN."""
    bias = 2 ** (e - 1) - 1
    top = 2 ** e - 1 - bias
    vals = []
    for E in range(-bias - 2, top + 2):
        f = rng.integers(0, 2 ** m, 12)
        ties = ((1 + (f + 0.5) / 2 ** m) * 2.0 ** E).astype(np.float32)
        vals += [ties, np.nextafter(ties, np.float32(np.inf)),
                 np.nextafter(ties, np.float32(-np.inf))]
        edge = np.float32(2.0 ** E)
        vals.append(np.array([edge, np.nextafter(edge, np.float32(0)),
                              np.float32((2 - 2.0 ** -(m + 1)) * 2.0 ** E)], np.float32))
    mx = (2 - 2.0 ** -m) * 2.0 ** top
    vals.append(np.exp(rng.uniform(np.log(2.0 ** -bias) - 3, np.log(mx) + 3, 1500))
                .astype(np.float32))
    vals.append(np.array([0.0, 1e-45, 1e-39, mx, np.inf, -np.inf, np.nan, 3e38], np.float32))
    v = np.concatenate(vals)
    return np.concatenate([v, -v])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("e,m", FORMATS)
def test_codes_match_oracle(mode, e, m):
    x = _values(e, m, np.random.default_rng(e * 100 + m))
    seed = 5 if mode == "stochastic" else None
    got = minifloat_quantize(x, e, 1 + e + m, mode, seed)
    want = [ref.minifloat_code(float(v), e, m, mode, 5, i) for i, v in enumerate(x)]
    bad = np.flatnonzero(got != np.array(want))
    assert bad.size == 0, [(float(x[i]), int(got[i]), want[i]) for i in bad[:10]]


@pytest.mark.parametrize("e,m", FORMATS[:4])
def test_dequantize_every_code_matches_oracle(e, m):
    bits = 1 + e + m
    codes = np.arange((1 << bits) + 1)
    got = minifloat_dequantize(codes, e, bits)
    want = np.array([ref.minifloat_value(int(c), e, m) for c in codes], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def test_known_answers_ties_carry_underflow_saturation():
    # e4m3: bias 7, values (1 + f/8) * 2^(E-7), E = 0..15; max (2 - 1/8) * 2^8 = 480
    x = np.array([1 + 1 / 16, 1 + 3 / 16, 2 - 1 / 16, 2.0 ** -7, 2.0 ** -7 * 0.999, 1000.0,
                  -np.inf, np.nan, -0.0], dtype=np.float32)
    rne = minifloat_dequantize(minifloat_quantize(x, 4, 8, "rne"), 4, 8)
    rhaz = minifloat_dequantize(minifloat_quantize(x, 4, 8, "rhaz"), 4, 8)
    assert rne.tolist() == [1.0, 1.25, 2.0, 2.0 ** -7, 0.0, 480.0, -480.0, 480.0, 0.0]
    assert rhaz.tolist() == [1.125, 1.25, 2.0, 2.0 ** -7, 0.0, 480.0, -480.0, 480.0, 0.0]
    # a carry out of the top binade saturates (Ristretto would produce 512, which has no code)
    assert minifloat_dequantize(minifloat_quantize(np.float32(500.0), 4, 8), 4, 8) == 480.0
    assert int(minifloat_quantize(np.float32(0.0), 4, 8)) == minifloat_zero_code(
        minifloat_qparams(4, 8)) == 256


@pytest.mark.parametrize("mx", [0.5, 1.9, 2.0, 511.0, 512.0, 513.0, 2.0 ** 17,
                                2.0 ** 17 * 1.0000001, 2.0 ** 33, 1e19, 2.0 ** 65])
def test_exp_bits_rule_matches_oracle(mx):
    mx = float(np.float32(mx))
    assert ristretto_exp_bits(mx) == ref.minifloat_exp_bits(mx)


def test_auto_calibration_and_errors():
    q = make_quantizer(MinifloatNumerics(bits=8))
    qp = q.calibrate(np.array([-3.0, 1000.0], dtype=np.float32))
    assert (qp.exp_bits, qp.mant_bits) == (5, 2)
    fixed = make_quantizer(MinifloatNumerics(bits=16, exp_bits=5))
    assert fixed.calibrate(np.zeros(2, np.float32)).mant_bits == 10
    with pytest.raises(QuantError, match="exp_bits 8"):
        q.calibrate(np.array([1e30], dtype=np.float32))
    with pytest.raises(QuantError, match="mantissa bits"):
        minifloat_qparams(4, 5)
    with pytest.raises(QuantError, match="describe 16 bits"):
        q.quantize(np.ones(2, np.float32), minifloat_qparams(5, 16))
    with pytest.raises(QuantError, match="outside the allowed range"):
        q.dequantize(np.array([257]), qp)


_float32 = st.floats(width=32, allow_nan=False, allow_infinity=True)


@settings(max_examples=150, deadline=None)
@given(st.lists(_float32, min_size=2, max_size=40), st.sampled_from(FORMATS),
       st.sampled_from(["rne", "rhaz", "rhu"]))
def test_properties_monotone_bounded_idempotent(xs, fmt, mode):
    e, m = fmt
    bits = 1 + e + m
    q = make_quantizer(MinifloatNumerics(bits=bits, exp_bits=e, rounding=mode))
    qp = minifloat_qparams(e, bits)
    x = np.sort(np.array(xs, dtype=np.float32))
    y = q.fake_quant(x, qp)
    assert np.all(y[1:] >= y[:-1])
    assert np.all(np.abs(y) <= (2 - 2.0 ** -m) * 2.0 ** (2 ** (e - 1)))
    np.testing.assert_array_equal(q.fake_quant(y, qp), y)
