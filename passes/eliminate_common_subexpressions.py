"""Common-subexpression elimination: two nodes with the same op, the same inputs and the
same attributes compute the same values, so readers of the second read the first.
Equal small constants are merged first, which lets nodes reading copies of one
constant (exporters repeat scalars such as 1.0 or 0.5) merge too.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..ir.graph import Graph, Node, Value
from .core import PassContext, graph_pass
from .match import deterministic
from .rewriter import Rewriter

# Constants larger than this are not hashed: two equal multi-megabyte weights are rare, and
# hashing every weight of VGG-19 on each round would cost more than it saves.
CONST_MERGE_LIMIT = 1 << 16


def _freeze(a):
    """A hashable stand-in for an attribute value."""
    if isinstance(a, np.ndarray):
        return ("array", a.dtype.str, a.shape, hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest())
    if isinstance(a, (list, tuple)):
        return tuple(_freeze(x) for x in a)
    if isinstance(a, float) and a != a:
        return ("nan",)
    try:
        hash(a)
    except TypeError:
        return ("id", id(a))
    return (type(a).__name__, a)


def _const_key(c: Value):
    if c.const.nbytes > CONST_MERGE_LIMIT or c.const.dtype == object:
        return None
    return (c.const.dtype.str, c.const.shape, np.ascontiguousarray(c.const).tobytes())


def _node_key(node: Node):
    if not deterministic(node) or node.subgraphs():
        return None
    attrs = tuple(sorted((k, _freeze(v)) for k, v in node.attrs.items()))
    return (node.op, tuple(id(v) for v in node.inputs), attrs, len(node.outputs))


@graph_pass
def eliminate_common_subexpressions(graph: Graph, ctx: PassContext) -> Graph:
    rw = Rewriter(graph, ctx)
    first_const: dict = {}
    for c in graph.constants:
        key = _const_key(c)
        if key is None or c in rw.outputs:
            continue
        if key in first_const:
            rw.replace(c, first_const[key])
        else:
            first_const[key] = c
    seen: dict = {}
    for node in graph.nodes:
        node = rw.rebind(node)
        key = _node_key(node)
        twin = seen.get(key) if key is not None else None
        if twin is None:
            if key is not None:
                seen[key] = node
            rw.keep(node)
            continue
        for old, new in zip(node.outputs, twin.outputs):
            rw.replace(old, new)
        rw.drop(node)
    return rw.finish()
