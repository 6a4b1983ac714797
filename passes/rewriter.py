"""The one rewrite driver: `Rewriter` rebuilds a graph node by node while rules replace
values, and `apply_rules` runs a table of rules over a graph to a fixed point.

A rule is `Rule(op, fn, why)`: `fn(node, rw)` looks at `node` (an `op` node, inputs
already substituted) and its producers through `rw`, and returns the values replacing
the node's outputs (None for an unused output), or None when it does not apply. It
creates new nodes with `rw.emit` once it knows it applies (the driver rolls back what a rule
that gives up anyway created).

Nodes are never edited in place: a node whose inputs were substituted is copied, so the
graph a pass received stays valid (differential tests run it afterwards).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from ..ir import dtypes
from ..ir.builder import NameScope, _holds_sizes
from ..ir.errors import ShapeInferenceError
from ..ir.graph import Graph, Node, Value
from ..ir.infer import infer_node
from ..ir.types import TensorType
from .core import PassContext, PassError
from .eliminate_dead_code import remove_dead_nodes


def all_names(graph: Graph) -> tuple[set[str], set[str]]:
    """(value names, node names) used anywhere in `graph`, subgraphs included."""
    values, nodes = set(), set()
    stack = [graph]
    while stack:
        g = stack.pop()
        values.update(v.name for v in g.inputs)
        values.update(v.name for v in g.constants)
        for n in g.nodes:
            nodes.add(n.name)
            values.update(v.name for v in n.outputs)
            stack.extend(n.subgraphs())
    return values, nodes


def substitute_in_graph(graph: Graph, resolve: Callable[[Value], Value]) -> Graph:
    """A copy of a subgraph whose reads of outer values go through `resolve` (same object if none change)."""
    changed = False
    nodes = []
    for n in graph.nodes:
        m = substitute_in_node(n, resolve)
        changed |= m is not n
        nodes.append(m)
    outputs = [resolve(v) for v in graph.outputs]
    changed |= any(a is not b for a, b in zip(outputs, graph.outputs))
    if not changed:
        return graph
    return Graph(list(graph.inputs), outputs, nodes, list(graph.constants), graph.name, graph.output_names)


def substitute_in_node(node: Node, resolve: Callable[[Value], Value]) -> Node:
    """`node` reading `resolve(v)` for each input (and captured value); the same object when none change."""
    inputs = [None if v is None else resolve(v) for v in node.inputs]
    attrs = node.attrs
    if node.subgraphs():
        attrs = {k: _substitute_attr(a, resolve) for k, a in node.attrs.items()}
        if all(attrs[k] is node.attrs[k] for k in attrs):
            attrs = node.attrs
    if attrs is node.attrs and all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    return Node(node.op, inputs, list(node.outputs), attrs if attrs is node.attrs else dict(attrs), node.name)


def _substitute_attr(a, resolve):
    if isinstance(a, Graph):
        return substitute_in_graph(a, resolve)
    if isinstance(a, (list, tuple)) and any(isinstance(x, Graph) for x in a):
        new = [_substitute_attr(x, resolve) for x in a]
        return a if all(x is y for x, y in zip(new, a)) else type(a)(new)
    return a


class Rewriter:
    """Builds the next version of a graph: kept nodes, new nodes, value substitutions."""

    def __init__(self, graph: Graph, ctx: PassContext):
        self.graph = graph
        self.ctx = ctx
        values, nodes = all_names(graph)
        self.names = NameScope(values)
        self.node_names = NameScope(nodes)
        self.nodes: list[Node] = []
        self.new_constants: list[Value] = []
        self.subst: dict[Value, Value] = {}
        self._producer: dict[Value, Node] = {}
        self.outputs = set(graph.outputs)
        # Readers of each value. Kept conservative (an over-count, never an under-count) while
        # the graph is rebuilt, so "used only here" checks are always safe.
        self.uses: Counter = Counter()
        for v, readers in graph.users().items():
            self.uses[v] += len(readers)
        for v in graph.outputs:
            self.uses[v] += 1
        self.changed = False

    # ---- queries used by rules --------------------------------------------------------
    def resolve(self, v: Value | None) -> Value | None:
        while v is not None and v in self.subst:
            v = self.subst[v]
        return v

    def producer(self, v: Value | None) -> Node | None:
        """The node computing `v` in the graph rebuilt so far (None for inputs and constants)."""
        return None if v is None else self._producer.get(v)

    def producer_op(self, v: Value | None, op: str) -> Node | None:
        n = self.producer(v)
        return n if n is not None and n.op == op else None

    def single_use(self, v: Value) -> bool:
        """`v` has exactly one reader and is not a graph output: its producer may be absorbed."""
        return self.uses[v] == 1 and v not in self.outputs

    def used(self, v: Value | None) -> bool:
        return v is not None and self.uses[v] > 0

    def is_output(self, v: Value) -> bool:
        return v in self.outputs

    # ---- building ------------------------------------------------------------------
    def constant(self, array, hint: str = "const") -> Value:
        array = np.asarray(array)
        v = Value(self.names.unique(hint), TensorType(array.shape, dtypes.from_numpy(array.dtype)), array)
        self.new_constants.append(v)
        self.changed = True
        return v

    def emit(self, op: str, inputs: Sequence[Value | None], attrs: dict | None = None, *,
             name: str = "", num_outputs: int | None = None) -> list[Value]:
        """Append a new node (typed by the op's inference); returns its outputs."""
        attrs = dict(attrs or {})
        node_name = self.node_names.unique(name or op.lower())
        types, shape_values = infer_node(op, list(inputs), attrs, num_outputs, node_name)
        hints = [node_name if len(types) == 1 else f"{node_name}_{i}" for i in range(len(types))]
        outs = [Value(self.names.unique(h), t, None, sv if _holds_sizes(t) else None)
                for h, t, sv in zip(hints, types, shape_values)]
        node = Node(op, list(inputs), outs, attrs, node_name)
        self._append(node)
        for v in inputs:
            if v is not None:
                self.uses[v] += 1
        self.changed = True
        return outs

    def op(self, op: str, *inputs: Value | None, name: str = "", **attrs) -> Value:
        """Shorthand for a single-output `emit`."""
        return self.emit(op, list(inputs), attrs, name=name)[0]

    def keep(self, node: Node) -> None:
        self._append(node)

    def _append(self, node: Node) -> None:
        self.nodes.append(node)
        for v in node.outputs:
            self._producer[v] = node

    def replace(self, old: Value, new: Value) -> None:
        """Every later reader of `old` reads `new` instead."""
        if old is new:
            return
        if isinstance(old.type, TensorType) and isinstance(new.type, TensorType) and old.type.dtype != new.type.dtype:
            raise PassError(f"rewrite replaced %{old.name} ({old.type}) with %{new.name} ({new.type})")
        self.subst[old] = new
        self.uses[new] += self.uses[old]
        self.uses[old] = 0
        if old in self.outputs:
            self.outputs.add(new)
        self.changed = True

    def checkpoint(self) -> tuple[int, int, bool]:
        return len(self.nodes), len(self.new_constants), self.changed

    def rollback(self, mark: tuple[int, int, bool]) -> None:
        """Forget nodes and constants created since `mark` (a rule that gave up half-way)."""
        n_nodes, n_consts, changed = mark
        for node in self.nodes[n_nodes:]:
            for v in node.outputs:
                self._producer.pop(v, None)
        del self.nodes[n_nodes:]
        del self.new_constants[n_consts:]
        self.changed = changed

    def rebind(self, node: Node) -> Node:
        return substitute_in_node(node, self.resolve)

    def drop(self, node: Node) -> None:
        """`node` (already rebound, not kept) is gone: it no longer reads its inputs."""
        for v in node.inputs:
            if v is not None and self.uses[v] > 0:
                self.uses[v] -= 1
        self.changed = True

    # ---- result ---------------------------------------------------------------------
    def finish(self) -> Graph:
        """The rebuilt graph (the input graph itself when nothing changed)."""
        if not self.changed:
            return self.graph
        constants = list(self.graph.constants) + self.new_constants
        outputs = [self.resolve(v) for v in self.graph.outputs]
        g = Graph(list(self.graph.inputs), outputs, self.nodes, constants, self.graph.name, self.graph.output_names)
        return keep_output_names(g, self.graph.outputs, self.names)


def keep_output_names(g: Graph, original: list[Value], names: NameScope) -> Graph:
    """Graph outputs keep their names (callers look results up by name) after rewrites.

    An output replaced by a node's value takes the old name over (the value is renamed);
    one replaced by an input, a constant or another output gets an Identity (or a renamed
    constant) carrying the old name.
    """
    defined = set(g.inputs) | set(g.constants) | {v for n in g.nodes for v in n.outputs}
    produced = {v for n in g.nodes for v in n.outputs}
    outputs = list(g.outputs)
    rename: dict[Value, Value] = {}
    extra_nodes, extra_consts = [], []
    for i, (old, new) in enumerate(zip(original, outputs)):
        if new is old or new.name == old.name:
            continue
        if old in defined:  # still computed: keep returning it
            outputs[i] = old
        elif new in produced and new not in rename and new not in original and outputs.count(new) == 1:
            rename[new] = Value(old.name, new.type, None, new.shape_value)
            outputs[i] = rename[new]
        elif new.const is not None:
            outputs[i] = Value(old.name, new.type, new.const)
            extra_consts.append(outputs[i])
        else:
            outputs[i] = Value(old.name, new.type)
            extra_nodes.append(Node("Identity", [new], [outputs[i]], {}, names.unique(f"{old.name}_keep")))
    if not rename and not extra_nodes and not extra_consts and outputs == g.outputs:
        return g
    resolve = lambda v: rename.get(v, v)  # noqa: E731 - a one-line lookup
    nodes = []
    for n in g.nodes:
        m = substitute_in_node(n, resolve)
        if any(v in rename for v in m.outputs):
            m = Node(m.op, m.inputs, [resolve(v) for v in m.outputs], m.attrs, m.name)
        nodes.append(m)
    return Graph(list(g.inputs), outputs, nodes + extra_nodes, list(g.constants) + extra_consts, g.name, g.output_names)


@dataclass(frozen=True)
class Rule:
    """One rewrite: on `op` nodes (`*`: any op), `fn(node, rw)` returns replacement outputs or None.
    `why` says why it is sound."""

    op: str
    fn: Callable[[Node, Rewriter], Sequence[Value | None] | None]
    why: str


def rule_table(rules: Iterable[Rule]) -> dict[str, list[Rule]]:
    table: dict[str, list[Rule]] = {}
    for r in rules:
        table.setdefault(r.op, []).append(r)
    return table


def sweep(graph: Graph, ctx: PassContext, table: dict[str, list[Rule]]) -> Graph:
    """One pass over the nodes in order, applying the first rule that matches each."""
    rw = Rewriter(graph, ctx)
    for node in graph.nodes:
        node = rw.rebind(node)  # a substitution here means a rule fired earlier: rw.changed is set
        for rule in table.get(node.op, []) + table.get("*", []):
            mark = rw.checkpoint()
            try:
                result = rule.fn(node, rw)
            except ShapeInferenceError:
                result = None  # the replacement op's inference refuses these operands: no match
            if result is None:
                rw.rollback(mark)  # a rule that created nodes and then gave up leaves nothing behind
                continue
            _replace_outputs(rw, node, result, rule)
            break
        else:
            rw.keep(node)
    return rw.finish()


def _replace_outputs(rw: Rewriter, node: Node, result: Sequence[Value | None], rule: Rule) -> None:
    if len(result) != len(node.outputs):
        raise PassError(f"rule for {node.op} ({rule.why}) returned {len(result)} values for {len(node.outputs)} outputs")
    for old, new in zip(node.outputs, result):
        if new is None:
            if rw.used(old):
                raise PassError(f"rule for {node.op} ({rule.why}) dropped %{old.name}, which is still read")
            continue
        rw.replace(old, new)
    rw.drop(node)


def apply_rules(graph: Graph, ctx: PassContext, table: dict[str, list[Rule]], name: str) -> Graph:
    """Sweep until no rule fires (dead leftovers removed between sweeps); raises past the bound."""
    original = graph
    for _ in range(ctx.max_iterations):
        swept = sweep(graph, ctx, table)
        if swept is graph:
            return graph
        graph = remove_dead_nodes(swept)
    raise PassError(f"rewrite rules of '{name}' still fire after {ctx.max_iterations} sweeps "
                    f"(two rules undoing each other?); last graph has {len(graph.nodes)} nodes, started from "
                    f"{len(original.nodes)}")
