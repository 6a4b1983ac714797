"""16-bit float products on float32 kernels: a layout pass of targets whose convolution and
matrix-product kernels take float32 operands (the llvm target's microkernels).

A ConvNhwc or Linear on float16 or bfloat16 operands becomes the same node on float32
operands between Casts: constant weights and biases are converted once, at compile time;
activations by a Cast in front (which fusion merges into the kernel that produces them);
the result is rounded back by a Cast behind. Widening a 16-bit float is exact, and the
op's reference already computes in float32 and rounds once at the end, so the result is the
same as before up to the order of the float32 sums. What changes is the speed: a 16-bit
model's convolutions run on the microkernels instead of the generic loop-IR rule (a 4x
difference on SqueezeNet in fp16). Activations stay 16-bit in memory everywhere else.
A float16 product also gets compute=float16: both operands are float16 values already, so
the attribute changes no result, and it lets the kernels keep the weights in float16
(`GemmProblem.fp16`: half the bytes to read).
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, Node
from .core import PassContext, graph_pass
from .match import const_of
from .rewriter import Rewriter, Rule, apply_rules, rule_table

_NARROW = ("float16", "bfloat16")


def _widened(node: Node, rw: Rewriter):
    x = node.inputs[0]
    if x.type.dtype.name not in _NARROW or node.attrs.get("compute") is not None:
        return None
    narrow = x.type.dtype
    inputs = []
    for v in node.inputs:
        if v is None or v.type.dtype is not narrow:
            inputs.append(v)
            continue
        const = const_of(v)
        if const is not None:
            inputs.append(rw.constant(np.asarray(const).astype(np.float32), f"{v.name}_f32"))
        else:
            inputs.append(rw.op("Cast", v, to=dtypes.float32, name=f"{node.name}_widen"))
    attrs = node.attrs
    if narrow is dtypes.float16:  # the kernels keep float16 weights as such (half the bytes to stream)
        attrs = {**attrs, "compute": dtypes.float16}
    wide = rw.emit(node.op, inputs, attrs, name=node.name)[0]
    return [rw.op("Cast", wide, to=narrow, name=f"{node.name}_round")]


RULES = rule_table([
    Rule(op, _widened, "widening a 16-bit float is exact, and the op computes in float32 and rounds once anyway")
    for op in ("ConvNhwc", "Linear")
])


@graph_pass
def widen_products(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "widen_products")
