"""QLinearConv and QLinearMatMul (onnxruntime's QOperator format) onto the int8 kernels: a
layout pass of the llvm target, run before the channels-last conversion.

    QLinearConv(x, sx, zx, W, sw, zw, sy, zy, B) -> Q(Conv(DQ(x, sx, zx), W * sw, B * sx * sw), sy, zy)
    QLinearMatMul(a, sa, za, B, sb, zb, sy, zy)  -> Q(Linear(DQ(a, sa, za), B * sb), sy, zy)

with the weights dequantized at compile time. The product then reads DQ of stored uint8
codes, which `fold_qdq` turns into compute=int8 with (sx, zx): the kernel requantizes the
dequantized codes to exactly the same integers, multiplies them by the same int8 weights in
int32, and the output QuantizeLinear rounds the float32 result. Only weights the kernel
takes unchanged are decomposed: constant int8 codes with zero points of 0 whose per-channel
scales put them on its 127-code grid (onnxruntime's per-channel QInt8 weights); the rest keep
the op's exact integer rule.

The decomposed form follows the ONNX definition up to the requantization's rounding: ONNX
scales the exact int32 sum by sx * sw / sy and rounds once; here the sum is scaled to float32
first (as onnxruntime's own kernels do), so a value within float32 rounding of a tie between
two output codes may land on the other one.
"""
from __future__ import annotations

import numpy as np

from ..ir import int8
from ..ir.graph import Graph, Node
from .core import PassContext, graph_pass
from .match import const_of
from .rewriter import Rewriter, Rule, apply_rules, rule_table


def _per_tensor(*values) -> bool:
    return all(const_of(v) is not None and const_of(v).size == 1 for v in values)


def _dequantized_weights(w, scale, zero_point, axis: int) -> np.ndarray | None:
    """W * scale (float32) when W is constant int8 codes with zero points of 0 that lie on the
    kernel's grid along the output-channel `axis`, else None."""
    codes, s = const_of(w), const_of(scale)
    zp = const_of(zero_point) if zero_point is not None else np.zeros(1, np.int8)
    if codes is None or s is None or zp is None or codes.dtype != np.int8 or np.any(zp != 0) or codes.size == 0:
        return None
    s = np.asarray(s, np.float32)
    if s.size > 1:
        if s.ndim != 1 or s.size != codes.shape[axis]:
            return None
        shape = [1] * codes.ndim
        shape[axis] = -1
        s = s.reshape(shape)
    weights = (codes.astype(np.float32) * s).astype(np.float32)
    if not int8.on_weight_grid(weights, axis):
        return None
    return weights


def _decomposed(rw: Rewriter, node: Node, activation, weights: np.ndarray, op: str, bias, attrs: dict):
    x, sx, zx = activation
    sy, zy = node.inputs[6], node.inputs[7]
    xf = rw.op("DequantizeLinear", x, sx, zx, name=f"{node.name}_dequantize")
    inputs = [xf, rw.constant(weights, f"{node.name}_weights")]
    if bias is not None:
        inputs.append(rw.constant(bias, f"{node.name}_bias"))
    yf = rw.emit(op, inputs, attrs, name=node.name)[0]
    return [rw.op("QuantizeLinear", yf, sy, zy, name=f"{node.name}_quantize")]


def _qlinear_conv(node: Node, rw: Rewriter):
    x, sx, zx, w, sw, zw, sy, zy = node.inputs[:8]
    if not _per_tensor(sx, zx, sy, zy) or x.type.dtype.name != "uint8":
        return None
    weights = _dequantized_weights(w, sw, zw, axis=0)
    if weights is None:
        return None
    bias = None
    if len(node.inputs) > 8 and node.inputs[8] is not None:
        b = const_of(node.inputs[8])
        if b is None:
            return None
        scale = np.asarray(const_of(sx), np.float64).reshape(()) * np.asarray(const_of(sw), np.float64).reshape(-1)
        bias = (b.astype(np.float64) * scale).astype(np.float32)
    return _decomposed(rw, node, (x, sx, zx), weights, "Conv", bias, dict(node.attrs))


def _qlinear_matmul(node: Node, rw: Rewriter):
    a, sa, za, b, sb, zb, sy, zy = node.inputs[:8]
    if not _per_tensor(sa, za, sy, zy) or a.type.dtype.name != "uint8" or const_of(b) is None or const_of(b).ndim != 2:
        return None
    weights = _dequantized_weights(b, sb, zb, axis=1)
    if weights is None:
        return None
    return _decomposed(rw, node, (a, sa, za), weights, "Linear", None, {})


RULES = rule_table([
    Rule("QLinearConv", _qlinear_conv, "a QLinearConv is DQ -> Conv -> Q; fold_qdq puts the Conv on the int8 kernels"),
    Rule("QLinearMatMul", _qlinear_matmul, "a QLinearMatMul is DQ -> Linear -> Q, likewise"),
])


@graph_pass
def decompose_qlinear(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "decompose_qlinear")
