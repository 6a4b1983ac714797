"""Lowering rules of the channels-last (NHWC) ops the layout pass introduces: MaxPoolNhwc,
AveragePoolNhwc, LRNNhwc and ConvNhwc (the loop-IR fallback of the conv microkernels).

Channels are the innermost dim, so the default schedule's vector lanes run over C and
every window tap is one contiguous vector load. A tap's padding test depends only on the
spatial position, never on the channel: the predicate is the same in every lane, so the
backend branches around one vector load instead of gathering. Average pooling divides by
nothing at run time: the reciprocal window sizes are computed here, at compile time, and
packed as a small [OH, OW] constant.
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes, int8
from ...ir.ops._window import resolve_window
from .. import loop_ir as L
from ..te import Compute, Reduce, Tensor, activation_operand, compute_operand, is_int8, is_narrow_float, product_output, wide
from .activation import activation_fn
from .context import LowerContext, NotLowerable


def _acc(dt):
    return dtypes.float32 if is_narrow_float(dt) else dt


def _window(ctx: LowerContext, x: Tensor, kernel, ceil_mode: bool):
    where = ctx.node.describe()
    return resolve_window(ctx.attrs, x.shape[1:-1], kernel, lambda msg: NotLowerable(f"{where}: {msg}"), ceil_mode)


def _taps(win, out_pos, ks, sizes):
    """Input positions of kernel tap `ks` for output position `out_pos`, and whether all lie inside."""
    pos, ok = [], L.const(True, dtypes.bool_)
    for o, k, s, d, b, size in zip(out_pos, ks, win.strides, win.dilations, win.pads_begin, sizes):
        p = L.add(L.sub(L.mul(o, s), b), L.mul(k, d))
        pos.append(p)
        ok = L.binary("and", ok, L.binary("and", L.binary("ge", p, L.const(0)), L.binary("lt", p, L.const(size))))
    return pos, ok


def _lowest(dt):
    return float("-inf") if dt.is_float else int(np.iinfo(dt.numpy).min)


def _max_pool_nhwc(ctx: LowerContext):
    x = ctx.input(0)
    kernel = list(ctx.attrs["kernel_shape"])
    win = _window(ctx, x, kernel, bool(ctx.attrs.get("ceil_mode", 0)))
    acc = _acc(x.dtype)

    def element(idx):
        def value(ks):
            pos, ok = _taps(win, idx[1:-1], ks, x.shape[1:-1])
            return L.cast(wide(x.load_if([idx[0]] + pos + [idx[-1]], ok, L.const(_lowest(x.dtype), x.dtype))), acc)

        return Reduce("max", tuple(kernel), value, None, acc)

    return [Compute(ctx.out_shape(), ctx.out_dtype(), element)]


def _axis_counts(win, axis: int, size: int, out: int, include_pad: bool) -> np.ndarray:
    """How many taps of each output position's window count along one axis (the ONNX rule:
    the input, plus the explicit pads when count_include_pad, never the ceil_mode overhang)."""
    lo = -win.pads_begin[axis] if include_pad else 0
    hi = size + win.pads_end[axis] if include_pad else size
    o = np.arange(out)[:, None]
    k = np.arange(win.kernel[axis])[None, :]
    p = o * win.strides[axis] - win.pads_begin[axis] + k * win.dilations[axis]
    return ((p >= lo) & (p < hi)).sum(axis=1)


def _average_pool_nhwc(ctx: LowerContext):
    x = ctx.input(0)
    kernel = list(ctx.attrs["kernel_shape"])
    win = _window(ctx, x, kernel, bool(ctx.attrs.get("ceil_mode", 0)))
    shape = ctx.out_shape()
    acc = _acc(x.dtype)
    include_pad = bool(ctx.attrs.get("count_include_pad", 0))
    counts = np.ones((), np.int64)
    for a, (size, out) in enumerate(zip(x.shape[1:-1], shape[1:-1])):
        counts = np.multiply.outer(counts, _axis_counts(win, a, size, out, include_pad))  # counts are separable
    inv = ctx.pack((1.0 / np.maximum(counts, 1)).astype(acc.numpy))

    def element(idx):
        def value(ks):
            pos, ok = _taps(win, idx[1:-1], ks, x.shape[1:-1])
            return L.cast(wide(x.load_if([idx[0]] + pos + [idx[-1]], ok, L.const(0, x.dtype))), acc)

        return Reduce("sum", tuple(kernel), value, lambda s: L.mul(s, inv[list(idx[1:-1])]), acc)

    return [Compute(shape, ctx.out_dtype(), element)]


def _lrn_nhwc(ctx: LowerContext):
    """ONNX LRN over the last (channel) axis: x / (bias + alpha/size * sum of squares in the window)^beta.

    The squares go to a scratch tensor padded with zeros along C, so the window sum reads
    contiguous vectors without bounds tests; the division becomes a multiply by pow(., -beta).
    """
    x = ctx.input(0)
    size, alpha, beta, bias = (ctx.attrs[k] for k in ("size", "alpha", "beta", "bias"))
    lo = (size - 1) // 2
    channels = x.shape[-1]
    acc = _acc(x.dtype)

    def square(idx):
        c = L.sub(idx[-1], lo)
        ok = L.binary("and", L.binary("ge", c, L.const(0)), L.binary("lt", c, L.const(channels)))
        v = L.cast(wide(x.load_if(list(idx[:-1]) + [c], ok, L.const(0, x.dtype))), acc)
        return L.mul(v, v)

    squares = ctx.temp(Compute(tuple(x.shape[:-1]) + (channels + size - 1,), acc, square))

    def element(idx):
        def finalize(total):
            denom = L.add(L.const(bias, acc), L.mul(L.const(alpha / size, acc), total))
            return L.mul(L.cast(wide(x[idx]), acc), L.binary("pow", denom, L.const(-beta, acc)))

        return Reduce("sum", (size,), lambda r: squares[list(idx[:-1]) + [L.add(idx[-1], r[0])]], finalize, acc)

    return [Compute(ctx.out_shape(), ctx.out_dtype(), element)]


def _conv_nhwc(ctx: LowerContext):
    """Grouped N-d conv on X [N, spatial..., C] with W [M, C/group, k...]: act(conv + B + residual).

    The fallback for what the conv microkernels do not cover (non-float32 types). A constant
    W is repacked to [k..., C/group, M] so the vector lanes (over M) read contiguous weights.
    """
    x, w = ctx.input(0), ctx.input(1)
    kernel = list(w.shape[2:])
    nsp = len(kernel)
    win = _window(ctx, x, kernel, False)
    shape = ctx.out_shape()
    group = int(ctx.attrs.get("group", 1) or 1)
    icg, ocg = w.shape[1], shape[-1] // group
    acc = _acc(w.dtype)
    # padding reads a zero: for uint8 codes (an int8 chain) that is the zero point's code
    pad = int(ctx.attrs.get("act_zero_point", 0)) if x.dtype.name == "uint8" else 0
    operand, x_operand = compute_operand(ctx.attrs.get("compute"), acc), activation_operand(ctx.attrs, acc)
    act, out = activation_fn(ctx.attrs, ctx.node.op), product_output(ctx.attrs)
    after = bool(ctx.attrs.get("residual_after_activation", 0))
    bias = ctx.inputs[2] if ctx.has(2) else None
    residual = ctx.inputs[3] if ctx.has(3) else None
    packed = ctx.const(1) is not None
    if is_int8(ctx.attrs):  # the weights on their int8 grid, once, at compile time
        codes = bool(ctx.attrs.get("weight_codes"))
        weights = int8.fake_quantize_weights(ctx.require_const(1, "int8 weights"), 0, codes).astype(w.dtype.numpy)
    else:
        weights = ctx.const(1)
    if packed:
        w = ctx.pack(np.transpose(np.asarray(weights), tuple(range(2, 2 + nsp)) + (1, 0)))

    def element(idx):
        n, sp, m = idx[0], idx[1:-1], idx[-1]
        g = L.div(m, ocg) if group > 1 else L.const(0)

        def value(rv):
            ic, ks = rv[0], list(rv[1:])
            pos, ok = _taps(win, sp, ks, x.shape[1:-1])
            xv = x.load_if([n] + pos + [L.add(L.mul(g, icg), ic)], ok, L.const(pad, x.dtype))
            wv = w[ks + [ic, m]] if packed else w[[m, ic] + ks]
            return L.mul(x_operand(xv), operand(wv))

        def finalize(s):
            if bias is not None:
                s = L.add(s, L.cast(wide(bias[[m]]), acc))
            res = L.cast(wide(residual[idx]), acc) if residual is not None else None
            if res is not None and residual.dtype.name == "uint8":  # an int8 chain's codes
                res = L.mul(L.sub(res, L.const(float(ctx.attrs["residual_zero_point"]), acc)),
                            L.const(float(ctx.attrs["residual_scale"]), acc))
            if res is not None and not after:
                s = L.add(s, res)
            s = act(s)
            return out(L.add(s, res) if res is not None and after else s)

        return Reduce("sum", (icg, *kernel), value, finalize, acc)

    return [Compute(shape, ctx.out_dtype(), element)]


RULES = {
    "MaxPoolNhwc": _max_pool_nhwc,
    "AveragePoolNhwc": _average_pool_nhwc,
    "LRNNhwc": _lrn_nhwc,
    "ConvNhwc": _conv_nhwc,
}
