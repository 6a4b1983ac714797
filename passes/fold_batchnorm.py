"""BatchNormalization folding: at inference a BatchNorm is a per-channel affine map
y = x * s + t (s = scale / sqrt(var + eps), t = B - mean * s), so it folds into the
weights and bias of the Conv, Gemm or MatMul before it. Per-channel constant Mul and Add
after a Conv or a BatchNorm (exporters split BatchNorm into BN -> Mul -> Add) fold the
same way.

The folded weights are computed in float64 and rounded once to the weight's type.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node, Value
from .core import PassContext, graph_pass
from .match import const_of, same_type
from .rewriter import Rewriter, Rule, apply_rules, rule_table


def _bn_affine(bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) with BN(x) = x * s + t per channel, or None when BN is not a constant inference BN."""
    if bn.attrs.get("training_mode", 0) or len(bn.outputs) > 1:
        return None
    params = [const_of(v) for v in bn.inputs[1:5]]
    if any(p is None for p in params):
        return None
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    s = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
    return s, bias - mean * s


def _absorbable(rw: Rewriter, node: Node, producer_op: str) -> Node | None:
    """The `producer_op` node feeding input 0, when only `node` reads it."""
    prod = rw.producer_op(node.inputs[0], producer_op)
    return prod if prod is not None and rw.single_use(node.inputs[0]) else None


def _channels(v: Value) -> int | None:
    shape = v.type.shape
    return shape[1] if shape is not None and len(shape) >= 2 and isinstance(shape[1], int) else None


def _per_channel(c: np.ndarray | None, out: Value) -> np.ndarray | None:
    """A constant operand that varies at most along axis 1 of `out`, as a length-C vector."""
    channels, rank = _channels(out), out.type.rank
    if c is None or channels is None or c.ndim > rank or c.dtype.kind != "f":
        return None
    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
    if any(d != 1 for i, d in enumerate(full.shape) if i != 1) or full.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(full.reshape(-1).astype(np.float64), (channels,))


# ---- Conv: weights are (out_channels, in_channels / group, k...) ------------------------

def _conv_with_affine(rw: Rewriter, conv: Node, s: np.ndarray, t: np.ndarray, name: str) -> Value | None:
    w, b = const_of(conv.inputs[1]), const_of(conv.inputs[2] if len(conv.inputs) > 2 else None)
    if w is None or (len(conv.inputs) > 2 and conv.inputs[2] is not None and b is None):
        return None
    w64 = w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))
    b64 = (np.zeros(w.shape[0]) if b is None else b.astype(np.float64)) * s + t
    wv = rw.constant(w64.astype(w.dtype), f"{name}_w")
    bv = rw.constant(b64.astype(w.dtype), f"{name}_b")
    return rw.emit("Conv", [conv.inputs[0], wv, bv], conv.attrs, name=conv.name)[0]


def bn_into_conv(node: Node, rw: Rewriter):
    conv, affine = _absorbable(rw, node, "Conv"), _bn_affine(node)
    if conv is None or affine is None:
        return None
    out = _conv_with_affine(rw, conv, *affine, node.outputs[0].name)
    return None if out is None else [out]


def _conv_scaled(node: Node, rw: Rewriter, scaling: bool):
    conv = _absorbable(rw, node, "Conv")
    if conv is None or not same_type(node.outputs[0], node.inputs[0]):
        return None
    c = _per_channel(const_of(node.inputs[1]), node.outputs[0])
    if c is None:
        return None
    s, t = (c, np.zeros_like(c)) if scaling else (np.ones_like(c), c)
    out = _conv_with_affine(rw, conv, s, t, node.outputs[0].name)
    return None if out is None else [out]


def mul_into_conv(node: Node, rw: Rewriter):
    return _conv_scaled(node, rw, scaling=True)


def add_into_conv(node: Node, rw: Rewriter):
    return _conv_scaled(node, rw, scaling=False)


# ---- BatchNorm followed by per-channel Mul / Add ------------------------------------------

def _bn_scaled(node: Node, rw: Rewriter, scaling: bool):
    bn = _absorbable(rw, node, "BatchNormalization")
    if bn is None or _bn_affine(bn) is None or not same_type(node.outputs[0], node.inputs[0]):
        return None
    c = _per_channel(const_of(node.inputs[1]), node.outputs[0])
    if c is None:
        return None
    scale, bias = (const_of(v) for v in bn.inputs[1:3])
    if scaling:  # (x*s + t) * c = x*(s*c) + t*c
        scale, bias = scale * c.astype(scale.dtype), bias * c.astype(bias.dtype)
    else:
        bias = bias + c.astype(bias.dtype)
    new = [bn.inputs[0], rw.constant(scale, f"{bn.name}_scale"), rw.constant(bias, f"{bn.name}_bias"), *bn.inputs[3:5]]
    return [rw.emit("BatchNormalization", new, bn.attrs, name=bn.name)[0]]


def mul_into_bn(node: Node, rw: Rewriter):
    return _bn_scaled(node, rw, scaling=True)


def add_into_bn(node: Node, rw: Rewriter):
    return _bn_scaled(node, rw, scaling=False)


# ---- Gemm and MatMul: output (N, M), channels are columns -----------------------------

def bn_into_gemm(node: Node, rw: Rewriter):
    gemm, affine = _absorbable(rw, node, "Gemm"), _bn_affine(node)
    if gemm is None or affine is None or gemm.outputs[0].type.rank != 2:
        return None
    s, t = affine
    b = const_of(gemm.inputs[1])
    c_in = gemm.inputs[2] if len(gemm.inputs) > 2 else None
    c = const_of(c_in)
    if b is None or (c_in is not None and c is None):
        return None
    b64 = b.astype(np.float64) * (s[:, None] if gemm.attrs.get("transB", 0) else s[None, :])
    # BN(alpha*A*B + beta*C) = alpha*A*(B*s) + (beta*C*s + t)
    c64 = np.asarray((0.0 if c is None else gemm.attrs.get("beta", 1.0) * c.astype(np.float64)) * s + t)
    name = node.outputs[0].name
    attrs = dict(gemm.attrs, beta=1.0)
    new = [gemm.inputs[0], rw.constant(b64.astype(b.dtype), f"{name}_w"), rw.constant(c64.astype(b.dtype), f"{name}_b")]
    return [rw.emit("Gemm", new, attrs, name=gemm.name)[0]]


def bn_into_matmul(node: Node, rw: Rewriter):
    mm, affine = _absorbable(rw, node, "MatMul"), _bn_affine(node)
    if mm is None or affine is None or mm.inputs[0].type.rank != 2 or mm.inputs[1].type.rank != 2:
        return None
    w = const_of(mm.inputs[1])
    if w is None:
        return None
    s, t = affine
    name = node.outputs[0].name
    wv = rw.constant((w.astype(np.float64) * s[None, :]).astype(w.dtype), f"{name}_w")
    y = rw.op("MatMul", mm.inputs[0], wv, name=mm.name)
    return [rw.op("Add", y, rw.constant(t.astype(w.dtype), f"{name}_b"), name=node.name)]


RULES = rule_table([
    Rule("BatchNormalization", bn_into_conv, "BN after a Conv scales each output channel's filter and shifts its bias"),
    Rule("BatchNormalization", bn_into_gemm, "BN after a Gemm scales each output column of B and shifts C"),
    Rule("BatchNormalization", bn_into_matmul, "BN after a 2-D MatMul scales the weight's columns; the shift is an Add"),
    Rule("Mul", mul_into_conv, "a per-channel constant factor after a Conv scales its filters and bias"),
    Rule("Add", add_into_conv, "a per-channel constant after a Conv adds onto its bias"),
    Rule("Mul", mul_into_bn, "a per-channel constant factor after a BN scales its scale and bias"),
    Rule("Add", add_into_bn, "a per-channel constant after a BN adds onto its bias"),
])


@graph_pass
def fold_batchnorm(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "fold_batchnorm")
