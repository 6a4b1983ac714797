"""Concatenation without a copy: producers that write straight into their slice of the
Concat's output.

A Concat on the last axis (NHWC channels) whose every input is read by nothing but that
Concat is dropped when each producer can store its rows with the Concat's last-axis length
as row stride: a conv computed by a target's own kernel through its channel-slice variant
(`ExternPlan.into_channel_slice`; the llvm target's GEMM-based convs), any node lowered to
loop IR through an output tensor with those strides (`row_length`: pools, activations,
copies). Each input value lives inside the Concat's output at the byte offset of its first
channel (Inception and DenseNet blocks, SqueezeNet's fire modules, a U-Net's skip joins).

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
from .concat_copy import concat_axis
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
    readers: dict[Value, int] = {}
    for n in todo:
        for v in n.inputs:
            if v is not None:
                readers[v] = readers.get(v, 0) + 1
    result = ConcatSlices()
    graph_outputs = set(graph.outputs)
    for node in todo:
        if node.op != "Concat":
            continue
        z = node.outputs[0]
        rank = z.type.rank
        if rank is None or rank < 2 or concat_axis(node) != rank - 1:
            continue
        ins = list(node.inputs)
        if len(set(ins)) != len(ins) or any(v is None or v in graph_outputs or readers.get(v) != 1
                                            or v.type.dtype != z.type.dtype for v in ins):
            continue
        channels = z.type.shape[-1]
        made_by = [producer.get(v) for v in ins]
        writers = [_slice_writer(n, externs, channels) for n in made_by]
        if any(w is None for w in writers):
            continue
        start = 0
        for maker, writer, v in zip(made_by, writers, ins):
            if writer is _LOOP_IR:
                result.row_length[v] = channels
            else:
                result.plans[maker] = writer
            result.inside[v] = (z, start * z.type.dtype.itemsize)
            start += v.type.shape[-1]
        result.dropped.add(node)
    for node in todo:
        if node.op == "Concat" and node not in result.dropped:
            _stack_in_place(node, producer, graph_outputs, result)
    return result


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
