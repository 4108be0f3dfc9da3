"""What every NAS search space offers: slots of discrete choices, ops with table keys, a network.

An architecture is a row of ``n_slots`` op indices; a batch is an int array ``(n, n_slots)``.
Slot ``s`` has ``len(choices[s])`` choices; ``n_ops`` is the largest count and ``mask[s, i]``
says whether index ``i`` is a valid choice of slot ``s`` (shorter slots and ops a slot forbids,
such as ProxylessNAS's ``zero`` as the first block of a stage, are False).

Latency structure (``cost_terms``): the latency a table model gives an architecture is
``sum(fixed_keys) + sum over terms of cell(term, arch[term.slots])``; a term with one slot is a
per-slot cost (ProxylessNAS, FBNet blocks), a term over several slots carries a cost that
depends on them jointly (MnasNet: a block's layers depend on its own choices and on the previous
block's width; NAS-Bench-201: the adds that sum a node's inputs). ``ops(arch)`` lists the same
keys per architecture; the two must agree (tests check it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.errors import SearchError
from hwsim.latency.op_key import OpKey, OpKeyError, format_key

CellKeys = Callable[[tuple[int, ...]], "tuple[OpKey, ...] | None"]


@dataclass(frozen=True)
class ArchOp:
    """One op of an architecture: the slot that chose it (None for fixed parts), a readable
    name and its latency-table key (shapes are in the key)."""

    slot: int | None
    name: str
    key: OpKey
    key_format: str = "canonical"

    @property
    def table_key(self) -> str:
        """The key in the space's published format, or canonical where that format has none."""
        try:
            return format_key(self.key, self.key_format)  # type: ignore[arg-type]
        except OpKeyError:
            return str(self.key)


@dataclass(frozen=True)
class CostTerm:
    """A latency contribution depending on ``slots`` jointly.

    ``cell_keys(choice)`` gives, for one choice index per slot of ``slots``, the op keys whose
    latencies sum into this term (``()`` when nothing runs, e.g. a ``zero`` op), or None when
    that combination is not a valid architecture.
    """

    slots: tuple[int, ...]
    cell_keys: CellKeys
    name: str = ""


class SearchSpace(ABC):
    """Base class: subclasses set ``name``, ``choices``, ``key_format`` and implement the
    abstract methods."""

    name: str
    key_format: str = "canonical"

    def __init__(self, choices: Sequence[Sequence[str]], mask: np.ndarray | None = None,
                 slot_names: Sequence[str] | None = None) -> None:
        self.choices: tuple[tuple[str, ...], ...] = tuple(tuple(c) for c in choices)
        if not self.choices or any(not c for c in self.choices):
            raise SearchError(f"space {self.name!r}: every slot needs at least one choice")
        self.n_slots = len(self.choices)
        self.n_ops = max(len(c) for c in self.choices)
        full = np.zeros((self.n_slots, self.n_ops), dtype=bool)
        for s, c in enumerate(self.choices):
            full[s, :len(c)] = True
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != full.shape or (mask & ~full).any():
                raise SearchError(f"space {self.name!r}: mask must be {full.shape} and only "
                                  f"mark existing choices")
            full &= mask
        if not full.any(axis=1).all():
            raise SearchError(f"space {self.name!r}: a slot has no valid choice")
        self.mask: np.ndarray = full
        self.mask.setflags(write=False)
        self.slot_names: tuple[str, ...] = tuple(slot_names) if slot_names is not None else \
            tuple(f"slot{s}" for s in range(self.n_slots))
        self.n_choices = np.array([len(c) for c in self.choices], dtype=np.int64)

    # -- architectures ---------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of valid architectures (product of valid choices per slot)."""
        n = 1
        for v in self.mask.sum(axis=1):
            n *= int(v)
        return n

    def sample(self, n: int, seed: int | None = 0) -> np.ndarray:
        """``n`` architectures drawn uniformly over the valid choices of each slot (seeded):
        int16 array (n, n_slots)."""
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise SearchError(f"sample: n must be an integer >= 0, got {n!r}")
        rng = np.random.default_rng(seed)
        valid = [np.flatnonzero(row) for row in self.mask]
        counts = np.array([len(v) for v in valid])
        table = np.zeros((self.n_slots, self.n_ops), dtype=np.int16)
        for s, v in enumerate(valid):
            table[s, :len(v)] = v
        r = (rng.random((int(n), self.n_slots)) * counts).astype(np.int64)
        return table[np.arange(self.n_slots), r]

    def check(self, archs: Any, what: str = "architectures") -> np.ndarray:
        """Validate an (n, n_slots) or (n_slots,) array of op indices; returns it 2-D int64."""
        arr = np.asarray(archs)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_slots:
            raise SearchError(f"{self.name}: {what} must be an (n, {self.n_slots}) array of op "
                              f"indices, got shape {np.shape(archs)}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise SearchError(f"{self.name}: {what} must hold integer op indices, got dtype "
                              f"{arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        bad = (arr < 0) | (arr >= self.n_ops)
        if not bad.any():
            bad = ~self.mask[np.arange(self.n_slots)[None, :], arr]
        if bad.any():
            row, slot = (int(v) for v in np.argwhere(bad)[0])
            raise SearchError(self.invalid_message(row, slot, int(arr[row, slot])))
        return arr

    def invalid_message(self, row: int, slot: int, value: int) -> str:
        allowed = ", ".join(f"{i}={self.choices[slot][i]}" for i in np.flatnonzero(
            self.mask[slot]))
        return (f"{self.name}: architecture row {row}, slot {slot} ({self.slot_names[slot]}): "
                f"op index {value} is not allowed here; allowed: {allowed}")

    def arch_row(self, arch: Any) -> np.ndarray:
        """One architecture as a validated 1-D int64 array."""
        arr = np.asarray(arch)
        if arr.ndim != 1:
            raise SearchError(f"{self.name}: one architecture is a 1-D array of "
                              f"{self.n_slots} op indices, got shape {arr.shape}")
        return self.check(arr, "architecture")[0]

    def choice_names(self, arch: Any) -> list[str]:
        row = self.arch_row(arch)
        return [self.choices[s][int(i)] for s, i in enumerate(row)]

    # -- published forms, ops, networks ----------------------------------------------------
    @abstractmethod
    def encode(self, arch: Any) -> Any:
        """The architecture in the space's published form."""

    @abstractmethod
    def decode(self, published: Any) -> np.ndarray:
        """Published form -> 1-D int64 op indices."""

    @abstractmethod
    def ops(self, arch: Any) -> list[ArchOp]:
        """Every op the network runs, with shapes and table keys, in execution order."""

    @abstractmethod
    def fixed_keys(self) -> tuple[OpKey, ...]:
        """Keys every architecture runs (stem, head ...)."""

    @abstractmethod
    def cost_terms(self) -> list[CostTerm]:
        """The latency structure (see module docstring)."""

    @abstractmethod
    def build(self, arch: Any) -> Any:
        """A runnable ``torch.nn.Module`` (eval mode, float32) of the architecture."""

    @abstractmethod
    def example_input(self) -> Any:
        """A ``torch.Tensor`` of the network's input shape (batch 1)."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n_slots={self.n_slots}, "
                f"n_ops={self.n_ops}, size={self.size:.3g})")
