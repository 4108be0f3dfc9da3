"""NNIE 8-bit log quantization against the exact oracle; DESIGN.md B2 known answers; the
positive-threshold boundary both ways; NaN/Inf; calibration; properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import nonuniform_oracle as ref

from hwsim.devices.spec import LogNumerics, NotSpecifiedError
from hwsim.errors import QuantError
from hwsim.quant.factory import make_quantizer
from hwsim.quant.log import LogQuantizer, log_dequantize, log_quantize, nnie_log_qparams
from hwsim.quant.qparams import LogQParams


def _spec(**kw) -> LogNumerics:
    kw.setdefault("bits", 8)
    return LogNumerics(**kw)


def _neighbours(v: float, n: int = 2) -> list[float]:
    """float32 values around v: the nearest float32 and n float32 steps either side."""
    c = np.float32(v)
    out = [c]
    up = down = c
    for _ in range(n):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        out += [up, down]
    return [float(t) for t in out]


def _test_values(z: int, rng: np.random.Generator) -> np.ndarray:
    """Every decision boundary of this z (zero thresholds, each k <-> k+1 boundary
    2^((2n+1+2z)/32)) +-2 float32 steps, both signs, plus random values over and beyond the
    code range, +-0, float32 subnormals, +-Inf and NaN."""
    vals: list[float] = []
    vals += _neighbours(2.0 ** ((z - 16) / 16)) + _neighbours(-(2.0 ** ((z - 15) / 16)))
    for n in range(-20, 130):
        b = 2.0 ** ((2 * n + 1 + 2 * z) / 32)
        vals += _neighbours(b) + _neighbours(-b)
    top = 2.0 ** ((127 + z) / 16)
    vals += list(rng.uniform(-4 * top, 4 * top, 1500))
    vals += list(np.exp(rng.uniform(np.log(top) - 15, np.log(top) + 2, 1500))
                 * rng.choice([-1, 1], 1500))
    vals += [0.0, -0.0, 1e-45, -1e-45, 1e-40, math.inf, -math.inf, math.nan, top, -top]
    return np.array(vals, dtype=np.float32)


@pytest.mark.parametrize("clip", [1.0, 0.37, 6.0, 2.0 ** (-1 / 16), 1234.5, 3e-7])
@pytest.mark.parametrize("inclusive", [True, False])
def test_codes_match_exact_oracle_at_every_boundary(clip, inclusive):
    qp = nnie_log_qparams(clip)
    assert qp.z == ref.log_z(clip)
    x = _test_values(qp.z, np.random.default_rng(int(clip * 1000) + inclusive))
    got = log_quantize(x, qp.z, inclusive=inclusive)
    want = np.array([ref.log_code(float(v), qp.z, 16, inclusive) for v in x])
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(float(x[i]), int(got[i]), int(want[i])) for i in bad[:10]]


def test_z_matches_exact_rounding_for_many_clips():
    rng = np.random.default_rng(5)
    clips = list(np.exp(rng.uniform(-60, 60, 400)).astype(np.float32))
    for n in range(-300, 300, 7):  # around the rounding boundaries of 16*log2(c)
        clips += _neighbours(2.0 ** ((2 * n + 1) / 32), 1)
    clips += [2.0 ** k for k in range(-100, 100, 9)]
    for c in clips:
        assert nnie_log_qparams(float(c)).z == ref.log_z(float(c)), c


@pytest.mark.parametrize("z", [-127, -128, -300, 0, 200, -1900])
def test_dequantize_all_256_codes_matches_correctly_rounded_values(z):
    codes = np.arange(256)
    got = log_dequantize(codes, z)
    want = np.array([ref.log_value(int(c), z) for c in codes], dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_design_b2_known_answer_clip_one():
    qp = nnie_log_qparams(1.0)
    assert qp.z == -127
    vals = log_dequantize(np.array([0x00, 0x7F, 0x81, 0xFF, 0x80]), qp.z)
    assert vals[0] == pytest.approx(0.0040792, abs=5e-8)  # smallest positive
    assert vals[1] == 1.0 and vals[3] == -1.0 and vals[4] == 0.0
    assert vals[2] == pytest.approx(-0.0042598, abs=5e-8)  # smallest negative magnitude
    thr_pos, thr_neg = 2.0 ** (-143 / 16), 2.0 ** (-142 / 16)
    assert thr_pos == pytest.approx(0.0020396, abs=5e-8)
    assert thr_neg == pytest.approx(0.0021299, abs=5e-8)
    above, below = _neighbours(thr_pos, 1)[1], _neighbours(thr_pos, 1)[2]
    nabove, nbelow = -_neighbours(thr_neg, 1)[2], -_neighbours(thr_neg, 1)[1]
    x = np.array([above, below, nabove, nbelow, 1.0, 5.0], dtype=np.float32)
    assert log_quantize(x, qp.z).tolist() == [0x00, 0x80, 0x80, 0x81, 0x7F, 0x7F]


def test_positive_threshold_inclusive_and_exclusive_at_an_exact_threshold():
    # clip 2^(-1/16): z = -1 - 127 = -128, so the positive threshold is exactly 2^-9
    qp = nnie_log_qparams(2.0 ** (-1 / 16))
    assert qp.z == -128
    x = np.array([2.0 ** -9], dtype=np.float32)
    inc = LogQuantizer(_spec(positive_threshold="inclusive"))
    exc = LogQuantizer(_spec(positive_threshold="exclusive"))
    assert inc.quantize(x, qp).tolist() == [0x00]  # docs: positive branch, smallest value
    assert exc.quantize(x, qp).tolist() == [0x80]  # strict: zero
    assert inc.fake_quant(x, qp)[0] == np.float32(2.0 ** (-128 / 16))


def test_nan_and_infinities_have_defined_codes():
    qp = nnie_log_qparams(1.0)
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)
    assert log_quantize(x, qp.z).tolist() == [0x80, 0x7F, 0xFF, 0x80, 0x80]


@pytest.mark.parametrize("rounding", ["rne", "rhaz", "rhu"])
def test_deterministic_roundings_agree_since_log_ties_cannot_occur(rounding):
    qp = nnie_log_qparams(3.0)
    x = _test_values(qp.z, np.random.default_rng(9))
    np.testing.assert_array_equal(log_quantize(x, qp.z, rounding=rounding),
                                  log_quantize(x, qp.z))


def test_stochastic_rounding_matches_oracle_and_is_reproducible():
    qp = nnie_log_qparams(2.0)
    x = _test_values(qp.z, np.random.default_rng(11))
    got = log_quantize(x, qp.z, rounding="stochastic", seed=42)
    want = [ref.log_code(float(v), qp.z, 16, True, "stochastic", 42, i) for i, v in enumerate(x)]
    assert got.tolist() == want
    other = log_quantize(x, qp.z, rounding="stochastic", seed=43)
    assert np.any(other != got)
    with pytest.raises(QuantError, match="seed"):
        log_quantize(x, qp.z, rounding="stochastic")


def test_calibration_methods():
    x1 = np.array([-3.0, 0.5, 2.0], dtype=np.float32)
    x2 = np.array([-1.0, 4.0], dtype=np.float32)
    w = make_quantizer(_spec(calibration={"method": "absmax"}))
    assert w.calibrate(x1).clip == 3.0
    mm = make_quantizer(_spec(calibration={"method": "minmax"}))
    assert mm.observer().update(x1).update(x2).qparams().clip == 4.0
    ema = make_quantizer(_spec(calibration={"method": "ema_minmax", "ema_decay": 0.5}))
    obs = ema.observer().update(x1).update(x2)
    # batch 1: (lo, hi) = (-3, 2) -> 3; batch 2: lo = -2, hi = 3 -> 3; running max 3
    assert obs.qparams().clip == 3.0
    obs.update(np.array([0.0, 8.0], dtype=np.float32))  # lo -1, hi 5.5 -> 5.5
    assert obs.qparams() == nnie_log_qparams(5.5)


def test_bad_calibration_and_qparams_raise():
    q = make_quantizer(_spec())
    with pytest.raises(QuantError, match="NaN or Inf"):
        q.calibrate(np.array([1.0, np.nan], dtype=np.float32))
    with pytest.raises(QuantError, match="all zero"):
        q.calibrate(np.zeros(4, np.float32))
    with pytest.raises(QuantError, match="empty"):
        q.calibrate(np.zeros(0, np.float32))
    with pytest.raises(QuantError, match="percentile"):
        make_quantizer(_spec(calibration={"method": "percentile", "percentile": 99.9}))
    with pytest.raises(QuantError, match="float32"):
        nnie_log_qparams(3.4e38)
    with pytest.raises(QuantError, match="range"):
        q.dequantize(np.array([256]), nnie_log_qparams(1.0))
    with pytest.raises(NotSpecifiedError):
        LogNumerics(bits=16)
    with pytest.raises(QuantError, match="levels_per_octave 8"):
        q.quantize(np.ones(2, np.float32), LogQParams(clip=1.0, z=-127, levels_per_octave=8))
    with pytest.raises(QuantError, match="LogQParams"):
        q.quantize(np.ones(2, np.float32), nnie_log_qparams(1.0).to_dict())


_float32 = st.floats(width=32, allow_nan=False, allow_infinity=True)


@settings(max_examples=150, deadline=None)
@given(st.lists(_float32, min_size=2, max_size=40),
       st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
def test_properties_monotone_bounded_idempotent(xs, clip):
    q = make_quantizer(_spec())
    qp = nnie_log_qparams(clip)
    x = np.sort(np.array(xs, dtype=np.float32))
    y = q.fake_quant(x, qp)
    assert np.all(y[1:] >= y[:-1])
    top = log_dequantize(np.array([0x7F]), qp.z)[0]
    assert np.all(np.abs(y) <= top)
    np.testing.assert_array_equal(q.fake_quant(y, qp), y)
    np.testing.assert_array_equal(q.quantize(y, qp), q.quantize(x, qp))
