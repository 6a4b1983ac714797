"""`GraphBuilder`: the one way the frontends and passes create nodes, so every new value is typed.

It keeps names unique, runs each op's type inference as nodes are added, and hands
back a verified `Graph` at the end.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from . import dtypes
from .graph import Graph, Node, Value
from .infer import infer_node
from .types import TensorType, ValueType


def _holds_sizes(t) -> bool:
    """Small integer tensors (0-D or 1-D) carry shapes around; bool ones the tests on them."""
    return isinstance(t, TensorType) and t.dtype.kind in ("int", "uint", "bool") and t.rank is not None and t.rank <= 1


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


# Nodes whose inputs are all constants are evaluated while the graph is built when their
# outputs are at most this many elements: shape arithmetic folds away so inference sees
# exact shapes. Bigger folds (weights) are the constant-folding pass's business.
FOLD_LIMIT = 4096


class GraphBuilder:
    def __init__(self, name: str = "main", names: NameScope | None = None, fold_constants: bool = True):
        self.name = name
        self.fold_constants = fold_constants
        self.names = names or NameScope()  # value names
        self.node_names = NameScope()
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.output_names: list[str] | None = None  # see `output`
        self.constants: list[Value] = []
        self.nodes: list[Node] = []

    def input(self, name: str, type: ValueType) -> Value:
        v = Value(self.names.unique(name, claim=True), type)
        self.inputs.append(v)
        return v

    def rename_const(self, v: Value, hint: str) -> None:
        """Give constant `v` a fresh name from `hint`, freeing its old one (so a graph output
        may take the name an initializer or folded value had)."""
        old = v.name
        v.name = self.names.unique(hint)
        self.names.taken.discard(old)

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
        types, shape_values = infer_node(op, list(inputs), attrs, num_outputs, node_name)
        hints = output_names or [node_name if len(types) == 1 else f"{node_name}_{i}" for i in range(len(types))]
        claim = output_names is not None
        folded = self._try_fold(op, list(inputs), attrs, types, shape_values, node_name)
        if folded is not None:
            return [self.const(arr, h) if claim else self.const(arr, f"{h}_folded") for h, arr in zip(hints, folded)]
        outs = [Value(self.names.unique(h, claim=claim), t, None, sv if _holds_sizes(t) else None)
                for h, t, sv in zip(hints, types, shape_values)]
        self.nodes.append(Node(op, list(inputs), outs, attrs, node_name))
        return outs

    def _try_fold(self, op, inputs, attrs, types, shape_values, node_name) -> list[np.ndarray] | None:
        """Outputs as arrays when the node can be evaluated now, else None."""
        if not self.fold_constants:
            return None
        if all(isinstance(t, TensorType) and t.is_static and _holds_sizes(t) for t in types) and \
                all(sv is not None and all(isinstance(d, int) for d in sv) for sv in shape_values):
            # Sizes fully known (Shape of a static tensor...): the values are constants.
            return [np.array(sv if t.rank == 1 else sv[0], dtype=t.dtype.numpy) for t, sv in zip(types, shape_values)]
        from .ops import REGISTRY

        opdef = REGISTRY[op]
        if not opdef.deterministic or any(isinstance(v, Graph) or isinstance(v, list) and v and isinstance(v[0], Graph)
                                          for v in attrs.values()):
            return None
        if not all(v is None or v.const is not None for v in inputs) or not any(v is not None for v in inputs):
            return None
        if not all(isinstance(t, TensorType) and t.is_static and t.numel() <= FOLD_LIMIT for t in types):
            return None
        from .interpreter import Interpreter

        node = Node(op, list(inputs), [Value(f"fold{i}", t) for i, t in enumerate(types)], attrs, node_name)
        try:
            outs = Interpreter(check_types=True).run_node(node, [None if v is None else v.const for v in inputs])
        except Exception:  # noqa: BLE001 - a node that cannot be evaluated now is simply kept
            return None
        return [np.asarray(o) for o in outs]

    def op(self, op: str, *inputs: Value | None, name: str = "", **attrs) -> Value:
        """Shorthand for single-output nodes: `b.op("Add", x, y)`."""
        return self.node(op, list(inputs), attrs, name=name)[0]

    def output(self, *values: Value, names: list[str] | None = None) -> None:
        """Add graph outputs; `names` (one per value) where callers must see other names
        than the values' (`Graph.output_names`)."""
        if self.output_names is None and names is not None and any(n != v.name for n, v in zip(names, values)):
            self.output_names = [v.name for v in self.outputs]
        if self.output_names is not None:
            self.output_names.extend(names if names is not None else [v.name for v in values])
        self.outputs.extend(values)

    def build(self, verify: bool = True) -> Graph:
        g = Graph(list(self.inputs), list(self.outputs), list(self.nodes), list(self.constants), self.name,
                  list(self.output_names) if self.output_names is not None else None)
        # Folding leaves the constants it consumed behind; keep only the ones still read.
        used = set(g.users()) | set(g.outputs)
        g.constants = [c for c in g.constants if c in used]
        if verify:
            from .verify import verify_graph

            verify_graph(g)
        return g
