"""Lowering rules of the heavy ops: MatMul, Gemm, Linear (bias + activation epilogue), Conv and
pooling, as reductions.

Constant weights are repacked at compile time where the layout matters: Gemm's
transposed B becomes row-major [K, N], so the vectorised output dim reads contiguous
weights. A padded Conv first copies its input into a zero-padded scratch tensor, so the
inner loops load without predicates (contiguous vectors for stride 1).
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes, int8
from .. import loop_ir as L
from ..te import Compute, Reduce, Tensor, activation_operand, compute_operand, is_int8, is_narrow_float, product_output, wide
from .activation import activation_fn
from .context import LowerContext, NotLowerable
from .elementwise import _c


def _acc(dt):
    return dtypes.float32 if is_narrow_float(dt) else dt


def matmul_compute(ctx: LowerContext, a, b, product, finalize, acc, out_dtype) -> Compute:
    """Batched, broadcasting matrix product: finalize(sum_k product(a[..., m, k], b[..., k, n], m, n), m, n)."""
    shape = ctx.out_shape()
    k_dim = a.shape[-1]
    batch = len(shape) - (a.rank > 1) - (b.rank > 1)

    def element(idx):
        bidx = list(idx[:batch])
        m = idx[batch] if a.rank > 1 else L.const(0)
        n = idx[-1] if b.rank > 1 else L.const(0)

        def operand(t, tail):
            lead = t.rank - len(tail)
            pre = bidx[len(bidx) - lead:] if lead else []
            pre = [L.const(0) if d == 1 else i for d, i in zip(t.shape[:lead], pre)]
            return t[pre + tail]

        def value(rv):
            x = operand(a, ([m] if a.rank > 1 else []) + [rv[0]])
            y = operand(b, [rv[0]] + ([n] if b.rank > 1 else []))
            return product(x, y, m, n)

        fin = (lambda s: finalize(s, m, n)) if finalize else None
        return Reduce("sum", (k_dim,), value, fin, acc)

    return Compute(shape, out_dtype, element)


def _matmul(ctx: LowerContext):
    a, b = ctx.input(0), ctx.input(1)
    acc = _acc(a.dtype)

    def product(x, y, m, n):
        return L.mul(L.cast(wide(x), acc), L.cast(wide(y), acc))

    return [matmul_compute(ctx, a, b, product, None, acc, ctx.out_dtype())]


def _quant_param(ctx: LowerContext, i: int, along, dtype):
    """A per-tensor or per-row/column quantization parameter (input i) at row/column `along`."""
    if not ctx.has(i):
        return L.const(0, dtype)
    p = ctx.input(i)
    if all(d == 1 for d in p.shape):
        return L.cast(p[[L.const(0)] * p.rank], dtype)
    if p.rank == 1:
        return L.cast(p[[along]], dtype)
    raise NotLowerable("quantization parameters of rank > 1")


def _centered_product(ctx: LowerContext, azp: int, bzp: int):
    def product(x, y, m, n):
        i64 = L.INDEX
        xa = L.sub(L.cast(x, i64), _quant_param(ctx, azp, m, i64))
        yb = L.sub(L.cast(y, i64), _quant_param(ctx, bzp, n, i64))
        return L.mul(xa, yb)

    return product


def _matmul_integer(ctx: LowerContext):
    a, b = ctx.input(0), ctx.input(1)
    return [matmul_compute(ctx, a, b, _centered_product(ctx, 2, 3), None, L.INDEX, ctx.out_dtype())]


def _qlinear_matmul(ctx: LowerContext):
    a, b = ctx.input(0), ctx.input(3)
    out = ctx.out_dtype()
    info = np.iinfo(out.numpy)
    f64 = dtypes.float64

    def finalize(s, m, n):
        scale = L.div(L.mul(_quant_param(ctx, 1, m, f64), _quant_param(ctx, 4, n, f64)), _quant_param(ctx, 6, L.const(0), f64))
        q = L.add(L.call("round", L.mul(L.cast(s, f64), scale)), _quant_param(ctx, 7, L.const(0), f64))
        return L.binary("min", L.binary("max", q, L.const(float(info.min), f64)), L.const(float(info.max), f64))

    return [matmul_compute(ctx, a, b, _centered_product(ctx, 2, 5), finalize, L.INDEX, out)]


def _linear(ctx: LowerContext):
    """Linear: act(A @ B + bias) (numpy broadcasting of the bias), accumulating like MatMul."""
    a, b = ctx.input(0), ctx.input(1)
    acc = _acc(b.dtype)
    operand, a_operand = compute_operand(ctx.attrs.get("compute"), acc), activation_operand(ctx.attrs, acc)
    if is_int8(ctx.attrs):  # the weights on their int8 grid, once, at compile time
        codes = bool(ctx.attrs.get("weight_codes"))
        b = ctx.pack(int8.fake_quantize_weights(ctx.require_const(1, "int8 weights"), -1, codes).astype(b.dtype.numpy))
    act, out = activation_fn(ctx.attrs, ctx.node.op), product_output(ctx.attrs)
    bias = ctx.inputs[2] if ctx.has(2) else None
    rank = len(ctx.out_shape())

    def product(x, y, m, n):
        return L.mul(a_operand(x), operand(y))

    product_stage = matmul_compute(ctx, a, b, product, None, acc, ctx.out_dtype())

    def element(idx):
        red = product_stage.fn(idx)
        if bias is not None:
            red.finalize = lambda s: out(act(L.add(s, L.cast(wide(bias.bcast(idx, rank)), acc))))
        else:
            red.finalize = lambda s: out(act(s))
        return red

    return [Compute(product_stage.shape, ctx.out_dtype(), element)]


def _gemm(ctx: LowerContext):
    a, b = ctx.input(0), ctx.input(1)
    alpha, beta = ctx.attrs["alpha"], ctx.attrs["beta"]
    trans_a, trans_b = ctx.attrs["transA"], ctx.attrs["transB"]
    if trans_b and ctx.const(1) is not None:
        b, trans_b = ctx.pack(np.asarray(ctx.const(1)).T), 0  # [N, K] -> [K, N] once, at compile time
    k_dim = a.shape[0] if trans_a else a.shape[1]
    shape = ctx.out_shape()
    acc = _acc(a.dtype)
    c = ctx.inputs[2] if ctx.has(2) else None

    def element(idx):
        m, n = idx

        def value(rv):
            k = rv[0]
            x = a[[k, m]] if trans_a else a[[m, k]]
            y = b[[n, k]] if trans_b else b[[k, n]]
            return L.mul(L.cast(wide(x), acc), L.cast(wide(y), acc))

        def finalize(s):
            if alpha != 1.0:
                s = L.mul(s, _c(alpha, s))
            if c is not None and beta != 0.0:
                cv = L.cast(wide(c.bcast(idx, 2)), acc)
                s = L.add(s, cv if beta == 1.0 else L.mul(cv, _c(beta, s)))
            return s

        return Reduce("sum", (k_dim,), value, finalize, acc)

    return [Compute(shape, ctx.out_dtype(), element)]


def _window_params(ctx: LowerContext, x: Tensor, kernel: list[int], out_shape):
    return window_params(ctx.attrs, tuple(x.shape), kernel, out_shape)


def window_params(attrs: dict, x_shape: tuple, kernel: list[int], out_shape):
    """Strides, dilations and leading pads per spatial axis of a convolution or pooling
    window over an [N, C, spatial...] input, auto_pad resolved."""
    n = len(kernel)
    strides = attrs.get("strides") or [1] * n
    dilations = attrs.get("dilations") or [1] * n
    pads = attrs.get("pads") or [0] * (2 * n)
    auto = attrs.get("auto_pad", "NOTSET")
    begin = list(pads[:n])
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin = []
        for i in range(n):
            total = max(0, (out_shape[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - x_shape[2 + i])
            begin.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    elif auto == "VALID":
        begin = [0] * n
    return list(strides), list(dilations), begin


def conv_compute(ctx: LowerContext, x, w, acc, out_dtype, finalize=None, w_shift=None, x_shift=None) -> Compute:
    """N-d grouped convolution: finalize(sum (x - x_shift) * (w - w_shift), oc). Shifts (zero points)
    apply before padding, so padding is a real zero as the integer references define it."""
    shape = ctx.out_shape()
    kernel = list(w.shape[2:])
    nsp = len(kernel)
    strides, dilations, begin = _window_params(ctx, x, kernel, shape)
    group = ctx.attrs["group"]
    icg, ocg = w.shape[1], shape[1] // group
    if any(begin) or any(p for p in (ctx.attrs.get("pads") or [])) or x_shift is not None:
        # Pad (and shift) once into scratch: the reduction then reads without bounds checks.
        ends = [(shape[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 for i in range(nsp)]
        padded_shape = tuple(x.shape[:2]) + tuple(max(e, begin[i] + x.shape[2 + i]) for i, e in enumerate(ends))
        x = ctx.temp(Compute(padded_shape, acc if x_shift is not None else x.dtype, _padded_copy(x, begin, x_shift, acc)))

    def element(idx):
        n, oc, sp = idx[0], idx[1], idx[2:]
        g = L.div(oc, ocg) if group > 1 else L.const(0)

        def value(rv):
            ic, ks = rv[0], rv[1:]
            pos = [L.add(L.mul(o, s), L.mul(k, d)) for o, k, s, d in zip(sp, ks, strides, dilations)]
            xv = L.cast(wide(x[[n, L.add(L.mul(g, icg), ic)] + pos]), acc)
            wv = L.cast(wide(w[[oc, ic] + list(ks)]), acc)
            if w_shift is not None:
                wv = L.sub(wv, w_shift(oc))
            return L.mul(xv, wv)

        return Reduce("sum", (icg, *kernel), value, (lambda s: finalize(s, oc)) if finalize else None, acc)

    return Compute(shape, out_dtype, element)


def _conv(ctx: LowerContext):
    x, w = ctx.input(0), ctx.input(1)
    acc = _acc(x.dtype)
    bias = ctx.inputs[2] if ctx.has(2) else None
    fin = (lambda s, oc: L.add(s, L.cast(wide(bias[[oc]]), acc))) if bias is not None else None
    return [conv_compute(ctx, x, w, acc, ctx.out_dtype(), fin)]


def _conv_integer(ctx: LowerContext):
    x, w = ctx.input(0), ctx.input(1)
    i64 = L.INDEX
    x_shift = (lambda: _quant_param(ctx, 2, L.const(0), i64)) if ctx.has(2) else (lambda: L.const(0))
    return [conv_compute(ctx, x, w, i64, ctx.out_dtype(), None, lambda oc: _quant_param(ctx, 3, oc, i64), x_shift)]


def _conv_transpose(ctx: LowerContext):
    from ...ir.ops.conv import transpose_geometry

    x, w = ctx.input(0), ctx.input(1)
    kernel = list(w.shape[2:])
    begins, _, strides, dilations = transpose_geometry(ctx.attrs, x.shape[2:], kernel, NotLowerable)
    group = ctx.attrs["group"]
    icg, ocg = x.shape[1] // group, w.shape[1]
    acc = _acc(x.dtype)
    bias = ctx.inputs[2] if ctx.has(2) else None

    def element(idx):
        n, oc, sp = idx[0], idx[1], idx[2:]
        g = L.div(oc, ocg) if group > 1 else L.const(0)

        def value(rv):
            ic = L.add(L.mul(g, icg), rv[0])
            ok = L.const(True, dtypes.bool_)
            pos = []
            for o, k, s, d, b, size in zip(sp, rv[1:], strides, dilations, begins, x.shape[2:]):
                t = L.sub(L.add(o, b), L.mul(k, d))  # the input pixel whose window puts k at o, times s
                inside = L.binary("and", L.binary("ge", t, L.const(0)), L.binary("lt", t, L.const(size * s)))
                if s > 1:
                    inside = L.binary("and", inside, L.binary("eq", L.mod(L.select(inside, t, L.const(0)), s), L.const(0)))
                ok = L.binary("and", ok, inside)
                pos.append(L.div(t, s))
            xv = x.load_if([n, ic] + pos, ok, L.const(0, x.dtype))
            wv = w[[ic, L.mod(oc, ocg) if group > 1 else oc] + list(rv[1:])]
            return L.mul(L.cast(wide(xv), acc), L.cast(wide(wv), acc))

        fin = (lambda s: L.add(s, L.cast(wide(bias[[oc]]), acc))) if bias is not None else None
        return Reduce("sum", (icg, *kernel), value, fin, acc)

    return [Compute(ctx.out_shape(), ctx.out_dtype(), element)]


def _padded_copy(x: Tensor, begin: list[int], shift=None, acc=None):
    def element(idx):
        src = list(idx[:2])
        inside = L.const(True, dtypes.bool_)
        for i, b in enumerate(begin):
            j = L.sub(idx[2 + i], b)
            src.append(j)
            ok = L.binary("and", L.binary("ge", j, L.const(0)), L.binary("lt", j, L.const(x.shape[2 + i])))
            inside = L.binary("and", inside, ok)
        if shift is None:
            return x.load_if(src, inside, L.const(0, x.dtype))
        value = L.sub(L.cast(x.load_if(src, inside, L.const(0, x.dtype)), acc), shift())
        return L.select(inside, value, L.const(0, acc))

    return element


def _pool(kind: str):
    def rule(ctx: LowerContext):
        if len(ctx.out_types) > 1 and ctx.out_types[1] is not None:
            raise NotLowerable("MaxPool's Indices output is not lowered")
        x = ctx.input(0)
        kernel = list(ctx.attrs["kernel_shape"])
        shape = ctx.out_shape()
        strides, dilations, begin = _window_params(ctx, x, kernel, shape)
        pads = ctx.attrs.get("pads") or [0] * (2 * len(kernel))
        include_pad = bool(ctx.attrs.get("count_include_pad", 0))
        acc = _acc(x.dtype)

        def element(idx):
            sp = idx[2:]

            def positions(ks):
                return [L.sub(L.add(L.mul(o, s), L.mul(k, d)), b) for o, k, s, d, b in zip(sp, ks, strides, dilations, begin)]

            def inside(pos, lo_pad=None):
                ok = L.const(True, dtypes.bool_)
                for i, p in enumerate(pos):
                    lo = 0 if lo_pad is None else -begin[i]
                    hi = x.shape[2 + i] if lo_pad is None else x.shape[2 + i] + pads[len(kernel) + i]
                    ok = L.binary("and", ok, L.binary("and", L.binary("ge", p, L.const(lo)), L.binary("lt", p, L.const(hi))))
                return ok

            def value(ks):
                pos = positions(ks)
                fill = L.const(_lowest(acc) if kind == "max" else 0, acc)
                v = L.cast(wide(x.load_if(list(idx[:2]) + pos, inside(pos), L.const(0, x.dtype))), acc)
                return L.select(inside(pos), v, fill)

            if kind == "max":
                return Reduce("max", tuple(kernel), value, None, acc)
            if kind == "lp":
                p = float(ctx.attrs["p"])
                return Reduce("sum", tuple(kernel), lambda ks: L.binary("pow", L.call("abs", value(ks)), _c(p, value(ks))),
                              lambda s: L.binary("pow", s, _c(1.0 / p, s)), acc)

            def count_value(ks):
                ok = inside(positions(ks), lo_pad=True if include_pad else None)
                return L.select(ok, L.const(1.0, acc), L.const(0.0, acc))

            counts = Reduce("sum", tuple(kernel), count_value, None, acc)
            return Reduce("sum", tuple(kernel), value, lambda s: L.div(s, _count_expr(counts, acc)), acc)

        return [Compute(shape, ctx.out_dtype(), element)]

    return rule


def _global_lp_pool(ctx: LowerContext):
    x = ctx.input(0)
    p = float(ctx.attrs["p"])
    acc = _acc(x.dtype)
    spatial = tuple(x.shape[2:])

    def element(idx):
        def value(rv):
            v = L.cast(wide(x[list(idx[:2]) + list(rv)]), acc)
            return L.binary("pow", L.call("abs", v), _c(p, v))

        return Reduce("sum", spatial, value, lambda s: L.binary("pow", s, _c(1.0 / p, s)), acc)

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _lowest(dt):
    return float("-inf") if dt.is_float else int(np.iinfo(dt.numpy).min)


def _count_expr(counts: Reduce, acc) -> L.Expr:
    """The number of window positions counted by the average: unrolled at compile time into a sum."""
    import itertools

    total: L.Expr = L.const(0.0, acc)
    for ks in itertools.product(*[range(e) for e in counts.extents]):
        total = L.add(total, counts.body([L.const(k) for k in ks]))
    return total


def _col2im(ctx: LowerContext):
    """Col2Im (torch.nn.Fold) as a gather: output pixel p of channel c sums, over the block
    taps t, column c*prod(block) + t at the block position q with q*stride - pad + t*dilation
    = p on every axis (when that q is whole and inside), in the accumulation type."""
    from ...ir.ops._window import resolve_window

    cols = ctx.input(0)
    image, block = ctx.const(1), ctx.const(2)
    if image is None or block is None:
        raise NotLowerable("image_shape and block_shape (inputs 1, 2) are known only at run time")
    image, block = [int(v) for v in np.asarray(image).reshape(-1)], [int(v) for v in np.asarray(block).reshape(-1)]
    win = resolve_window(ctx.attrs, image, block, NotLowerable)
    acc, nb = _acc(cols.dtype), int(np.prod(block))

    def element(idx):
        n, c, pixel = idx[0], idx[1], idx[2:]

        def value(taps):
            ok, position, tap = L.const(True, dtypes.bool_), L.const(0), L.const(0)
            for p, t, count, s, d, pad, k in zip(pixel, taps, win.out, win.strides, win.dilations, win.pads_begin,
                                                 block):
                shifted = L.sub(L.add(p, pad), L.mul(t, d))  # q * stride when this tap lands on p
                at = L.binary("max", shifted, L.const(0))  # (negative: masked below; kept off div/mod)
                q = L.div(at, s)
                lands = L.binary("and", L.binary("eq", L.mod(at, s), L.const(0)), L.binary("lt", q, L.const(count)))
                ok = L.binary("and", ok, L.binary("and", L.binary("ge", shifted, L.const(0)), lands))
                position = L.add(L.mul(position, count), L.binary("min", q, L.const(count - 1)))
                tap = L.add(L.mul(tap, k), t)
            return L.cast(cols.load_if([n, L.add(L.mul(c, nb), tap), position], ok, 0), acc)

        return Reduce("sum", tuple(block), value, lambda s: L.cast(s, cols.dtype), acc)

    return [Compute(ctx.out_shape(), cols.dtype, element)]


RULES = {
    "Col2Im": _col2im,
    "MatMul": _matmul,
    "MatMulInteger": _matmul_integer,
    "QLinearMatMul": _qlinear_matmul,
    "Gemm": _gemm,
    "Linear": _linear,
    "Conv": _conv,
    "ConvInteger": _conv_integer,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "LpPool": _pool("lp"),
    "GlobalLpPool": _global_lp_pool,
}
