"""Uniform affine quantization: known answers, bit-exactness against an exact-arithmetic oracle
and against real runtimes (ONNX Runtime, PyTorch), properties, and error handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from oracles import uniform_oracle as oracle

import hwsim
from hwsim.devices.spec import UniformNumerics
from hwsim.errors import QuantError
from hwsim.quant.qparams import UniformQParams
from hwsim.quant.uniform import UniformQuantizer, qmin_qmax, uniform_qparams

MODES = {"rne": oracle.RNE, "rhaz": oracle.RHAZ, "rhu": oracle.RHU,
         "stochastic": oracle.STOCHASTIC}
F32 = np.float32


def numerics(**kw) -> UniformNumerics:
    base = {"bits": 8, "signed": True, "symmetric": True}
    base.update(kw)
    if base.get("rounding") == "stochastic" and "seed" not in base:
        base["seed"] = 1234
    return UniformNumerics(**base)


def hard_values(rng: np.random.Generator, scale: float, qmin: int, qmax: int,
                n_random: int = 120) -> np.ndarray:
    """float32 values with exact and near ties, NaN, +-Inf, subnormals, +-0, values at and
    beyond the code range, and random values."""
    s = float(scale)
    k = rng.integers(qmin - 2, qmax + 2, size=40).astype(np.float64)
    vals = [
        (k + 0.5) * s,                        # near ties (exact ties when s is a power of two)
        (k - 0.5) * s,
        k * s,                                # grid points
        np.array([qmin * s, qmax * s, (qmin - 0.5) * s, (qmax + 0.5) * s,
                  (qmin - 7) * s, (qmax + 7) * s, 3e38, -3e38, 1e-40, -1e-40, 1.4e-45,
                  -1.4e-45, 0.0, -0.0, np.inf, -np.inf, np.nan, np.nan, 0.5 * s, -0.5 * s,
                  1.5 * s, -1.5 * s, 2.5 * s, -2.5 * s]),
        rng.uniform(qmin - 3, qmax + 3, size=n_random) * s,
    ]
    x = np.concatenate(vals).astype(F32)
    return x[rng.permutation(x.size)]


# --- code ranges and qparams ---------------------------------------------------------------------

def test_qmin_qmax_cover_signed_unsigned_and_narrow_range():
    assert qmin_qmax(8, True) == (-128, 127)
    assert qmin_qmax(8, True, narrow_range=True) == (-127, 127)
    assert qmin_qmax(8, False) == (0, 255)
    assert qmin_qmax(8, False, narrow_range=True) == (1, 255)
    assert qmin_qmax(2, True) == (-2, 1)
    assert qmin_qmax(16, False) == (0, 65535)
    assert qmin_qmax(32, True) == (-(2 ** 31), 2 ** 31 - 1)
    with pytest.raises(QuantError, match="2..48"):
        qmin_qmax(1, True)


def test_snpe_tf_known_answer_from_design_b3():
    qz = UniformQuantizer(numerics(signed=False, symmetric=False, scale_rule="snpe_tf",
                                   min_range=0.01, rounding="rhaz", zero_point_rounding="rhaz",
                                   zero_point_add="before_rounding"))
    x = np.array([-1.8, -1.0, 0.0, 0.5], dtype=F32)
    qp = qz.calibrate(x)
    assert qp.scale == F32(2.3 / 255)
    assert round(float(qp.scale), 7) == 0.0090196
    assert int(qp.zero_point) == 200
    assert round(qp.clip_min, 6) == -1.803922
    assert round(qp.clip_max, 6) == 0.496078
    assert qz.quantize(x, qp).tolist() == [0, 89, 200, 255]
    delta, zero, new_min, new_max = oracle.snpe_tf(float(x[0]), float(x[3]), 8, 0.01)
    assert (F32(delta), zero, new_min, new_max) == (qp.scale, qp.zero_point, qp.clip_min,
                                                    qp.clip_max)


def test_snpe_tf_min_range_widens_a_tiny_range():
    qp = uniform_qparams(0.0, 0.001, bits=8, signed=False, symmetric=False,
                         scale_rule="snpe_tf", min_range=0.01, zero_point_rounding="rhaz")
    assert qp.scale == F32(0.01 / 255) and int(qp.zero_point) == 0
    assert qp.clip_max == pytest.approx(0.01)


def test_tensorrt_scale_is_amax_over_127_and_ties_round_to_even():
    dev = hwsim.load_device("tensorrt")
    qz = dev.quantizer("weight", "int8")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4, 3, 3)).astype(F32)
    qp = qz.calibrate(w)
    amax = np.abs(w).reshape(6, -1).max(axis=1)
    expected = [oracle.standard_symmetric(float(a), 127) for a in amax]
    assert qp.scale.tolist() == expected
    assert qp.zero_point.tolist() == [0] * 6 and qp.axis == 0
    # exact ties under a power-of-two scale: RNE sends 2.5 -> 2, 3.5 -> 4, -2.5 -> -2
    tie_qz = UniformQuantizer(numerics(rounding="rne", narrow_range=True))
    qp2 = UniformQParams(scale=F32(0.25), zero_point=0, qmin=-127, qmax=127)
    x = np.array([2.5, 3.5, -2.5, -3.5, 0.5, -0.5], dtype=F32) * F32(0.25)
    assert tie_qz.quantize(x, qp2).tolist() == [2, 4, -2, -4, 0, 0]
    assert tie_qz.quantize(np.array([-1e9], F32), qp2).tolist() == [-127]


@pytest.mark.parametrize(("rounding", "expected"), [
    ("rhaz", [3, -3, 1, -1, 4, -4]),
    ("rhu", [3, -2, 1, 0, 4, -3]),
])
def test_vitis_power_of_two_ties_under_rhaz_and_rhu(rounding, expected):
    qz = UniformQuantizer(numerics(scale_type="power_of_two", scale_rule="pow2_lsq",
                                   pow2_search_steps=5, narrow_range=True, rounding=rounding))
    s = F32(2.0 ** -4)
    qp = UniformQParams(scale=s, zero_point=0, qmin=-127, qmax=127)
    x = np.array([2.5, -2.5, 0.5, -0.5, 3.5, -3.5], dtype=F32) * s
    assert qz.quantize(x, qp).tolist() == expected


def test_pow2_lsq_search_matches_exact_oracle():
    rng = np.random.default_rng(3)
    qz = UniformQuantizer(numerics(scale_type="power_of_two", scale_rule="pow2_lsq",
                                   pow2_search_steps=5, narrow_range=True, rounding="rhaz"))
    for trial in range(6):
        x = (rng.standard_t(3, size=300) * rng.uniform(0.01, 10)).astype(F32)
        if trial == 0:
            x[0] = F32(127 * 2.0 ** -3)  # amax exactly qmax * 2^-fp: fp0 boundary
        qp = qz.calibrate(x)
        fp = oracle.pow2_fp(x, -127, 127, 5, oracle.RHAZ)
        assert float(qp.scale) == 2.0 ** -fp, trial


def test_pow2_lsq_per_channel_searches_each_channel():
    rng = np.random.default_rng(5)
    qz = UniformQuantizer(numerics(scale_type="power_of_two", scale_rule="pow2_lsq",
                                   pow2_search_steps=5, narrow_range=True,
                                   granularity="per_channel", axis=1))
    x = (rng.standard_normal((20, 3, 7)) * np.array([0.1, 1.0, 30.0])[None, :, None]).astype(F32)
    qp = qz.calibrate(x)
    for c in range(3):
        assert float(qp.scale[c]) == 2.0 ** -oracle.pow2_fp(x[:, c], -127, 127, 5, oracle.RNE)


@pytest.mark.parametrize("signed", [True, False])
def test_standard_asymmetric_qparams_match_oracle(signed):
    rng = np.random.default_rng(7)
    for bits in (2, 4, 8, 16):
        qmin, qmax = qmin_qmax(bits, signed)
        for _ in range(20):
            lo, hi = sorted(rng.normal(0, 3, size=2))
            qp = uniform_qparams(lo, hi, bits=bits, signed=signed, symmetric=False)
            s, zp = oracle.standard_asymmetric(lo, hi, qmin, qmax)
            assert (float(qp.scale), int(qp.zero_point)) == (s, zp)


def test_degenerate_ranges_give_scale_one_and_the_code_of_zero():
    qz = UniformQuantizer(numerics(symmetric=False, signed=False))
    qp = qz.calibrate(np.zeros(10, F32))
    assert float(qp.scale) == 1.0 and int(qp.zero_point) == 0
    qs = UniformQuantizer(numerics())
    qp = qs.calibrate(np.full(5, 1e-45, F32))  # amax/127 underflows below 2^-126
    assert float(qp.scale) == 1.0 and int(qp.zero_point) == 0
    assert qs.quantize(np.array([0.0, 1e-45, 3.0], F32), qp).tolist() == [0, 0, 3]


def test_derived_bias_scale_is_input_times_weight_scale():
    qz = UniformQuantizer(numerics(bits=32, scale_rule="derived"))
    s_w = np.array([0.01, 0.02, 0.003], F32)
    qp = qz.calibrate(np.zeros(3, F32), input_scale=F32(0.1), weight_scale=s_w)
    assert qp.scale.tolist() == (F32(0.1) * s_w).tolist() and qp.axis == 0
    assert qp.zero_point.tolist() == [0, 0, 0]
    assert (qp.qmin, qp.qmax) == (-(2 ** 31), 2 ** 31 - 1)
    b = np.array([1.0, -2.0, 1e9], F32)
    assert qz.quantize(b, qp).tolist() == oracle.quantize(b, qp.scale, qp.zero_point, qp.qmin,
                                                          qp.qmax, oracle.RNE, True, False,
                                                          axis=0).tolist()
    with pytest.raises(QuantError, match="input_scale and weight_scale"):
        qz.calibrate(np.zeros(3, F32))
    with pytest.raises(QuantError, match="input_scale and weight_scale"):
        qz.observer().qparams()
    with pytest.raises(QuantError, match="does not match"):
        qz.calibrate(np.zeros(4, F32), input_scale=0.1, weight_scale=s_w)


# --- bit-exactness against the oracle ---------------------------------------------------------

BITS_FAST = [(2, False), (8, True), (16, False)]
BITS_ALL = [(b, n) for b in range(2, 17) for n in (False, True)]


def _check_against_oracle(rounding, scaling, zp_add, per_channel, bits_list, n_random):
    rng = np.random.default_rng(
        [list(MODES).index(rounding), scaling == "divide", zp_add == "after_rounding",
         per_channel, len(bits_list)])
    for bits, narrow in bits_list:
        qmin, qmax = qmin_qmax(bits, True, narrow)
        qz = UniformQuantizer(numerics(bits=bits, symmetric=False, narrow_range=narrow,
                                       rounding=rounding, scaling=scaling, zero_point_add=zp_add,
                                       granularity="per_channel" if per_channel else "per_tensor",
                                       axis=1 if per_channel else None))
        if per_channel:
            scale = np.array([2.0 ** -5, rng.uniform(1e-3, 1.0), 2.0 ** 3], F32)
            zp = rng.integers(qmin, qmax + 1, size=3)
            cols = [hard_values(rng, float(s), qmin, qmax, n_random)[:150] for s in scale]
            x = np.stack([np.resize(c, 150) for c in cols], axis=1).reshape(15, 10, 3)
            x = np.ascontiguousarray(np.moveaxis(x, 2, 1))  # (15, 3, 10): channels on axis 1
            axis = 1
        else:
            scale = F32(rng.choice([2.0 ** -7, rng.uniform(1e-4, 10.0)]))
            zp = rng.integers(qmin, qmax + 1)
            x = hard_values(rng, float(scale), qmin, qmax, n_random)
            axis = None
        qp = UniformQParams(scale=scale, zero_point=zp, qmin=qmin, qmax=qmax, axis=axis)
        codes = qz.quantize(x, qp)
        want = oracle.quantize(x, scale, zp, qmin, qmax, MODES[rounding],
                               scaling == "divide", zp_add == "before_rounding", axis=axis,
                               seed=1234, fused=zp_add == "fused_before_rounding")
        assert codes.dtype == np.int64 and codes.shape == x.shape
        assert np.array_equal(codes, want), (bits, narrow, np.argwhere(codes != want)[:5])
        fq = qz.fake_quant(x, qp)
        want_fq = oracle.dequantize(want, scale, zp, axis=axis)
        assert np.array_equal(fq.view(np.int32), want_fq.view(np.int32)), (bits, narrow)
        assert np.array_equal(qz.dequantize(codes, qp).view(np.int32), want_fq.view(np.int32))


@pytest.mark.parametrize("rounding", list(MODES))
@pytest.mark.parametrize("scaling", ["divide", "reciprocal_multiply"])
@pytest.mark.parametrize("zp_add", ["after_rounding", "before_rounding"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_codes_and_fake_quant_equal_the_exact_oracle(rounding, scaling, zp_add, per_channel):
    _check_against_oracle(rounding, scaling, zp_add, per_channel, BITS_FAST, 40)


@pytest.mark.parametrize("rounding", list(MODES))
@pytest.mark.parametrize("per_channel", [False, True])
def test_fused_zero_point_codes_equal_the_exact_oracle(rounding, per_channel):
    _check_against_oracle(rounding, "reciprocal_multiply", "fused_before_rounding", per_channel,
                          BITS_FAST, 40)


@pytest.mark.slow
@pytest.mark.parametrize("rounding", list(MODES))
@pytest.mark.parametrize("scaling", ["divide", "reciprocal_multiply"])
@pytest.mark.parametrize("zp_add", ["after_rounding", "before_rounding"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_every_bit_width_2_to_16_equals_the_exact_oracle(rounding, scaling, zp_add, per_channel):
    _check_against_oracle(rounding, scaling, zp_add, per_channel, BITS_ALL, 120)


@pytest.mark.parametrize("rounding", ["rne", "rhaz", "rhu"])
def test_snpe_clamp_to_nudged_range_equals_oracle(rounding):
    rng = np.random.default_rng(11)
    qz = UniformQuantizer(numerics(signed=False, symmetric=False, scale_rule="snpe_tf",
                                   min_range=0.01, rounding=rounding, zero_point_rounding="rhaz",
                                   zero_point_add="before_rounding"))
    for _ in range(5):
        lo, hi = -rng.uniform(0, 5), rng.uniform(0, 5)
        qp = uniform_qparams(lo, hi, bits=8, signed=False, symmetric=False,
                             scale_rule="snpe_tf", min_range=0.01, zero_point_rounding="rhaz")
        x = hard_values(rng, float(qp.scale), -int(qp.zero_point), 255 - int(qp.zero_point))
        want = oracle.quantize(x, qp.scale, qp.zero_point, 0, 255, MODES[rounding], True, True,
                               clip=(qp.clip_min, qp.clip_max))
        assert np.array_equal(qz.quantize(x, qp), want)


def test_parallel_kernel_equals_oracle_on_a_subsample():
    """Large tensors take the parallel kernel; check a subsample of its codes."""
    rng = np.random.default_rng(2)
    qz = UniformQuantizer(numerics(rounding="stochastic", granularity="per_channel", axis=0,
                                   scaling="reciprocal_multiply"))
    x = (rng.standard_normal((4, 70_000)) * 3).astype(F32)
    x[:, ::97] = np.nan
    x[:, 5::89] = np.inf
    qp = qz.calibrate(np.nan_to_num(x, nan=0.0, posinf=0.0))
    codes = qz.quantize(x, qp)
    idx = rng.choice(x.size, size=3000, replace=False)
    flat = x.reshape(-1)
    for n in idx:
        c = n // x.shape[1]
        want = oracle.quantize_value(float(flat[n]), float(qp.scale[c]), 0, -128, 127,
                                     oracle.STOCHASTIC, False, False, seed=1234, index=int(n))
        assert codes.reshape(-1)[n] == want


def test_nan_and_inf_map_to_zero_point_qmax_and_qmin():
    qz = UniformQuantizer(numerics(signed=False, symmetric=False))
    qp = UniformQParams(scale=F32(0.1), zero_point=37, qmin=0, qmax=255)
    x = np.array([np.nan, np.inf, -np.inf, -np.nan], F32)
    assert qz.quantize(x, qp).tolist() == [37, 255, 0, 37]
    assert qz.fake_quant(x, qp)[[0, 3]].tolist() == [0.0, 0.0]


# --- stochastic rounding ---------------------------------------------------------------------

def test_stochastic_rounding_is_reproducible_and_seed_dependent():
    x = (np.random.default_rng(0).uniform(-100, 100, 5000)).astype(F32)
    qp = UniformQParams(scale=F32(0.7), zero_point=0, qmin=-128, qmax=127)
    a = UniformQuantizer(numerics(rounding="stochastic", seed=1)).quantize(x, qp)
    b = UniformQuantizer(numerics(rounding="stochastic", seed=1)).quantize(x, qp)
    c = UniformQuantizer(numerics(rounding="stochastic", seed=2)).quantize(x, qp)
    assert np.array_equal(a, b)
    assert np.mean(a != c) > 0.2


@pytest.mark.parametrize("frac", [0.1, 0.5, 0.83])
def test_stochastic_rounding_is_unbiased(frac):
    n = 200_000
    s = F32(2.0 ** -6)
    k = 3.0
    x = np.full(n, (k + frac) * float(s), F32)
    qz = UniformQuantizer(numerics(rounding="stochastic", seed=99))
    codes = qz.quantize(x, UniformQParams(scale=s, zero_point=0, qmin=-128, qmax=127))
    assert set(np.unique(codes).tolist()) <= {3, 4}
    sigma = math.sqrt(frac * (1 - frac) / n)
    assert abs(codes.mean() - (k + frac)) < 5 * sigma


# --- properties --------------------------------------------------------------------------------

finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=True)
any_f32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
cfg = st.tuples(st.sampled_from(["rne", "rhaz", "rhu"]),
                st.sampled_from(["divide", "reciprocal_multiply"]),
                st.sampled_from(["after_rounding", "before_rounding"]),
                st.integers(2, 16), st.booleans(),
                st.floats(float(F32(1e-6)), 1e3, width=32), st.floats(0, 1))


def _setup(c):
    rounding, scaling, zp_add, bits, narrow, scale, zfrac = c
    qmin, qmax = qmin_qmax(bits, True, narrow)
    zp = qmin + int(round(zfrac * (qmax - qmin)))
    qz = UniformQuantizer(numerics(bits=bits, symmetric=False, narrow_range=narrow,
                                   rounding=rounding, scaling=scaling, zero_point_add=zp_add))
    return qz, UniformQParams(scale=F32(scale), zero_point=zp, qmin=qmin, qmax=qmax)


@settings(max_examples=150, deadline=None)
@given(cfg, hnp.arrays(np.float32, st.integers(1, 40), elements=any_f32))
def test_codes_stay_within_qmin_qmax(c, x):
    qz, qp = _setup(c)
    codes = qz.quantize(x, qp)
    assert codes.min() >= qp.qmin and codes.max() <= qp.qmax


@settings(max_examples=150, deadline=None)
@given(cfg, hnp.arrays(np.float32, st.integers(1, 40), elements=finite_f32))
def test_quantize_is_monotonic_in_x(c, x):
    qz, qp = _setup(c)
    xs = np.sort(x)
    assert np.all(np.diff(qz.quantize(xs, qp)) >= 0)


@settings(max_examples=150, deadline=None)
@given(cfg, hnp.arrays(np.float32, st.integers(1, 40), elements=any_f32))
def test_fake_quant_is_idempotent(c, x):
    qz, qp = _setup(c)
    y = qz.fake_quant(x, qp)
    assert np.array_equal(qz.fake_quant(y, qp), y)


# --- real runtimes ---------------------------------------------------------------------------

def _runtime_values(rng, scale, qmin, qmax, n=4000):
    k = rng.integers(qmin - 3, qmax + 3, size=n // 2)
    ties = ((k + 0.5) * float(scale)).astype(F32)   # ties of the float32 quotient, mostly
    rand = (rng.uniform(qmin - 5, qmax + 5, size=n // 2) * float(scale)).astype(F32)
    return np.concatenate([ties, rand, np.array([0.0, -0.0, 1e-40, -1e-40], F32)])


def _ort_quantize_linear(x, scale, zp, axis):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    zp_type = TensorProto.INT8 if zp.dtype == np.int8 else TensorProto.UINT8
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], **attrs)
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", zp_type, list(x.shape))],
        [helper.make_tensor("s", TensorProto.FLOAT, list(scale.shape),
                            scale.reshape(-1).tolist()),
         helper.make_tensor("z", zp_type, list(zp.shape), zp.reshape(-1).tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("per_axis", [False, True])
def test_divide_mode_equals_onnxruntime_quantize_linear(signed, per_axis):
    rng = np.random.default_rng(21 + signed + 2 * per_axis)
    qmin, qmax = qmin_qmax(8, signed)
    qz = UniformQuantizer(numerics(symmetric=False, signed=signed, scaling="divide",
                                   granularity="per_channel" if per_axis else "per_tensor",
                                   axis=1 if per_axis else None))
    zdt = np.int8 if signed else np.uint8
    if per_axis:
        scale = rng.uniform(1e-3, 2.0, size=5).astype(F32)
        zp = rng.integers(qmin, qmax + 1, size=5).astype(zdt)
        cols = [_runtime_values(rng, s, qmin - int(z), qmax - int(z), 800) for s, z in
                zip(scale, zp, strict=True)]
        x = np.ascontiguousarray(np.stack(cols, axis=1)[None])  # (1, 804, 5)? channels axis 2
        x = np.ascontiguousarray(np.moveaxis(x, 2, 1))          # (1, 5, 804)
        axis = 1
    else:
        scale = F32(rng.uniform(1e-3, 2.0))
        zp = zdt(rng.integers(qmin, qmax + 1))
        x = _runtime_values(rng, scale, qmin - int(zp), qmax - int(zp))
        axis = None
    scale_a, zp_a = np.asarray(scale), np.asarray(zp)
    want = _ort_quantize_linear(x, scale_a, zp_a, axis).astype(np.int64)
    qp = UniformQParams(scale=scale_a, zero_point=zp_a.astype(np.int64), qmin=qmin, qmax=qmax,
                        axis=axis)
    assert np.array_equal(qz.quantize(x, qp), want)


@pytest.mark.parametrize("signed", [True, False])
def test_reciprocal_before_rounding_equals_torch_quantize_per_channel(signed):
    """torch.quantize_per_channel computes RNE(fl32(fl32(x * fl32(1/s)) + zp)): the zero point
    enters before rounding (measured; DESIGN.md B6 says after)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(31 + signed)
    qmin, qmax = qmin_qmax(8, signed)
    dtype = torch.qint8 if signed else torch.quint8
    qz = UniformQuantizer(numerics(symmetric=False, signed=signed, scaling="reciprocal_multiply",
                                   zero_point_add="before_rounding", granularity="per_channel",
                                   axis=0))
    scale = rng.uniform(1e-3, 2.0, size=6).astype(F32)
    zp = rng.integers(qmin, qmax + 1, size=6)
    zp[0] = 0 if signed else 1
    x = np.stack([_runtime_values(rng, s, qmin - int(z), qmax - int(z), 1000)
                  for s, z in zip(scale, zp, strict=True)])
    t = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scale.astype(
        np.float64)), torch.from_numpy(zp), 0, dtype)
    qp = UniformQParams(scale=scale, zero_point=zp, qmin=qmin, qmax=qmax, axis=0)
    assert np.array_equal(qz.quantize(x, qp), t.int_repr().numpy().astype(np.int64))


@pytest.mark.parametrize("signed", [True, False])
def test_reciprocal_mode_equals_torch_quantize_per_tensor_with_zero_point_0(signed):
    """With zp = 0 every formula agrees. (With zp != 0 torch's per-tensor fbgemm kernel rounds
    fma(x, 1/s, zp) once: zero_point_add 'fused_before_rounding', tested below.)"""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(35 + signed)
    qmin, qmax = qmin_qmax(8, signed)
    dtype = torch.qint8 if signed else torch.quint8
    scale = F32(rng.uniform(1e-3, 2.0))
    x = _runtime_values(rng, scale, qmin, qmax)
    want = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), 0, dtype).int_repr()
    qp = UniformQParams(scale=scale, zero_point=0, qmin=qmin, qmax=qmax)
    for zp_add in (["after_rounding", "before_rounding"] if not signed else ["after_rounding"]):
        qz = UniformQuantizer(numerics(symmetric=False, signed=signed,
                                       scaling="reciprocal_multiply", zero_point_add=zp_add))
        assert np.array_equal(qz.quantize(x, qp), want.numpy().astype(np.int64))


def test_torch_quantize_per_tensor_rounds_a_fused_multiply_add_once():
    """Pins the runtime fact behind the gap above: torch.quantize_per_tensor (fbgemm) gives
    RNE(fl32(x * fl32(1/s) + zp)) with a single rounding (exact oracle)."""
    torch = pytest.importorskip("torch")
    from fractions import Fraction
    rng = np.random.default_rng(37)
    scale, zp = F32(0.3213), 91
    x = _runtime_values(rng, scale, -128 - zp, 127 - zp, 1000)
    got = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), zp, torch.qint8)
    inv = oracle.round_to_f32(1 / Fraction(float(scale)))
    want = [min(max(oracle.round_int(Fraction(oracle.round_to_f32(
        Fraction(float(v)) * Fraction(inv) + zp)), oracle.RNE), -128), 127) for v in x]
    assert got.int_repr().numpy().astype(np.int64).tolist() == want


@pytest.mark.parametrize("signed", [True, False])
def test_fused_mode_equals_torch_quantize_per_tensor_with_any_zero_point(signed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(39 + signed)
    qmin, qmax = qmin_qmax(8, signed)
    dtype = torch.qint8 if signed else torch.quint8
    qz = UniformQuantizer(numerics(symmetric=False, signed=signed, scaling="reciprocal_multiply",
                                   zero_point_add="fused_before_rounding"))
    for _ in range(6):
        scale = F32(rng.uniform(1e-3, 2.0))
        zp = int(rng.integers(qmin, qmax + 1))
        x = _runtime_values(rng, scale, qmin - zp, qmax - zp, 2000)
        want = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), zp, dtype)
        qp = UniformQParams(scale=scale, zero_point=zp, qmin=qmin, qmax=qmax)
        assert np.array_equal(qz.quantize(x, qp), want.int_repr().numpy().astype(np.int64))


def test_fake_quant_equals_torch_fake_quantize_per_channel_affine():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(41)
    scale = rng.uniform(1e-3, 0.1, size=8).astype(F32)
    x = np.stack([_runtime_values(rng, s, -128, 127, 600) for s in scale])
    zp = np.zeros(8, np.int64)
    qz = UniformQuantizer(numerics(scaling="reciprocal_multiply", granularity="per_channel",
                                   axis=0))
    qp = UniformQParams(scale=scale, zero_point=zp, qmin=-128, qmax=127, axis=0)
    want = torch.fake_quantize_per_channel_affine(
        torch.from_numpy(x), torch.from_numpy(scale), torch.from_numpy(zp.astype(np.int32)), 0,
        -128, 127).numpy()
    assert np.array_equal(qz.fake_quant(x, qp).view(np.int32), want.view(np.int32))


# --- errors ----------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_quant_errors():
    qz = UniformQuantizer(numerics(granularity="per_channel", axis=2))
    with pytest.raises(QuantError, match="axis 2 is out of range for a 2-D"):
        qz.calibrate(np.ones((3, 4), F32))
    qp = qz.calibrate(np.ones((2, 3, 4), F32))
    with pytest.raises(QuantError, match="has 5 channels along axis 2 but the qparams have 4"):
        qz.quantize(np.ones((2, 3, 5), F32), qp)
    with pytest.raises(QuantError, match="empty"):
        qz.calibrate(np.ones((2, 0, 4), F32))
    with pytest.raises(QuantError, match="1 NaN and 1"):
        qz.calibrate(np.array([[[np.nan, np.inf, 1.0, 2.0]]], F32))
    with pytest.raises(QuantError, match="codes outside"):
        qz.dequantize(np.full((2, 3, 4), 200), qp)
    with pytest.raises(QuantError, match="integer array"):
        qz.dequantize(np.zeros((2, 3, 4)), qp)
    with pytest.raises(QuantError, match="unexpected context"):
        qz.calibrate(np.ones((2, 3, 4), F32), input_scale=0.1)
    with pytest.raises(QuantError, match="real numeric"):
        qz.quantize(np.ones((2, 3, 4), dtype=complex), qp)
    recip = UniformQuantizer(numerics(scaling="reciprocal_multiply"))
    with pytest.raises(QuantError, match="overflows"):
        recip.quantize(np.ones(3, F32), UniformQParams(scale=F32(1e-45), zero_point=0,
                                                       qmin=-128, qmax=127))
    with pytest.raises(QuantError, match="kl"):
        UniformQuantizer(numerics(symmetric=False, calibration={"method": "kl"}))
