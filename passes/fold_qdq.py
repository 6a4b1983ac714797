"""Models that arrive quantized run their products on the int8 kernels: a layout pass of the
llvm target, whatever precision the user asked for (the model itself says int8).

onnxruntime's quantization tool writes QDQ models: every quantized product reads
    x -> QuantizeLinear(s, zp) -> DequantizeLinear(s, zp) -> Conv / MatMul / Gemm
    W_int8 -> DequantizeLinear(s_w per channel) -> (the weight)
The weight's DequantizeLinear is a constant and folds to float32 before this pass; what is
left is the activation's Q -> DQ pair, which is exactly the uint8 step of the `ir.int8`
scheme. So a ConvNhwc or Linear whose activation is DQ(Q(x, s, zp), s, zp), per tensor,
becomes the same node on x with compute=int8, act_scale=s, act_zero_point=zp, and the
kernel quantizes x itself as it packs it (int8 activations, zero point z, are the same
integers as uint8 with zero point z + 128). An activation that is DQ(v) of a stored
uint8/int8 value v (QLinear-style producers) is taken as it is: the kernel requantizes
DQ(v) with the same (s, zp) and gets v back exactly.

The weight must lie on the kernel's grid (symmetric per-channel int8, max |code| 127,
`ir.int8.fake_quantize_weights` leaves it unchanged), which is what onnxruntime's per-channel
QInt8 weights are; otherwise the node stays as it is (float32 on dequantized values: slower,
never different). One difference from the ONNX text remains: QuantizeLinear divides by the
scale and the kernel multiplies by its float32 inverse, which can round a value lying
exactly between two codes the other way (one code, on rare elements).

The Q/DQ pairs that do not feed a product (around Add, pooling, concat) stay: they are
elementwise and fuse into the neighbouring kernels.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes, int8
from ..ir.graph import Graph, Node, Value
from .core import PassContext, graph_pass
from .lower_precision import is_depthwise
from .match import const_of
from .rewriter import Rewriter, Rule, apply_rules, rule_table

# The weight's output-channel axis per product op (ConvNhwc: W[M, C/g, kh, kw]; Linear: B[K, N]).
_CHANNEL_AXIS = {"ConvNhwc": 0, "Linear": -1}
_CODES = ("uint8", "int8")


def _per_tensor(node: Node) -> tuple[float, int] | None:
    """(scale, zero point as uint8) of a per-tensor QuantizeLinear/DequantizeLinear, else None."""
    scale = const_of(node.inputs[1])
    zp = const_of(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if scale is None or scale.size != 1 or (len(node.inputs) > 2 and node.inputs[2] is not None and zp is None):
        return None
    code = (zp.dtype.name if zp is not None else
            node.outputs[0].type.dtype.name if node.op == "QuantizeLinear" else node.inputs[0].type.dtype.name)
    if code not in _CODES or (zp is not None and zp.size != 1):
        return None
    s = float(np.asarray(scale, np.float32).reshape(()))
    z = int(np.asarray(zp).reshape(())) if zp is not None else 0
    if not (s > 0 and np.isfinite(s)):
        return None
    return s, z + 128 if code == "int8" else z


def _activation(rw: Rewriter, x: Value) -> tuple[Value, tuple[float, int]] | None:
    """The product's new activation input and its (scale, zero point), when `x` is a
    per-tensor DequantizeLinear of a Q pair or of stored codes, or a Transpose of one (the
    layout pass's NCHW -> NHWC at a graph input: per-tensor quantization commutes with it)."""
    transpose = rw.producer_op(x, "Transpose")
    if transpose is not None:
        inner = _activation(rw, transpose.inputs[0])
        if inner is None:
            return None
        moved = rw.op("Transpose", inner[0], name=f"{transpose.name}_first", **transpose.attrs)
        return moved, inner[1]
    dq = rw.producer_op(x, "DequantizeLinear")
    if dq is None or x.type.dtype is not dtypes.float32:
        return None
    params = _per_tensor(dq)
    if params is None:
        return None
    q = rw.producer_op(dq.inputs[0], "QuantizeLinear")
    if q is not None and _per_tensor(q) == params and q.inputs[0].type.dtype is dtypes.float32:
        return q.inputs[0], params
    if dq.inputs[0].type.dtype.name in _CODES:
        return x, params
    return None


def _quantized_product(node: Node, rw: Rewriter):
    if node.attrs.get("compute") is not None or is_depthwise(node):  # depthwise: no int8 kernel
        return None
    weights = const_of(node.inputs[1])
    if weights is None or not int8.on_weight_grid(weights, _CHANNEL_AXIS[node.op]):
        return None
    found = _activation(rw, node.inputs[0])
    if found is None:
        return None
    x, (scale, zero_point) = found
    attrs = {**node.attrs, "compute": dtypes.int8, "act_scale": scale, "act_zero_point": zero_point}
    return rw.emit(node.op, [x, *node.inputs[1:]], attrs, name=node.name)


def _max_pool_first(node: Node, rw: Rewriter):
    """MaxPool(DQ(Q(x))) -> DQ(Q(MaxPool(x))): quantizing is monotone, so it commutes with
    max, and after the pool it runs on a quarter of the pixels (3x3/2) instead of being
    recomputed for every window tap; the pair then reaches the next product, which folds it."""
    if len(node.outputs) != 1:
        return None
    dq = rw.producer_op(node.inputs[0], "DequantizeLinear")
    q = rw.producer_op(dq.inputs[0], "QuantizeLinear") if dq is not None else None
    if q is None or _per_tensor(dq) is None or _per_tensor(q) != _per_tensor(dq):
        return None
    pooled = rw.emit(node.op, [q.inputs[0], *node.inputs[1:]], node.attrs, name=node.name)[0]
    codes = rw.op("QuantizeLinear", pooled, *q.inputs[1:], name=f"{q.name}_pooled", **q.attrs)
    return [rw.op("DequantizeLinear", codes, *dq.inputs[1:], name=f"{dq.name}_pooled", **dq.attrs)]


RULES = rule_table([
    Rule(op, _quantized_product, "Q -> DQ in front of a product is the int8 kernel's own activation quantization")
    for op in _CHANNEL_AXIS
] + [Rule("MaxPoolNhwc", _max_pool_first, "max commutes with a monotone quantization")])


@graph_pass
def fold_qdq(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "fold_qdq")
