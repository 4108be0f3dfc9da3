"""ONNX importer: torch exports and hand-built graphs reproduce torch / ONNX Runtime outputs."""

from __future__ import annotations

import io

import graph_eval_reference as ref
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from test_graph_torch_import import MixedOps, _randomize_bn

from hwsim.errors import GraphError, UnsupportedOpError
from hwsim.graph import load_model
from hwsim.graph.from_onnx import graph_from_onnx
from hwsim.graph.ir import OpType


def _export(model, x, dynamic: bool) -> onnx.ModelProto:
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}} if dynamic else None)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.parametrize("dynamic", [False, True], ids=["static_batch", "dynamic_batch"])
def test_torch_export_reproduces_torch(dynamic):
    torch.manual_seed(0)
    model = _randomize_bn(MixedOps(shuffle_module=False))
    x = torch.randn(3, 3, 17, 15)
    graph = graph_from_onnx(_export(model, x, dynamic))
    ops = [n.op for n in graph]
    assert OpType.BATCHNORM not in ops
    assert ops.count(OpType.CHANNEL_SHUFFLE) == 1  # the reshape-transpose-reshape pattern
    assert graph.inputs == {"x": (1, 3, 17, 15)}
    got = ref.outputs(graph, x.numpy())[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def _model(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "hand", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _check_against_ort(model: onnx.ModelProto, x: np.ndarray) -> None:
    graph = graph_from_onnx(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {model.graph.input[0].name: x})[0]
    np.testing.assert_allclose(ref.outputs(graph, x)[0], want, rtol=1e-5, atol=1e-5)
    return graph


def test_hand_built_conv_pool_gemm_graph_matches_onnxruntime():
    rng = np.random.default_rng(0)
    f32 = np.float32
    inits = {
        "W": rng.normal(size=(6, 2, 3, 3)).astype(f32), "B": rng.normal(size=6).astype(f32),
        "G": rng.normal(size=(10, 6 * 4 * 4)).astype(f32),  # transB=1: (out, in)
        "C": rng.normal(size=(1, 10)).astype(f32),
        "M": rng.normal(size=(10, 4)).astype(f32), "MB": rng.normal(size=4).astype(f32),
        "lo": np.array(-0.5, f32), "hi": np.array(0.8, f32),
        "shape": np.array([0, -1], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", auto_pad="SAME_UPPER",
                         strides=[2, 2], group=2),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="clip"),
        helper.make_node("AveragePool", ["r"], ["p"], name="avg", kernel_shape=[2, 2],
                         pads=[1, 1, 0, 0]),  # count_include_pad defaults to 0 in ONNX
        helper.make_node("HardSigmoid", ["p"], ["hs"], name="hsig", alpha=0.3, beta=0.4),
        helper.make_node("Mul", ["p", "hs"], ["m"], name="mul"),
        helper.make_node("Identity", ["m"], ["i"], name="ident"),
        helper.make_node("Reshape", ["i", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "G", "C"], ["g"], name="gemm", transB=1, alpha=0.5,
                         beta=2.0),
        helper.make_node("Relu", ["g"], ["gr"], name="relu"),
        helper.make_node("MatMul", ["gr", "M"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "MB"], ["y"], name="bias"),
    ]
    model = _model(nodes, [_vi("x", ["N", 4, 7, 8])], [_vi("y", ["N", 4])], inits)
    x = rng.normal(size=(3, 4, 7, 8)).astype(f32)
    graph = _check_against_ort(model, x)
    assert [n.op.value for n in graph] == ["conv2d", "clip", "avgpool", "hardsigmoid", "mul",
                                           "reshape", "linear", "relu", "linear"]
    assert graph.node("conv").attrs.padding == (1, 0, 1, 1)  # SAME_UPPER: extra at the end
    assert graph.node("avg").attrs.count_include_pad is False
    assert graph.outputs == ("y",)  # MatMul + constant Add folded into the linear's bias


def test_clip_with_attributes_in_old_opset_and_maxpool():
    nodes = [helper.make_node("Clip", ["x"], ["c"], name="clip6", min=0.0, max=6.0),
             helper.make_node("MaxPool", ["c"], ["p"], name="mp", kernel_shape=[3, 3],
                              strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
             helper.make_node("GlobalAveragePool", ["p"], ["y"], name="gap")]
    model = _model(nodes, [_vi("x", [2, 3, 8, 9])], [_vi("y", [2, 3, 1, 1])], {}, opset=10)
    x = (np.random.default_rng(1).normal(size=(2, 3, 8, 9)) * 5).astype(np.float32)
    graph = _check_against_ort(model, x)
    assert graph.node("clip6").attrs.is_relu6
    assert graph.node("mp").attrs.ceil_mode


def test_unsupported_op_names_node_and_op():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("LeakyRelu", ["r"], ["y"], name="leaky")]
    model = _model(nodes, [_vi("x", [1, 2, 3, 3])], [_vi("y", [1, 2, 3, 3])], {})
    with pytest.raises(UnsupportedOpError,
                       match=r"node 'leaky' \(op LeakyRelu\) is not supported.*Supported ONNX"):
        graph_from_onnx(model)


def test_transpose_outside_channel_shuffle_is_rejected():
    nodes = [helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[0, 1, 3, 2])]
    model = _model(nodes, [_vi("x", [1, 2, 3, 4])], [_vi("y", [1, 2, 4, 3])], {})
    with pytest.raises(UnsupportedOpError, match=r"'tr' \(op Transpose\).*channel shuffle"):
        graph_from_onnx(model)


def test_corrupt_and_missing_files_are_graph_errors(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf\xff\xff")
    with pytest.raises(GraphError, match="broken.onnx"):
        graph_from_onnx(bad)
    with pytest.raises(GraphError, match="missing.onnx' does not exist"):
        load_model(tmp_path / "missing.onnx")
    with pytest.raises(GraphError, match="only .onnx files"):
        load_model(tmp_path / "model.pt")


def test_load_model_reads_onnx_file(tmp_path):
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"], name="sig")]
    path = tmp_path / "sig.onnx"
    onnx.save(_model(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])], {}), path)
    graph = load_model(str(path))
    assert [n.op for n in graph] == [OpType.SIGMOID]
    assert graph.inputs == {"x": (1, 4)}
