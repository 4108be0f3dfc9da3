"""Integer elementwise / pooling ops equal ONNX Runtime (QLinearAdd, QLinearAveragePool,
QLinearGlobalAveragePool, MaxPool on codes) code for code, and the fused multiply-add helper
equals exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnxruntime as ort
import pytest

from hwsim.emulate.integer_elementwise import (
    activation_code_range,
    average_pool_codes,
    fma_f32,
    global_average_pool_codes,
    max_pool_codes,
    qlinear_add,
)
from hwsim.emulate.onnx_export import OnnxQuantGraph
from hwsim.errors import EmulationError

F32 = np.float32


def _session(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _range(dt) -> tuple[int, int]:
    return int(np.iinfo(dt).min), int(np.iinfo(dt).max)


def test_fma_f32_rounds_once_like_exact_arithmetic():
    rng = np.random.default_rng(0)
    a = rng.integers(-255, 256, 3000).astype(F32)
    b = (rng.uniform(0.01, 4, 3000)).astype(F32)
    c = (rng.uniform(-300, 300, 3000)).astype(F32)
    # hard cases: c nearly cancels a*b, and products landing on float32 midpoints
    c[:500] = (-(a[:500].astype(np.float64) * b[:500])).astype(F32)
    a[500:600], b[500:600] = F32(1 + 2 ** -12), F32(1 + 2 ** -12)
    c[500:600] = F32(0)
    got = fma_f32(a, b, c)
    for i in range(a.size):
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        lo = F32(float(exact))  # nearest float32 candidates around the exact value
        cands = {float(lo), float(np.nextafter(lo, F32(np.inf))),
                 float(np.nextafter(lo, F32(-np.inf)))}
        best = min(cands, key=lambda v: (abs(Fraction(v) - exact),
                                         int(np.float32(v).view(np.int32)) & 1))
        assert float(got[i]) == best, i


@pytest.mark.parametrize("dt", [np.int8, np.uint8])
def test_qlinear_add_matches_onnxruntime(dt):
    rng = np.random.default_rng(1 if dt is np.int8 else 2)
    lo, hi = _range(dt)
    for i in range(40):
        shape = (2, int(rng.integers(1, 20)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        a = rng.integers(lo, hi + 1, shape).astype(dt)
        b = rng.integers(lo, hi + 1, shape).astype(dt)
        sa, sb = (float(F32(v)) for v in rng.uniform(0.01, 0.2, 2))
        sc = float(F32(max(sa, sb) * rng.uniform(0.3, 3)))
        za, zb, zc = (int(v) for v in rng.integers(lo, hi + 1, 3))
        g = OnnxQuantGraph()
        ia, ib = g.add_input("a", dt, shape), g.add_input("b", dt, shape)
        g.add_output(g.add_qlinear_add(ia, sa, za, ib, sb, zb, sc, zc))
        ref = _session(g.model()).run(None, {"a": a, "b": b})[0].astype(np.int32)
        got = qlinear_add(a, sa, za, b, sb, zb, sc, zc, lo, hi)
        assert np.array_equal(ref, got), f"case {i}: {np.count_nonzero(ref != got)} differ"


@pytest.mark.parametrize("dt", [np.int8, np.uint8])
def test_qlinear_global_average_pool_matches_onnxruntime(dt):
    rng = np.random.default_rng(3)
    lo, hi = _range(dt)
    for i in range(40):
        shape = (2, int(rng.integers(1, 20)), int(rng.integers(1, 12)), int(rng.integers(1, 12)))
        x = rng.integers(lo, hi + 1, shape).astype(dt)
        sx = float(F32(rng.uniform(0.01, 0.2)))
        sy = float(F32(sx * rng.uniform(0.02, 0.5)))
        zx, zy = (int(v) for v in rng.integers(lo, hi + 1, 2))
        g = OnnxQuantGraph()
        g.add_output(g.add_qlinear_global_average_pool(g.add_input("x", dt, shape), sx, zx, sy,
                                                       zy))
        ref = _session(g.model()).run(None, {"x": x})[0].astype(np.int32)
        got = global_average_pool_codes(x, sx, zx, sy, zy, lo, hi)
        assert np.array_equal(ref, got), f"case {i}: {np.count_nonzero(ref != got)} differ"


@pytest.mark.parametrize("dt", [np.int8, np.uint8])
def test_qlinear_average_pool_matches_onnxruntime(dt):
    rng = np.random.default_rng(4)
    lo, hi = _range(dt)
    for i in range(40):
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in (k[0], k[1], k[0], k[1]))
        pads = (pads[0], pads[1], pads[2], pads[3])
        shape = (2, int(rng.integers(1, 6)), int(rng.integers(k[0], 12)),
                 int(rng.integers(k[1], 12)))
        include = bool(rng.integers(2))
        x = rng.integers(lo, hi + 1, shape).astype(dt)
        sx = float(F32(rng.uniform(0.01, 0.2)))
        sy = float(F32(sx * rng.uniform(0.3, 2)))
        zx, zy = (int(v) for v in rng.integers(lo, hi + 1, 2))
        g = OnnxQuantGraph()
        g.add_output(g.add_qlinear_average_pool(g.add_input("x", dt, shape), sx, zx, sy, zy, k,
                                                s, pads, include))
        ref = _session(g.model()).run(None, {"x": x})[0].astype(np.int32)
        got = average_pool_codes(x, sx, zx, sy, zy, lo, hi, k, s, pads, include)
        assert ref.shape == got.shape
        assert np.array_equal(ref, got), (f"case {i} k={k} s={s} pads={pads} include="
                                          f"{include}: {np.count_nonzero(ref != got)} differ")


@pytest.mark.parametrize("dt", [np.int8, np.uint8])
def test_max_pool_on_codes_matches_onnxruntime(dt):
    rng = np.random.default_rng(5)
    lo, hi = _range(dt)
    for _ in range(20):
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in (k[0], k[1], k[0], k[1]))
        shape = (1, 3, int(rng.integers(k[0], 10)), int(rng.integers(k[1], 10)))
        x = rng.integers(lo, hi + 1, shape).astype(dt)
        g = OnnxQuantGraph()
        g.add_output(g.add_max_pool(g.add_input("x", dt, shape), k, s, pads))
        ref = _session(g.model()).run(None, {"x": x})[0].astype(np.int32)
        assert np.array_equal(ref, max_pool_codes(x, k, s, pads))


def test_activation_code_ranges_follow_tflite_rule():
    assert activation_code_range("none", 0.1, 3, -128, 127) == (-128, 127)
    assert activation_code_range("relu", 0.1, -5, -128, 127) == (-5, 127)
    assert activation_code_range("relu6", 0.1, -5, -128, 127) == (-5, 55)  # 6/0.1 = 60
    assert activation_code_range("relu6", 0.01, 0, -128, 127) == (0, 127)
    with pytest.raises(EmulationError, match="activation"):
        activation_code_range("gelu", 0.1, 0, -128, 127)
