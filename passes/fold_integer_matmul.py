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

for any uint8 A with a per-tensor zero point (run-time or constant) and constant weights whose
integers W - W_zp fit int8 (onnxruntime's QInt8 weights, per tensor or per channel; its
asymmetric QUInt8 weights rarely fit and keep the exact rule), taken as those codes. The rest of
the pattern (the scale multiply, the bias) stays as it is and fuses into one elementwise
kernel after the product.

The result differs from the ONNX text only in rounding: ONNX rounds the exact int32 sum to
float32 once; here the kernel converts its int32 sum of codes * weights to float32 and then
adds the float32 correction, two roundings of numbers below 2**24 * 255 (an error of at most
a few units of the integer sum where it exceeds 2**24, far below the quantization's own).
A MatMulInteger whose weights or zero points are of any other form (run-time weights, a
zero point per row, integers past int8, a signed activation) keeps its exact integer rule.

ConvInteger (2-D, not depthwise: `quantize_dynamic` on a CNN) the same way, on the int8 conv
kernel, channels-last:

    Cast(ConvInteger(x, W, zp, 0), float32)
        -> Transpose(ConvNhwc(Pad(Transpose(x), zp), float(W), bias=float(zp) * -sum(W[m]), ...))

The padding is explicit, filled with the zero point's code (ONNX pads ConvInteger's input
with the zero point, a real 0), so every tap of every window is a real input and the
correction is the same per-channel bias everywhere. The Transposes meet their neighbours'
in the layout passes. A depthwise ConvInteger (no int8 kernel) becomes a float32 Conv of
x - zp, exact since a window's sums are integers below 2**24, on the float depthwise kernel.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes, int8
from ..ir.graph import Graph, Node, Value
from .core import PassContext, graph_pass
from .match import const_of, is_filled
from .rewriter import Rewriter, Rule, apply_rules, rule_table


def _is_zero_or_absent(v: Value | None) -> bool:
    return v is None or is_filled(v, 0)


def _per_tensor(v: Value | None) -> bool:
    return v is None or (v.type.is_static and int(np.prod(v.type.shape, dtype=np.int64)) == 1)


_INT8_ATTRS = {"compute": dtypes.int8, "act_scale": 1.0, "act_zero_point": 0, "weight_codes": 1}


def _correction(rw: Rewriter, name: str, zp: Value, codes: np.ndarray, axes: tuple[int, ...]) -> Value:
    """float(zp) * -sum(codes over `axes`): the per-output-channel bias that subtracts the
    zero point's share of every sum (exact in float32: |sum| < 2**24)."""
    negated_sums = -codes.sum(axis=axes, dtype=np.float64).astype(np.float32)
    zp = rw.op("Reshape", zp, rw.constant(np.array([1], np.int64), f"{name}_one"), name=f"{name}_zp")
    zp = rw.op("Cast", zp, name=f"{name}_zp_float", to=dtypes.float32)
    return rw.op("Mul", zp, rw.constant(negated_sums, f"{name}_channel_sums"), name=f"{name}_correction")


def _weight_codes(w: Value, w_zp: Value | None, channel_axis: int) -> np.ndarray | None:
    """The weights' integers w - w_zp (a zero point per tensor or per output channel along
    `channel_axis`), as float32, when they are constant and fit int8."""
    weights = const_of(w)
    zp = np.zeros(1, np.int64) if w_zp is None else const_of(w_zp)
    if weights is None or zp is None or weights.dtype not in (np.int8, np.uint8) or weights.size == 0:
        return None
    zp = np.asarray(zp, np.int64).reshape(-1)
    if zp.size not in (1, weights.shape[channel_axis]):
        return None
    shape = [1] * weights.ndim
    shape[channel_axis] = -1
    codes = (weights.astype(np.int64) - zp.reshape(shape)).astype(np.float32)
    return codes if int8.are_weight_codes(codes) else None


def _integer_operands(rw: Rewriter, product: Node, rank: int, channel_axis: int):
    """(x, zero point or None, weight codes as float32) of a MatMulInteger / ConvInteger the
    int8 kernels can take as it is, else None."""
    if not rw.single_use(product.outputs[0]):
        return None
    x, w = product.inputs[0], product.inputs[1]
    x_zp = product.inputs[2] if len(product.inputs) > 2 else None
    w_zp = product.inputs[3] if len(product.inputs) > 3 else None
    if (x.type.dtype is not dtypes.uint8 or not x.type.is_static or x.type.rank < 1 or w.type.rank != rank
            or not _per_tensor(x_zp)):
        return None
    codes = _weight_codes(w, w_zp, channel_axis)
    if codes is None:
        return None
    return x, None if _is_zero_or_absent(x_zp) else x_zp, codes


def _cast_to_float(node: Node, rw: Rewriter, op: str) -> Node | None:
    if node.attrs.get("to") is not dtypes.float32:
        return None
    return rw.producer_op(node.inputs[0], op)


def _integer_conv(node: Node, rw: Rewriter):
    """Cast(ConvInteger(...), float32) -> the int8 ConvNhwc on explicitly padded codes."""
    conv = _cast_to_float(node, rw, "ConvInteger")
    found = _integer_operands(rw, conv, 4, 0) if conv is not None else None
    if found is None or conv.inputs[0].type.rank != 4 or conv.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        return None
    x, zp, codes = found
    group = int(conv.attrs.get("group", 1))
    if group > 1 and group == x.type.shape[1] == codes.shape[0]:
        return _depthwise_in_float(rw, conv, x, zp, codes)
    pads = list(conv.attrs.get("pads") or [0, 0, 0, 0])
    nhwc = rw.op("Transpose", x, name=f"{conv.name}_to_nhwc", perm=[0, 2, 3, 1])
    if any(pads) and zp is not None:
        t, l, b, r = pads
        fill = rw.op("Reshape", zp, rw.constant(np.zeros(0, np.int64), f"{conv.name}_scalar"), name=f"{conv.name}_fill")
        nhwc = rw.op("Pad", nhwc, rw.constant(np.array([0, t, l, 0, 0, b, r, 0], np.int64), f"{conv.name}_pads"), fill,
                     name=f"{conv.name}_pad")
        pads = [0, 0, 0, 0]
    inputs = [nhwc, rw.constant(codes, f"{conv.name}_weight_codes")]
    if zp is not None:
        inputs.append(_correction(rw, conv.name, zp, codes, (1, 2, 3)))
    attrs = {"strides": list(conv.attrs.get("strides") or [1, 1]), "pads": pads,
             "dilations": list(conv.attrs.get("dilations") or [1, 1]), "group": group, **_INT8_ATTRS}
    y = rw.emit("ConvNhwc", inputs, attrs, name=conv.name)[0]
    return [rw.op("Transpose", y, name=f"{conv.name}_to_nchw", perm=[0, 3, 1, 2])]


def _depthwise_in_float(rw: Rewriter, conv: Node, x: Value, zp: Value | None, codes: np.ndarray):
    """A depthwise ConvInteger (no int8 kernel) as a float32 Conv of (x - zp) and the codes,
    which the float depthwise kernel runs: every product and sum of a window is an integer
    below 2**24 (taps x 255 x 128), so float32 holds them exactly and the result is the
    integer rule's; shifted before padding, the padding is a real 0 as ONNX's zero point is."""
    if codes.shape[2] * codes.shape[3] * 255 * 128 >= 2 ** 24:
        return None
    shifted = rw.op("Cast", x, name=f"{conv.name}_float", to=dtypes.float32)
    if zp is not None:
        zp = rw.op("Cast", zp, name=f"{conv.name}_zp_float", to=dtypes.float32)
        shifted = rw.op("Sub", shifted, zp, name=f"{conv.name}_shifted")
    attrs = {k: v for k, v in conv.attrs.items() if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
    return [rw.op("Conv", shifted, rw.constant(codes, f"{conv.name}_weight_codes"), name=conv.name, **attrs)]


def _integer_product(node: Node, rw: Rewriter):
    """Cast(MatMulInteger(...), float32) -> the int8 Linear with its zero-point correction."""
    mm = _cast_to_float(node, rw, "MatMulInteger")
    found = _integer_operands(rw, mm, 2, 1) if mm is not None else None
    if found is None:
        return None
    a, zp, codes = found
    inputs = [a, rw.constant(codes, f"{mm.name}_weight_codes")]
    if zp is not None:
        inputs.append(_correction(rw, mm.name, zp, codes, (0,)))
    return rw.emit("Linear", inputs, _INT8_ATTRS, name=mm.name)


def _quantize_transposed(node: Node, rw: Rewriter):
    """DynamicQuantizeLinear(x) whose codes only Transposes of one perm read (the int8 conv's
    channels-last input) -> the codes of DynamicQuantizeLinear(Transpose(x)), transposed back:
    a per-tensor quantization commutes with any permutation, the back-and-forth pair cancels in
    simplification, and the float transpose meets the producer's own (a channels-last conv's)
    in the layout passes, instead of the quantizing kernel reading across channels."""
    codes = node.outputs[0]
    readers = [n for n in rw.graph.nodes if any(i is codes for i in n.inputs)] if rw.used(codes) else []
    perms = {tuple(n.attrs.get("perm") or ()) for n in readers}  # () : the default reversal, left alone
    if (not readers or any(n.op != "Transpose" for n in readers) or len(perms) != 1 or () in perms
            or rw.is_output(codes) or rw.producer_op(node.inputs[0], "Transpose") is not None):
        return None
    perm = list(perms.pop())
    moved = rw.op("Transpose", node.inputs[0], name=f"{node.name}_first", perm=perm)
    q, scale, zero_point = rw.emit("DynamicQuantizeLinear", [moved], {}, name=node.name)
    inverse = [int(i) for i in np.argsort(perm)]
    return [rw.op("Transpose", q, name=f"{node.name}_back", perm=inverse), scale, zero_point]


RULES = rule_table([
    Rule("Cast", _integer_product,
         "sum (a - zp) * w = sum a * w - zp * colsum(w): the int8 kernel's product plus a per-column bias"),
    Rule("Cast", _integer_conv, "the same per output channel, every tap a real input once the padding holds zp"),
    Rule("DynamicQuantizeLinear", _quantize_transposed, "a per-tensor quantization commutes with a permutation"),
])


@graph_pass
def fold_integer_matmul(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "fold_integer_matmul")
