"""Third step of the channels-last layout pass: fold what follows a convolution or a dense
layer into the op itself, so the code generator runs it in the microkernel's epilogue
while the output tile is still in registers.

ConvNhwc absorbs, in this order (the order ResNets compute them): a per-channel constant
Add (into B), an Add of a same-shaped tensor (the `residual` input), then an activation
(Relu, Clip with constant bounds, Gelu, x * Sigmoid(x), Swish with alpha 1). An activation
already fused and then a residual Add gives `residual_after_activation`. Each step needs the
conv's result to have no other reader, since the intermediate value disappears.

Dense layers: a Gemm with constant B (and transA = 0) becomes Linear(A, B' [K, N], C')
with transB, alpha and beta folded into the constants; Linear absorbs a following
activation; and a Flatten of NCHW data feeding a Linear reads the NHWC data directly, its
weight rows permuted instead (the transpose happens once, at compile time).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Node, Value
from ..ir.ops import get_op
from ..ir.ops.activations import ACTIVATIONS, replaced_by
from ..ir.ops.layout import TO_NCHW
from .match import compatible, const_of, same_type, scalar_of
from .rewriter import Rewriter, Rule, rule_table

# The standalone ops an epilogue activation can replace (the registry's table says which).
_ACTIVATION_OPS = tuple(dict.fromkeys(a.op for a in ACTIVATIONS.values() if a.op is not None))


def _sole_producer(rw: Rewriter, v: Value | None, op: str) -> Node | None:
    """The `op` node computing v, when nothing but the current node reads v."""
    node = rw.producer_op(v, op)
    return node if node is not None and rw.single_use(v) else None


def _conv_operands(conv: Node) -> list[Value | None]:
    return (list(conv.inputs) + [None, None])[:4]


def _conv_with(rw: Rewriter, conv: Node, original: Value, operands: list[Value | None], **attrs) -> list[Value] | None:
    while operands and operands[-1] is None:
        operands = operands[:-1]  # absent trailing optional inputs are left out, as importers do
    y = rw.emit("ConvNhwc", operands, {**conv.attrs, **attrs}, name=conv.name)[0]
    return [y] if compatible(y, original) else None


def activation_of(node: Node) -> dict | None:
    """The epilogue attributes standing for an activation node (input 0 is its operand), or None.
    Also how the cuda target's product template folds a following activation in."""
    act = replaced_by(node.op, get_op(node.op).resolve_attrs(node.attrs, node.describe()))
    if act is None:
        return None
    if act.name == "clip":  # the bounds are inputs: constants, or no epilogue
        bounds = (list(node.inputs[1:]) + [None, None])[:2]
        lo, hi = (None if b is None else scalar_of(b) for b in bounds)
        if bounds[0] is not None and lo is None or bounds[1] is not None and hi is None:
            return None  # a bound only known at run time
        if hi is None:
            return {"activation": "relu"} if lo == 0.0 else None
        if lo is None:
            return None
        return {"activation": "clip", "clip_min": float(lo), "clip_max": float(hi)}
    return {"activation": act.name}


def _silu_operand(node: Node, rw: Rewriter) -> Value | None:
    """x when the node is Mul(x, Sigmoid(x)) (either order) and x is read by those two only."""
    for x, s in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        sig = _sole_producer(rw, s, "Sigmoid")
        if sig is not None and sig.inputs[0] is x and rw.uses[x] == 2 and not rw.is_output(x):
            return x
    return None


def _per_channel(c: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A constant varying at most along the last axis of an NHWC tensor, as a [M] vector."""
    if c is None or c.dtype.kind != "f" or c.ndim > 4:
        return None
    if any(d != 1 for d in c.shape[:-1]) or (c.ndim and c.shape[-1] not in (1, channels)):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (channels,))


# ---- ConvNhwc epilogues ------------------------------------------------------------------

def conv_activation(node: Node, rw: Rewriter):
    attrs = activation_of(node)
    conv = _sole_producer(rw, node.inputs[0], "ConvNhwc")
    if attrs is None or conv is None or conv.attrs.get("activation", "none") != "none":
        return None
    # With no activation yet, a residual "after" it is the same as one before it.
    return _conv_with(rw, conv, node.outputs[0], _conv_operands(conv), residual_after_activation=0, **attrs)


def conv_silu(node: Node, rw: Rewriter):
    x = _silu_operand(node, rw)
    conv = rw.producer_op(x, "ConvNhwc")
    if conv is None or conv.attrs.get("activation", "none") != "none":
        return None
    return _conv_with(rw, conv, node.outputs[0], _conv_operands(conv), activation="silu", residual_after_activation=0)


def conv_add(node: Node, rw: Rewriter):
    for mine, other in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        conv = _sole_producer(rw, mine, "ConvNhwc")
        if conv is None or not same_type(node.outputs[0], mine):
            continue
        x, w, b, residual = _conv_operands(conv)
        activation = conv.attrs.get("activation", "none")
        channels = mine.type.shape[3]
        c = _per_channel(const_of(other), channels) if isinstance(channels, int) else None
        if c is not None and activation == "none":
            if b is not None and const_of(b) is None:
                continue
            total = c if b is None else const_of(b).astype(np.float64) + c
            bias = rw.constant(total.astype(mine.type.dtype.numpy), f"{conv.name}_bias")
            return _conv_with(rw, conv, node.outputs[0], [x, w, bias, residual])
        if residual is None and compatible(other, mine) and other.type == mine.type:
            after = int(activation != "none")
            return _conv_with(rw, conv, node.outputs[0], [x, w, b, other], residual_after_activation=after)
    return None


# ---- dense layers ------------------------------------------------------------------------

def gemm_to_linear(node: Node, rw: Rewriter):
    a, b = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    weights = const_of(b)
    if weights is None or node.attrs.get("transA", 0) or a.type.rank != 2 or weights.ndim != 2:
        return None
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    dtype = weights.dtype
    w = weights.T if node.attrs.get("transB", 0) else weights
    if alpha != 1.0:
        w = (w.astype(np.float64) * alpha).astype(dtype)
    wv = rw.constant(np.ascontiguousarray(w), f"{node.name}_weight")
    if c is not None and beta == 0.0:
        c = None
    elif c is not None and beta != 1.0:
        if const_of(c) is None:
            return None
        c = rw.constant((const_of(c).astype(np.float64) * beta).astype(dtype), f"{node.name}_bias")
    y = rw.op("Linear", a, wv, c, name=node.name)
    return [y] if compatible(y, node.outputs[0]) else None


def linear_activation(node: Node, rw: Rewriter):
    attrs = activation_of(node)
    lin = _sole_producer(rw, node.inputs[0], "Linear")
    if attrs is None or lin is None or lin.attrs.get("activation", "none") != "none":
        return None
    y = rw.emit("Linear", lin.inputs, {**lin.attrs, **attrs}, name=lin.name)[0]
    return [y] if compatible(y, node.outputs[0]) else None


def _flattened_nhwc(rw: Rewriter, v: Value) -> Value | None:
    """a (static [N, H, W, C]) when v = Flatten/Reshape(Transpose(a, to_nchw)) to [N, C*H*W],
    each step read only on the way to the current node."""
    flat = _sole_producer(rw, v, "Flatten") or _sole_producer(rw, v, "Reshape")
    if flat is None or (flat.op == "Flatten" and int(flat.attrs.get("axis", 1)) != 1):
        return None
    t = _sole_producer(rw, flat.inputs[0], "Transpose")
    if t is None or [int(p) for p in t.attrs.get("perm") or []] != list(TO_NCHW):
        return None
    a = t.inputs[0]
    if not a.type.is_static or v.type.shape != (a.type.shape[0], int(np.prod(a.type.shape[1:]))):
        return None
    return a


def linear_reads_nhwc(node: Node, rw: Rewriter):
    weights = const_of(node.inputs[1])
    a = _flattened_nhwc(rw, node.inputs[0]) if weights is not None and weights.ndim == 2 else None
    if a is None:
        return None
    n, h, w, c = a.type.shape
    # Row c*H*W + h*W + w of the weights multiplies NCHW element (c, h, w); NHWC puts that
    # element at h*W*C + w*C + c, so the rows move there.
    rows = weights.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(weights.shape)
    flat = rw.op("Reshape", a, rw.constant(np.array([n, h * w * c], np.int64), f"{node.name}_flat"))
    y = rw.emit("Linear", [flat, rw.constant(np.ascontiguousarray(rows), f"{node.name}_weight_nhwc"),
                           *node.inputs[2:]], node.attrs, name=node.name)[0]
    return [y] if compatible(y, node.outputs[0]) else None


RULES = rule_table([
    Rule("Add", conv_add, "a per-channel constant after a conv adds onto B; a same-shaped tensor is its residual"),
    *[Rule(op, conv_activation, "an activation of the conv's only result is its epilogue") for op in _ACTIVATION_OPS],
    Rule("Mul", conv_silu, "x * Sigmoid(x) of the conv's result is the silu epilogue"),
    Rule("Gemm", gemm_to_linear, "Gemm with constant B is a matmul by B (transposed, scaled) plus C (scaled)"),
    *[Rule(op, linear_activation, "an activation of a Linear's only result is its epilogue") for op in _ACTIVATION_OPS],
    Rule("Linear", linear_reads_nhwc, "flattening NCHW then multiplying equals flattening NHWC and multiplying "
         "by the weights with their rows permuted alike"),
])
