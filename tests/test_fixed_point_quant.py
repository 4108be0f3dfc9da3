"""Ristretto dynamic fixed point against the exact oracle: ties under every rounding mode,
saturation, NaN/Inf, the integer-length rule, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import nonuniform_oracle as ref

from hwsim.devices.spec import DynamicFixedPointNumerics
from hwsim.errors import QuantError
from hwsim.quant.factory import make_quantizer
from hwsim.quant.fixed_point import (
    fixed_point_dequantize,
    fixed_point_qparams,
    fixed_point_quantize,
    ristretto_integer_length,
)

MODES = ["rne", "rhaz", "rhu", "stochastic"]


def _values(fl: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Ties (k + 1/2) * 2^-fl, their float32 neighbours, values at and beyond the saturation
    limits, random values, +-0, subnormals, +-Inf, NaN."""
    step = 2.0 ** -fl
    qmax = 2 ** (bits - 1) - 1
    k = np.arange(-(2 ** (bits - 1)) - 3, qmax + 3)
    if k.size > 600:  # wide formats: both ends plus a random sample of the ties
        k = np.concatenate([k[:50], k[-50:], rng.choice(k, 500, replace=False)])
    ties = ((k + 0.5) * step).astype(np.float32)
    near = np.concatenate([np.nextafter(ties, np.float32(np.inf)),
                           np.nextafter(ties, np.float32(-np.inf))])
    rnd = rng.uniform(-1.5 * qmax * step, 1.5 * qmax * step, 2000).astype(np.float32)
    special = np.array([0.0, -0.0, 1e-45, -1e-40, qmax * step, -(qmax + 1) * step,
                        (qmax + 0.5) * step, -(qmax + 1.5) * step, 1e30, -1e30, np.inf,
                        -np.inf, np.nan], dtype=np.float32)
    return np.concatenate([ties, near, rnd, special])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fl,bits", [(4, 8), (0, 4), (-3, 6), (20, 16), (9, 3)])
def test_codes_match_oracle_with_ties_saturation_and_specials(mode, fl, bits):
    x = _values(fl, bits, np.random.default_rng(abs(fl) * 31 + bits))
    got = fixed_point_quantize(x, fl, bits, mode, seed=7 if mode == "stochastic" else None)
    want = [ref.fixed_point_code(float(v), fl, bits, mode, 7, i) for i, v in enumerate(x)]
    bad = np.flatnonzero(got != np.array(want))
    assert bad.size == 0, [(float(x[i]), int(got[i]), want[i]) for i in bad[:10]]


def test_ristretto_ties_under_each_rounding_mode():
    x = np.array([0.25, -0.25, 0.75, -0.75], dtype=np.float32)  # fl = 1: t = +-0.5, +-1.5
    assert fixed_point_quantize(x, 1, 8, "rne").tolist() == [0, 0, 2, -2]  # GPU rint
    assert fixed_point_quantize(x, 1, 8, "rhaz").tolist() == [1, -1, 2, -2]  # CPU round
    assert fixed_point_quantize(x, 1, 8, "rhu").tolist() == [1, 0, 2, -1]


def test_saturate_nan_and_infinities():
    x = np.array([100.0, -100.0, np.inf, -np.inf, np.nan], dtype=np.float32)
    assert fixed_point_quantize(x, 2, 8).tolist() == [127, -128, 127, -128, 127]
    y = fixed_point_dequantize(np.array([127, -128]), 2, 8)
    assert y.tolist() == [31.75, -32.0]


@pytest.mark.parametrize("m", [1.0, 0.6, 3.0, 2.0 ** -7, 1000.0, 7.9999995, 2.0 ** 40 * 1.5,
                               1.0000001, 0.5 - 1e-8])
def test_integer_length_rule_matches_oracle(m):
    m = float(np.float32(m))
    for rule in ("weight", "activation"):
        fl = 8 - ristretto_integer_length(m, rule)
        assert fl == ref.ristretto_fl(m, 8, rule)
    # weights: il = ceil(log2(m) + 1); activations: il = ceil(log2(m)) (DESIGN.md B5)
    assert ristretto_integer_length(m, "weight") == math.ceil(math.log2(m) + 1)
    assert ristretto_integer_length(m, "activation") == math.ceil(math.log2(m))


def test_calibration_sets_fraction_length_from_max_abs():
    w = make_quantizer(DynamicFixedPointNumerics(bits=8, il_rule="weight",
                                                 calibration={"method": "absmax"}))
    qp = w.calibrate(np.array([0.3, -0.9, 0.5], dtype=np.float32))
    assert (qp.fl, qp.qmin, qp.qmax) == (8 - 1, -128, 127)  # il = ceil(log2 0.9 + 1) = 1
    a = make_quantizer(DynamicFixedPointNumerics(bits=8, il_rule="activation"))
    obs = a.observer().update(np.array([0.0, 3.0], dtype=np.float32))
    obs.update(np.array([-5.0, 1.0], dtype=np.float32))
    assert obs.qparams().fl == 8 - 3  # running max |x| = 5, il = ceil(log2 5) = 3
    x = np.array([1.3, -4.9], dtype=np.float32)
    np.testing.assert_array_equal(a.fake_quant(x, obs.qparams()),
                                  a.dequantize(a.quantize(x, obs.qparams()), obs.qparams()))


def test_bad_inputs_raise():
    q = make_quantizer(DynamicFixedPointNumerics(bits=8, il_rule="weight"))
    with pytest.raises(QuantError, match="all zero"):
        q.calibrate(np.zeros(3, np.float32))
    with pytest.raises(QuantError, match="outside the allowed range"):
        q.dequantize(np.array([128]), fixed_point_qparams(3, 8))
    with pytest.raises(QuantError, match="match the spec"):
        q.quantize(np.ones(2, np.float32), fixed_point_qparams(3, 16))
    with pytest.raises(QuantError, match="seed"):
        fixed_point_quantize(np.ones(2, np.float32), 3, 8, "stochastic")


_float32 = st.floats(width=32, allow_nan=False, allow_infinity=True)


@settings(max_examples=150, deadline=None)
@given(st.lists(_float32, min_size=2, max_size=40), st.integers(-10, 30),
       st.integers(2, 16), st.sampled_from(["rne", "rhaz", "rhu"]))
def test_properties_monotone_bounded_idempotent(xs, fl, bits, mode):
    q = make_quantizer(DynamicFixedPointNumerics(bits=bits, il_rule="weight", rounding=mode))
    qp = fixed_point_qparams(fl, bits)
    x = np.sort(np.array(xs, dtype=np.float32))
    c = q.quantize(x, qp)
    assert np.all(c[1:] >= c[:-1]) and c.min() >= qp.qmin and c.max() <= qp.qmax
    y = q.fake_quant(x, qp)
    np.testing.assert_array_equal(q.fake_quant(y, qp), y)
