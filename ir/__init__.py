"""The graph IR: element types, tensor types, values/nodes/graphs, the op registry,
the text form, the verifier and the reference interpreter."""
from __future__ import annotations

from . import dtypes
from .builder import GraphBuilder, NameScope
from .dtypes import DType
from .errors import (ArtifactError, CompilerError, GraphError, InputError, ModelLoadError,
                     ShapeInferenceError, TargetError, UnsupportedOpsError)
from .graph import Graph, Node, Value
from .interpreter import Interpreter, run_graph
from .ops import REGISTRY, get_op
from .parser import parse_graph
from .printer import print_graph
from .registry import Attr, Category, OpDef, Precision
from .types import OptionalType, SequenceType, TensorType, tensor
from .verify import verify_graph

__all__ = [
    "dtypes", "DType", "TensorType", "SequenceType", "OptionalType", "tensor",
    "Value", "Node", "Graph", "GraphBuilder", "NameScope",
    "REGISTRY", "get_op", "OpDef", "Attr", "Category", "Precision",
    "print_graph", "parse_graph", "verify_graph", "run_graph", "Interpreter",
    "CompilerError", "ModelLoadError", "UnsupportedOpsError", "GraphError", "ShapeInferenceError",
    "InputError", "ArtifactError", "TargetError",
]
