"""Fixed-length feature vectors for NAS-Bench-201 and FBNet architectures.

Both encoders turn an architecture into float64 features for latency predictors: a one-hot of
the choice per searchable position plus structure-derived counts (op counts, MACs, parameters)
computed from the network definitions of DESIGN.md B7. The feature list of an encoder is fixed by
its ``ENCODER_VERSION``; a saved predictor records space and version and refuses another.

NAS-Bench-201 (Dong & Yang, ICLR'20): stem conv3x3 3->16, three stages of 5 identical cells at
(C, H) = (16, 32), (32, 16), (64, 8), residual reduction blocks between stages. Every cell has
H*H*C*C = 262,144 for all three stages, so a cell op's MACs are the same in every stage.

FBNet (Wu et al., CVPR'19; CIFAR variant of HW-NAS-Bench): 22 searchable layers in stages
[1,4,4,4,4,4,1], channels [16,24,32,64,112,184,352], first-layer strides [1,1,2,2,1,2,1],
stem 3x3 conv 3->16 stride 1 on 32x32 input. Block: 1x1 group conv (C_in -> e*C_in) -> kxk
depthwise (stride s) -> 1x1 group conv (e*C_in -> C_out); residual when shapes match.
**Assumption** (FBNet reference code, HW-NAS-Bench ``Skip_..._Cin_Cout_stride`` LUT key): the
``skip`` op is an identity when C_in == C_out and stride 1, otherwise a 1x1 conv with that stride.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwsim.errors import LatencyError

# ----------------------------------------------------------------------------------------------
# NAS-Bench-201
# ----------------------------------------------------------------------------------------------

NB201_OPS: tuple[str, ...] = (
    "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edges in arch_str order: (source node, destination node).
NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NB201_ENCODER_VERSION = 1
_NB201_CELLS = 15
_NB201_HWC2 = 32 * 32 * 16 * 16  # H*W*C*C, identical in the three stages (see module doc)
_NB201_PATTERN = re.compile(
    r"^\|([a-z0-9_]+)~0\|\+\|([a-z0-9_]+)~0\|([a-z0-9_]+)~1\|"
    r"\+\|([a-z0-9_]+)~0\|([a-z0-9_]+)~1\|([a-z0-9_]+)~2\|$")


def parse_nb201(arch_str: str) -> tuple[int, ...]:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` -> six op indices into ``NB201_OPS``."""
    if not isinstance(arch_str, str):
        raise LatencyError(f"NB201 arch_str must be a string, got {type(arch_str).__name__}")
    match = _NB201_PATTERN.match(arch_str.strip())
    if match is None:
        raise LatencyError(
            f"malformed NB201 arch_str {arch_str!r}: expected "
            "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
    codes = []
    for name in match.groups():
        if name not in NB201_OPS:
            raise LatencyError(
                f"unknown NB201 op {name!r} in arch_str {arch_str!r}; allowed: {NB201_OPS}")
        codes.append(NB201_OPS.index(name))
    return tuple(codes)


def format_nb201(codes: tuple[int, ...] | list[int]) -> str:
    """Six op indices -> canonical NB201 ``arch_str``."""
    o = [NB201_OPS[int(c)] for c in codes]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def _nb201_structure(codes: np.ndarray) -> np.ndarray:
    """Structure features of an (n, 6) int array of op indices (vectorised over rows).

    An edge is live if its op is not ``none``, its source node is reachable from the cell input
    and its destination reaches the cell output (node 3) through non-``none`` edges.
    """
    n = codes.shape[0]
    present = codes != 0
    reach = np.zeros((n, 4), dtype=bool)
    reach[:, 0] = True
    for e, (src, dst) in enumerate(NB201_EDGES):
        reach[:, dst] |= present[:, e] & reach[:, src]
    coreach = np.zeros((n, 4), dtype=bool)
    coreach[:, 3] = True
    for e in reversed(range(len(NB201_EDGES))):
        src, dst = NB201_EDGES[e]
        coreach[:, src] |= present[:, e] & coreach[:, dst]
    live = np.stack([present[:, e] & reach[:, s] & coreach[:, d]
                     for e, (s, d) in enumerate(NB201_EDGES)], axis=1)
    n_ops = len(NB201_OPS)
    counts = np.stack([(codes == k).sum(axis=1) for k in range(n_ops)], axis=1)
    live_counts = np.stack([((codes == k) & live).sum(axis=1) for k in range(n_ops)], axis=1)
    # Longest live path from node 0 to node 3, in edges and in conv layers; number of live paths.
    neg = -1e9
    depth_edges = np.full((n, 4), neg)
    depth_convs = np.full((n, 4), neg)
    depth_edges[:, 0] = depth_convs[:, 0] = 0.0
    n_paths = np.zeros((n, 4))
    n_paths[:, 0] = 1.0
    for e, (src, dst) in enumerate(NB201_EDGES):
        lv = live[:, e]
        is_conv = np.isin(codes[:, e], (2, 3)).astype(np.float64)
        depth_edges[:, dst] = np.where(
            lv, np.maximum(depth_edges[:, dst], depth_edges[:, src] + 1.0), depth_edges[:, dst])
        depth_convs[:, dst] = np.where(
            lv, np.maximum(depth_convs[:, dst], depth_convs[:, src] + is_conv), depth_convs[:, dst])
        n_paths[:, dst] += np.where(lv, n_paths[:, src], 0.0)
    connected = depth_edges[:, 3] > 0
    macs = _NB201_HWC2 * (9 * counts[:, 3] + counts[:, 2]) * _NB201_CELLS / 1e6
    live_macs = _NB201_HWC2 * (9 * live_counts[:, 3] + live_counts[:, 2]) * _NB201_CELLS / 1e6
    return np.column_stack([
        counts, live_counts, (~connected).astype(np.float64),
        np.where(connected, depth_edges[:, 3], 0.0), np.where(connected, depth_convs[:, 3], 0.0),
        n_paths[:, 3], macs, live_macs]).astype(np.float64)


def nb201_feature_names() -> list[str]:
    """Names of the columns produced by :func:`encode_nb201` (version ``NB201_ENCODER_VERSION``)."""
    names = [f"edge{e}_{op}" for e in range(len(NB201_EDGES)) for op in NB201_OPS]
    names += [f"count_{op}" for op in NB201_OPS]
    names += [f"live_count_{op}" for op in NB201_OPS]
    names += ["disconnected", "depth_edges", "depth_convs", "n_live_paths",
              "cell_mmacs", "live_cell_mmacs"]
    return names


@lru_cache(maxsize=1)
def _nb201_canonical() -> dict[str, tuple[int, ...]]:
    """All 15,625 canonical arch strings -> op indices (a fast path for parsing)."""
    return {format_nb201(c): c
            for c in itertools.product(range(len(NB201_OPS)), repeat=len(NB201_EDGES))}


def nb201_codes(arch_strs: list[str] | np.ndarray) -> np.ndarray:
    """NB201 ``arch_str`` values -> (n, 6) int64 op indices; errors name the row."""
    canonical = _nb201_canonical()
    out = np.zeros((len(arch_strs), len(NB201_EDGES)), dtype=np.int64)
    for i, s in enumerate(arch_strs):
        codes = canonical.get(s) if isinstance(s, str) else None
        if codes is None:
            try:
                codes = parse_nb201(s)
            except LatencyError as err:
                raise LatencyError(f"row {i}: {err}") from None
        out[i] = codes
    return out


def encode_nb201_codes(codes: np.ndarray) -> np.ndarray:
    """(n, 6) NB201 op indices -> float64 array (n, len(nb201_feature_names())).

    Features: one-hot of 6 edges x 5 ops, op counts, live-op counts, a disconnected flag, the
    longest live path (edges, conv layers), the number of live input->output paths, and cell
    MACs in millions summed over the 15 cells (stem and reduction blocks are the same for every
    architecture and omitted).
    """
    n_ops = len(NB201_OPS)
    onehot = np.zeros((codes.shape[0], len(NB201_EDGES) * n_ops))
    onehot[np.arange(codes.shape[0])[:, None], np.arange(len(NB201_EDGES))[None, :] * n_ops
           + codes] = 1.0
    return np.concatenate([onehot, _nb201_structure(codes)], axis=1)


def encode_nb201(arch_strs: list[str] | np.ndarray) -> np.ndarray:
    """NB201 ``arch_str`` values -> features of :func:`encode_nb201_codes`."""
    return encode_nb201_codes(nb201_codes(arch_strs))


# ----------------------------------------------------------------------------------------------
# FBNet
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FBNetOp:
    """One FBNet candidate: kernel size, expansion ratio, groups of the 1x1 convs, or skip."""

    name: str
    kernel: int
    expand: int
    groups: int
    skip: bool = False


FBNET_OPS: tuple[FBNetOp, ...] = (
    FBNetOp("k3_e1", 3, 1, 1), FBNetOp("k3_e1_g2", 3, 1, 2), FBNetOp("k3_e3", 3, 3, 1),
    FBNetOp("k3_e6", 3, 6, 1), FBNetOp("k5_e1", 5, 1, 1), FBNetOp("k5_e1_g2", 5, 1, 2),
    FBNetOp("k5_e3", 5, 3, 1), FBNetOp("k5_e6", 5, 6, 1), FBNetOp("skip", 0, 0, 0, skip=True))
FBNET_STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
FBNET_STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
FBNET_STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
FBNET_STEM_CHANNELS = 16
FBNET_INPUT_HW = 32
FBNET_N_LAYERS = sum(FBNET_STAGE_LAYERS)
FBNET_COLUMNS: tuple[str, ...] = tuple(f"op{i}" for i in range(FBNET_N_LAYERS))
FBNET_ENCODER_VERSION = 1


@dataclass(frozen=True)
class FBNetLayer:
    """Shape of one searchable layer: input channels, output channels, stride, input H (=W)."""

    c_in: int
    c_out: int
    stride: int
    hw_in: int


def fbnet_layers() -> tuple[FBNetLayer, ...]:
    """The 22 searchable layers of the CIFAR FBNet space (DESIGN.md B7)."""
    layers = []
    c_in, hw = FBNET_STEM_CHANNELS, FBNET_INPUT_HW
    for n, c_out, s in zip(FBNET_STAGE_LAYERS, FBNET_STAGE_CHANNELS, FBNET_STAGE_STRIDES,
                              strict=True):
        for j in range(n):
            stride = s if j == 0 else 1
            layers.append(FBNetLayer(c_in, c_out, stride, hw))
            hw = -(-hw // stride)
            c_in = c_out
    return tuple(layers)


def fbnet_layer_cost(layer: FBNetLayer, op: FBNetOp) -> tuple[float, float]:
    """(MACs, parameters) of ``op`` placed at ``layer``; BN and activations not counted."""
    hw_out = -(-layer.hw_in // layer.stride)
    if op.skip:
        if layer.c_in == layer.c_out and layer.stride == 1:
            return 0.0, 0.0
        params = layer.c_in * layer.c_out
        return float(hw_out * hw_out * params), float(params)
    mid = layer.c_in * op.expand
    pw1 = layer.c_in * mid / op.groups
    dw = mid * op.kernel * op.kernel
    pw2 = mid * layer.c_out / op.groups
    macs = layer.hw_in * layer.hw_in * pw1 + hw_out * hw_out * (dw + pw2)
    return float(macs), float(pw1 + dw + pw2)


def _fbnet_cost_tables() -> tuple[np.ndarray, np.ndarray]:
    layers = fbnet_layers()
    macs = np.zeros((len(layers), len(FBNET_OPS)))
    params = np.zeros_like(macs)
    for i, layer in enumerate(layers):
        for k, op in enumerate(FBNET_OPS):
            macs[i, k], params[i, k] = fbnet_layer_cost(layer, op)
    return macs / 1e6, params / 1e3


_FBNET_MMACS, _FBNET_KPARAMS = _fbnet_cost_tables()


def fbnet_feature_names() -> list[str]:
    """Names of the columns produced by :func:`encode_fbnet` (version ``FBNET_ENCODER_VERSION``)."""
    names = [f"layer{i}_{op.name}" for i in range(FBNET_N_LAYERS) for op in FBNET_OPS]
    names += [f"layer{i}_mmacs" for i in range(FBNET_N_LAYERS)]
    names += [f"layer{i}_kparams" for i in range(FBNET_N_LAYERS)]
    names += [f"count_{op.name}" for op in FBNET_OPS]
    names += ["total_mmacs", "total_kparams"]
    return names


def validate_fbnet_codes(codes: np.ndarray) -> np.ndarray:
    """Check an (n, 22) array of op indices; return it as int64 or raise naming row/column/value."""
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[1] != FBNET_N_LAYERS:
        raise LatencyError(
            f"FBNet architectures must be an (n, {FBNET_N_LAYERS}) array of op indices "
            f"(columns {FBNET_COLUMNS[0]}..{FBNET_COLUMNS[-1]}), got shape {arr.shape}")
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError):
        as_float = np.full(arr.shape, np.nan)
        for pos, value in np.ndenumerate(arr):
            try:
                as_float[pos] = float(value)
            except (TypeError, ValueError):
                pass
    bad = ~np.isfinite(as_float) | (as_float != np.round(as_float)) | (as_float < 0) | (
        as_float >= len(FBNET_OPS))
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        value = arr[row, col]
        value = value.item() if isinstance(value, np.generic) else value
        raise LatencyError(
            f"row {row}, column {FBNET_COLUMNS[col]}: FBNet op index {value!r} is not an "
            f"integer in 0..{len(FBNET_OPS) - 1} ({', '.join(op.name for op in FBNET_OPS)})")
    return as_float.astype(np.int64)


def encode_fbnet(codes: np.ndarray) -> np.ndarray:
    """(n, 22) FBNet op indices -> float64 array (n, len(fbnet_feature_names())).

    One-hot of 22 layers x 9 ops, per-layer MACs in millions and parameters in thousands
    (convolutions only), op counts, total MACs and parameters.
    """
    idx = validate_fbnet_codes(codes)
    n = idx.shape[0]
    n_ops = len(FBNET_OPS)
    onehot = np.zeros((n, FBNET_N_LAYERS * n_ops))
    onehot[np.arange(n)[:, None], np.arange(FBNET_N_LAYERS)[None, :] * n_ops + idx] = 1.0
    layer_idx = np.arange(FBNET_N_LAYERS)[None, :]
    mmacs = _FBNET_MMACS[layer_idx, idx]
    kparams = _FBNET_KPARAMS[layer_idx, idx]
    counts = np.stack([(idx == k).sum(axis=1) for k in range(n_ops)], axis=1).astype(np.float64)
    totals = np.stack([mmacs.sum(axis=1), kparams.sum(axis=1)], axis=1)
    return np.concatenate([onehot, mmacs, kparams, counts, totals], axis=1)


# ----------------------------------------------------------------------------------------------
# Space registry: one row per space, read by predictors and persistence
# ----------------------------------------------------------------------------------------------

SPACES: tuple[str, ...] = ("nb201", "fbnet")
ENCODER_VERSIONS: dict[str, int] = {"nb201": NB201_ENCODER_VERSION, "fbnet": FBNET_ENCODER_VERSION}
ARCH_COLUMNS: dict[str, tuple[str, ...]] = {"nb201": ("arch_str",), "fbnet": FBNET_COLUMNS}


def check_space(space: str) -> str:
    if space not in SPACES:
        raise LatencyError(f"unknown architecture space {space!r}; allowed: {', '.join(SPACES)}")
    return space


def feature_names(space: str) -> list[str]:
    """Feature names of ``space``'s encoder."""
    return nb201_feature_names() if check_space(space) == "nb201" else fbnet_feature_names()


# Non-negative cost features for additive latency models, by name prefix: "counts" are the
# per-op counts of the whole network, "positions" the one-hot op choice per searchable position
# (and, for FBNet, that position's MACs and parameters). Each is a quantity whose latency cost
# on any device is >= 0, so an additive model may weight it with a non-negative coefficient.
_ADDITIVE_PREFIXES: dict[str, dict[str, tuple[str, ...]]] = {
    "nb201": {"counts": ("count_", "live_count_"), "positions": ("edge",)},
    "fbnet": {"counts": ("count_",), "positions": ("layer",)},
}


def additive_feature_columns(space: str, block: str) -> np.ndarray:
    """Column indices of ``space``'s features in additive block ``block`` (``counts`` or
    ``positions``); every such feature is >= 0 and costs >= 0 ms per unit on any device."""
    prefixes = _ADDITIVE_PREFIXES[check_space(space)]
    if block not in prefixes:
        raise LatencyError(f"unknown additive feature block {block!r}; allowed: "
                           f"{', '.join(prefixes)}")
    names = feature_names(space)
    return np.array([i for i, name in enumerate(names) if name.startswith(prefixes[block])],
                    dtype=np.int64)


def arch_codes(space: str, archs: np.ndarray | list) -> np.ndarray:
    """Validated (n, positions) int64 op indices: NB201 from arch strings (n, 6), FBNet from an
    (n, 22) array of op indices."""
    if check_space(space) == "nb201":
        return nb201_codes(archs)
    return validate_fbnet_codes(np.asarray(archs))


def encode_codes(space: str, codes: np.ndarray) -> np.ndarray:
    """Features of validated op indices (see :func:`arch_codes`)."""
    if check_space(space) == "nb201":
        return encode_nb201_codes(codes)
    return encode_fbnet(codes)


def encode(space: str, archs: np.ndarray | list) -> np.ndarray:
    """Encode architectures of ``space``: NB201 takes arch strings, FBNet an (n, 22) int array."""
    return encode_codes(space, arch_codes(space, archs))


def codes_to_keys(codes: np.ndarray) -> np.ndarray:
    """Canonical key per row of op indices (all < 10): the op digits as one string, e.g.
    NB201 ``'312040'``, FBNet 22 digits. Returns a numpy unicode array (vectorised)."""
    c = np.ascontiguousarray(np.asarray(codes, dtype=np.int64))
    digits = np.ascontiguousarray((c + ord("0")).astype(np.uint8))
    return digits.view(f"S{c.shape[1]}").ravel().astype(f"U{c.shape[1]}")


def arch_keys(space: str, archs: np.ndarray | list) -> np.ndarray:
    """Canonical keys of architectures of ``space`` (see :func:`codes_to_keys`)."""
    return codes_to_keys(arch_codes(space, archs))


@lru_cache(maxsize=1)
def _nb201_all_features() -> np.ndarray:
    out = encode_nb201_codes(np.array(list(_nb201_canonical().values()), dtype=np.int64))
    out.setflags(write=False)
    return out


def additive_minimum(space: str, columns: np.ndarray, coef: np.ndarray) -> float:
    """Exact minimum over every architecture of ``space`` of ``features[:, columns] @ coef``.

    ``columns`` must be additive feature columns (:func:`additive_feature_columns`). NB201: all
    15,625 architectures are evaluated. FBNet: every additive feature is a sum of per-layer terms
    (a layer's one-hot choice, MACs and parameters; op counts sum the one-hots), so the minimum
    is taken layer by layer: ``f(all r) + sum_i min_k [f(r.., layer i = k, ..r) - f(all r)]``.
    """
    check_space(space)
    columns = np.asarray(columns, dtype=np.int64)
    coef = np.asarray(coef, dtype=np.float64)
    if columns.shape != coef.shape or columns.ndim != 1:
        raise LatencyError(f"columns {columns.shape} and coef {coef.shape} must be 1-D and "
                           "of equal length")
    allowed = np.concatenate([additive_feature_columns(space, b)
                              for b in _ADDITIVE_PREFIXES[space]])
    if not np.isin(columns, allowed).all():
        bad = int(columns[~np.isin(columns, allowed)][0])
        raise LatencyError(f"feature {feature_names(space)[bad]!r} is not an additive feature "
                           f"of {space}")
    if columns.size == 0:
        return 0.0
    if space == "nb201":
        return float((_nb201_all_features()[:, columns] @ coef).min())
    n_ops = len(FBNET_OPS)
    probes = np.zeros((1 + FBNET_N_LAYERS * n_ops, FBNET_N_LAYERS), dtype=np.int64)
    for i in range(FBNET_N_LAYERS):
        probes[1 + i * n_ops: 1 + (i + 1) * n_ops, i] = np.arange(n_ops)
    f = encode_fbnet(probes)[:, columns] @ coef
    delta = (f[1:] - f[0]).reshape(FBNET_N_LAYERS, n_ops)
    return float(f[0] + delta.min(axis=1).sum())
