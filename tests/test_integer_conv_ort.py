"""The integer conv / linear emulator in fp32_multiply mode equals ONNX Runtime code for code.

Oracle: onnxruntime's CPU kernels (QLinearConv, QLinearMatMul) on single-layer models built
with hwsim.emulate.onnx_export. Random layers: groups (incl. depthwise), stride, 4-sided
padding, dilation, per-tensor / per-channel weight scales, random zero points, int8 and uint8
activations, output scales spanning multipliers from ~1e-4 to ~2.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from hwsim.emulate.integer_ops import conv2d_accumulate, linear_accumulate
from hwsim.emulate.onnx_export import OnnxQuantGraph
from hwsim.emulate.requant import make_requantizer


def _session(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _cpu_has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:
        return True  # unknown: assume the exact (VNNI) kernels
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _code_range(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _random_conv(rng: np.random.Generator, xdt, extreme: bool = False):
    groups_kind = rng.integers(3)
    c = int(rng.integers(1, 9))
    if groups_kind == 0:
        groups, o = 1, int(rng.integers(1, 9))
    elif groups_kind == 1:  # depthwise (multiplier 1 or 2)
        groups, o = c, c * int(rng.integers(1, 3))
    else:
        groups = int(rng.choice([g for g in range(1, c + 1) if c % g == 0]))
        o = groups * int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    h = int(rng.integers((kh - 1) * dil[0] + 1, 12))
    w = int(rng.integers((kw - 1) * dil[1] + 1, 12))
    lo, hi = _code_range(xdt)
    x = rng.integers(lo, hi + 1, (int(rng.integers(1, 3)), c, h, w)).astype(xdt)
    wq = rng.integers(-128, 128, (o, c // groups, kh, kw)).astype(np.int8)
    if extreme:
        x = rng.choice([lo, hi], x.shape).astype(xdt)
        wq = rng.choice([-128, 127], wq.shape).astype(np.int8)
    x_scale = float(np.float32(rng.uniform(0.002, 0.05)))
    per_channel = bool(rng.integers(2))
    w_scale = np.asarray(rng.uniform(0.001, 0.02, o if per_channel else None), np.float32)
    x_zp = int(rng.integers(lo, hi + 1))
    k = (c // groups) * kh * kw
    # output scale: typical |acc| * M lands in tens of codes, M from ~1e-4 up to ~2
    acc_typ = np.sqrt(k) * 70.0 * 70.0
    y_scale = float(np.float32(x_scale * float(np.max(w_scale)) * acc_typ
                               / rng.uniform(5, 120)))
    y_zp = int(rng.integers(lo, hi + 1))
    bias = rng.integers(-20000, 20000, o).astype(np.int32) if rng.integers(2) else None
    return dict(x=x, w=wq, x_scale=x_scale, x_zp=x_zp, w_scale=w_scale, y_scale=y_scale,
                y_zp=y_zp, bias=bias, stride=stride, pads=pads, dil=dil, groups=groups)


def _ort_conv(case) -> np.ndarray:
    g = OnnxQuantGraph()
    xin = g.add_input("x", case["x"].dtype, case["x"].shape)
    y = g.add_qlinear_conv(xin, case["x_scale"], case["x_zp"], case["w"], case["w_scale"],
                           np.zeros(np.shape(case["w_scale"]), np.int8), case["y_scale"],
                           case["y_zp"], case["bias"], case["stride"], case["pads"],
                           case["dil"], case["groups"])
    g.add_output(y)
    return _session(g.model()).run(None, {"x": case["x"]})[0]


def _emulate_conv(case, pair_saturation: bool = False) -> np.ndarray:
    lo, hi = _code_range(case["x"].dtype)
    acc = conv2d_accumulate(case["x"], case["w"], x_zero_point=case["x_zp"],
                            bias=case["bias"], stride=case["stride"], padding=case["pads"],
                            dilation=case["dil"], groups=case["groups"],
                            int16_pair_saturation=pair_saturation)
    rq = make_requantizer("fp32_multiply", case["x_scale"], case["w_scale"], case["y_scale"],
                          case["y_zp"], lo, hi)
    return rq(acc.values, channel_axis=1)


def _check_conv_cases(seed: int, count: int, xdt) -> int:
    rng = np.random.default_rng(seed)
    outputs = 0
    for i in range(count):
        case = _random_conv(rng, xdt)
        ref = _ort_conv(case).astype(np.int32)
        got = _emulate_conv(case)
        diff = int(np.count_nonzero(ref != got))
        assert diff == 0, (f"case {i} (seed {seed}): {diff} of {ref.size} codes differ; "
                           f"groups={case['groups']} w={case['w'].shape} "
                           f"stride={case['stride']} pads={case['pads']} dil={case['dil']}")
        outputs += ref.size
    return outputs


@pytest.mark.parametrize("xdt", [np.int8, np.uint8])
@pytest.mark.parametrize("seed", [0, 1])
def test_qlinearconv_random_layers_match_onnxruntime(seed, xdt):
    # uint8 activations x int8 weights are exact here only on CPUs with VNNI; see below
    if xdt is np.uint8 and not _cpu_has_vnni():
        pytest.skip("u8 x s8 without VNNI saturates int16 pairs: covered by the pair test")
    assert _check_conv_cases(seed, 60, xdt) > 0


@pytest.mark.slow
@pytest.mark.parametrize("xdt", [np.int8, np.uint8])
def test_qlinearconv_thousands_of_random_layers_match_onnxruntime(xdt):
    if xdt is np.uint8 and not _cpu_has_vnni():
        pytest.skip("u8 x s8 without VNNI saturates int16 pairs: covered by the pair test")
    assert _check_conv_cases(1000, 1500, xdt) > 0


def test_u8_s8_extreme_codes_show_the_cpu_kernel_arithmetic():
    """u8 activations x s8 weights at the extremes (255 x -128 pairs overflow int16).

    On a CPU with AVX512-VNNI / AVX-VNNI (the machine these tests were written on: AMD EPYC
    with avx512_vnni) MLAS uses vpdpbusd, which does not saturate pairs: ORT is exact and the
    emulator must match with int16_pair_saturation off, while the pair model must differ.
    On an AVX2 CPU without VNNI MLAS uses vpmaddubsw: the emulator with the pair model is
    compared with ORT; its pairing order (kernel row, column, channel; channel pairs per tap)
    is read from MLAS, not measured here, so a failure there reports the residual.
    """
    rng = np.random.default_rng(7)
    vnni = _cpu_has_vnni()
    total_sat = 0
    for i in range(20):
        case = _random_conv(rng, np.uint8, extreme=True)
        case["y_scale"] = float(np.float32(case["y_scale"] * 4))
        ref = _ort_conv(case).astype(np.int32)
        exact = _emulate_conv(case, pair_saturation=False)
        paired = _emulate_conv(case, pair_saturation=True)
        total_sat += int(np.count_nonzero(exact != paired))
        expected = exact if vnni else paired
        diff = ref.astype(np.int64) - expected
        assert not diff.any(), (
            f"case {i}: {np.count_nonzero(diff)} codes differ from ORT (max |diff| "
            f"{np.abs(diff).max()}), vnni={vnni}, groups={case['groups']} w={case['w'].shape}")
    assert total_sat > 0, "extreme codes must make the pair model differ from exact math"


def _random_linear(rng, xdt):
    k, o, n = int(rng.integers(1, 70)), int(rng.integers(1, 20)), int(rng.integers(1, 6))
    lo, hi = _code_range(xdt)
    x = rng.integers(lo, hi + 1, (n, k)).astype(xdt)
    w = rng.integers(-128, 128, (o, k)).astype(np.int8)
    x_scale = float(np.float32(rng.uniform(0.002, 0.05)))
    per_channel = bool(rng.integers(2))
    w_scale = np.asarray(rng.uniform(0.001, 0.02, o if per_channel else None), np.float32)
    w_zp = np.asarray(rng.integers(-5, 6, o if per_channel else None), np.int8)
    y_scale = float(np.float32(x_scale * float(np.max(w_scale)) * np.sqrt(k) * 4900
                               / rng.uniform(5, 120)))
    return x, w, x_scale, int(rng.integers(lo, hi + 1)), w_scale, w_zp, y_scale, int(
        rng.integers(lo, hi + 1))


@pytest.mark.parametrize("xdt", [np.int8, np.uint8])
def test_qlinearmatmul_random_layers_match_onnxruntime(xdt):
    if xdt is np.uint8 and not _cpu_has_vnni():
        pytest.skip("u8 x s8 without VNNI saturates int16 pairs")
    rng = np.random.default_rng(11)
    for i in range(80):
        x, w, xs, xz, ws, wz, ys, yz = _random_linear(rng, xdt)
        g = OnnxQuantGraph()
        xin = g.add_input("x", x.dtype, x.shape)
        g.add_output(g.add_qlinear_matmul(xin, xs, xz, w, ws, wz, ys, yz))
        ref = _session(g.model()).run(None, {"x": x})[0].astype(np.int32)
        lo, hi = _code_range(xdt)
        acc = linear_accumulate(x, w, x_zero_point=xz, w_zero_point=wz)
        got = make_requantizer("fp32_multiply", xs, ws, ys, yz, lo, hi)(acc.values, -1)
        assert np.array_equal(ref, got), f"case {i}: {np.count_nonzero(ref != got)} differ"
