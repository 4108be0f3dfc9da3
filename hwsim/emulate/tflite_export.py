"""Int8 ``.tflite`` flatbuffers built layer by layer with LiteRT's ``schema_py_generated``.

No TensorFlow needed. ``TfliteQuantGraph`` is an emitter like ``OnnxQuantGraph``: each
``add_*`` appends one operator and returns the index of its output tensor. Layout is NHWC
(TFLite's); weights follow the TFLite quantization spec: int8, symmetric (zero point 0), per
output channel (conv: quantized_dimension 0 of (O, kh, kw, I); depthwise: 3 of (1, kh, kw, C));
bias int32 at scale s_in * s_w[c]. TFLite convolutions only know padding SAME and VALID.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwsim.errors import EmulationError

try:  # optional dependency: pip install 'hwsim[litert]'
    import flatbuffers
    from ai_edge_litert import schema_py_generated as tfl
except ImportError as _err:  # pragma: no cover - exercised only without ai-edge-litert
    tfl = None
    _IMPORT_ERROR: ImportError | None = _err
else:
    _IMPORT_ERROR = None

_ACTIVATIONS = {"none": 0, "relu": 1, "relu_n1_to_1": 2, "relu6": 3}
_DTYPE_OF = ({} if tfl is None else {
    tfl.TensorType.INT8: np.dtype(np.int8), tfl.TensorType.UINT8: np.dtype(np.uint8),
    tfl.TensorType.INT32: np.dtype(np.int32), tfl.TensorType.FLOAT32: np.dtype(np.float32)})
_PADDING = {"same": 0, "valid": 1}


def _require_schema() -> None:
    if tfl is None:
        raise EmulationError("TFLite export needs the 'ai-edge-litert' package "
                             f"(pip install 'hwsim[litert]'): {_IMPORT_ERROR}")


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """TFLite SAME: (output size, pad before, pad after); the odd pixel goes after."""
    out = (size + stride - 1) // stride
    eff = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2, total - total // 2


class TfliteQuantGraph:
    """Accumulates tensors, buffers and operators of a single-subgraph TFLite model."""

    def __init__(self, name: str = "hwsim") -> None:
        _require_schema()
        self.name = name
        self._tensors: list = []
        self._buffers: list = [tfl.BufferT()]  # buffer 0: the empty sentinel
        self._opcodes: list = []
        self._opcode_index: dict[int, int] = {}
        self._operators: list = []
        self._inputs: list[int] = []
        self._outputs: list[int] = []

    # ---------------------------------------------------------------------------- tensors
    def add_tensor(self, shape: Sequence[int], dtype: np.dtype | type,
                   scale: float | np.ndarray | None = None,
                   zero_point: int | np.ndarray | None = None, quantized_dimension: int = 0,
                   data: np.ndarray | None = None, name: str | None = None) -> int:
        """Add a tensor (constant when ``data`` is given); returns its index."""
        types = {np.dtype(np.int8): tfl.TensorType.INT8, np.dtype(np.uint8): tfl.TensorType.UINT8,
                 np.dtype(np.int32): tfl.TensorType.INT32,
                 np.dtype(np.float32): tfl.TensorType.FLOAT32}
        dt = np.dtype(dtype)
        if dt not in types:
            raise EmulationError(f"TFLite tensor dtype {dt} not supported here; allowed: "
                                 f"{[str(t) for t in types]}")
        t = tfl.TensorT()
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = types[dt]
        t.name = name or f"t{len(self._tensors)}"
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, dtype=dt))
            if tuple(arr.shape) != tuple(shape):
                raise EmulationError(f"tensor {t.name}: data shape {arr.shape} != {tuple(shape)}")
            buf = tfl.BufferT()
            buf.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
            self._buffers.append(buf)
            t.buffer = len(self._buffers) - 1
        else:
            t.buffer = 0
        if scale is not None:
            q = tfl.QuantizationParametersT()
            q.scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
            zp = np.zeros(q.scale.shape, np.int64) if zero_point is None else zero_point
            q.zeroPoint = np.atleast_1d(np.asarray(zp, dtype=np.int64))
            q.quantizedDimension = quantized_dimension
            t.quantization = q
        self._tensors.append(t)
        return len(self._tensors) - 1

    def add_input(self, shape: Sequence[int], scale: float, zero_point: int,
                  dtype: np.dtype | type = np.int8) -> int:
        """A quantized graph input (NHWC for images)."""
        idx = self.add_tensor(shape, dtype, scale, zero_point, name=f"input{len(self._inputs)}")
        self._inputs.append(idx)
        return idx

    def add_output(self, index: int) -> None:
        """Mark tensor ``index`` as a graph output."""
        self._outputs.append(index)

    def shape_of(self, index: int) -> tuple[int, ...]:
        return tuple(int(v) for v in self._tensors[index].shape)

    def _quant_of(self, index: int) -> tuple[float, int]:
        q = self._tensors[index].quantization
        if q is None or q.scale is None or len(q.scale) != 1:
            raise EmulationError(f"tensor {index} needs per-tensor quantization here")
        return float(q.scale[0]), int(q.zeroPoint[0])

    def _opcode(self, builtin: int) -> int:
        if builtin not in self._opcode_index:
            oc = tfl.OperatorCodeT()
            oc.builtinCode = builtin
            oc.deprecatedBuiltinCode = min(builtin, 127)
            oc.version = 1
            self._opcodes.append(oc)
            self._opcode_index[builtin] = len(self._opcodes) - 1
        return self._opcode_index[builtin]

    def _operator(self, builtin: int, inputs: list[int], outputs: list[int],
                  options_type: int, options) -> None:
        op = tfl.OperatorT()
        op.opcodeIndex = self._opcode(builtin)
        op.inputs = np.asarray(inputs, dtype=np.int32)
        op.outputs = np.asarray(outputs, dtype=np.int32)
        op.builtinOptionsType = options_type
        op.builtinOptions = options
        self._operators.append(op)

    def _bias_tensor(self, bias: np.ndarray | None, channels: int, x_scale: float,
                     w_scale: np.ndarray) -> int:
        b = np.zeros(channels, np.int32) if bias is None else np.asarray(bias, dtype=np.int64)
        if b.shape != (channels,) or b.min() < -(1 << 31) or b.max() > (1 << 31) - 1:
            raise EmulationError(f"bias must be int32 codes of shape ({channels},)")
        bscale = (np.float64(np.float32(x_scale)) * w_scale.astype(np.float64)).astype(
            np.float32)
        return self.add_tensor((channels,), np.int32, bscale, np.zeros(channels, np.int64),
                               data=b.astype(np.int32))

    @staticmethod
    def _weight_scale(w_scale: float | np.ndarray, channels: int) -> np.ndarray:
        ws = np.asarray(w_scale, dtype=np.float32)
        return np.full(channels, ws, np.float32) if ws.ndim == 0 else ws

    # ------------------------------------------------------------------------------ layers
    def add_conv2d(self, x: int, w: np.ndarray, w_scale: float | np.ndarray, y_scale: float,
                   y_zero_point: int, bias: np.ndarray | None = None,
                   stride: tuple[int, int] = (1, 1), padding: str = "valid",
                   dilation: tuple[int, int] = (1, 1), activation: str = "none") -> int:
        """CONV_2D. x: NHWC tensor index; w: (O, kh, kw, I) int8 codes (symmetric)."""
        w = np.asarray(w, dtype=np.int8)
        n, h, wd, c = self.shape_of(x)
        o, kh, kw, ci = w.shape
        if ci != c:
            raise EmulationError(f"CONV_2D weight {w.shape} does not match input channels {c}")
        oh, ow = self._out_hw(h, wd, kh, kw, stride, dilation, padding)
        x_scale, _ = self._quant_of(x)
        ws = self._weight_scale(w_scale, o)
        wi = self.add_tensor(w.shape, np.int8, ws, np.zeros(o, np.int64), 0, data=w)
        bi = self._bias_tensor(bias, o, x_scale, ws)
        yi = self.add_tensor((n, oh, ow, o), np.int8, y_scale, y_zero_point)
        opt = tfl.Conv2DOptionsT()
        opt.padding = _PADDING[padding]
        opt.strideH, opt.strideW = stride
        opt.dilationHFactor, opt.dilationWFactor = dilation
        opt.fusedActivationFunction = _ACTIVATIONS[activation]
        self._operator(tfl.BuiltinOperator.CONV_2D, [x, wi, bi], [yi],
                       tfl.BuiltinOptions.Conv2DOptions, opt)
        return yi

    def add_depthwise_conv2d(self, x: int, w: np.ndarray, w_scale: float | np.ndarray,
                             y_scale: float, y_zero_point: int, bias: np.ndarray | None = None,
                             stride: tuple[int, int] = (1, 1), padding: str = "valid",
                             dilation: tuple[int, int] = (1, 1),
                             activation: str = "none") -> int:
        """DEPTHWISE_CONV_2D. w: (1, kh, kw, C * multiplier) int8 codes."""
        w = np.asarray(w, dtype=np.int8)
        n, h, wd, c = self.shape_of(x)
        _, kh, kw, co = w.shape
        if co % c:
            raise EmulationError(f"DEPTHWISE_CONV_2D weight {w.shape}: last dim must be a "
                                 f"multiple of the input channels {c}")
        oh, ow = self._out_hw(h, wd, kh, kw, stride, dilation, padding)
        x_scale, _ = self._quant_of(x)
        ws = self._weight_scale(w_scale, co)
        wi = self.add_tensor(w.shape, np.int8, ws, np.zeros(co, np.int64), 3, data=w)
        bi = self._bias_tensor(bias, co, x_scale, ws)
        yi = self.add_tensor((n, oh, ow, co), np.int8, y_scale, y_zero_point)
        opt = tfl.DepthwiseConv2DOptionsT()
        opt.padding = _PADDING[padding]
        opt.strideH, opt.strideW = stride
        opt.dilationHFactor, opt.dilationWFactor = dilation
        opt.depthMultiplier = co // c
        opt.fusedActivationFunction = _ACTIVATIONS[activation]
        self._operator(tfl.BuiltinOperator.DEPTHWISE_CONV_2D, [x, wi, bi], [yi],
                       tfl.BuiltinOptions.DepthwiseConv2DOptions, opt)
        return yi

    def add_fully_connected(self, x: int, w: np.ndarray, w_scale: float | np.ndarray,
                            y_scale: float, y_zero_point: int, bias: np.ndarray | None = None,
                            activation: str = "none") -> int:
        """FULLY_CONNECTED. x: (N, K); w: (O, K) int8 codes."""
        w = np.asarray(w, dtype=np.int8)
        shape = self.shape_of(x)
        o, k = w.shape
        if shape[-1] != k:
            raise EmulationError(f"FULLY_CONNECTED weight {w.shape} does not match input "
                                 f"{shape}")
        x_scale, _ = self._quant_of(x)
        ws = self._weight_scale(w_scale, o)
        wi = self.add_tensor(w.shape, np.int8, ws, np.zeros(o, np.int64), 0, data=w)
        bi = self._bias_tensor(bias, o, x_scale, ws)
        yi = self.add_tensor((int(np.prod(shape[:-1])), o), np.int8, y_scale, y_zero_point)
        opt = tfl.FullyConnectedOptionsT()
        opt.fusedActivationFunction = _ACTIVATIONS[activation]
        self._operator(tfl.BuiltinOperator.FULLY_CONNECTED, [x, wi, bi], [yi],
                       tfl.BuiltinOptions.FullyConnectedOptions, opt)
        return yi

    # ------------------------------------------------------------- data movement and edges
    def add_float_input(self, shape: Sequence[int], name: str = "input") -> int:
        """A float32 graph input."""
        idx = self.add_tensor(shape, np.float32, name=name)
        self._inputs.append(idx)
        return idx

    def _like(self, x: int, shape: Sequence[int], dtype: np.dtype | type | None = None) -> int:
        """A new activation tensor with x's quantization (and dtype unless given)."""
        t = self._tensors[x]
        dt = _DTYPE_OF[t.type] if dtype is None else np.dtype(dtype)
        q = t.quantization
        if q is None or q.scale is None:
            return self.add_tensor(shape, dt)
        return self.add_tensor(shape, dt, q.scale, q.zeroPoint, q.quantizedDimension)

    def _const_i32(self, values: np.ndarray | Sequence[int]) -> int:
        a = np.asarray(values, dtype=np.int32)
        return self.add_tensor(a.shape, np.int32, data=a)

    def _code_const(self, x: int, code: int) -> int:
        """A constant int8 code (shape (1,)) with x's quantization."""
        scale, zero_point = self._quant_of(x)
        return self.add_tensor((1,), np.int8, scale, zero_point,
                               data=np.asarray([code], np.int8))

    def add_quantize(self, x: int, scale: float, zero_point: int) -> int:
        """QUANTIZE float32 -> int8 (reference: round half away of x / scale, + zp, clamp)."""
        y = self.add_tensor(self.shape_of(x), np.int8, scale, zero_point)
        self._operator(tfl.BuiltinOperator.QUANTIZE, [x], [y],
                       tfl.BuiltinOptions.QuantizeOptions, tfl.QuantizeOptionsT())
        return y

    def add_dequantize(self, x: int) -> int:
        """DEQUANTIZE int8 -> float32 ((q - zp) * scale)."""
        y = self.add_tensor(self.shape_of(x), np.float32)
        self._operator(tfl.BuiltinOperator.DEQUANTIZE, [x], [y],
                       tfl.BuiltinOptions.DequantizeOptions, tfl.DequantizeOptionsT())
        return y

    def add_transpose(self, x: int, perm: Sequence[int]) -> int:
        """TRANSPOSE (codes unchanged)."""
        shape = self.shape_of(x)
        y = self._like(x, [shape[p] for p in perm])
        self._operator(tfl.BuiltinOperator.TRANSPOSE, [x, self._const_i32(perm)], [y],
                       tfl.BuiltinOptions.TransposeOptions, tfl.TransposeOptionsT())
        return y

    def add_reshape(self, x: int, shape: Sequence[int]) -> int:
        """RESHAPE to ``shape`` (batch axis given as -1; stored shape uses the input's)."""
        n = int(np.prod(self.shape_of(x)))
        rest = [int(d) for d in shape[1:]]
        stored = [n // max(1, int(np.prod(rest))), *rest]
        y = self._like(x, stored)
        opt = tfl.ReshapeOptionsT()
        opt.newShape = np.asarray(shape, dtype=np.int32)
        self._operator(tfl.BuiltinOperator.RESHAPE, [x, self._const_i32(shape)], [y],
                       tfl.BuiltinOptions.ReshapeOptions, opt)
        return y

    def add_pad(self, x: int, pads: Sequence[tuple[int, int]], code: int) -> int:
        """PADV2 with constant code ``code`` (x's quantization); pads: (before, after) per
        dimension."""
        shape = self.shape_of(x)
        if len(pads) != len(shape):
            raise EmulationError(f"PADV2: {len(pads)} (before, after) pairs for a "
                                 f"{len(shape)}-D tensor")
        out = [d + a + b for d, (a, b) in zip(shape, pads, strict=True)]
        y = self._like(x, out)
        c = self._code_const(x, code)
        self._operator(tfl.BuiltinOperator.PADV2,
                       [x, self._const_i32(np.asarray(pads, np.int32)), c], [y],
                       tfl.BuiltinOptions.PadV2Options, tfl.PadV2OptionsT())
        return y

    def add_max_pool(self, x: int, kernel: tuple[int, int], stride: tuple[int, int]) -> int:
        """MAX_POOL_2D, VALID padding, NHWC (output quantization = input's)."""
        n, h, w, c = self.shape_of(x)
        oh = (h - kernel[0]) // stride[0] + 1
        ow = (w - kernel[1]) // stride[1] + 1
        y = self._like(x, (n, oh, ow, c))
        opt = tfl.Pool2DOptionsT()
        opt.padding = _PADDING["valid"]
        opt.strideH, opt.strideW = stride
        opt.filterHeight, opt.filterWidth = kernel
        opt.fusedActivationFunction = 0
        self._operator(tfl.BuiltinOperator.MAX_POOL_2D, [x], [y],
                       tfl.BuiltinOptions.Pool2DOptions, opt)
        return y

    def add_concatenation(self, xs: Sequence[int], axis: int) -> int:
        """CONCATENATION of tensors with equal quantization along ``axis``."""
        shapes = [self.shape_of(x) for x in xs]
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        y = self._like(xs[0], out)
        opt = tfl.ConcatenationOptionsT()
        opt.axis = axis
        opt.fusedActivationFunction = 0
        self._operator(tfl.BuiltinOperator.CONCATENATION, list(xs), [y],
                       tfl.BuiltinOptions.ConcatenationOptions, opt)
        return y

    def add_code_clamp(self, x: int, lo: int, hi: int) -> int:
        """MAXIMUM / MINIMUM with constant codes (same quantization: exact on codes)."""
        for builtin, code in ((tfl.BuiltinOperator.MAXIMUM, lo),
                              (tfl.BuiltinOperator.MINIMUM, hi)):
            c = self._code_const(x, code)
            y = self._like(x, self.shape_of(x))
            self._operator(builtin, [x, c], [y], tfl.BuiltinOptions.MaximumMinimumOptions,
                           tfl.MaximumMinimumOptionsT())
            x = y
        return x

    def add_lookup(self, x: int, offset: int, table: np.ndarray, scale: float,
                   zero_point: int) -> int:
        """GATHER(table, int32(x) - offset): a 1-D int8 lookup table of output codes."""
        shape = self.shape_of(x)
        xi = self.add_tensor(shape, np.int32)
        opt = tfl.CastOptionsT()
        opt.inDataType, opt.outDataType = tfl.TensorType.INT8, tfl.TensorType.INT32
        self._operator(tfl.BuiltinOperator.CAST, [x], [xi], tfl.BuiltinOptions.CastOptions, opt)
        idx = self.add_tensor(shape, np.int32)
        self._operator(tfl.BuiltinOperator.SUB, [xi, self._const_i32([offset])], [idx],
                       tfl.BuiltinOptions.SubOptions, tfl.SubOptionsT())
        tab = np.asarray(table, dtype=np.int8).ravel()
        ti = self.add_tensor(tab.shape, np.int8, scale, zero_point, data=tab)
        y = self.add_tensor(shape, np.int8, scale, zero_point)
        opt = tfl.GatherOptionsT()
        opt.axis = 0
        self._operator(tfl.BuiltinOperator.GATHER, [ti, idx], [y],
                       tfl.BuiltinOptions.GatherOptions, opt)
        return y

    @staticmethod
    def _out_hw(h: int, w: int, kh: int, kw: int, stride, dilation, padding: str
                ) -> tuple[int, int]:
        if padding not in _PADDING:
            raise EmulationError(f"TFLite padding must be 'same' or 'valid', got {padding!r}")
        if padding == "same":
            return (same_padding(h, kh, stride[0], dilation[0])[0],
                    same_padding(w, kw, stride[1], dilation[1])[0])
        oh = (h - (kh - 1) * dilation[0] - 1) // stride[0] + 1
        ow = (w - (kw - 1) * dilation[1] - 1) // stride[1] + 1
        if oh < 1 or ow < 1:
            raise EmulationError(f"VALID convolution of {h}x{w} with kernel {kh}x{kw} is empty")
        return oh, ow

    # ------------------------------------------------------------------------------ finish
    def serialize(self) -> bytes:
        """The .tflite flatbuffer (schema version 3, identifier TFL3)."""
        if not self._inputs or not self._outputs:
            raise EmulationError(f"TFLite graph {self.name!r} needs an input and an output")
        sg = tfl.SubGraphT()
        sg.tensors = self._tensors
        sg.inputs = np.asarray(self._inputs, dtype=np.int32)
        sg.outputs = np.asarray(self._outputs, dtype=np.int32)
        sg.operators = self._operators
        sg.name = self.name
        model = tfl.ModelT()
        model.version = 3
        model.operatorCodes = self._opcodes
        model.subgraphs = [sg]
        model.buffers = self._buffers
        model.description = "hwsim"
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())
