"""A latency-constrained NAS that runs on this machine: scikit-learn digits, measured latency.

Pipeline (``run_nas``), everything saved under ``out`` and resumable:

1. Latency table of every key of the space (``lut-<device>.csv``): host backends time the
   blocks on this machine (``hwsim.latency.build``, resumable); a device YAML is modeled.
   On a host backend, ``calibrate`` architectures spread over the table's latency range are
   also timed end to end and an affine map measured = scale * table + offset is fitted
   (Theil-Sen, robust to a sample disturbed by other jobs; ``calibration.json``; see
   "Calibration" below). The search uses the mapped latency; results keep the table sum too.
2. A weight-sharing supernet (``supernet.npz``, ``hwsim.search.supernet``) trained on digits
   with uniformly sampled paths.
3. For each target T (ms):
   - ``reward="mnas"``: regularized evolution (Real et al. 2019: population, tournament,
     one-slot mutation, oldest dies) maximising the MnasNet reward ACC * (LAT/T)^w with the
     supernet's validation accuracy and the calibrated table latency;
   - ``reward="proxyless"``: ProxylessNAS-style gradient search: architecture logits trained
     with the ``mul#log`` loss on the supernet's continuous relaxation and the differentiable
     E[LAT] (``expected_latency``); the architecture is the argmax per slot.
   The found network is trained from scratch (test accuracy) and, on a host backend, its ONNX
   model is timed end to end with the same backend, one thread (ground truth; CPU time of the
   calling thread, see ``measure_arch_ms``).
4. ``results.json`` / ``results.csv`` (one row per target, rewritten atomically after each),
   ``history-<T>.csv`` (every evaluated candidate) and ``pareto.png``.

Latency convention: table rows exclude the cost of one empty-model call (``overhead_ms``,
see ``hwsim.latency.measure``); ``measured_ms`` is the end-to-end median per run and
``measured_net_ms`` the same minus the empty model's, the number comparable with the
prediction.

Calibration: per-op table sums over-predict these small networks end to end (measured here,
1 thread, ORT kernel-method table, 8x8 digits nets: measured / table 0.38-0.63 on 6
architectures spread over the table's range), because per-kernel costs that the table
charges for every op (profiler records, the half-microsecond truncation allowance) are a large
share of microsecond kernels (**assumption**: the cause is not isolated).
The affine fit on a few measured architectures (the few-shot idea of HELP, DESIGN.md B7) maps
the table to this machine's end-to-end time; its residuals are saved and reported. An affine
map keeps E[LAT] exact: E[scale * L + offset] = scale * E[L] + offset.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.emulate.dump import save_png_atomic
from hwsim.errors import SearchError
from hwsim.latency.table import write_text_atomic
from hwsim.search.latency_model import LatencyModel, space_keys
from hwsim.search.rewards import MNAS_HARD, MNAS_SOFT, expected_latency, masked_logits, mul_log_loss
from hwsim.search.rewards import mnas_reward as _mnas_reward
from hwsim.search.space_registry import get_space

REWARDS = ("mnas", "proxyless")
RESULT_COLUMNS = ("target_ms", "reward_kind", "arch", "table_ms", "predicted_ms", "measured_ms",
                  "measured_net_ms", "measured_p10_ms", "rel_to_target", "val_acc_supernet",
                  "test_acc", "reward", "evaluated")


@dataclass(frozen=True)
class NasConfig:
    """Settings of one search run (saved with the results; a resumed run must match)."""

    space: str = "proxyless-digits"
    device: str = "host-ort"
    targets_ms: tuple[float, ...] = ()
    reward: str = "mnas"
    constraint: str = "soft"            # mnas: soft (-0.07, -0.07) or hard (0, -1)
    generations: int = 300              # mnas: candidates evaluated per target
    population: int = 24
    tournament: int = 6
    grad_epochs: int = 6                # proxyless: epochs of architecture-logit training
    supernet_epochs: int = 40
    final_epochs: int = 30
    threads: int = 1
    seed: int = 0
    lut_budget_s: float = 0.6           # per-key timing budget of the host table build
    calibrate: int = 10                 # host: architectures timed end to end for the fit

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise SearchError(f"reward {self.reward!r}: allowed {', '.join(REWARDS)}")
        if self.constraint not in ("soft", "hard"):
            raise SearchError(f"constraint {self.constraint!r}: allowed soft, hard")
        if not self.targets_ms or any(not (t > 0 and math.isfinite(t)) for t in
                                      self.targets_ms):
            raise SearchError(f"give one or more targets > 0 ms, got {self.targets_ms}")
        for name in ("generations", "population", "tournament", "grad_epochs",
                     "supernet_epochs", "final_epochs", "threads"):
            if getattr(self, name) < 1:
                raise SearchError(f"{name} must be >= 1")
        if self.calibrate != 0 and self.calibrate < 3:
            raise SearchError(f"calibrate must be 0 (off) or >= 3 architectures, got "
                              f"{self.calibrate}")
        if self.tournament > self.population:
            raise SearchError("tournament must not exceed population")


@dataclass(frozen=True)
class LatencyCalibration:
    """``latency_ms = scale * table_ms + offset_ms``, fitted on the architectures ``archs``
    (Theil-Sen: median of pairwise slopes, so one run disturbed by a load spike does not tilt
    the line) (their table sums ``table_ms`` and measured ``measured_ms``, net of
    the backend's empty-model overhead). ``scale`` 1 and ``offset_ms`` 0 with no points: the
    table itself (modeled devices)."""

    scale: float = 1.0
    offset_ms: float = 0.0
    archs: tuple[tuple[int, ...], ...] = ()
    table_ms: tuple[float, ...] = ()
    measured_ms: tuple[float, ...] = ()

    @classmethod
    def fit(cls, archs: Sequence[Sequence[int]], table_ms: Sequence[float],
            measured_ms: Sequence[float]) -> LatencyCalibration:
        x, y = np.asarray(table_ms, dtype=np.float64), np.asarray(measured_ms, dtype=np.float64)
        if x.size < 3 or x.shape != y.shape or np.ptp(x) <= 0:
            raise SearchError(f"calibration needs >= 3 architectures of different table "
                              f"latency, got {x.size}")
        from scipy.stats import theilslopes

        scale, offset = (float(v) for v in theilslopes(y, x, method="joint")[:2])
        if not scale > 0:
            raise SearchError(f"calibration fit has scale {scale:.3g} <= 0 (table latency "
                              f"does not rank the measured ones: table {x.tolist()}, measured "
                              f"{y.tolist()}); the machine may be too loaded, or raise --calibrate")
        return cls(float(scale), float(offset), tuple(tuple(int(v) for v in a) for a in archs),
                   tuple(float(v) for v in x), tuple(float(v) for v in y))

    def apply(self, table_ms: Any) -> Any:
        """Calibrated latency (ms) of table sums (float, array or torch tensor)."""
        return self.scale * table_ms + self.offset_ms

    def rel_errors(self) -> np.ndarray:
        """|fit - measured| / measured per calibration architecture."""
        y = np.asarray(self.measured_ms, dtype=np.float64)
        return np.abs(self.apply(np.asarray(self.table_ms, dtype=np.float64)) - y) / y

    def max_rel_error(self) -> float | None:
        """Largest relative error of the fit on its own points (None without points)."""
        return float(self.rel_errors().max()) if self.measured_ms else None

    def median_rel_error(self) -> float | None:
        return float(np.median(self.rel_errors())) if self.measured_ms else None


@dataclass
class TargetResult:
    target_ms: float
    reward_kind: str
    arch: list[int]
    arch_names: list[str]
    table_ms: float
    predicted_ms: float
    measured_ms: float | None
    measured_net_ms: float | None
    measured_p10_ms: float | None
    rel_to_target: float | None
    val_acc_supernet: float
    test_acc: float
    reward: float
    evaluated: int
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)


# -- data and training ---------------------------------------------------------------------
def _digits(space: Any, seed: int) -> dict[str, Any]:
    import torch

    from hwsim.graph.digits_demo import digits_data

    if getattr(space, "in_channels", None) != 1 or getattr(space, "classes", None) != 10:
        raise SearchError(f"space {space.name!r} cannot be trained on digits (needs 1 input "
                          f"channel and 10 classes); use --space proxyless-digits")
    tx, ty, test_x, test_y = digits_data(space.input_size)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tx))
    n_val = len(tx) // 5
    val, train = order[:n_val], order[n_val:]
    t = torch.from_numpy
    return {"train": (t(tx[train]), t(ty[train])), "val": (t(tx[val]), t(ty[val])),
            "test": (t(test_x), t(test_y))}


def _accuracy(model: Any, data: tuple[Any, Any], **forward: Any) -> float:
    import torch

    x, y = data
    with torch.no_grad():
        return float((model(x, **forward).argmax(1) == y).float().mean())


def _train_net(model: Any, data: dict[str, Any], epochs: int, seed: int, desc: str,
               progress: bool) -> Any:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x, y = data["train"]
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


def _train_supernet(net: Any, space: Any, data: dict[str, Any], epochs: int, seed: int,
                    progress: bool) -> None:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x, y = data["train"]
    gen = torch.Generator().manual_seed(seed)
    paths = space.sample(epochs * (len(x) // 64 + 1), seed=seed)
    step = 0
    net.train()
    for _ in tqdm(range(epochs), desc="supernet", unit="epoch", disable=not progress):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            opt.zero_grad()
            F.cross_entropy(net(x[idx], arch=paths[step]), y[idx]).backward()
            opt.step()
            step += 1
        sched.step()


def _proxy_accuracy(net: Any, arch: np.ndarray, data: dict[str, Any]) -> float:
    """Validation accuracy of one path, BN on the batch statistics of the validation set
    (weight-sharing BN statistics belong to no single path)."""
    net.train()
    return _accuracy(net, data["val"], arch=arch)


# -- searches ------------------------------------------------------------------------------
def regularized_evolution(space: Any, lm: LatencyModel, fitness_acc: Any, target_ms: float,
                          cycles: int, population: int, tournament: int, alpha: float,
                          beta: float, seed: int, progress: bool = False,
                          calibration: LatencyCalibration = LatencyCalibration()
                          ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Regularized evolution maximising ``mnas_reward(acc, lat, T, alpha, beta)``.

    ``fitness_acc(arch) -> accuracy``; latency ``calibration.apply(lm.predict(arch))``.
    Returns (best arch, history of every evaluated candidate)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    history: list[dict[str, Any]] = []
    cache: dict[tuple[int, ...], dict[str, Any]] = {}

    def evaluate(arch: np.ndarray) -> dict[str, Any]:
        key = tuple(int(v) for v in arch)
        if key not in cache:
            acc = float(fitness_acc(arch))
            lat = float(calibration.apply(lm.predict(arch[None, :])[0]))
            cache[key] = {"arch": key, "acc": acc, "lat_ms": lat,
                          "reward": _mnas_reward(acc, lat, target_ms, alpha, beta)}
        rec = dict(cache[key])
        history.append(rec)
        return rec

    pop: list[dict[str, Any]] = []
    init = space.sample(population, seed=int(rng.integers(2**31)))
    bar = tqdm(total=cycles, desc=f"evolution T={target_ms:g}ms", unit="arch",
               disable=not progress, leave=False)
    for arch in init[:cycles]:
        pop.append(evaluate(arch))
        bar.update(1)
    valid = [np.flatnonzero(m) for m in space.mask]
    while len(history) < cycles:
        picks = rng.choice(len(pop), size=tournament, replace=False)
        parent = max((pop[i] for i in picks), key=lambda r: r["reward"])
        child = np.array(parent["arch"], dtype=np.int64)
        slot = int(rng.integers(space.n_slots))
        options = [c for c in valid[slot] if c != child[slot]]
        if options:
            child[slot] = int(rng.choice(options))
        pop.append(evaluate(child))
        pop.pop(0)
        bar.update(1)
    bar.close()
    best = max(history, key=lambda r: r["reward"])
    return np.array(best["arch"], dtype=np.int64), history


def gradient_search(net: Any, space: Any, lm: LatencyModel, data: dict[str, Any],
                    target_ms: float, epochs: int, seed: int, progress: bool = False,
                    calibration: LatencyCalibration = LatencyCalibration()
                    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """ProxylessNAS-style: logits alpha (n_slots, n_ops) trained with the ``mul#log`` loss,
    alpha * CE * (log E[LAT] / log T) ** beta, on the supernet's relaxation (weights trained
    along); E[LAT] = ``calibration.apply(expected_latency(lm, probs))``. Latencies enter the
    loss in microseconds (log T > 0 needs T > 1 unit)."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(seed)
    alpha = torch.zeros(space.n_slots, space.n_ops, requires_grad=True)
    opt_a = torch.optim.Adam([alpha], lr=0.05)
    opt_w = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data["train"]
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    net.train()
    for epoch in tqdm(range(epochs), desc=f"gradient T={target_ms:g}ms", unit="epoch",
                      disable=not progress, leave=False):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            probs = torch.softmax(masked_logits(space, alpha), -1)
            ce = F.cross_entropy(net(x[idx], probs=probs), y[idx])
            e_lat = calibration.apply(expected_latency(lm, probs))
            loss = mul_log_loss(ce, e_lat * 1e3, target_ms * 1e3)
            opt_a.zero_grad()
            opt_w.zero_grad()
            loss.backward()
            opt_a.step()
            opt_w.step()
        arch = torch.argmax(masked_logits(space, alpha.detach()), -1).numpy()
        history.append({"arch": tuple(int(v) for v in arch), "epoch": epoch,
                        "expected_ms": float(e_lat.detach()), "ce": float(ce.detach()),
                        "lat_ms": float(calibration.apply(lm.predict(arch[None, :])[0])),
                        "acc": _proxy_accuracy(net, arch, data), "reward": float("nan")})
    return np.asarray(history[-1]["arch"], dtype=np.int64), history


# -- measurement ----------------------------------------------------------------------------
def _cpu_samples_s(run: Any, samples: int, min_sample_s: float = 0.005) -> np.ndarray:
    """Per-run CPU time (s) of this thread over ``samples`` samples of ``run(inner)``; ``inner``
    doubles until one sample takes ``min_sample_s`` of CPU time."""
    import time

    inner = 1
    while True:
        t0 = time.thread_time()
        run(inner)
        if time.thread_time() - t0 >= min_sample_s or inner >= 1 << 16:
            break
        inner *= 2
    out = np.empty(samples)
    for i in range(samples):
        t0 = time.thread_time()
        run(inner)
        out[i] = (time.thread_time() - t0) / inner
    return out


def measure_arch_ms(space: Any, arch: np.ndarray, device: str, threads: int,
                    samples: int = 25) -> tuple[float, float, float]:
    """(median ms, 10th percentile ms, the backend's empty-model median ms) per run of the
    architecture's ONNX model on host backend ``device``, timed as CPU time of the calling
    thread (``time.thread_time``).

    CPU time, not wall time: with one intra-op thread ONNX Runtime runs the graph on the
    calling thread, so its CPU time is the run's cost on one core, without the time the
    shared machine gives to other jobs (wall-clock end-to-end medians of the same networks
    varied several-fold with the load here). Needs ``threads == 1``."""
    from hwsim.latency.host_backends import make_backend

    if not hasattr(space, "onnx"):
        raise SearchError(f"space {space.name!r} has no ONNX export for end-to-end timing")
    if threads != 1:
        raise SearchError(f"end-to-end timing reads the calling thread's CPU time and needs "
                          f"--threads 1, got {threads}")
    backend = make_backend(device, threads)
    model = _cpu_samples_s(backend.model_runner(space.onnx(arch)), samples)
    empty = _cpu_samples_s(backend.empty_runner(), samples)
    return (float(np.median(model)) * 1e3, float(np.percentile(model, 10)) * 1e3,
            float(np.median(empty)) * 1e3)


def calibration_archs(space: Any, lm: LatencyModel, n: int, seed: int) -> np.ndarray:
    """``n`` distinct architectures whose table latencies lie as close as possible to ``n``
    evenly spaced values from the space's fastest to its slowest architecture.

    Candidates: 4000 uniform samples, plus (per-slot spaces) draws that take each slot's
    cheapest (or dearest) op except with probability q in [0, 1] a uniform one, so that the
    ends of the range, which uniform sampling never reaches, are covered too."""

    rng = np.random.default_rng(seed)
    pools = [space.sample(4000, seed=seed)]
    if not lm.terms:
        cost = np.where(space.mask, lm.unary_ms, np.nan)
        slots = np.arange(space.n_slots)
        for extreme in (np.nanargmin(cost, axis=1), np.nanargmax(cost, axis=1)):
            for q in np.linspace(0.0, 1.0, 21):
                uniform = space.sample(100, seed=int(rng.integers(2**31)))
                keep = rng.random(uniform.shape) >= q
                pools.append(np.where(keep, extreme[slots][None, :], uniform))
    pool = np.unique(np.concatenate(pools).astype(np.int64), axis=0)
    table = lm.predict(pool)
    chosen: list[int] = []
    for want in np.linspace(table.min(), table.max(), n):
        for i in np.argsort(np.abs(table - want), kind="stable"):
            if int(i) not in chosen:
                chosen.append(int(i))
                break
    return pool[chosen]


def calibrate_latency(space: Any, lm: LatencyModel, device: str, threads: int, n: int,
                      seed: int, progress: bool = False) -> LatencyCalibration:
    """Time the ``n`` architectures of ``calibration_archs`` end to end on host backend
    ``device`` and fit the affine map."""
    from tqdm import tqdm

    archs = calibration_archs(space, lm, n, seed)
    measured = []
    for arch in tqdm(archs, desc="calibrate", unit="arch", disable=not progress, leave=False):
        median, _, overhead = measure_arch_ms(space, arch, device, threads)
        measured.append(median - overhead)
    return LatencyCalibration.fit(archs, lm.predict(archs), measured)


def _load_calibration(path: Path) -> LatencyCalibration:
    doc = json.loads(path.read_text(encoding="utf-8"))
    try:
        return LatencyCalibration(float(doc["scale"]), float(doc["offset_ms"]),
                                  tuple(tuple(int(v) for v in a) for a in doc["archs"]),
                                  tuple(float(v) for v in doc["table_ms"]),
                                  tuple(float(v) for v in doc["measured_ms"]))
    except (KeyError, TypeError, ValueError) as err:
        raise SearchError(f"{path}: not a calibration file ({err}); delete it to refit") from None


# -- driver ---------------------------------------------------------------------------------
def run_nas(config: NasConfig, out: str | Path, progress: bool = True) -> list[TargetResult]:
    """Run (or resume) the search of ``config`` under ``out`` (see module docstring)."""
    import torch

    from hwsim.latency.build import build_table
    from hwsim.latency.host_backends import HOST_BACKENDS
    from hwsim.latency.measure import TimingPolicy
    from hwsim.search.supernet import ProxylessSupernet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space(config.space)
    data = _digits(space, config.seed)
    is_host = config.device in HOST_BACKENDS
    if is_host and config.device != "host-ort":
        raise SearchError(f"{config.device}: the digits search measures its networks end to "
                          f"end with host-ort (ONNX Runtime CPU); use --device host-ort or a "
                          f"device YAML (modeled, not measured)")
    results_path = out / "results.json"
    done: dict[float, TargetResult] = {}
    if results_path.exists():
        saved = json.loads(results_path.read_text(encoding="utf-8"))
        old = dict(saved.get("config", {}))
        new = asdict(config)
        old.pop("targets_ms", None)
        new.pop("targets_ms")
        if old != new:
            raise SearchError(f"{results_path} holds a run with other settings {old}; use "
                              f"another --out or the same settings")
        for rec in saved.get("targets", []):
            done[float(rec["target_ms"])] = TargetResult(**rec)

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        table_path = None
        if is_host:
            table_path = out / f"lut-{config.device}.csv"
            report = build_table(config.device, space_keys(space), table_path,
                                 threads=config.threads, progress=progress,
                                 policy=TimingPolicy(rel_tol=0.03, budget_s=config.lut_budget_s))
            if report.failed:
                raise SearchError(f"{table_path}: {len(report.failed)} key(s) could not be "
                                  f"measured: {report.failed[:3]}")
        lm = LatencyModel(config.device, space, table=table_path)
        calibration = LatencyCalibration()
        calib_path = out / "calibration.json"
        if calib_path.exists():
            calibration = _load_calibration(calib_path)
        elif is_host and config.calibrate:
            calibration = calibrate_latency(space, lm, config.device, config.threads,
                                            config.calibrate, config.seed + 7, progress)
            doc = {"format": "hwsim-nas-calibration", "version": 1, **asdict(calibration),
                   "max_rel_error": calibration.max_rel_error(),
                   "median_rel_error": calibration.median_rel_error()}
            write_text_atomic(calib_path, json.dumps(doc, indent=1))

        net = ProxylessSupernet(space)
        weights = out / "supernet.npz"
        if weights.exists():
            net.load(weights)
        else:
            _train_supernet(net, space, data, config.supernet_epochs, config.seed, progress)
            net.save(weights)
        base_state = {k: v.clone() for k, v in net.state_dict().items()}

        alpha, beta = MNAS_SOFT if config.constraint == "soft" else MNAS_HARD
        results = dict(done)
        for i, target in enumerate(config.targets_ms):
            if float(target) in results:
                continue
            seed = config.seed + 1000 * (i + 1)
            if config.reward == "mnas":
                arch, history = regularized_evolution(
                    space, lm, lambda a: _proxy_accuracy(net, a, data), target,
                    config.generations, config.population, config.tournament, alpha, beta,
                    seed, progress, calibration)
            else:
                net.load_state_dict(base_state)
                arch, history = gradient_search(net, space, lm, data, target,
                                                config.grad_epochs, seed, progress,
                                                calibration)
                net.load_state_dict(base_state)
            table_ms = float(lm.predict(arch[None, :])[0])
            pred = float(calibration.apply(table_ms))
            val_acc = _proxy_accuracy(net, arch, data)
            model = _train_net(space.build(arch, seed=seed), data, config.final_epochs, seed,
                               f"retrain T={target:g}ms", progress)
            test_acc = _accuracy(model, data["test"])
            measured = p10 = overhead = None
            if is_host:
                measured, p10, overhead = measure_arch_ms(space, arch, config.device,
                                                          config.threads)
            net_ms = None if measured is None else measured - overhead
            results[float(target)] = TargetResult(
                target_ms=float(target), reward_kind=config.reward,
                arch=[int(v) for v in arch], arch_names=space.choice_names(arch),
                table_ms=table_ms, predicted_ms=pred, measured_ms=measured, measured_net_ms=net_ms,
                measured_p10_ms=p10,
                rel_to_target=None if net_ms is None else net_ms / target - 1.0,
                val_acc_supernet=val_acc, test_acc=test_acc,
                reward=_mnas_reward(test_acc, net_ms if net_ms is not None else pred, target,
                                    alpha, beta),
                evaluated=len(history), history=history)
            _write_results(out, config, lm, calibration, results)
            _write_history(out / f"history-{target:g}ms.csv", history)
        _plot(out / "pareto.png", config, results)
        return [results[float(t)] for t in config.targets_ms]
    finally:
        torch.set_num_threads(threads)


def _write_results(out: Path, config: NasConfig, lm: LatencyModel,
                   calibration: LatencyCalibration, results: dict[float, TargetResult]) -> None:
    ordered = [results[t] for t in sorted(results)]
    doc = {"format": "hwsim-nas-results", "version": 1, "config": asdict(config),
           "latency_model": lm.report(),
           "calibration": {"scale": calibration.scale, "offset_ms": calibration.offset_ms,
                           "n": len(calibration.archs),
                           "max_rel_error": calibration.max_rel_error(),
                           "median_rel_error": calibration.median_rel_error()},
           "latency_convention": "table_ms is the sum of table rows; predicted_ms = scale * "
                                 "table_ms + offset_ms (the latency the search used); "
                                 "predicted_ms and measured_net_ms exclude one empty-model "
                                 "call of the backend; measured_ms is the raw median",
           "targets": [asdict(r) for r in ordered]}
    write_text_atomic(out / "results.json", json.dumps(doc, indent=1))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for r in ordered:
        w.writerow([r.target_ms, r.reward_kind, " ".join(r.arch_names), r.table_ms,
                    r.predicted_ms,
                    r.measured_ms, r.measured_net_ms, r.measured_p10_ms, r.rel_to_target,
                    r.val_acc_supernet, r.test_acc, r.reward, r.evaluated])
    write_text_atomic(out / "results.csv", buf.getvalue())


def _write_history(path: Path, history: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "arch", "acc", "lat_ms", "reward"])
    for i, h in enumerate(history):
        w.writerow([i, " ".join(str(v) for v in h["arch"]), h["acc"], h["lat_ms"], h["reward"]])
    write_text_atomic(path, buf.getvalue())


def _plot(path: Path, config: NasConfig, results: dict[float, TargetResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in results.values():
        h = r.history
        ax.scatter([c["lat_ms"] for c in h], [c["acc"] for c in h], s=4, alpha=0.15,
                   color="gray")
    rs = sorted(results.values(), key=lambda r: r.target_ms)
    lat = [r.measured_net_ms if r.measured_net_ms is not None else r.predicted_ms for r in rs]
    ax.plot(lat, [r.test_acc for r in rs], "o-", color="C0",
            label="found nets: test acc vs " + ("measured" if rs and rs[0].measured_ms
                                                else "predicted") + " latency")
    ax.scatter([r.predicted_ms for r in rs], [r.test_acc for r in rs], marker="x",
               color="C1", label="same nets, calibrated table prediction")
    for r, x in zip(rs, lat, strict=True):
        ax.annotate(f"T={r.target_ms:g}", (x, r.test_acc), textcoords="offset points",
                    xytext=(4, -10), fontsize=7, color="C0")
    for r in rs:
        ax.axvline(r.target_ms, color="C3", lw=0.8, ls=":")
    ax.set_xlabel(f"latency (ms) on {config.device}, {config.threads} thread(s)")
    ax.set_ylabel("accuracy (gray: supernet val. proxy)")
    reward = config.reward + (f" ({config.constraint})" if config.reward == "mnas" else "")
    ax.set_title(f"{config.space}, reward {reward}:\naccuracy vs latency (targets dotted)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_png_atomic(path, fig, dpi=120)
    plt.close(fig)
