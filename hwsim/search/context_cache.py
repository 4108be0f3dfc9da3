"""A JSON file of measurements grouped by context, shared by several writers.

Layout: ``{"format": F, "entries": {context: {key: value}}}``; a context names everything the
values depend on (a digest of model, data, numerics, settings), so stale entries are never
read. Every save re-reads the file and merges this writer's entries for its context into what is
there, then replaces the file atomically: several writers on one file (a search's and a final
fine-tune's evaluators, two tool runs) keep each other's entries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwsim.emulate.dump import write_json_atomic
from hwsim.errors import SearchError


class ContextCache:
    """The entries of ``context`` in the JSON file ``path`` (None: in memory only).
    ``what`` names the file in errors ("accuracy cache"); ``file_format`` is the layout
    version a file must carry."""

    def __init__(self, path: Path | None, context: str, what: str, file_format: int) -> None:
        self.path = path
        self.context = context
        self.what = what
        self.file_format = file_format
        self.entries: dict[str, Any] = dict(self._read()["entries"].get(context, {}))

    def _read(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {"format": self.file_format, "entries": {}}
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SearchError(f"cannot read the {self.what} {str(self.path)!r}: {err} (delete "
                              "it to start afresh)") from None
        if (not isinstance(loaded, dict) or loaded.get("format") != self.file_format
                or not isinstance(loaded.get("entries"), dict)
                or not all(isinstance(v, dict) for v in loaded["entries"].values())):
            raise SearchError(f"{self.what} {str(self.path)!r} is not format "
                              f"{self.file_format}; delete it to start afresh")
        return loaded

    def save(self) -> None:
        """Merge :attr:`entries` into the file (no-op without a path); afterwards
        :attr:`entries` also holds what other writers added for this context."""
        if self.path is None:
            return
        on_disk = self._read()
        merged = on_disk["entries"].setdefault(self.context, {})
        merged.update(self.entries)
        self.entries = merged
        write_json_atomic(self.path, on_disk)
