"""BatchNorm folding: float64 math, only into a sole-consumer conv/linear, torch-equal output."""

from __future__ import annotations

import graph_eval_reference as ref
import numpy as np
import pytest
import torch
from torch import nn

from hwsim.graph.bn_fold import fold_batchnorm
from hwsim.graph.from_torch import graph_from_torch
from hwsim.graph.ir import OpType


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.bias.copy_(torch.randn(n, generator=g))
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.05)
    return model.eval()


def _ops(graph) -> list[str]:
    return [n.op.value for n in graph]


def test_conv_bn_folds_and_matches_torch_eval():
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6),
                                        nn.ReLU()))
    x = torch.randn(4, 3, 7, 7)
    raw = graph_from_torch(model, x, fold_bn=False)
    folded = fold_batchnorm(raw)
    assert _ops(raw) == ["conv2d", "batchnorm", "relu"]
    assert _ops(folded) == ["conv2d", "relu"]
    want = model(x).detach().numpy()
    for g in (raw, folded):
        np.testing.assert_allclose(ref.outputs(g, x.numpy())[0], want, rtol=1e-5, atol=1e-5)


def test_folded_weights_are_float64_math_rounded_once():
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4, eps=1e-3)
    model = _randomize_bn(nn.Sequential(conv, bn), seed=1)
    node = graph_from_torch(model, torch.randn(1, 2, 3, 3)).nodes[0]
    gamma, beta, mean, var = (t.detach().numpy().astype(np.float64) for t in
                              (bn.weight, bn.bias, bn.running_mean, bn.running_var))
    s = gamma / np.sqrt(var + 1e-3)
    w = conv.weight.detach().numpy().astype(np.float64) * s[:, None, None, None]
    b = (conv.bias.detach().numpy().astype(np.float64) - mean) * s + beta
    np.testing.assert_array_equal(node.weights["weight"], w.astype(np.float32))
    np.testing.assert_array_equal(node.weights["bias"], b.astype(np.float32))


def test_linear_bn1d_folds():
    torch.manual_seed(2)
    model = _randomize_bn(nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3)), seed=2)
    x = torch.randn(6, 5)
    g = graph_from_torch(model, x)
    assert _ops(g) == ["linear"]
    np.testing.assert_allclose(ref.outputs(g, x.numpy())[0], model(x).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


class _SharedConvOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class _BnFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(self.bn(x))


@pytest.mark.parametrize("model_cls", [_SharedConvOutput, _BnFirst])
def test_batchnorm_without_foldable_producer_stays(model_cls):
    torch.manual_seed(3)
    model = _randomize_bn(model_cls(), seed=3)
    x = torch.randn(2, 3, 5, 5)
    g = graph_from_torch(model, x)
    assert OpType.BATCHNORM in {n.op for n in g}
    np.testing.assert_allclose(ref.outputs(g, x.numpy())[0], model(x).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_conv_output_that_is_a_graph_output_is_not_folded():
    class TwoOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(x)
            return y, self.bn(y)

    model = _randomize_bn(TwoOutputs())
    g = graph_from_torch(model, torch.randn(1, 3, 4, 4))
    assert _ops(g) == ["conv2d", "batchnorm"]
    assert g.outputs == ("conv", "bn")
