"""Whole-graph emulation of a device's numerics.

``Emulator(graph, device, precision).calibrate(calib_x)`` plans the quantized model (fusion,
weight codes, activation qparams from the device's calibration method on the fp32 model's
activations); ``run(x)`` computes what the device computes, layer by layer.

Two engines, chosen by the precision's ``arithmetic.requant`` (data in the device YAML):

integer (fp32_multiply, q31_double_rounding, double_multiply_rhaz, shift): tensors are integer
  codes. Conv/linear: exact integer accumulation at the spec's accumulator width (overflow
  counted), bias aligned to the accumulator scale s_x*s_w, the device's requantization, fused
  ReLU/ReLU6/Clip as a clamp of output codes. Add: ONNX Runtime's QLinearAdd arithmetic;
  global/avg pool: ORT's QLinear pool arithmetic; maxpool, reshape, channel shuffle, ReLU on
  codes (qparams pass through). Nonlinear ops (sigmoid, hardswish, hardsigmoid, mul,
  standalone batchnorm/clip) are lookup functions: dequantize in float32, compute the op in
  float32, quantize with the output qparams — as ORT's QLinearSigmoid tables do. Weights and
  activations must be uniform or dynamic fixed point (a fixed point tensor is uniform with scale
  2^-fl and zero point 0).
float (requant: float): tensors hold values on the device's grid (log, fixed point, fp16 ...).
  Conv/linear accumulate in ``float_accumulation`` (fp32 or fp64 via torch; fp16 sequentially,
  see ``hwsim.emulate.fp16_accumulate``) from dequantized inputs and weights; every op output
  is re-quantized with the activation numerics (ops that keep values on the grid — maxpool,
  reshape, channel shuffle, ReLU — pass through).

Fusion: a ReLU or Clip whose input is a conv/linear/add output with no other consumer (and not a
graph output) is fused into that layer; its output qparams are calibrated after the activation.

Mixed precision (``layer_precisions``): per step name, a pair (weight precision, activation
precision) of the device's precisions, either None for the emulator's ``precision``. The weight
numerics of a conv/linear step come from the weight precision; the numerics of the step's output
tensor (calibration and codes; pass-through ops downstream share them) from the activation
precision; the bias numerics and the arithmetic (accumulator, requantization, float
accumulation) from the wider of the two (more bits; the weight precision on a tie). Graph inputs
and steps without an entry use ``precision``. Overrides must keep the engine of ``precision``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.devices.spec import Granularity
from hwsim.emulate.float_reference import apply_node, conv2d_float, linear_float, run_float
from hwsim.emulate.fp16_accumulate import fp16_gemm, im2col
from hwsim.emulate.integer_elementwise import (
    average_pool_codes,
    global_average_pool_codes,
    qlinear_add,
)
from hwsim.emulate.integer_ops import (
    PreparedWeights,
    conv2d_accumulate,
    linear_accumulate,
    prepare_weights,
)
from hwsim.emulate.requant import make_requantizer
from hwsim.errors import EmulationError, HwsimError, UnsupportedOpError
from hwsim.graph.ir import Graph, Node, OpType
from hwsim.quant.device import Device
from hwsim.quant.qparams import FixedPointQParams, QParams, UniformQParams

INTEGER_REQUANTS = ("fp32_multiply", "q31_double_rounding", "double_multiply_rhaz", "shift")
_PASS_THROUGH = (OpType.MAXPOOL, OpType.RESHAPE, OpType.CHANNEL_SHUFFLE, OpType.RELU)
_FUSABLE_INTO = (OpType.CONV2D, OpType.LINEAR, OpType.ADD)


@dataclass(frozen=True)
class Step:
    """One emulated layer: a node, plus the activation fused into it (if any)."""

    node: Node
    fused: Node | None
    output: str

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def label(self) -> str:
        return self.node.op.value + (f"+{self.fused.op.value}" if self.fused else "")

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.fused or self.node).output_shape


def plan_steps(graph: Graph) -> list[Step]:
    """The graph's nodes with fusable activations folded into their producers."""
    outputs = set(graph.outputs)
    consumers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for t in node.inputs:
            consumers.setdefault(t, []).append(node)
    fused_away: set[str] = set()
    steps: list[Step] = []
    for node in graph.nodes:
        if node.name in fused_away:
            continue
        users = consumers.get(node.output, [])
        act = None
        if (node.op in _FUSABLE_INTO and len(users) == 1 and node.output not in outputs
                and users[0].op in (OpType.RELU, OpType.CLIP)):
            act = users[0]
            fused_away.add(act.name)
        steps.append(Step(node=node, fused=act, output=(act or node).output))
    return steps


@dataclass(frozen=True, eq=False)
class LayerParams:
    """Quantized parameters of a conv/linear step."""

    weight_qparams: QParams
    weight_codes: np.ndarray
    weight_values: np.ndarray  # float32 values the device holds
    bias_codes: np.ndarray | None  # integer engine: int64 at the accumulator scale
    bias_values: np.ndarray  # float32 values the device adds


@dataclass(eq=False)
class EmulationResult:
    """Output of ``Emulator.run``.

    output: final graph output, dequantized float32. codes: per step name, the tensor as the
    device holds it (integer codes, or float16/float32 values). values: per step name,
    dequantized float32. overflow: per step name, accumulators outside the accumulator width;
    saturated_pairs: per step name, int16 pair sums that saturated.
    """

    output: np.ndarray
    codes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    input_codes: np.ndarray
    overflow: dict[str, int] = field(default_factory=dict)
    saturated_pairs: dict[str, int] = field(default_factory=dict)


def _as_uniform(qp: QParams, what: str) -> UniformQParams:
    if isinstance(qp, UniformQParams):
        return qp
    if isinstance(qp, FixedPointQParams):
        return UniformQParams(scale=np.float32(2.0 ** -qp.fl), zero_point=0, qmin=qp.qmin,
                              qmax=qp.qmax)
    raise EmulationError(f"{what}: the integer engine needs uniform or fixed point qparams, "
                         f"got {qp.kind}")


def _scalar_qparams(qp: UniformQParams, what: str) -> tuple[float, int]:
    if qp.scale.ndim != 0:
        raise EmulationError(f"{what}: activations must be quantized per tensor, got per-axis "
                             f"qparams (axis {qp.axis})")
    return float(qp.scale), int(qp.zero_point)


def _round_shift(values: np.ndarray, exp2: int) -> np.ndarray:
    """values * 2^exp2 for int64 values, exact (exp2 >= 0) or rounded half to even."""
    if exp2 >= 0:
        return values.astype(np.int64) << exp2
    return np.rint(values.astype(np.float64) * 2.0 ** exp2).astype(np.int64)


class Emulator:
    """Bit-exact emulation of ``graph`` under ``device``'s ``precision``.

    Parameters are stored as given; ``calibrate`` builds the quantized model (attributes with a
    trailing underscore), ``run`` executes it.
    """

    def __init__(self, graph: Graph, device: Device, precision: str | None = None,
                 layer_precisions: Mapping[str, tuple[str | None, str | None]] | None = None
                 ) -> None:
        self.graph = graph
        self.device = device
        self.precision = precision or device.default_precision
        self.layer_precisions = dict(layer_precisions or {})

    # ------------------------------------------------------------------ planning
    @property
    def numerics(self):
        return self.device.precision(self.precision)

    @property
    def engine(self) -> str:
        """'integer' or 'float' (from the precision's requant arithmetic)."""
        return "float" if self.numerics.arithmetic.requant == "float" else "integer"

    def _where(self, node: Node | None = None) -> str:
        base = f"device {self.device.name!r} precision {self.precision!r}"
        return base if node is None else f"{base}, node {node.name!r} ({node.op.value})"

    def _check_supported(self) -> None:
        num = self.numerics
        if self.engine == "integer":
            for role in ("weight", "activation"):
                kind = getattr(num, role).kind
                if kind not in ("uniform", "dynamic_fixed_point"):
                    raise EmulationError(f"{self._where()}: integer requant "
                                         f"{num.arithmetic.requant!r} with {role} kind {kind!r} "
                                         "is not supported (needs uniform or fixed point)")
        for node in self.graph.nodes:
            if node.op not in _SUPPORTED:
                supported = sorted(o.value for o in _SUPPORTED)
                raise UnsupportedOpError(f"{self._where(node)}: op not supported by the "
                                         f"emulator; supported: {supported}")

    def _step_precisions(self, step: Step) -> tuple[str, str, str]:
        """(weight, activation, arithmetic) precision names of ``step`` (module docstring)."""
        w, a = self.layer_precisions.get(step.name, (None, None))
        w, a = w or self.precision, a or self.precision
        wide = w if (_widest_bits(self.device.precision(w))
                     >= _widest_bits(self.device.precision(a))) else a
        return w, a, wide

    def _check_layer_precisions(self) -> None:
        steps = {s.name: s for s in plan_steps(self.graph)}
        for name, pair in self.layer_precisions.items():
            where = f"layer_precisions[{name!r}]"
            if name not in steps:
                raise EmulationError(f"{where}: no step of that name; steps: {list(steps)}")
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise EmulationError(f"{where}: expected a pair (weight precision, activation "
                                     f"precision), got {pair!r}")
            step = steps[name]
            w, a = pair
            if w is not None and step.node.op not in (OpType.CONV2D, OpType.LINEAR):
                raise EmulationError(f"{where}: step {name!r} ({step.label}) has no weights; "
                                     "give None as its weight precision")
            if a is not None and self._passes_through(step):
                raise EmulationError(f"{where}: step {name!r} ({step.label}) passes its input's "
                                     "qparams through; set the activation precision on the "
                                     "step producing its input")
            for prec in (w, a):
                if prec is None:
                    continue
                num = self.device.precision(prec)
                engine = "float" if num.arithmetic.requant == "float" else "integer"
                if engine != self.engine:
                    raise EmulationError(f"{where}: precision {prec!r} uses the {engine} "
                                         f"engine but {self.precision!r} the {self.engine} "
                                         "engine; overrides must keep the engine")

    def _tensor_quantizer(self, tensor: str):
        """The quantizer of a calibrated or pass-through tensor's codes."""
        return self.tensor_quantizers_.get(tensor, self.activation_quantizer_)

    def _weight_quantizer(self, node: Node, precision: str | None = None):
        num = self.device.precision(precision or self.precision).weight
        if (node.op is OpType.LINEAR and getattr(num, "matmul_granularity", None) is not None):
            upd: dict[str, Any] = {"granularity": num.matmul_granularity,
                                   "matmul_granularity": None}
            if num.matmul_granularity is Granularity.PER_TENSOR:
                upd["axis"] = None
            num = num.model_copy(update=upd)
        from hwsim.quant.factory import make_quantizer
        return make_quantizer(num)

    def calibrate(self, calib_x: np.ndarray | Mapping[str, np.ndarray] | None,
                  batch_size: int = 256, fixed: Mapping[str, QParams] | None = None
                  ) -> Emulator:
        """Quantize weights and calibrate activation qparams on ``calib_x`` (run through the
        fp32 model in batches of ``batch_size``). ``fixed``: qparams to use as given, by tensor
        name (e.g. from a device toolchain or a dump manifest); ``calib_x`` may be None when
        every activation tensor is fixed. Returns self."""
        self._check_supported()
        self._check_layer_precisions()
        try:
            return self._calibrate(calib_x, batch_size, dict(fixed or {}))
        except HwsimError as err:
            raise type(err)(f"{self._where()}: calibration failed: {err}") from None

    @property
    def calibrated_tensors(self) -> list[str]:
        """Tensors whose qparams come from calibration (graph inputs and step outputs that do
        not pass their input's qparams through)."""
        steps = plan_steps(self.graph)
        return list(self.graph.inputs) + [s.output for s in steps if not self._passes_through(s)]

    def _calibrate(self, calib_x, batch_size: int, fixed: dict[str, QParams]) -> Emulator:
        dev, prec = self.device, self.precision
        self.steps_ = plan_steps(self.graph)
        act_q = dev.quantizer("activation", prec)
        in_q = dev.quantizer("input", prec)
        self.input_quantizer_ = in_q
        self.activation_quantizer_ = act_q
        self.tensor_quantizers_ = {}
        needs: dict[str, Any] = {}
        for name in self.graph.inputs:
            needs[name] = in_q.observer()
            self.tensor_quantizers_[name] = in_q
        for step in self.steps_:
            if not self._passes_through(step):
                a_prec = self._step_precisions(step)[1]
                q = act_q if a_prec == prec else dev.quantizer("activation", a_prec)
                self.tensor_quantizers_[step.output] = q
                needs[step.output] = q.observer()
            else:
                self.tensor_quantizers_[step.output] = self._tensor_quantizer(
                    step.node.inputs[0])
        unknown = sorted(set(fixed) - set(needs))
        if unknown:
            raise EmulationError(f"fixed qparams for {unknown}: not calibrated tensors; "
                                 f"allowed: {list(needs)}")
        needs = {t: obs for t, obs in needs.items() if t not in fixed}
        if needs:
            if calib_x is None:
                raise EmulationError(f"calibration data is needed for tensors {list(needs)}")
            n_seen = 0
            for batch in _batches(calib_x, batch_size):
                env = run_float(self.graph, batch)
                for t, obs in needs.items():
                    obs.update(env[t])
                n_seen += 1
            if n_seen == 0:
                raise EmulationError("calibration data is empty")
        qp: dict[str, QParams] = {t: obs.qparams() for t, obs in needs.items()}
        qp.update(fixed)
        # pass-through ops share their input's qparams
        for step in self.steps_:
            if self._passes_through(step):
                qp[step.output] = qp[step.node.inputs[0]]
        self.qparams_ = qp
        self.layers_ = {s.name: self._quantize_layer(s) for s in self.steps_
                        if s.node.op in (OpType.CONV2D, OpType.LINEAR)}
        self._prepared_weights: dict[str, PreparedWeights] = {}
        return self

    def _passes_through(self, step: Step) -> bool:
        return step.node.op in _PASS_THROUGH and step.fused is None

    def _quantize_layer(self, step: Step) -> LayerParams:
        node = step.node
        w = np.asarray(node.weights["weight"], dtype=np.float32)
        b = np.asarray(node.weights["bias"], dtype=np.float32)
        w_prec, _, arith_prec = self._step_precisions(step)
        wq = self._weight_quantizer(node, w_prec)
        bq = self.device.quantizer("bias", arith_prec)
        num = self.device.precision(arith_prec).model_copy(
            update={"weight": self.device.precision(w_prec).weight})
        shared = num.weight.kind == "dynamic_fixed_point" and num.bias.kind == num.weight.kind
        try:
            # Ristretto: one fixed point format for a layer's parameters (weights and bias)
            wqp = wq.calibrate(np.concatenate([w.ravel(), b.ravel()]) if shared else w)
            w_codes = wq.quantize(w, wqp)
            w_vals = wq.dequantize(w_codes, wqp)
            x_qp = self.qparams_[node.inputs[0]]
            if shared:
                bqp = wqp
            elif num.bias.kind == "uniform" and num.bias.scale_rule == "derived":
                xs = _as_uniform(x_qp, "bias scale").scale
                ws = _as_uniform(wqp, "bias scale").scale
                bqp = bq.calibrate(b, input_scale=xs, weight_scale=ws)
            else:
                bqp = bq.calibrate(b)
            b_codes = bq.quantize(b, bqp)
            b_vals = bq.dequantize(b_codes, bqp)
        except HwsimError as err:
            raise type(err)(f"node {node.name!r} ({node.op.value}): {err}") from None
        acc_codes = None
        if self.engine == "integer":
            acc_codes = self._bias_at_accumulator(node, b_codes, bqp, x_qp, wqp)
        return LayerParams(weight_qparams=wqp, weight_codes=w_codes, weight_values=w_vals,
                           bias_codes=acc_codes, bias_values=b_vals)

    def _bias_at_accumulator(self, node: Node, b_codes, bqp, x_qp, wqp) -> np.ndarray:
        """Bias codes rescaled to the accumulator scale s_x * s_w (exact when the ratio is a
        power of two >= 1, else rounded half to even per channel)."""
        bu = _as_uniform(bqp, f"node {node.name!r} bias")
        xu = _as_uniform(x_qp, f"node {node.name!r} input")
        wu = _as_uniform(wqp, f"node {node.name!r} weight")
        b = np.asarray(b_codes, dtype=np.int64) - bu.zero_point
        acc_scale = np.float64(xu.scale) * wu.scale.astype(np.float64)
        ratio = np.broadcast_to(bu.scale.astype(np.float64) / acc_scale, b.shape)
        out = np.empty(b.shape, dtype=np.int64)
        for i, r in enumerate(ratio):
            m, e = math.frexp(float(r))
            if m == 0.5:  # a power of two: shift
                out[i] = _round_shift(b[i:i + 1], e - 1)[0]
            else:
                out[i] = int(np.rint(float(b[i]) * float(r)))
        return out

    # ------------------------------------------------------------------ execution
    def run(self, x: np.ndarray | Mapping[str, np.ndarray], batch_size: int = 512
            ) -> EmulationResult:
        """Emulate on ``x`` (batched internally); returns every step's tensor."""
        if not hasattr(self, "qparams_"):
            raise EmulationError("Emulator.run needs calibrate() first")
        parts = [self._run_batch(b) for b in _batches(x, batch_size)]
        if not parts:
            raise EmulationError("no input rows to emulate")
        first = parts[0]

        def cat(key: str) -> dict[str, np.ndarray]:
            return {k: np.concatenate([getattr(p, key)[k] for p in parts])
                    for k in getattr(first, key)}

        return EmulationResult(
            output=np.concatenate([p.output for p in parts]), codes=cat("codes"),
            values=cat("values"),
            input_codes=np.concatenate([p.input_codes for p in parts]),
            overflow={k: sum(p.overflow[k] for p in parts) for k in first.overflow},
            saturated_pairs={k: sum(p.saturated_pairs[k] for p in parts)
                             for k in first.saturated_pairs})

    def _run_batch(self, x) -> EmulationResult:
        inputs = _bind(self.graph, x)
        codes: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        res = EmulationResult(output=np.empty(0), codes={}, values={}, input_codes=np.empty(0))
        for name, arr in inputs.items():
            q = self.qparams_[name]
            c = self.input_quantizer_.quantize(arr, q)
            codes[name] = c
            values[name] = self.input_quantizer_.dequantize(c, q)
        res.input_codes = codes[next(iter(inputs))]
        run_step = self._integer_step if self.engine == "integer" else self._float_step
        for step in self.steps_:
            try:
                c, v = run_step(step, codes, values, res)
            except HwsimError as err:
                raise type(err)(f"{self._where(step.node)}: {err}") from None
            codes[step.output] = c
            values[step.output] = v
            res.codes[step.name] = c
            res.values[step.name] = v
        out_name = self.graph.outputs[0]
        res.output = values[out_name]
        return res

    def _dequant(self, tensor: str, c: np.ndarray) -> np.ndarray:
        return self._tensor_quantizer(tensor).dequantize(c, self.qparams_[tensor])

    def _quant_out(self, step: Step, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        qp = self.qparams_[step.output]
        q = self._tensor_quantizer(step.output)
        c = q.quantize(v.astype(np.float32), qp)
        return c, q.dequantize(c, qp)

    def _fused_float(self, step: Step, v: np.ndarray) -> np.ndarray:
        return v if step.fused is None else apply_node(step.fused, [v])

    # integer engine ------------------------------------------------------------
    def _act_range(self, step: Step, yq: UniformQParams) -> tuple[int, int]:
        lo, hi = yq.qmin, yq.qmax
        if step.fused is None:
            return lo, hi
        s, zp = _scalar_qparams(yq, "output")
        if step.fused.op is OpType.RELU:
            return max(lo, zp), hi
        a = step.fused.attrs
        # TFLite CalculateActivationRangeQuantized: bound / s in float32, half away from zero
        def code(bound: float, default: int) -> int:
            if math.isinf(bound):
                return default
            v = float(np.float32(bound) / np.float32(s))
            return zp + int(math.copysign(math.floor(abs(v) + 0.5), v))
        return max(lo, code(a.min, lo)), min(hi, code(a.max, hi))

    def _integer_step(self, step: Step, codes, values, res: EmulationResult):
        node = step.node
        op = node.op
        arith = self.device.precision(self._step_precisions(step)[2]).arithmetic
        if op in (OpType.CONV2D, OpType.LINEAR):
            lp = self.layers_[node.name]
            xq = _as_uniform(self.qparams_[node.inputs[0]], "input")
            wq = _as_uniform(lp.weight_qparams, "weight")
            yq = _as_uniform(self.qparams_[step.output], "output")
            sx, zx = _scalar_qparams(xq, "input")
            sy, zy = _scalar_qparams(yq, "output")
            x = codes[node.inputs[0]]
            groups = node.attrs.groups if op is OpType.CONV2D else 1
            if node.name not in self._prepared_weights:  # planned once, reused every batch
                self._prepared_weights[node.name] = prepare_weights(
                    lp.weight_codes, wq.zero_point, groups)
            common = dict(x_zero_point=zx, bias=lp.bias_codes,
                          accumulator_bits=arith.accumulator_bits,
                          accumulator_overflow=arith.accumulator_overflow,
                          int16_pair_saturation=arith.int16_pair_saturation)
            if op is OpType.CONV2D:
                a = node.attrs
                acc = conv2d_accumulate(x, self._prepared_weights[node.name], stride=a.stride,
                                        padding=a.padding, dilation=a.dilation,
                                        groups=a.groups, **common)
                axis = 1
            else:
                acc = linear_accumulate(x, self._prepared_weights[node.name], **common)
                axis = acc.values.ndim - 1
            res.overflow[step.name] = acc.overflow_count
            res.saturated_pairs[step.name] = acc.saturated_pairs
            lo, hi = self._act_range(step, yq)
            rq = make_requantizer(arith.requant, sx, wq.scale, sy, zy, lo, hi,
                                  arith.shift_rounding.value if arith.shift_rounding else None,
                                  accumulator_bits=arith.accumulator_bits)
            y = rq(acc.values, channel_axis=axis).astype(np.int64)
            return y, self._dequant(step.output, y)
        if op is OpType.ADD:
            aq = _as_uniform(self.qparams_[node.inputs[0]], "input a")
            bq = _as_uniform(self.qparams_[node.inputs[1]], "input b")
            yq = _as_uniform(self.qparams_[step.output], "output")
            sa, za = _scalar_qparams(aq, "input a")
            sb, zb = _scalar_qparams(bq, "input b")
            sy, zy = _scalar_qparams(yq, "output")
            y = qlinear_add(codes[node.inputs[0]], sa, za, codes[node.inputs[1]], sb, zb, sy, zy,
                            yq.qmin, yq.qmax).astype(np.int64)
            lo, hi = self._act_range(step, yq)
            y = np.clip(y, lo, hi)
            return y, self._dequant(step.output, y)
        if op in (OpType.GLOBAL_AVGPOOL, OpType.AVGPOOL) and not getattr(
                node.attrs, "ceil_mode", False):
            xq = _as_uniform(self.qparams_[node.inputs[0]], "input")
            yq = _as_uniform(self.qparams_[step.output], "output")
            sx, zx = _scalar_qparams(xq, "input")
            sy, zy = _scalar_qparams(yq, "output")
            x = codes[node.inputs[0]]
            if op is OpType.GLOBAL_AVGPOOL:
                y = global_average_pool_codes(x, sx, zx, sy, zy, yq.qmin, yq.qmax)
                y = y.reshape(node.output_shape[:1] and (x.shape[0],) + node.output_shape[1:])
            else:
                a = node.attrs
                y = average_pool_codes(x, sx, zx, sy, zy, yq.qmin, yq.qmax, a.kernel, a.stride,
                                       a.padding, a.count_include_pad)
            y = y.astype(np.int64)
            return y, self._dequant(step.output, y)
        if op is OpType.RELU and step.fused is None:
            xq = _as_uniform(self.qparams_[node.inputs[0]], "input")
            _, zx = _scalar_qparams(xq, "input")
            y = np.maximum(codes[node.inputs[0]], zx)
            return y, self._dequant(step.output, y)
        if op in (OpType.MAXPOOL, OpType.RESHAPE, OpType.CHANNEL_SHUFFLE):
            x = codes[node.inputs[0]]
            if op is OpType.MAXPOOL:
                y = apply_node(node, [x.astype(np.float64)], np.float64).astype(np.int64)
            else:
                y = apply_node(node, [x], x.dtype)
            return y, self._dequant(step.output, y)
        if op is OpType.CONCAT:
            qps = [self.qparams_[t] for t in node.inputs]
            out_qp = self.qparams_[step.output]
            if all(q.to_dict() == out_qp.to_dict() for q in qps):
                y = np.concatenate([codes[t] for t in node.inputs], axis=node.attrs.axis)
                return y, self._dequant(step.output, y)
        # lookup-function ops: dequantize, float32 op, quantize with the output qparams
        v = apply_node(node, [values[t] for t in node.inputs])
        return self._quant_out(step, self._fused_float(step, v))

    # integer engine, public views used by exporters ----------------------------------
    def uniform_qparams(self, tensor: str) -> UniformQParams:
        """The uniform qparams of a calibrated tensor (fixed point as scale 2^-fl, zp 0)."""
        return _as_uniform(self.qparams_[tensor], f"tensor {tensor!r}")

    def output_code_range(self, step: Step) -> tuple[int, int]:
        """Integer engine: the code interval a conv/linear/add step's requantization clamps
        to (the output range narrowed by a fused ReLU / Clip)."""
        return self._act_range(step, self.uniform_qparams(step.output))

    def lookup_codes(self, step: Step, input_codes: list[np.ndarray]) -> np.ndarray:
        """Integer engine: output codes of ``step`` computed as its lookup function (dequantize
        each input, the op in float32, the fused activation, quantize with the output
        qparams), exactly as ``run`` computes ops without an integer kernel. Used to tabulate
        those ops over every input code."""
        vals = [self._dequant(t, np.asarray(c))
                for t, c in zip(step.node.inputs, input_codes, strict=True)]
        v = apply_node(step.node, vals)
        return self._quant_out(step, self._fused_float(step, v))[0]

    # float engine --------------------------------------------------------------
    def _float_layer(self, step: Step, x: np.ndarray) -> np.ndarray:
        node = step.node
        lp = self.layers_[node.name]
        arith_num = self.device.precision(self._step_precisions(step)[2])
        acc = arith_num.arithmetic.float_accumulation
        w, b = lp.weight_values, lp.bias_values
        if acc in ("fp32", "fp64"):
            dt = np.float64 if acc == "fp64" else np.float32
            fn = conv2d_float if node.op is OpType.CONV2D else linear_float
            return fn(x, w, b, node, dt).astype(np.float32)
        # fp16: sequential half-precision accumulation with the activation's fp16 options
        num = arith_num.activation
        opts = dict(subnormals=num.subnormals, tininess=num.tininess, overflow=num.overflow,
                    nan=num.nan, signed_zero=num.signed_zero_on_flush)
        if node.op is OpType.LINEAR:
            lead = x.shape[:-1]
            y = fp16_gemm(x.reshape(-1, x.shape[-1]), w, b, **opts)
            return y.reshape(*lead, w.shape[0])
        a = node.attrs
        n = x.shape[0]
        oh, ow = node.output_shape[2], node.output_shape[3]
        cols = im2col(x, a.kernel, a.stride, a.padding, a.dilation, a.groups, (oh, ow))
        og = a.out_channels // a.groups
        out = np.empty((n, a.out_channels, oh, ow), dtype=np.float32)
        for g in range(a.groups):
            wg = w[g * og:(g + 1) * og].reshape(og, -1)
            y = fp16_gemm(cols[g], wg, b[g * og:(g + 1) * og], **opts)
            out[:, g * og:(g + 1) * og] = y.reshape(n, oh, ow, og).transpose(0, 3, 1, 2)
        return out

    def _float_step(self, step: Step, codes, values, res: EmulationResult):
        node = step.node
        if node.op in (OpType.CONV2D, OpType.LINEAR):
            v = self._float_layer(step, values[node.inputs[0]])
            res.overflow[step.name] = 0
            res.saturated_pairs[step.name] = 0
        else:
            v = apply_node(node, [values[t] for t in node.inputs])
        if self._passes_through(step):
            c = (apply_node(node, [codes[node.inputs[0]]], codes[node.inputs[0]].dtype)
                 if node.op is not OpType.MAXPOOL else None)
            if c is None:  # maxpool keeps grid values: re-encode them (exact)
                return self._quant_out(step, v)
            return c, v
        return self._quant_out(step, self._fused_float(step, v))


_SUPPORTED = frozenset(OpType)


def _widest_bits(num) -> int:
    """Bits of a precision: the wider of its weight and activation numerics."""
    return max(num.weight.bits, num.activation.bits)


def _bind(graph: Graph, x) -> dict[str, np.ndarray]:
    names = list(graph.inputs)
    if not isinstance(x, Mapping):
        if len(names) != 1:
            raise EmulationError(f"graph has inputs {names}: pass a mapping name -> array")
        x = {names[0]: x}
    out = {}
    for name in names:
        if name not in x:
            raise EmulationError(f"missing graph input {name!r}; expected {names}")
        arr = np.asarray(x[name], dtype=np.float32)
        want = graph.inputs[name]
        if arr.ndim != len(want) or tuple(arr.shape[1:]) != tuple(want[1:]):
            raise EmulationError(f"graph input {name!r}: expected shape (N, "
                                 f"{', '.join(str(d) for d in want[1:])}), got {arr.shape}")
        out[name] = arr
    return out


def _batches(x, batch_size: int) -> Iterator[Any]:
    if isinstance(x, Mapping):
        n = len(next(iter(x.values())))
        for s in range(0, n, batch_size):
            yield {k: v[s:s + batch_size] for k, v in x.items()}
    else:
        x = np.asarray(x)
        for s in range(0, len(x), batch_size):
            yield x[s:s + batch_size]
