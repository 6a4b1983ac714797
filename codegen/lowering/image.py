"""Lowering rule of Resize: per-axis tap and weight tables computed at compile time.

Every output position along a resized axis reads a fixed set of input positions with
fixed weights (they depend only on static sizes and attributes), so the tables are
packed as constants and the kernel is a small reduction over taps: a gather plus a
weighted sum, with no coordinate arithmetic at run time. The tables come from the same
helpers the reference uses, so both agree on every coordinate mode and rounding rule.
"""
from __future__ import annotations


import numpy as np

from ...ir import dtypes
from .. import loop_ir as L
from ..te import Compute, Reduce
from .context import LowerContext, NotLowerable


def _axis_tables(ctx: LowerContext, x_shape, axis, size, scale, box):
    from ...ir.ops import image

    a = ctx.attrs
    length = x_shape[axis]
    coords = image._source_coords(a["coordinate_transformation_mode"], size, scale, length, box)
    if a["mode"] == "nearest":
        taps = np.clip(image._nearest_index(coords, a["nearest_mode"]), 0, length - 1)[:, None]
        weights = np.ones(taps.shape)
    else:
        taps, weights = image._interpolation_taps(coords, length, scale, a)
    outside = (coords < 0) | (coords > length - 1)
    return taps.astype(np.int64), weights, outside


def _resize(ctx: LowerContext):
    from ...ir.ops import image

    x = ctx.input(0)
    a = ctx.attrs
    axes = image._resize_axes(a, x.rank)
    scales = ctx.const(2) if ctx.has(2) else None
    sizes = ctx.const(3) if ctx.has(3) else None
    if (ctx.has(2) and scales is None) or (ctx.has(3) and sizes is None):
        raise NotLowerable("Resize scales/sizes must be compile-time constants")
    roi = ctx.const(1) if ctx.has(1) else None
    new_sizes, new_scales = image._resize_plan(x.shape, axes, scales, sizes, a["keep_aspect_ratio_policy"])
    crop = a["coordinate_transformation_mode"] == "tf_crop_and_resize" and roi is not None and roi.size
    bounds = list(zip(roi[: len(axes)], roi[len(axes):])) if crop else [(0.0, 1.0)] * len(axes)
    work = dtypes.float64 if x.dtype is dtypes.float64 else dtypes.float32
    tables = {}  # axis -> (taps, weights, outside) packed tensors
    for axis, size, scale, box in zip(axes, new_sizes, new_scales, bounds):
        if size == x.shape[axis] and scale == 1.0 and tuple(box) == (0.0, 1.0):
            continue
        taps, weights, outside = _axis_tables(ctx, x.shape, axis, size, scale, tuple(float(b) for b in box))
        tables[axis] = (ctx.pack(taps), ctx.pack(weights.astype(work.numpy)), ctx.pack(outside))
    moved = sorted(tables)
    ntaps = tuple(tables[ax][0].shape[1] for ax in moved)
    out_dt = ctx.out_dtype()
    extrapolate = a["coordinate_transformation_mode"] == "tf_crop_and_resize"

    def element(idx):
        def value(rv):
            src, w = list(idx), L.const(1.0, work)
            for ax, r in zip(moved, rv):
                taps, weights, _ = tables[ax]
                src[ax] = taps[[idx[ax], r]]
                w = L.mul(w, weights[[idx[ax], r]])
            return L.mul(w, L.cast(x[src], work))

        def finish(s):
            if out_dt.is_int:
                info = np.iinfo(out_dt.numpy)
                s = L.binary("min", L.binary("max", L.call("round", s), L.const(float(info.min), work)),
                             L.const(float(info.max), work))
            if extrapolate:
                for ax in moved:
                    s = L.select(tables[ax][2][[idx[ax]]], L.const(a["extrapolation_value"], work), s)
            return s

        return Reduce("sum", ntaps, value, finish, work)

    return [Compute(ctx.out_shape(), out_dt, element)]


def _reflect(v, lo: float, hi: float, work):
    """Coordinates outside [lo, hi] folded back in, mirrored at the borders as often as needed
    (`ir.ops.image._reflect`)."""
    span = hi - lo
    if span <= 0:
        return L.const(lo, work)
    below, above = L.binary("lt", v, L.const(lo, work)), L.binary("gt", v, L.const(hi, work))
    dist = L.select(below, L.sub(L.const(lo, work), v), L.sub(v, L.const(hi, work)))
    flips = L.call("floor", L.div(dist, L.const(span, work)))
    rest = L.sub(dist, L.mul(flips, L.const(span, work)))
    even = L.binary("eq", L.sub(flips, L.mul(L.call("floor", L.mul(flips, L.const(0.5, work))), L.const(2.0, work))),
                    L.const(0.0, work))
    up, down = L.add(L.const(lo, work), rest), L.sub(L.const(hi, work), rest)
    return L.select(below, L.select(even, up, down), L.select(above, L.select(even, down, up), v))


def _cubic_weight(t, work, a: float = -0.75):
    """Keys' cubic kernel at t (PyTorch's a = -0.75, as GridSample's bicubic)."""
    t = L.call("abs", t)
    c = lambda value: L.const(value, work)  # noqa: E731
    near = L.add(L.mul(L.mul(L.sub(L.mul(c(a + 2), t), c(a + 3)), t), t), c(1.0))
    far = L.sub(L.mul(L.add(L.mul(L.sub(L.mul(c(a), t), c(5 * a)), t), c(8 * a)), t), c(4 * a))
    return L.select(L.binary("le", t, c(1.0)), near, L.select(L.binary("lt", t, c(2.0)), far, c(0.0)))


def _grid_sample(ctx: LowerContext):
    """GridSample: per output element, each spatial axis's source coordinate from the grid
    (unnormalized, rounded for nearest, clamped or reflected by the padding mode), its taps
    (1, 2 or 4) and weights, and the weighted sum over every combination of taps - the
    reference's arithmetic (`ir.ops.image._grid_sample_reference`) per element. Every index
    read is clamped into the input; zeros padding zeroes the weights of taps outside."""
    from itertools import product

    x, grid = ctx.input(0), ctx.input(1)
    a = ctx.attrs
    mode, padding, align = a["mode"], a["padding_mode"], bool(a["align_corners"])
    spatial = list(x.shape[2:])
    work = dtypes.float64 if grid.dtype is dtypes.float64 else dtypes.float32

    def c(value):
        return L.const(float(value), work)

    def taps_along(axis: int, length: int, n, out_sp):
        g = L.cast(grid[[n, *out_sp, L.const(len(spatial) - 1 - axis)]], work)  # the grid lists x first
        coord = (L.mul(L.mul(L.add(g, c(1)), c(0.5)), c(length - 1)) if align
                 else L.mul(L.sub(L.mul(L.add(g, c(1)), c(length)), c(1)), c(0.5)))
        if mode == "nearest":
            coord = L.call("round", coord)  # half to even, as PyTorch
        lo, hi = (0.0, length - 1.0) if align else (-0.5, length - 0.5)
        if padding == "border":
            clipped = L.binary("min", L.binary("max", coord, c(0)), c(length - 1))
            outside = L.binary("or", L.binary("lt", coord, c(lo)), L.binary("gt", coord, c(hi)))
            coord = L.select(outside, clipped, coord)
        elif padding == "reflection":
            coord = _reflect(coord, lo, hi, work)
        if mode == "nearest":
            pairs = [(coord, c(1))]
        else:
            base = L.call("floor", coord)
            frac = L.sub(coord, base)
            if mode == "linear":
                pairs = [(base, L.sub(c(1), frac)), (L.add(base, c(1)), frac)]
            else:
                pairs = [(L.add(base, c(k)), _cubic_weight(L.sub(frac, c(k)), work)) for k in (-1, 0, 1, 2)]
        taps = []
        for index, weight in pairs:
            valid = L.binary("and", L.binary("ge", index, c(0)), L.binary("lt", index, c(length)))
            if padding == "reflection":
                index = _reflect(index, lo, hi, work)  # the cast below truncates toward zero, as np.trunc
            if padding == "zeros":
                weight = L.select(valid, weight, c(0))
            inside = L.binary("min", L.binary("max", index, c(0)), c(length - 1))
            taps.append((L.cast(inside, dtypes.int64), weight))
        return taps

    def element(idx):
        n, ch, out_sp = idx[0], idx[1], idx[2:]
        per_axis = [taps_along(axis, length, n, out_sp) for axis, length in enumerate(spatial)]
        total = None
        for combo in product(*per_axis):
            weight = combo[0][1]
            for _, w in combo[1:]:
                weight = L.mul(weight, w)
            term = L.mul(L.cast(x[[n, ch, *[i for i, _ in combo]]], work), weight)
            total = term if total is None else L.add(total, term)
        return L.cast(total, x.dtype)

    return [Compute(ctx.out_shape(), x.dtype, element)]


def _affine_grid(ctx: LowerContext):
    """AffineGrid: grid[n, ..., k] = theta[n, k, :] . (x, y[, z], 1), the normalized
    coordinates of each output position (pixel centres with align_corners, cell centres
    without) computed from its index."""
    theta = ctx.input(0)
    size = ctx.const(1)
    if size is None:
        raise NotLowerable("size (input 1) is known only at run time")
    dims = [int(d) for d in np.asarray(size).reshape(-1)[2:]]
    align = bool(ctx.attrs["align_corners"])
    acc = dtypes.float64 if theta.dtype is dtypes.float64 else dtypes.float32

    def position(i, length):
        """Normalized coordinate of index i along an axis of `length` (`ir.ops.image._grid_positions`)."""
        if align and length == 1:
            return L.const(0.0, acc)
        step, first = (2.0 / (length - 1), -1.0) if align else (2.0 / length, 1.0 / length - 1.0)
        return L.add(L.mul(L.cast(i, acc), L.const(step, acc)), L.const(first, acc))

    def element(idx):
        n, spatial, k = idx[0], idx[1:-1], idx[-1]
        # homogeneous point: the last spatial axis (x) first, then ..., then 1
        coords = [position(i, d) for i, d in zip(reversed(spatial), reversed(dims))]
        total = L.cast(theta[[n, k, L.const(len(dims))]], acc)
        for j, c in enumerate(coords):
            total = L.add(total, L.mul(L.cast(theta[[n, k, L.const(j)]], acc), c))
        return L.cast(total, theta.dtype)

    return [Compute(ctx.out_shape(), theta.dtype, element)]


def _cosine_window(ctx: LowerContext):
    """Hann, Hamming and Blackman windows: w[n] = a_0 + sum_k (-1)^k a_k cos(2 pi k n / N),
    in float64 as the reference (`ir.ops.image._window`), then in the output type."""
    from ...ir.ops.image import WINDOW_TERMS

    (size,) = ctx.out_shape()
    period = size if ctx.attrs["periodic"] else size - 1
    terms = WINDOW_TERMS[ctx.node.op]
    f64 = dtypes.float64

    def element(idx):
        phase = (L.mul(L.cast(idx[0], f64), L.const(2 * np.pi / period, f64)) if period else L.const(0.0, f64))
        w = None
        for k, a in enumerate(terms):
            if k:
                term = L.mul(L.const((-1) ** k * a, f64), L.call("cos", L.mul(L.const(float(k), f64), phase)))
                w = term if w is None else L.add(w, term)
        w = L.add(w, L.const(terms[0], f64))  # the constant last, as the reference adds it
        return L.cast(w, ctx.out_dtype())

    return [Compute((size,), ctx.out_dtype(), element)]


RULES = {"Resize": _resize, "AffineGrid": _affine_grid, "GridSample": _grid_sample,
         **dict.fromkeys(("HannWindow", "HammingWindow", "BlackmanWindow"), _cosine_window)}
