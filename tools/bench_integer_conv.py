"""Benchmark: hwsim integer conv / linear vs ONNX Runtime QLinearConv/QLinearMatMul vs torch
fbgemm quantized ops, same layers, 1 thread, measured side by side in one run.

hwsim's weights are prepared once per layer (``prepare_weights``), as the Emulator does; the
timed call is accumulation + requantization of one batch. Prints the fastest of N repeats (ms)
of each (the minimum is the least disturbed by other
processes on a shared machine) and the ratio hwsim / runtime. torch's quantized-tensor API
is used only here, as a reference. Usage: python tools/bench_integer_conv.py [--repeats N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch

from hwsim.emulate import integer_ops
from hwsim.emulate.integer_ops import conv2d_accumulate, linear_accumulate, prepare_weights
from hwsim.emulate.onnx_export import OnnxQuantGraph
from hwsim.emulate.requant import make_requantizer

LAYERS = [  # name, kind, (N, C, H, W) or (N, K), out channels, kernel, groups, padding
    ("conv3x3 64x56x56->64", "conv", (1, 64, 56, 56), 64, 3, 1, 1),
    ("depthwise3x3 144x56x56", "conv", (1, 144, 56, 56), 144, 3, 144, 1),
    ("pointwise 64x56x56->256", "conv", (1, 64, 56, 56), 256, 1, 1, 0),
    ("linear 64x1024->1000", "linear", (64, 1024), 1000, 0, 1, 0),
]


def _best_ms(fn, repeats: int) -> float:
    fn()  # warm-up (numba/torch/ORT first-call costs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.min(times))


def _session(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def bench_layer(spec, repeats: int, rng: np.random.Generator) -> dict:
    name, kind, shape, o, k, groups, pad = spec
    xs, ws, ys, xz, yz = 0.02, np.full(o, 0.005, np.float32), 0.1, 128, 128
    x = rng.integers(0, 256, shape).astype(np.uint8)
    if kind == "conv":
        w = rng.integers(-128, 128, (o, shape[1] // groups, k, k)).astype(np.int8)
    else:
        w = rng.integers(-128, 128, (o, shape[1])).astype(np.int8)
    bias = rng.integers(-1000, 1000, o).astype(np.int32)
    rq = make_requantizer("fp32_multiply", xs, ws, ys, yz, 0, 255)

    # weights planned once per layer, as the Emulator does (not part of the timed call)
    pw = prepare_weights(w, 0, groups)
    if kind == "conv":
        def hwsim_run():
            acc = conv2d_accumulate(x, pw, x_zero_point=xz, bias=bias,
                                    padding=(pad, pad, pad, pad), groups=groups)
            return rq(acc.values, channel_axis=1)
        g = OnnxQuantGraph()
        g.add_output(g.add_qlinear_conv(g.add_input("x", np.uint8, shape), xs, xz, w, ws,
                                        np.zeros(o, np.int8), ys, yz, bias,
                                        padding=(pad, pad, pad, pad), groups=groups))
    else:
        def hwsim_run():
            acc = linear_accumulate(x, pw, x_zero_point=xz, bias=bias)
            return rq(acc.values, channel_axis=1)
        g = OnnxQuantGraph()
        g.add_output(g.add_qlinear_matmul(g.add_input("x", np.uint8, shape), xs, xz, w, ws,
                                          np.zeros(o, np.int8), ys, yz))
    sess = _session(g.model())

    def ort_run():
        return sess.run(None, {"x": x})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.quantized.engine = "fbgemm"
        qx = torch.quantize_per_tensor(torch.from_numpy((x.astype(np.float32) - xz) * xs), xs,
                                       xz, torch.quint8)
        wf = torch.from_numpy(w.astype(np.float32) * ws.reshape((-1,) + (1,) * (w.ndim - 1)))
        qw = torch.quantize_per_channel(wf, torch.from_numpy(ws.astype(np.float64)),
                                        torch.zeros(o, dtype=torch.long), 0, torch.qint8)
        bf = torch.from_numpy(bias.astype(np.float32) * xs * ws)
        if kind == "conv":
            from torch.ao.nn.quantized import functional as qf

            def torch_run():
                return qf.conv2d(qx, qw, bf, padding=pad, groups=groups, scale=ys,
                                 zero_point=yz)
        else:
            from torch.ao.nn.quantized import functional as qf

            def torch_run():
                return qf.linear(qx, qw, bf, scale=ys, zero_point=yz)

        t_torch = _best_ms(torch_run, repeats)
    t_hw = _best_ms(hwsim_run, repeats)
    t_ort = _best_ms(ort_run, repeats)
    path = (conv2d_accumulate(x, w, x_zero_point=xz, padding=(pad,) * 4, groups=groups).path
            if kind == "conv" else linear_accumulate(x, w, x_zero_point=xz).path)
    return dict(name=name, hwsim=t_hw, ort=t_ort, fbgemm=t_torch, path=path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--float-paths-only", action="store_true",
                    help="disable the int8 GEMM path (what CPUs without VNNI run)")
    args = ap.parse_args()
    if args.float_paths_only:
        integer_ops._INT8_GEMM = False
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, 1 thread, best of "
          f"{args.repeats}; uint8 activations x int8 per-channel weights")
    print(f"{'layer':28s} {'hwsim ms':>9s} {'ORT ms':>8s} {'fbgemm ms':>9s} "
          f"{'hw/ORT':>7s} {'hw/fbgemm':>9s}  exact path")
    for spec in LAYERS:
        r = bench_layer(spec, args.repeats, rng)
        print(f"{r['name']:28s} {r['hwsim']:9.2f} {r['ort']:8.2f} {r['fbgemm']:9.2f} "
              f"{r['hwsim'] / r['ort']:7.2f} {r['hwsim'] / r['fbgemm']:9.2f}  {r['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
