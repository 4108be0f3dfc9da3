"""hwsim.graph: model IR (ops with shapes and weights), importers from torch.fx / ONNX, BN folding.

The layout of the IR is documented in :mod:`hwsim.graph.ir`. Importers live in
``hwsim.graph.from_torch`` and ``hwsim.graph.from_onnx``; :func:`load_model` dispatches.
"""

from hwsim.graph.bn_fold import fold_batchnorm
from hwsim.graph.ir import (
    AvgPoolAttrs,
    BatchNormAttrs,
    ChannelShuffleAttrs,
    ClipAttrs,
    ConcatAttrs,
    Conv2dAttrs,
    GlobalAvgPoolAttrs,
    Graph,
    HardSigmoidAttrs,
    LinearAttrs,
    MaxPoolAttrs,
    NoAttrs,
    Node,
    OpType,
    ReshapeAttrs,
)
from hwsim.graph.load import load_model

__all__ = [
    "AvgPoolAttrs", "BatchNormAttrs", "ChannelShuffleAttrs", "ClipAttrs", "ConcatAttrs",
    "Conv2dAttrs", "GlobalAvgPoolAttrs", "Graph", "HardSigmoidAttrs", "LinearAttrs",
    "MaxPoolAttrs", "NoAttrs", "Node", "OpType", "ReshapeAttrs", "fold_batchnorm", "load_model",
]
