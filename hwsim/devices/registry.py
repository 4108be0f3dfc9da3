"""Where device specs live and how they are found by name.

Search order: directories in ``HWSIM_DEVICES_PATH`` (``os.pathsep``-separated), then the
project's ``devices/`` (source checkout or editable install), then ``<prefix>/share/hwsim/devices``
(wheel install).
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from hwsim.devices.spec import DeviceSpec, load_spec
from hwsim.errors import UnknownDeviceError


def device_dirs() -> list[Path]:
    """Existing directories searched for ``<name>.yaml``, first match wins."""
    dirs = [Path(p) for p in os.environ.get("HWSIM_DEVICES_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[2] / "devices")
    dirs.append(Path(sys.prefix) / "share" / "hwsim" / "devices")
    return [d for d in dirs if d.is_dir()]


def list_devices() -> list[str]:
    """Sorted names of every device spec found."""
    names = {p.stem for d in device_dirs() for p in d.glob("*.yaml")}
    return sorted(names)


def find_device_file(name: str) -> Path:
    for d in device_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return path
    raise UnknownDeviceError(f"unknown device {name!r}; known devices: {list_devices()}")


@lru_cache(maxsize=64)
def _load_cached(path: Path, mtime_ns: int) -> DeviceSpec:
    return load_spec(path)


def load_device_spec(name_or_path: str | os.PathLike[str]) -> DeviceSpec:
    """The validated spec of a device name (``"nnie"``) or of a YAML file path."""
    text = os.fspath(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text)
    else:
        path = find_device_file(text)
    path = path.resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise UnknownDeviceError(f"{path}: device spec file not found") from None
    return _load_cached(path, mtime)
