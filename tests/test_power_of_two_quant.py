"""Ristretto power-of-two weights against the exact oracle (rounding in the log domain decided
by |x|^2 against 2^(2k+1)); zero, NaN, Inf; codes; properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import nonuniform_oracle as ref

from hwsim.devices.spec import PowerOfTwoNumerics
from hwsim.errors import QuantError
from hwsim.quant.factory import make_quantizer
from hwsim.quant.power_of_two import power_of_two_dequantize, power_of_two_quantize
from hwsim.quant.qparams import PowerOfTwoQParams

MODES = ["rne", "rhaz", "rhu", "stochastic"]


def _values(rng: np.random.Generator) -> np.ndarray:
    """float32 neighbours of every 2^(k+1/2) and 2^k over and beyond the exponent range,
    random magnitudes, +-0, subnormals, +-Inf, NaN."""
    vals = []
    for k in range(-140, 20):
        for b in (2.0 ** (k + 0.5), 2.0 ** k):
            c = np.float32(b)
            vals += [c, np.nextafter(c, np.float32(np.inf)), np.nextafter(c, np.float32(0))]
    vals = np.array(vals, dtype=np.float32)
    rnd = np.exp(rng.uniform(-20, 3, 2000)).astype(np.float32)
    special = np.array([0.0, 1e-45, 1e-39, np.inf, np.nan, 3e38], np.float32)
    v = np.concatenate([vals, rnd, special])
    return np.concatenate([v, -v])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("exp_min,exp_max,bits", [(-8, -1, 4), (-20, 5, 6), (0, 0, 2)])
def test_codes_match_oracle(mode, exp_min, exp_max, bits):
    x = _values(np.random.default_rng(bits))
    seed = 9 if mode == "stochastic" else None
    got = power_of_two_quantize(x, exp_min, exp_max, bits, mode, seed)
    want = [ref.power_of_two_code(float(v), exp_min, exp_max, bits, mode, 9, i)
            for i, v in enumerate(x)]
    bad = np.flatnonzero(got != np.array(want))
    assert bad.size == 0, [(float(x[i]), int(got[i]), want[i]) for i in bad[:10]]
    vals = power_of_two_dequantize(got, exp_min, exp_max, bits)
    ref_vals = [ref.power_of_two_value(int(c), exp_min, bits) for c in got]
    np.testing.assert_array_equal(vals, np.array(ref_vals, dtype=np.float32))


def test_ristretto_defaults_known_answers():
    q = make_quantizer(PowerOfTwoNumerics(bits=4))
    qp = q.calibrate(np.ones(3, np.float32))
    assert (qp.exp_min, qp.exp_max) == (-8, -1)
    x = np.array([0.3, -0.3, 0.0, -0.0, 0.7071067, 0.7071068, 1e-9, 5.0, np.inf, -np.inf,
                  np.nan, 0.04, -0.1767767, -0.1767766], dtype=np.float32)
    y = q.fake_quant(x, qp)
    # log2 0.3 = -1.74 -> -2; 0 -> +2^-8; log2 0.04 = -4.64 -> -5; 2^-2.5 = 0.17677669...
    assert y.tolist() == [0.25, -0.25, 2.0 ** -8, 2.0 ** -8, 0.5, 0.5, 2.0 ** -8, 0.5, 0.5,
                          -0.5, -0.5, 2.0 ** -5, -0.25, -0.125]
    assert q.quantize(x[:2], qp).tolist() == [6, 8 | 6]  # (sign << 3) | (e - exp_min)


def test_bad_codes_and_ranges_raise():
    with pytest.raises(QuantError, match="offset in 0..7"):
        power_of_two_dequantize(np.array([0, 8 | 7, 16]), -8, -1, 4)
    with pytest.raises(QuantError, match="do not fit"):
        power_of_two_quantize(np.ones(2, np.float32), -8, 0, 4)
    q = make_quantizer(PowerOfTwoNumerics(bits=4))
    with pytest.raises(QuantError, match="PowerOfTwoQParams"):
        q.quantize(np.ones(2, np.float32), {"exp_min": -8})
    with pytest.raises(QuantError, match="normal float32"):
        q.quantize(np.ones(2, np.float32), PowerOfTwoQParams(exp_min=-130, exp_max=-127))


_float32 = st.floats(width=32, allow_nan=False, allow_infinity=True)


@settings(max_examples=150, deadline=None)
@given(st.lists(_float32, min_size=2, max_size=40), st.sampled_from(["rne", "rhaz", "rhu"]))
def test_properties_monotone_bounded_idempotent(xs, mode):
    q = make_quantizer(PowerOfTwoNumerics(bits=5, exp_min=-10, exp_max=3, rounding=mode))
    qp = q.calibrate(np.zeros(1, np.float32))
    x = np.sort(np.array(xs, dtype=np.float32))
    y = q.fake_quant(x, qp)
    assert np.all(y[1:] >= y[:-1])
    assert np.all((np.abs(y) >= 2.0 ** -10) & (np.abs(y) <= 8.0))
    np.testing.assert_array_equal(q.fake_quant(y, qp), y)
