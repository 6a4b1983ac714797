"""Which nodes the cuda target computes with its matrix-product template (`codegen.cuda.igemm`),
registered as each op's cuda extern lowering (`OpDef.extern_lowering("cuda")`):

    MatMul   A [.., M, K] @ B: B one [K, N] matrix (A's leading dims are rows), or A and B
             with the same batch dims
    Linear   the same plus a bias along N and the node's activation
    Gemm     transA / transB read in place, alpha and beta * C (C broadcast to [M, N])
    Conv     any spatial rank, groups, strides, dilations, pads (auto_pad too) and bias, as
             an implicit GEMM per (image, group): M output channels of the group, N output
             positions, K input channels x kernel window, the image gathered on the fly

An activation node that alone reads the result (Relu, Clip with constant bounds, Gelu,
Swish) is folded into the epilogue (`ExternPlan.absorb`, asked by the program builder).

Operands are float32, float16 or bfloat16 (all the node's the same), shapes static and
non-empty. 16-bit operands always go here (tensor cores); float32 ones when the product is
big enough for shared-memory tiles to pay (`worth_tiling`), else the loop-IR rule's
register tiles (a depthwise convolution, a tiny matrix) keep them. None means "not this
way": the node takes its loop-IR rule.
"""
from __future__ import annotations

import math

from ...ir import dtypes
from ...ir.ops import REGISTRY, get_op
from .. import loop_ir as L
from ..extern import ExternPlan
from ..gpu_schedule import unravel
from ..lowering import NotLowerable
from ..lowering.activation import activation_fn
from ..lowering.nn import window_params
from ...passes.fuse_epilogues import activation_of
from .igemm import GemmSpec, Operand, gemm_kernel, vector_aligned

TEMPLATE_DTYPES = ("float32", "float16", "bfloat16")


def worth_tiling(dtype_name: str, batches: int, m: int, n: int, k: int) -> bool:
    """16-bit: always (the tensor cores). float32: when a 64 x 64 tile is mostly used and
    the reduction long enough that staging it in shared memory pays for the barriers."""
    if dtype_name != "float32":
        return True
    return m >= 32 and n >= 32 and k >= 16 and batches * m * n * k >= 1 << 20


def _dtype_ok(*values) -> bool:
    types = [v.type for v in values if v is not None]
    return (all(t.is_static and t.dtype.name in TEMPLATE_DTYPES for t in types) and len({t.dtype for t in types}) == 1
            and all(0 not in tuple(t.shape) for t in types))


def _input(node, i):
    return node.inputs[i] if len(node.inputs) > i else None


def _buffer(name: str, value) -> L.Buffer:
    return L.Buffer(name, value.type.dtype, max(1, math.prod(value.type.shape)))


_F32 = dtypes.float32


def _f32(x):
    return L.cast(x, _F32)


def _product(node, target, tail, a, b, bias=None, activation=None) -> ExternPlan | None:
    """MatMul / Linear: Y = act(A @ B + bias)."""
    sa, sb, sy = tuple(a.type.shape), tuple(b.type.shape), tuple(node.outputs[0].type.shape)
    if len(sa) < 2 or len(sb) < 2 or sa[-1] != sb[-2]:
        return None
    k, n = sb[-2], sb[-1]
    if len(sb) == 2 or math.prod(sb[:-2]) == 1:
        batches, m, b_batched = 1, math.prod(sa[:-1]), False
    elif sa[:-2] == sb[:-2]:
        batches, m, b_batched = math.prod(sa[:-2]), sa[-2], True
    else:
        return None
    if math.prod(sy) != batches * m * n or not worth_tiling(a.type.dtype.name, batches, m, n, k):
        return None
    dt = a.type.dtype
    A, B = _buffer("A", a), _buffer("B", b)
    params, args = [A, B], [("value", a), ("value", b)]
    epilogue_parts = []
    if bias is not None:
        shape = tuple(bias.type.shape)
        if math.prod(shape) == 1:
            along_n = False
        elif shape and shape[-1] == n and math.prod(shape) == n:
            along_n = True
        else:
            return None  # a bias that varies along rows: the loop-IR rule broadcasts it
        bias_buf = _buffer("bias", bias)
        params.append(bias_buf)
        args.append(("value", bias))
        epilogue_parts.append(lambda s, bt, r, c: L.add(s, _f32(L.Load(bias_buf.dtype, bias_buf,
                                                                      c if along_n else L.const(0)))))
    if activation is not None:
        epilogue_parts.append(lambda s, bt, r, c: activation(s))
    Y = _output(node, tail, params, args, epilogue_parts)
    spec = GemmSpec(
        "matmul", batches, m, n, k,
        Operand(A, lambda bt, r, kk: (L.add(L.mul(bt, m * k), L.add(L.mul(r, k), kk)), None), vector_aligned(dt, k)),
        Operand(B, lambda bt, kk, c: (L.add(L.mul(bt, k * n) if b_batched else L.const(0), L.add(L.mul(kk, n), c)),
                                      None), vector_aligned(dt, n)),
        Y, lambda bt, r, c: L.add(L.mul(bt, m * n), L.add(L.mul(r, n), c)), tuple(params),
        _chain(epilogue_parts))
    return ExternPlan(gemm_kernel(spec, target.multiprocessors), args)


def _output(node, tail, params: list, args: list, parts: list) -> L.Buffer:
    """The kernel's Y: the node's output, or with `tail` (activation, value) the folded
    activation node's output, its activation last in the epilogue."""
    out = node.outputs[0] if tail is None else tail[1]
    if tail is not None:
        parts.append(lambda s, bt, r, c: tail[0](s))
    y = _buffer("Y", out)
    params.append(y)
    args.append(("value", out))
    return y


def _chain(parts):
    if not parts:
        return None

    def apply(s, bt, r, c):
        for part in parts:
            s = part(s, bt, r, c)
        return s
    return apply


def lower_matmul(node, consts, target, schedules, tail=None) -> ExternPlan | None:
    if len(node.inputs) != 2 or not _dtype_ok(node.inputs[0], node.inputs[1], node.outputs[0]):
        return None
    return _product(node, target, tail, node.inputs[0], node.inputs[1])


def lower_linear(node, consts, target, schedules, tail=None) -> ExternPlan | None:
    a, b, bias = node.inputs[0], node.inputs[1], _input(node, 2)
    if not _dtype_ok(a, b, bias, node.outputs[0]) or b.type.rank != 2:
        return None
    try:
        act = activation_fn(REGISTRY[node.op].resolve_attrs(node.attrs, node.describe()), node.describe())
    except NotLowerable:
        return None
    return _product(node, target, tail, a, b, bias, act)


def lower_gemm(node, consts, target, schedules, tail=None) -> ExternPlan | None:
    a, b, c, y = node.inputs[0], node.inputs[1], _input(node, 2), node.outputs[0]
    if not _dtype_ok(a, b, c, y) or a.type.rank != 2 or b.type.rank != 2:
        return None
    attrs = REGISTRY[node.op].resolve_attrs(node.attrs, node.describe())
    alpha, beta, ta, tb = float(attrs["alpha"]), float(attrs["beta"]), attrs["transA"], attrs["transB"]
    m, n = tuple(y.type.shape)
    k = a.type.shape[0] if ta else a.type.shape[1]
    if not worth_tiling(a.type.dtype.name, 1, m, n, k):
        return None
    dt = a.type.dtype
    A, B = _buffer("A", a), _buffer("B", b)
    params, args = [A, B], [("value", a), ("value", b)]
    parts = []
    if alpha != 1.0:
        parts.append(lambda s, bt, r, col: L.mul(s, L.const(alpha, _F32)))
    if c is not None and beta != 0.0:
        cs = (1,) * (2 - c.type.rank) + tuple(c.type.shape)
        if len(cs) != 2 or any(d not in (1, want) for d, want in zip(cs, (m, n))):
            return None
        cbuf = _buffer("C", c)
        params.append(cbuf)
        args.append(("value", c))

        def addend(s, bt, r, col, cs=cs, cbuf=cbuf):
            at = L.add(L.mul(r, cs[1]) if cs[0] > 1 else L.const(0), col if cs[1] > 1 else L.const(0))
            value = _f32(L.Load(cbuf.dtype, cbuf, at))
            return L.add(s, value if beta == 1.0 else L.mul(value, L.const(beta, _F32)))
        parts.append(addend)
    Y = _output(node, tail, params, args, parts)
    a_at = (lambda bt, r, kk: (L.add(L.mul(kk, m), r), None)) if ta else (lambda bt, r, kk: (L.add(L.mul(r, k), kk), None))
    b_at = (lambda bt, kk, col: (L.add(L.mul(col, k), kk), None)) if tb else (lambda bt, kk, col: (L.add(L.mul(kk, n), col), None))
    spec = GemmSpec("gemm", 1, m, n, k, Operand(A, a_at, not ta and vector_aligned(dt, k)),
                    Operand(B, b_at, not tb and vector_aligned(dt, n)), Y,
                    lambda bt, r, col: L.add(L.mul(r, n), col), tuple(params), _chain(parts))
    return ExternPlan(gemm_kernel(spec, target.multiprocessors), args)


def lower_conv(node, consts, target, schedules, tail=None) -> ExternPlan | None:
    x, w, bias, y = node.inputs[0], node.inputs[1], _input(node, 2), node.outputs[0]
    if not _dtype_ok(x, w, bias, y) or x.type.rank < 3:
        return None
    attrs = REGISTRY[node.op].resolve_attrs(node.attrs, node.describe())
    xs, ws, ys = tuple(x.type.shape), tuple(w.type.shape), tuple(y.type.shape)
    kernel = list(ws[2:])
    strides, dilations, begin = window_params(attrs, xs, kernel, ys)
    groups = int(attrs["group"])
    images, channels, in_sp = xs[0], xs[1], xs[2:]
    out_sp = ys[2:]
    cg, mg = ws[1], ys[1] // groups
    window = math.prod(kernel)
    m, n, k = mg, math.prod(out_sp), cg * window
    batches = images * groups
    if not worth_tiling(x.type.dtype.name, batches, m, n, k):
        return None
    dt = x.type.dtype
    X, W = _buffer("X", x), _buffer("W", w)
    params, args = [X, W], [("value", x), ("value", w)]
    in_size = math.prod(in_sp)

    def w_at(bt, r, kk):
        g = L.mod(bt, groups) if groups > 1 else L.const(0)
        return L.add(L.mul(L.add(L.mul(g, mg), r), k), kk), None

    pointwise = all(v == 1 for v in kernel) and all(s == 1 for s in strides) and not any(begin) and out_sp == in_sp

    def x_at(bt, kk, col):
        image, g = (L.div(bt, groups), L.mod(bt, groups)) if groups > 1 else (bt, L.const(0))
        ci, *ks = unravel(kk, (cg, *kernel))
        plane = L.add(L.mul(image, channels), L.add(L.mul(g, cg), ci))
        if pointwise:
            return L.add(L.mul(plane, in_size), col), None
        pos, checks = [], []
        for o, kv, s, d, b, size in zip(unravel(col, tuple(out_sp)), ks, strides, dilations, begin, in_sp):
            p = L.add(L.sub(L.mul(o, s), L.const(b)) if b else L.mul(o, s), L.mul(kv, d) if d != 1 else kv)
            pos.append(p)
            checks += [L.binary("ge", p, L.const(0)), L.binary("lt", p, L.const(size))]
        flat = plane
        for p, size in zip(pos, in_sp):
            flat = L.add(L.mul(flat, size), p)
        pred = checks[0]
        for ch in checks[1:]:
            pred = L.binary("and", pred, ch)
        return flat, pred

    parts = []
    if bias is not None:
        bias_buf = _buffer("bias", bias)
        params.append(bias_buf)
        args.append(("value", bias))

        def add_bias(s, bt, r, col):  # one bias per output channel: the group's row
            g = L.mod(bt, groups) if groups > 1 else L.const(0)
            return L.add(s, _f32(L.Load(bias_buf.dtype, bias_buf, L.add(L.mul(g, mg), r))))
        parts.append(add_bias)
    Y = _output(node, tail, params, args, parts)
    spec = GemmSpec("conv", batches, m, n, k, Operand(W, w_at, vector_aligned(dt, k)),
                    Operand(X, x_at, pointwise and vector_aligned(dt, in_size)), Y,
                    lambda bt, r, col: L.add(L.mul(L.add(L.mul(bt, mg), r), n), col), tuple(params), _chain(parts), "conv")
    return ExternPlan(gemm_kernel(spec, target.multiprocessors), args)


def _absorbing(rule):
    """`rule` whose plans can fold a following activation node into the template's
    epilogue (`ExternPlan.absorb`): a Relu, Clip with constant bounds, Gelu or Swish after
    a convolution is then one launch, its intermediate never written."""
    def lower(node, consts, target, schedules):
        plan = rule(node, consts, target, schedules)
        if plan is not None:
            plan.absorb = lambda nxt: _absorb(rule, node, consts, target, schedules, nxt)
        return plan
    return lower


def _absorb(rule, node, consts, target, schedules, nxt) -> ExternPlan | None:
    attrs = activation_of(nxt)
    if attrs is None or len(nxt.outputs) != 1 or nxt.outputs[0].type != node.outputs[0].type:
        return None
    return rule(node, consts, target, schedules, (activation_fn(attrs, nxt.describe()), nxt.outputs[0]))


for _op, _rule in (("MatMul", lower_matmul), ("Linear", lower_linear), ("Gemm", lower_gemm), ("Conv", lower_conv)):
    get_op(_op).register("extern:cuda", _absorbing(_rule))
