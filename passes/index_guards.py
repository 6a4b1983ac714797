"""Which graph inputs are indices, and into what: the run-time side of "indices out of range
are errors, not reads past a buffer".

An index operand of Gather, GatherElements, GatherND, ScatterElements or ScatterND (or the
position_ids of RotaryEmbedding, rows of its cos/sin caches) that is a graph input
(directly, or through ops that keep integer values as they are: Identity, Reshape,
Flatten, Squeeze, Unsqueeze, an integer Cast that widens) is recorded with the dims it
indexes. The runtime (`runtime.signature.check_index_guards`) checks such inputs
before anything runs, so a token id past the vocabulary is refused naming the input, the
node and the bad index, and nothing is computed. Constant indices were checked at compile
time (`ir/ops/tensor.py`); indices computed inside the graph are clamped into range by the
kernels (`codegen/lowering/injective.py`), so native code never reads out of bounds.
"""
from __future__ import annotations

from ..ir.graph import Graph, Node, Value

_PASSES_VALUES = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


# op -> (the input indexed, the index input)
_INDEXING = {"Gather": (0, 1), "GatherElements": (0, 1), "GatherND": (0, 1), "ScatterElements": (0, 1),
             "ScatterND": (0, 1), "RotaryEmbedding": (1, 3)}


def _index_input(node: Node) -> Value | None:
    at = _INDEXING.get(node.op)
    return node.inputs[at[1]] if at is not None and len(node.inputs) > at[1] else None


def _axis_sizes(node: Node) -> tuple[list, bool] | None:
    """(the sizes the index operand indexes, per component along its last axis?) of an
    indexing node, None for other nodes or unknown shapes."""
    data, idx = node.inputs[_INDEXING[node.op][0]], _index_input(node)
    shape = getattr(data.type, "shape", None)
    if shape is None or getattr(idx.type, "shape", None) is None:
        return None
    if node.op == "RotaryEmbedding":
        return [shape[0]], False
    if node.op in ("Gather", "GatherElements", "ScatterElements"):
        axis = node.attrs.get("axis", 0) % len(shape)
        return [shape[axis]], False
    last = idx.type.shape[-1] if idx.type.shape else None
    if node.op in ("GatherND", "ScatterND") and isinstance(last, int):
        b = node.attrs.get("batch_dims", 0) if node.op == "GatherND" else 0
        return list(shape[b:b + last]), True
    return None


def _source_input(v: Value, producer: dict, inputs: set) -> Value | None:
    """The graph input whose values `v` carries unchanged, or None."""
    while v not in inputs:
        node = producer.get(v)
        if node is None:
            return None
        widening_cast = (node.op == "Cast" and node.inputs[0].type.dtype.is_int and v.type.dtype.is_int
                         and v.type.dtype.bits >= node.inputs[0].type.dtype.bits)
        if node.op not in _PASSES_VALUES and not widening_cast:
            return None
        v = node.inputs[0]
    return v


def index_guards(graph: Graph) -> list[dict]:
    """JSON-ready: per graph input used as indices, the node, its op and the sizes."""
    producer = {v: n for n in graph.nodes for v in n.outputs if v is not None}
    inputs = set(graph.inputs)
    guards = []
    for node in graph.nodes:
        index = _index_input(node)
        if index is None:
            continue
        found = _axis_sizes(node)
        source = _source_input(index, producer, inputs)
        if found is not None and found[1] and source is not index:
            continue  # index tuples along the last axis: only an input read as it is
        if found is None or source is None or not all(isinstance(s, int) for s in found[0]):
            continue
        sizes, per_component = found
        guards.append({"input": source.name, "node": node.name, "op": node.op, "sizes": sizes,
                       "per_component": per_component})
    return guards
