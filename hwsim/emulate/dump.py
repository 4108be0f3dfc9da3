"""Layer dumps: what ``hwsim emulate --dump DIR`` writes and ``hwsim validate`` reads.

A dump directory holds
  manifest.json   {"format": "hwsim-dump", "version": 1, "device", "precision", "engine",
                   "input": {"file", "shape"}, "output": {"file", "shape"},
                   "layers": [{"index", "name", "op", "file", "dtype", "shape", "qparams"}]}
  input.npy       the float32 network input the layers were computed from
  NNN_<name>.npy  one per layer: the tensor as the device holds it (integer codes in the
                  narrowest integer dtype of the code range, or float16/float32 values)
  output.npy      the final output, dequantized float32

Golden dumps from a real device or another runtime may instead hold raw binaries ``X.bin``, each
with a sidecar ``X.json`` {"layer": name, "dtype": "int8", "shape": [...]} (C order), with or
without a manifest. Files are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.emulate.emulator import EmulationResult, Emulator
from hwsim.emulate.report import storage_dtype
from hwsim.errors import EmulationError

FORMAT = "hwsim-dump"
VERSION = 1
_RAW_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float16",
               "float32")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    _atomic_write_bytes(path, data)


def save_png_atomic(path: Path, fig: Any, dpi: int) -> None:
    """Render the matplotlib figure ``fig`` as a PNG at ``dpi`` and write it to ``path`` through
    a temporary file and a rename (the caller closes the figure)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _atomic_write_bytes(path, buf.getvalue())


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _qparams_of(emu: Emulator, tensor: str) -> dict[str, Any]:
    qp = emu.qparams_.get(tensor)
    return qp.to_dict() if qp is not None else {}


def write_dump(directory: str | os.PathLike[str], emu: Emulator, x: np.ndarray,
               result: EmulationResult) -> Path:
    """Write the dump of ``result`` (= ``emu.run(x)``) to ``directory`` (created)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    layers = []
    for i, step in enumerate(emu.steps_):
        codes = result.codes[step.name]
        qp = _qparams_of(emu, step.output)
        dt = storage_dtype(codes, qp)
        fname = f"{i:03d}_{_safe(step.name)}.npy"
        save_npy_atomic(d / fname, codes.astype(dt))
        layers.append({"index": i, "name": step.name, "op": step.label, "tensor": step.output,
                       "file": fname, "dtype": str(dt), "shape": list(codes.shape),
                       "qparams": qp})
    x = np.asarray(x, dtype=np.float32)
    save_npy_atomic(d / "input.npy", x)
    save_npy_atomic(d / "output.npy", result.output.astype(np.float32))
    in_name = next(iter(emu.graph.inputs))
    manifest = {"format": FORMAT, "version": VERSION, "device": emu.device.name,
                "precision": emu.precision, "engine": emu.engine,
                "input": {"file": "input.npy", "shape": list(x.shape), "tensor": in_name,
                          "qparams": _qparams_of(emu, in_name)},
                "output": {"file": "output.npy", "shape": list(result.output.shape)},
                "layers": layers}
    write_json_atomic(d / "manifest.json", manifest)
    return d


@dataclass
class GoldenLayer:
    name: str
    array: np.ndarray
    source: str
    qparams: dict[str, Any] | None = None


@dataclass
class GoldenDump:
    directory: Path
    layers: list[GoldenLayer]
    input: np.ndarray | None
    manifest: dict[str, Any] | None = None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise EmulationError(f"{path}: cannot read .npy: {err}") from None


def _load_raw(bin_path: Path) -> GoldenLayer:
    side = bin_path.with_suffix(".json")
    if not side.is_file():
        raise EmulationError(f"{bin_path}: raw dump needs a sidecar {side.name} with "
                             "'layer', 'dtype' and 'shape'")
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise EmulationError(f"{side}: not valid JSON: {err}") from None
    for key in ("layer", "dtype", "shape"):
        if key not in meta:
            raise EmulationError(f"{side}: missing field {key!r} (needs layer, dtype, shape)")
    if meta["dtype"] not in _RAW_DTYPES:
        raise EmulationError(f"{side}: field 'dtype' is {meta['dtype']!r}; allowed: "
                             f"{list(_RAW_DTYPES)}")
    data = np.fromfile(bin_path, dtype=np.dtype(meta["dtype"]))
    shape = tuple(int(s) for s in meta["shape"])
    if data.size != int(np.prod(shape)):
        raise EmulationError(f"{bin_path}: {data.size} elements of {meta['dtype']} but the "
                             f"sidecar's shape {list(shape)} needs {int(np.prod(shape))}")
    return GoldenLayer(str(meta["layer"]), data.reshape(shape), bin_path.name)


def read_golden(directory: str | os.PathLike[str]) -> GoldenDump:
    """Read a dump written by ``write_dump``, or a directory of .npy / .bin+.json layer files."""
    d = Path(directory)
    if not d.is_dir():
        raise EmulationError(f"golden dump directory {str(d)!r} does not exist")
    mpath = d / "manifest.json"
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise EmulationError(f"{mpath}: not valid JSON: {err}") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
            raise EmulationError(f"{mpath}: needs a 'layers' list")
        layers = []
        for i, entry in enumerate(manifest["layers"]):
            if not isinstance(entry, dict) or "name" not in entry or "file" not in entry:
                raise EmulationError(f"{mpath}: layers[{i}] needs 'name' and 'file'")
            f = d / entry["file"]
            if not f.is_file():
                raise EmulationError(f"{mpath}: layers[{i}] file {entry['file']!r} is missing")
            if f.suffix == ".bin":
                layer = _load_raw(f)
                layer.name = entry["name"]
            else:
                layer = GoldenLayer(entry["name"], _load_npy(f), f.name)
            layer.qparams = entry.get("qparams") or None
            layers.append(layer)
        inp = manifest.get("input", {}).get("file")
        x = _load_npy(d / inp) if inp and (d / inp).is_file() else None
        return GoldenDump(d, layers, x, manifest)
    layers = [_load_raw(p) for p in sorted(d.glob("*.bin"))]
    layers += [GoldenLayer(p.stem, _load_npy(p), p.name) for p in sorted(d.glob("*.npy"))
               if p.name not in ("input.npy", "output.npy")]
    if not layers:
        raise EmulationError(f"{d}: no manifest.json, .npy or .bin layer files found")
    x = _load_npy(d / "input.npy") if (d / "input.npy").is_file() else None
    return GoldenDump(d, layers, x, None)


@dataclass
class LayerComparison:
    name: str
    op: str
    n_elements: int
    n_different: int
    max_code_difference: float
    status: str  # "equal", "different", "shape mismatch", "not in golden"


@dataclass
class ValidationReport:
    layers: list[LayerComparison] = field(default_factory=list)
    unmatched_golden: list[str] = field(default_factory=list)

    @property
    def first_different(self) -> str | None:
        for c in self.layers:
            if c.status in ("different", "shape mismatch"):
                return c.name
        return None

    @property
    def ok(self) -> bool:
        return self.first_different is None and not self.unmatched_golden

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "first_different": self.first_different,
                "unmatched_golden": self.unmatched_golden,
                "layers": [c.__dict__ for c in self.layers]}


def _code_difference(golden: np.ndarray, emu: np.ndarray) -> tuple[int, float]:
    if golden.dtype.kind == "f" or emu.dtype.kind == "f":
        g = golden.astype(np.float64)
        e = emu.astype(np.float64)
        same = (g == e) | (np.isnan(g) & np.isnan(e))
        if golden.dtype == np.float16 and emu.dtype == np.float16:
            same &= golden.view(np.uint16) == emu.view(np.uint16)
        diff = np.abs(np.where(same, 0.0, np.nan_to_num(g - e, nan=np.inf)))
    else:
        diff = np.abs(golden.astype(np.int64) - emu.astype(np.int64)).astype(np.float64)
        same = diff == 0
    n = int((~same).sum())
    return n, float(diff.max()) if diff.size else 0.0


def compare(golden: GoldenDump, emu: Emulator, result: EmulationResult) -> ValidationReport:
    """Per layer of the emulation: differing codes and largest code difference vs ``golden``."""
    by_name = {g.name: g for g in golden.layers}
    rep = ValidationReport()
    names = set()
    for step in emu.steps_:
        names.add(step.name)
        g = by_name.get(step.name)
        codes = result.codes[step.name]
        if g is None:
            rep.layers.append(LayerComparison(step.name, step.label, codes.size, 0, 0.0,
                                              "not in golden"))
            continue
        if g.array.shape != codes.shape:
            rep.layers.append(LayerComparison(step.name, step.label, codes.size, codes.size,
                                              float("inf"), "shape mismatch"))
            continue
        n, m = _code_difference(g.array, codes)
        rep.layers.append(LayerComparison(step.name, step.label, codes.size, n, m,
                                          "equal" if n == 0 else "different"))
    rep.unmatched_golden = [g.name for g in golden.layers if g.name not in names]
    return rep
