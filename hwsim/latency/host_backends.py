"""Runtimes on this machine that can time an op: ONNX Runtime CPU, torch eager CPU, torch CUDA.

A backend turns an op key (or a whole ONNX model) into a runner ``run(n) -> seconds`` that
executes it ``n`` times back to back on prepared inputs and returns the elapsed wall time
(CUDA: the time between two CUDA events, synchronized). Thread counts are pinned when the
backend is created.

``copies=K`` makes a runner that cycles through K independent instances of the op (own
weights, own input and output buffers), so that with K large enough the working set of
consecutive runs exceeds the last-level cache (the ``wall-cold`` method). ONNX Runtime can also
report the time spent inside each kernel (its profiler): ``OrtBackend.kernel_time_runner``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from hwsim.errors import LatencyError
from hwsim.latency.onnx_builder import op_model
from hwsim.latency.op_key import OpKey

Runner = Callable[[int], float]
HOST_BACKENDS = ("host-ort", "host-torch", "host-cuda")
# ONNX Runtime's NCHWc layout conversions (domain com.microsoft.nchwc). ORT inserts them at the
# boundary of a model whose convolutions it runs in the blocked NCHWc layout; inside a network,
# consecutive NCHWc kernels pass blocked tensors to each other and pay them once per network.
ORT_LAYOUT_OPS = ("ReorderInput", "ReorderOutput")
# ORT's profiler truncates each kernel duration to whole microseconds (duration_cast in
# TimeDiffMicroSeconds); adding half a microsecond per kernel and run removes the expected bias.
ORT_PROFILE_TRUNCATION_MS = 0.5e-3


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


@lru_cache(maxsize=1)
def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache of cpu0 (bytes), from /sys/devices/system/cpu/cpu0/cache;
    32 MiB when the folder cannot be read (an assumption, stated in rows via ``copies``)."""
    best = 0
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in root.glob("index*"):
            text = (index / "size").read_text(encoding="ascii").strip()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            best = max(best, int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        best = 0
    return best or 32 << 20


def cold_copies(working_set_bytes: int, max_copies: int = 64) -> int:
    """Instances to cycle through so that consecutive runs touch twice the last-level cache,
    at most ``max_copies`` (ops smaller than 2 x LLC / max_copies then stay partly cached)."""
    if working_set_bytes <= 0:
        raise LatencyError(f"working set must be positive, got {working_set_bytes} bytes")
    need = -(-2 * last_level_cache_bytes() // working_set_bytes)
    return max(1, min(max_copies, need))


def model_bytes(model: onnx.ModelProto) -> int:
    """Bytes of a float32 model's weights, inputs and outputs (its working set)."""
    n = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    for vi in (*model.graph.input, *model.graph.output):
        n += int(np.prod([d.dim_value for d in vi.type.tensor_type.shape.dim]))
    return 4 * n


class KernelTimeRunner(Protocol):
    def __call__(self, n: int) -> float: ...

    def kernel_ms(self, last_runs: int) -> np.ndarray: ...


class HostBackend(Protocol):
    name: str
    threads: int
    methods: tuple[str, ...]
    default_method: str

    def op_runner(self, key: OpKey, copies: int = 1) -> Runner: ...

    def op_bytes(self, key: OpKey) -> int: ...

    def model_runner(self, model: onnx.ModelProto, copies: int = 1) -> Runner: ...

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
    methods = ("kernel", "wall", "wall-cold")
    # chosen by measurement (tools/bench_lut_vs_measured.py --method): see measure.py
    default_method = "kernel"

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.threads = int(threads)

    def _session(self, model: onnx.ModelProto, profile_prefix: str | None = None):  # noqa: ANN202
        ort = self._ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if profile_prefix is not None:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        try:
            return ort.InferenceSession(model.SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise LatencyError(f"ONNX Runtime cannot load the model: {err}") from None

    def _bind(self, sess, seed: int, model: onnx.ModelProto) -> tuple[object, list]:  # noqa: ANN001
        ort = self._ort
        binding = sess.io_binding()
        keep = []
        for name, arr in _input_arrays(model, seed).items():
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
        return binding, keep

    def model_runner(self, model: onnx.ModelProto, copies: int = 1,
                     profile_prefix: str | None = None) -> Runner:
        """Runner of ``model``; ``copies`` sessions (own weights and buffers) run in turn."""
        if copies < 1:
            raise LatencyError(f"copies must be >= 1, got {copies}")
        sessions = [self._session(model, profile_prefix) for _ in range(copies)]
        bound = [self._bind(sess, seed, model) for seed, sess in enumerate(sessions)]
        pairs = [(sess.run_with_iobinding, binding)
                 for sess, (binding, _) in zip(sessions, bound, strict=True)]

        if copies == 1:
            run_with, binding = pairs[0]

            def run(n: int) -> float:
                t0 = time.perf_counter()
                for _ in range(n):
                    run_with(binding)
                return time.perf_counter() - t0
        else:
            cursor = [0]

            def run(n: int) -> float:
                i = cursor[0]
                t0 = time.perf_counter()
                for _ in range(n):
                    run_with, binding = pairs[i]
                    run_with(binding)
                    i = (i + 1) % copies
                elapsed = time.perf_counter() - t0
                cursor[0] = i
                return elapsed

        run.keepalive = (sessions, bound)  # type: ignore[attr-defined]
        # with one intra-op thread ORT computes on the calling thread (measure.py: preemption)
        run.caller_thread_only = self.threads == 1  # type: ignore[attr-defined]
        return run

    def kernel_time_runner(self, model: onnx.ModelProto) -> KernelTimeRunner:
        """Runner whose ``kernel_ms(last_runs)`` gives, per run, the time ONNX Runtime's
        profiler recorded inside the model's kernels, without the layout conversions
        (``ORT_LAYOUT_OPS``) ORT adds at the model boundary, in ms (truncation-corrected).
        ``kernel_ms`` ends profiling: call it once, after the last run."""
        tmp = tempfile.mkdtemp(prefix="hwsim-ortprof-")
        run = self.model_runner(model, profile_prefix=os.path.join(tmp, "p"))
        sess = run.keepalive[0][0]  # type: ignore[attr-defined]

        def kernel_ms(last_runs: int) -> np.ndarray:
            path = sess.end_profiling()
            try:
                with open(path, encoding="utf-8") as fh:
                    events = json.load(fh)
            finally:
                for f in os.listdir(tmp):
                    os.unlink(os.path.join(tmp, f))
                os.rmdir(tmp)
            return _kernel_ms_per_run(events, last_runs, path)

        run.kernel_ms = kernel_ms  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    def optimized_ops(self, model: onnx.ModelProto) -> list[str]:
        """Op types of the graph ONNX Runtime actually runs for ``model`` after its graph
        optimizations (``SessionOptions.optimized_model_filepath``), layout conversions
        (``ORT_LAYOUT_OPS``) left out; fused nodes show their activation, e.g.
        ``Conv[Clip]``, and an NCHWc convolution with a summed input ``+Sum``."""
        ort = self._ort
        with tempfile.TemporaryDirectory(prefix="hwsim-ortopt-") as tmp:
            so = ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.log_severity_level = 3
            so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
            try:
                ort.InferenceSession(model.SerializeToString(), so,
                                     providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime raises its own exception types
                raise LatencyError(f"ONNX Runtime cannot load the model: {err}") from None
            optimized = onnx.load(so.optimized_model_filepath)
        out = []
        for node in optimized.graph.node:
            if node.op_type in ORT_LAYOUT_OPS:
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            text = node.op_type
            act = attrs.get("activation")
            if act:
                text += f"[{act.decode() if isinstance(act, bytes) else act}]"
            if node.domain == "com.microsoft.nchwc" and node.op_type == "Conv" and \
                    len(node.input) > 3 and node.input[3]:
                text += "+Sum"
            out.append(text)
        return out

    def op_runner(self, key: OpKey, copies: int = 1) -> Runner:
        return self.model_runner(op_model(key), copies)

    def op_bytes(self, key: OpKey) -> int:
        return model_bytes(op_model(key))

    def empty_runner(self) -> Runner:
        return self.model_runner(_empty_model())

    def versions(self) -> str:
        return (f"onnxruntime={self._ort.__version__};onnx={onnx.__version__};"
                f"numpy={np.__version__};python={platform.python_version()};cpu={cpu_model()}")


def _kernel_ms_per_run(events: list, last_runs: int, where: str) -> np.ndarray:
    """Per-run sums of non-layout kernel durations of an ORT profile (ms), last runs only.

    ORT records a run's node events before the run's ``model_run`` session event."""
    runs: list[float] = []
    acc, kernels = 0.0, 0
    for ev in events:
        cat, name = ev.get("cat"), ev.get("name", "")
        if cat == "Node" and name.endswith("_kernel_time"):
            if ev.get("args", {}).get("op_name") not in ORT_LAYOUT_OPS:
                acc += ev["dur"] * 1e-3 + ORT_PROFILE_TRUNCATION_MS
                kernels += 1
        elif cat == "Session" and name == "model_run":
            runs.append(acc)
            acc = 0.0
    if len(runs) < last_runs:
        raise LatencyError(f"{where}: ORT profile holds {len(runs)} runs, expected at least "
                           f"{last_runs} (profiler event limit reached?)")
    if kernels == 0:
        raise LatencyError(f"{where}: ORT profile has no kernel other than layout conversions")
    return np.array(runs[len(runs) - last_runs:])


class TorchBackend:
    """torch eager, float32, ``torch.inference_mode``; ``torch.set_num_threads(threads)``.
    ``cuda=True``: on the first CUDA device, timed with CUDA events."""

    methods = ("wall", "wall-cold")
    default_method = "wall"

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
            # torch at one thread computes on the calling thread (measure.py: preemption)
            run.caller_thread_only = self.threads == 1  # type: ignore[attr-defined]
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

    def op_runner(self, key: OpKey, copies: int = 1) -> Runner:
        """Runner of ``key``; ``copies`` modules (own weights and inputs) run in turn."""
        from hwsim.latency.torch_ops import op_module

        torch = self._torch
        if copies < 1:
            raise LatencyError(f"copies must be >= 1, got {copies}")
        device = "cuda" if self.cuda else "cpu"
        instances = []
        for seed in range(copies):
            torch.manual_seed(seed)
            module, shapes = op_module(key)
            gen = torch.Generator().manual_seed(seed)
            inputs = [torch.randn((1, *s), generator=gen).to(device) for s in shapes]
            instances.append((module.to(device).eval(), inputs))
        if copies == 1:
            return self._runner(*instances[0])
        cursor = [0]

        def cycle(*_: object) -> object:
            module, inputs = instances[cursor[0]]
            cursor[0] = (cursor[0] + 1) % copies
            return module(*inputs)

        return self._runner(cycle, [])

    def op_bytes(self, key: OpKey) -> int:
        from hwsim.latency.torch_ops import op_module

        module, shapes = op_module(key)
        n = sum(p.numel() for p in module.parameters())
        n += sum(int(np.prod(s)) for s in shapes) + int(np.prod(key.output))
        return 4 * n

    def model_runner(self, model: onnx.ModelProto, copies: int = 1) -> Runner:
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


def default_method(name: str) -> str:
    """The measurement method a backend uses unless told otherwise (without creating it)."""
    backend_cls = {"host-ort": OrtBackend, "host-torch": TorchBackend, "host-cuda": TorchBackend}
    if name not in backend_cls:
        raise LatencyError(f"unknown host backend {name!r}; allowed: {', '.join(HOST_BACKENDS)}")
    return backend_cls[name].default_method
