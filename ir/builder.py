"""`GraphBuilder`: the one way the frontends and passes create nodes, so every new value is typed.

It keeps names unique, runs each op's type inference as nodes are added, and hands
back a verified `Graph` at the end.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from . import dtypes
from .graph import Graph, Node, Value
from .infer import infer_node_types
from .types import TensorType, ValueType


class NameScope:
    """Hands out unique value/node names, keeping a requested name when it is free.

    Names a frontend must keep (a model's own value names) are `reserve`d up front:
    generated names avoid them, and only a `claim` takes them.
    """

    def __init__(self, taken: Iterable[str] = ()):
        self.taken = set(taken)
        self.reserved: set[str] = set()
        self._counters: dict[str, int] = {}

    def reserve(self, names: Iterable[str]) -> None:
        self.reserved.update(n for n in names if n)

    def unique(self, hint: str, claim: bool = False) -> str:
        hint = hint or "v"
        if hint not in self.taken and (claim or hint not in self.reserved):
            self.taken.add(hint)
            return hint
        i = self._counters.get(hint, 1)
        while f"{hint}_{i}" in self.taken or f"{hint}_{i}" in self.reserved:
            i += 1
        self._counters[hint] = i + 1
        name = f"{hint}_{i}"
        self.taken.add(name)
        return name


class GraphBuilder:
    def __init__(self, name: str = "main", names: NameScope | None = None):
        self.name = name
        self.names = names or NameScope()  # value names
        self.node_names = NameScope()
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.constants: list[Value] = []
        self.nodes: list[Node] = []

    def input(self, name: str, type: ValueType) -> Value:
        v = Value(self.names.unique(name, claim=True), type)
        self.inputs.append(v)
        return v

    def const(self, array, name: str = "const") -> Value:
        array = np.asarray(array)
        v = Value(self.names.unique(name, claim=name != "const"), TensorType(array.shape, dtypes.from_numpy(array.dtype)), array)
        self.constants.append(v)
        return v

    def node(self, op: str, inputs: list[Value | None], attrs: dict[str, Any] | None = None, *,
             name: str = "", num_outputs: int | None = None,
             output_names: list[str] | None = None) -> list[Value]:
        """Add a node; returns its output values (typed by the op's inference)."""
        attrs = dict(attrs or {})
        node_name = self.node_names.unique(name or op.lower())
        types = infer_node_types(op, list(inputs), attrs, num_outputs, node_name)
        hints = output_names or [node_name if len(types) == 1 else f"{node_name}_{i}" for i in range(len(types))]
        outs = [Value(self.names.unique(h, claim=output_names is not None), t) for h, t in zip(hints, types)]
        self.nodes.append(Node(op, list(inputs), outs, attrs, node_name))
        return outs

    def op(self, op: str, *inputs: Value | None, name: str = "", **attrs) -> Value:
        """Shorthand for single-output nodes: `b.op("Add", x, y)`."""
        return self.node(op, list(inputs), attrs, name=name)[0]

    def output(self, *values: Value) -> None:
        self.outputs.extend(values)

    def build(self, verify: bool = True) -> Graph:
        g = Graph(list(self.inputs), list(self.outputs), list(self.nodes), list(self.constants), self.name)
        if verify:
            from .verify import verify_graph

            verify_graph(g)
        return g
