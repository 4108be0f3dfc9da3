"""The integer emulator equals LiteRT's reference kernels (OpResolverType.BUILTIN_REF).

CONV_2D and DEPTHWISE_CONV_2D use q31_double_rounding; FULLY_CONNECTED's reference kernel
rounds double(acc) * M instead (double_multiply_rhaz). Models are single-layer .tflite files
built with hwsim.emulate.tflite_export (no TensorFlow).
"""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.emulate.integer_ops import conv2d_accumulate, linear_accumulate
from hwsim.emulate.requant import make_requantizer
from hwsim.emulate.tflite_export import TfliteQuantGraph, same_padding

litert = pytest.importorskip("ai_edge_litert.interpreter")


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    it = litert.Interpreter(model_content=model,
                            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _conv_case(rng, depthwise: bool):
    n, h, w, c = int(rng.integers(1, 3)), int(rng.integers(3, 12)), int(rng.integers(3, 12)), \
        int(rng.integers(1, 7))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = "same" if rng.integers(2) else "valid"
    if (kh - 1) * dil[0] + 1 > h or (kw - 1) * dil[1] + 1 > w:
        padding = "same"
    o = c * int(rng.integers(1, 3)) if depthwise else int(rng.integers(1, 9))
    x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
    wq = rng.integers(-127, 128, (1, kh, kw, o) if depthwise else (o, kh, kw, c)).astype(np.int8)
    xs = float(np.float32(rng.uniform(0.002, 0.05)))
    ws = rng.uniform(0.001, 0.02, o).astype(np.float32)
    k = kh * kw * (1 if depthwise else c)
    ys = float(np.float32(xs * float(ws.max()) * np.sqrt(k) * 5000 / rng.uniform(5, 120)))
    return dict(x=x, w=wq, xs=xs, xz=int(rng.integers(-128, 128)), ws=ws, ys=ys,
                yz=int(rng.integers(-128, 128)), bias=rng.integers(-20000, 20000, o),
                stride=stride, dil=dil, padding=padding,
                activation=str(rng.choice(["none", "relu", "relu6"])))


def _activation_bounds(act: str, ys: float, yz: int) -> tuple[int, int]:
    # TFLite CalculateActivationRangeQuantized (independent of the emulator's helper)
    if act == "none":
        return -128, 127
    lo = max(-128, yz)
    if act == "relu":
        return lo, 127
    six = float(np.float32(6.0) / np.float32(ys))
    return lo, min(127, yz + int(np.sign(six) * np.floor(abs(six) + 0.5)))


def _check_conv(rng, depthwise: bool) -> None:
    case = _conv_case(rng, depthwise)
    g = TfliteQuantGraph()
    xi = g.add_input(case["x"].shape, case["xs"], case["xz"])
    add = g.add_depthwise_conv2d if depthwise else g.add_conv2d
    g.add_output(add(xi, case["w"], case["ws"], case["ys"], case["yz"], case["bias"],
                     case["stride"], case["padding"], case["dil"], case["activation"]))
    ref = _run(g.serialize(), case["x"]).astype(np.int32)
    _, h, w, c = case["x"].shape
    kh, kw = case["w"].shape[1:3]
    if case["padding"] == "same":
        _, pt, pb = same_padding(h, kh, case["stride"][0], case["dil"][0])
        _, pl, pr = same_padding(w, kw, case["stride"][1], case["dil"][1])
    else:
        pt = pl = pb = pr = 0
    w_oihw = case["w"].transpose(3, 0, 1, 2) if depthwise else case["w"].transpose(0, 3, 1, 2)
    acc = conv2d_accumulate(case["x"].transpose(0, 3, 1, 2), w_oihw, x_zero_point=case["xz"],
                            bias=case["bias"], stride=case["stride"], padding=(pt, pl, pb, pr),
                            dilation=case["dil"], groups=c if depthwise else 1)
    lo, hi = _activation_bounds(case["activation"], case["ys"], case["yz"])
    rq = make_requantizer("q31_double_rounding", case["xs"], case["ws"], case["ys"], case["yz"],
                          lo, hi)
    got = rq(acc.values, channel_axis=1).transpose(0, 2, 3, 1)
    diff = np.count_nonzero(ref != got)
    assert diff == 0, f"{diff} of {ref.size} codes differ ({case['padding']}, {case['w'].shape})"


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_and_depthwise_random_layers_match_litert_reference(depthwise):
    rng = np.random.default_rng(21 + depthwise)
    for _ in range(100):
        _check_conv(rng, depthwise)


@pytest.mark.slow
@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_and_depthwise_thousands_of_layers_match_litert_reference(depthwise):
    rng = np.random.default_rng(2100 + depthwise)
    for _ in range(1500):
        _check_conv(rng, depthwise)


def _fc_case(rng):
    n, k, o = int(rng.integers(1, 64)), int(rng.integers(1, 80)), int(rng.integers(1, 20))
    x = rng.integers(-128, 128, (n, k)).astype(np.int8)
    w = rng.integers(-127, 128, (o, k)).astype(np.int8)
    xs = float(np.float32(rng.uniform(0.002, 0.05)))
    ws = rng.uniform(0.001, 0.02, o).astype(np.float32)
    ys = float(np.float32(xs * float(ws.max()) * np.sqrt(k) * 5000 / rng.uniform(5, 120)))
    return x, w, xs, int(rng.integers(-128, 128)), ws, ys, int(rng.integers(-128, 128)), \
        rng.integers(-20000, 20000, o)


def _check_fc(rng) -> tuple[int, int]:
    x, w, xs, xz, ws, ys, yz, bias = _fc_case(rng)
    g = TfliteQuantGraph()
    xi = g.add_input(x.shape, xs, xz)
    g.add_output(g.add_fully_connected(xi, w, ws, ys, yz, bias))
    ref = _run(g.serialize(), x).astype(np.int32)
    acc = linear_accumulate(x, w, x_zero_point=xz, bias=bias).values
    got = make_requantizer("double_multiply_rhaz", xs, ws, ys, yz, -128, 127)(acc, 1)
    q31 = make_requantizer("q31_double_rounding", xs, ws, ys, yz, -128, 127)(acc, 1)
    assert np.array_equal(ref, got), f"{np.count_nonzero(ref != got)} of {ref.size} differ"
    return int(np.count_nonzero(ref != q31)), ref.size


def test_fully_connected_reference_rounds_double_product_not_q31():
    rng = np.random.default_rng(31)
    q31_diffs = 0
    for _ in range(150):
        q31_diffs += _check_fc(rng)[0]
    # the conv arithmetic (q31) would NOT reproduce the FC reference kernel
    assert q31_diffs > 0


@pytest.mark.slow
def test_fully_connected_thousands_of_layers_match_litert_reference():
    rng = np.random.default_rng(3100)
    for _ in range(1500):
        _check_fc(rng)


def test_fully_connected_out_of_int32_product_becomes_int32_min():
    """M > 1 with a large accumulator: double(acc) * M exceeds int32, the reference kernel's
    cast yields INT32_MIN, so the output is the lowest code even for a positive sum."""
    k = 64
    x = np.full((1, k), 127, np.int8)
    w = np.full((4, k), 127, np.int8)
    w[1] = -127
    w[2] = 3
    w[3] = 1
    xs, ws, ys = 1.0, np.ones(4, np.float32), 2.0 ** -17  # M = 2^17
    g = TfliteQuantGraph()
    xi = g.add_input(x.shape, xs, 0)
    g.add_output(g.add_fully_connected(xi, w, ws, ys, 0))
    ref = _run(g.serialize(), x).astype(np.int32)
    # acc = [1032256, -1032256, 24384, 8128]; * 2^17: the first three leave int32 (-> lowest
    # code), the last (1.07e9) fits and saturates to the highest code
    acc = linear_accumulate(x, w).values
    got = make_requantizer("double_multiply_rhaz", xs, ws, ys, 0, -128, 127)(acc, 1)
    assert ref.tolist() == [[-128, -128, -128, 127]]
    assert np.array_equal(ref, got)
