"""The Python API: `compile(model, target=...)` and `load(path)`."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

from .model import CompiledModel, load
from .targets import parse_target


def import_model(model, input_shapes: Mapping[str, Sequence] | None = None):
    """Any supported model form -> IR Graph (ONNX path/bytes/ModelProto for now)."""
    from .frontend.onnx_import import import_onnx

    return import_onnx(model, input_shapes=input_shapes)


def compile(model, target: str = "reference", *, input_shapes: Mapping[str, Sequence] | None = None) -> CompiledModel:
    """Compile an ONNX model (path, bytes or onnx.ModelProto) for `target`.

    `input_shapes` overrides declared input shapes: {"x": [1, 3, 224, 224]}.
    """
    tgt = parse_target(target)
    graph = import_model(model, input_shapes)
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    return CompiledModel(graph, str(tgt), source)


__all__ = ["compile", "load", "CompiledModel"]
