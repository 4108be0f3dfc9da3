"""Per-layer error of an emulation against the fp32 model, and classification accuracy."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from hwsim.emulate.emulator import EmulationResult, Emulator
from hwsim.emulate.float_reference import run_float


@dataclass(frozen=True)
class LayerError:
    """Error of one emulated layer output against the fp32 model on the same inputs.

    sqnr_db: 10*log10(sum(ref^2) / sum((emu-ref)^2)) (inf when identical); cosine: cosine
    similarity of the flattened tensors; max_abs_error: max |emu - ref|; overflow: accumulators
    past the device's width; saturated_pairs: int16 pair sums that saturated.
    """

    name: str
    op: str
    shape: tuple[int, ...]
    dtype: str
    sqnr_db: float
    cosine: float
    max_abs_error: float
    overflow: int
    saturated_pairs: int


@dataclass(frozen=True)
class EmulationReport:
    device: str
    precision: str
    engine: str
    layers: list[LayerError]
    n_samples: int
    fp32_accuracy: float | None = None
    emulated_accuracy: float | None = None
    agreement: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for layer in d["layers"]:
            layer["shape"] = list(layer["shape"])
            for k in ("sqnr_db", "cosine", "max_abs_error"):
                v = layer[k]
                layer[k] = None if v is None or not math.isfinite(v) else v
        return d


def storage_dtype(codes: np.ndarray, qparams: dict) -> np.dtype:
    """The narrowest dtype holding every code of a tensor's code range (qparams' qmin/qmax,
    else the codes' own range); float codes keep their dtype."""
    if codes.dtype.kind == "f":
        return codes.dtype
    lo, hi = qparams.get("qmin"), qparams.get("qmax")
    if lo is None or hi is None:
        lo, hi = (int(codes.min()), int(codes.max())) if codes.size else (0, 0)
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def sqnr_db(ref: np.ndarray, emu: np.ndarray) -> float:
    r = ref.astype(np.float64).ravel()
    e = emu.astype(np.float64).ravel() - r
    noise = float(e @ e)
    signal = float(r @ r)
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(ref: np.ndarray, emu: np.ndarray) -> float:
    a = ref.astype(np.float64).ravel()
    b = emu.astype(np.float64).ravel()
    na, nb = math.sqrt(float(a @ a)), math.sqrt(float(b @ b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(a @ b) / (na * nb)


def build_report(emu: Emulator, x: np.ndarray, result: EmulationResult,
                 labels: np.ndarray | None = None) -> EmulationReport:
    """Compare ``result`` (from ``emu.run(x)``) with the fp32 graph on ``x``; with ``labels``,
    top-1 accuracy of both and their agreement (share of equal top-1 predictions)."""
    ref = run_float(emu.graph, x)
    layers = []
    for step in emu.steps_:
        r = ref[step.output]
        v = result.values[step.name]
        err = np.abs(v.astype(np.float64) - r.astype(np.float64))
        layers.append(LayerError(
            name=step.name, op=step.label, shape=tuple(int(d) for d in r.shape[1:]),
            dtype=str(storage_dtype(result.codes[step.name],
                                    emu.qparams_[step.output].to_dict())), sqnr_db=sqnr_db(r, v),
            cosine=cosine(r, v), max_abs_error=float(np.nanmax(err)) if err.size else 0.0,
            overflow=int(result.overflow.get(step.name, 0)),
            saturated_pairs=int(result.saturated_pairs.get(step.name, 0))))
    fp_acc = emu_acc = agree = None
    if labels is not None:
        out_ref = ref[emu.graph.outputs[0]]
        labels = np.asarray(labels).ravel()
        fp_pred = out_ref.reshape(len(out_ref), -1).argmax(1)
        em_pred = result.output.reshape(len(result.output), -1).argmax(1)
        fp_acc = float((fp_pred == labels).mean())
        emu_acc = float((em_pred == labels).mean())
        agree = float((fp_pred == em_pred).mean())
    return EmulationReport(device=emu.device.name, precision=emu.precision, engine=emu.engine,
                           layers=layers, n_samples=len(x), fp32_accuracy=fp_acc,
                           emulated_accuracy=emu_acc, agreement=agree)
