"""Constant folding: a node whose inputs are all constants is evaluated at compile time by
the reference interpreter (the definition of semantics), and its outputs become constants.

Results bigger than `ctx.fold_limit_bytes` are left to run time: folding a Cast or a
Transpose of a 400 MB weight would hold the weight twice in memory for little gain.
"""
from __future__ import annotations

import numpy as np

from ..ir.errors import CompilerError
from ..ir.graph import Graph, Node
from ..ir.interpreter import Interpreter
from ..ir.types import TensorType
from .core import PassContext, graph_pass
from .match import deterministic
from .rewriter import Rewriter


def _foldable(node: Node, limit: int) -> bool:
    if not deterministic(node) or node.subgraphs():
        return False
    present = [v for v in node.inputs if v is not None]
    if not present or any(v.const is None for v in present):
        return False
    if not all(isinstance(v.type, TensorType) for v in node.outputs):
        return False
    sizes = [v.type.nbytes() for v in node.outputs]
    return all(s is not None for s in sizes) and sum(sizes) <= limit


def evaluate(node: Node) -> list[np.ndarray] | None:
    """The node's outputs computed now, or None when its reference refuses these inputs."""
    try:
        outs = Interpreter(check_types=True).run_node(node, [None if v is None else v.const for v in node.inputs])
    except CompilerError:
        return None  # e.g. a Div by a zero integer: keep the node, the error belongs to run time
    return [np.asarray(o) for o in outs]


@graph_pass
def fold_constants(graph: Graph, ctx: PassContext) -> Graph:
    rw = Rewriter(graph, ctx)
    for node in graph.nodes:
        node = rw.rebind(node)
        outs = evaluate(node) if _foldable(node, ctx.fold_limit_bytes) else None
        if outs is None:
            rw.keep(node)
            continue
        for v, arr in zip(node.outputs, outs):
            rw.replace(v, rw.constant(arr, f"{v.name}_folded"))
        rw.drop(node)
    return rw.finish()
