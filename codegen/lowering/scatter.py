"""Lowering rules of Einsum and the scatters, as reductions over the positions that can
reach each output element (TensorScatter's one position per row is a select).

A scatter is turned around: instead of each update writing somewhere, each output
element looks for the updates aimed at it (the last one wins for reduction="none",
as numpy's assignment does; others fold every match into the data value).
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes
from .. import loop_ir as L
from ..te import Compute, Reduce, is_narrow_float, strides_of, wide
from .context import LowerContext, NotLowerable

_COMBINE = {"add": "sum", "mul": "prod", "max": "max", "min": "min"}


def _einsum(ctx: LowerContext):
    eq = ctx.attrs["equation"].replace(" ", "")
    if "..." in eq:
        raise NotLowerable("Einsum with an ellipsis")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if not arrow:
        letters = lhs.replace(",", "")
        rhs = "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1))
    xs = [ctx.input(i) for i in range(len(terms))]
    size = {ch: d for term, x in zip(terms, xs) for ch, d in zip(term, x.shape)}
    reduced = [ch for ch in dict.fromkeys(lhs.replace(",", "")) if ch not in rhs]
    acc = dtypes.float32 if is_narrow_float(xs[0].dtype) else xs[0].dtype

    def element(idx):
        def value(rv):
            at = dict(zip(rhs, idx)) | dict(zip(reduced, rv))
            prod = None
            for term, x in zip(terms, xs):
                v = L.cast(wide(x[[at[ch] for ch in term]]), acc)
                prod = v if prod is None else L.mul(prod, v)
            return prod

        return Reduce("sum", tuple(size[ch] for ch in reduced), value, None, acc)

    return [Compute(ctx.out_shape(), ctx.out_dtype(), element)]


def _wrapped(t, idx, dim: int) -> L.Expr:
    i = L.cast(t[idx], L.INDEX)
    return L.select(L.binary("lt", i, L.const(0)), L.add(i, dim), i)


def _scatter(ctx: LowerContext, data, n_positions: tuple, matches, update_at):
    """out[i] from data[i] and the updates whose target is i: `matches(idx, q)` says update q aims at i."""
    reduction = ctx.attrs["reduction"]

    qstrides = strides_of(n_positions)

    def flat_position(q):
        """Update position q as one row-major index over `n_positions`."""
        flat = L.const(0)
        for qi, s in zip(q, qstrides):
            flat = L.add(flat, L.mul(qi, s))
        return flat

    def last_match(idx):
        def value(q):
            return L.select(matches(idx, q), flat_position(q), L.const(-1))

        return Reduce("max", n_positions, value, None, L.INDEX)

    if reduction == "none":
        pos = ctx.temp(Compute(data.shape, dtypes.int64, last_match))

        def element(idx):
            p = pos[idx]
            hit = L.binary("ge", p, L.const(0))
            return L.select(hit, update_at(idx, L.select(hit, p, L.const(0))), data[idx])

        return [Compute(data.shape, data.dtype, element)]
    if reduction not in _COMBINE:
        raise NotLowerable(f"scatter reduction {reduction!r}")
    combiner = _COMBINE[reduction]

    def folded(idx):
        def value(q):
            neutral = Reduce(combiner, (), None).init(data.dtype)  # the combiner's identity
            return L.select(matches(idx, q), update_at(idx, flat_position(q)), neutral)

        return Reduce(combiner, n_positions, value, lambda a: L.binary(
            {"sum": "add", "prod": "mul", "max": "max", "min": "min"}[combiner], data[idx], a), data.dtype)

    return [Compute(data.shape, data.dtype, folded)]


def _scatter_elements(ctx: LowerContext):
    data, ind, upd = ctx.input(0), ctx.input(1), ctx.input(2)
    axis = ctx.attrs["axis"] % data.rank
    ustrides = strides_of(upd.shape)

    def position(idx, r):
        return [r if d == axis else idx[d] for d in range(data.rank)]

    def matches(idx, q):
        ok = L.const(True, dtypes.bool_)
        for d in range(data.rank):
            if d != axis:
                ok = L.binary("and", ok, L.binary("lt", idx[d], L.const(ind.shape[d])))
        u = [L.select(ok, i, L.const(0)) for i in position(idx, q[0])]
        return L.binary("and", ok, L.binary("eq", _wrapped(ind, u, data.shape[axis]), idx[axis]))

    def update_at(idx, flat_r):
        u = position(idx, flat_r)
        safe = [L.binary("min", i, L.const(d - 1)) for i, d in zip(u, upd.shape)]
        flat = L.const(0)
        for i, s in zip(safe, ustrides):
            flat = L.add(flat, L.mul(i, s))
        return upd.load_flat(flat)

    return _scatter(ctx, data, (ind.shape[axis],), matches, update_at)


def _scatter_nd(ctx: LowerContext):
    data, ind, upd = ctx.input(0), ctx.input(1), ctx.input(2)
    last = ind.shape[-1]
    qshape = tuple(ind.shape[:-1])
    inner = int(np.prod(data.shape[last:], dtype=np.int64))
    istrides = strides_of(data.shape[last:])

    def matches(idx, q):
        ok = L.const(True, dtypes.bool_)
        for k in range(last):
            ok = L.binary("and", ok, L.binary("eq", _wrapped(ind, list(q) + [L.const(k)], data.shape[k]), idx[k]))
        return ok

    def update_at(idx, flat_q):
        flat = L.mul(flat_q, inner)
        for i, s in zip(idx[last:], istrides):
            flat = L.add(flat, L.mul(i, s))
        return upd.load_flat(flat)

    return _scatter(ctx, data, qshape, matches, update_at)


def _tensor_scatter(ctx: LowerContext):
    """TensorScatter (a KV cache update): position j along `axis` of batch row b takes update
    row s = j - write_indices[b] (mod the cache length in circular mode) where 0 <= s < the
    update's length, else keeps the cache's value."""
    cache, update = ctx.input(0), ctx.input(1)
    starts = ctx.input(2) if ctx.has(2) else None
    axis = ctx.attrs["axis"] % cache.rank
    length, rows = cache.shape[axis], update.shape[axis]
    circular = ctx.attrs["mode"] == "circular"

    def element(idx):
        j = idx[axis]
        s = j if starts is None else L.sub(j, L.cast(starts[[idx[0]]], L.INDEX))
        if circular:
            s = L.mod(L.add(L.mod(s, L.const(length)), L.const(length)), L.const(length))
        written = L.binary("and", L.binary("ge", s, L.const(0)), L.binary("lt", s, L.const(rows)))
        at = list(idx)
        at[axis] = L.binary("max", L.binary("min", s, L.const(rows - 1)), L.const(0))
        return L.select(written, update[at], cache[idx])

    return [Compute(ctx.out_shape(), ctx.out_dtype(), element)]


RULES = {"Einsum": _einsum, "ScatterElements": _scatter_elements, "ScatterND": _scatter_nd,
         "TensorScatter": _tensor_scatter}
