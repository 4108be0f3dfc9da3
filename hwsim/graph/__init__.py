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
    infer_output_shape,
    pool_output_size,
)
from hwsim.graph.load import load_model

__all__ = [
    "AvgPoolAttrs", "BatchNormAttrs", "ChannelShuffleAttrs", "ClipAttrs", "ConcatAttrs",
    "Conv2dAttrs", "GlobalAvgPoolAttrs", "Graph", "HardSigmoidAttrs", "LinearAttrs",
    "MaxPoolAttrs", "NoAttrs", "Node", "OpType", "ReshapeAttrs", "fold_batchnorm",
    "infer_output_shape", "load_model", "pool_output_size",
]
