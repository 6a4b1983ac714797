"""Lowering rules of reductions and normalisations: reduce axes plus a combiner.

Narrow floats accumulate in float32. Numerically touchy reductions take two stages, as
the references do: LogSumExp and Softmax subtract the maximum first; norms compute the
mean before the variance.
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes
from .. import loop_ir as L
from ..te import Compute, Reduce, Tensor, is_narrow_float, wide
from .context import LowerContext, NotLowerable
from .elementwise import _c
from .rowreduce import is_trailing, row_element, row_reduce, worth_splitting


def _acc_dtype(dt):
    return dtypes.float32 if is_narrow_float(dt) else dt


def _reduce_axes(ctx: LowerContext, rank: int) -> list[int]:
    if ctx.has(1):
        axes = ctx.require_const(1, "axes")
        axes = [int(a) % rank for a in np.asarray(axes).reshape(-1)]
    else:
        axes = []
    if not axes:
        return [] if ctx.attrs.get("noop_with_empty_axes") else list(range(rank))
    return sorted(set(axes))


def reduce_over(x: Tensor, axes: list[int], keepdims: bool, combiner: str, body=None, finalize=None, acc=None,
                ctx: LowerContext | None = None):
    """A Compute reducing `x` over `axes`; body(value) maps each element, finalize(acc, n) the result.

    Given `ctx`, a reduction over trailing (contiguous) axes is split into a vectorized
    partial stage plus a combine (see rowreduce); without it, one scalar accumulator per output.
    """
    kept = [a for a in range(x.rank) if a not in axes]
    shape = [1 if a in axes else d for a, d in enumerate(x.shape)] if keepdims else [x.shape[a] for a in kept]
    extents = tuple(x.shape[a] for a in axes)
    count = int(np.prod(extents, dtype=np.int64))
    acc = acc or _acc_dtype(x.dtype)

    def source(idx):
        src = [L.const(0)] * x.rank
        for k, a in enumerate(kept):
            src[a] = idx[a] if keepdims else idx[k]
        return src

    fin = (lambda a: finalize(a, count)) if finalize else None
    if ctx is not None and is_trailing(axes, x.rank) and worth_splitting(count, acc, ctx.vector_bits):
        def value_at(idx, j):
            v = L.cast(wide(row_element(x, source(idx), axes, j)), acc)
            return body(v) if body else v

        return row_reduce(ctx, shape, count, combiner, value_at, acc, fin, x.dtype)

    def element(idx):
        def value(rv):
            src = source(idx)
            for a, r in zip(axes, rv):
                src[a] = r
            v = L.cast(wide(x[src]), acc)
            return body(v) if body else v

        return Reduce(combiner, extents, value, fin, acc)

    return Compute(tuple(shape), x.dtype, element)


def _reduce(combiner: str, body=None, finalize=None):
    def rule(ctx: LowerContext):
        x = ctx.input(0)
        axes = _reduce_axes(ctx, x.rank)
        out = reduce_over(x, axes, bool(ctx.attrs["keepdims"]), combiner, body, finalize, ctx=ctx)
        out.dtype = ctx.out_dtype()
        return [out]

    return rule


def _mean(acc, n):
    return L.div(acc, _c(n, acc)) if acc.dtype.is_float else L.div(acc, _c(max(n, 1), acc))


def _log_sum_exp(ctx: LowerContext):
    x = ctx.input(0)
    axes = _reduce_axes(ctx, x.rank)
    m = ctx.temp(reduce_over(x, axes, True, "max", ctx=ctx))
    m.buffer = L.Buffer(m.buffer.name, _acc_dtype(x.dtype), m.buffer.size)
    shape = ctx.out_shape()
    keep = bool(ctx.attrs["keepdims"])
    kept = [a for a in range(x.rank) if a not in axes]
    extents = tuple(x.shape[a] for a in axes)

    def element(idx):
        full = list(idx) if keep else None
        if not keep:
            full = [L.const(0)] * x.rank
            for k, a in enumerate(kept):
                full[a] = idx[k]
        mx = m[[L.const(0) if a in axes else full[a] for a in range(x.rank)]]
        safe = L.select(L.call("isinf", mx), _c(0.0, mx), mx)

        def value(rv):
            src = list(full)
            for a, r in zip(axes, rv):
                src[a] = r
            return L.call("exp", L.sub(wide(x[src]), safe))

        return Reduce("sum", extents, value, lambda acc: L.add(L.call("log", acc), safe), mx.dtype)

    return [Compute(shape, ctx.out_dtype(), element)]


def softmax_stage(ctx: LowerContext, x, axis: int, log: bool, dtype) -> Compute:
    """(Log)softmax of x along `axis`; its max and sum stages go to scratch."""
    acc = _acc_dtype(x.dtype)
    if axis == x.rank - 1 and worth_splitting(x.shape[axis], acc, ctx.vector_bits):
        return _softmax_last_axis(ctx, x, log, dtype, acc)
    m = ctx.temp(reduce_over(x, [axis], True, "max"))
    m.buffer = L.Buffer(m.buffer.name, acc, m.buffer.size)

    def shifted(idx):
        at = list(idx)
        at[axis] = L.const(0)
        return L.sub(wide(x[idx]), m[at])

    def exp_body(idx):
        def value(rv):
            src = list(idx)
            src[axis] = rv[0]
            return L.call("exp", shifted(src))

        return Reduce("sum", (x.shape[axis],), value, None, acc)

    s_shape = tuple(1 if a == axis else d for a, d in enumerate(x.shape))
    s = ctx.temp(Compute(s_shape, acc, exp_body))

    def element(idx):
        at = list(idx)
        at[axis] = L.const(0)
        if log:
            return L.sub(shifted(idx), L.call("log", s[at]))
        return L.div(L.call("exp", shifted(idx)), s[at])

    return Compute(x.shape, dtype, element)


def _softmax_last_axis(ctx: LowerContext, x, log: bool, dtype, acc) -> Compute:
    """Softmax over contiguous rows: vectorized max and exp-sum stages (rowreduce); the sum
    stage stores 1/sum (or log(sum)) so the output stage multiplies (subtracts) per element."""
    n = x.shape[-1]
    rows = tuple(x.shape[:-1]) + (1,)

    def element_at(idx, j):
        return L.cast(wide(x[list(idx[:-1]) + [j]]), acc)

    m = ctx.temp(row_reduce(ctx, rows, n, "max", element_at, acc, name="rowmax"))

    def exp_at(idx, j):
        return L.call("exp", L.sub(element_at(idx, j), m[list(idx)]))

    fin = (lambda t: L.call("log", t)) if log else (lambda t: L.div(_c(1.0, t), t))
    s = ctx.temp(row_reduce(ctx, rows, n, "sum", exp_at, acc, fin, name="rowsum"))

    def element(idx):
        at = list(idx[:-1]) + [L.const(0)]
        shifted = L.sub(L.cast(wide(x[idx]), acc), m[at])
        if log:
            return L.sub(shifted, s[at])
        return L.mul(L.call("exp", shifted), s[at])

    return Compute(x.shape, dtype, element)


def _softmax(log: bool):
    def rule(ctx: LowerContext):
        x = ctx.input(0)
        return [softmax_stage(ctx, x, ctx.attrs["axis"] % x.rank, log, x.dtype)]

    return rule


def _nll(ctx: LowerContext, logp, target, weight, out_dtype) -> Compute:
    """Negative log likelihood of `target` classes in log-probabilities `logp` [N, C, d...]."""
    ignore = ctx.attrs["ignore_index"]
    acc = _acc_dtype(out_dtype)

    def term(tidx):
        t = L.cast(target[tidx], L.INDEX)
        keep = L.binary("ne", t, L.const(ignore)) if ignore is not None else L.const(True, dtypes.bool_)
        safe = L.select(keep, t, L.const(0))
        w = L.cast(wide(weight[[safe]]), acc) if weight is not None else L.const(1.0, acc)
        w = L.select(keep, w, L.const(0.0, acc))
        src = [tidx[0], safe] + list(tidx[1:])
        return L.mul(L.call("neg", L.cast(wide(logp[src]), acc)), w), w

    reduction = ctx.attrs["reduction"]
    if reduction == "none":
        return Compute(target.shape, out_dtype, lambda idx: term(idx)[0])
    if reduction not in ("sum", "mean"):
        raise NotLowerable(f"reduction={reduction!r}")
    finalize = None
    if reduction == "mean":
        wsum = ctx.temp(Compute((), acc, lambda idx: Reduce("sum", target.shape, lambda rv: term(rv)[1], None, acc)))
        finalize = lambda total: L.div(total, wsum[[]])  # noqa: E731 - weighted mean: ignored targets leave both sums
    return Compute((), out_dtype, lambda idx: Reduce("sum", target.shape, lambda rv: term(rv)[0], finalize, acc))


def _nll_loss(ctx: LowerContext):
    weight = ctx.input(2) if ctx.has(2) else None
    return [_nll(ctx, ctx.input(0), ctx.input(1), weight, ctx.out_dtype())]


def _softmax_cross_entropy(ctx: LowerContext):
    x = ctx.input(0)
    lp = ctx.temp(softmax_stage(ctx, x, 1, True, _acc_dtype(x.dtype)))
    lp.buffer = L.Buffer(lp.buffer.name, _acc_dtype(x.dtype), lp.buffer.size)
    weight = ctx.input(2) if ctx.has(2) else None
    outs = [_nll(ctx, lp, ctx.input(1), weight, ctx.out_dtype())]
    if len(ctx.out_types) > 1 and ctx.out_types[1] is not None:
        outs.append(Compute(x.shape, ctx.out_dtype(1), lambda idx: lp[idx]))
    return outs


def _arg(kind: str):
    def rule(ctx: LowerContext):
        x = ctx.input(0)
        axis = ctx.attrs["axis"] % x.rank
        last = bool(ctx.attrs["select_last_index"])
        m = ctx.temp(reduce_over(x, [axis], True, kind))
        keep = bool(ctx.attrs["keepdims"])

        def element(idx):
            full = list(idx)
            if not keep:
                full.insert(axis, L.const(0))
            at = list(full)
            at[axis] = L.const(0)
            target = m[at]

            def value(rv):
                src = list(full)
                src[axis] = rv[0]
                hit = L.binary("eq", x[src], target)
                return L.select(hit, rv[0], L.const(-1 if last else x.shape[axis]))

            return Reduce("max" if last else "min", (x.shape[axis],), value, None, L.INDEX)

        return [Compute(ctx.out_shape(), dtypes.int64, element)]

    return rule


def _global_pool(combiner: str):
    def rule(ctx: LowerContext):
        x = ctx.input(0)
        out = reduce_over(x, list(range(2, x.rank)), True, combiner, finalize=_mean if combiner == "sum" else None)
        return [out]

    return rule


def _channel(t: Tensor, c: L.Expr) -> L.Expr:
    return wide(t[[c]])


def _batch_norm(ctx: LowerContext):
    if ctx.attrs["training_mode"]:
        raise NotLowerable("BatchNormalization in training mode")
    x, scale, bias, mean, var = (ctx.input(i) for i in range(5))
    eps = ctx.attrs["epsilon"]

    def element(idx):
        c = idx[1]
        v = wide(x[idx])
        inv = L.div(_channel(scale, c), L.call("sqrt", L.add(_channel(var, c), _c(eps, v))))
        return L.add(L.mul(L.sub(v, _channel(mean, c)), inv), _channel(bias, c))

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _moments(ctx: LowerContext, x: Tensor, axes: list[int], acc):
    """Scratch tensors holding the mean and 1/sqrt(var + eps) over `axes` (keepdims)."""
    eps = ctx.attrs["epsilon"]
    mean = ctx.temp(reduce_over(x, axes, True, "sum", finalize=_mean, acc=acc, ctx=ctx))
    mean.buffer = L.Buffer(mean.buffer.name, acc, mean.buffer.size)
    extents = tuple(x.shape[a] for a in axes)
    count = int(np.prod(extents, dtype=np.int64))

    def inv_std(s):
        return L.div(_c(1.0, s), L.call("sqrt", L.add(L.div(s, _c(count, s)), _c(eps, s))))

    if is_trailing(axes, x.rank) and worth_splitting(count, acc, ctx.vector_bits):
        def squared_at(idx, j):
            d = L.sub(L.cast(wide(row_element(x, list(idx), axes, j)), acc), mean[list(idx)])
            return L.mul(d, d)

        inv = ctx.temp(row_reduce(ctx, mean.shape, count, "sum", squared_at, acc, inv_std, name="invstd"))
        return mean, inv

    def var_element(idx):
        mu = mean[idx]

        def value(rv):
            src = list(idx)
            for a, r in zip(axes, rv):
                src[a] = r
            d = L.sub(L.cast(wide(x[src]), acc), mu)
            return L.mul(d, d)

        return Reduce("sum", extents, value, inv_std, acc)

    inv = ctx.temp(Compute(mean.shape, acc, var_element))
    return mean, inv


def _layer_norm(ctx: LowerContext):
    x, scale = ctx.input(0), ctx.input(1)
    axis = ctx.attrs["axis"] % x.rank
    axes = list(range(axis, x.rank))
    acc = ctx.attrs["stash_type"] if ctx.attrs["stash_type"].is_float else dtypes.float32
    mean, inv = _moments(ctx, x, axes, acc)
    rank = x.rank

    def element(idx):
        at = [L.const(0) if a in axes else i for a, i in enumerate(idx)]
        y = L.mul(L.sub(L.cast(wide(x[idx]), acc), mean[at]), inv[at])
        y = L.mul(y, L.cast(wide(scale.bcast(idx, rank)), acc))
        if ctx.has(2):
            y = L.add(y, L.cast(wide(ctx.input(2).bcast(idx, rank)), acc))
        return y

    outs = [Compute(ctx.out_shape(), x.dtype, element)]
    for k, src in ((1, mean), (2, inv)):
        if len(ctx.out_types) > k and ctx.out_types[k] is not None:
            outs.append(Compute(ctx.out_shape(k), ctx.out_dtype(k), lambda idx, src=src: src[idx]))
    return outs


def _instance_norm(ctx: LowerContext):
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    axes = list(range(2, x.rank))
    acc = dtypes.float32 if is_narrow_float(x.dtype) else x.dtype
    mean, inv = _moments(ctx, x, axes, acc)

    def element(idx):
        at = [L.const(0) if a in axes else i for a, i in enumerate(idx)]
        y = L.mul(L.sub(L.cast(wide(x[idx]), acc), mean[at]), inv[at])
        return L.add(L.mul(y, _channel(scale, idx[1])), _channel(bias, idx[1]))

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _group_norm(ctx: LowerContext):
    x, scale, bias = ctx.input(0), ctx.input(1), ctx.input(2)
    groups = ctx.attrs["num_groups"]
    acc = ctx.attrs["stash_type"]
    eps = ctx.attrs["epsilon"]
    cg = x.shape[1] // groups
    extents = (cg,) + tuple(x.shape[2:])
    count = int(np.prod(extents, dtype=np.int64))

    def member(idx, rv):  # element rv of group (n, g) = idx
        return L.cast(wide(x[[idx[0], L.add(L.mul(idx[1], cg), rv[0])] + list(rv[1:])]), acc)

    mean = ctx.temp(Compute((x.shape[0], groups), acc, lambda idx: Reduce(
        "sum", extents, lambda rv: member(idx, rv), lambda s: L.div(s, _c(count, s)), acc)))

    def inv_std(idx):
        def value(rv):
            d = L.sub(member(idx, rv), mean[idx])
            return L.mul(d, d)

        return Reduce("sum", extents, value, lambda s: L.div(_c(1.0, s), L.call(
            "sqrt", L.add(L.div(s, _c(count, s)), _c(eps, s)))), acc)

    inv = ctx.temp(Compute((x.shape[0], groups), acc, inv_std))

    def element(idx):
        at = [idx[0], L.div(idx[1], cg)]
        y = L.cast(L.mul(L.sub(L.cast(wide(x[idx]), acc), mean[at]), inv[at]), x.dtype)  # rounds like the reference
        return L.add(L.mul(wide(y), wide(scale[[idx[1]]])), wide(bias[[idx[1]]]))

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _lrn(ctx: LowerContext):
    x = ctx.input(0)
    size, alpha, beta, bias = (ctx.attrs[k] for k in ("size", "alpha", "beta", "bias"))
    lo = (size - 1) // 2
    channels = x.shape[1]

    def element(idx):
        def value(rv):
            c = L.add(L.sub(idx[1], lo), rv[0])
            ok = L.binary("and", L.binary("ge", c, L.const(0)), L.binary("lt", c, L.const(channels)))
            src = list(idx)
            src[1] = c
            v = wide(x.load_if(src, ok, L.const(0, x.dtype)))
            return L.mul(v, v)

        def finalize(sq):
            denom = L.binary("pow", L.add(_c(bias, sq), L.mul(_c(alpha / size, sq), sq)), _c(beta, sq))
            return L.div(wide(x[idx]), denom)

        return Reduce("sum", (size,), value, finalize, _acc_dtype(x.dtype))

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _keepdims_at(idx, axes):
    return [L.const(0) if a in axes else i for a, i in enumerate(idx)]


def _rms_norm(ctx: LowerContext):
    x, scale = ctx.input(0), ctx.input(1)
    axes = list(range(ctx.attrs["axis"] % x.rank, x.rank))
    acc = ctx.attrs["stash_type"]
    eps = ctx.attrs["epsilon"]
    inv = ctx.temp(reduce_over(x, axes, True, "sum", body=lambda v: L.mul(v, v), acc=acc, finalize=lambda s, n: L.div(
        _c(1.0, s), L.call("sqrt", L.add(L.div(s, _c(n, s)), _c(eps, s)))), ctx=ctx))
    inv.buffer = L.Buffer(inv.buffer.name, acc, inv.buffer.size)

    def element(idx):
        y = L.cast(L.mul(L.cast(wide(x[idx]), acc), inv[_keepdims_at(idx, axes)]), x.dtype)  # rounds like the reference
        return L.mul(wide(y), wide(scale.bcast(idx, x.rank)))

    return [Compute(ctx.out_shape(), ctx.out_dtype(), element)]


def _lp_norm(ctx: LowerContext):
    x = ctx.input(0)
    axis = ctx.attrs["axis"] % x.rank
    p = ctx.attrs["p"]
    if p not in (1, 2):
        raise NotLowerable(f"LpNormalization p={p}")
    body = (lambda v: L.call("abs", v)) if p == 1 else (lambda v: L.mul(v, v))
    fin = None if p == 1 else (lambda s, n: L.call("sqrt", s))
    norm = ctx.temp(reduce_over(x, [axis], True, "sum", body=body, finalize=fin))
    norm.buffer = L.Buffer(norm.buffer.name, _acc_dtype(x.dtype), norm.buffer.size)

    def element(idx):
        n = norm[_keepdims_at(idx, [axis])]
        zero = L.binary("eq", n, _c(0.0, n))
        return L.select(zero, _c(0.0, n), L.div(wide(x[idx]), L.select(zero, _c(1.0, n), n)))

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _mvn(ctx: LowerContext):
    x = ctx.input(0)
    axes = sorted(a % x.rank for a in ctx.attrs["axes"])
    acc = _acc_dtype(x.dtype)
    mean = ctx.temp(reduce_over(x, axes, True, "sum", finalize=_mean, acc=acc))
    sq = ctx.temp(reduce_over(x, axes, True, "sum", body=lambda v: L.mul(v, v), finalize=_mean, acc=acc))
    for t in (mean, sq):
        t.buffer = L.Buffer(t.buffer.name, acc, t.buffer.size)

    def element(idx):
        at = _keepdims_at(idx, axes)
        mu = mean[at]
        var = L.binary("max", L.sub(sq[at], L.mul(mu, mu)), _c(0.0, mu))
        return L.div(L.sub(wide(x[idx]), mu), L.add(L.call("sqrt", var), _c(1e-9, mu)))

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _hardmax(ctx: LowerContext):
    x = ctx.input(0)
    axis = ctx.attrs["axis"] % x.rank
    m = ctx.temp(reduce_over(x, [axis], True, "max"))

    def first_max(idx):
        def value(rv):
            src = list(idx)
            src[axis] = rv[0]
            return L.select(L.binary("eq", x[src], m[idx]), rv[0], L.const(x.shape[axis]))

        return Reduce("min", (x.shape[axis],), value, None, L.INDEX)

    first = ctx.temp(Compute(m.shape, dtypes.int64, first_max))

    def element(idx):
        hit = L.binary("eq", first[_keepdims_at(idx, [axis])], idx[axis])
        return L.select(hit, L.const(1, x.dtype), L.const(0, x.dtype))

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _cumulative(combiner: str):
    def rule(ctx: LowerContext):
        x = ctx.input(0)
        axis = int(np.asarray(ctx.require_const(1, "axis")).reshape(-1)[0]) % x.rank
        exclusive, reverse = ctx.attrs["exclusive"], ctx.attrs["reverse"]
        n = x.shape[axis]
        acc = _acc_dtype(x.dtype)

        def element(idx):
            i = idx[axis]

            def value(rv):
                r = rv[0]
                # r contributes when it lies before i (after i when reversed); i itself unless exclusive
                rel = L.binary("ge" if reverse else "le", r, i) if not exclusive else L.binary("gt" if reverse else "lt", r, i)
                src = list(idx)
                src[axis] = r
                ident = L.const(0 if combiner == "sum" else 1, acc)
                return L.select(rel, L.cast(wide(x[src]), acc), ident)

            return Reduce(combiner, (n,), value, None, acc)

        return [Compute(ctx.out_shape(), x.dtype, element)]

    return rule


def _top_k(ctx: LowerContext):
    """TopK by ranks: element i's rank along the axis is how many elements come before it in
    the order (larger first, or smaller first; NaN counts as the largest, as the reference's
    sort has it; ties by lower index). Output position j holds the element whose rank is j.
    Two reductions over the axis per element: quadratic in its length (a classifier's top-5
    over 1000 classes is a million comparisons; a detector's top 1000 of 20000 anchors would
    want a sort instead)."""
    x = ctx.input(0)
    axis = ctx.attrs["axis"] % x.rank
    n = x.shape[axis]
    largest = bool(ctx.attrs["largest"])

    def greater(a, b):  # a sorts after b ascending; NaN above every number
        if not x.dtype.is_float:
            return L.binary("gt", a, b)
        nan_a, nan_b = L.call("isnan", a), L.call("isnan", b)
        return L.binary("or", L.binary("gt", a, b), L.binary("and", nan_a, L.call("not", nan_b)))

    def equal(a, b):
        same = L.binary("eq", a, b)
        return L.binary("or", same, L.binary("and", L.call("isnan", a), L.call("isnan", b))) if x.dtype.is_float else same

    def at(idx, i):
        where = list(idx)
        where[axis] = i
        return where

    def rank_of(idx):
        mine = x[idx]

        def before(r):
            other = x[at(idx, r[0])]
            ahead = greater(other, mine) if largest else greater(mine, other)
            tie_lower = L.binary("and", equal(other, mine), L.binary("lt", r[0], idx[axis]))
            return L.select(L.binary("or", ahead, tie_lower), L.const(1), L.const(0))
        return Reduce("sum", (n,), before, None, L.INDEX)

    rank = ctx.temp(Compute(x.shape, L.INDEX, rank_of, name="rank"))
    chosen = ctx.temp(Compute(ctx.out_shape(1), L.INDEX, lambda idx: Reduce(
        "sum", (n,), lambda r: L.select(L.binary("eq", rank[at(idx, r[0])], idx[axis]), r[0], L.const(0)),
        None, L.INDEX), name="chosen"))
    values = Compute(ctx.out_shape(0), ctx.out_dtype(0), lambda idx: x[at(idx, chosen[idx])])
    return [values, Compute(ctx.out_shape(1), ctx.out_dtype(1), lambda idx: chosen[idx])]


RULES = {
    "TopK": _top_k,
    "RMSNormalization": _rms_norm,
    "LpNormalization": _lp_norm,
    "MeanVarianceNormalization": _mvn,
    "Hardmax": _hardmax,
    "CumSum": _cumulative("sum"),
    "CumProd": _cumulative("prod"),
    "ReduceSum": _reduce("sum"),
    "ReduceMean": _reduce("sum", finalize=_mean),
    "ReduceMax": _reduce("max"),
    "ReduceMin": _reduce("min"),
    "ReduceProd": _reduce("prod"),
    "ReduceSumSquare": _reduce("sum", body=lambda v: L.mul(v, v)),
    "ReduceL1": _reduce("sum", body=lambda v: L.call("abs", v)),
    "ReduceL2": _reduce("sum", body=lambda v: L.mul(v, v), finalize=lambda a, n: L.call("sqrt", a)),
    "ReduceLogSum": _reduce("sum", finalize=lambda a, n: L.call("log", a)),
    "ReduceLogSumExp": _log_sum_exp,
    "NegativeLogLikelihoodLoss": _nll_loss,
    "SoftmaxCrossEntropyLoss": _softmax_cross_entropy,
    "Softmax": _softmax(log=False),
    "LogSoftmax": _softmax(log=True),
    "ArgMax": _arg("max"),
    "ArgMin": _arg("min"),
    "GlobalAveragePool": _global_pool("sum"),
    "GlobalMaxPool": _global_pool("max"),
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm,
    "GroupNormalization": _group_norm,
    "LRN": _lrn,
}
