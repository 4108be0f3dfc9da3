"""Named spaces of op configurations to build tables for.

- ``proxyless``: every block-level key a ProxylessNAS mobile network at 224 can contain, in the
  published format (stem ``Conv``, the first block with kernel 3/5/7, all k{3,5,7} x e{3,6}
  blocks of every stage with and without the identity skip, ``Conv_1``, ``Logits``): 72 keys.
- ``proxyless-kernels``: the kernel keys of those blocks under the backend's fusion rules and
  without fusion (for the naive sum), from the blocks' ONNX graphs.
- ``common-cnn``: conv (1x1 all channel pairs, also with the residual add fused; 3x3
  same/double width, stems), depthwise
  3/5/7 stride 1/2, with no / relu / relu6 activation, pools, global pooling, linear heads and
  elementwise ops (relu, relu6, hswish, sigmoid, add, add+relu) over the feature-map sizes
  and channel counts of the usual 32x32 and 224x224 CNNs. About 2,100 keys.
- ``model``: the kernel keys of a given model file (``model_space``).
"""

from __future__ import annotations

from collections.abc import Iterable

from hwsim.errors import LatencyError
from hwsim.graph import load_model
from hwsim.graph.ir import Graph
from hwsim.latency.fusion import FusionRules, kernel_keys
from hwsim.latency.mbnet import PROXYLESS_STAGES
from hwsim.latency.onnx_builder import op_model
from hwsim.latency.op_key import OpKey

SPACES = ("proxyless", "proxyless-kernels", "common-cnn")

# Feature-map size -> channel counts seen there in ResNet/MobileNet/ProxylessNAS-style networks.
_CHANNELS = {
    112: (16, 32, 64),
    56: (16, 24, 32, 64, 96, 144),
    28: (32, 40, 64, 128, 144, 192, 240),
    14: (64, 80, 96, 128, 256, 384, 576),
    7: (160, 192, 320, 512, 960, 1280),
    32: (16, 32, 64),
    16: (32, 64, 128),
    8: (64, 128, 256),
}
_ACTS = (None, "relu", "relu6")


def proxyless_block_keys() -> list[OpKey]:
    """The 72 block keys of the ProxylessNAS mobile space at 224x224."""
    keys = [OpKey("Conv", (224, 224, 3), (112, 112, 32))]
    keys += [OpKey("expanded_conv", (112, 112, 32), (112, 112, 16), expand=1, kernel=k,
                   stride=1, idskip=0) for k in (3, 5, 7)]
    hw, cin = 112, 16
    for cout, n, stride in PROXYLESS_STAGES:
        hw_out = (hw - 1) // stride + 1
        for e in (3, 6):
            for k in (3, 5, 7):
                keys.append(OpKey("expanded_conv", (hw, hw, cin), (hw_out, hw_out, cout),
                                  expand=e, kernel=k, stride=stride, idskip=0))
                if n > 1:
                    keys.append(OpKey("expanded_conv", (hw_out, hw_out, cout),
                                      (hw_out, hw_out, cout), expand=e, kernel=k, stride=1,
                                      idskip=1))
        hw, cin = hw_out, cout
    keys.append(OpKey("Conv_1", (7, 7, 320), (7, 7, 1280)))
    keys.append(OpKey("Logits", (7, 7, 1280), (1000,)))
    return keys


def graphs_kernel_keys(graphs: Iterable[Graph], rules: FusionRules) -> list[OpKey]:
    """Kernel keys of ``graphs`` under ``rules`` and without fusion (distinct, in order)."""
    graphs = list(graphs)
    seen = dict.fromkeys(kernel_keys(graphs, rules))
    seen.update(dict.fromkeys(kernel_keys(graphs, FusionRules.none())))
    return list(seen)


def common_cnn_keys() -> list[OpKey]:
    keys: list[OpKey] = []
    for hw, chans in _CHANNELS.items():
        for cin in chans:
            for cout in chans:
                for act in _ACTS:
                    keys.append(OpKey("conv", (hw, hw, cin), (hw, hw, cout), kernel=1, stride=1,
                                      act=act))
                # projection with the residual add fused (inverted-residual blocks)
                keys.append(OpKey("conv", (hw, hw, cin), (hw, hw, cout), kernel=1, stride=1,
                                  idskip=1))
            for act in (None, "relu"):
                keys.append(OpKey("conv", (hw, hw, cin), (hw, hw, cin), kernel=3, stride=1,
                                  act=act))
                keys.append(OpKey("conv", (hw, hw, cin), (hw, hw, cin), kernel=3, stride=1,
                                  idskip=1, act=act))
                if hw >= 8:
                    h2 = (hw - 1) // 2 + 1
                    keys.append(OpKey("conv", (hw, hw, cin), (h2, h2, 2 * cin), kernel=3,
                                      stride=2, act=act))
                    keys.append(OpKey("conv", (hw, hw, cin), (h2, h2, 2 * cin), kernel=1,
                                      stride=2, act=act))
            for k in (3, 5, 7):
                for s in (1, 2):
                    ho = (hw - 1) // s + 1
                    for act in _ACTS:
                        keys.append(OpKey("dwconv", (hw, hw, cin), (ho, ho, cin), kernel=k,
                                          stride=s, act=act))
            shape = (hw, hw, cin)
            for op in ("relu", "relu6", "hswish", "sigmoid", "add"):
                keys.append(OpKey(op, shape, shape))
            keys.append(OpKey("add", shape, shape, act="relu"))
            if hw <= 8 or hw == 7:
                keys.append(OpKey("gap", shape, (1, 1, cin)))
    for hw, c in ((224, 3), (32, 3)):
        for cout in (16, 24, 32, 64):
            s = 2 if hw == 224 else 1
            ho = (hw - 1) // s + 1
            for act in ("relu", "relu6"):
                keys.append(OpKey("conv", (hw, hw, c), (ho, ho, cout), kernel=3, stride=s,
                                  act=act))
    keys.append(OpKey("conv", (224, 224, 3), (112, 112, 64), kernel=7, stride=2, act="relu"))
    keys.append(OpKey("maxpool", (112, 112, 64), (56, 56, 64), kernel=3, stride=2))
    for hw, c in ((32, 16), (16, 32), (8, 64), (56, 64), (28, 128)):
        h2 = hw // 2
        keys.append(OpKey("avgpool", (hw, hw, c), (h2, h2, c), kernel=2, stride=2))
        keys.append(OpKey("maxpool", (hw, hw, c), (h2, h2, c), kernel=2, stride=2))
    for cin in (256, 512, 1024, 1280, 1504, 2048):
        for cout in (10, 100, 1000):
            keys.append(OpKey("linear", (cin,), (cout,)))
    return list(dict.fromkeys(keys))


def space_keys(name: str, rules: FusionRules | None = None) -> list[OpKey]:
    """Keys of the named space; ``proxyless-kernels`` needs the backend's fusion ``rules``."""
    if name == "proxyless":
        return proxyless_block_keys()
    if name == "proxyless-kernels":
        if rules is None:
            raise LatencyError("space 'proxyless-kernels' needs the backend's fusion rules")
        graphs = [load_model(op_model(k)) for k in proxyless_block_keys()]
        return graphs_kernel_keys(graphs, rules)
    if name == "common-cnn":
        return common_cnn_keys()
    raise LatencyError(f"unknown op space {name!r}; allowed: {', '.join(SPACES)} "
                       f"(or --model FILE)")


def model_keys(path: str, rules: FusionRules) -> list[OpKey]:
    """Kernel keys of the model file ``path`` (fused under ``rules`` and unfused)."""
    return graphs_kernel_keys([load_model(path)], rules)
