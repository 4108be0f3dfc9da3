"""ONNX operator-form quantized graphs, built layer by layer (QLinearConv, QLinearMatMul, ...).

``OnnxQuantGraph`` is an emitter: each ``add_*`` method appends one node (and its constant
initializers) and returns the name of the output tensor, so a model exporter chains layers by
passing names along. Operator form fixes the integer semantics (unlike QDQ graphs, which a
runtime may execute in float). Quantized tensors are int8 or uint8 (ONNX Runtime has no int8
activation x uint8 weight kernel). Scales are float32; zero points carry the code dtype.

Ops in the ``com.microsoft`` domain (QLinearAdd, QLinearAveragePool, QLinearGlobalAveragePool,
QLinearConcat) are ONNX Runtime contrib ops: models using them run on ONNX Runtime only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hwsim.errors import EmulationError

_ELEM = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
         np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32,
         np.dtype(np.int64): TensorProto.INT64}
OPSET = 13
MS_DOMAIN = "com.microsoft"


def _code_dtype(dtype: np.dtype | type) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.int8), np.dtype(np.uint8)):
        raise EmulationError(f"ONNX quantized tensors are int8 or uint8, got {dt}")
    return dt


class OnnxQuantGraph:
    """Accumulates nodes, initializers, inputs and outputs of one ONNX graph."""

    def __init__(self, name: str = "hwsim") -> None:
        self.name = name
        self._nodes: list[onnx.NodeProto] = []
        self._inits: list[onnx.TensorProto] = []
        self._inputs: list[onnx.ValueInfoProto] = []
        self._outputs: list[onnx.ValueInfoProto] = []
        self._dtypes: dict[str, np.dtype] = {}
        self._count = 0
        self._uses_ms = False

    # ---------------------------------------------------------------- naming and constants
    def _fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, value: np.ndarray | float | int, dtype: np.dtype | type,
                 stem: str = "c") -> str:
        """Add an initializer holding ``value`` as ``dtype``; returns its name."""
        name = self._fresh(stem)
        self._inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def dtype_of(self, name: str) -> np.dtype:
        """Element type of a tensor produced or declared in this graph."""
        if name not in self._dtypes:
            raise EmulationError(f"ONNX graph {self.name!r}: unknown tensor {name!r}")
        return self._dtypes[name]

    def _qparams(self, scale: float | np.ndarray, zero_point: int | np.ndarray,
                 dtype: np.dtype, stem: str) -> tuple[str, str]:
        return (self.constant(np.asarray(scale, dtype=np.float32), np.float32, f"{stem}_scale"),
                self.constant(np.asarray(zero_point), dtype, f"{stem}_zp"))

    # ------------------------------------------------------------------------- graph edges
    def add_input(self, name: str, dtype: np.dtype | type, shape: Sequence[int | str]) -> str:
        """Declare a graph input ``name`` of ``dtype`` and ``shape`` (str = symbolic dim)."""
        dt = np.dtype(dtype)
        self._inputs.append(helper.make_tensor_value_info(name, _ELEM[dt], list(shape)))
        self._dtypes[name] = dt
        return name

    def add_output(self, name: str) -> None:
        """Mark tensor ``name`` as a graph output (shape left to the runtime)."""
        self._outputs.append(helper.make_tensor_value_info(name, _ELEM[self.dtype_of(name)],
                                                           None))

    def _node(self, op: str, inputs: list[str], out_dtype: np.dtype, stem: str,
              domain: str = "", **attrs) -> str:
        out = self._fresh(stem)
        self._nodes.append(helper.make_node(op, inputs, [out], name=out, domain=domain,
                                            **attrs))
        self._dtypes[out] = out_dtype
        if domain == MS_DOMAIN:
            self._uses_ms = True
        return out

    # ------------------------------------------------------------------ quantize / dequantize
    def add_quantize(self, x: str, scale: float, zero_point: int,
                     dtype: np.dtype | type) -> str:
        """QuantizeLinear (x / scale, RNE, saturate, per ONNX)."""
        dt = _code_dtype(dtype)
        s, z = self._qparams(scale, zero_point, dt, "q")
        return self._node("QuantizeLinear", [x, s, z], dt, "quant")

    def add_dequantize(self, x: str, scale: float, zero_point: int) -> str:
        """DequantizeLinear ((x - zp) * scale, float32)."""
        s, z = self._qparams(scale, zero_point, self.dtype_of(x), "dq")
        return self._node("DequantizeLinear", [x, s, z], np.dtype(np.float32), "dequant")

    # ------------------------------------------------------------------------------ layers
    def add_qlinear_conv(self, x: str, x_scale: float, x_zero_point: int, w: np.ndarray,
                         w_scale: float | np.ndarray, w_zero_point: int | np.ndarray,
                         y_scale: float, y_zero_point: int, bias: np.ndarray | None = None,
                         stride: tuple[int, int] = (1, 1),
                         padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                         dilation: tuple[int, int] = (1, 1), groups: int = 1) -> str:
        """QLinearConv. w: (O, C/groups, kh, kw) int8/uint8 codes; padding (top, left,
        bottom, right); bias int32 (O,) at scale x_scale * w_scale."""
        xdt = self.dtype_of(x)
        w = np.asarray(w)
        wdt = _code_dtype(w.dtype)
        xs, xz = self._qparams(x_scale, x_zero_point, xdt, "x")
        wn = self.constant(w, wdt, "w")
        ws, wz = self._qparams(w_scale, w_zero_point, wdt, "w")
        ys, yz = self._qparams(y_scale, y_zero_point, xdt, "y")
        inputs = [x, xs, xz, wn, ws, wz, ys, yz]
        if bias is not None:
            inputs.append(self.constant(np.asarray(bias), np.int32, "b"))
        pt, pl, pb, pr = padding
        return self._node("QLinearConv", inputs, xdt, "qconv",
                          kernel_shape=list(w.shape[2:]), strides=list(stride),
                          pads=[pt, pl, pb, pr], dilations=list(dilation), group=groups)

    def add_qlinear_matmul(self, x: str, x_scale: float, x_zero_point: int, w: np.ndarray,
                           w_scale: float | np.ndarray, w_zero_point: int | np.ndarray,
                           y_scale: float, y_zero_point: int) -> str:
        """QLinearMatMul x @ B with B = w.T; w: (O, K) codes (PyTorch Linear layout).

        Per-channel weight scales/zero points are given per output column of B. QLinearMatMul
        has no bias input: add bias with a separate op, or fold it into a following layer.
        """
        xdt = self.dtype_of(x)
        w = np.asarray(w)
        wdt = _code_dtype(w.dtype)
        xs, xz = self._qparams(x_scale, x_zero_point, xdt, "x")
        wn = self.constant(np.ascontiguousarray(w.T), wdt, "w")
        ws, wz = self._qparams(w_scale, w_zero_point, wdt, "w")
        ys, yz = self._qparams(y_scale, y_zero_point, xdt, "y")
        return self._node("QLinearMatMul", [x, xs, xz, wn, ws, wz, ys, yz], xdt, "qmatmul")

    def add_qlinear_add(self, a: str, a_scale: float, a_zero_point: int, b: str,
                        b_scale: float, b_zero_point: int, y_scale: float,
                        y_zero_point: int) -> str:
        """com.microsoft QLinearAdd (same code dtype for a, b and the output)."""
        dt = self.dtype_of(a)
        a_s, a_z = self._qparams(a_scale, a_zero_point, dt, "a")
        b_s, b_z = self._qparams(b_scale, b_zero_point, dt, "b")
        ys, yz = self._qparams(y_scale, y_zero_point, dt, "y")
        return self._node("QLinearAdd", [a, a_s, a_z, b, b_s, b_z, ys, yz], dt, "qadd",
                          domain=MS_DOMAIN)

    def add_qlinear_mul(self, a: str, a_scale: float, a_zero_point: int, b: str,
                        b_scale: float, b_zero_point: int, y_scale: float,
                        y_zero_point: int) -> str:
        """com.microsoft QLinearMul."""
        dt = self.dtype_of(a)
        a_s, a_z = self._qparams(a_scale, a_zero_point, dt, "a")
        b_s, b_z = self._qparams(b_scale, b_zero_point, dt, "b")
        ys, yz = self._qparams(y_scale, y_zero_point, dt, "y")
        return self._node("QLinearMul", [a, a_s, a_z, b, b_s, b_z, ys, yz], dt, "qmul",
                          domain=MS_DOMAIN)

    def add_qlinear_average_pool(self, x: str, x_scale: float, x_zero_point: int,
                                 y_scale: float, y_zero_point: int,
                                 kernel: tuple[int, int], stride: tuple[int, int],
                                 padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                                 count_include_pad: bool = False) -> str:
        """com.microsoft QLinearAveragePool (NCHW)."""
        dt = self.dtype_of(x)
        xs, xz = self._qparams(x_scale, x_zero_point, dt, "x")
        ys, yz = self._qparams(y_scale, y_zero_point, dt, "y")
        pt, pl, pb, pr = padding
        return self._node("QLinearAveragePool", [x, xs, xz, ys, yz], dt, "qavgpool",
                          domain=MS_DOMAIN, kernel_shape=list(kernel), strides=list(stride),
                          pads=[pt, pl, pb, pr], count_include_pad=int(count_include_pad))

    def add_qlinear_global_average_pool(self, x: str, x_scale: float, x_zero_point: int,
                                        y_scale: float, y_zero_point: int) -> str:
        """com.microsoft QLinearGlobalAveragePool (NCHW, channels_last=0)."""
        dt = self.dtype_of(x)
        xs, xz = self._qparams(x_scale, x_zero_point, dt, "x")
        ys, yz = self._qparams(y_scale, y_zero_point, dt, "y")
        return self._node("QLinearGlobalAveragePool", [x, xs, xz, ys, yz], dt, "qgap",
                          domain=MS_DOMAIN, channels_last=0)

    def add_qgemm(self, x: str, x_scale: float, x_zero_point: int, w: np.ndarray,
                  w_scale: float | np.ndarray, w_zero_point: int | np.ndarray,
                  y_scale: float, y_zero_point: int, bias: np.ndarray | None = None) -> str:
        """com.microsoft QGemm y = x @ w.T + bias, quantized output; x (M, K), w (O, K) codes
        (transB=1), bias int32 (O,) at scale x_scale * w_scale; per-channel weight qparams are
        per output column. Requantizes like QLinearMatMul (fp32 multiply)."""
        xdt = self.dtype_of(x)
        w = np.asarray(w)
        wdt = _code_dtype(w.dtype)
        xs, xz = self._qparams(x_scale, x_zero_point, xdt, "x")
        wn = self.constant(w, wdt, "w")
        ws, wz = self._qparams(w_scale, w_zero_point, wdt, "w")
        ys, yz = self._qparams(y_scale, y_zero_point, xdt, "y")
        bn = self.constant(np.zeros(w.shape[0]) if bias is None else np.asarray(bias),
                           np.int32, "b")
        return self._node("QGemm", [x, xs, xz, wn, ws, wz, bn, ys, yz], xdt, "qgemm",
                          domain=MS_DOMAIN, transB=1)

    def add_max_pool(self, x: str, kernel: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                     dilation: tuple[int, int] = (1, 1), ceil_mode: bool = False) -> str:
        """MaxPool on int8/uint8 codes (opset >= 12 accepts 8-bit integer tensors)."""
        pt, pl, pb, pr = padding
        return self._node("MaxPool", [x], self.dtype_of(x), "maxpool",
                          kernel_shape=list(kernel), strides=list(stride),
                          pads=[pt, pl, pb, pr], dilations=list(dilation),
                          ceil_mode=int(ceil_mode))

    def add_reshape(self, x: str, shape: Sequence[int]) -> str:
        """Reshape to ``shape`` (-1 allowed once, e.g. for the batch axis)."""
        s = self.constant(np.asarray(shape, dtype=np.int64), np.int64, "shape")
        return self._node("Reshape", [x, s], self.dtype_of(x), "reshape")

    def add_transpose(self, x: str, perm: Sequence[int]) -> str:
        """Transpose with permutation ``perm``."""
        return self._node("Transpose", [x], self.dtype_of(x), "transpose", perm=list(perm))

    def add_concat(self, xs: Sequence[str], axis: int) -> str:
        """Concat of tensors of one dtype along ``axis``."""
        return self._node("Concat", list(xs), self.dtype_of(xs[0]), "concat", axis=axis)

    def add_lookup(self, xs: Sequence[str], offsets: Sequence[int], strides: Sequence[int],
                   table: np.ndarray, channel_index: np.ndarray | None = None) -> str:
        """Table lookup: Gather(table, sum_i (int32(x_i) - offset_i) * stride_i
        [+ channel_index]) with numpy broadcasting of the index terms; ``table`` holds the
        output codes (int8/uint8), flattened C-order."""
        if not len(xs) == len(offsets) == len(strides):
            raise EmulationError(f"lookup: {len(xs)} inputs need as many offsets and strides, "
                                 f"got {len(offsets)} and {len(strides)}")
        terms = []
        for x, off, st in zip(xs, offsets, strides, strict=True):
            t = self._node("Cast", [x], np.dtype(np.int32), "idx", to=TensorProto.INT32)
            if off:
                t = self._node("Sub", [t, self.constant(off, np.int32, "off")],
                               np.dtype(np.int32), "idx")
            if st != 1:
                t = self._node("Mul", [t, self.constant(st, np.int32, "stride")],
                               np.dtype(np.int32), "idx")
            terms.append(t)
        if channel_index is not None:
            terms.append(self.constant(channel_index, np.int32, "chan"))
        idx = terms[0]
        for t in terms[1:]:
            idx = self._node("Add", [idx, t], np.dtype(np.int32), "idx")
        tab = np.asarray(table).ravel()
        tn = self.constant(tab, _code_dtype(tab.dtype), "lut")
        return self._node("Gather", [tn, idx], tab.dtype, "lookup", axis=0)

    def add_named_output(self, x: str, name: str) -> str:
        """Expose tensor ``x`` as graph output ``name`` (an Identity node)."""
        if name in self._dtypes:
            raise EmulationError(f"ONNX graph {self.name!r}: tensor name {name!r} is taken")
        self._nodes.append(helper.make_node("Identity", [x], [name], name=f"out_{name}"))
        self._dtypes[name] = self.dtype_of(x)
        self.add_output(name)
        return name

    def add_clip_codes(self, x: str, lo: int, hi: int) -> str:
        """Clip on codes (ReLU / ReLU6 in the code domain: lo = zero point, ...)."""
        dt = self.dtype_of(x)
        return self._node("Clip", [x, self.constant(lo, dt, "lo"), self.constant(hi, dt, "hi")],
                          dt, "clip")

    def add_flatten(self, x: str, axis: int = 1) -> str:
        """Flatten (a reshape: codes unchanged)."""
        return self._node("Flatten", [x], self.dtype_of(x), "flatten", axis=axis)

    # ------------------------------------------------------------------------------ finish
    def model(self, doc: str = "", metadata: dict[str, str] | None = None
              ) -> onnx.ModelProto:
        """The ONNX model (opset 13; com.microsoft opset 1 when contrib ops are used), with
        ``doc`` as doc string and ``metadata`` as metadata_props."""
        if not self._inputs or not self._outputs:
            raise EmulationError(f"ONNX graph {self.name!r} needs at least one input and one "
                                 "output")
        graph = helper.make_graph(self._nodes, self.name, self._inputs, self._outputs,
                                  self._inits)
        opsets = [helper.make_opsetid("", OPSET)]
        if self._uses_ms:
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="hwsim",
                                  doc_string=doc)
        model.ir_version = 8  # readable by onnxruntime >= 1.14
        if metadata:
            helper.set_model_props(model, dict(metadata))
        return model
