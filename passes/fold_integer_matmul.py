"""Integer matmuls that arrive in a model (onnxruntime's dynamic quantization) run on the int8
kernels: a layout pass of the llvm target, whatever precision the user asked for.

onnxruntime's `quantize_dynamic` writes every MatMul with constant weights as
    codes, scale, zp = DynamicQuantizeLinear(x)               # uint8, per tensor, at run time
    y = Cast(MatMulInteger(codes, W_int8, zp, 0), float32) * (scale * W_scale) [+ bias]
The integer product is sum_k (codes[k] - zp) * W[k, n] = sum_k codes[k] * W[k, n] - zp * colsum(W)[n].
The first term is exactly what the VNNI kernel computes for an int8 product that takes its
activation as uint8 codes with scale 1 and zero point 0 and its weights as the codes they
are (`weight_codes`, scale 1); the second is a per-column bias, a constant vector times the
run-time zero point, which the kernel's epilogue adds. So

    Cast(MatMulInteger(A, W, zp, 0), float32)
        -> Linear(A, float(W), bias=float(zp) * -colsum(W), compute=int8, act_scale=1,
                  act_zero_point=0, weight_codes=1)

for any uint8 A with a per-tensor zero point (run-time or constant) and constant int8 weights
in [-127, 127] with zero points of 0 (onnxruntime's symmetric QInt8 weights). The rest of
the pattern (the scale multiply, the bias) stays as it is and fuses into one elementwise
kernel after the product.

The result differs from the ONNX text only in rounding: ONNX rounds the exact int32 sum to
float32 once; here the kernel converts its int32 sum of codes * weights to float32 and then
adds the float32 correction, two roundings of numbers below 2**24 * 255 (an error of at most
a few units of the integer sum where it exceeds 2**24, far below the quantization's own).
A MatMulInteger whose weights or zero points are of any other form keeps its exact integer
rule. ConvInteger is not rewritten: its padding taps would need the run-time zero point's code.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes, int8
from ..ir.graph import Graph, Node, Value
from .core import PassContext, graph_pass
from .match import const_of
from .rewriter import Rewriter, Rule, apply_rules, rule_table


def _is_zero_or_absent(v: Value | None) -> bool:
    c = const_of(v)
    return v is None or (c is not None and c.size > 0 and bool(np.all(c == 0)))


def _per_tensor(v: Value | None) -> bool:
    return v is None or (v.type.is_static and int(np.prod(v.type.shape, dtype=np.int64)) == 1)


def _integer_product(node: Node, rw: Rewriter):
    """Cast(MatMulInteger(...), float32) -> the int8 Linear with its zero-point correction."""
    if node.attrs.get("to") is not dtypes.float32:
        return None
    mm = rw.producer_op(node.inputs[0], "MatMulInteger")
    if mm is None or not rw.single_use(mm.outputs[0]):
        return None
    a, b = mm.inputs[0], mm.inputs[1]
    a_zp = mm.inputs[2] if len(mm.inputs) > 2 else None
    b_zp = mm.inputs[3] if len(mm.inputs) > 3 else None
    weights = const_of(b)
    if (a.type.dtype is not dtypes.uint8 or not a.type.is_static or a.type.rank < 1 or weights is None
            or weights.dtype != np.int8 or weights.ndim != 2 or weights.size == 0
            or not int8.are_weight_codes(weights) or not _per_tensor(a_zp) or not _is_zero_or_absent(b_zp)):
        return None
    codes = weights.astype(np.float32)
    attrs = {"compute": dtypes.int8, "act_scale": 1.0, "act_zero_point": 0, "weight_codes": 1}
    inputs = [a, rw.constant(codes, f"{mm.name}_weight_codes")]
    if not _is_zero_or_absent(a_zp):
        negated_sums = -codes.sum(axis=0, dtype=np.float64).astype(np.float32)  # exact: |sum| < 2**24
        zp = rw.op("Reshape", a_zp, rw.constant(np.array([1], np.int64), f"{mm.name}_one"), name=f"{mm.name}_zp")
        zp = rw.op("Cast", zp, name=f"{mm.name}_zp_float", to=dtypes.float32)
        inputs.append(rw.op("Mul", zp, rw.constant(negated_sums, f"{mm.name}_column_sums"), name=f"{mm.name}_correction"))
    return rw.emit("Linear", inputs, attrs, name=mm.name)


RULES = rule_table([Rule("Cast", _integer_product,
                         "sum (a - zp) * w = sum a * w - zp * colsum(w): the int8 kernel's product plus a per-column bias")])


@graph_pass
def fold_integer_matmul(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "fold_integer_matmul")
