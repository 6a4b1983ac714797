"""16-bit float products on float32 kernels: a layout pass of targets whose convolution and
matrix-product kernels compute in float32 (the llvm target's microkernels).

A ConvNhwc or Linear on bfloat16 operands becomes the same node on float32 operands
between Casts: constant weights and biases are converted once, at compile time;
activations by a Cast in front (which fusion merges into the kernel that produces them);
the result is rounded back by a Cast behind. Widening a 16-bit float is exact, and the
op's reference already computes in float32 and rounds once at the end, so the result is the
same as before up to the order of the float32 sums. What changes is the speed: a 16-bit
model's convolutions run on the microkernels instead of the generic loop-IR rule (a 4x
difference on SqueezeNet in fp16). Activations stay 16-bit in memory everywhere else.

A float16 product needs fewer Casts: it gets compute=float16 and out_dtype=float16 and
float32 constants, keeps the weights in float16 (`GemmProblem.fp16`), and writes its result
as float16, rounded in its epilogue (`out_f16`). It keeps its float16 activation too
(widened as the kernel packs it, `a_f16`) where that is cheap (`reads_float16_cheaply`),
else a Cast in front widens it as before. The values are the same as between Casts; fewer
activations cross memory as float32 copies (SqueezeNet in float16: 5.2 -> 4.3 ms, 2 threads).
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import Graph, Node
from .core import PassContext, graph_pass
from .match import const_of
from .rewriter import Rewriter, Rule, apply_rules, rule_table

_NARROW = ("float16", "bfloat16")


def reads_float16_cheaply(node: Node) -> bool:
    """Whether a product can take a float16 activation for less than a float32 one costs.
    The kernels widen float16 as they pack it (`GemmProblem.a_f16` forces pack_a): one pass
    over the rows of a dense layer or a pointwise conv, or of a conv whose kernel rows are
    short (it packs them in float32 too), but a copy per tap of a KxK conv that reads its
    input in place otherwise. Measured on Sapphire Rapids, 2 threads: VGG-19's 3x3 convs
    reading float16 were 7% slower than reading float32 through a Cast."""
    if node.op == "Linear":
        return True
    w = const_of(node.inputs[1]) if node.op == "ConvNhwc" else None
    if w is None or w.ndim != 4:
        return False
    pointwise = w.shape[2:] == (1, 1) and tuple(node.attrs.get("strides", (1, 1))) == (1, 1) \
        and not any(node.attrs.get("pads", (0, 0, 0, 0)))
    return pointwise or w.shape[3] * w.shape[1] < 16  # kw x cin per kernel row: packed anyway


def _widened(node: Node, rw: Rewriter):
    x = node.inputs[0]
    if x.type.dtype.name not in _NARROW or node.attrs.get("compute") is not None:
        return None
    narrow = x.type.dtype
    float16 = narrow is dtypes.float16
    keep_activation = float16 and reads_float16_cheaply(node)
    inputs = [x] if keep_activation else []
    for v in node.inputs[len(inputs):]:
        if v is None or v.type.dtype is not narrow:
            inputs.append(v)
            continue
        const = const_of(v)
        if const is not None:
            inputs.append(rw.constant(np.asarray(const).astype(np.float32), f"{v.name}_f32"))
        else:
            inputs.append(rw.op("Cast", v, to=dtypes.float32, name=f"{node.name}_widen"))
    if float16:  # float16 weights kept as such (half the bytes to stream), the result rounded in the epilogue
        return rw.emit(node.op, inputs, {**node.attrs, "compute": narrow, "out_dtype": narrow}, name=node.name)
    wide = rw.emit(node.op, inputs, node.attrs, name=node.name)[0]
    return [rw.op("Cast", wide, to=narrow, name=f"{node.name}_round")]


RULES = rule_table([
    Rule(op, _widened, "widening a 16-bit float is exact, and the op computes in float32 and rounds once anyway")
    for op in ("ConvNhwc", "Linear")
])


@graph_pass
def widen_products(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "widen_products")
