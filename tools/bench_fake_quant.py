"""Benchmark: per-channel int8 fake-quant of a 64M-element float32 tensor (shape (64, 2^20),
axis 0), hwsim vs ``torch.fake_quantize_per_channel_affine`` vs a plain numpy copy
(``np.copyto`` into a preallocated, already touched array: the memory-bandwidth limit; and
``x.copy()``, which allocates its result like the allocating ``fake_quant`` call does).

Prints elements/s and ratios measured side by side in one run, single-threaded and with all
cores; each figure is the best of ``--repeat`` runs. hwsim runs in reciprocal-multiply mode with
zero point 0, the semantics of torch's kernel, and the script first checks that its output
equals torch's bit for bit and a subsample equals the exact oracle (tests/oracles).

    python tools/bench_fake_quant.py [--repeat 3] [--check 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

from hwsim.devices.spec import UniformNumerics
from hwsim.quant.uniform import UniformQuantizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from oracles import uniform_oracle as oracle  # noqa: E402

SHAPE = (64, 1 << 20)


def best_time(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", type=int, default=2000, help="elements checked vs the oracle")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(SHAPE, dtype=np.float32)
         * rng.uniform(0.1, 4.0, size=(SHAPE[0], 1)).astype(np.float32))
    n = x.size
    qz = UniformQuantizer(UniformNumerics(bits=8, signed=True, symmetric=True,
                                          granularity="per_channel", axis=0, rounding="rne",
                                          scaling="reciprocal_multiply"))
    qp = qz.calibrate(x)
    xt = torch.from_numpy(x)
    st = torch.from_numpy(qp.scale)
    zt = torch.zeros(SHAPE[0], dtype=torch.int32)
    dst = np.empty_like(x)
    np.copyto(dst, x)  # touch the pages once: the copy measures bandwidth, not page faults

    # bit-exactness first: the speed figures are only meaningful for a correct kernel
    y = qz.fake_quant(x, qp)
    yt = torch.fake_quantize_per_channel_affine(xt, st, zt, 0, -128, 127).numpy()
    mismatches_torch = int(np.count_nonzero(y.view(np.int32) != yt.view(np.int32)))
    idx = rng.choice(n, size=args.check, replace=False)
    flat, yflat = x.reshape(-1), y.reshape(-1)
    mismatches_oracle = 0
    for i in idx:
        c = int(i) // SHAPE[1]
        s = float(qp.scale[c])
        q = oracle.quantize_value(float(flat[i]), s, 0, -128, 127, oracle.RNE, False, False)
        mismatches_oracle += oracle.dequantize_value(q, s, 0) != float(yflat[i])
    print(f"tensor {SHAPE} float32 ({n / 1e6:.0f}M elements), per-channel axis 0, int8")
    print(f"bit-exactness: {mismatches_torch} values differ from torch; "
          f"{mismatches_oracle} of {args.check} sampled values differ from the exact oracle")

    cores = os.cpu_count() or 1
    y_out = np.empty_like(x)
    y_out.fill(0.0)  # touched, like the copy's destination
    print("hwsim: fake_quant(x, qp) allocating its result; hwsim(out): into a preallocated out=")
    print(f"{'threads':>7} {'hwsim':>7} {'hwsim(out)':>10} {'torch':>6} {'copy':>6} "
          f"{'copy(alloc)':>11}  (Melem/s) {'hwsim/torch':>11} {'hwsim(out)/torch':>16} "
          f"{'hwsim/copy(alloc)':>17} {'hwsim(out)/copy':>15}")
    for threads in sorted({1, cores}):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        torch.set_num_threads(threads)
        qz.fake_quant(x[:2], qp.__class__(scale=qp.scale[:2], zero_point=qp.zero_point[:2],
                                          qmin=qp.qmin, qmax=qp.qmax, axis=0))  # warm-up
        t_h = best_time(lambda: qz.fake_quant(x, qp), args.repeat)
        t_o = best_time(lambda: qz.fake_quant(x, qp, out=y_out), args.repeat)
        t_t = best_time(lambda: torch.fake_quantize_per_channel_affine(xt, st, zt, 0, -128, 127),
                        args.repeat)
        t_c = best_time(lambda: np.copyto(dst, x), args.repeat)
        t_a = best_time(lambda: x.copy(), args.repeat)
        print(f"{threads:>7} {n / t_h / 1e6:>7.0f} {n / t_o / 1e6:>10.0f} {n / t_t / 1e6:>6.0f} "
              f"{n / t_c / 1e6:>6.0f} {n / t_a / 1e6:>11.0f}  {'':9}{t_t / t_h:>11.1f} "
              f"{t_t / t_o:>16.1f} {t_a / t_h:>17.2f} {t_c / t_o:>15.2f}")
    print("(shared, noisy machine: figures vary run to run; the ratios are from this run)")
    same = np.array_equal(y_out.view(np.int32), y.view(np.int32))
    print(f"out= result identical to the allocating call: {same}")
    return 0 if mismatches_torch == 0 and mismatches_oracle == 0 and same else 1


if __name__ == "__main__":
    raise SystemExit(main())
