"""Timing one op configuration on this machine until its median is stable.

Procedure (``TimingPolicy``): calibrate an inner loop so one sample lasts at least
``min_sample_s`` (timer and Python overhead amortised), run ``warmup_samples`` untimed samples,
then collect samples in batches until the 95 % confidence interval of the median, from order
statistics (distribution-free: ranks n/2 -+ 0.98 sqrt(n)), has a relative half-width below
``rel_tol``, or ``max_samples`` / ``budget_s`` is reached (the row then records its larger
``ci_rel``; nothing is hidden).

Preempted samples (shared machines): with one thread, ONNX Runtime and torch CPU run the op on
the calling thread, so a sample during which that thread was descheduled shows as CPU time
(``time.thread_time``) well below wall time. Such samples are dropped when the runner declares
``caller_thread_only`` (host backends at 1 thread): a sample is kept when thread CPU time /
wall time >= ``min_cpu_share`` (0.9). The stopping rule counts kept samples; a measurement
with fewer than 3 kept samples fails (the key is reported, not written), and the row's note
records ``kept=K/N``. Measured on this 2-core VM at load average ~9: a 3x3 conv alternated
between 2.5 ms (CPU/wall 1.00) and 6.5 ms (CPU/wall 0.39) per sample; its CPU time stayed at
2.5-2.6 ms. ``TimingPolicy.clock = "thread-cpu"`` times samples by the calling thread's CPU
time instead (every sample kept): for whole networks on a loaded machine, whose runs are longer
than a scheduler time slice and so are almost never free of preemption (MobileNetV2 at load ~7:
0 of 225 wall-clock samples kept).

What one sample measures is the row's ``method`` (``METHODS``):

``wall``
    wall time per run of the op's one-kernel model, same weights and buffers every run (caches
    warm), minus the cost of invoking an empty model of the backend (``overhead_ms``, measured
    once per backend with the same policy: a network pays it once, not once per op).
``wall-cold``
    as ``wall``, but cycling through K independent instances of the op (own weights, inputs and
    outputs) with K * working set >= 2 x the last-level cache, so every run starts from memory
    (``note``: ``copies=K``).
``kernel`` (host-ort)
    the time ONNX Runtime's profiler records inside the op's kernels, leaving out the NCHWc
    layout conversions ORT inserts at the boundary of a one-op model (inside a network blocked
    tensors flow from kernel to kernel without them), plus half a microsecond per kernel for the
    profiler's truncation to whole microseconds. Stopping rule as above, on the wall time of the
    profiled runs; the samples are the kernel times of exactly the timed runs.

Measured on this machine (2-core AMD EPYC VM, 1 thread, ORT 1.32; predicted/measured
end-to-end for MobileNetV2, ResNet-18 and 4 random ProxylessNAS networks, kernel keys under the
ORT fusion rules): ``wall`` 0.96-1.16 (boundary conversions counted in every conv),
``wall-cold`` 1.08-1.93 (networks hand warm activations from kernel to kernel), ``kernel``
0.93-0.98. ``kernel`` is the default for host-ort; the others stay selectable.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from hwsim.errors import LatencyError
from hwsim.latency.host_backends import HostBackend, Runner, cold_copies
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import MEASURE_METHODS, LatencyRow

METHODS = MEASURE_METHODS
# What a sample's time is: wall time (perf_counter), or the measuring thread's CPU time
# (thread_time; only for runners that compute on the calling thread; every sample is kept).
CLOCKS = ("wall", "thread-cpu")


@dataclass(frozen=True)
class TimingPolicy:
    """Stopping rule of a measurement; times in seconds."""

    rel_tol: float = 0.02
    min_samples: int = 15
    max_samples: int = 300
    batch: int = 5
    warmup_samples: int = 3
    min_sample_s: float = 0.002
    budget_s: float = 3.0
    min_cpu_share: float = 0.9
    clock: str = "wall"

    def __post_init__(self) -> None:
        if not 0 < self.rel_tol < 1:
            raise LatencyError(f"rel_tol must be in (0, 1), got {self.rel_tol}")
        if not 3 <= self.min_samples <= self.max_samples:
            raise LatencyError("need 3 <= min_samples <= max_samples")
        if self.batch < 1 or self.warmup_samples < 0 or self.min_sample_s < 0 or \
                self.budget_s <= 0:
            raise LatencyError("batch >= 1, warmup_samples >= 0, min_sample_s >= 0 and "
                               "budget_s > 0 are required")
        if not 0 <= self.min_cpu_share < 1:
            raise LatencyError(f"min_cpu_share must be in [0, 1), got {self.min_cpu_share}")
        if self.clock not in CLOCKS:
            raise LatencyError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")


@dataclass(frozen=True)
class Timing:
    """Per-run times in seconds (each the mean of ``inner`` back-to-back runs); ``kept`` marks
    the samples not preempted (all True when the runner cannot tell)."""

    samples: np.ndarray
    inner: int
    converged: bool
    kept: np.ndarray | None = None

    @property
    def kept_mask(self) -> np.ndarray:
        return np.ones(self.samples.size, dtype=bool) if self.kept is None else self.kept

    @property
    def clean(self) -> np.ndarray:
        """The samples that were not preempted."""
        return self.samples[self.kept_mask]


def median_ci_rel(samples: np.ndarray) -> float:
    """Relative half-width of the distribution-free 95 % CI of the median."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    med = float(np.median(x))
    half = 0.98 * math.sqrt(n)  # 1.96 / 2 * sqrt(n): binomial(n, 1/2) normal approximation
    lo = max(0, int(math.floor(n / 2 - half)) - 1)
    hi = min(n - 1, int(math.ceil(n / 2 + half)))
    if med <= 0:
        return math.inf
    return float((x[hi] - x[lo]) / (2 * med))


def time_runner(run: Runner, policy: TimingPolicy = TimingPolicy()) -> Timing:
    """Samples of ``run`` until the median of the kept samples is stable (module docstring);
    LatencyError when fewer than 3 samples escaped preemption."""
    on_caller = bool(getattr(run, "caller_thread_only", False))
    if policy.clock == "thread-cpu" and not on_caller:
        raise LatencyError("clock 'thread-cpu' needs a runner that computes on the calling "
                           "thread (host backends at 1 thread)")
    cpu_clock = policy.clock == "thread-cpu"
    check_cpu = on_caller and policy.min_cpu_share > 0 and not cpu_clock
    inner = 1
    while True:
        elapsed = run(inner)
        if elapsed >= policy.min_sample_s or inner >= 1 << 20:
            break
        inner = min(1 << 20, max(inner * 2, int(inner * policy.min_sample_s / max(elapsed, 1e-9)
                                                * 1.2)))
    for _ in range(policy.warmup_samples):
        run(inner)
    t_start = time.perf_counter()
    samples: list[float] = []
    kept: list[bool] = []
    converged = False
    while True:
        for _ in range(policy.batch):
            c0 = time.thread_time()
            wall = run(inner)
            cpu = time.thread_time() - c0
            samples.append((cpu if cpu_clock else wall) / inner)
            kept.append(not check_cpu or cpu >= policy.min_cpu_share * wall)
        clean = np.array(samples)[np.array(kept)]
        if clean.size >= policy.min_samples and median_ci_rel(clean) < policy.rel_tol:
            converged = True
            break
        if len(samples) >= policy.max_samples or \
                time.perf_counter() - t_start > policy.budget_s:
            break
    mask = np.array(kept)
    if mask.sum() < 3:
        raise LatencyError(f"only {int(mask.sum())} of {len(samples)} timing samples ran "
                           f"without preemption (thread CPU time < {policy.min_cpu_share} x "
                           f"wall time); the machine is too loaded to measure (load average "
                           f"{_load1()})")
    return Timing(np.array(samples), inner, converged, mask)


class OpMeasurer:
    """Measures op keys on one host backend and returns table rows (``source: measured``).

    ``method`` (see module docstring) defaults to the backend's ``default_method``."""

    def __init__(self, backend: HostBackend, policy: TimingPolicy = TimingPolicy(),
                 method: str | None = None) -> None:
        self.backend = backend
        self.policy = policy
        self.method = method or backend.default_method
        if self.method not in backend.methods:
            raise LatencyError(f"method {self.method!r} is not available on {backend.name}; "
                               f"allowed: {', '.join(backend.methods)}")
        self._overhead_s: float | None = None
        self._versions = backend.versions()

    @property
    def overhead_s(self) -> float:
        """Median time of one call of an empty model (seconds), measured once."""
        if self._overhead_s is None:
            timing = time_runner(self.backend.empty_runner(), self.policy)
            self._overhead_s = float(np.median(timing.clean))
        return self._overhead_s

    def _samples_ms(self, key: OpKey) -> tuple[np.ndarray, Timing, float | None, str]:
        """(per-run ms samples, timing, subtracted overhead ms or None, note extras)."""
        if self.method == "kernel":
            from hwsim.latency.onnx_builder import op_model

            run = self.backend.kernel_time_runner(op_model(key))  # type: ignore[attr-defined]
            timing = time_runner(run, self.policy)
            per_run = run.kernel_ms(timing.samples.size * timing.inner)
            samples = per_run.reshape(timing.samples.size, timing.inner).mean(axis=1)
            return samples[timing.kept_mask], timing, None, ""
        copies = 1
        if self.method == "wall-cold":
            copies = cold_copies(self.backend.op_bytes(key))
        overhead = self.overhead_s
        timing = time_runner(self.backend.op_runner(key, copies), self.policy)
        extra = f";copies={copies}" if self.method == "wall-cold" else ""
        return (timing.clean - overhead) * 1e3, timing, overhead * 1e3, extra

    def __call__(self, key: OpKey) -> LatencyRow:
        net, timing, overhead_ms, extra = self._samples_ms(key)
        med = float(np.median(net))
        if med <= 0:
            raise LatencyError(f"{key}: median {float(np.median(timing.clean)) * 1e3:.4f} ms "
                               f"does not exceed the empty-model overhead "
                               f"{overhead_ms:.4f} ms on {self.backend.name}")
        p10, p90 = (float(v) for v in np.percentile(net, [10, 90]))
        return LatencyRow(
            key=key, latency_ms=med, p10_ms=min(p10, med), p90_ms=max(p90, med),
            std_ms=float(np.std(net, ddof=1)), ci_rel=median_ci_rel(net),
            overhead_ms=overhead_ms, samples=int(net.size), source="measured",
            device=self.backend.name, backend=self.backend.name, threads=self.backend.threads,
            versions=self._versions, method=self.method,
            date=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            note=f"inner={timing.inner};converged={int(timing.converged)}{extra};"
                 f"kept={int(timing.kept_mask.sum())}/{timing.samples.size};load1={_load1()}")


def _load1() -> str:
    """The 1-minute load average when the row was measured ('na' where unknown)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            return fh.read().split()[0]
    except (OSError, IndexError):
        return "na"
