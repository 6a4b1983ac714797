"""Fusion: the partitioner groups nodes into kernels and replaces each group by one
`FusedKernel` node holding the group's subgraph.

Groups grow along post-dominator regions (as in TVM's FuseOps): a group G merges with
its immediate post-dominator D together with every group on the paths between them.
Since every path out of G goes through D, only D's values leave the merged region
(nothing is computed twice) and the region is convex, so contracting it cannot create
a cycle. What may merge is decided by each group's fusion kind:

    epilogue     conv/matmul (out) absorbs the elementwise chain after it: bias,
                 activation, residual add, requantize
    injective    elementwise, broadcast and injective chains merge, and fold into a
                 reduction after them (reduction prologue; a data-moving chain not into
                 one that reads its input in several passes, `OpDef.injective_prologue`);
                 reshape-like views also fold
                 into a conv/matmul reading them; a computed value read broadcast
                 (BROADCAST_SPLIT) stays apart rather than be recomputed per element
    reduction    a reduction absorbs the elementwise chain after it (softmax, norms)

The phases repeat until no group merges, and no group grows past MAX_KERNEL_NODES. Opaque ops (control flow, data-dependent
shapes) always stay alone. By construction a kernel holds at most one heavy anchor (one
conv/matmul or one reduction): the phases only ever add elementwise, broadcast or
injective nodes to a group that has one.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..ir.builder import NameScope
from ..ir.graph import Graph, Node, Value, _reads_of
from ..ir.ops import REGISTRY
from ..ir.printer import INLINE_CONST_LIMIT
from ..ir.registry import Category
from ..ir.types import TensorType
from .core import PassContext, PassError, graph_pass
from .eliminate_dead_code import remove_dead_nodes
from .rewriter import all_names, substitute_in_node

# Fusion kinds, cheapest first; a group's kind is its most demanding member's.
VIEW, ELEMENTWISE, INJECTIVE, REDUCE, OUT, OPAQUE = "view", "ew", "inj", "reduce", "out", "opaque"
_RANK = {VIEW: 0, ELEMENTWISE: 1, INJECTIVE: 2, REDUCE: 3, OUT: 4, OPAQUE: 9}

SINK = -1

# The most nodes one kernel may hold. A fused kernel's loop body is built as one expression
# tree, recursively, each node a few Python frames deep: a chain of 50,000 elementwise ops
# fused whole overflowed the recursion limit (and no real kernel gains past a few dozen
# ops: the largest in the zoo, decomposed normalizations and GELUs, hold under 20).
MAX_KERNEL_NODES = 48

# A computed value that a kernel would read broadcast over at least this many times its own
# elements stays a kernel of its own. Fused, it would be recomputed for every element of
# the larger loop (channels are innermost in NHWC, so nothing hoists it): an SE block's
# Sigmoid gate on [1, 1, 1, C] evaluated at every pixel cost EfficientNet 0.6 ms of 5.
BROADCAST_SPLIT = 8


def fusion_kind(node: Node) -> str:
    """How `node` fuses: its op's category, refined where the node's attributes matter."""
    opdef = REGISTRY[node.op]
    category = opdef.category
    if category is Category.OPAQUE or node.subgraphs() or not all(isinstance(v.type, TensorType) for v in node.outputs):
        return OPAQUE
    if category is Category.OUT_FUSABLE:
        return OUT
    if category is Category.REDUCTION:
        # Inference BatchNorm is a per-channel affine map, not a reduction.
        inference_bn = node.op == "BatchNormalization" and not node.attrs.get("training_mode", 0)
        return ELEMENTWISE if inference_bn else REDUCE
    if category is Category.INJECTIVE:
        return VIEW if opdef.view else INJECTIVE  # a view only reinterprets the shape: free in any kernel
    return ELEMENTWISE


@dataclass(frozen=True)
class Phase:
    """Which groups grow (`producers`), through which kinds (`path`), into which post-dominators (`into`)."""

    name: str
    producers: frozenset
    path: frozenset
    into: frozenset


_CHAIN = frozenset({VIEW, ELEMENTWISE, INJECTIVE})
PHASES = (
    Phase("epilogue", frozenset({OUT}), frozenset({VIEW, ELEMENTWISE}), frozenset({VIEW, ELEMENTWISE})),
    Phase("injective", _CHAIN, _CHAIN, _CHAIN | {REDUCE}),
    Phase("reduction", frozenset({REDUCE}), frozenset({VIEW, ELEMENTWISE}), frozenset({VIEW, ELEMENTWISE})),
)


class Partition:
    """Nodes of a graph in groups (union-find), with the group-level dataflow graph."""

    def __init__(self, graph: Graph):
        self.graph = graph
        index = {v: i for i, n in enumerate(graph.nodes) for v in n.outputs}
        self.succ: list[set[int]] = [set() for _ in graph.nodes]
        for i, n in enumerate(graph.nodes):
            for v in _reads_of(n):
                if v in index:
                    self.succ[index[v]].add(i)
        outputs = set(graph.outputs)
        self.exits = {i for i, n in enumerate(graph.nodes) if any(v in outputs for v in n.outputs)}
        self.parent = list(range(len(graph.nodes)))
        self.members = {i: [i] for i in range(len(graph.nodes))}
        self.kind = {i: fusion_kind(n) for i, n in enumerate(graph.nodes)}

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def merge(self, root: int, others) -> None:
        for o in others:
            o = self.find(o)
            if o == root:
                continue
            self.parent[o] = root
            self.members[root].extend(self.members.pop(o))
            if _RANK[self.kind[o]] > _RANK[self.kind[root]]:
                self.kind[root] = self.kind[o]
            del self.kind[o]

    def group_succ(self, g: int) -> set[int]:
        found = {self.find(s) for m in self.members[g] for s in self.succ[m]}
        found.discard(g)
        return found

    def leaves_graph(self, g: int) -> bool:
        """Some member's value is a graph output (or read by nobody): it must stay visible."""
        return any(m in self.exits for m in self.members[g]) or not self.group_succ(g)

    def post_dominators(self) -> dict[int, int]:
        """Immediate post-dominator of every group (SINK when only the graph's end)."""
        dag = nx.DiGraph()
        dag.add_node(SINK)
        for g in self.members:
            dag.add_node(g)
            for s in self.group_succ(g):
                dag.add_edge(g, s)
            if self.leaves_graph(g):
                dag.add_edge(g, SINK)
        return nx.immediate_dominators(dag.reverse(copy=False), SINK)

    def region(self, g: int, d: int) -> set[int] | None:
        """Groups on the paths from g to d, when every path out of g goes through d; else None."""
        seen, stack = {g}, [g]
        while stack:
            x = stack.pop()
            if x != d and any(m in self.exits for m in self.members[x]):
                return None  # a value leaves the graph before d: d does not post-dominate g
            for s in self.group_succ(x):
                if s not in seen:
                    seen.add(s)
                    if s != d:
                        stack.append(s)
        return seen if d in seen else None

    def grow(self, phase: Phase) -> bool:
        ipdom = self.post_dominators()
        merged = False
        for g in sorted(self.members):
            if g not in self.members or self.kind[g] not in phase.producers:
                continue
            d = ipdom.get(g, SINK)
            if d == SINK:
                continue
            d = self.find(d)
            region = self.region(g, d) if d != g else None
            if region is None or not self._allowed(phase, g, d, region):
                continue
            self.merge(g, region)
            merged = True
        return merged

    def _allowed(self, phase: Phase, g: int, d: int, region: set[int]) -> bool:
        if sum(len(self.members[x]) for x in region) > MAX_KERNEL_NODES:
            return False
        between = region - {g, d}
        if not all(self.kind[x] in phase.path for x in between):
            return False
        if phase.name == "injective" and self.kind[g] != VIEW and self._read_broadcast(g, region - {g}):
            return False
        if self.kind[d] == REDUCE and not self._takes_injective_prologue(d) and \
                any(self.kind[x] == INJECTIVE for x in region - {d}):
            return False
        if self.kind[d] in phase.into:
            return True
        # Reshape-like views feeding a conv/matmul cost nothing: fold them into its input.
        return phase.name == "injective" and self.kind[d] == OUT and all(self.kind[x] == VIEW for x in region - {d})

    def _takes_injective_prologue(self, g: int) -> bool:
        """Whether every op of group g lets a data-moving chain fold into its kernel (`OpDef.injective_prologue`)."""
        return all(REGISTRY[self.graph.nodes[m].op].injective_prologue for m in self.members[g])

    def _read_broadcast(self, g: int, rest: set[int]) -> bool:
        """Whether `rest` reads a value of g over a domain BROADCAST_SPLIT times its size or more."""
        nodes = self.graph.nodes
        mine = {v for m in self.members[g] for v in nodes[m].outputs}
        domain, read = 0, None
        for x in rest:
            for m in self.members[x]:
                for v in nodes[m].outputs:
                    domain = max(domain, _numel(v) or 0)
                for v in _reads_of(nodes[m]):
                    if v in mine:
                        n = _numel(v)
                        read = n if read is None or n is None else max(read, n)
        return read is not None and read * BROADCAST_SPLIT <= domain

    def run(self, max_rounds: int) -> None:
        for _ in range(max_rounds):
            if not any([self.grow(phase) for phase in PHASES]):
                return
        raise PassError(f"fusion still merging groups after {max_rounds} rounds")

    def ordered_groups(self) -> list[list[int]]:
        """Groups (member node indices, sorted) in a topological order of the group graph."""
        dag = nx.DiGraph()
        for g in self.members:
            dag.add_node(g)
            dag.add_edges_from((g, s) for s in self.group_succ(g))
        if not nx.is_directed_acyclic_graph(dag):
            raise PassError("fusion produced a cycle between kernels (a partitioner bug)")
        order = nx.lexicographical_topological_sort(dag, key=lambda g: min(self.members[g]))
        return [sorted(self.members[g]) for g in order]


def _numel(v: Value) -> int | None:
    return v.type.numel() if isinstance(v.type, TensorType) else None


def _kernel(members: list[Node], readers_outside: set[Value], names: NameScope) -> Node:
    """One FusedKernel node computing `members`; its body is a copy with fresh values."""
    produced = {v for n in members for v in n.outputs}
    clone: dict[Value, Value] = {}
    inputs, body_inputs, body_consts = [], [], []
    for n in members:
        for v in _reads_of(n):
            if v in produced or v in clone:
                continue
            if v.const is not None and v.const.size <= INLINE_CONST_LIMIT:
                clone[v] = Value(v.name, v.type, v.const)
                body_consts.append(clone[v])
            else:
                clone[v] = Value(v.name, v.type, None, v.shape_value)
                inputs.append(v)
                body_inputs.append(clone[v])
    for v in produced:
        clone[v] = Value(v.name, v.type, None, v.shape_value)
    body_nodes = []
    for n in members:
        m = substitute_in_node(n, lambda v: clone.get(v, v))
        body_nodes.append(Node(m.op, m.inputs, [clone[v] for v in n.outputs], m.attrs, m.name))
    exported = [v for n in members for v in n.outputs if v in readers_outside]
    kind = "+".join(n.op for n in members)
    name = names.unique(f"kernel_{members[0].name or members[0].op.lower()}")
    body = Graph(body_inputs, [clone[v] for v in exported], body_nodes, body_consts, name)
    return Node("FusedKernel", inputs, exported, {"body": body, "kind": kind}, name)


def partition_groups(graph: Graph, max_rounds: int = 50) -> list[list[int]]:
    """The partitioner's groups (member node indices) in a topological order of the kernels."""
    part = Partition(graph)
    part.run(max_rounds)
    return part.ordered_groups()


def fuse_groups(graph: Graph, groups: list[list[Node]]) -> Graph:
    """The graph with each group of its nodes (a list in a topological order of the groups,
    covering every node) replaced by one FusedKernel node."""
    group_of = {id(n): k for k, members in enumerate(groups) for n in members}
    # A value leaves its kernel when a node of another kernel (or the graph's caller) reads it.
    producer_group = {v: group_of[id(n)] for n in graph.nodes for v in n.outputs}
    leaving = set(graph.outputs)
    for n in graph.nodes:
        leaving.update(v for v in _reads_of(n) if v in producer_group and producer_group[v] != group_of[id(n)])
    _, node_names = all_names(graph)
    names = NameScope(node_names)
    kernels = [_kernel(members, leaving, names) for members in groups]
    return remove_dead_nodes(Graph(list(graph.inputs), list(graph.outputs), kernels, list(graph.constants), graph.name,
                                   graph.output_names))


def fuse_graph(graph: Graph, max_rounds: int = 50) -> tuple[Graph, list[dict]]:
    """(graph of FusedKernel nodes, one {name, ops} entry per kernel)."""
    groups = [[graph.nodes[i] for i in members] for members in partition_groups(graph, max_rounds)]
    fused = fuse_groups(graph, groups)
    report = [{"name": k.name, "ops": [n.op for n in k.attrs["body"].nodes], "kind": k.attrs["kind"]}
              for k in fused.nodes]
    return fused, report


@graph_pass
def fuse(graph: Graph, ctx: PassContext) -> Graph:
    fused, report = fuse_graph(graph, ctx.max_iterations)
    ctx.analyses["kernels"] = report
    return fused
