"""Integer elementwise and pooling ops on codes, in ONNX Runtime's arithmetic.

Each function takes codes (integer arrays) with their scale / zero point and returns codes
(int32 arrays) clamped to [qmin, qmax]. The arithmetic follows the ONNX Runtime CPU kernels
(read in MLAS and checked against onnxruntime 1.32 in tests/test_integer_ops_ort.py):

qlinear_add (com.microsoft QLinearAdd, MLAS ``qladd_avx2.cpp``): r_a = f32(s_a / s_c),
  r_b = f32(s_b / s_c), fixed = f32(z_c) - fma(r_a, z_a, f32(r_b * z_b)) (the compiler contracts
  that expression into one fused multiply-add), y = RNE(fma(a, r_a, fma(b, r_b, fixed))),
  saturated. All float32 with single-rounding fused multiply-adds.
global_average_pool_codes (QLinearGlobalAveragePool, MLAS): integer sum S over the image,
  y = fp32 requant of S - z_x * n with multiplier f32(s_x / f32(s_y * n)).
average_pool_codes (QLinearAveragePool): dequantized window values f32((x - z_x) * s_x) summed
  in float32 in row-major window order, divided by the pool size (valid taps, or the whole
  kernel with ``count_include_pad``), y = clamp(RNE(v / s_y) + z_y).
max_pool_codes: max of codes (monotone, exact); padded taps never win.
"""

from __future__ import annotations

import math

import numpy as np

from hwsim.emulate.integer_ops import conv_output_size
from hwsim.emulate.requant import requantize_fp32_multiply
from hwsim.errors import EmulationError

_F32 = np.float32


def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add a * b + c with a single rounding (RNE), vectorised.

    a * b of two float32 is exact in float64; the sum is split exactly (TwoSum) into
    hi + lo, and hi is rounded to float32 with lo breaking the only case it matters: hi lying
    exactly halfway between two float32 values.
    """
    p = np.asarray(a, _F32).astype(np.float64) * np.asarray(b, _F32).astype(np.float64)
    c64 = np.asarray(c, _F32).astype(np.float64)
    s = p + c64
    bp = s - c64
    lo = (p - (s - bp)) + (c64 - bp)
    r = s.astype(_F32)
    d = s - r.astype(np.float64)
    up = np.nextafter(r, _F32(np.inf))
    dn = np.nextafter(r, _F32(-np.inf))
    tie = ((d > 0) & (2 * d == up.astype(np.float64) - r)) | (
        (d < 0) & (-2 * d == r - dn.astype(np.float64)))
    move = tie & (lo != 0) & (np.sign(lo) == np.sign(d))
    return np.where(move, np.where(d > 0, up, dn), r).astype(_F32)


def _codes(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise EmulationError(f"{name} must hold integer codes, got dtype {a.dtype}")
    return a


def qlinear_add(a: np.ndarray, a_scale: float, a_zero_point: int, b: np.ndarray,
                b_scale: float, b_zero_point: int, y_scale: float, y_zero_point: int,
                qmin: int, qmax: int) -> np.ndarray:
    """ONNX Runtime QLinearAdd on codes (numpy broadcasting of a and b)."""
    a = _codes("QLinearAdd input a", a)
    b = _codes("QLinearAdd input b", b)
    r_a = _F32(_F32(a_scale) / _F32(y_scale))
    r_b = _F32(_F32(b_scale) / _F32(y_scale))
    fixed = _F32(_F32(y_zero_point) - fma_f32(r_a, _F32(a_zero_point),
                                              _F32(r_b * _F32(b_zero_point))))
    af = a.astype(_F32)
    bf = b.astype(_F32)
    if a.size == 1 and b.size != 1:  # MLAS folds the scalar into the fixed part (mul, add)
        fixed = _F32(fixed + _F32(af.reshape(()) * r_a))
        v = fma_f32(bf, r_b, fixed)
        v = np.broadcast_to(v, np.broadcast_shapes(a.shape, b.shape))
    elif b.size == 1 and a.size != 1:
        fixed = _F32(fixed + _F32(bf.reshape(()) * r_b))
        v = fma_f32(af, r_a, fixed)
        v = np.broadcast_to(v, np.broadcast_shapes(a.shape, b.shape))
    else:
        af, bf = np.broadcast_arrays(af, bf)
        v = fma_f32(af, r_a, fma_f32(bf, r_b, fixed))
    # cvtps2dq (RNE; out of range -> INT32_MIN), then saturating packs to the code range
    big = ~(np.abs(v) < _F32(2.0 ** 31))
    r = np.where(big, -(2.0 ** 31), np.rint(v)).astype(np.int64)
    return np.clip(r, qmin, qmax).astype(np.int32)


def _nchw(name: str, x: np.ndarray) -> np.ndarray:
    x = _codes(name, x)
    if x.ndim != 4:
        raise EmulationError(f"{name} must be NCHW (4-D), got shape {x.shape}")
    return x


def global_average_pool_codes(x: np.ndarray, x_scale: float, x_zero_point: int,
                              y_scale: float, y_zero_point: int, qmin: int, qmax: int
                              ) -> np.ndarray:
    """ONNX Runtime QLinearGlobalAveragePool (NCHW) -> codes (N, C, 1, 1)."""
    x = _nchw("QLinearGlobalAveragePool input", x)
    n = x.shape[2] * x.shape[3]
    acc = x.astype(np.int64).sum(axis=(2, 3), keepdims=True) - int(x_zero_point) * n
    mult = _F32(_F32(x_scale) / _F32(_F32(y_scale) * _F32(n)))
    return requantize_fp32_multiply(acc, mult, int(y_zero_point), qmin, qmax)


def average_pool_codes(x: np.ndarray, x_scale: float, x_zero_point: int, y_scale: float,
                       y_zero_point: int, qmin: int, qmax: int, kernel: tuple[int, int],
                       stride: tuple[int, int],
                       padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                       count_include_pad: bool = False) -> np.ndarray:
    """ONNX Runtime QLinearAveragePool (NCHW, floor output size) -> codes."""
    x = _nchw("QLinearAveragePool input", x)
    kh, kw = kernel
    sh, sw = stride
    pt, pl, pb, pr = padding
    n, c, h, w = x.shape
    oh = conv_output_size(h, kh, sh, pt, pb, 1)
    ow = conv_output_size(w, kw, sw, pl, pr, 1)
    if oh < 1 or ow < 1:
        raise EmulationError(f"QLinearAveragePool: empty output for input {h}x{w}, kernel "
                             f"{kernel}, padding {padding}")
    deq = ((x.astype(np.int32) - int(x_zero_point)).astype(_F32) * _F32(x_scale)).astype(_F32)
    big = np.zeros((n, c, h + pt + pb, w + pl + pr), _F32)
    big[:, :, pt:pt + h, pl:pl + w] = deq
    valid = np.zeros((h + pt + pb, w + pl + pr), np.int32)
    valid[pt:pt + h, pl:pl + w] = 1
    total = np.zeros((n, c, oh, ow), _F32)
    count = np.zeros((oh, ow), np.int32)
    for i in range(kh):  # window taps in row-major order: the float32 summation order
        for j in range(kw):
            rows = slice(i, i + sh * (oh - 1) + 1, sh)
            cols = slice(j, j + sw * (ow - 1) + 1, sw)
            total = (total + big[:, :, rows, cols]).astype(_F32)
            count += valid[rows, cols]
    size = np.full((oh, ow), kh * kw, np.int32) if count_include_pad else count
    # ONNX/ORT windows are clipped to the padded input: a window never extends past the pads
    v = (total / size.astype(_F32)).astype(_F32)
    q = np.rint((v / _F32(y_scale)).astype(_F32))
    return np.clip(q + _F32(y_zero_point), qmin, qmax).astype(np.int32)


def max_pool_codes(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                   dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """MaxPool on codes (NCHW); exact because dequantization is monotone increasing."""
    x = _nchw("MaxPool input", x)
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    pt, pl, pb, pr = padding
    n, c, h, w = x.shape
    oh = conv_output_size(h, kh, sh, pt, pb, dh)
    ow = conv_output_size(w, kw, sw, pl, pr, dw)
    if oh < 1 or ow < 1:
        raise EmulationError(f"MaxPool: empty output for input {h}x{w}, kernel {kernel}")
    low = np.iinfo(np.int64).min
    big = np.full((n, c, h + pt + pb, w + pl + pr), low, np.int64)
    big[:, :, pt:pt + h, pl:pl + w] = x
    out = np.full((n, c, oh, ow), low, np.int64)
    for i in range(kh):
        for j in range(kw):
            np.maximum(out, big[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                j * dw: j * dw + sw * (ow - 1) + 1: sw], out=out)
    if np.any(out == low):
        raise EmulationError("MaxPool: a window lies entirely in the padding")
    return out.astype(np.int32)


def activation_code_range(activation: str, scale: float, zero_point: int, qmin: int,
                          qmax: int) -> tuple[int, int]:
    """Code interval of a fused activation, TFLite's ``CalculateActivationRangeQuantized``:
    relu [max(qmin, zp), qmax]; relu6 upper bound min(qmax, zp + round_half_away(6 / s))
    with 6 / s in float32; none [qmin, qmax]."""
    if activation == "none":
        return qmin, qmax
    lo = max(qmin, int(zero_point))
    if activation == "relu":
        return lo, qmax
    if activation == "relu6":
        six = float(_F32(6.0) / _F32(scale))
        hi_code = int(zero_point) + int(math.copysign(math.floor(abs(six) + 0.5), six))
        return lo, min(qmax, hi_code)
    raise EmulationError(f"unknown fused activation {activation!r}; allowed: none, relu, relu6")


def clamp_codes(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """ReLU / ReLU6 in the code domain: clamp codes to [lo, hi]."""
    return np.clip(_codes("clamp input", x), lo, hi).astype(np.int32)
