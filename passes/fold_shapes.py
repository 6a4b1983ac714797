"""Shape-arithmetic folding: `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` chains
become constant shapes when the dims they carry are static.

Inference already propagates what small integer tensors hold (`Value.shape_value`); any
value whose contents are fully known is a constant. A symbolic size (the batch) read from
an intermediate's shape is read from the graph input declaring the symbol instead, so
the per-reshape Shape -> Gather chains of an exported transformer collapse into one. What is left (Gather of a constant,
Concat of constants) is constant folding's job, run alongside in the simplify pipeline.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ir.types import TensorType
from .core import PassContext, graph_pass
from .rewriter import Rewriter, Rule, apply_rules, rule_table


def _static_type(v) -> bool:
    return isinstance(v.type, TensorType) and v.type.is_static


def shape_of_static(node: Node, rw: Rewriter):
    x = node.inputs[0]
    if x.type.shape is None or not all(isinstance(d, int) for d in x.type.shape):
        return None
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    dims = x.type.shape[start:end]
    return [rw.constant(np.array(dims, np.int64), f"{node.outputs[0].name}_folded")]


def size_of_static(node: Node, rw: Rewriter):
    x = node.inputs[0]
    if not _static_type(x):
        return None
    return [rw.constant(np.array(x.type.numel(), np.int64), f"{node.outputs[0].name}_folded")]


def known_sizes(node: Node, rw: Rewriter):
    values = []
    for v in node.outputs:
        sv = v.shape_value
        if sv is None or not _static_type(v) or v.type.rank > 1 or not all(isinstance(d, int) for d in sv):
            return None
        values.append(np.array(sv if v.type.rank == 1 else sv[0], v.type.dtype.numpy))
    return [rw.constant(a, f"{v.name}_folded") for v, a in zip(node.outputs, values)]


def _input_symbols(rw: Rewriter) -> dict[str, tuple]:
    """symbol -> (graph input, axis) for the first graph input declaring each named dim."""
    found: dict[str, tuple] = {}
    for v in rw.graph.inputs:
        if isinstance(v.type, TensorType) and v.type.shape is not None:
            for axis, d in enumerate(v.type.shape):
                if isinstance(d, str):
                    found.setdefault(d, (v, axis))
    return found


def symbolic_dim_from_input(node: Node, rw: Rewriter):
    shape = rw.producer_op(node.inputs[0], "Shape")
    index = node.inputs[1].const
    if shape is None or index is None or index.size != 1 or node.attrs.get("axis", 0) != 0:
        return None
    x = shape.inputs[0]
    if x in rw.graph.inputs or x.type.shape is None:
        return None
    dims = x.type.shape[shape.attrs.get("start", 0):shape.attrs.get("end")]
    i = int(index.reshape(-1)[0])
    if not -len(dims) <= i < len(dims) or not isinstance(dims[i], str):
        return None
    source = _input_symbols(rw).get(dims[i])
    if source is None:
        return None
    inp, axis = source
    new_index = rw.constant(np.full(index.shape, axis, index.dtype), f"{node.outputs[0].name}_axis")
    return [rw.op("Gather", rw.op("Shape", inp, name=f"{inp.name}_shape"), new_index, name=node.name)]


RULES = rule_table([
    Rule("Shape", shape_of_static, "a tensor with static dims has a constant shape"),
    Rule("Size", size_of_static, "a tensor with static dims has a constant element count"),
    Rule("*", known_sizes, "sizes inference propagated from Shape (Gather/Concat/Unsqueeze of them) are constants"),
    Rule("Gather", symbolic_dim_from_input, "a symbolic size is the size the graph input declaring that symbol has; "
         "reading it there lets CSE share one Shape -> Gather for all reshapes"),
])


@graph_pass
def fold_shapes(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "fold_shapes")
