"""Reductions along a contiguous row, vectorized: a partial stage plus a small combine.

The schedule vectorizes a stage's innermost OUTPUT dim, and a plain reduction over the
last input axis keeps one scalar accumulator per row. Splitting the row instead gives
SIMD work: a partial stage of shape [..., lanes] whose lane l accumulates elements
l, l + lanes, l + 2*lanes, ... (so the lanes read one contiguous vector per step), then
a combine stage that folds the `lanes` partials and the `n % lanes` tail elements.

    partial[row, l] = combine_{b < n // lanes} value(row, b * lanes + l)
    out[row]        = finalize(combine(partial[row, 0..lanes), value(row, tail...)))

`lanes` fills one native vector of the target (`LowerContext.vector_bits`: 8 float32
lanes on AVX2, 16 on AVX-512), halved while a row holds fewer than four vectors, but never
below 256 bits (vectorized loops of the schedule run at that half width on 512-bit targets
too): the combine stage's scalar work is `lanes + n % lanes`, so the widest vector only pays
on long rows. Measured on AVX-512 (Zen 5, 2 threads): 16 lanes take softmax over rows of
128 from 290 to 245 us, but rows of 24 or 40 from 67 to 92 us and 20 to 57 us; on AVX2
code, 4 lanes instead of 8 take softmax over rows of 24 from 55 to 95 us. Summation order
differs from a sequential loop (lanes-way pairwise): within fp32 rounding.
"""
from __future__ import annotations

from .. import loop_ir as L
from ..te import Compute, Reduce, Tensor, identity
from .context import LowerContext

def lanes_for(n: int, acc, vector_bits: int) -> int:
    """Accumulator lanes of the partial stage for rows of `n` elements (see the module doc)."""
    full = max(1, vector_bits // 8 // acc.itemsize)
    floor = min(full, max(1, 256 // 8 // acc.itemsize))
    lanes = full
    while lanes > floor and n < 4 * lanes:
        lanes //= 2
    return lanes


def worth_splitting(n: int, acc, vector_bits: int) -> bool:
    """Rows shorter than two vectors gain nothing from the extra stage, and a target
    without SIMD vectors (vector_bits 0: a GPU, whose threads share a row) nothing at all."""
    return vector_bits > 0 and n >= 2 * lanes_for(n, acc, vector_bits)


def row_reduce(ctx: LowerContext, out_shape, n: int, combiner: str, value_at, acc, finalize=None, dtype=None,
               name: str = "row") -> Compute:
    """out[idx] = finalize(combine over j < n of value_at(idx, j)), vectorized along j when n is long.

    value_at(idx, j) is the j-th element of the row that output index `idx` reduces; it must
    read contiguous memory as j steps by one for the partial stage to use vector loads.
    """
    out_shape = tuple(out_shape)
    dtype = dtype or acc
    if not worth_splitting(n, acc, ctx.vector_bits):
        return Compute(out_shape, dtype, lambda idx: Reduce(combiner, (n,), lambda r: value_at(list(idx), r[0]), finalize, acc))
    lanes = lanes_for(n, acc, ctx.vector_bits)
    blocks, tail = divmod(n, lanes)

    def partial_element(idx):
        lane = idx[-1]
        return Reduce(combiner, (blocks,), lambda r: value_at(list(idx[:-1]), L.add(L.mul(r[0], lanes), lane)), None, acc)

    partial = ctx.temp(Compute(out_shape + (lanes,), acc, partial_element, name=f"{name}_partial"))

    def element(idx):
        idx = list(idx)

        def value(r):
            if not tail:
                return partial[idx + [r[0]]]
            in_partial = L.binary("lt", r[0], L.const(lanes))
            from_partial = partial.load_if(idx + [r[0]], in_partial, identity(combiner, acc))
            j = L.add(L.const(blocks * lanes), L.binary("max", L.sub(r[0], lanes), L.const(0)))  # always inside the row
            return L.select(in_partial, from_partial, L.cast(value_at(idx, j), acc))

        return Reduce(combiner, (lanes + tail,), value, finalize, acc)

    return Compute(out_shape, dtype, element, name=name)


def row_element(x, src: list, axes: list[int], j: L.Expr) -> L.Expr:
    """x at `src` with the trailing reduce `axes` replaced by the j-th element of their flattened row.

    One axis: plain indexing. Several trailing axes of a stored packed tensor: the row is
    contiguous in memory, so the load is base + j (affine in j, hence a vector load). An
    inlined producer, or a tensor whose rows are apart, over several axes: j is split back
    into indices with div/mod.
    """
    src = list(src)
    if len(axes) == 1:
        src[axes[0]] = j
        return x[src]
    if isinstance(x, Tensor) and x.contiguous:
        for a in axes:
            src[a] = L.const(0)
        return x.load_flat(L.add(x.flat_index(src), j))
    rest = j
    for a in reversed(axes):
        src[a] = L.mod(rest, x.shape[a]) if a != axes[0] else rest
        rest = L.div(rest, x.shape[a])
    return x[src]


def is_trailing(axes: list[int], rank: int) -> bool:
    return bool(axes) and list(axes) == list(range(rank - len(axes), rank))
