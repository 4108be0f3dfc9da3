"""Export a calibrated integer-engine ``Emulator`` as a model a real runtime can run.

``export_onnx(emu, path)``: ONNX in operator form, the arithmetic of ONNX Runtime's CPU kernels
(devices whose requant is ``fp32_multiply``):

  float input -> QuantizeLinear -> codes ... -> DequantizeLinear -> float output
  conv2d            QLinearConv (per-tensor or per-channel weights, int32 bias)
  linear            com.microsoft QGemm (transB, int32 bias, fp32 requant like QLinearMatMul)
  fused ReLU/Clip   Clip on the output codes (ORT's QLinear ops have no fused activation)
  add               com.microsoft QLinearAdd (+ Clip for a fused activation)
  avgpool / global  com.microsoft QLinearAveragePool / QLinearGlobalAveragePool
  maxpool, reshape  MaxPool / Reshape on codes; channel shuffle as Reshape-Transpose-Reshape
  relu              Clip(codes, zero point, max)
  concat            Concat of codes (equal qparams) or per-input lookup tables then Concat
  other ops         lookup tables (Gather over every input code; mul: a 2-D table over both
                    inputs' codes; batchnorm: one table per channel), tabulated from the
                    emulator's own lookup function (``Emulator.lookup_codes``): exact by
                    construction
A code range narrower than the int8/uint8 storage (bits < 8, narrow range) gets a Clip after
each op that saturates to the storage range; clamping an integer after rounding equals
clamping before it, so the codes stay the emulator's.

``export_tflite(emu, path)``: an int8 ``.tflite`` (TFLite's reference-kernel arithmetic, devices
whose requant is ``q31_double_rounding`` with TFLite's weight format: int8, zero point 0, codes
in [-127, 127]). The model takes the same NCHW float input as the source model; it is
transposed to NHWC once after QUANTIZE. conv2d -> CONV_2D / DEPTHWISE_CONV_2D (explicit padding
as PAD with the input zero point + VALID); linear -> RESHAPE + 1x1 CONV_2D (TFLite's reference
FULLY_CONNECTED requantizes in double, not q31; the conv path keeps the device's arithmetic);
maxpool -> PADV2 (qmin) + MAX_POOL_2D VALID; reshape / channel shuffle / concat of equal
qparams on codes; lookup ops -> GATHER tables. Ops whose TFLite int8 kernels use other
arithmetic than the emulator (ADD, AVERAGE_POOL_2D, MEAN, MUL) are refused with an error.
uint8 activation codes are stored as int8 codes - 128 with zero point - 128 (same real values,
same integer arithmetic).

Both exports refuse, with an ``EmulationError`` naming device, precision and reason, what the
target's operators cannot express. ``layer_outputs=True`` adds every step's output codes as
extra graph outputs named ``codes/<step name>`` (for layer-by-layer comparison). Files are
written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

import hwsim
from hwsim.emulate.dump import write_bytes_atomic
from hwsim.emulate.emulator import Emulator, Step
from hwsim.errors import EmulationError, HwsimError
from hwsim.graph.ir import OpType
from hwsim.quant.qparams import UniformQParams

LAYER_OUTPUT_PREFIX = "codes/"
_LOOKUP_OPS = (OpType.SIGMOID, OpType.HARDSWISH, OpType.HARDSIGMOID, OpType.CLIP,
               OpType.BATCHNORM, OpType.MUL)


# ---------------------------------------------------------------------------- shared checks

def _where(emu: Emulator) -> str:
    return f"device {emu.device.name!r} precision {emu.precision!r}"


def _check_emulator(emu: Emulator, target: str, requant: str) -> None:
    if not hasattr(emu, "qparams_"):
        raise EmulationError(f"{target} export needs a calibrated Emulator (call calibrate())")
    used = {emu.precision}  # the emulator's precision and any per-layer overrides
    for pair in getattr(emu, "layer_precisions", {}).values():
        used.update(p for p in pair if p is not None)
    for prec in sorted(used):
        num = emu.device.precision(prec)
        where = f"device {emu.device.name!r} precision {prec!r}"
        arith = num.arithmetic
        if arith.requant != requant:
            raise EmulationError(
                f"{where}: cannot export to {target}: its operators requantize with "
                f"{requant!r} arithmetic, this precision uses {arith.requant!r}")
        for role in ("weight", "activation"):
            tn = getattr(num, role)
            if getattr(tn, "bits", 8) > 8:
                raise EmulationError(f"{where}: cannot export to {target}: {role} codes are "
                                     f"{tn.bits}-bit; its quantized operators take int8 or "
                                     "uint8 codes")
        if arith.accumulator_bits != 32:
            raise EmulationError(f"{where}: cannot export to {target}: its int8 kernels "
                                 f"accumulate in 32 bits, this precision in "
                                 f"{arith.accumulator_bits}")


def _check_input_quantizer(emu: Emulator, target: str, rounding: str) -> None:
    """The network input is quantized by the target's quantize op: x / scale (float32
    division), rounded with ``rounding``, + zero point, saturated."""
    num = emu.numerics.input_numerics
    why = None
    if num.kind != "uniform":
        why = f"kind {num.kind!r} (needs uniform)"
    elif num.rounding.value != rounding:
        why = f"rounding {num.rounding.value!r} (the quantize op rounds {rounding})"
    elif num.scaling != "divide":
        why = f"scaling {num.scaling!r} (the quantize op divides by the scale)"
    elif num.zero_point_add != "after_rounding":
        why = f"zero_point_add {num.zero_point_add!r} (the quantize op adds it after rounding)"
    if why is None:
        for name in emu.graph.inputs:
            qp = emu.qparams_[name]
            if isinstance(qp, UniformQParams) and qp.clip_min is not None:
                why = "a clipped (nudged) input range"
    if why is not None:
        raise EmulationError(f"{_where(emu)}: cannot export to {target}: the network input is "
                             f"quantized with {why}")


def _storage_dtype(qp: UniformQParams, what: str, emu: Emulator, target: str) -> np.dtype:
    lo = int(min(qp.qmin, np.min(qp.zero_point)))
    hi = int(max(qp.qmax, np.max(qp.zero_point)))
    if -128 <= lo and hi <= 127:
        return np.dtype(np.int8)
    if 0 <= lo and hi <= 255:
        return np.dtype(np.uint8)
    raise EmulationError(f"{_where(emu)}: cannot export to {target}: {what} has codes "
                         f"[{qp.qmin}, {qp.qmax}], which do not fit int8 or uint8")


def _per_tensor(qp: UniformQParams, what: str, emu: Emulator, target: str) -> tuple[float, int]:
    if qp.scale.ndim != 0:
        raise EmulationError(f"{_where(emu)}: cannot export to {target}: {what} is quantized "
                             f"per channel; activations must be per tensor")
    return float(qp.scale), int(qp.zero_point)


def _code_table(qp: UniformQParams) -> np.ndarray:
    return np.arange(qp.qmin, qp.qmax + 1, dtype=np.int64)


def _metadata(emu: Emulator, target: str) -> dict[str, str]:
    return {"hwsim_version": hwsim.__version__, "device": emu.device.name,
            "precision": emu.precision, "requant": emu.numerics.arithmetic.requant,
            "target": target}


def _write(path: str | os.PathLike[str], data: bytes) -> Path:
    p = Path(path)
    if not p.parent.is_dir():
        raise EmulationError(f"export: directory {str(p.parent)!r} does not exist")
    write_bytes_atomic(p, data)
    return p


def _lookup_inputs(emu: Emulator, step: Step) -> tuple[list[np.ndarray], Callable]:
    """Input code grids for tabulating ``step`` and a function turning the emulator's output
    on them into a flat table: unary ops -> (L,), mul -> (La, Lb), batchnorm -> (L, C)."""
    node = step.node
    qps = [emu.uniform_qparams(t) for t in node.inputs]
    if node.op is OpType.MUL:
        a, b = _code_table(qps[0]), _code_table(qps[1])
        return [a[:, None], b[None, :]], np.ravel
    if node.op is OpType.BATCHNORM:
        c = node.input_shapes[0][1]
        grid = np.broadcast_to(_code_table(qps[0])[:, None], (qps[0].qmax - qps[0].qmin + 1, c))
        extra = (1,) * (len(node.input_shapes[0]) - 2)
        return [np.ascontiguousarray(grid).reshape(grid.shape + extra)], np.ravel
    return [_code_table(qps[0])], np.ravel


# ------------------------------------------------------------------------------------ ONNX

class _OnnxBuilder:
    target = "ONNX (ONNX Runtime QLinear operators)"

    def __init__(self, emu: Emulator, layer_outputs: bool) -> None:
        from hwsim.emulate.onnx_export import OnnxQuantGraph

        self.emu = emu
        self.layer_outputs = layer_outputs
        self.g = OnnxQuantGraph(f"hwsim_{emu.device.name}_{emu.precision}")
        self.names: dict[str, str] = {}

    def qp(self, tensor: str) -> UniformQParams:
        return self.emu.uniform_qparams(tensor)

    def dtype(self, tensor: str) -> np.dtype:
        return _storage_dtype(self.qp(tensor), f"tensor {tensor!r}", self.emu, self.target)

    def scalar(self, tensor: str) -> tuple[float, int]:
        return _per_tensor(self.qp(tensor), f"tensor {tensor!r}", self.emu, self.target)

    def clip_to(self, x: str, tensor: str, lo: int, hi: int) -> str:
        info = np.iinfo(self.dtype(tensor))
        if lo <= info.min and hi >= info.max:
            return x
        return self.g.add_clip_codes(x, lo, hi)

    def same_dtype(self, step: Step) -> np.dtype:
        dts = {self.dtype(t) for t in step.node.inputs} | {self.dtype(step.output)}
        if len(dts) != 1:
            raise EmulationError(f"{_where(self.emu)}, node {step.name!r}: cannot export to "
                                 f"{self.target}: inputs and output mix code types "
                                 f"{sorted(str(d) for d in dts)}")
        return dts.pop()

    def weights(self, step: Step):
        lp = self.emu.layers_[step.name]
        wq = lp.weight_qparams
        if not isinstance(wq, UniformQParams):
            wq = _as_uniform_weight(self.emu, step)
        wdt = _storage_dtype(wq, f"weights of {step.name!r}", self.emu, self.target)
        bias = np.asarray(lp.bias_codes, dtype=np.int64)
        if bias.min(initial=0) < -(1 << 31) or bias.max(initial=0) > (1 << 31) - 1:
            raise EmulationError(f"{_where(self.emu)}, node {step.name!r}: bias codes at the "
                                 "accumulator scale do not fit int32")
        return (np.asarray(lp.weight_codes).astype(wdt), wq.scale,
                wq.zero_point.astype(wdt), bias.astype(np.int32))

    def build(self):
        emu, g = self.emu, self.g
        _check_emulator(emu, self.target, "fp32_multiply")
        _check_input_quantizer(emu, self.target, "rne")
        for name, shape in emu.graph.inputs.items():
            s, z = self.scalar(name)
            x = g.add_input(name, np.float32, ["N", *shape[1:]])
            q = self.qp(name)
            codes = self.clip_to(g.add_quantize(x, s, z, self.dtype(name)), name, q.qmin,
                                 q.qmax)
            self.names[name] = codes
            if self.layer_outputs:
                g.add_named_output(codes, LAYER_OUTPUT_PREFIX + name)
        for step in emu.steps_:
            try:
                out = self.step(step)
            except HwsimError as err:
                raise type(err)(f"{_where(emu)}, node {step.name!r} ({step.label}): {err}"
                                ) from None
            self.names[step.output] = out
            if self.layer_outputs:
                g.add_named_output(out, LAYER_OUTPUT_PREFIX + step.name)
        for name in emu.graph.outputs:
            s, z = self.scalar(name)
            y = g.add_dequantize(self.names[name], s, z)
            g.add_named_output(y, name)
        doc = (f"hwsim {hwsim.__version__}: {emu.device.name} {emu.precision} emulation "
               "exported in ONNX Runtime QLinear operator form")
        return g.model(doc, _metadata(emu, self.target))

    def step(self, step: Step) -> str:
        node, g = step.node, self.g
        op = node.op
        x = self.names[node.inputs[0]]
        if op is OpType.CONV2D:
            self.same_dtype(step)
            w, ws, wz, b = self.weights(step)
            a = node.attrs
            sx, zx = self.scalar(node.inputs[0])
            sy, zy = self.scalar(step.output)
            y = g.add_qlinear_conv(x, sx, zx, w, ws, wz, sy, zy, b, a.stride, a.padding,
                                   a.dilation, a.groups)
            return self.clip_to(y, step.output, *self.emu.output_code_range(step))
        if op is OpType.LINEAR:
            self.same_dtype(step)
            w, ws, wz, b = self.weights(step)
            sx, zx = self.scalar(node.inputs[0])
            sy, zy = self.scalar(step.output)
            in_shape = node.input_shapes[0]
            if len(in_shape) != 2:
                x = g.add_reshape(x, [-1, in_shape[-1]])
            y = g.add_qgemm(x, sx, zx, w, ws, wz, sy, zy, b)
            if len(in_shape) != 2:
                y = g.add_reshape(y, [-1, *node.output_shape[1:]])
            return self.clip_to(y, step.output, *self.emu.output_code_range(step))
        if op is OpType.ADD:
            self.same_dtype(step)
            (sa, za), (sb, zb) = self.scalar(node.inputs[0]), self.scalar(node.inputs[1])
            sy, zy = self.scalar(step.output)
            y = g.add_qlinear_add(x, sa, za, self.names[node.inputs[1]], sb, zb, sy, zy)
            return self.clip_to(y, step.output, *self.emu.output_code_range(step))
        if op in (OpType.GLOBAL_AVGPOOL, OpType.AVGPOOL):
            a = node.attrs
            if getattr(a, "ceil_mode", False):
                raise EmulationError("avgpool with ceil_mode is emulated in float (no integer "
                                     "kernel with the same arithmetic)")
            self.same_dtype(step)
            sx, zx = self.scalar(node.inputs[0])
            sy, zy = self.scalar(step.output)
            if op is OpType.GLOBAL_AVGPOOL:
                y = g.add_qlinear_global_average_pool(x, sx, zx, sy, zy)
                if not a.keepdims:
                    y = g.add_reshape(y, [-1, *node.output_shape[1:]])
            else:
                y = g.add_qlinear_average_pool(x, sx, zx, sy, zy, a.kernel, a.stride,
                                               a.padding, a.count_include_pad)
            yq = self.qp(step.output)
            return self.clip_to(y, step.output, yq.qmin, yq.qmax)
        if op is OpType.RELU and step.fused is None:
            _, zx = self.scalar(node.inputs[0])
            return g.add_clip_codes(x, zx, self.qp(node.inputs[0]).qmax)
        if op is OpType.MAXPOOL:
            a = node.attrs
            return g.add_max_pool(x, a.kernel, a.stride, a.padding, a.dilation, a.ceil_mode)
        if op is OpType.RESHAPE:
            return g.add_reshape(x, [-1, *node.attrs.shape])
        if op is OpType.CHANNEL_SHUFFLE:
            _, c, h, w = node.input_shapes[0]
            k = node.attrs.groups
            y = g.add_reshape(x, [-1, k, c // k, h, w])
            y = g.add_transpose(y, [0, 2, 1, 3, 4])
            return g.add_reshape(y, [-1, c, h, w])
        if op is OpType.CONCAT:
            out_qp = self.qp(step.output)
            parts = []
            for t in node.inputs:
                if self.qp(t).to_dict() == out_qp.to_dict():
                    parts.append(self.names[t])
                else:  # the emulator dequantizes and requantizes: a per-input table
                    parts.append(self.requant_table(step, t))
            self.same_dtype(step)
            return g.add_concat(parts, node.attrs.axis)
        if op in _LOOKUP_OPS:
            return self.lookup(step)
        raise EmulationError(f"op {op.value!r} has no ONNX export")

    def requant_table(self, step: Step, tensor: str) -> str:
        """Codes of ``tensor`` re-expressed in the concat output's qparams (the emulator's
        dequantize-concat-quantize, tabulated for one input)."""
        node = step.node
        k = node.inputs.index(tensor)
        axis = node.attrs.axis
        qp = self.qp(tensor)
        codes = _code_table(qp)
        grids = []
        for i, t in enumerate(node.inputs):  # one element per input along the concat axis
            col = codes if i == k else np.full(codes.shape, self.qp(t).qmin)
            grids.append(col.reshape((-1,) + (1,) * axis))
        col = np.take(self.emu.lookup_codes(step, grids), k, axis=axis).ravel()
        return self.g.add_lookup([self.names[tensor]], [qp.qmin], [1],
                                 col.astype(self.dtype(step.output)))

    def lookup(self, step: Step) -> str:
        node = step.node
        grids, flat = _lookup_inputs(self.emu, step)
        table = flat(self.emu.lookup_codes(step, grids)).astype(self.dtype(step.output))
        qps = [self.qp(t) for t in node.inputs]
        xs = [self.names[t] for t in node.inputs]
        if node.op is OpType.MUL:
            lb = qps[1].qmax - qps[1].qmin + 1
            return self.g.add_lookup(xs, [qps[0].qmin, qps[1].qmin], [lb, 1], table)
        if node.op is OpType.BATCHNORM:
            shape = node.input_shapes[0]
            c = shape[1]
            chan = np.arange(c, dtype=np.int32).reshape((1, c) + (1,) * (len(shape) - 2))
            return self.g.add_lookup(xs, [qps[0].qmin], [c], table, chan)
        return self.g.add_lookup(xs, [qps[0].qmin], [1], table)


def _as_uniform_weight(emu: Emulator, step: Step) -> UniformQParams:
    from hwsim.quant.qparams import FixedPointQParams

    qp = emu.layers_[step.name].weight_qparams
    if isinstance(qp, FixedPointQParams):
        return UniformQParams(scale=np.float32(2.0 ** -qp.fl), zero_point=0, qmin=qp.qmin,
                              qmax=qp.qmax)
    raise EmulationError(f"weights of {step.name!r}: {qp.kind} qparams have no integer export")


def onnx_model(emu: Emulator, *, layer_outputs: bool = False):
    """The ONNX ``ModelProto`` of a calibrated emulator (see the module docstring)."""
    return _OnnxBuilder(emu, layer_outputs).build()


def export_onnx(emu: Emulator, path: str | os.PathLike[str], *,
                layer_outputs: bool = False) -> Path:
    """Write the emulated quantized model as ONNX (QLinear operator form) to ``path``."""
    model = onnx_model(emu, layer_outputs=layer_outputs)
    return _write(path, model.SerializeToString())


# ---------------------------------------------------------------------------------- TFLite

_NCHW_TO_NHWC = (0, 2, 3, 1)
_NHWC_TO_NCHW = (0, 3, 1, 2)


class _TfliteBuilder:
    target = "TFLite int8 (LiteRT reference kernels)"

    def __init__(self, emu: Emulator, layer_outputs: bool) -> None:
        from hwsim.emulate.tflite_export import TfliteQuantGraph

        self.emu = emu
        self.layer_outputs = layer_outputs
        self.g = TfliteQuantGraph(f"hwsim_{emu.device.name}_{emu.precision}")
        self.tensors: dict[str, tuple[int, str]] = {}  # name -> (index, "nchw" | "nhwc")

    def fail(self, why: str) -> EmulationError:
        return EmulationError(f"{_where(self.emu)}: cannot export to {self.target}: {why}")

    def qp(self, tensor: str) -> UniformQParams:
        return self.emu.uniform_qparams(tensor)

    def scalar(self, tensor: str) -> tuple[float, int]:
        qp = self.qp(tensor)
        s, z = _per_tensor(qp, f"tensor {tensor!r}", self.emu, self.target)
        if _storage_dtype(qp, f"tensor {tensor!r}", self.emu, self.target) != np.int8:
            raise self.fail(f"tensor {tensor!r} has uint8 codes [{qp.qmin}, {qp.qmax}]; "
                            "TFLite int8 kernels take int8 activations")
        return s, z

    def layout(self, tensor: str, want: str) -> int:
        idx, lay = self.tensors[tensor]
        if lay == want or len(self.g.shape_of(idx)) != 4:
            return idx
        perm = _NCHW_TO_NHWC if want == "nhwc" else _NHWC_TO_NCHW
        return self.g.add_transpose(idx, perm)

    def clamp(self, y: int, lo: int, hi: int) -> int:
        if lo <= -128 and hi >= 127:
            return y
        return self.g.add_code_clamp(y, lo, hi)

    def weights(self, step: Step) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lp = self.emu.layers_[step.name]
        wq = lp.weight_qparams
        if not isinstance(wq, UniformQParams):
            wq = _as_uniform_weight(self.emu, step)
        w = np.asarray(lp.weight_codes, dtype=np.int64)
        if np.any(wq.zero_point != 0) or w.min(initial=0) < -127 or w.max(initial=0) > 127:
            raise self.fail(f"weights of {step.name!r} must be int8 in [-127, 127] with zero "
                            f"point 0 (TFLite's weight format); got codes [{w.min()}, "
                            f"{w.max()}], zero points {np.unique(wq.zero_point)[:4]}")
        bias = np.asarray(lp.bias_codes, dtype=np.int64)
        if bias.min(initial=0) < -(1 << 31) or bias.max(initial=0) > (1 << 31) - 1:
            raise self.fail(f"bias codes of {step.name!r} do not fit int32")
        return w, wq.scale, bias

    def activation(self, step: Step, lo: int, hi: int, scale: float, zp: int) -> str:
        from hwsim.emulate.integer_elementwise import activation_code_range

        for act in ("none", "relu", "relu6"):
            if activation_code_range(act, scale, zp, -128, 127) == (lo, hi):
                return act
        return "none"

    def build(self) -> bytes:
        emu, g = self.emu, self.g
        _check_emulator(emu, self.target, "q31_double_rounding")
        for step in emu.steps_:  # TFLite's weight and activation formats, before anything else
            if step.name in emu.layers_:
                self.weights(step)
        for tensor in emu.calibrated_tensors:
            self.scalar(tensor)
        _check_input_quantizer(emu, self.target, "rhaz")
        for name, shape in emu.graph.inputs.items():
            s, z = self.scalar(name)
            x = g.add_float_input(shape, name)
            q = self.qp(name)
            codes = self.clamp(g.add_quantize(x, s, z), q.qmin, q.qmax)
            self.tensors[name] = (codes, "nchw")
            if self.layer_outputs:
                g.add_output(codes)
        for step in emu.steps_:
            try:
                self.tensors[step.output] = self.step(step)
            except HwsimError as err:
                raise type(err)(f"node {step.name!r} ({step.label}): {err}") from None
            if self.layer_outputs:
                g.add_output(self.layout(step.output, "nchw"))
        for name in emu.graph.outputs:
            g.add_output(g.add_dequantize(self.layout(name, "nchw")))
        return g.serialize()

    def conv(self, step: Step, x: int, w_ohwi: np.ndarray, depthwise: bool, a) -> int:
        g = self.g
        w, ws, b = self.weights(step)
        sy, zy = self.scalar(step.output)
        _, zx = self.scalar(step.node.inputs[0])
        pt, pl, pb, pr = a.padding
        if any(a.padding):
            x = g.add_pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)], zx)
        lo, hi = self.emu.output_code_range(step)
        act = self.activation(step, lo, hi, sy, zy)
        if depthwise:
            y = g.add_depthwise_conv2d(x, w_ohwi, ws, sy, zy, b, a.stride, "valid", a.dilation,
                                       act)
        else:
            y = g.add_conv2d(x, w_ohwi, ws, sy, zy, b, a.stride, "valid", a.dilation, act)
        return self.clamp(y, lo, hi)

    def step(self, step: Step) -> tuple[int, str]:
        node, g = step.node, self.g
        op = node.op
        src = node.inputs[0]
        if op is OpType.CONV2D:
            a = node.attrs
            w = np.asarray(self.emu.layers_[step.name].weight_codes)
            cg = w.shape[1]
            x = self.layout(src, "nhwc")
            if a.groups == 1:
                return self.conv(step, x, w.transpose(0, 2, 3, 1), False, a), "nhwc"
            if cg == 1:  # depthwise (channel multiplier og)
                return self.conv(step, x, w.transpose(1, 2, 3, 0), True, a), "nhwc"
            raise self.fail(f"grouped convolution (groups {a.groups}, {cg} channels per "
                            "group) has no TFLite int8 reference kernel")
        if op is OpType.LINEAR:
            # 1x1 CONV_2D: TFLite's reference FULLY_CONNECTED requantizes in double instead
            k = node.input_shapes[0][-1]
            x = g.add_reshape(self.layout(src, "nchw"), [-1, 1, 1, k])
            w = np.asarray(self.emu.layers_[step.name].weight_codes)
            from hwsim.graph.ir import Conv2dAttrs

            a = Conv2dAttrs(in_channels=k, out_channels=w.shape[0], kernel=(1, 1))
            y = self.conv(step, x, w.reshape(w.shape[0], 1, 1, k), False, a)
            return g.add_reshape(y, [-1, *node.output_shape[1:]]), "nchw"
        if op is OpType.MAXPOOL:
            a = node.attrs
            if a.dilation != (1, 1):
                raise self.fail("dilated max pooling has no TFLite kernel")
            x = self.layout(src, "nhwc")
            _, _, h, w = node.input_shapes[0]
            _, _, oh, ow = node.output_shape
            pt, pl, pb, pr = a.padding
            eb = max(pb, (oh - 1) * a.stride[0] + a.kernel[0] - pt - h)
            er = max(pr, (ow - 1) * a.stride[1] + a.kernel[1] - pl - w)
            if pt or pl or eb or er:  # padded taps never win: pad with the lowest code
                x = g.add_pad(x, [(0, 0), (pt, eb), (pl, er), (0, 0)], -128)
            y = g.add_max_pool(x, a.kernel, a.stride)
            if g.shape_of(y)[1:3] != (oh, ow):
                raise self.fail(f"max pool output {g.shape_of(y)[1:3]} != {(oh, ow)}")
            return y, "nhwc"
        if op is OpType.RELU and step.fused is None:
            _, zx = self.scalar(src)
            idx, lay = self.tensors[src]
            return g.add_code_clamp(idx, zx, self.qp(src).qmax), lay
        if op is OpType.RESHAPE:
            return g.add_reshape(self.layout(src, "nchw"), [-1, *node.attrs.shape]), "nchw"
        if op is OpType.CHANNEL_SHUFFLE:
            _, c, h, w = node.input_shapes[0]
            k = node.attrs.groups
            y = g.add_reshape(self.layout(src, "nhwc"), [-1, h, w, k, c // k])
            y = g.add_transpose(y, [0, 1, 2, 4, 3])
            return g.add_reshape(y, [-1, h, w, c]), "nhwc"
        if op is OpType.CONCAT:
            out_qp = self.qp(step.output).to_dict()
            if any(self.qp(t).to_dict() != out_qp for t in node.inputs):
                raise self.fail("concat of tensors with different qparams (TFLite requantizes "
                                "in its own arithmetic)")
            nd = len(node.output_shape)
            want = "nhwc" if nd == 4 else "nchw"
            axis = _NCHW_TO_NHWC.index(node.attrs.axis) if nd == 4 else node.attrs.axis
            return g.add_concatenation([self.layout(t, want) for t in node.inputs], axis), want
        if op in (OpType.SIGMOID, OpType.HARDSWISH, OpType.HARDSIGMOID, OpType.CLIP):
            grids, _ = _lookup_inputs(self.emu, step)
            table = self.emu.lookup_codes(step, grids)
            sy, zy = self.scalar(step.output)
            idx, lay = self.tensors[src]
            return g.add_lookup(idx, self.qp(src).qmin, table, sy, zy), lay
        raise self.fail(f"op {op.value!r}: TFLite's int8 kernel for it computes with other "
                        "arithmetic than this device's emulation (ONNX Runtime's for add and "
                        "pooling), or has no int8 kernel")


def tflite_model(emu: Emulator, *, layer_outputs: bool = False) -> bytes:
    """The int8 ``.tflite`` flatbuffer of a calibrated emulator (see the module docstring).
    With ``layer_outputs`` the extra outputs follow the input codes and then the steps in
    order (NCHW), before the float outputs."""
    return _TfliteBuilder(emu, layer_outputs).build()


def export_tflite(emu: Emulator, path: str | os.PathLike[str], *,
                  layer_outputs: bool = False) -> Path:
    """Write the emulated quantized model as an int8 ``.tflite`` to ``path``."""
    return _write(path, tflite_model(emu, layer_outputs=layer_outputs))
