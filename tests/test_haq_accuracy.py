"""Policy accuracy under the device's numerics: per-layer precisions reach the emulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_nets import TinyNet

import hwsim
from hwsim.emulate.emulator import Emulator
from hwsim.errors import SearchError
from hwsim.graph.ir import OpType
from hwsim.graph.load import load_model
from hwsim.search.haq_accuracy import PolicyEvaluator, SearchData, layer_precisions
from hwsim.search.haq_cost import quantizable_layers


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    graph = load_model(TinyNet().eval(), torch.zeros(1, 1, 8, 8))
    x = np.random.default_rng(0).uniform(0.0, 1.0, (64, 1, 8, 8)).astype(np.float32)
    return graph, x


def _distinct_per_channel(codes: np.ndarray) -> int:
    return max(len(np.unique(c)) for c in codes.reshape(codes.shape[0], -1))


def test_two_bit_weights_on_one_layer_change_the_numerics(tiny):
    graph, x = tiny
    dev = hwsim.load_device("bismo")
    base = Emulator(graph, dev, "int8").calibrate(x)
    mixed = Emulator(graph, dev, "int8", {"conv2": ("int2", None)}).calibrate(x)
    w8, w2 = base.layers_["conv2"].weight_codes, mixed.layers_["conv2"].weight_codes
    assert _distinct_per_channel(w8) > 4
    assert _distinct_per_channel(w2) <= 4
    assert np.abs(w2).max() <= 1  # bismo int2 weights: signed narrow range [-1, 1]
    assert len(np.unique(mixed.layers_["conv2"].weight_values)) <= 4
    np.testing.assert_array_equal(base.layers_["conv1"].weight_codes,
                                  mixed.layers_["conv1"].weight_codes)
    out8, out2 = base.run(x).output, mixed.run(x).output
    assert not np.array_equal(out8, out2)


def test_two_bit_activation_override_quantizes_the_layer_output(tiny):
    graph, x = tiny
    dev = hwsim.load_device("bismo")
    base = Emulator(graph, dev, "int8").calibrate(x)
    mixed = Emulator(graph, dev, "int8", {"conv1": (None, "int2")}).calibrate(x)
    qp = mixed.qparams_[next(s.output for s in mixed.steps_ if s.name == "conv1")]
    assert (qp.qmin, qp.qmax) == (0, 3)
    res = mixed.run(x)
    assert len(np.unique(res.codes["conv1"])) <= 4
    assert len(np.unique(base.run(x).codes["conv1"])) > 4
    assert not np.array_equal(res.output, base.run(x).output)


def test_layer_precisions_put_activation_bits_on_the_producer(tiny):
    graph, _ = tiny
    layers = quantizable_layers(graph)
    pool = next(n.name for n in graph.nodes if n.op is OpType.GLOBAL_AVGPOOL)
    lp = layer_precisions(graph, layers, [(8, 8), (4, 3), (2, 5)], base_bits=8)
    assert lp == {"conv1": ("int8", "int3"), "conv2": ("int4", None), "fc": ("int2", None),
                  pool: (None, "int5")}
    with pytest.raises(SearchError, match="graph input"):
        layer_precisions(graph, layers, [(8, 4), (4, 3), (2, 5)], base_bits=8)


@pytest.fixture(scope="module")
def digits():
    from hwsim.graph.digits_demo import demo_model, digits_data

    d = demo_model("digits_cnn")
    graph = load_model(d.model, torch.from_numpy(d.calib_x[:1]))
    train_x, train_y, test_x, test_y = digits_data(8)
    data = SearchData(train_x=train_x[:128], train_y=train_y[:128], val_x=test_x[:180],
                      val_y=test_y[:180], test_x=test_x[180:], test_y=test_y[180:],
                      calib_x=train_x[:128])
    return d, graph, data


def test_policy_evaluator_int8_policy_matches_the_plain_int8_emulator(digits):
    d, graph, data = digits
    dev = hwsim.load_device("bismo")
    layers = quantizable_layers(graph)
    ev = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=0)
    with torch.no_grad():
        torch_acc = float((d.model(torch.from_numpy(data.val_x)).argmax(1).numpy()
                           == data.val_y).mean())
    assert ev.fp_accuracy("val") == pytest.approx(torch_acc)
    plain = Emulator(graph, dev, "int8").calibrate(data.calib_x).run(data.val_x).output
    plain_acc = float(np.mean(plain.argmax(1) == data.val_y))
    n = len(layers)
    assert ev.accuracy([(8, 8)] * n) == plain_acc
    low = [(8, 8)] + [(2, 2)] * (n - 2) + [(8, 8)]
    assert ev.accuracy(low) < plain_acc
    with pytest.raises(SearchError, match="graph input"):
        ev.accuracy([(8, 4)] + [(8, 8)] * (n - 1))


def test_finetune_changes_weights_deterministically(digits):
    _, graph, data = digits
    dev = hwsim.load_device("bismo")
    layers = quantizable_layers(graph)
    ev = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=1, seed=0)
    policy = [(8, 8)] + [(3, 4)] * (len(layers) - 2) + [(8, 8)]
    g1 = ev.finetuned_graph(policy)
    assert ev.finetuned_graph(policy) is g1  # val and test accuracy share one fine-tune
    g2 = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=1, seed=0
                         ).finetuned_graph(policy)
    other = [(8, 8)] + [(4, 4)] * (len(layers) - 2) + [(8, 8)]
    assert ev.finetuned_graph(other) is not g1
    name = layers[1].name
    w0 = next(n for n in graph.nodes if n.name == name).weights["weight"]
    w1 = next(n for n in g1.nodes if n.name == name).weights["weight"]
    w2 = next(n for n in g2.nodes if n.name == name).weights["weight"]
    assert not np.array_equal(w0, w1)
    np.testing.assert_array_equal(w1, w2)


def test_each_finetune_epoch_trains_under_a_fresh_calibration(digits, monkeypatch):
    """Epoch 2 trains under the device's calibration of the weights epoch 1 produced, not under
    the scales of the original weights (fixed scales let the weights drift from them)."""
    import hwsim.search.haq_accuracy as haq_accuracy

    _, graph, data = digits
    dev = hwsim.load_device("bismo")
    layers = quantizable_layers(graph)
    policy = [(8, 8)] + [(3, 4)] * (len(layers) - 2) + [(8, 8)]
    built = []
    real = haq_accuracy.FakeQuantNet

    def recording(g, wq, aq):
        built.append((g, wq))
        return real(g, wq, aq)

    monkeypatch.setattr(haq_accuracy, "FakeQuantNet", recording)
    ev = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=2, seed=0)
    ev.finetuned_graph(policy)
    assert len(built) == 2
    (g1, wq1), (g2, wq2) = built
    assert g1 is graph and g2 is not graph
    expected = ev.emulator(g2, policy)  # independent calibration of epoch 1's weights
    name = layers[1].name
    np.testing.assert_array_equal(np.asarray(wq2[name].scale),
                                  np.asarray(expected.layers_[name].weight_qparams.scale))
    assert not np.array_equal(np.asarray(wq1[name].scale), np.asarray(wq2[name].scale))


def test_finetune_does_not_depend_on_the_callers_torch_threads(digits):
    """Training float sums depend on the thread count, and numba's first parallel launch resets
    torch's OpenMP thread count; the fine-tune fixes its own count so results do not depend on
    what ran before in the process."""
    _, graph, data = digits
    dev = hwsim.load_device("bismo")
    layers = quantizable_layers(graph)
    policy = [(8, 8)] + [(3, 4)] * (len(layers) - 2) + [(8, 8)]
    old = torch.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            g = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=1, seed=0
                                ).finetuned_graph(policy)
            weights.append(np.concatenate([np.ravel(v) for n in g.nodes
                                           for v in n.weights.values()]))
            assert torch.get_num_threads() == threads  # the caller's count is restored
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(weights[0], weights[1])


def test_finetune_running_metrics_equal_the_untrained_net_on_the_training_images(digits):
    """With lr 0 the fake-quant net does not move during the epoch, so the running top-1 and
    NLL over the fine-tune's batches are those of one pass of that net over all its images
    (computed here in float64 from its logits)."""
    import torch.nn.functional as F

    from hwsim.search.fake_quant_net import FakeQuantNet

    _, graph, data = digits
    dev = hwsim.load_device("bismo")
    layers = quantizable_layers(graph)
    policy = [(8, 8)] + [(2, 3)] * (len(layers) - 2) + [(8, 8)]
    ev = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=2, finetune_lr=0.0,
                         batch_size=48, seed=0)  # 128 images: batches of 48, 48, 32
    top1, nll = ev.finetune_running(policy)
    emu = ev.emulator(graph, policy)
    net = FakeQuantNet(graph, {n: lp.weight_qparams for n, lp in emu.layers_.items()},
                       dict(emu.qparams_))
    with torch.no_grad():
        logits = net(torch.from_numpy(data.train_x)).double()
    y = torch.from_numpy(np.asarray(data.train_y, np.int64))
    assert top1 == pytest.approx(float((logits.argmax(1) == y).double().mean()))
    assert nll == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    assert 0.0 < top1 < 1.0  # 2-bit weights: a score with room on both sides
    # shares the fine-tune with the graph; the float model's reference is on the same images
    assert ev.finetune_running(policy) == (top1, nll)
    fp_top1, fp_nll = ev.fp_evaluate("train")
    assert fp_top1 > top1 and fp_nll < nll


def test_finetune_running_keeps_the_best_epoch_and_needs_a_finetune(digits):
    _, graph, data = digits
    dev = hwsim.load_device("bismo")
    layers = quantizable_layers(graph)
    policy = [(8, 8)] + [(2, 3)] * (len(layers) - 2) + [(8, 8)]
    one = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=1, seed=0)
    two = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=2, seed=0)
    # epoch 1 of both runs is the same computation; epoch 2 can only keep or improve it
    assert two.finetune_running(policy)[0] >= one.finetune_running(policy)[0]
    assert two.finetune_running(policy)[1] <= one.finetune_running(policy)[1]
    none = PolicyEvaluator(graph, dev, layers, data, finetune_epochs=0)
    with pytest.raises(SearchError, match="needs finetune_epochs >= 1"):
        none.finetune_running(policy)
    with pytest.raises(SearchError, match="unknown split 'calib'; allowed: val, test, train"):
        none.accuracy(policy, "calib")
