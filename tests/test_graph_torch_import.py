"""torch.fx importer: imported graphs reproduce torch outputs; unsupported input is named."""

from __future__ import annotations

import graph_eval_reference as ref
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import GraphError, UnsupportedOpError
from hwsim.graph import load_model
from hwsim.graph.from_torch import graph_from_torch
from hwsim.graph.ir import OpType


class MixedOps(nn.Module):
    """Conv/BN/depthwise, activations, shuffle pattern, SE mul, pools, concat, linear."""

    def __init__(self, shuffle_module: bool = True) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.se = nn.Conv2d(16, 16, 1)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.ap = nn.AvgPool2d(2, padding=1, ceil_mode=True, count_include_pad=False)
        # torch's ONNX exporter has no aten::channel_shuffle: exported variants go without it
        self.shuffle = nn.ChannelShuffle(2) if shuffle_module else nn.Identity()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        y = F.relu6(self.bn(self.c1(x)))
        z = self.pw(F.hardswish(self.dw(y)))
        b, c, h, w = z.size()
        z2 = z.view(b, 4, c // 4, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)
        s = torch.sigmoid(self.se(F.adaptive_avg_pool2d(z2, 1)))
        z = z + z2 * s
        z = self.ap(self.pool(self.shuffle(z)))
        z = torch.cat([z, F.hardsigmoid(z)], 1)
        return self.fc(self.drop(z.mean([2, 3])))


class MoreOps(nn.Module):
    """Dilation, 'same' padding, hardtanh/clamp, avg pool counting padding, adaptive 2x2."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(4, 6, 3, padding="same", dilation=2)
        self.g = nn.Conv2d(6, 6, (3, 1), stride=(1, 2), padding=(1, 0), groups=3)
        self.act = nn.Hardtanh(-0.5, 0.75)
        self.ap = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True)
        self.ad = nn.AdaptiveAvgPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(24, 3)
        self.id = nn.Identity()

    def forward(self, x):
        y = self.act(self.g(self.c(x)))
        y = torch.clamp(y, min=-0.25)
        y = F.max_pool2d(y, 2, 1, dilation=2)
        y = self.ad(self.ap(y))
        return torch.relu(self.fc(self.id(self.flat(y))))


class TokenLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x.reshape(x.size(0), 4, 8)).flatten(1)


CASES = [(MixedOps, (3, 3, 17, 15)), (MoreOps, (2, 4, 14, 25)), (TokenLinear, (3, 2, 4, 4))]


def _randomize_bn(model):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.running_mean.uniform_(-1, 1, generator=g)
                m.running_var.uniform_(0.5, 2, generator=g)
    return model.eval()


@pytest.mark.parametrize("model_cls, shape", CASES)
def test_imported_graph_reproduces_torch(model_cls, shape):
    torch.manual_seed(0)
    model = _randomize_bn(model_cls())
    x = torch.randn(*shape)
    graph = graph_from_torch(model, x)
    got = ref.outputs(graph, x.numpy())[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_mixed_model_ops_and_shapes_recorded():
    torch.manual_seed(0)
    model = _randomize_bn(MixedOps())
    graph = graph_from_torch(model, torch.randn(3, 3, 17, 15))
    ops = [n.op for n in graph]
    assert OpType.BATCHNORM not in ops  # folded
    assert ops.count(OpType.CHANNEL_SHUFFLE) == 2  # module and view/transpose/view pattern
    assert graph.inputs == {"x": (1, 3, 17, 15)}
    dw = graph.node("dw")
    assert dw.attrs.is_depthwise and dw.attrs.stride == (2, 2)
    assert dw.input_shapes == ((1, 8, 17, 15),) and dw.output_shape == (1, 8, 9, 8)
    pattern = next(n for n in graph if n.op is OpType.CHANNEL_SHUFFLE and n.name != "shuffle")
    assert pattern.attrs.groups == 4
    assert graph.node("pool").attrs.ceil_mode
    assert graph.node("ap").attrs.count_include_pad is False
    assert graph.node("fc").output_shape == (1, 5)
    assert graph.node("relu6").attrs.is_relu6
    mul = graph.node("mul")
    assert mul.input_shapes == ((1, 16, 9, 8), (1, 16, 1, 1))
    assert "drop" not in [n.name for n in graph]


def test_load_model_dispatches_torch_module():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    graph = load_model(model, torch.randn(1, 1, 5, 5))
    assert [n.op for n in graph] == [OpType.CONV2D, OpType.RELU]
    with pytest.raises(GraphError, match="example_input"):
        load_model(model)


class _Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.conv(x))


class _AddConstant(nn.Module):
    def forward(self, x):
        return x + 1.0


class _CatBatch(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], 0)


class _MergeBatch(nn.Module):
    def forward(self, x):
        return x.view(-1)


class _Softmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x, 1)


@pytest.mark.parametrize("model, match", [
    (_Gelu(), r"node 'act' \(call_module GELU 'act'\) is not supported.*Supported modules"),
    (_AddConstant(), r"node 'add'.*constant 1.0"),
    (_CatBatch(), r"node 'cat'.*batch axis"),
    (_MergeBatch(), r"node 'view'.*batch axis"),
    (_Softmax(), r"node 'softmax' \(call_function .*softmax\) is not supported"),
])
def test_unsupported_ops_name_node_and_op(model, match):
    with pytest.raises(UnsupportedOpError, match=match):
        graph_from_torch(model.eval(), torch.randn(2, 1, 4, 4))


def test_training_mode_batchnorm_is_rejected():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with pytest.raises(GraphError, match=r"training mode; call model.eval\(\)"):
        graph_from_torch(model, torch.randn(2, 1, 4, 4))


def test_float64_model_is_rejected():
    model = nn.Sequential(nn.Conv2d(1, 2, 1)).double().eval()
    with pytest.raises(GraphError, match="float64"):
        graph_from_torch(model, torch.randn(2, 1, 4, 4, dtype=torch.float64))


def test_untraceable_model_is_a_graph_error():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(GraphError, match="torch.fx cannot trace DataDependent"):
        graph_from_torch(DataDependent(), torch.randn(1, 1, 2, 2))
