"""Exhaustive check of hwsim's float32 -> float16 conversions over all 2^32 float32 patterns.

References, per mode (independent of hwsim's bit-level kernel):
  IEEE (keep/inf/propagate): numpy ``astype(np.float16)``. NaNs are compared by class (NaN,
    sign, quiet bit set); numpy keeps signalling NaNs signalling, hwsim quiets them like x86
    F16C / Arm FCVT, so payload differences are counted separately and not as mismatches.
  flush/before_rounding: numpy's result, with |x| < 2^-14 replaced by a zero of x's sign.
  flush/after_rounding: numpy's result, with |x| < 2^-14 - 2^-26 replaced by a zero (the
    inputs whose 11-bit rounding with an unbounded exponent stays below 2^-14).
  overflow saturate: numpy's +-Inf for non-NaN x replaced by +-65504; nan zero: NaN -> +0;
    signed_zero_on_flush false: flushed zeros are +0.
Also checks the widening of all 2^16 float16 patterns against numpy ``astype(np.float32)``.

Usage: python tools/check_fp16_exhaustive.py [--stride N]   (N > 1 checks every N-th chunk of
2^24 patterns plus the chunks holding every special region, ``CRITICAL_CHUNKS``; the default 1
checks all 2^32). Prints mismatch counts per mode (expected 0) and
the elapsed time. Exit status 1 if any mismatch.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from hwsim.quant.fp16 import fp16_round, fp16_widen

CHUNK = 1 << 24
MODES = {  # name: (subnormals, tininess, overflow, nan, signed_zero_on_flush)
    "ieee": ("keep", None, "inf", "propagate", True),
    "flush_before": ("flush", "before_rounding", "inf", "propagate", True),
    "flush_after": ("flush", "after_rounding", "inf", "propagate", True),
    "ascend_saturate_nan_zero": ("keep", None, "saturate", "zero", True),
    "flush_after_saturate_unsigned_zero": ("flush", "after_rounding", "saturate", "zero", False),
}
_MIN_NORMAL = np.float32(2.0 ** -14)
_AFTER_THRESHOLD = np.float32(2.0 ** -14 - 2.0 ** -26)  # exact in float32


def reference_bits(x: np.ndarray, ieee: np.ndarray, mode: tuple) -> np.ndarray:
    """Expected float16 bit patterns for float32 ``x`` under ``mode``, from numpy's IEEE
    result ``ieee`` (uint16) and the flush/saturate/NaN rules in the module docstring."""
    sub, tin, ovf, nan, signed_zero = mode
    r = ieee.copy()
    a = np.abs(x)
    isnan = np.isnan(x)
    sign = (x.view(np.uint32) >> np.uint32(16)).astype(np.uint16) & np.uint16(0x8000)
    if sub == "flush":
        tiny = (a < (_MIN_NORMAL if tin == "before_rounding" else _AFTER_THRESHOLD)) & (a != 0)
        r[tiny] = sign[tiny] if signed_zero else 0
    if ovf == "saturate":
        inf = ((r & 0x7FFF) == 0x7C00) & ~isnan
        r[inf] = sign[inf] | np.uint16(0x7BFF)
    if nan == "zero":
        r[isnan] = 0
    return r


_BASE = np.arange(CHUNK, dtype=np.uint32)
# chunks (top 8 bits) holding +-0 and float32 subnormals, the fp16 subnormal/normal border
# (2^-14 = 0x38800000), the overflow border (65520 = 0x477FF000) and Inf/NaN; always checked
CRITICAL_CHUNKS = (0x00, 0x38, 0x47, 0x7F, 0x80, 0xB8, 0xC7, 0xFF)


def check_chunk(start: int, counts: dict[str, int], nan_payload: list[int]) -> None:
    u = _BASE + np.uint32(start)
    x = u.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        ieee = x.astype(np.float16).view(np.uint16)
    isnan = np.isnan(x)
    for name, mode in MODES.items():
        got = fp16_round(x, *mode).view(np.uint16)
        want = reference_bits(x, ieee, mode)
        if mode[3] == "propagate":
            ok_nan = (((got & 0x7C00) == 0x7C00) & ((got & 0x03FF) != 0)
                      & ((got & 0x8000) == (want & 0x8000)) & ((got & 0x0200) != 0))
            counts[name] += int(np.count_nonzero(got[~isnan] != want[~isnan]))
            counts[name] += int(np.count_nonzero(~ok_nan[isnan]))
            if name == "ieee":
                nan_payload[0] += int(np.count_nonzero(got[isnan] != want[isnan]))
        else:
            counts[name] += int(np.count_nonzero(got != want))


def check_widen() -> int:
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got = fp16_widen(h).view(np.uint32)
    want = h.astype(np.float32).view(np.uint32)
    return int(np.count_nonzero(got != want))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stride", type=int, default=1,
                    help="check every N-th chunk of 2^24 patterns (1 = all 2^32)")
    args = ap.parse_args(argv)
    if args.stride < 1:
        ap.error("--stride must be >= 1")
    counts = dict.fromkeys(MODES, 0)
    nan_payload = [0]
    t0 = time.perf_counter()
    chunks = sorted(set(range(0, 1 << 8, args.stride)) | set(CRITICAL_CHUNKS))
    for i in chunks:
        check_chunk(i * CHUNK, counts, nan_payload)
    widen = check_widen()
    elapsed = time.perf_counter() - t0
    n = len(chunks) * CHUNK
    print(f"checked {n} float32 patterns ({n / 2 ** 32:.4f} of 2^32) in {elapsed:.1f} s")
    for name, c in counts.items():
        print(f"  {name:38s} mismatches: {c}")
    print(f"  {'widen fp16->fp32 (all 2^16)':38s} mismatches: {widen}")
    print(f"  (ieee NaN payload/quiet-bit differences from numpy, not mismatches: "
          f"{nan_payload[0]})")
    return 1 if widen or any(counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
