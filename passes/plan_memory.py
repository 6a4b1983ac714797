"""Memory planning: every intermediate (a value produced by one node and read by later
ones, not a graph output) gets an offset in one arena, and buffers whose lifetimes do
not overlap share bytes.

1. Liveness: a buffer lives from the node producing it to the last node reading it.
2. In-place: a node may write its output over an input that dies at that node, when the
   output has the input's size and every use of that input inside the node is
   elementwise (each output element reads only the same-index input element, so nothing
   still to be read is overwritten). The two then share one buffer.
3. Placement: buffers, largest first, go at the lowest aligned offset that does not
   collide with an already placed buffer alive at the same time (greedy by size, as in
   TFLite's arena planner).

Graph inputs, outputs and constants live outside the arena. The plan is an analysis:
the pass returns the graph unchanged and puts the `MemoryPlan` in `ctx.analyses`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Node, Value, _reads_of
from ..ir.types import TensorType
from .core import PassContext, graph_pass
from .fuse import ELEMENTWISE, fusion_kind

ALIGNMENT = 64


@dataclass
class Buffer:
    values: list[Value]
    size: int
    start: int  # index of the producing node
    end: int  # index of the last reading node
    offset: int = -1


@dataclass
class MemoryPlan:
    offsets: dict[str, int] = field(default_factory=dict)  # value name -> arena offset
    arena_bytes: int = 0
    naive_bytes: int = 0  # every intermediate in its own allocation
    buffers: int = 0
    in_place: int = 0  # outputs written over a dying input
    dynamic: list[str] = field(default_factory=list)  # intermediates of unknown size (not planned)

    def summary(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "naive_bytes": self.naive_bytes, "buffers": self.buffers,
                "in_place": self.in_place, "dynamic": len(self.dynamic)}


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _elementwise_reads(node: Node, slot: int) -> bool:
    """Does every computation reading input `slot` of `node` use it element by element?"""
    body = node.attrs.get("body") if node.op == "FusedKernel" else None
    if body is None:
        return fusion_kind(node) == ELEMENTWISE
    # Inside a kernel: everything downstream of the input must be elementwise, or an
    # output element could depend on input elements written over already.
    tainted = {body.inputs[slot]}
    for n in body.nodes:
        if any(v in tainted for v in _reads_of(n)):
            if fusion_kind(n) != ELEMENTWISE:
                return False
            tainted.update(n.outputs)
    return True


def _in_place_source(node: Node, out: Value, index: int, buffers: dict[Value, Buffer], taken: set[Value]) -> Value | None:
    """An input of `node` whose buffer `out` may reuse, or None."""
    for slot, v in enumerate(node.inputs):
        buf = buffers.get(v)
        if buf is None or v in taken or buf.end != index or buf.size != _align(out.type.nbytes()):
            continue
        if v.type.shape == out.type.shape and _elementwise_reads(node, slot) and node.inputs.count(v) == 1:
            return v
    return None


def plan(graph: Graph) -> MemoryPlan:
    result = MemoryPlan()
    outside = set(graph.inputs) | set(graph.outputs) | set(graph.constants)
    last_read: dict[Value, int] = {}
    for i, n in enumerate(graph.nodes):
        for v in _reads_of(n):
            last_read[v] = i
    buffers: dict[Value, Buffer] = {}
    taken: set[Value] = set()  # inputs already reused in place by some output
    for i, node in enumerate(graph.nodes):
        for out in node.outputs:
            if out in outside or out not in last_read:
                continue
            if not isinstance(out.type, TensorType) or out.type.nbytes() is None:
                result.dynamic.append(out.name)
                continue
            result.naive_bytes += out.type.nbytes()
            src = _in_place_source(node, out, i, buffers, taken)
            if src is not None:
                buf = buffers[src]
                buf.values.append(out)
                buf.end = max(buf.end, last_read[out])
                buffers[out] = buf
                taken.add(src)
                result.in_place += 1
            else:
                buffers[out] = Buffer([out], _align(out.type.nbytes()), i, last_read[out])
    unique = list({id(b): b for b in buffers.values()}.values())
    result.buffers = len(unique)
    result.arena_bytes = _place(unique)
    result.offsets = {v.name: b.offset for b in unique for v in b.values}
    return result


def _place(buffers: list[Buffer]) -> int:
    """Greedy by size: each buffer at the lowest offset free during its lifetime; returns the arena size."""
    placed: list[Buffer] = []
    arena = 0
    for buf in sorted(buffers, key=lambda b: (-b.size, b.start)):
        busy = sorted((p.offset, p.offset + p.size) for p in placed if p.start <= buf.end and buf.start <= p.end)
        offset = 0
        for lo, hi in busy:
            if offset + buf.size <= lo:
                break
            offset = max(offset, hi)
        buf.offset = offset
        placed.append(buf)
        arena = max(arena, offset + buf.size)
    return arena


@graph_pass
def plan_memory(graph: Graph, ctx: PassContext) -> Graph:
    ctx.analyses["memory_plan"] = plan(graph)
    return graph
