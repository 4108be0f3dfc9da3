"""Fusion rules (which op sequences a backend runs as one kernel) and kernels of a graph.

Rules are data: ``hwsim/latency/fusion_rules/<backend>.yaml`` lists sequences of op classes
with ``fused: true|false`` and the evidence. Two detectors:

- ``detect_rules_from_graph`` (host-ort, the shipped rules): ask the runtime which nodes it
  runs. Each sequence is placed in a small network context (its input produced by a 1x1
  convolution, a residual add reading that tensor, as in a CNN) and ONNX Runtime's optimized
  graph is read back (``OrtBackend.optimized_ops``): the sequence is fused when it left at most
  one compute node besides the context's. Timing differences cannot see a fusion whose fused
  kernel still pays for the activation (ORT's NCHWc convolution applies Clip/relu6 as a pass
  over its output tile: fused, yet not free) and are fooled by noise.
- ``detect_rules`` (backends without an inspectable graph, host-torch): nn-Meter's test cases.
  Time each op alone and the sequence as one model; the sequence is fused when
  ``sum(parts) - t(sequence) > margin_rel * min(parts)`` (the cheapest part mostly
  disappears).

Op classes: conv, dwconv, linear, bn, relu, relu6, clip, hswish, hsigmoid, sigmoid, add, mul,
maxpool, avgpool, gap, concat, channel_shuffle, reshape. A kernel is the longest chain of
single-consumer nodes whose class sequence is a fused rule and whose result one ``OpKey`` can
describe (anchor op + folded bn + residual add + one activation); every other node is a kernel
of its own. ``reshape`` (flatten) is a view: a kernel of zero cost, listed as such.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from hwsim.errors import LatencyError
from hwsim.graph.ir import Graph, Node, OpType
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import write_text_atomic

RULES_DIR = Path(__file__).resolve().parent / "fusion_rules"
ACT_CLASSES = ("relu", "relu6", "clip", "hswish", "hsigmoid", "sigmoid")
VIEW_CLASSES = ("reshape",)
ANCHOR_CLASSES = ("conv", "dwconv", "linear", "add", "bn")

# Sequences tested by detection: anchors followed by what usually follows them in CNNs.
CANDIDATE_SEQUENCES: tuple[tuple[str, ...], ...] = (
    ("conv", "relu"), ("conv", "relu6"), ("conv", "hswish"), ("conv", "sigmoid"),
    ("dwconv", "relu"), ("dwconv", "relu6"), ("dwconv", "hswish"),
    ("conv", "add"), ("conv", "add", "relu"), ("dwconv", "add"),
    ("linear", "relu"), ("add", "relu"), ("add", "relu6"),
    ("conv", "bn"), ("dwconv", "bn"), ("conv", "bn", "relu"), ("conv", "bn", "relu6"),
    ("dwconv", "bn", "relu6"), ("bn", "relu"),
)


def node_class(node: Node) -> str:
    """The op class of a graph node (see module docstring)."""
    op = node.op
    if op is OpType.CONV2D:
        return "dwconv" if node.attrs.is_depthwise else "conv"
    if op is OpType.CLIP:
        return "relu6" if node.attrs.is_relu6 else "clip"
    return {
        OpType.LINEAR: "linear", OpType.BATCHNORM: "bn", OpType.RELU: "relu",
        OpType.HARDSWISH: "hswish", OpType.HARDSIGMOID: "hsigmoid", OpType.SIGMOID: "sigmoid",
        OpType.MAXPOOL: "maxpool", OpType.AVGPOOL: "avgpool",
        OpType.GLOBAL_AVGPOOL: "gap", OpType.ADD: "add", OpType.MUL: "mul",
        OpType.CONCAT: "concat", OpType.RESHAPE: "reshape",
        OpType.CHANNEL_SHUFFLE: "channel_shuffle",
    }[op]


@dataclass(frozen=True)
class FusionRule:
    ops: tuple[str, ...]
    fused: bool
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class FusionRules:
    """The fusion behaviour of one backend."""

    backend: str
    basis: str  # detected | documented | assumption
    rules: tuple[FusionRule, ...] = ()
    note: str = ""
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def fused_sequences(self) -> frozenset[tuple[str, ...]]:
        return frozenset(r.ops for r in self.rules if r.fused)

    @classmethod
    def none(cls, backend: str = "naive") -> FusionRules:
        """No fusion at all: every op is its own kernel (the naive LUT sum)."""
        return cls(backend=backend, basis="assumption", note="no fusion (naive per-op sum)")

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "basis": self.basis, "note": self.note,
                "provenance": self.provenance,
                "rules": [{"ops": list(r.ops), "fused": r.fused, **r.evidence}
                          for r in self.rules]}

    def save(self, path: str | os.PathLike[str]) -> None:
        write_text_atomic(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FusionRules:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise LatencyError(f"{path}: cannot read fusion rules: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise LatencyError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise LatencyError(f"{path}: fusion rules must be a mapping")
        unknown = set(data) - {"backend", "basis", "note", "provenance", "rules"}
        if unknown:
            raise LatencyError(f"{path}: unknown field(s) {sorted(unknown)}")
        if data.get("basis") not in ("detected", "documented", "assumption"):
            raise LatencyError(f"{path}: basis must be detected, documented or assumption")
        rules = []
        for i, entry in enumerate(data.get("rules") or []):
            if not isinstance(entry, dict) or "ops" not in entry or "fused" not in entry:
                raise LatencyError(f"{path}: rules[{i}] needs 'ops' (list) and 'fused' (bool)")
            ops = entry["ops"]
            if not isinstance(ops, list) or len(ops) < 2 or not all(isinstance(o, str)
                                                                     for o in ops):
                raise LatencyError(f"{path}: rules[{i}].ops must list two or more op classes")
            if not isinstance(entry["fused"], bool):
                raise LatencyError(f"{path}: rules[{i}].fused must be true or false")
            evidence = {k: v for k, v in entry.items() if k not in ("ops", "fused")}
            rules.append(FusionRule(tuple(ops), entry["fused"], evidence))
        return cls(backend=str(data.get("backend", path.stem)), basis=data["basis"],
                   rules=tuple(rules), note=str(data.get("note") or ""),
                   provenance=dict(data.get("provenance") or {}))


def rules_for(backend: str) -> FusionRules:
    """The shipped rules of ``backend`` (``fusion_rules/<backend>.yaml``), else those of
    ``default.yaml`` (modeled devices)."""
    path = RULES_DIR / f"{backend}.yaml"
    if not path.is_file():
        path = RULES_DIR / "default.yaml"
    return FusionRules.load(path)


# -- kernels of a graph --------------------------------------------------------------------
@dataclass(frozen=True)
class Kernel:
    """Nodes that run as one kernel; ``key`` is None for a view (reshape: no data moved)."""

    nodes: tuple[Node, ...]
    key: OpKey | None
    classes: tuple[str, ...]

    @property
    def name(self) -> str:
        return "+".join(n.name for n in self.nodes)


def _hwc(shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    if len(shape) == 4:
        return (shape[2], shape[3], shape[1])
    if len(shape) == 2:
        return (shape[1],)
    raise LatencyError(f"{where}: shape {shape} is neither NCHW nor (N, F)")


def _square(pair: tuple[int, int], what: str, where: str) -> int:
    if pair[0] != pair[1]:
        raise LatencyError(f"{where}: non-square {what} {pair} has no op key")
    return pair[0]


def node_key(node: Node) -> OpKey:
    """The op key of a single node, nothing fused."""
    where = f"node {node.name!r} ({node.op.value})"
    cls = node_class(node)
    shape_in = _hwc(node.input_shapes[0], where)
    shape_out = _hwc(node.output_shape, where)
    a = node.attrs
    if cls in ("conv", "dwconv"):
        k = _square(a.kernel, "kernel", where)
        s = _square(a.stride, "stride", where)
        if a.dilation != (1, 1):
            raise LatencyError(f"{where}: dilated convolution has no op key")
        if a.padding != (k // 2,) * 4:
            raise LatencyError(f"{where}: padding {a.padding} differs from kernel//2, the "
                               f"padding op keys assume")
        groups = a.groups if cls == "conv" and a.groups > 1 else None
        return OpKey(cls, shape_in, shape_out, kernel=k, stride=s, groups=groups)
    if cls in ("maxpool", "avgpool"):
        return OpKey(cls, shape_in, shape_out, kernel=_square(a.kernel, "kernel", where),
                     stride=_square(a.stride, "stride", where))
    if cls in ("add", "mul", "concat") and len(set(node.input_shapes)) != 1:
        return OpKey(f"{cls}_broadcast", shape_in, shape_out)
    return OpKey(cls, shape_in, shape_out)


def _absorb(key: OpKey, cls: str) -> OpKey | None:
    """``key`` with the next op of class ``cls`` fused in, or None if no key can say so."""
    if cls == "bn":
        return key if key.act is None and key.idskip is None else None
    if cls == "add":
        if key.op in ("conv", "dwconv", "linear") and key.act is None and key.idskip is None:
            return key.with_(idskip=1)
        return None
    if cls in ACT_CLASSES:
        return key.with_(act=cls) if key.act is None else None
    return None


def graph_kernels(graph: Graph, rules: FusionRules) -> list[Kernel]:
    """Split ``graph`` into kernels under ``rules`` (greedy longest chain, graph order)."""
    fused = rules.fused_sequences
    max_len = max((len(s) for s in fused), default=1)
    outputs = set(graph.outputs)
    taken: set[str] = set()
    kernels: list[Kernel] = []
    for node in graph.nodes:
        if node.name in taken:
            continue
        cls = node_class(node)
        if cls in VIEW_CLASSES:
            kernels.append(Kernel((node,), None, (cls,)))
            taken.add(node.name)
            continue
        chain, classes, key = [node], [cls], node_key(node)
        best = (1, key)
        produced = {node.output}
        while len(chain) < max_len:
            tail = chain[-1]
            users = graph.consumers(tail.output)
            if len(users) != 1 or tail.output in outputs:
                break
            nxt = users[0]
            if nxt.name in taken:
                break
            if node_class(nxt) == "add":
                other = [t for t in nxt.inputs if t != tail.output]
                if len(other) != 1 or other[0] in produced or \
                        graph.shape(other[0]) != nxt.output_shape:
                    break
            new_key = _absorb(key, node_class(nxt))
            if new_key is None:
                break
            chain.append(nxt)
            classes.append(node_class(nxt))
            produced.add(nxt.output)
            key = new_key
            if tuple(classes) in fused:
                best = (len(chain), key)
        n, key = best
        kernels.append(Kernel(tuple(chain[:n]), key, tuple(classes[:n])))
        taken.update(c.name for c in chain[:n])
    return kernels


def kernel_keys(graphs: Iterable[Graph], rules: FusionRules) -> list[OpKey]:
    """Distinct kernel keys of ``graphs`` under ``rules`` (first-seen order)."""
    seen: dict[OpKey, None] = {}
    for g in graphs:
        for k in graph_kernels(g, rules):
            if k.key is not None:
                seen.setdefault(k.key, None)
    return list(seen)


# -- detection -------------------------------------------------------------------------------
def _test_keys(seq: Sequence[str]) -> tuple[OpKey, list[OpKey], OpKey | None]:
    """(key of the first op alone, keys of each part, key of the fused sequence or None when
    the sequence contains bn and is timed as a chain model)."""
    hw, c = 56, 32
    first = seq[0]
    if first in ("conv", "dwconv"):
        base = OpKey(first, (hw, hw, c), (hw, hw, c), kernel=1 if first == "conv" else 3,
                     stride=1)
    elif first == "linear":
        base = OpKey("linear", (1024,), (1024,))
    elif first in ("add", "bn"):
        base = OpKey(first, (hw, hw, c), (hw, hw, c))
    else:
        raise LatencyError(f"no detection test for sequences starting with {first!r}")
    parts = [base]
    fused_key: OpKey | None = base
    for cls in seq[1:]:
        parts.append(OpKey(cls, base.output, base.output))
        if fused_key is not None:
            fused_key = None if cls == "bn" else _absorb(fused_key, cls)
            if fused_key is None and cls != "bn":
                raise LatencyError(f"sequence {seq} cannot be expressed as one op key")
    return base, parts, fused_key


def detect_rules(backend: Any, measure: Any, sequences: Sequence[tuple[str, ...]] =
                 CANDIDATE_SEQUENCES, margin_rel: float = 0.5) -> FusionRules:
    """Detect fusion on a host backend by timing A, B and A+B (nn-Meter's test cases).

    ``measure(key) -> LatencyRow`` times one op key on ``backend``; sequences containing
    ``bn`` need ``backend.model_runner`` (ONNX) and are timed through
    ``onnx_builder.chain_model``; backends without it skip them (recorded as untested).
    """
    import numpy as np

    from hwsim.latency.measure import time_runner
    from hwsim.latency.onnx_builder import chain_model

    rules = []
    for seq in sequences:
        base, parts, fused_key = _test_keys(seq)
        t_parts = [measure(k).latency_ms for k in parts]
        if fused_key is not None:
            t_seq = measure(fused_key).latency_ms
        else:
            if len(seq) != 2:
                # chains through bn of length 3: time conv+bn then the rest is not expressible
                rest = seq[2:]
                model = chain_model(base, seq[1])
                for cls in rest:
                    model = _append(model, cls)
            else:
                model = chain_model(base, seq[1])
            try:
                run = backend.model_runner(model)
            except LatencyError as err:
                rules.append(FusionRule(tuple(seq), False, {"untested": str(err)}))
                continue
            timing = time_runner(run, measure.policy)
            t_seq = float(np.median(timing.clean)) * 1e3 - measure.overhead_s * 1e3
        saved = sum(t_parts) - t_seq
        is_fused = saved > margin_rel * min(t_parts)
        rules.append(FusionRule(tuple(seq), bool(is_fused), {
            "t_parts_ms": [round(t, 6) for t in t_parts], "t_sequence_ms": round(t_seq, 6),
            "test_keys": [str(k) for k in parts]}))
    return FusionRules(
        backend=backend.name, basis="detected", rules=tuple(rules),
        note=(f"detected by timing each op alone and the sequence as one model; fused when "
              f"sum(parts) - t(sequence) > {margin_rel} * min(parts)"),
        provenance={"date": date.today().isoformat(), "threads": backend.threads,
                    "versions": backend.versions(), "margin_rel": margin_rel})


def _context_model(seq: Sequence[str], with_sequence: bool = True) -> Any:
    """ONNX model: x -> 1x1 conv -> p (the context), then ``seq`` applied to p; an ``add``
    adds p (a residual) or, when ``add`` comes first, a second 1x1 conv q of x. When the
    sequence starts with ``add`` or ``bn``, p and q are also model outputs, so that the runtime
    cannot fold the sequence into the context's convolutions (that would test conv+add or
    conv+bn). With ``with_sequence=False`` only the context."""
    from hwsim.latency.onnx_builder import OnnxNetBuilder

    b = OnnxNetBuilder(seed=0)
    first = seq[0]
    if first == "linear":
        x = b.input((256,), "x")
        if not with_sequence:
            return None
        y = b.linear(x, 256)
        p = x
    else:
        x = b.input((32, 28, 28), "x")
        p = b.conv(x, 32, 1, 1)
        q = b.conv(x, 32, 1, 1) if first == "add" else None
        shown = [p] + ([q] if q is not None else [])
        if not with_sequence:
            return b.model(shown)
        if first == "conv":
            y = b.conv(p, 32, 1, 1)
        elif first == "dwconv":
            y = b.conv(p, 32, 3, 1, groups=32)
        elif first == "bn":
            y = b.bn(p)
        elif first == "add":
            y = b.add(q, p)
        else:
            raise LatencyError(f"no detection context for sequences starting with {first!r}")
    for cls in seq[1:]:
        if cls == "bn":
            y = b.bn(y)
        elif cls == "add":
            if b.shapes[y] != b.shapes[p]:
                raise LatencyError(f"sequence {seq}: add after a shape change is not tested")
            y = b.add(y, p)
        else:
            y = b.act(y, cls)
    return b.model((shown if first in ("add", "bn") else []) + [y])


def detect_rules_from_graph(backend: Any, sequences: Sequence[tuple[str, ...]] =
                            CANDIDATE_SEQUENCES) -> FusionRules:
    """Fusion rules of a backend that can show its optimized graph (``optimized_ops``; see the
    module docstring). Evidence per rule: the compute nodes of the context alone and with the
    sequence."""
    rules = []
    for seq in sequences:
        context = _context_model(seq, with_sequence=False)
        ops_context = [] if context is None else backend.optimized_ops(context)
        ops_all = backend.optimized_ops(_context_model(seq))
        added = len(ops_all) - len(ops_context)
        rules.append(FusionRule(tuple(seq), added <= 1, {
            "optimized_context": ops_context, "optimized_with_sequence": ops_all}))
    return FusionRules(
        backend=backend.name, basis="detected", rules=tuple(rules),
        note=("detected from the runtime's optimized graph: each sequence after a 1x1 conv "
              "(residual add of that conv's output); fused when the sequence adds at most one "
              "compute node to the context's (layout conversions not counted)"),
        provenance={"date": date.today().isoformat(), "threads": backend.threads,
                    "versions": backend.versions(), "method": "optimized graph"})


def _append(model: Any, cls: str) -> Any:
    """Append an activation node of class ``cls`` to a one-output ONNX model."""
    from hwsim.latency.onnx_builder import OnnxNetBuilder

    b = OnnxNetBuilder(first_index=20_000)
    b.nodes, b.inits, b.inputs = list(model.graph.node), list(model.graph.initializer), list(
        model.graph.input)
    out = model.graph.output[0].name
    b.shapes[out] = tuple(d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim
                          )[1:]
    return b.model([b.act(out, cls)])
