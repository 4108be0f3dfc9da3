"""Load a model into the graph IR: an ``.onnx`` file or a ``torch.nn.Module``."""

from __future__ import annotations

import os
from typing import Any

from hwsim.errors import GraphError
from hwsim.graph.ir import Graph


def load_model(path_or_module: Any, example_input: Any = None, *,
               fold_bn: bool = True) -> Graph:
    """Import a model as a :class:`Graph`.

    ``path_or_module``: a path to an ``.onnx`` file, an ``onnx.ModelProto``, or a
    ``torch.nn.Module`` (then ``example_input``, a tensor of the model's input shape, is
    required). BatchNorm is folded unless ``fold_bn`` is False.
    """
    if isinstance(path_or_module, (str, os.PathLike)):
        path = os.fspath(path_or_module)
        if not path.lower().endswith(".onnx"):
            raise GraphError(f"cannot load model {path!r}: only .onnx files are supported "
                             "(torch models are passed as an nn.Module with example_input)")
        from hwsim.graph.from_onnx import graph_from_onnx

        return graph_from_onnx(path, fold_bn=fold_bn)
    import onnx

    if isinstance(path_or_module, onnx.ModelProto):
        from hwsim.graph.from_onnx import graph_from_onnx

        return graph_from_onnx(path_or_module, fold_bn=fold_bn)
    import torch

    if isinstance(path_or_module, torch.nn.Module):
        if example_input is None:
            raise GraphError("a torch model needs example_input (a tensor of its input shape)")
        from hwsim.graph.from_torch import graph_from_torch

        return graph_from_torch(path_or_module, example_input, fold_bn=fold_bn)
    raise GraphError(f"cannot load a model from {type(path_or_module).__name__}: expected a "
                     ".onnx path, an onnx.ModelProto or a torch.nn.Module")
