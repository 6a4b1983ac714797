"""Concatenation without a copy: producers that write straight into their slice of the
Concat's output.

A Concat on the last axis (NHWC channels) is dropped when each producer can store its rows
with the Concat's last-axis length as row stride: a conv computed by a target's own kernel
through its channel-slice variant (`ExternPlan.into_channel_slice`; the llvm target's
GEMM-based convs), any node lowered to loop IR through an output tensor with those strides
(`row_length`: pools, activations, copies). Each input value lives inside the Concat's
output at the byte offset of its first channel (Inception blocks, SqueezeNet's fire
modules, a U-Net's skip joins). An input that other nodes read too stays there when they
are lowered to loop IR: they read it rows apart as well. An input that is itself a
channel Concat is placed the same way, so a chain (a DenseNet block: each layer joins the
previous join with one conv output, and reads that previous join) lives entirely in its
last Concat's buffer, every member stored as rows of the last one's length.

A Concat whose inputs are whole contiguous slabs of its output (every axis before the
Concat's is 1: stacking along the leading axis) needs nothing from its producers: any
kernel's output, stored where the slab starts, is already in place. Each input produced by
a kernel (not a view, a graph input or a constant), read by the Concat once, lives there,
and other readers read it there (an unrolled recurrent layer's per-step hidden state feeds
the next step and is also its output sequence: 50 copies of 1 KiB per layer, fused into
one kernel that selected among 50 inputs per element, had cost 0.36 ms).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Node, Value
from ..ir.ops import REGISTRY
from ..passes.match import concat_axis
from .extern import ExternPlan


@dataclass
class ConcatSlices:
    """What `find` decided: the Concats to drop, the conv plans that replace the plain
    ones, and where each conv output lives (container value, byte offset)."""

    dropped: set = field(default_factory=set)  # Concat nodes computed by their producers
    plans: dict = field(default_factory=dict)  # conv Node -> ExternPlan writing into its slice
    inside: dict = field(default_factory=dict)  # conv output Value -> (Concat output Value, byte offset)
    row_length: dict = field(default_factory=dict)  # loop-IR output Value -> the Concat's last-axis length


def find(graph: Graph, todo: list[Node], externs: dict[Node, ExternPlan]) -> ConcatSlices:
    """The Concats in `todo` that their producers can write in place (see the module doc)."""
    producer: dict[Value, Node] = {v: n for n in todo for v in n.outputs if v is not None}
    reader_nodes: dict[Value, list[Node]] = {}
    for n in todo:
        for v in n.inputs:
            if v is not None:
                reader_nodes.setdefault(v, []).append(n)
    result = ConcatSlices()
    graph_outputs = set(graph.outputs)
    # Outermost first: a Concat that feeds another is placed as part of it (a chain).
    for node in reversed(todo):
        if node in result.dropped or not _channel_concat(node):
            continue
        z = node.outputs[0]
        placed = _Placement(z.type.shape[-1])
        if placed.concat(node, z, 0, producer, reader_nodes, externs, graph_outputs, result):
            placed.apply(result)
    for node in todo:
        if node.op == "Concat" and node not in result.dropped:
            _stack_in_place(node, producer, graph_outputs, result)
    return result


def _channel_concat(node: Node) -> bool:
    z = node.outputs[0]
    rank = z.type.rank
    return (node.op == "Concat" and rank is not None and rank >= 2 and z.type.is_static
            and concat_axis(node) == rank - 1)


@dataclass
class _Placement:
    """What placing one outermost Concat decided, applied only when all of it works: every
    value inside it is stored as rows of the outermost Concat's `channels`."""

    channels: int
    dropped: list = field(default_factory=list)
    plans: dict = field(default_factory=dict)
    inside: dict = field(default_factory=dict)
    row_length: dict = field(default_factory=dict)

    def concat(self, node: Node, z: Value, base: int, producer, reader_nodes, externs, graph_outputs,
               result: ConcatSlices) -> bool:
        """Place `node`'s inputs inside the outermost output, `node`'s own output starting
        `base` bytes into it. An input another Concat produced is placed the same way (its
        Concat dropped too); an input other kernels also read is read there, rows apart."""
        ins = list(node.inputs)
        if len(set(ins)) != len(ins) or any(v is None or v in graph_outputs or v in result.inside
                                            or v.type.dtype != z.type.dtype for v in ins):
            return False
        start = 0
        for v in ins:
            others = [n for n in reader_nodes.get(v, []) if n is not node]
            if others and not all(_reads_strided(n, externs) for n in others):
                return False
            offset = base + start * z.type.dtype.itemsize
            maker = producer.get(v)
            if maker is not None and maker not in result.dropped and _channel_concat(maker):
                if not self.concat(maker, v, offset, producer, reader_nodes, externs, graph_outputs, result):
                    return False
                self.row_length[v] = self.channels  # its readers' rows, its own inputs store them
            else:
                writer = _slice_writer(maker, externs, self.channels)
                if writer is None:
                    return False
                if writer is _LOOP_IR or others:
                    self.row_length[v] = self.channels
                if writer is not _LOOP_IR:
                    self.plans[maker] = writer
            self.inside[v] = (z, offset - base)
            start += v.type.shape[-1]
        self.dropped.append(node)
        return True

    def apply(self, result: ConcatSlices) -> None:
        result.dropped.update(self.dropped)
        result.plans.update(self.plans)
        result.inside.update(self.inside)
        result.row_length.update(self.row_length)


def _reads_strided(reader: Node, externs: dict) -> bool:
    """Whether `reader` can read its input rows apart: a node lowered to loop IR (any kernel
    loads through the strides it is given), not a target's own kernel nor a view (whose
    output would share the storage)."""
    return reader not in externs and not REGISTRY[reader.op].view and reader.op != "Concat"


_LOOP_IR = object()  # a producer whose loop-IR kernel stores its rows at the Concat's stride


def _slice_writer(maker: Node | None, externs: dict, channels: int):
    """How `maker` can write its output rows `channels` apart: its extern plan's channel-slice
    variant, _LOOP_IR for a node lowered to loop IR (any kernel stores through the strides
    it is given), None when it cannot (an extern without the variant, a view, no kernel)."""
    if maker is None or REGISTRY[maker.op].view or len([v for v in maker.outputs if v is not None]) != 1:
        return None
    if maker in externs:
        return externs[maker].into_channel_slice(channels) if maker.op == "ConvNhwc" else None
    return _LOOP_IR


def _stack_in_place(node: Node, producer: dict, graph_outputs: set, result: ConcatSlices) -> None:
    """Drop `node` when each input is a whole slab of its output that its producer's kernel
    can write there (see the module doc)."""
    z = node.outputs[0]
    shape = z.type.shape
    axis = concat_axis(node)
    ins = list(node.inputs)
    if any(d != 1 for d in shape[:axis]) or len(set(ins)) != len(ins):
        return
    for v in ins:
        made_by = producer.get(v)
        if (v is None or v in graph_outputs or v in result.inside or made_by is None or made_by in result.dropped
                or REGISTRY[made_by.op].view or v.type.dtype != z.type.dtype):
            return
    start = 0
    for v in ins:
        result.inside[v] = (z, start)
        start += v.type.nbytes()
    result.dropped.add(node)
