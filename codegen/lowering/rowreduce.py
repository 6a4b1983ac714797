"""Reductions along a contiguous row, vectorized: a partial stage plus a small combine.

The schedule vectorizes a stage's innermost OUTPUT dim, and a plain reduction over the
last input axis keeps one scalar accumulator per row. Splitting the row instead gives
SIMD work: a partial stage of shape [..., lanes] whose lane l accumulates elements
l, l + lanes, l + 2*lanes, ... (so the lanes read one contiguous vector per step), then
a combine stage that folds the `lanes` partials and the `n % lanes` tail elements.

    partial[row, l] = combine_{b < n // lanes} value(row, b * lanes + l)
    out[row]        = finalize(combine(partial[row, 0..lanes), value(row, tail...)))

Summation order differs from a sequential loop (lanes-way pairwise): within fp32 rounding.
"""
from __future__ import annotations

from .. import loop_ir as L
from ..te import Compute, Reduce, Tensor, identity
from .context import LowerContext

VECTOR_BYTES = 32  # one AVX2 register: 8 float32 lanes


def lanes_for(acc) -> int:
    return max(1, VECTOR_BYTES // acc.itemsize)


def worth_splitting(n: int, acc) -> bool:
    """Rows shorter than two vectors gain nothing from the extra stage."""
    return n >= 2 * lanes_for(acc)


def row_reduce(ctx: LowerContext, out_shape, n: int, combiner: str, value_at, acc, finalize=None, dtype=None,
               name: str = "row") -> Compute:
    """out[idx] = finalize(combine over j < n of value_at(idx, j)), vectorized along j when n is long.

    value_at(idx, j) is the j-th element of the row that output index `idx` reduces; it must
    read contiguous memory as j steps by one for the partial stage to use vector loads.
    """
    out_shape = tuple(out_shape)
    dtype = dtype or acc
    if not worth_splitting(n, acc):
        return Compute(out_shape, dtype, lambda idx: Reduce(combiner, (n,), lambda r: value_at(list(idx), r[0]), finalize, acc))
    lanes = lanes_for(acc)
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

    One axis: plain indexing. Several trailing axes of a stored tensor: the row is contiguous
    in memory, so the load is base + j (affine in j, hence a vector load). An inlined
    producer over several axes: j is split back into indices with div/mod.
    """
    src = list(src)
    if len(axes) == 1:
        src[axes[0]] = j
        return x[src]
    if isinstance(x, Tensor):
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
