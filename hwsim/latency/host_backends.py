"""Runtimes on this machine that can time an op: ONNX Runtime CPU, torch eager CPU, torch CUDA.

A backend turns an op key (or a whole ONNX model) into a runner ``run(n) -> seconds`` that
executes it ``n`` times back to back on prepared inputs and returns the elapsed wall time
(CUDA: the time between two CUDA events, synchronized). Thread counts are pinned when the
backend is created.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

import numpy as np
import onnx

from hwsim.errors import LatencyError
from hwsim.latency.onnx_builder import op_model
from hwsim.latency.op_key import OpKey

Runner = Callable[[int], float]
HOST_BACKENDS = ("host-ort", "host-torch", "host-cuda")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class HostBackend(Protocol):
    name: str
    threads: int

    def op_runner(self, key: OpKey) -> Runner: ...

    def model_runner(self, model: onnx.ModelProto) -> Runner: ...

    def empty_runner(self) -> Runner: ...

    def versions(self) -> str: ...


def _empty_model() -> onnx.ModelProto:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "empty",
                                   [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _input_arrays(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if not dims or any(d <= 0 for d in dims):
            raise LatencyError(f"model input {vi.name!r} needs a static shape, got {dims}")
        out[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return out


class OrtBackend:
    """ONNX Runtime CPU execution provider; intra-op threads pinned, inter-op 1, sequential
    execution, default graph optimizations (ORT_ENABLE_ALL), inputs/outputs pre-bound with
    IOBinding so no per-run copies are timed."""

    name = "host-ort"

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.threads = int(threads)

    def _session(self, model: onnx.ModelProto):  # noqa: ANN202 (onnxruntime type)
        ort = self._ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        try:
            return ort.InferenceSession(model.SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise LatencyError(f"ONNX Runtime cannot load the model: {err}") from None

    def model_runner(self, model: onnx.ModelProto) -> Runner:
        ort = self._ort
        sess = self._session(model)
        binding = sess.io_binding()
        keep = []
        for name, arr in _input_arrays(model).items():
            ov = ort.OrtValue.ortvalue_from_numpy(arr)
            keep.append(ov)
            binding.bind_ortvalue_input(name, ov)
        for out in sess.get_outputs():
            binding.bind_output(out.name, "cpu")
        sess.run_with_iobinding(binding)  # allocates the outputs once
        outs = binding.get_outputs()
        binding.clear_binding_outputs()
        for meta, ov in zip(sess.get_outputs(), outs, strict=True):
            keep.append(ov)
            binding.bind_ortvalue_output(meta.name, ov)
        run_with = sess.run_with_iobinding

        def run(n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                run_with(binding)
            return time.perf_counter() - t0

        run.keepalive = (sess, binding, keep)  # type: ignore[attr-defined]
        return run

    def op_runner(self, key: OpKey) -> Runner:
        return self.model_runner(op_model(key))

    def empty_runner(self) -> Runner:
        return self.model_runner(_empty_model())

    def versions(self) -> str:
        return (f"onnxruntime={self._ort.__version__};onnx={onnx.__version__};"
                f"numpy={np.__version__};python={platform.python_version()};cpu={cpu_model()}")


class TorchBackend:
    """torch eager, float32, ``torch.inference_mode``; ``torch.set_num_threads(threads)``.
    ``cuda=True``: on the first CUDA device, timed with CUDA events."""

    def __init__(self, threads: int = 1, cuda: bool = False) -> None:
        import torch

        self._torch = torch
        self.threads = int(threads)
        self.cuda = cuda
        self.name = "host-cuda" if cuda else "host-torch"
        if cuda and not torch.cuda.is_available():
            raise LatencyError("host-cuda: torch.cuda.is_available() is False on this machine")
        torch.set_num_threads(self.threads)

    def _runner(self, fn: Callable[..., object], inputs: list[object]) -> Runner:
        torch = self._torch
        if not self.cuda:
            def run(n: int) -> float:
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    for _ in range(n):
                        fn(*inputs)
                    return time.perf_counter() - t0
            return run
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def run_cuda(n: int) -> float:
            with torch.inference_mode():
                start.record()
                for _ in range(n):
                    fn(*inputs)
                end.record()
                end.synchronize()
            return start.elapsed_time(end) / 1000.0

        return run_cuda

    def op_runner(self, key: OpKey) -> Runner:
        from hwsim.latency.torch_ops import op_module

        torch = self._torch
        module, shapes = op_module(key)
        device = "cuda" if self.cuda else "cpu"
        module = module.to(device).eval()
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn((1, *s), generator=gen).to(device) for s in shapes]
        return self._runner(module, inputs)

    def model_runner(self, model: onnx.ModelProto) -> Runner:
        raise LatencyError(f"{self.name}: whole-model timing takes a torch module; ONNX models "
                           f"are timed with host-ort")

    def empty_runner(self) -> Runner:
        torch = self._torch
        x = torch.zeros(1, 1, device="cuda" if self.cuda else "cpu")
        return self._runner(lambda t: t, [x])

    def versions(self) -> str:
        torch = self._torch
        text = (f"torch={torch.__version__};numpy={np.__version__};"
                f"python={platform.python_version()};cpu={cpu_model()}")
        if self.cuda:
            text += f";cuda={torch.version.cuda};gpu={torch.cuda.get_device_name(0)}"
        return text


def make_backend(name: str, threads: int = 1) -> HostBackend:
    """host-ort, host-torch or host-cuda with ``threads`` CPU threads."""
    if threads < 1:
        raise LatencyError(f"threads must be >= 1, got {threads}")
    if name == "host-ort":
        return OrtBackend(threads)
    if name == "host-torch":
        return TorchBackend(threads)
    if name == "host-cuda":
        return TorchBackend(threads, cuda=True)
    raise LatencyError(f"unknown host backend {name!r}; allowed: {', '.join(HOST_BACKENDS)}")
