"""Lowering rules of linear (de)quantization to and from 8/16/32-bit integers: per tensor,
per axis or per block scales and zero points, with the references' results.

The references compute in float64. For 8 and 16-bit integers float32 gives the same bits
and vectorizes twice as wide: x / scale is a float32 division either way, its rounding to
an integer is exact, and every integer that survives the clamp (|q| < 2^16) is exact in
float32 (larger ones clamp to the same bound); dequantizing multiplies an exact integer by
a float32 scale, a product float64 holds exactly and float32 rounds once, like the cast
back. 32-bit integers keep float64 (their codes need more than 24 bits)."""
from __future__ import annotations

import ml_dtypes

from ...ir import dtypes
from .. import loop_ir as L
from ..narrow_floats import NARROW_FLOATS
from ..te import Compute, wide
from .context import LowerContext, NotLowerable
from .elementwise import saturate

F64 = dtypes.float64


def _param(ctx: LowerContext, i: int, idx, rank: int):
    """Input i (scale or zero point) at the element that applies to x[idx]."""
    p = ctx.input(i)
    block = ctx.attrs["block_size"]
    if not block and p.rank <= 1 and all(d == 1 for d in p.shape):
        return p[[L.const(0)] * p.rank]
    axis = ctx.attrs["axis"] % rank
    if block:
        at = list(idx)
        at[axis] = L.div(idx[axis], block)
        return p[at]
    return p[[idx[axis]]]


def _integer_target(dt):
    if not dt.is_int and dt not in NARROW_FLOATS:
        raise NotLowerable(f"quantization to {dt} (only integers and float8 are lowered)")


def _work_type(integer) -> dtypes.DType:
    """The float type (de)quantization to/from `integer` (or float8) computes in (see the module doc)."""
    return dtypes.float32 if integer.bits <= 16 else F64


def _quantize(ctx: LowerContext):
    x = ctx.input(0)
    out = ctx.out_dtype()
    _integer_target(out)
    work = _work_type(out)
    if out in NARROW_FLOATS:  # no rounding to integers: the store rounds to out's grid; saturate clamps first
        def element(idx):
            scale = wide(_param(ctx, 1, idx, x.rank))
            q = L.cast(L.div(L.cast(wide(x[idx]), scale.dtype), scale), work)
            if ctx.has(2):
                q = L.add(q, L.cast(_param(ctx, 2, idx, x.rank), work))
            return saturate(q, out) if ctx.attrs.get("saturate", 1) else q

        return [Compute(ctx.out_shape(), out, element)]
    info = ml_dtypes.iinfo(out.numpy)  # numpy's iinfo does not know 4 and 2-bit integers

    def element(idx):
        scale = wide(_param(ctx, 1, idx, x.rank))
        q = L.cast(L.div(L.cast(wide(x[idx]), scale.dtype), scale), work)
        q = L.call("round", q)
        if ctx.has(2):
            q = L.add(q, L.cast(_param(ctx, 2, idx, x.rank), work))
        return L.binary("min", L.binary("max", q, L.const(float(info.min), work)), L.const(float(info.max), work))

    return [Compute(ctx.out_shape(), out, element)]


def _dequantize(ctx: LowerContext):
    x = ctx.input(0)
    _integer_target(x.dtype)

    work = _work_type(x.dtype)

    def element(idx):
        y = L.cast(x[idx], work)
        if ctx.has(2):
            y = L.sub(y, L.cast(_param(ctx, 2, idx, x.rank), work))
        return L.mul(y, L.cast(wide(_param(ctx, 1, idx, x.rank)), work))

    return [Compute(ctx.out_shape(), ctx.out_dtype(), element)]


# Below this many elements on the last axis the range is reduced as one flattened row.
_COLUMNS_WORTH_KEEPING = 16


def _tensor_range(ctx: LowerContext, x, combiner: str):
    """min or max over all of x, as a scalar temp. With a long enough last axis, first per
    last-axis position over the other axes (a stage whose output axis is the contiguous one:
    vector loads, per-channel operands of a fused producer loaded as vectors, threads over
    column blocks), then over those; else one vectorized row reduction of the flattened
    tensor (whose lanes would need a division per element to find a channel)."""
    from .reduction import reduce_over

    f32 = dtypes.float32
    axes = list(range(x.rank))
    if x.rank >= 2 and x.shape[-1] >= _COLUMNS_WORTH_KEEPING:
        columns = ctx.temp(reduce_over(x, axes[:-1], False, combiner, acc=f32))
        return ctx.temp(reduce_over(columns, [0], False, combiner, acc=f32, ctx=ctx))
    return ctx.temp(reduce_over(x, axes, False, combiner, acc=f32, ctx=ctx))


def _dynamic_quantize(ctx: LowerContext):
    """uint8 with scale (max(x, 0) - min(x, 0)) / 255 and the zero point that maps 0 exactly.
    The range is reduced once (`_tensor_range`), and the scale and zero point computed once
    into scalars the quantizing stage reads (not again per element)."""
    x = ctx.input(0)
    f32 = dtypes.float32
    lo, hi = _tensor_range(ctx, x, "min"), _tensor_range(ctx, x, "max")
    zero = L.const(0.0, f32)

    def scale(_=None):
        return L.div(L.sub(L.binary("max", hi[[]], zero), L.binary("min", lo[[]], zero)), L.const(255.0, f32))

    s_t = ctx.temp(Compute((), f32, scale))

    def zero_point(_=None):
        s = s_t[[]]
        zp = L.call("round", L.div(L.call("neg", L.binary("min", lo[[]], zero)), s))
        zp = L.binary("min", L.binary("max", zp, zero), L.const(255.0, f32))
        return L.select(L.binary("eq", s, zero), zero, zp)  # an all-zero input: zeros quantize to 0

    zp_t = ctx.temp(Compute((), f32, zero_point))

    def element(idx):
        s = s_t[[]]
        q = L.add(L.call("round", L.div(L.cast(wide(x[idx]), f32), s)), zp_t[[]])
        q = L.binary("min", L.binary("max", q, zero), L.const(255.0, f32))
        return L.select(L.binary("eq", s, zero), zero, q)

    return [Compute(x.shape, dtypes.uint8, element), Compute((), f32, lambda _=None: s_t[[]]),
            Compute((), dtypes.uint8, lambda _=None: zp_t[[]])]


RULES = {"QuantizeLinear": _quantize, "DequantizeLinear": _dequantize, "DynamicQuantizeLinear": _dynamic_quantize}
