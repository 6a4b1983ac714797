"""The graph verifier: SSA (one definition per value), topological order, known ops,
arity, and types that agree with what each op's inference says.

Passes run it after every rewrite in tests and debug mode; the builder runs it on
every graph it finishes.
"""
from __future__ import annotations

from .errors import GraphError, ShapeInferenceError
from .graph import Graph, Value
from .infer import infer_node_types
from .ops import REGISTRY
from .types import OptionalType, SequenceType, TensorType


def verify_graph(graph: Graph, check_types: bool = True) -> None:
    """Raise GraphError on the first problem found, naming the node and value."""
    _verify_scope(graph, outer=frozenset(), check_types=check_types)


def _types_agree(declared, inferred) -> bool:
    if isinstance(declared, TensorType) and isinstance(inferred, TensorType):
        if declared.dtype != inferred.dtype:
            return False
        if declared.shape is None or inferred.shape is None:
            return True
        if len(declared.shape) != len(inferred.shape):
            return False
        # Symbols may be renamed between inference runs; only static sizes must agree.
        return all(not (isinstance(a, int) and isinstance(b, int)) or a == b
                   for a, b in zip(declared.shape, inferred.shape))
    if isinstance(declared, (SequenceType, OptionalType)) and type(declared) is type(inferred):
        return _types_agree(declared.elem, inferred.elem)
    return False


def _verify_scope(graph: Graph, outer: frozenset, check_types: bool) -> None:
    defined: set[Value] = set()
    names: dict[str, Value] = {}

    def define(v: Value, what: str) -> None:
        if v in defined:
            raise GraphError(f"graph '{graph.name}': value %{v.name} is defined twice ({what})")
        if v.name in names:
            raise GraphError(f"graph '{graph.name}': two values are named %{v.name}")
        defined.add(v)
        names[v.name] = v

    for v in graph.inputs:
        define(v, "graph input")
    for v in graph.constants:
        if v.const is None:
            raise GraphError(f"graph '{graph.name}': constant %{v.name} holds no data")
        if isinstance(v.type, TensorType) and (tuple(v.const.shape) != tuple(v.type.shape)
                                               or v.const.dtype != v.type.dtype.numpy):
            raise GraphError(f"graph '{graph.name}': constant %{v.name} holds {v.const.dtype}{list(v.const.shape)}, "
                             f"its type says {v.type}")
        define(v, "constant")

    for node in graph.nodes:
        where = node.describe()
        if node.op not in REGISTRY:
            raise GraphError(f"{where}: op {node.op!r} is not registered")
        for i, v in enumerate(node.inputs):
            if v is None:
                continue
            if v not in defined and v not in outer:
                later = any(v in n.outputs for n in graph.nodes)
                why = "is produced later in the node list (a cycle, or nodes out of order)" if later else "is never defined"
                raise GraphError(f"{where}: input {i} %{v.name} {why}")
        for sub in node.subgraphs():
            _verify_scope(sub, outer=frozenset(outer | defined), check_types=check_types)
        if check_types:
            try:
                inferred = infer_node_types(node.op, node.inputs, node.attrs, len(node.outputs), node.name)
            except ShapeInferenceError as e:
                raise GraphError(str(e)) from e
            for v, t in zip(node.outputs, inferred):
                if not _types_agree(v.type, t):
                    raise GraphError(f"{where}: output %{v.name} is declared {v.type} but the op infers {t}")
        for v in node.outputs:
            define(v, f"output of {where}")

    for v in graph.outputs:
        if v not in defined and v not in outer:
            raise GraphError(f"graph '{graph.name}': output %{v.name} is never defined")
