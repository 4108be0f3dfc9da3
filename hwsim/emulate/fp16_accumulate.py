"""FP16 accumulation: layers whose device adds products in half precision.

Declared arithmetic (no vendor documents the real reduction order, so this one is fixed and
stated): for each output, the reduction runs sequentially over k = (input channel, kernel row,
kernel column) in OIHW order; each product a*b of two fp16 values is rounded to fp16, then
each partial sum acc + p is rounded to fp16 (no fused multiply-add), starting from the fp16 bias.
Rounding follows the spec's fp16 options (subnormal flush, tininess, overflow, NaN).

Exactness of the rounding: a product of two fp16 values is exact in float32 (11 x 11 < 24
significant bits) and the sum of two fp16-grid values is exact in float64 unless their
exponents differ by more than 53 - 11 bits, where it is rounded once to float64; float64 ->
float32 -> fp16 rounding is then equivalent to one rounding to fp16 (p_64 >= 2 p_32 + 2 and
p_32 >= 2 p_16 + 2, so double rounding is innocuous).
"""

from __future__ import annotations

import numba
import numpy as np

from hwsim.quant.fp16 import fp16_bits_from_fp32_bits, fp32_bits_from_fp16_bits


@numba.njit(cache=True, inline="always")
def _r16(v: float, flush: bool, after: bool, sat: bool, nan_zero: bool, signed_zero: bool
         ) -> float:
    f = np.float32(v)
    u = np.array([f]).view(np.uint32)[0]
    h = fp16_bits_from_fp32_bits(u, flush, after, sat, nan_zero, signed_zero)
    back = fp32_bits_from_fp16_bits(h, flush, sat, nan_zero, signed_zero)
    return np.array([back]).view(np.float32)[0]


@numba.njit(cache=True, parallel=True)
def _gemm_fp16(cols: np.ndarray, w: np.ndarray, b: np.ndarray, out: np.ndarray, flush: bool,
               after: bool, sat: bool, nan_zero: bool, signed_zero: bool) -> None:
    # cols (P, K) fp16-grid values as float32; w (O, K); b (O,); out (P, O)
    p_count, k_count = cols.shape
    o_count = w.shape[0]
    for p in numba.prange(p_count):
        for o in range(o_count):
            acc = np.float64(b[o])
            for k in range(k_count):
                prod = _r16(np.float64(cols[p, k]) * np.float64(w[o, k]), flush, after, sat,
                            nan_zero, signed_zero)
                acc = _r16(acc + prod, flush, after, sat, nan_zero, signed_zero)
            out[p, o] = acc


def fp16_gemm(cols: np.ndarray, w: np.ndarray, b: np.ndarray, *, subnormals: str,
              tininess: str | None, overflow: str, nan: str, signed_zero: bool = True
              ) -> np.ndarray:
    """out[p, o] = sequential fp16 sum of bias[o] and cols[p, k] * w[o, k] (float32 result on
    the fp16 grid). All inputs must already be fp16-grid values held as float32."""
    out = np.empty((cols.shape[0], w.shape[0]), dtype=np.float32)
    _gemm_fp16(np.ascontiguousarray(cols, np.float32), np.ascontiguousarray(w, np.float32),
               np.ascontiguousarray(b, np.float32), out, subnormals == "flush",
               tininess == "after_rounding", overflow == "saturate", nan == "zero",
               bool(signed_zero))
    return out


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int, int, int], dilation: tuple[int, int], groups: int,
           out_hw: tuple[int, int]) -> np.ndarray:
    """Columns (G, N*OH*OW, C/G*kh*kw) in OIHW reduction order, zero padding."""
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    pt, pl, pb, pr = padding
    oh, ow = out_hw
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    taps = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            taps[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                  j * dw: j * dw + sw * (ow - 1) + 1: sw]
    cg = c // groups
    taps = taps.reshape(n, groups, cg, kh, kw, oh, ow).transpose(1, 0, 5, 6, 2, 3, 4)
    return np.ascontiguousarray(taps.reshape(groups, n * oh * ow, cg * kh * kw))
