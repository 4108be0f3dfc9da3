"""Numba kernels of uniform affine quantization (quantize, dequantize, fused fake-quant).

Kernels take flat float32 / int64 arrays and plain scalars, never spec objects. A tensor is seen
as ``(outer, n_channels, inner)`` in C order: element ``n`` belongs to channel
``(n // inner) % n_channels``. Per-tensor quantization is ``n_channels = 1, inner = n``.

Arithmetic of one element ``x`` (float32), scale ``s`` (float32), zero point ``z`` (int64):

1. NaN -> the zero point code ``z`` (the code of 0.0). Decided here, before any cast: casting NaN
   to an integer is undefined behaviour in C and in LLVM.
2. Optional input clamp (SNPE "tf"): ``x = min(max(x, clip_min), clip_max)``, bounds float32.
3. Scaling in float32, exactly as the runtimes do it:
   divide: ``v = fl32(x / s)`` (ONNX Runtime QuantizeLinear);
   reciprocal_multiply: ``v = fl32(x * fl32(1 / s))`` (PyTorch fbgemm ``quantize_per_*``).
   (Each is one IEEE float32 operation; numba may evaluate it in float64 and round once to
   float32, which gives the identical correctly rounded result for one multiply or divide of
   float32 operands.)
4. Zero point: after rounding ``r = round(v) + z`` (ORT, torch), or before rounding
   ``r = round(fl32(v + z))`` (SNPE/AIMET ``round(x / delta + offset)``; the sum is rounded once
   to float32, as a float32 pipeline computes it — **assumption**, no public source says; this
   needs |z| <= 2^24 so that z itself is exact in float32, checked), or fused before rounding
   ``r = round(fl32(x * fl32(1 / s) + z))`` with one rounding of the exact ``x * inv + z``
   (PyTorch ``quantize_per_tensor``, fbgemm's fused multiply-add; reciprocal scaling only;
   computed in float64, where the product of two float32 is exact and the double rounding
   float64 -> float32 is innocuous since 53 >= 2 * 24 + 2).
   ``round`` is ``hwsim.quant.rounding.round_mode``; stochastic rounding draws
   ``u = uniform_from_counter(seed, n)`` with the flat element index ``n``, so results do not
   depend on the thread count.
5. Saturate: ``r`` is clamped to ``[qmin, qmax]`` in float64 before the integer cast, so +Inf ->
   qmax, -Inf -> qmin, and finite values beyond the range saturate.

Dequantize: ``fl32(fl32(q - z) * s)`` (float32, as ORT DequantizeLinear). Fake-quant fuses the
two; ``fake_quant(NaN) = 0.0``.
"""

from __future__ import annotations

import numba
import numpy as np

from hwsim.errors import QuantError
from hwsim.quant.rounding import RHAZ, RHU, RNE, STOCHASTIC, round_mode

# zero_point_add name -> kernel code
ZP_MODES = {"after_rounding": 0, "before_rounding": 1, "fused_before_rounding": 2}

# Elements per work item of the parallel loops (and the size below which the serial kernel is
# used): large enough to amortise the per-block integer divisions, small enough to balance.
BLOCK = 1 << 15


@numba.njit(cache=True, inline="always")
def _round_f32(v, mode, seed, n):
    """``round_mode(float64(v), mode, seed, n)`` for a float32 ``v``, in a form LLVM vectorizes.

    Same result as ``hwsim.quant.rounding`` for every float32 input (tested bit for bit):
    RNE: ``rint`` in the default IEEE rounding mode (round half to even) of the float32 value.
    RHAZ/RHU: ``fl64(v) +- 0.5`` is exact for float32 |v| >= 2^-28 (the bits of v and 0.5 span
      fewer than 53 places), so trunc/floor of it round v exactly; for |v| < 2^-28 the sum stays
      inside (0.5 - 2^-28, 0.5 + 2^-28) and truncates/floors to 0, the correct result. Integers
      (|v| >= 2^23) and +-inf come back unchanged; NaN stays NaN.
    STOCHASTIC: ``rounding.round_mode`` itself.
    """
    if mode == RNE:
        return np.float64(np.rint(v))
    if mode == RHAZ:
        w = np.float64(v)
        return np.trunc(w + (0.5 if w >= 0.0 else -0.5))
    if mode == RHU:
        return np.floor(np.float64(v) + 0.5)
    return round_mode(np.float64(v), STOCHASTIC, seed, np.uint64(n))


@numba.njit(cache=True, inline="always")
def _code(xv, s, inv, z, zb, za, fused, qmin_f, qmax_f, mode, divide, cmin, cmax, seed, n):
    """The integer code of one float32 value (steps 1-5 of the module docstring).

    Branch-free in the data so that loops vectorize: without an input clamp ``cmin``/``cmax``
    are -inf/+inf; the zero point enters as ``zb`` before rounding and ``za`` after it (one of
    them is 0: ``fl32(v + 0) == v``). ``zb`` is float32, exact for |z| <= 2^24.
    """
    xc = min(max(xv, cmin), cmax)
    if divide:
        v = np.float32(xc / s)
    else:
        v = np.float32(xc * inv)
    t = v + zb  # float32 add; zb is exact in float32 (|zero point| <= 2^24, checked)
    if fused:
        t = np.float32(np.float64(xc) * np.float64(inv) + np.float64(z))
    r = _round_f32(t, mode, seed, n) + za
    r = min(max(r, qmin_f), qmax_f)
    # NaN -> the zero point, selected before the integer cast (casting NaN is undefined).
    return z if xv != xv else np.int64(r)


def _make_kernels(mode: int, divide: bool, fake: bool):
    """Serial and parallel kernels for one rounding mode and scaling, producing codes (int64) or,
    if ``fake``, float32 fake-quant values. The three are compile-time constants: one loop per
    function without data-independent branches lets LLVM vectorize it (numba caches closures
    per value of the constants).
    """

    @numba.njit(cache=True, inline="always")
    def block(x, out, b, scale, inv_scale, zp, n_channels, inner, qmin, qmax, zp_mode, cmin,
              cmax, seed):
        start = b * BLOCK
        stop = min(x.size, start + BLOCK)
        qmin_f = np.float64(qmin)
        qmax_f = np.float64(qmax)
        i = start
        while i < stop:
            row = i // inner
            c = row % n_channels
            row_end = min(stop, (row + 1) * inner)
            s = scale[c]
            inv = inv_scale[c]
            z = zp[c]
            zb = np.float32(z) if zp_mode == 1 else np.float32(0.0)
            za = np.float64(z) if zp_mode == 0 else 0.0
            fused = zp_mode == 2
            # Slices indexed from 0: LLVM then knows the index is non-negative (no wraparound
            # select) and vectorizes the loop.
            xs = x[i:row_end]
            os = out[i:row_end]
            for k in range(xs.size):
                q = _code(xs[k], s, inv, z, zb, za, fused, qmin_f, qmax_f, mode, divide, cmin,
                          cmax, seed, i + k)
                if fake:
                    os[k] = np.float32(np.float32(q - z) * s)
                else:
                    os[k] = q
            i = row_end

    @numba.njit(cache=True)
    def serial(x, out, scale, inv_scale, zp, n_channels, inner, qmin, qmax, zp_mode, cmin,
               cmax, seed):
        for b in range((x.size + BLOCK - 1) // BLOCK):
            block(x, out, b, scale, inv_scale, zp, n_channels, inner, qmin, qmax, zp_mode,
                  cmin, cmax, seed)

    @numba.njit(cache=True, parallel=True)
    def parallel(x, out, scale, inv_scale, zp, n_channels, inner, qmin, qmax, zp_mode, cmin,
                 cmax, seed):
        for b in numba.prange((x.size + BLOCK - 1) // BLOCK):
            block(x, out, b, scale, inv_scale, zp, n_channels, inner, qmin, qmax, zp_mode,
                  cmin, cmax, seed)

    return serial, parallel


_KERNELS = {(m, d, f): _make_kernels(m, d, f) for m in (RNE, RHAZ, RHU, STOCHASTIC)
            for d in (False, True) for f in (False, True)}


@numba.njit(cache=True, inline="always")
def _dequantize_block(codes, out, b, scale, zp, n_channels, inner):
    start = b * BLOCK
    stop = min(codes.size, start + BLOCK)
    i = start
    while i < stop:
        row = i // inner
        c = row % n_channels
        row_end = min(stop, (row + 1) * inner)
        s = scale[c]
        z = zp[c]
        cs = codes[i:row_end]
        os = out[i:row_end]
        for k in range(cs.size):
            os[k] = np.float32(np.float32(cs[k] - z) * s)
        i = row_end


@numba.njit(cache=True)
def _dequantize_serial(codes, out, scale, zp, n_channels, inner):
    for b in range((codes.size + BLOCK - 1) // BLOCK):
        _dequantize_block(codes, out, b, scale, zp, n_channels, inner)


@numba.njit(cache=True, parallel=True)
def _dequantize_parallel(codes, out, scale, zp, n_channels, inner):
    for b in numba.prange((codes.size + BLOCK - 1) // BLOCK):
        _dequantize_block(codes, out, b, scale, zp, n_channels, inner)


def _use_parallel(n: int) -> bool:
    return n > BLOCK and numba.get_num_threads() > 1


def reciprocal_scale(scale: np.ndarray) -> np.ndarray:
    """``fl32(1 / s)`` per channel, the float32 reciprocal PyTorch multiplies by."""
    with np.errstate(divide="ignore", over="ignore"):
        return (np.float32(1.0) / scale.astype(np.float32)).astype(np.float32)


def quantize_flat(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, n_channels: int,
                  inner: int, qmin: int, qmax: int, mode: int, divide: bool, zp_mode: int,
                  clip_min: float | None, clip_max: float | None, seed: int,
                  fake: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Codes (int64) of the flat float32 array ``x``, or float32 fake-quant values if ``fake``.

    ``scale`` float32 and ``zero_point`` int64 have ``n_channels`` entries; ``clip_min``/
    ``clip_max`` are rounded to float32 (RNE) before clamping; ``mode`` is a rounding mode code.
    ``out``: optional preallocated flat C-contiguous result (int64, or float32 if ``fake``).
    Callers validate shapes and parameters (``hwsim.quant.uniform`` does).
    """
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    scale = np.ascontiguousarray(scale, dtype=np.float32).reshape(-1)
    zero_point = np.ascontiguousarray(zero_point, dtype=np.int64).reshape(-1)
    inv = reciprocal_scale(scale)
    clip = clip_min is not None
    cmin = np.float32(clip_min if clip else -np.inf)
    cmax = np.float32(clip_max if clip else np.inf)
    if zp_mode not in ZP_MODES.values():
        raise QuantError(f"unknown zero point mode {zp_mode}; allowed: {ZP_MODES}")
    if zp_mode == 2 and divide:
        raise QuantError("zero_point_add 'fused_before_rounding' needs reciprocal_multiply "
                         "scaling (a fused multiply-add)")
    if zp_mode == 1 and zero_point.size and np.abs(zero_point).max() > (1 << 24):
        raise QuantError("zero_point_add 'before_rounding' adds the zero point in float32; "
                         f"zero points must satisfy |z| <= 2^24, got {np.abs(zero_point).max()}")
    if (mode, bool(divide), bool(fake)) not in _KERNELS:
        raise QuantError(f"unknown rounding mode code {mode}; allowed: "
                         f"{[RNE, RHAZ, RHU, STOCHASTIC]}")
    dtype = np.float32 if fake else np.int64
    if out is None:
        out = np.empty(x.size, dtype=dtype)
    elif out.dtype != dtype or out.size != x.size or out.ndim != 1 or not out.flags.c_contiguous:
        raise QuantError(f"out must be a flat C-contiguous {np.dtype(dtype)} array of "
                         f"{x.size} elements, got {out.dtype} shape {out.shape}")
    serial, parallel = _KERNELS[(mode, bool(divide), bool(fake))]
    kernel = parallel if _use_parallel(x.size) else serial
    kernel(x, out, scale, inv, zero_point, np.int64(n_channels), np.int64(max(inner, 1)),
           np.int64(qmin), np.int64(qmax), np.int64(zp_mode), cmin, cmax, np.uint64(seed))
    return out


def dequantize_flat(codes: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
                    n_channels: int, inner: int) -> np.ndarray:
    """float32 ``fl32(fl32(q - z) * s)`` of the flat int64 array ``codes``."""
    codes = np.ascontiguousarray(codes, dtype=np.int64).reshape(-1)
    scale = np.ascontiguousarray(scale, dtype=np.float32).reshape(-1)
    zero_point = np.ascontiguousarray(zero_point, dtype=np.int64).reshape(-1)
    out = np.empty(codes.size, dtype=np.float32)
    kernel = _dequantize_parallel if _use_parallel(codes.size) else _dequantize_serial
    kernel(codes, out, scale, zero_point, np.int64(n_channels), np.int64(max(inner, 1)))
    return out
