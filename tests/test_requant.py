"""Requantization arithmetics against scalar pure-Python oracles (ints, fractions, floats).

The oracles below re-derive each arithmetic from its definition with Python integers and
``fractions.Fraction`` (C truncating division, exact ties) and never import hwsim's kernels.
Runtime agreement (ONNX Runtime, LiteRT) is tested in test_integer_conv_*.py.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from hwsim.emulate.requant import (
    make_requantizer,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_shift_right,
)
from hwsim.errors import EmulationError

I32_MIN, I32_MAX = -(2 ** 31), 2 ** 31 - 1


def _wrap32(v: int) -> int:
    return (v + 2 ** 31) % 2 ** 32 - 2 ** 31


def _round_half_away(f: Fraction) -> int:
    fl = math.floor(abs(f))
    r = fl + 1 if abs(f) - fl >= Fraction(1, 2) else fl
    return r if f >= 0 else -r


def _round_half_even(f: Fraction) -> int:
    fl = math.floor(f)
    d = f - fl
    if d > Fraction(1, 2) or (d == Fraction(1, 2) and fl % 2 == 1):
        return fl + 1
    return fl


def _oracle_quantize_multiplier(m: float) -> tuple[int, int]:
    if m == 0:
        return 0, 0
    frac, exp = math.frexp(m)
    q = _round_half_away(Fraction(frac) * 2 ** 31)
    if q == 2 ** 31:
        q //= 2
        exp += 1
    if exp < -31:
        return 0, 0
    return q, exp


def _oracle_mbqm(x: int, q: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    a = _wrap32(x * 2 ** left)
    if a == I32_MIN and q == I32_MIN:
        high = I32_MAX
    else:
        ab = a * q
        nudge = 2 ** 30 if ab >= 0 else 1 - 2 ** 30
        num = ab + nudge
        high = _wrap32(abs(num) // 2 ** 31 * (1 if num >= 0 else -1))  # C truncation
    mask = 2 ** right - 1
    rem = high & mask
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if rem > threshold else 0)


def _multipliers(rng) -> list[float]:
    ms = [float(v) for v in np.exp(rng.uniform(np.log(1e-9), np.log(300.0), 400))]
    ms += [0.5, 0.25, 1.0, 2.0, 1.5, 0.75, 2.0 ** -31, 2.0 ** -32, 1 - 2 ** -40, 0.0]
    return ms


def test_quantize_multiplier_matches_frexp_oracle():
    ms = _multipliers(np.random.default_rng(0))
    q, s = quantize_multiplier(np.array(ms))
    for m, qi, si in zip(ms, q.tolist(), s.tolist(), strict=True):
        assert (qi, si) == _oracle_quantize_multiplier(m), m


def test_quantize_multiplier_rounds_up_to_two_pow_31_renormalizes():
    m = 1 - 2 ** -40  # q * 2^31 rounds to exactly 2^31
    q, s = quantize_multiplier(m)
    assert (int(q), int(s)) == (2 ** 30, 1)


def test_multiply_by_quantized_multiplier_matches_integer_oracle():
    rng = np.random.default_rng(1)
    ms = _multipliers(rng)
    xs = rng.integers(I32_MIN, I32_MAX, 40, endpoint=True).tolist()
    xs += [0, 1, -1, I32_MIN, I32_MAX, 2 ** 20, -(2 ** 20), 3, -3, 12345, -12345]
    for m in ms:
        q, s = _oracle_quantize_multiplier(m)
        got = multiply_by_quantized_multiplier(np.array(xs), q, s).tolist()
        want = [_oracle_mbqm(x, q, s) for x in xs]
        assert got == want, m


def test_q31_ties_at_half_round_toward_plus_infinity_like_vqrdmulh():
    # M = 0.5 exactly (q31 = 2^30, shift 0): SaturatingRoundingDoublingHighMul's nudge
    # (1 - 2^30 for negative products, C truncating division) sends x/2 ties toward +inf,
    # as ARM's VQRDMULH does; -0.5 -> 0 and -1.5 -> -1
    rq = make_requantizer("q31_double_rounding", 1.0, 1.0, 2.0, 0, -1000, 1000)
    acc = np.array([1, 3, 5, -1, -3, -5, 2, -2])
    assert rq(acc, 0).tolist() == [1, 2, 3, 0, -1, -2, 1, -1]


def test_fp32_multiply_matches_float32_scalar_oracle():
    rng = np.random.default_rng(2)
    for _ in range(60):
        sx, sy = (float(np.float32(v)) for v in rng.uniform(1e-3, 0.1, 2))
        sw = rng.uniform(1e-4, 0.05, 5).astype(np.float32)
        zp = int(rng.integers(-128, 128))
        rq = make_requantizer("fp32_multiply", sx, sw, sy, zp, -128, 127)
        acc = rng.integers(-2 ** 20, 2 ** 20, (3, 5))
        got = rq(acc, channel_axis=1)
        for (i, c), a in np.ndenumerate(acc):
            mult = np.float32(np.float32(np.float32(sx) * sw[c]) / np.float32(sy))
            v = float(np.float32(np.float32(a) * mult))
            v = min(max(v, -128 - zp), 127 - zp)
            assert got[i, c] == round(v) + zp  # Python round: half to even


def test_fp32_multiply_ties_go_to_even():
    rq = make_requantizer("fp32_multiply", 1.0, 1.0, 2.0, 0, -128, 127)
    assert rq(np.array([1, 3, 5, -1, -3, 7]), 0).tolist() == [0, 2, 2, 0, -2, 4]


def test_double_rhaz_matches_fraction_oracle_and_int32_min_rule():
    rng = np.random.default_rng(3)
    for _ in range(60):
        sx, sy = (float(np.float32(v)) for v in rng.uniform(1e-3, 0.1, 2))
        sw = rng.uniform(1e-4, 0.05, 4).astype(np.float32)
        zp = int(rng.integers(-128, 128))
        rq = make_requantizer("double_multiply_rhaz", sx, sw, sy, zp, -128, 127)
        acc = rng.integers(I32_MIN, I32_MAX, (2, 4), endpoint=True) >> int(rng.integers(0, 31))
        got = rq(acc, channel_axis=1)
        for (i, c), a in np.ndenumerate(acc):
            m = float(np.float32(sx)) * float(sw[c]) / float(np.float32(sy))
            r = _round_half_away(Fraction(float(a) * m))
            r = I32_MIN if not I32_MIN <= r <= I32_MAX else r
            assert got[i, c] == min(max(_wrap32(r + zp), -128), 127)
    rq = make_requantizer("double_multiply_rhaz", 1.0, 1.0, 2.0 ** -8, 0, -128, 127)
    assert rq(np.array([2 ** 24, -(2 ** 24), 2 ** 22]), 0).tolist() == [-128, -128, 127]


@pytest.mark.parametrize("rounding", ["rne", "rhaz", "rhu"])
def test_shift_matches_fraction_oracle_with_ties(rounding):
    rnd = {"rne": _round_half_even, "rhaz": _round_half_away,
           "rhu": lambda f: math.floor(f + Fraction(1, 2))}[rounding]
    xs = list(range(-40, 41)) + [2 ** 30, -(2 ** 30) - 7, 12345678, -12345679]
    for n in [-3, 0, 1, 2, 3, 5, 12]:
        got = rounding_shift_right(np.array(xs), n, rounding).tolist()
        assert got == [rnd(Fraction(x, 2 ** n) if n >= 0 else Fraction(x * 2 ** -n))
                       for x in xs], n


def test_shift_requantizer_needs_power_of_two_scales():
    rq = make_requantizer("shift", 2 ** -4, np.array([2 ** -3, 2 ** -5], np.float32), 2 ** -2,
                          0, -128, 127, shift_rounding="rne")
    assert rq.pot_shift.tolist() == [5, 7]
    assert rq(np.array([[48, 192]]), 1).tolist() == [[2, 2]]  # 1.5 -> 2, 1.5 -> 2
    with pytest.raises(EmulationError, match="power-of-two"):
        make_requantizer("shift", 0.1, 0.5, 1.0, 0, -128, 127, shift_rounding="rne")


def test_requantizer_rejects_bad_input():
    with pytest.raises(EmulationError, match="unknown requant"):
        make_requantizer("q15", 1.0, 1.0, 1.0, 0, -128, 127)
    with pytest.raises(EmulationError, match="scale"):
        make_requantizer("fp32_multiply", 0.0, 1.0, 1.0, 0, -128, 127)
    with pytest.raises(EmulationError, match="zero point"):
        make_requantizer("fp32_multiply", 1.0, 1.0, 1.0, 300, -128, 127)
    rq = make_requantizer("q31_double_rounding", 1.0, np.ones(3, np.float32), 1.0, 0, -128, 127)
    with pytest.raises(EmulationError, match="channels"):
        rq(np.zeros((1, 4)), channel_axis=1)
    with pytest.raises(EmulationError, match="int32"):
        rq(np.array([[2 ** 40, 0, 0]]), channel_axis=1)
