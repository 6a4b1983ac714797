"""Dead-code elimination: nodes none of whose outputs reach a graph output, and constants
nothing reads, are removed.

Every op in the IR is free of side effects (random ops included: an unread random draw
changes nothing), so liveness is the only criterion.
"""
from __future__ import annotations

from ..ir.graph import Graph, _reads_of
from .core import PassContext, graph_pass


def remove_dead_nodes(graph: Graph) -> Graph:
    """`graph` without dead nodes and unread constants (the same object when there are none)."""
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            kept.append(node)
            live.update(_reads_of(node))
    constants = [c for c in graph.constants if c in live]
    if len(kept) == len(graph.nodes) and len(constants) == len(graph.constants):
        return graph
    kept.reverse()
    return Graph(list(graph.inputs), list(graph.outputs), kept, constants, graph.name, graph.output_names)


@graph_pass
def eliminate_dead_code(graph: Graph, ctx: PassContext) -> Graph:
    return remove_dead_nodes(graph)
