"""Lowering rules of data-movement ops: each output element is one input element (or padding).

Shapes are static here (compile-time), so every rule is index arithmetic on the output
index: permutations, offsets, strides, modulo for tiling, and predicated loads where
an output position may have no input element (Concat, Pad).
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes
from .. import loop_ir as L
from ..te import Compute, Tensor, strides_of
from .context import LowerContext, NotLowerable


def _flat_out(shape, idx) -> L.Expr:
    flat: L.Expr = L.const(0)
    for i, s, d in zip(idx, strides_of(shape), shape):
        if d != 1:
            flat = L.add(flat, L.mul(i, s))
    return flat


def _copy(ctx: LowerContext):
    """Reshape, Flatten, Squeeze, Unsqueeze, Identity: the same elements in the same order."""
    x = ctx.input(0)
    shape = ctx.out_shape()

    def element(idx):
        return x.load_flat(_flat_out(shape, idx))

    return [Compute(shape, x.dtype, element)] + _dropout_mask(ctx)


def _dropout_mask(ctx: LowerContext) -> list:
    if len(ctx.out_types) > 1 and ctx.out_types[1] is not None and ctx.node.op == "Dropout":
        if ctx.has(2) and ctx.const(2) is not None and bool(np.asarray(ctx.const(2))):
            raise NotLowerable("Dropout in training mode (random masks) is not lowered")
        return [Compute(ctx.out_shape(1), dtypes.bool_, lambda idx: L.const(True, dtypes.bool_))]
    return []


def _dropout(ctx: LowerContext):
    if ctx.has(2) and (ctx.const(2) is None or bool(np.asarray(ctx.const(2)))):
        raise NotLowerable("Dropout with a run-time or true training_mode is not lowered")
    return _copy(ctx)


def _transpose(ctx: LowerContext):
    x = ctx.input(0)
    perm = ctx.attrs["perm"] or list(range(x.rank))[::-1]

    def element(idx):
        src = [None] * x.rank
        for k, p in enumerate(perm):
            src[p] = idx[k]
        return x[src]

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _concat(ctx: LowerContext):
    xs = [t for t in ctx.inputs if t is not None]
    shape = ctx.out_shape()
    axis = ctx.attrs["axis"] % len(shape)

    def element(idx):
        value, offset = None, 0
        for t in xs:
            n = t.shape[axis]
            if n == 0:
                continue
            pos = L.sub(idx[axis], offset)
            src = list(idx)
            src[axis] = pos
            inside = L.binary("and", L.binary("ge", pos, L.const(0)), L.binary("lt", pos, L.const(n)))
            load = t.load_if(src, inside, L.const(0, t.dtype))
            value = load if value is None else L.select(inside, load, value)
            offset += n
        return value

    return [Compute(shape, xs[0].dtype, element)]


def _slice_params(ctx: LowerContext):
    x = ctx.input(0)
    starts = ctx.require_const(1, "starts")
    ctx.require_const(2, "ends")
    axes = ctx.const(3) if ctx.has(3) else None
    if ctx.has(3) and axes is None:
        raise NotLowerable("Slice axes (input 3) must be a compile-time constant")
    steps = ctx.const(4) if ctx.has(4) else None
    if ctx.has(4) and steps is None:
        raise NotLowerable("Slice steps (input 4) must be a compile-time constant")
    return slice_window(x.shape, starts, axes, steps)


def slice_window(shape, starts, axes=None, steps=None) -> tuple[list[int], list[int]]:
    """(first index, step) per axis of a Slice over `shape` with constant starts/axes/steps
    (ends fix only the output length, which shape inference already has): negative starts
    count from the end, starts clamp into the axis."""
    rank = len(shape)
    axes = np.arange(len(starts)) if axes is None else axes
    steps = np.ones(len(starts), np.int64) if steps is None else steps
    begin, step = [0] * rank, [1] * rank
    for s, a, st in zip(np.asarray(starts).tolist(), np.asarray(axes).tolist(), np.asarray(steps).tolist()):
        a %= rank
        d = shape[a]
        s = s + d if s < 0 else s
        s = min(max(s, 0), d) if st > 0 else min(max(s, 0), d - 1)
        begin[a], step[a] = s, st
    return begin, step


def _slice(ctx: LowerContext):
    x = ctx.input(0)
    begin, step = _slice_params(ctx)

    def element(idx):
        return x[[L.add(b, L.mul(i, s)) for i, b, s in zip(idx, begin, step)]]

    return [Compute(ctx.out_shape(), x.dtype, element)]


def index_value(t: Tensor, idx, dim: int) -> L.Expr:
    """An index read from a tensor, as int64, negative values counting from the end, clamped
    into [0, dim): native code never reads past the buffer. Out-of-range indices are
    refused before they get here (constants at compile time, graph inputs by the runtime,
    `passes/index_guards.py`); the clamp covers indices the graph computes."""
    i = L.cast(t[idx], L.INDEX)
    i = L.select(L.binary("lt", i, L.const(0)), L.add(i, dim), i)
    return L.binary("max", L.binary("min", i, L.const(dim - 1)), L.const(0))


def _gather(ctx: LowerContext):
    x, ind = ctx.input(0), ctx.input(1)
    axis = ctx.attrs["axis"] % x.rank

    def element(idx):
        k = ind.rank
        src = list(idx[:axis]) + [index_value(ind, idx[axis:axis + k], x.shape[axis])] + list(idx[axis + k:])
        return x[src]

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _gather_elements(ctx: LowerContext):
    x, ind = ctx.input(0), ctx.input(1)
    axis = ctx.attrs["axis"] % x.rank

    def element(idx):
        src = list(idx)
        src[axis] = index_value(ind, idx, x.shape[axis])
        return x[src]

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _expand(ctx: LowerContext):
    x = ctx.input(0)
    shape = ctx.out_shape()
    return [Compute(shape, x.dtype, lambda idx: x.bcast(idx, len(shape)))]


def _tile(ctx: LowerContext):
    x = ctx.input(0)
    return [Compute(ctx.out_shape(), x.dtype, lambda idx: x[[L.mod(i, d) for i, d in zip(idx, x.shape)]])]


def _pad(ctx: LowerContext):
    x = ctx.input(0)
    pads = ctx.require_const(1, "pads").tolist()
    axes = list(range(x.rank))
    if ctx.has(3):
        axes = [a % x.rank for a in ctx.require_const(3, "axes").tolist()]
    before = [0] * x.rank
    for k, a in enumerate(axes):
        before[a] = pads[k]
    mode = ctx.attrs["mode"]
    fill = L.const(0, x.dtype)
    if ctx.has(2):
        value = ctx.const(2)
        if value is not None and np.asarray(value).size:
            fill = L.const(np.asarray(value).reshape(-1)[0].item(), x.dtype)
        elif value is None:
            fill = ctx.input(2)[[L.const(0)] * ctx.input(2).rank]

    def source(i, d, b):
        j = L.sub(i, b)
        if mode == "edge":
            return L.binary("min", L.binary("max", j, L.const(0)), L.const(d - 1))
        if mode == "wrap":
            return L.mod(L.add(L.mod(j, d), d), d)
        if mode == "reflect":
            if d == 1:
                return L.const(0)
            period = 2 * (d - 1)
            j = L.mod(L.add(L.mod(j, period), period), period)
            return L.select(L.binary("lt", j, L.const(d)), j, L.sub(period, j))
        return j

    def element(idx):
        src = [source(i, d, b) for i, d, b in zip(idx, x.shape, before)]
        if mode != "constant":
            return x[src]
        inside = L.const(True, dtypes.bool_)
        for j, d in zip(src, x.shape):
            inside = L.binary("and", inside, L.binary("and", L.binary("ge", j, L.const(0)), L.binary("lt", j, L.const(d))))
        return L.select(inside, x.load_if(src, inside, L.const(0, x.dtype)), fill)

    if mode not in ("constant", "edge", "wrap", "reflect"):
        raise NotLowerable(f"Pad mode {mode!r}")
    return [Compute(ctx.out_shape(), x.dtype, element)]


def _split(ctx: LowerContext):
    x = ctx.input(0)
    axis = ctx.attrs["axis"] % x.rank
    outs, offset = [], 0
    for t in ctx.out_types:
        off = offset

        def element(idx, off=off):
            src = list(idx)
            src[axis] = L.add(idx[axis], off)
            return x[src]

        outs.append(Compute(t.shape, x.dtype, element))
        offset += t.shape[axis]
    return outs


def _depth_to_space(ctx: LowerContext):
    x = ctx.input(0)
    b = ctx.attrs["blocksize"]
    crd = ctx.attrs["mode"] == "CRD"
    c_out = ctx.out_shape()[1]

    def element(idx):
        n, c, h, w = idx
        bh, bw = L.mod(h, b), L.mod(w, b)
        if crd:
            ci = L.add(L.mul(c, b * b), L.add(L.mul(bh, b), bw))
        else:
            ci = L.add(L.mul(L.add(L.mul(bh, b), bw), c_out), c)
        return x[[n, ci, L.div(h, b), L.div(w, b)]]

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _space_to_depth(ctx: LowerContext):
    x = ctx.input(0)
    b = ctx.attrs["blocksize"]
    c_in = x.shape[1]
    crd = ctx.attrs["mode"] == "CRD"

    def element(idx):
        n, c, h, w = idx
        # DCR: out channel = block * C + c; CRD: c * b * b + block
        blk, ci = (L.mod(c, b * b), L.div(c, b * b)) if crd else (L.div(c, c_in), L.mod(c, c_in))
        return x[[n, ci, L.add(L.mul(h, b), L.div(blk, b)), L.add(L.mul(w, b), L.mod(blk, b))]]

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _trilu(ctx: LowerContext):
    x = ctx.input(0)
    k = L.const(0)
    if ctx.has(1):
        k = L.cast(ctx.input(1)[[]] if ctx.input(1).rank == 0 else ctx.input(1)[[L.const(0)]], L.INDEX)
    upper = ctx.attrs["upper"]

    def element(idx):
        i, j = idx[-2], idx[-1]
        keep = L.binary("ge" if upper else "le", L.sub(j, i), k)
        return L.select(keep, x[idx], L.const(0, x.dtype))

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _one_hot(ctx: LowerContext):
    ind, values = ctx.input(0), ctx.input(2)
    depth = int(np.asarray(ctx.require_const(1, "depth")).reshape(-1)[0])
    axis = ctx.attrs["axis"] % (ind.rank + 1)

    def element(idx):
        i = L.cast(ind[list(idx[:axis]) + list(idx[axis + 1:])], L.INDEX)
        i = L.select(L.binary("lt", i, L.const(0)), L.add(i, depth), i)  # out of range stays out: all "off"
        hot = L.binary("eq", i, idx[axis])
        return L.select(hot, values[[L.const(1)]], values[[L.const(0)]])

    return [Compute(ctx.out_shape(), values.dtype, element)]


def _eye_like(ctx: LowerContext):
    k = ctx.attrs["k"]
    dt = ctx.out_dtype()
    return [Compute(ctx.out_shape(), dt, lambda idx: L.select(
        L.binary("eq", L.sub(idx[1], idx[0]), L.const(k)), L.const(1, dt), L.const(0, dt)))]


def _center_crop_pad(ctx: LowerContext):
    x = ctx.input(0)
    shape = ctx.out_shape()
    axes = list(range(x.rank)) if ctx.attrs["axes"] is None else [a % x.rank for a in ctx.attrs["axes"]]
    # Crops start half the excess in (rounded down); pads put the odd pixel on the right.
    shift = [0] * x.rank
    for a in axes:
        keep = min(x.shape[a], shape[a])
        shift[a] = (x.shape[a] - keep) // 2 - (shape[a] - keep) // 2

    def element(idx):
        src = [L.add(i, s) for i, s in zip(idx, shift)]
        ok = L.const(True, dtypes.bool_)
        for j, d in zip(src, x.shape):
            ok = L.binary("and", ok, L.binary("and", L.binary("ge", j, L.const(0)), L.binary("lt", j, L.const(d))))
        return x.load_if(src, ok, L.const(0, x.dtype))

    return [Compute(shape, x.dtype, element)]


def _gather_nd(ctx: LowerContext):
    x, ind = ctx.input(0), ctx.input(1)
    b = ctx.attrs["batch_dims"]
    last = ind.shape[-1]
    q = ind.rank - 1  # output = batch dims + index dims + the slice dims left in x

    def element(idx):
        pos = list(idx[:q])
        src = list(idx[:b]) + [index_value(ind, pos + [L.const(k)], x.shape[b + k]) for k in range(last)]
        return x[src + list(idx[q:])]

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _reverse_sequence(ctx: LowerContext):
    x, lens = ctx.input(0), ctx.input(1)
    time, batch = ctx.attrs["time_axis"] % x.rank, ctx.attrs["batch_axis"] % x.rank

    def element(idx):
        t, n = idx[time], L.cast(lens[[idx[batch]]], L.INDEX)
        src = list(idx)
        # within each batch entry's length time runs backwards; past it, unchanged
        src[time] = L.select(L.binary("lt", t, n), L.sub(L.sub(n, 1), t), t)
        return x[src]

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _array_feature_extractor(ctx: LowerContext):
    x, ind = ctx.input(0), ctx.input(1)

    if ind.rank != 1:
        raise NotLowerable("ArrayFeatureExtractor with indices of rank other than 1")

    def element(idx):  # picks entries of X's last axis
        return x[list(idx[:-1]) + [index_value(ind, [idx[-1]], x.shape[-1])]]

    return [Compute(ctx.out_shape(), x.dtype, element)]


RULES = {
    "ml.ArrayFeatureExtractor": _array_feature_extractor,
    "GatherND": _gather_nd,
    "ReverseSequence": _reverse_sequence,
    "OneHot": _one_hot,
    "EyeLike": _eye_like,
    "CenterCropPad": _center_crop_pad,
    "Reshape": _copy, "Flatten": _copy, "Squeeze": _copy, "Unsqueeze": _copy, "Identity": _copy,
    "Dropout": _dropout,
    "Transpose": _transpose,
    "Concat": _concat,
    "Slice": _slice,
    "Gather": _gather,
    "GatherElements": _gather_elements,
    "Expand": _expand,
    "Tile": _tile,
    "Pad": _pad,
    "Split": _split,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
    "Trilu": _trilu,
}
