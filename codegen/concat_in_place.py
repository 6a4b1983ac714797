"""Concatenation without a copy: producers that write straight into their slice of the
Concat's output.

An NHWC Concat on the channel (last) axis whose every input is a ConvNhwc computed by a
target's own kernel, read by nothing but that Concat, is dropped when each of those kernels
can store its rows with the Concat's channel count as row stride
(`ExternPlan.into_channel_slice`; the llvm target's GEMM-based convs can), and
its output value lives inside the Concat's output at the byte offset of its first channel
(Inception and DenseNet blocks, SqueezeNet's fire modules).

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
from .extern import ExternPlan


@dataclass
class ConcatSlices:
    """What `find` decided: the Concats to drop, the conv plans that replace the plain
    ones, and where each conv output lives (container value, byte offset)."""

    dropped: set = field(default_factory=set)  # Concat nodes computed by their producers
    plans: dict = field(default_factory=dict)  # conv Node -> ExternPlan writing into its slice
    inside: dict = field(default_factory=dict)  # conv output Value -> (Concat output Value, byte offset)


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
        axis = REGISTRY["Concat"].resolve_attrs(node.attrs, node.describe())["axis"]
        if rank != 4 or axis not in (-1, rank - 1) or z.type.dtype.name != "float32":
            continue
        ins = list(node.inputs)
        if len(set(ins)) != len(ins) or any(v is None or v in graph_outputs or readers.get(v) != 1 for v in ins):
            continue
        convs = [producer.get(v) for v in ins]
        if any(c is None or c.op != "ConvNhwc" or c not in externs for c in convs):
            continue
        channels = z.type.shape[-1]
        sliced = [externs[c].into_channel_slice(channels) for c in convs]
        if any(p is None for p in sliced):
            continue
        start = 0
        for conv, plan, v in zip(convs, sliced, ins):
            result.plans[conv] = plan
            result.inside[v] = (z, start * z.type.dtype.itemsize)
            start += v.type.shape[-1]
        result.dropped.add(node)
    for node in todo:
        if node.op == "Concat" and node not in result.dropped:
            _stack_in_place(node, producer, graph_outputs, result)
    return result


def _stack_in_place(node: Node, producer: dict, graph_outputs: set, result: ConcatSlices) -> None:
    """Drop `node` when each input is a whole slab of its output that its producer's kernel
    can write there (see the module doc)."""
    z = node.outputs[0]
    shape = z.type.shape
    axis = REGISTRY["Concat"].resolve_attrs(node.attrs, node.describe())["axis"] % len(shape)
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
