"""Shared test set-up: a per-session cache directory, so the digits demo model is trained once
per test run and never touches the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _hwsim_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    old = os.environ.get("HWSIM_CACHE_DIR")
    if old is None:
        os.environ["HWSIM_CACHE_DIR"] = str(tmp_path_factory.mktemp("hwsim-cache"))
    yield
    if old is None:
        os.environ.pop("HWSIM_CACHE_DIR", None)


TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="session")
def import_tool():
    """``import_tool("haq_table")``: a module of ``tools/`` (which import each other by name),
    imported with ``tools/`` on ``sys.path`` only for the import."""
    import importlib
    import sys

    def load(name: str):
        sys.path.insert(0, str(TOOLS))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(TOOLS))
    return load
