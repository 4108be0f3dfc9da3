"""The emulate and validate jobs as library calls (the CLI only parses and prints).

    job = emulate_job("nnie")                        # embedded digits demo model
    job = emulate_job("snpe", model="net.onnx", calib="calib.npy", data="val.npz",
                      labels="val_labels.npy", dump="out/")
    job.report.emulated_accuracy
    val = validate_job("snpe", "net.onnx", golden="out/")
    val.report.ok
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.emulate.dump import GoldenDump, ValidationReport, compare, read_golden, write_dump
from hwsim.emulate.emulator import EmulationResult, Emulator
from hwsim.emulate.report import EmulationReport, build_report
from hwsim.errors import EmulationError, HwsimError
from hwsim.graph.ir import Graph
from hwsim.graph.load import load_model
from hwsim.quant.device import Device, load_device
from hwsim.quant.qparams import qparams_from_dict

ArrayLike = np.ndarray | str | os.PathLike[str]


def load_array(source: ArrayLike, what: str, key: str | None = None) -> np.ndarray:
    """An array from memory, a ``.npy`` file, or a ``.npz`` file (its only array, or ``key``;
    a multi-array .npz needs ``key`` or an array named 'x'/'data'). Never unpickles."""
    if isinstance(source, np.ndarray):
        return source
    path = Path(source)
    if not path.is_file():
        raise EmulationError(f"{what}: file {str(path)!r} not found")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise EmulationError(f"{what}: {path} is not a readable .npy/.npz file: {err}") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = list(loaded.files)
        pick = key if key is not None else (names[0] if len(names) == 1 else next(
            (n for n in ("x", "data", "X") if n in names), None))
        if pick is None or pick not in names:
            raise EmulationError(f"{what}: {path} holds arrays {names}; name the one to use "
                                 "(or store it as 'x')")
        return loaded[pick]


def _check_input(graph: Graph, x: np.ndarray, what: str) -> np.ndarray:
    name, shape = next(iter(graph.inputs.items()))
    if x.ndim != len(shape) or tuple(x.shape[1:]) != tuple(shape[1:]):
        raise EmulationError(f"{what}: the model input {name!r} is (N, "
                             f"{', '.join(str(d) for d in shape[1:])}) but the array has shape "
                             f"{x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise EmulationError(f"{what}: expected a numeric array, got dtype {x.dtype}")
    return np.asarray(x, dtype=np.float32)


@dataclass
class EmulationJob:
    emulator: Emulator
    data: np.ndarray
    labels: np.ndarray | None
    result: EmulationResult
    report: EmulationReport
    model_name: str


def _resolve_model(model: Any) -> tuple[Graph, str, np.ndarray | None, np.ndarray | None,
                                        np.ndarray | None]:
    """(graph, name, default calib, default data, default labels)."""
    if model is None:
        import torch

        from hwsim.graph.digits_demo import demo_model

        demo = demo_model()
        graph = load_model(demo.model, torch.from_numpy(demo.calib_x[:1]))
        return graph, "digits demo CNN", demo.calib_x, demo.test_x, demo.test_y
    if isinstance(model, Graph):
        return model, "graph", None, None, None
    name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    if isinstance(model, (str, os.PathLike)) and not Path(model).is_file():
        raise EmulationError(f"model file {name!r} not found")
    return load_model(model), name, None, None, None


def emulate_job(device: str | Device, precision: str | None = None, model: Any = None, *,
                calib: ArrayLike | None = None, data: ArrayLike | None = None,
                labels: ArrayLike | None = None, dump: str | os.PathLike[str] | None = None,
                limit: int | None = None) -> EmulationJob:
    """Calibrate and emulate ``model`` (an .onnx path, a Graph, or None for the embedded digits
    demo) on ``device``; with ``labels``, the report has fp32 and emulated top-1 accuracy.

    Calibration data: ``calib``; without it, ``data`` is used for calibration too.
    ``dump``: write per-layer tensors, input, output and manifest.json there.
    """
    dev = device if isinstance(device, Device) else load_device(device)
    graph, name, calib_d, data_d, labels_d = _resolve_model(model)
    x = _check_input(graph, load_array(data, "--data"), "--data") if data is not None else data_d
    if x is None:
        raise EmulationError("no input data: pass data (--data X.npy) for a model file")
    c = _check_input(graph, load_array(calib, "--calib"), "--calib") if calib is not None else (
        calib_d if calib_d is not None else x)
    y = load_array(labels, "--labels").ravel() if labels is not None else (
        labels_d if data is None else None)
    if limit is not None:
        x = x[:limit]
        y = None if y is None else y[:limit]
    if y is not None and len(y) != len(x):
        raise EmulationError(f"--labels has {len(y)} entries but --data has {len(x)} rows")
    emu = Emulator(graph, dev, precision).calibrate(c)
    result = emu.run(x)
    report = build_report(emu, x, result, y)
    if dump is not None:
        write_dump(dump, emu, x, result)
    return EmulationJob(emu, x, y, result, report, name)


@dataclass
class ValidationJob:
    emulator: Emulator
    golden: GoldenDump
    result: EmulationResult
    report: ValidationReport
    qparams_source: str


def validate_job(device: str | Device, model: Any, golden: str | os.PathLike[str], *,
                 precision: str | None = None, calib: ArrayLike | None = None,
                 data: ArrayLike | None = None) -> ValidationJob:
    """Re-run the emulation on the golden dump's inputs (or ``data``) and compare per layer.

    Activation qparams: recorded in the golden manifest where present (a device toolchain's
    choice, or an earlier hwsim dump); otherwise calibrated on ``calib`` (else on the inputs).
    """
    dev = device if isinstance(device, Device) else load_device(device)
    gold = read_golden(golden)
    graph, _, calib_d, _, _ = _resolve_model(model)
    if data is not None:
        x = _check_input(graph, load_array(data, "--data"), "--data")
    elif gold.input is not None:
        x = _check_input(graph, gold.input, f"{gold.directory}/input.npy")
    else:
        raise EmulationError(f"{gold.directory}: no input.npy recorded; pass --data")
    fixed = {}
    man = gold.manifest or {}
    precision = precision or man.get("precision")
    probe = Emulator(graph, dev, precision)
    wanted = set(probe.calibrated_tensors)
    try:
        entries = [man.get("input", {})] + list(man.get("layers", []))
        for e in entries:
            t = e.get("tensor")
            if t in wanted and e.get("qparams"):
                fixed[t] = qparams_from_dict(e["qparams"])
    except HwsimError as err:
        raise EmulationError(f"{gold.directory}/manifest.json: bad qparams: {err}") from None
    if calib is not None:
        c = _check_input(graph, load_array(calib, "--calib"), "--calib")
        fixed = {}
        source = "calibrated on --calib"
    else:
        c = calib_d if calib_d is not None else x
        source = ("from the golden manifest" if len(fixed) == len(wanted)
                  else "calibrated on the inputs" if not fixed
                  else "partly from the golden manifest, rest calibrated on the inputs")
    emu = probe.calibrate(None if len(fixed) == len(wanted) else c, fixed=fixed)
    result = emu.run(x)
    return ValidationJob(emu, gold, result, compare(gold, emu, result), source)
