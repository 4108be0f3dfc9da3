"""Digits demo models: deterministic training, npz cache, importable into the graph IR."""

from __future__ import annotations

import graph_eval_reference as ref
import numpy as np
import pytest
import torch

from hwsim.errors import GraphError
from hwsim.graph import digits_demo
from hwsim.graph.digits_demo import demo_model
from hwsim.graph.from_torch import graph_from_torch
from hwsim.graph.ir import OpType


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hwsim_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWSIM_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def cnn(cache_dir):
    return demo_model("digits_cnn")


def test_cnn_trains_to_useful_accuracy_and_returns_data(cnn, cache_dir):
    assert cnn.fp32_accuracy >= 0.93
    assert cnn.calib_x.shape == (digits_demo.N_CALIB, 1, 8, 8)
    assert cnn.test_x.shape == (360, 1, 8, 8) and cnn.test_y.shape == (360,)
    assert cnn.calib_x.dtype == np.float32 and 0.0 <= cnn.calib_x.min() <= cnn.calib_x.max() <= 1
    assert not cnn.model.training
    assert (cache_dir / "digits_cnn-v1.npz").is_file()
    assert not list(cache_dir.glob("*.tmp"))


def test_second_call_loads_cache_without_training(cnn, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the cache exists")

    monkeypatch.setattr(digits_demo, "_train", no_training)
    again = demo_model("digits_cnn")
    for (k, a), b in zip(cnn.model.state_dict().items(), again.model.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    assert again.fp32_accuracy == cnn.fp32_accuracy


def test_cache_file_has_no_pickle(cache_dir, cnn):
    with np.load(cache_dir / "digits_cnn-v1.npz", allow_pickle=False) as data:
        assert "__meta__" in data.files
        assert all(data[k].dtype != object for k in data.files)


def test_corrupt_cache_is_retrained(cache_dir, cnn):
    path = cache_dir / "digits_cnn-v1.npz"
    good = path.read_bytes()
    path.write_bytes(b"garbage")
    try:
        rebuilt = demo_model("digits_cnn")
        # deterministic training: the retrained model equals the first one
        for a, b in zip(cnn.model.state_dict().values(), rebuilt.model.state_dict().values(),
                        strict=True):
            assert torch.equal(a, b)
    finally:
        path.write_bytes(good)


def test_cnn_imports_with_depthwise_and_residual(cnn):
    graph = graph_from_torch(cnn.model, torch.from_numpy(cnn.test_x[:4]))
    ops = [n.op for n in graph]
    assert OpType.BATCHNORM not in ops and OpType.ADD in ops
    assert any(n.op is OpType.CONV2D and n.attrs.is_depthwise for n in graph)
    got = ref.outputs(graph, cnn.test_x[:64])[0]
    want = cnn.model(torch.from_numpy(cnn.test_x[:64])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_unknown_demo_name():
    with pytest.raises(GraphError, match="unknown demo model 'nope'; available: digits_cnn"):
        demo_model("nope")


@pytest.mark.slow
def test_mobilenet_demo_trains_and_imports(cache_dir):
    mb = demo_model("digits_mbv2")
    assert mb.fp32_accuracy >= 0.9
    assert mb.test_x.shape == (360, 1, 16, 16)
    graph = graph_from_torch(mb.model, torch.from_numpy(mb.test_x[:2]))
    assert sum(n.op is OpType.ADD for n in graph) == 3  # the three stride-1 same-width blocks
    assert sum(n.op is OpType.CLIP and n.attrs.is_relu6 for n in graph) >= 10
    np.testing.assert_allclose(ref.outputs(graph, mb.test_x[:16])[0],
                               mb.model(torch.from_numpy(mb.test_x[:16])).numpy(),
                               rtol=1e-4, atol=1e-4)
