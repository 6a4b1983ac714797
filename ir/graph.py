"""The graph IR: typed SSA values, nodes in topological order, and the graph that holds them.

Values are compared by identity: a name is for printing and lookup, the object is
the value. A constant is a `Value` whose `const` holds its numpy array; the graph
lists its constants so they print (and serialize) in a stable order.
A node's missing optional input is `None` in its `inputs` list.
Subgraphs (the bodies of If/Loop/Scan) are `Graph` objects stored in node attributes;
their nodes may read values of the enclosing graph directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .types import ValueType


class Value:
    """One SSA value: produced once (by a node, or as graph input or constant), read many times.

    `shape_value` is what a small integer tensor is known to hold when it carries sizes
    (the output of Shape, Gather on it, Concat of those...): a tuple of dims, ints or
    symbols, so `Reshape(x, Concat(Shape(x)[0], 12, 64))` keeps the symbol `batch`.
    """

    __slots__ = ("name", "type", "const", "shape_value")

    def __init__(self, name: str, type: ValueType, const: np.ndarray | None = None,
                 shape_value: tuple | None = None):
        self.name = name
        self.type = type
        self.const = const
        self.shape_value = shape_value

    @property
    def is_const(self) -> bool:
        return self.const is not None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


@dataclass(eq=False)
class Node:
    op: str
    inputs: list[Value | None]
    outputs: list[Value]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def describe(self) -> str:
        """How errors name a node: `node 'conv1' (Conv)`."""
        return f"node '{self.name}' ({self.op})" if self.name else f"node ({self.op})"

    def subgraphs(self) -> list["Graph"]:
        found = []
        for v in self.attrs.values():
            if isinstance(v, Graph):
                found.append(v)
            elif isinstance(v, (list, tuple)):
                found.extend(x for x in v if isinstance(x, Graph))
        return found

    def __repr__(self) -> str:
        outs = ", ".join(f"%{v.name}" for v in self.outputs)
        ins = ", ".join("_" if v is None else f"%{v.name}" for v in self.inputs)
        return f"{outs} = {self.op}({ins})"


@dataclass(eq=False)
class Graph:
    inputs: list[Value]
    outputs: list[Value]
    nodes: list[Node]
    constants: list[Value] = field(default_factory=list)
    name: str = "main"
    # The names callers see for the outputs, where one differs from its value's: a model
    # output that is one of its inputs passed through (ONNX lets both share a name; IR
    # values have one name each). None: every output is named by its value.
    output_names: list[str] | None = None

    def output_name_list(self) -> list[str]:
        """The outputs' names as `run()` returns them."""
        return list(self.output_names) if self.output_names else [v.name for v in self.outputs]

    # ---- queries -------------------------------------------------------------------
    def producers(self) -> dict[Value, Node]:
        return {v: n for n in self.nodes for v in n.outputs}

    def users(self) -> dict[Value, list[Node]]:
        """Every node reading each value, including reads from inside subgraphs."""
        uses: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in _reads_of(n):
                uses.setdefault(v, []).append(n)
        return uses

    def values(self) -> Iterator[Value]:
        yield from self.inputs
        yield from self.constants
        for n in self.nodes:
            yield from n.outputs

    def value_by_name(self, name: str) -> Value:
        for v in self.values():
            if v.name == name:
                return v
        raise KeyError(name)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    def __str__(self) -> str:
        from .printer import print_graph

        return print_graph(self)


def _reads_of(node: Node) -> list[Value]:
    """Values a node reads: its inputs, plus outer values its subgraphs capture."""
    reads = [v for v in node.inputs if v is not None]
    for g in node.subgraphs():
        reads.extend(captured_values(g))
    return reads


def captured_values(graph: Graph) -> list[Value]:
    """Values a (sub)graph reads that it does not define itself, in first-use order."""
    defined = set(graph.inputs) | set(graph.constants)
    seen: set[Value] = set()
    captured: list[Value] = []
    for n in graph.nodes:
        for v in _reads_of(n):
            if v not in defined and v not in seen:
                seen.add(v)
                captured.append(v)
        defined.update(n.outputs)
    for v in graph.outputs:
        if v not in defined and v not in seen:
            seen.add(v)
            captured.append(v)
    return captured
