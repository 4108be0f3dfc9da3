"""``hwsim emulate`` / ``hwsim validate`` from the command line: output and clear errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hwsim.cli.main import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _tiny_onnx(path, op: str = "Relu") -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 1, 1], [1.0, 0.5, -0.5, 1.0])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node(op, ["c"], ["y"], name="act")]
    graph = helper.make_graph(nodes, "tiny", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_emulate_demo_prints_layer_table_and_accuracy(capsys, tmp_path):
    report = tmp_path / "r.json"
    code, out, _ = _run(capsys, "emulate", "--device", "snpe", "--limit", "40",
                        "--report", str(report))
    assert code == 0
    assert "SQNR dB" in out and "conv2d+relu" in out and "top-1 accuracy: fp32" in out
    data = json.loads(report.read_text())
    assert data["device"] == "snpe" and len(data["layers"]) > 3
    assert 0 <= data["emulated_accuracy"] <= 1


def test_emulate_onnx_model_with_data_and_dump(capsys, tmp_path):
    model = tmp_path / "tiny.onnx"
    _tiny_onnx(model)
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).standard_normal((8, 2, 4, 4)).astype(np.float32))
    dump = tmp_path / "dump"
    code, out, _ = _run(capsys, "emulate", str(model), "--device", "tensorrt", "--data",
                        str(data), "--dump", str(dump))
    assert code == 0, out
    manifest = json.loads((dump / "manifest.json").read_text())
    assert [entry["op"] for entry in manifest["layers"]] == ["conv2d+relu"]
    code, out, _ = _run(capsys, "validate", str(model), "--device", "tensorrt", "--golden",
                        str(dump))
    assert code == 0 and "bit-exact" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["emulate", "--device", "no-such-device"], "unknown device 'no-such-device'"),
    (["emulate", "--device", "snpe", "--precision", "int4"], "has no precision 'int4'"),
    (["emulate", "--device", "nnie", "--precision", "int16"], "not specified"),
    (["emulate", "missing.onnx", "--device", "snpe", "--data", "x.npy"],
     "model file 'missing.onnx' not found"),
])
def test_bad_arguments_give_one_clear_error_and_exit_1(capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 1
    assert message in err
    assert "Traceback" not in err


def test_corrupt_model_and_wrong_shape_calibration_are_clear_errors(capsys, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx protobuf")
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((4, 2, 4, 4), np.float32))
    code, _, err = _run(capsys, "emulate", str(bad), "--device", "snpe", "--data", str(data))
    assert code == 1 and "bad.onnx" in err and "Traceback" not in err

    model = tmp_path / "tiny.onnx"
    _tiny_onnx(model)
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((4, 3, 4, 4), np.float32))
    code, _, err = _run(capsys, "emulate", str(model), "--device", "snpe", "--data", str(data),
                        "--calib", str(calib))
    assert code == 1 and "--calib" in err and "(N, 2, 4, 4)" in err


def test_unsupported_op_names_the_node_and_op(capsys, tmp_path):
    model = tmp_path / "softmax.onnx"
    _tiny_onnx(model, op="Softmax")
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((2, 2, 4, 4), np.float32))
    code, _, err = _run(capsys, "emulate", str(model), "--device", "snpe", "--data", str(data))
    assert code == 1 and "Softmax" in err and "act" in err


def test_validate_exits_1_and_names_the_first_differing_layer(capsys, tmp_path):
    dump = tmp_path / "dump"
    assert _run(capsys, "emulate", "--device", "snpe", "--limit", "16", "--dump",
                str(dump))[0] == 0
    manifest = json.loads((dump / "manifest.json").read_text())
    entry = manifest["layers"][1]
    arr = np.load(dump / entry["file"])
    arr.flat[0] = arr.flat[0] ^ 2
    np.save(dump / entry["file"], arr)
    code, out, _ = _run(capsys, "validate", "demo", "--device", "snpe", "--golden", str(dump))
    assert code == 1
    assert f"first differing layer: {entry['name']}" in out
