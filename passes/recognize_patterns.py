"""Recognition of what exporters decompose: LayerNorm, GELU (erf and tanh forms), Softmax,
scaled dot-product attention, and MatMul + bias, each turned back into one registry op.

Every matcher walks from the pattern's last node up through `rw.producer`, and absorbs
an intermediate only when nothing else reads it (`rw.single_use`): a LayerNorm whose
mean is also used elsewhere stays decomposed, since rewriting it would compute the
mean twice.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir.graph import Graph, Node, Value
from .core import PassContext, graph_pass
from .match import broadcasts_within, compatible, const_of, near, same_type, scalar_of
from .rewriter import Rewriter, Rule, apply_rules, rule_table


def _only_reader(rw: Rewriter, v: Value, op: str) -> Node | None:
    """The `op` node producing `v`, when `v` is read once (by the pattern) and not an output."""
    return rw.producer_op(v, op) if rw.single_use(v) else None


def _reduced_axes(rw: Rewriter, node: Node) -> list[int] | None:
    """The normalized axes of a keepdims Reduce* node, or None when they are not known."""
    rank = node.inputs[0].type.rank
    if rank is None or not node.attrs.get("keepdims", 1) or node.attrs.get("noop_with_empty_axes", 0):
        return None
    axes_in = node.inputs[1] if len(node.inputs) > 1 else None
    if axes_in is None:
        return list(range(rank))
    axes = const_of(axes_in)
    return None if axes is None else sorted(int(a) % rank for a in axes.reshape(-1))


def _split_const(node: Node) -> tuple[Value, float] | None:
    """(x, c) for a binary node of x and a scalar constant c, in either order."""
    a, b = node.inputs
    if scalar_of(b) is not None:
        return a, scalar_of(b)
    if scalar_of(a) is not None:
        return b, scalar_of(a)
    return None


def _factors(rw: Rewriter, v: Value) -> list[Value]:
    """The operands of a product tree of Muls that only the tree reads."""
    mul = _only_reader(rw, v, "Mul")
    if mul is None:
        return [v]
    return _factors(rw, mul.inputs[0]) + _factors(rw, mul.inputs[1])


# ---- LayerNorm: (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) ------------------------

def _is_square_of(rw: Rewriter, v: Value, d: Value) -> bool:
    node = _only_reader(rw, v, "Pow") or _only_reader(rw, v, "Mul")
    if node is None:
        return False
    if node.op == "Pow":
        return node.inputs[0] is d and near(scalar_of(node.inputs[1]), 2.0, 1e-6)
    return node.inputs[0] is d and node.inputs[1] is d


def layer_norm(node: Node, rw: Rewriter):
    d, std = node.inputs
    sub, sqrt = rw.producer_op(d, "Sub"), _only_reader(rw, std, "Sqrt")
    if sub is None or sqrt is None or rw.is_output(d):
        return None
    x, mean = sub.inputs
    rm1 = _only_reader(rw, mean, "ReduceMean")
    add = _only_reader(rw, sqrt.inputs[0], "Add")
    if rm1 is None or rm1.inputs[0] is not x or add is None or _split_const(add) is None:
        return None
    var, eps = _split_const(add)
    rm2 = _only_reader(rw, var, "ReduceMean")
    if rm2 is None or not _is_square_of(rw, rm2.inputs[0], d):
        return None
    # d feeds the square (once for Pow, twice for Mul(d, d)) and this Div, nothing else.
    square = rw.producer(rm2.inputs[0])
    if rw.uses[d] != 1 + sum(v is d for v in square.inputs):
        return None
    axes, rank = _reduced_axes(rw, rm1), x.type.rank
    if axes is None or axes != _reduced_axes(rw, rm2) or axes != list(range(rank - len(axes), rank)):
        return None
    normalized = x.type.shape[axes[0]:]
    if not all(isinstance(n, int) for n in normalized) or not same_type(node.outputs[0], x):
        return None
    ones = rw.constant(np.ones(normalized, x.type.dtype.numpy), f"{node.outputs[0].name}_scale")
    return [rw.op("LayerNormalization", x, ones, axis=axes[0], epsilon=float(eps), name=node.name)]


def _layer_norm_affine(node: Node, rw: Rewriter, scaling: bool):
    ln = rw.producer_op(node.inputs[0], "LayerNormalization") or rw.producer_op(node.inputs[1], "LayerNormalization")
    if ln is None or len(ln.outputs) > 1 or not rw.single_use(ln.outputs[0]):
        return None
    c = const_of(node.inputs[1] if node.inputs[0] is ln.outputs[0] else node.inputs[0])
    scale, bias = const_of(ln.inputs[1]), const_of(ln.inputs[2] if len(ln.inputs) > 2 else None)
    has_bias = len(ln.inputs) > 2 and ln.inputs[2] is not None
    if c is None or scale is None or (has_bias and bias is None) or c.ndim > scale.ndim:
        return None
    if not same_type(node.outputs[0], ln.outputs[0]) or c.dtype != scale.dtype:
        return None
    bias = np.zeros_like(scale) if bias is None else bias
    try:
        if scaling:
            scale, bias = np.broadcast_to(scale * c, scale.shape), np.broadcast_to(bias * c, scale.shape)
        else:
            bias = np.broadcast_to(bias + c, scale.shape)
    except ValueError:
        return None  # c varies along axes LayerNorm does not normalize: not a per-element affine
    name = node.outputs[0].name
    new = [ln.inputs[0], rw.constant(np.ascontiguousarray(scale), f"{name}_scale"),
           rw.constant(np.ascontiguousarray(bias), f"{name}_bias")]
    return [rw.emit("LayerNormalization", new, ln.attrs, name=ln.name)[0]]


def layer_norm_scale(node: Node, rw: Rewriter):
    return _layer_norm_affine(node, rw, scaling=True)


def layer_norm_bias(node: Node, rw: Rewriter):
    return _layer_norm_affine(node, rw, scaling=False)


# ---- GELU: 0.5 * x * (1 + erf(x / sqrt 2)), or with tanh(sqrt(2/pi) * (x + 0.044715 x^3)) --------

def _one_plus(rw: Rewriter, v: Value, op: str) -> Node | None:
    """The `op` node in `1 + op(...)` computing v."""
    add = _only_reader(rw, v, "Add")
    split = _split_const(add) if add is not None else None
    if split is None or not near(split[1], 1.0, 1e-6):
        return None
    return _only_reader(rw, split[0], op)


def _erf_argument_is(rw: Rewriter, erf: Node, x: Value) -> bool:
    """erf's argument is x / sqrt 2 (or x * (1 / sqrt 2))."""
    scaled = _only_reader(rw, erf.inputs[0], "Div") or _only_reader(rw, erf.inputs[0], "Mul")
    split = _split_const(scaled) if scaled is not None else None
    if split is None or split[0] is not x:
        return False
    if scaled.op == "Div":
        return scaled.inputs[0] is x and near(split[1], math.sqrt(2))
    return near(split[1], 1 / math.sqrt(2))


def _is_cube_of(rw: Rewriter, v: Value, x: Value) -> bool:
    pw = _only_reader(rw, v, "Pow")
    if pw is not None:
        return pw.inputs[0] is x and near(scalar_of(pw.inputs[1]), 3.0, 1e-6)
    return _factors(rw, v) == [x, x, x] and rw.producer_op(v, "Mul") is not None


def _tanh_argument_is(rw: Rewriter, tanh: Node, x: Value) -> bool:
    outer = _only_reader(rw, tanh.inputs[0], "Mul")
    split = _split_const(outer) if outer is not None else None
    if split is None or not near(split[1], math.sqrt(2 / math.pi)):
        return False
    inner = _only_reader(rw, split[0], "Add")
    if inner is None or x not in inner.inputs:
        return False
    cubic = inner.inputs[1] if inner.inputs[0] is x else inner.inputs[0]
    mul = _only_reader(rw, cubic, "Mul")
    split = _split_const(mul) if mul is not None else None
    return split is not None and near(split[1], 0.044715) and _is_cube_of(rw, split[0], x)


def gelu(node: Node, rw: Rewriter):
    factors = _factors(rw, node.inputs[0]) + _factors(rw, node.inputs[1])
    halves = [f for f in factors if near(scalar_of(f), 0.5, 1e-6)]
    if len(factors) != 3 or len(halves) != 1:
        return None
    x, a = [f for f in factors if f is not halves[0]]
    for x, a in ((x, a), (a, x)):
        erf, tanh = _one_plus(rw, a, "Erf"), _one_plus(rw, a, "Tanh")
        if erf is not None and _erf_argument_is(rw, erf, x):
            approximate = "none"
        elif tanh is not None and _tanh_argument_is(rw, tanh, x):
            approximate = "tanh"
        else:
            continue
        if same_type(node.outputs[0], x):
            return [rw.op("Gelu", x, approximate=approximate, name=node.name)]
    return None


# ---- Softmax: exp(x - max(x)) / sum(exp(x - max(x))) ----------------------------------

def softmax(node: Node, rw: Rewriter):
    e, total = node.inputs
    exp, rsum = rw.producer_op(e, "Exp"), _only_reader(rw, total, "ReduceSum")
    if exp is None or rsum is None or rsum.inputs[0] is not e or rw.uses[e] != 2 or rw.is_output(e):
        return None
    axes = _reduced_axes(rw, rsum)
    if axes is None or len(axes) != 1:
        return None
    x = exp.inputs[0]
    sub = _only_reader(rw, x, "Sub")
    if sub is not None:
        rmax = _only_reader(rw, sub.inputs[1], "ReduceMax")
        if rmax is not None and rmax.inputs[0] is sub.inputs[0] and _reduced_axes(rw, rmax) == axes:
            x = sub.inputs[0]  # subtracting the max only guards exp's range; Softmax does that itself
    if not same_type(node.outputs[0], x):
        return None
    return [rw.op("Softmax", x, axis=axes[0], name=node.name)]


# ---- Attention: softmax(Q K^T * scale + mask) V ----------------------------------------

def _scores(rw: Rewriter, v: Value) -> tuple[Node, float] | None:
    """(the Q @ K^T MatMul, scale) behind v = (Q @ K^T) / c, * c, or plain."""
    scaled = _only_reader(rw, v, "Div") or _only_reader(rw, v, "Mul")
    if scaled is not None and _split_const(scaled) is not None:
        inner, c = _split_const(scaled)
        if scaled.op == "Div" and scaled.inputs[0] is not inner:
            return None  # c / scores is no scaling
        mm = _only_reader(rw, inner, "MatMul")
        return (mm, 1.0 / c if scaled.op == "Div" else c) if mm is not None and c != 0 else None
    mm = _only_reader(rw, v, "MatMul")
    return (mm, 1.0) if mm is not None else None


def attention(node: Node, rw: Rewriter):
    probs, v = node.inputs
    sm = _only_reader(rw, probs, "Softmax")
    if sm is None or sm.attrs.get("axis", -1) % 4 != 3 or probs.type.rank != 4:
        return None
    logits, mask = sm.inputs[0], None
    add = _only_reader(rw, logits, "Add")
    found = _scores(rw, logits)
    if found is None and add is not None:
        for s, m in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
            found = _scores(rw, s)
            if found is not None and m.type.dtype == s.type.dtype and m.type.rank <= 4 and broadcasts_within(m, s):
                mask = m
                break
            found = None
    if found is None:
        return None
    mm, scale = found
    q, kt = mm.inputs
    if not (q.type.rank == kt.type.rank == v.type.rank == 4) or not _same_heads(q, kt, v):
        return None
    k = rw.op("Transpose", kt, perm=[0, 1, 3, 2], name=f"{node.name}_k")
    inputs = [q, k, v] + ([mask] if mask is not None else [])
    y = rw.emit("Attention", inputs, {"scale": float(scale)}, name=node.name)[0]
    return [y] if compatible(y, node.outputs[0]) else None


def _same_heads(*values: Value) -> bool:
    """Batch and head dims agree (Attention does not broadcast them as MatMul would)."""
    firsts = [v.type.shape[:2] for v in values]
    return all(compatible_dims(a, b) for f in firsts[1:] for a, b in zip(firsts[0], f))


def compatible_dims(a, b) -> bool:
    return a == b or (isinstance(a, str) and isinstance(b, str))


# ---- Attention on packed heads: split and merge of heads absorbed -------------------------

HEADS_PERM = [0, 2, 1, 3]  # (B, S, H, D) <-> (B, H, S, D)


def _split_heads_of(rw: Rewriter, v: Value) -> tuple[Value, int] | None:
    """(x, H) when v = Transpose(Reshape(x, (B, S, H, D)), [0, 2, 1, 3]) with x of shape (B, S, H*D)."""
    tr = _only_reader(rw, v, "Transpose")
    if tr is None or tr.attrs.get("perm") != HEADS_PERM:
        return None
    rs = _only_reader(rw, tr.inputs[0], "Reshape")
    if rs is None:
        return None
    x, split = rs.inputs[0], rs.outputs[0].type.shape
    if x.type.rank != 3 or split is None or not all(isinstance(d, int) for d in split[2:]):
        return None
    hidden = x.type.shape[2]
    if hidden != split[2] * split[3] or not all(compatible_dims(a, b) for a, b in zip(x.type.shape[:2], split[:2])):
        return None
    return x, split[2]


def attention_heads(node: Node, rw: Rewriter):
    tr = _only_reader(rw, node.inputs[0], "Transpose")
    att = _only_reader(rw, tr.inputs[0], "Attention") if tr is not None and tr.attrs.get("perm") == HEADS_PERM else None
    if att is None or len(att.outputs) != 1 or set(att.attrs) - {"scale"} or len(att.inputs) > 4:
        return None
    out, merged = node.outputs[0], tr.outputs[0].type.shape
    if out.type.rank != 3 or merged is None or not all(isinstance(d, int) for d in merged[2:]) \
            or out.type.shape[2] != merged[2] * merged[3]:
        return None
    split = [_split_heads_of(rw, v) for v in att.inputs[:3]]
    if any(s is None for s in split) or split[1][1] != split[2][1]:
        return None
    (q, hq), (k, hkv), (v, _) = split
    attrs = {"scale": att.attrs["scale"], "q_num_heads": hq, "kv_num_heads": hkv}
    y = rw.emit("Attention", [q, k, v] + list(att.inputs[3:]), attrs, name=att.name)[0]
    return [y] if compatible(y, out) else None


# ---- Linear: MatMul + bias ----------------------------------------------------------------

def linear(node: Node, rw: Rewriter):
    for prod, bias in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        mm = _only_reader(rw, prod, "MatMul")
        b = const_of(bias)
        if mm is None or b is None or not same_type(node.outputs[0], prod):
            continue
        if any(d != 1 for d in b.shape[:-1]) or b.dtype != mm.inputs[0].type.dtype.numpy:
            continue  # only a bias along the output features is a matmul epilogue
        return [rw.op("Linear", mm.inputs[0], mm.inputs[1], bias, name=node.name)]
    return None


RULES = rule_table([
    Rule("Div", layer_norm, "(x - mean) / sqrt(var + eps) over trailing axes is LayerNormalization"),
    Rule("Mul", layer_norm_scale, "a constant factor after LayerNorm multiplies into its scale and bias"),
    Rule("Add", layer_norm_bias, "a constant term after LayerNorm adds onto its bias"),
    Rule("Mul", gelu, "0.5 * x * (1 + erf(x / sqrt 2)) and its tanh approximation are Gelu"),
    Rule("Div", softmax, "exp(x - max) / sum(exp(x - max)) along one axis is Softmax"),
    Rule("MatMul", attention, "softmax(Q K^T * scale + mask) V on 4-D heads is Attention"),
    Rule("Reshape", attention_heads, "Attention between a split of (B, S, H*D) into heads and the merge back is "
         "Attention on packed (B, S, H*D) operands"),
    Rule("Add", linear, "MatMul plus a bias along its output features is Linear (bias as epilogue)"),
])


@graph_pass
def recognize_patterns(graph: Graph, ctx: PassContext) -> Graph:
    return apply_rules(graph, ctx, RULES, "recognize_patterns")
