"""FP16 conversion (IEEE, flush with both tininess rules, saturation, NaN policies) against the
exact-rational oracle; known answers of DESIGN.md B4; properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import nonuniform_oracle as ref

from hwsim.devices.spec import FloatNumerics
from hwsim.errors import QuantError
from hwsim.quant.factory import make_quantizer
from hwsim.quant.fp16 import Fp16Quantizer, fp16_round, fp16_widen
from hwsim.quant.qparams import FloatQParams

MODES = [  # (subnormals, tininess, overflow, nan, signed_zero_on_flush)
    ("keep", None, "inf", "propagate", True),
    ("flush", "before_rounding", "inf", "propagate", True),
    ("flush", "after_rounding", "inf", "propagate", True),
    ("flush", "after_rounding", "saturate", "zero", False),
    ("keep", None, "saturate", "zero", True),
]


def _bits16(x: np.ndarray, mode) -> np.ndarray:
    return fp16_round(x, *mode).view(np.uint16)


def _f32(v: float) -> np.ndarray:
    return np.array([v], dtype=np.float32)


def _test_bit_patterns() -> np.ndarray:
    """Random float32 patterns plus the neighbourhoods of every rounding boundary that matters:
    midpoints between fp16 neighbours (ties) +-1 ulp, the subnormal/normal border, the
    overflow border, zeros, infinities, NaNs and float32 subnormals."""
    rng = np.random.default_rng(1234)
    parts = [rng.integers(0, 1 << 32, 4000, dtype=np.uint64).astype(np.uint32)]
    h = np.concatenate([rng.integers(0, 0x7C00, 1000), np.arange(0, 0x0420),
                        np.arange(0x7B00, 0x7C00)]).astype(np.uint16)
    lo = h.view(np.float16).astype(np.float32)
    hi = (h + 1).astype(np.uint16).view(np.float16).astype(np.float32)
    mid = ((lo.astype(np.float64) + hi.astype(np.float64)) / 2).astype(np.float32)  # exact
    midbits = mid.view(np.uint32)
    for d in (-1, 0, 1):
        parts.append((midbits.astype(np.int64) + d).astype(np.uint32))
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
                        0x7F800001, 0xFFBFFFFF, 1, 0x807FFFFF, 0x477FEFFF, 0x477FF000,
                        0xC77FF000, 0x38800000, 0x387FFFFF, 0x387FF000, 0x387FE000,
                        0x33000000, 0x33400000, 0x33000001], dtype=np.uint32)
    parts.append(special)
    u = np.concatenate(parts)
    return np.concatenate([u, u ^ np.uint32(0x80000000)])


@pytest.mark.parametrize("mode", MODES)
def test_round_matches_exact_oracle_on_ties_edges_and_specials(mode):
    u = _test_bit_patterns()
    got = _bits16(u.view(np.float32), mode)
    sub, tin, ovf, nan, sz = mode
    want = np.array([ref.fp16_bits(int(b), sub, tin, ovf, nan, sz) for b in u], dtype=np.uint16)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(u[i]), hex(got[i]), hex(want[i])) for i in bad[:10]]


@pytest.mark.parametrize("mode", MODES)
def test_widen_matches_oracle_for_every_fp16_pattern(mode):
    sub, _, ovf, nan, sz = mode
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = fp16_widen(h.view(np.float16), sub, ovf, nan, sz).view(np.uint32)
    want = np.array([ref.fp16_widen_bits(int(b), sub, ovf, nan, sz) for b in h],
                    dtype=np.uint32)
    assert np.count_nonzero(got != want) == 0


def test_ieee_mode_equals_numpy_astype_except_nan_payload_quieting():
    rng = np.random.default_rng(7)
    u = rng.integers(0, 1 << 32, 400_000, dtype=np.uint64).astype(np.uint32)
    x = u.view(np.float32)
    got = fp16_round(x).view(np.uint16)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    finite = ~np.isnan(x)
    assert np.count_nonzero(got[finite] != want[finite]) == 0
    assert np.all(np.isnan(got[~finite].view(np.float16)))
    assert np.all((got[~finite] & 0x8000) == (want[~finite] & 0x8000))  # sign kept
    assert np.all(got[~finite] & 0x0200)  # quiet bit set


@pytest.mark.parametrize("value,ieee", [
    (65519.99, 0x7BFF),            # rounds down to 65504
    (65520.0, 0x7C00),             # tie at the overflow border -> inf
    (2.0 ** -25, 0x0000),          # tie between 0 and 2^-24 -> even (0)
    (3 * 2.0 ** -26, 0x0001),      # 1.5 * 2^-25 -> 2^-24
    (2.0 ** -14 * (1 - 2.0 ** -12), 0x0400),  # rounds up to the smallest normal
])
def test_design_b4_known_answers_ieee(value, ieee):
    assert int(_bits16(_f32(value), MODES[0])[0]) == ieee
    assert int(_bits16(_f32(-value), MODES[0])[0]) == ieee | 0x8000


def test_tininess_before_and_after_rounding_known_answer():
    x = _f32(2.0 ** -14 * (1 - 2.0 ** -12))
    assert int(_bits16(x, MODES[1])[0]) == 0x0000       # before: tiny -> flushed
    assert int(_bits16(x, MODES[2])[0]) == 0x0400       # after: rounds to 2^-14, kept
    assert int(_bits16(-x, MODES[1])[0]) == 0x8000      # sign of the flushed zero kept
    assert int(_bits16(-x, MODES[3])[0]) == 0x8400      # after: -2^-14
    tiny = _f32(-(2.0 ** -15))
    assert int(_bits16(tiny, MODES[2])[0]) == 0x8000
    assert int(_bits16(tiny, MODES[3])[0]) == 0x0000    # signed_zero_on_flush: false -> +0


def test_after_rounding_flushes_values_ieee_would_round_up_to_min_normal():
    # x in [2^-14 - 2^-25, 2^-14 - 2^-26): IEEE (subnormal grid) gives 2^-14, but rounded to 11
    # bits with an unbounded exponent it is 2^-14 - 2^-25 < 2^-14: tiny, so it flushes.
    x = _f32(2.0 ** -14 - 2.0 ** -25)
    assert int(_bits16(x, MODES[0])[0]) == 0x0400
    assert int(_bits16(x, MODES[2])[0]) == 0x0000


def test_flush_mode_reads_subnormal_inputs_and_codes_as_zero():
    assert int(_bits16(_f32(2.0 ** -20), MODES[0])[0]) == 0x0010  # IEEE keeps the subnormal
    assert int(_bits16(_f32(2.0 ** -20), MODES[1])[0]) == 0x0000
    h = np.array([0x0001, 0x83FF], dtype=np.uint16).view(np.float16)
    assert fp16_widen(h, "flush").view(np.uint32).tolist() == [0, 0x80000000]
    assert fp16_widen(h).tolist() == [2.0 ** -24, -(1023 * 2.0 ** -24)]


def test_saturation_mode_overflow_and_nan():
    x = np.array([65520.0, -1e30, np.inf, -np.inf, np.nan], dtype=np.float32)
    got = fp16_round(x, overflow="saturate", nan="zero").astype(np.float32)
    assert got.tolist() == [65504.0, -65504.0, 65504.0, -65504.0, 0.0]
    assert np.signbit(got[-1]) == np.False_
    ieee = fp16_round(x)
    assert np.isinf(ieee[:4]).all() and np.isnan(ieee[4])


def _spec(mode) -> FloatNumerics:
    sub, tin, ovf, nan, sz = mode
    return FloatNumerics(bits=16, subnormals=sub, tininess=tin, overflow=ovf, nan=nan,
                         signed_zero_on_flush=sz)


@pytest.mark.parametrize("mode", MODES)
def test_quantizer_api_uses_spec_options(mode):
    qz = make_quantizer(_spec(mode))
    assert isinstance(qz, Fp16Quantizer)
    x = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32) * 1e-4
    qp = qz.calibrate(x)
    codes = qz.quantize(x, qp)
    assert codes.dtype == np.float16 and codes.shape == x.shape
    np.testing.assert_array_equal(codes.view(np.uint16), _bits16(x, mode).reshape(x.shape))
    y = qz.fake_quant(x, qp)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.view(np.uint32), qz.dequantize(codes, qp).view(np.uint32))


def test_bad_inputs_raise_clear_errors():
    qz = make_quantizer(_spec(MODES[0]))
    with pytest.raises(QuantError, match="float16"):
        qz.dequantize(np.zeros(3, np.int64), FloatQParams())
    with pytest.raises(QuantError, match="tininess"):
        fp16_round(np.zeros(2, np.float32), subnormals="flush")
    with pytest.raises(QuantError, match="dtype"):
        fp16_round(np.array(["a"]))
    with pytest.raises(QuantError, match="context"):
        qz.calibrate(np.zeros(2, np.float32), role="weight")


_float32 = st.floats(width=32, allow_nan=False, allow_infinity=True)


@settings(max_examples=120, deadline=None)
@given(st.lists(_float32, min_size=2, max_size=40), st.sampled_from(range(len(MODES))))
def test_properties_monotone_bounded_idempotent(xs, idx):
    mode = MODES[idx]
    qz = make_quantizer(_spec(mode))
    qp = FloatQParams()
    x = np.sort(np.array(xs, dtype=np.float32))
    y = qz.fake_quant(x, qp)
    assert np.all(y[1:] >= y[:-1])  # monotone (non-decreasing)
    if mode[2] == "saturate":
        assert np.all(np.abs(y) <= 65504.0)
    np.testing.assert_array_equal(qz.fake_quant(y, qp).view(np.uint32), y.view(np.uint32))
