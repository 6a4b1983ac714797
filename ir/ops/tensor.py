"""Shape and data-movement ops: reshapes, transposes, slices, gathers and scatters, padding,
tiling, shape queries and the small generators (Range, EyeLike, OneHot, ConstantOfShape).

Inference matters as much as the references here: exporters compute shapes at run time
(Shape -> Gather -> Unsqueeze -> Concat -> Reshape). When a shape-carrying input is a
compile-time constant the output shape is exact; when it is not, the rule still gives the
right rank and every size it can prove, with fresh symbols for the rest.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

from .. import dtypes
from ..registry import PENDING_RULE, VALUE_DEPENDENT_SHAPE, Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import broadcast_shapes, normalize_axes, normalize_axis
from ..types import Dim, TensorType, fresh_dim

# ---- small helpers ---------------------------------------------------------------------

def _ints(array) -> list[int]:
    """A constant or run-time index tensor as Python ints (flattened)."""
    return [int(x) for x in np.asarray(array).reshape(-1)]


def _const_ints(ctx: InferContext, i: int) -> list[int] | None:
    """Input i's value as ints when it is a compile-time constant, else None."""
    value = ctx.const(i) if ctx.has(i) else None
    return None if value is None else _ints(value)


def _size_values(ctx: InferContext, i: int) -> list[Dim] | None:
    """Input i's contents as dims (ints or symbols) when known: a constant, or a shape
    value propagated from Shape/Gather/Concat... (see Value.shape_value)."""
    value = ctx.shape_value(i)
    return None if value is None else list(value)


def _vector_length(ctx: InferContext, i: int) -> int | None:
    """The static length of 1-D input i (a shape, axes or pads vector), else None."""
    t = ctx.input(i)
    if t.shape is None or len(t.shape) != 1 or not isinstance(t.shape[0], int):
        return None
    return t.shape[0]


def _fresh_dims(n: int, hint: str = "d") -> tuple[str, ...]:
    return tuple(fresh_dim(hint) for _ in range(n))


def _mul(a: Dim, b: Dim) -> Dim:
    """Product of two dims; symbolic unless it can be proved (x * 1 == x, x * 0 == 0)."""
    if a == 1:
        return b
    if b == 1:
        return a
    if a == 0 or b == 0:
        return 0
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    return fresh_dim("mul")


def _prod(dims: Sequence[Dim]) -> Dim:
    result: Dim = 1
    for d in dims:
        result = _mul(result, d)
    return result


def _div(a: Dim, b: int, ctx: InferContext, what: str) -> Dim:
    """a / b for a block size b that must divide a."""
    if isinstance(a, int):
        if a % b:
            raise ctx.error(f"{what} {a} is not divisible by {b}")
        return a // b
    return a if b == 1 else fresh_dim("div")


# ---- reshape-like ----------------------------------------------------------------------

def _infer_minus_one(in_shape: Sequence[Dim], known: Sequence[Dim], ctx: InferContext) -> Dim:
    """The size -1 stands for: input elements divided by the other output dims.

    Symbols cancel by name, so reshaping [batch, 12, 64] to [batch, -1] gives 768 and
    [batch, seq, 768] to [-1, 768] gives a fresh symbol (batch * seq).
    """
    num = Counter(d for d in in_shape if isinstance(d, str))
    den = Counter(d for d in known if isinstance(d, str))
    common = num & den
    num, den = num - common, den - common
    num_static = math.prod(d for d in in_shape if isinstance(d, int))
    den_static = math.prod(d for d in known if isinstance(d, int))
    if den:
        return fresh_dim("reshape")
    if den_static == 0:
        raise ctx.error(f"cannot infer -1 in the target shape: the other dims {list(known)} hold no elements")
    if not num:
        if num_static % den_static:
            raise ctx.error(f"cannot reshape {len(in_shape)}-d input of {num_static} elements "
                            f"into dims {list(known)} and -1")
        return num_static // den_static
    if num_static == den_static and sum(num.values()) == 1:
        return next(iter(num))
    return fresh_dim("reshape")


def _reshape_target(in_shape: Sequence[Dim] | None, target: list[Dim], allowzero: int,
                    ctx: InferContext) -> tuple[Dim, ...]:
    """The output shape for a known target shape (0 = copy the input dim unless allowzero).

    Target entries may be symbols when the shape was computed from another tensor's dims.
    """
    if target.count(-1) > 1:
        raise ctx.error(f"target shape {target} has more than one -1")
    out: list[Dim | None] = []
    for i, s in enumerate(target):
        if isinstance(s, str):
            out.append(s)
        elif s == 0 and not allowzero:
            if in_shape is not None and i >= len(in_shape):
                raise ctx.error(f"target shape {target} copies dim {i} (0), but the input has rank {len(in_shape)}")
            out.append(fresh_dim("reshape") if in_shape is None else in_shape[i])
        elif s == -1:
            out.append(None)
        elif s < 0:
            raise ctx.error(f"target shape {target} has invalid size {s}")
        else:
            out.append(s)
    if -1 in target:
        known = [d for d in out if d is not None]
        hole = fresh_dim("reshape") if in_shape is None else _infer_minus_one(in_shape, known, ctx)
        out[target.index(-1)] = hole
    if in_shape is not None:
        n_in, n_out = _prod_if_static(in_shape), _prod_if_static(out)
        if n_in is not None and n_out is not None and n_in != n_out:
            raise ctx.error(f"cannot reshape {list(in_shape)} ({n_in} elements) into {target} ({n_out} elements)")
    return tuple(out)


def _prod_if_static(dims) -> int | None:
    return math.prod(dims) if all(isinstance(d, int) for d in dims) else None


def _infer_reshape(ctx: InferContext) -> list[TensorType]:
    data = ctx.input(0)
    target = _size_values(ctx, 1)
    if target is not None:
        return [data.with_shape(_reshape_target(data.shape, target, ctx.attrs["allowzero"], ctx))]
    n = _vector_length(ctx, 1)
    return [data.with_shape(None if n is None else _fresh_dims(n, "reshape"))]


def _ref_reshape(ctx, data, shape):
    target = _ints(shape)
    if not ctx.attrs["allowzero"]:
        target = [data.shape[i] if s == 0 else s for i, s in enumerate(target)]
    return data.reshape(target)


def _infer_flatten(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if x.shape is None:
        return [x.with_shape(_fresh_dims(2, "flatten"))]
    axis = ctx.attrs["axis"]
    if not -len(x.shape) <= axis <= len(x.shape):
        raise ctx.error(f"axis {axis} is out of range for rank {len(x.shape)} (expected [-r, r])")
    axis = axis + len(x.shape) if axis < 0 else axis
    return [x.with_shape((_prod(x.shape[:axis]), _prod(x.shape[axis:])))]


def _ref_flatten(ctx, x):
    axis = ctx.attrs["axis"] + x.ndim if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _infer_squeeze(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if ctx.has(1):
        axes = _const_ints(ctx, 1)
        if axes is None:
            n = _vector_length(ctx, 1)
            known = x.shape is not None and n is not None
            return [x.with_shape(_fresh_dims(len(x.shape) - n, "squeeze") if known else None)]
        if x.shape is None:
            return [x]
        axes = normalize_axes(axes, len(x.shape), ctx)
        for a in axes:
            if isinstance(x.shape[a], int) and x.shape[a] != 1:
                raise ctx.error(f"cannot squeeze axis {a} of shape {list(x.shape)}: its size is not 1")
        return [x.with_shape(d for i, d in enumerate(x.shape) if i not in axes)]
    if x.shape is None or any(isinstance(d, str) for d in x.shape):
        return [x.with_shape(None)]  # a symbol may or may not be 1: the rank is unknown
    return [x.with_shape(d for d in x.shape if d != 1)]


def _ref_squeeze(ctx, x, axes=None):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a % x.ndim for a in _ints(axes)))


def _infer_unsqueeze(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    axes = _const_ints(ctx, 1)
    if x.shape is None:
        return [x]
    if axes is None:
        n = _vector_length(ctx, 1)
        return [x.with_shape(None if n is None else _fresh_dims(len(x.shape) + n, "unsqueeze"))]
    rank = len(x.shape) + len(axes)
    axes = normalize_axes(axes, rank, ctx)
    if len(set(axes)) != len(axes):
        raise ctx.error(f"axes {axes} repeat an axis")
    rest = iter(x.shape)
    return [x.with_shape(1 if i in axes else next(rest) for i in range(rank))]


def _ref_unsqueeze(ctx, x, axes):
    rank = x.ndim + axes.size
    return np.expand_dims(x, tuple(a % rank for a in _ints(axes)))


def _perm(ctx, rank: int) -> list[int]:
    perm = ctx.attrs["perm"]
    return list(range(rank))[::-1] if perm is None else [int(p) for p in perm]


def _infer_transpose(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if x.shape is None:
        return [x]
    perm = _perm(ctx, len(x.shape))
    if sorted(perm) != list(range(len(x.shape))):
        raise ctx.error(f"perm {perm} is not a permutation of the {len(x.shape)} axes of {x}")
    return [x.with_shape(x.shape[p] for p in perm)]


def _ref_transpose(ctx, x):
    return np.transpose(x, _perm(ctx, x.ndim))


# ---- concat and split ------------------------------------------------------------------

def _sum_dims(dims: Sequence[Dim]) -> Dim:
    nonzero = [d for d in dims if d != 0]
    if all(isinstance(d, int) for d in nonzero):
        return sum(nonzero)
    return nonzero[0] if len(nonzero) == 1 else fresh_dim("concat")


def _infer_concat(ctx: InferContext) -> list[TensorType]:
    types = [ctx.input(i) for i in range(len(ctx.inputs))]
    dtype = types[0].dtype
    for i, t in enumerate(types):
        if t.dtype != dtype:
            raise ctx.error(f"input {i} has element type {t.dtype}, expected {dtype} like input 0")
    known = [t.shape for t in types if t.shape is not None]
    if not known:
        return [TensorType(None, dtype)]
    rank = len(known[0])
    if any(len(s) != rank for s in known):
        raise ctx.error(f"inputs have different ranks: {', '.join(str(t) for t in types)}")
    axis = normalize_axis(ctx.attrs["axis"], rank, ctx)
    out = []
    for k in range(rank):
        dims = [s[k] for s in known]
        if k == axis:
            out.append(_sum_dims(dims) if len(known) == len(types) else fresh_dim("concat"))
            continue
        static = {d for d in dims if isinstance(d, int)}
        if len(static) > 1:
            raise ctx.error(f"inputs disagree on dim {k}: {', '.join(str(t) for t in types)}")
        out.append(static.pop() if static else dims[0])
    return [TensorType(tuple(out), dtype)]


def _ref_concat(ctx, *inputs):
    return np.concatenate(inputs, axis=ctx.attrs["axis"] % max(inputs[0].ndim, 1))


def _equal_split(dim: int, parts: int, ctx: InferContext) -> list[int]:
    """Newest Split: equal chunks of ceil(dim / parts), the last one smaller when uneven."""
    chunk = -(-dim // parts)
    sizes = [chunk] * (parts - 1) + [dim - chunk * (parts - 1)]
    if sizes[-1] < 0:
        raise ctx.error(f"cannot split a dim of {dim} into {parts} chunks of {chunk}")
    return sizes


def _infer_split(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    n = ctx.num_outputs
    if ctx.attrs["num_outputs"] is not None and ctx.attrs["num_outputs"] != n:
        raise ctx.error(f"num_outputs is {ctx.attrs['num_outputs']} but the node has {n} outputs")
    if x.shape is None:
        return [x] * n
    axis = normalize_axis(ctx.attrs["axis"], len(x.shape), ctx)
    dim = x.shape[axis]
    sizes: list[Dim]
    if ctx.has(1):
        given = _const_ints(ctx, 1)
        sizes = list(given) if given is not None else list(_fresh_dims(n, "split"))
        if len(sizes) != n:
            raise ctx.error(f"split {sizes} has {len(sizes)} entries for {n} outputs")
        if given is not None and isinstance(dim, int) and sum(given) != dim:
            raise ctx.error(f"split {given} sums to {sum(given)}, but axis {axis} of {x} has size {dim}")
    elif isinstance(dim, int):
        sizes = _equal_split(dim, n, ctx)
    else:
        sizes = [dim] if n == 1 else list(_fresh_dims(n, "split"))
    return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes]


def _ref_split(ctx, x, split=None):
    axis = ctx.attrs["axis"] % x.ndim
    sizes = _ints(split) if split is not None else _equal_split(x.shape[axis], ctx.num_outputs, ctx)
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


# ---- slice -----------------------------------------------------------------------------

def _slice_params(rank: int, starts, ends, axes, steps, ctx) -> list[tuple[int, int, int, int]]:
    """(axis, start, end, step) per sliced axis, axes normalised, steps defaulted to 1."""
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else normalize_axes(_ints(axes), rank, ctx)
    steps = [1] * len(starts) if steps is None else _ints(steps)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.error(f"starts, ends, axes and steps differ in length: {starts}, {ends}, {axes}, {steps}")
    if len(set(axes)) != len(axes):
        raise ctx.error(f"axes {axes} repeat an axis")
    if 0 in steps:
        raise ctx.error("a step of 0 is invalid")
    return list(zip(axes, starts, ends, steps))


def _sliced_dim(dim: Dim, start: int, end: int, step: int) -> Dim:
    """Python slicing clamps exactly as ONNX Slice does (negative steps included)."""
    if isinstance(dim, int):
        return len(range(*slice(start, end, step).indices(dim)))
    if start == 0 and step == 1 and end >= 2 ** 31 - 1:  # x[a:] with a = 0: the whole axis
        return dim
    return fresh_dim("slice")


def _infer_slice(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if x.shape is None:
        return [x]
    starts, ends, axes, steps = (ctx.const(i) if ctx.has(i) else None for i in range(1, 5))
    if starts is None or ends is None or (ctx.has(3) and axes is None) or (ctx.has(4) and steps is None):
        # Bounds known only at run time: only the sliced axes (all, if axes is unknown) change.
        touched = range(len(x.shape)) if axes is None else normalize_axes(_ints(axes), len(x.shape), ctx)
        return [x.with_shape(fresh_dim("slice") if i in touched else d for i, d in enumerate(x.shape))]
    shape = list(x.shape)
    for axis, start, end, step in _slice_params(len(shape), starts, ends, axes, steps, ctx):
        shape[axis] = _sliced_dim(shape[axis], start, end, step)
    return [x.with_shape(shape)]


def _ref_slice(ctx, x, starts, ends, axes=None, steps=None):
    index = [slice(None)] * x.ndim
    for axis, start, end, step in _slice_params(x.ndim, starts, ends, axes, steps, ctx):
        index[axis] = slice(start, end, step)
    return x[tuple(index)]


# ---- gathers ---------------------------------------------------------------------------

def _check_indices(ctx: InferContext, i: int) -> TensorType:
    t = ctx.input(i)
    if t.dtype not in (dtypes.int32, dtypes.int64):
        raise ctx.error(f"input {i} (indices) must be int32 or int64, got {t.dtype}")
    return t


def _check_index_range(ctx: InferContext, i: int, sizes) -> None:
    """Constant indices (input i) against the dims they index (`sizes`: one size, or one
    per component along the last axis, as GatherND / ScatterND read them): refused by
    name at compile time, where the kernels would otherwise read or write out of bounds."""
    idx = ctx.const(i)
    sizes = np.asarray(sizes, dtype=object)
    if idx is None or not all(isinstance(s, (int, np.integer)) for s in sizes.ravel()):
        return
    sizes = sizes.astype(np.int64)
    idx = np.asarray(idx, np.int64)
    bad = (idx < -sizes) | (idx >= sizes)
    if bad.any():
        at = tuple(int(j) for j in np.argwhere(bad)[0])
        size = int(np.broadcast_to(sizes, idx.shape)[at])
        raise ctx.error(f"input {i} (indices): {int(idx[at])} at position {list(at)} is out of range for a dim "
                        f"of size {size} (valid: {-size}..{size - 1}); {int(bad.sum())} of {idx.size} indices are")


def _infer_gather(ctx: InferContext) -> list[TensorType]:
    data, idx = ctx.input(0), _check_indices(ctx, 1)
    if data.shape is None or idx.shape is None:
        return [data.with_shape(None)]
    axis = normalize_axis(ctx.attrs["axis"], len(data.shape), ctx)
    _check_index_range(ctx, 1, data.shape[axis])
    return [data.with_shape(data.shape[:axis] + idx.shape + data.shape[axis + 1:])]


def _ref_gather(ctx, data, indices):
    axis = ctx.attrs["axis"] % data.ndim
    return np.take(data, indices.astype(np.int64, copy=False), axis=axis)


def _wrap_negative(indices: np.ndarray, size) -> np.ndarray:
    """ONNX indices may count from the end; numpy's fancy indexing does too, but take_along_axis
    and ufunc.at want them explicit."""
    indices = indices.astype(np.int64, copy=False)
    return np.where(indices < 0, indices + size, indices)


def _infer_gather_elements(ctx: InferContext) -> list[TensorType]:
    data, idx = ctx.input(0), _check_indices(ctx, 1)
    if data.shape is not None and idx.shape is not None:
        if len(data.shape) != len(idx.shape):
            raise ctx.error(f"data {data} and indices {idx} must have the same rank")
        _check_index_range(ctx, 1, data.shape[normalize_axis(ctx.attrs["axis"], len(data.shape), ctx)])
    return [data.with_shape(idx.shape)]


def _ref_gather_elements(ctx, data, indices):
    axis = ctx.attrs["axis"] % data.ndim
    return np.take_along_axis(data, _wrap_negative(indices, data.shape[axis]), axis=axis)


def _infer_gather_nd(ctx: InferContext) -> list[TensorType]:
    data, idx = ctx.input(0), _check_indices(ctx, 1)
    b = ctx.attrs["batch_dims"]
    if idx.shape == ():
        raise ctx.error("indices must have rank >= 1")
    if data.shape is None or idx.shape is None or not isinstance(idx.shape[-1], int):
        return [data.with_shape(None)]  # the index tuple's length decides the output rank
    last = idx.shape[-1]
    if b + last > len(data.shape) or b >= len(idx.shape):
        raise ctx.error(f"indices {idx} with batch_dims={b} index more dims than data {data} has")
    _check_index_range(ctx, 1, list(data.shape[b:b + last]))
    return [data.with_shape(idx.shape[:-1] + data.shape[b + last:])]


def _ref_gather_nd(ctx, data, indices):
    b = ctx.attrs["batch_dims"]
    batch_shape, last = data.shape[:b], indices.shape[-1]
    # Fold the batch dims into one so every batch is one row of a single fancy index.
    flat_data = data.reshape((math.prod(batch_shape),) + data.shape[b:])
    flat_idx = indices.reshape(math.prod(batch_shape), -1, last)
    flat_idx = _wrap_negative(flat_idx, np.array(data.shape[b:b + last]))
    rows = np.arange(flat_data.shape[0])[:, None]
    picked = flat_data[(rows,) + tuple(flat_idx[..., k] for k in range(last))]
    return picked.reshape(indices.shape[:-1] + data.shape[b + last:])


# ---- scatters --------------------------------------------------------------------------

# How each reduction combines repeated writes; numpy's unbuffered ufunc.at applies them all.
_SCATTER_UFUNCS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _check_reduction(ctx: InferContext) -> None:
    if ctx.attrs["reduction"] not in ("none", *_SCATTER_UFUNCS):
        raise ctx.error(f"reduction {ctx.attrs['reduction']!r} is not one of none, add, mul, max, min")


def _scatter(ctx, data: np.ndarray, index: tuple, updates: np.ndarray) -> np.ndarray:
    out = data.copy()
    reduction = ctx.attrs["reduction"]
    if reduction == "none":
        out[index] = updates  # duplicate indices: the last write wins, as numpy assigns in order
    else:
        _SCATTER_UFUNCS[reduction].at(out, index, updates)
    return out


def _infer_scatter(ctx: InferContext) -> list[TensorType]:
    _check_reduction(ctx)
    _check_indices(ctx, 1)
    data, updates = ctx.input(0), ctx.input(2)
    if updates.dtype != data.dtype:
        raise ctx.error(f"updates have element type {updates.dtype}, expected {data.dtype} like data")
    idx = ctx.input(1)
    if data.shape is not None and idx.shape:
        if "axis" in ctx.attrs:  # ScatterElements: one index per element, along axis
            _check_index_range(ctx, 1, data.shape[normalize_axis(ctx.attrs["axis"], len(data.shape), ctx)])
        elif isinstance(idx.shape[-1], int) and idx.shape[-1] <= len(data.shape):  # ScatterND: index tuples
            _check_index_range(ctx, 1, list(data.shape[:idx.shape[-1]]))
    return [data]


def _ref_scatter_elements(ctx, data, indices, updates):
    axis = ctx.attrs["axis"] % data.ndim
    index = list(np.indices(indices.shape, sparse=True))
    index[axis] = _wrap_negative(indices, data.shape[axis])
    return _scatter(ctx, data, tuple(index), updates)


def _ref_scatter_nd(ctx, data, indices, updates):
    last = indices.shape[-1]
    wrapped = _wrap_negative(indices, np.array(data.shape[:last]))
    return _scatter(ctx, data, tuple(wrapped[..., k] for k in range(last)), updates)


# ---- expand, tile, pad -----------------------------------------------------------------

def _infer_expand(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    shape = _size_values(ctx, 1)
    if shape is None:
        n = _vector_length(ctx, 1)
        if n is None or x.shape is None:
            return [x.with_shape(None)]
        # Unknown target sizes: a static input size > 1 must survive, anything else is open.
        shape = _fresh_dims(n, "expand")
    try:
        return [x.with_shape(broadcast_shapes(x.shape, tuple(shape)))]
    except ValueError as e:
        raise ctx.error(f"cannot expand {x} to {list(shape)}: {e}") from None


def _ref_expand(ctx, x, shape):
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(_ints(shape)))).copy()


def _infer_tile(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if x.shape is None:
        return [x]
    repeats = _const_ints(ctx, 1)
    if repeats is None:
        return [x.with_shape(_fresh_dims(len(x.shape), "tile"))]
    if len(repeats) != len(x.shape) or min(repeats, default=0) < 0:
        raise ctx.error(f"repeats {repeats} must hold one non-negative count per axis of {x}")
    return [x.with_shape(_mul(d, r) for d, r in zip(x.shape, repeats))]


def _ref_tile(ctx, x, repeats):
    return np.tile(x, _ints(repeats))


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _pad_widths(rank: int, pads, axes, ctx) -> list[tuple[int, int]]:
    """(before, after) per axis from ONNX's [b1, b2, ..., e1, e2, ...] over the given axes."""
    pads = _ints(pads)
    axes = list(range(rank)) if axes is None else normalize_axes(_ints(axes), rank, ctx)
    if len(pads) != 2 * len(axes):
        raise ctx.error(f"pads {pads} must hold 2 values per padded axis ({len(axes)} axes)")
    widths = [(0, 0)] * rank
    for k, axis in enumerate(axes):
        widths[axis] = (pads[k], pads[k + len(axes)])
    return widths


def _infer_pad(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if ctx.attrs["mode"] not in _PAD_MODES:
        raise ctx.error(f"mode {ctx.attrs['mode']!r} is not one of {', '.join(_PAD_MODES)}")
    if x.shape is None:
        return [x]
    pads, axes = ctx.const(1), ctx.const(3) if ctx.has(3) else None
    if pads is None or (ctx.has(3) and axes is None):
        return [x.with_shape(_fresh_dims(len(x.shape), "pad"))]
    shape = []
    for d, (before, after) in zip(x.shape, _pad_widths(len(x.shape), pads, axes, ctx)):
        if before == after == 0:
            shape.append(d)
        elif isinstance(d, int):
            if d + before + after < 0:
                raise ctx.error(f"pads {_ints(pads)} remove more than the {d} elements of an axis of {x}")
            shape.append(d + before + after)
        else:
            shape.append(fresh_dim("pad"))
    return [x.with_shape(shape)]


def _ref_pad(ctx, x, pads, constant_value=None, axes=None):
    widths = _pad_widths(x.ndim, pads, axes, ctx)
    # Negative pads crop; np.pad only grows, so crop first, then pad by the positive parts.
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-a, 0)) for i, (b, a) in enumerate(widths))
    x = x[crop]
    grow = [(max(b, 0), max(a, 0)) for b, a in widths]
    mode = _PAD_MODES[ctx.attrs["mode"]]
    if mode != "constant":
        return np.pad(x, grow, mode=mode)
    fill = 0 if constant_value is None or constant_value.size == 0 else constant_value.reshape(-1)[0]
    return np.pad(x, grow, mode="constant", constant_values=fill)


# ---- shape values: what small int tensors hold, propagated at compile time -------------
# Exporters compute shapes at run time (Shape -> Gather -> Unsqueeze -> Concat -> Reshape);
# these hooks carry the dims (symbols included) through such chains so Reshape and Expand
# keep `batch` instead of inventing a fresh symbol.

def _shape_value_of_shape(ctx: InferContext) -> list:
    x = ctx.input(0)
    if x.shape is None:
        return [None]
    start, end = _shape_range(len(x.shape), ctx.attrs)
    return [tuple(x.shape[start:end])]


def _shape_value_of_gather(ctx: InferContext) -> list:
    data, indices = ctx.shape_value(0), ctx.const(1)
    if data is None or indices is None or ctx.input(0).rank != 1 or indices.ndim > 1:
        return [None]
    picked = tuple(data[int(i)] for i in indices.reshape(-1))
    return [picked]


def _shape_value_of_concat(ctx: InferContext) -> list:
    parts = [ctx.shape_value(i) for i in range(len(ctx.inputs))]
    if any(p is None for p in parts) or any(ctx.input(i).rank != 1 for i in range(len(ctx.inputs))):
        return [None]
    return [tuple(d for p in parts for d in p)]


def _shape_value_of_size(ctx: InferContext) -> list:
    shape = ctx.input(0).shape
    if shape is None:
        return [None]
    size = _prod(shape)
    return [(size,)]


def _shape_value_passthrough(ctx: InferContext) -> list:
    """Unsqueeze/Squeeze/Reshape/Identity of a size vector keep its contents."""
    return [ctx.shape_value(0)]


def _shape_value_of_slice(ctx: InferContext) -> list:
    value = ctx.shape_value(0)
    starts, ends = _const_ints(ctx, 1), _const_ints(ctx, 2)
    steps = _const_ints(ctx, 4) if ctx.has(4) else [1]
    if value is None or starts is None or ends is None or steps is None or ctx.input(0).rank != 1:
        return [None]
    return [tuple(value[slice(starts[0], ends[0], steps[0])])]


# ---- shape queries and generators ------------------------------------------------------

def _shape_range(rank: int, attrs) -> tuple[int, int]:
    """Shape's [start, end): negative counts from the back, both clamped to [0, rank]."""
    def clamp(v: int) -> int:
        return min(max(v + rank if v < 0 else v, 0), rank)

    end = rank if attrs["end"] is None else attrs["end"]
    return clamp(attrs["start"]), clamp(end)


def _infer_shape(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if x.shape is None:
        return [TensorType((fresh_dim("rank"),), dtypes.int64)]
    start, end = _shape_range(len(x.shape), ctx.attrs)
    return [TensorType((max(end - start, 0),), dtypes.int64)]


def _ref_shape(ctx, x):
    start, end = _shape_range(x.ndim, ctx.attrs)
    return np.array(x.shape[start:end], dtype=np.int64)


def _infer_constant_of_shape(ctx: InferContext) -> list[TensorType]:
    value = _fill_value(ctx.attrs)
    shape = _size_values(ctx, 0)
    if shape is not None:
        if min((d for d in shape if isinstance(d, int)), default=0) < 0:
            raise ctx.error(f"shape {shape} has a negative size")
        return [TensorType(tuple(shape), dtypes.from_numpy(value.dtype))]
    n = _vector_length(ctx, 0)
    return [TensorType(None if n is None else _fresh_dims(n, "fill"), dtypes.from_numpy(value.dtype))]


def _fill_value(attrs) -> np.ndarray:
    value = attrs["value"]
    if value is None:
        return np.zeros(1, np.float32)  # ONNX's default: a float32 zero
    value = np.asarray(value)
    if value.size != 1:
        raise ValueError(f"value must hold exactly one element, got shape {list(value.shape)}")
    return value


def _ref_constant_of_shape(ctx, shape):
    value = _fill_value(ctx.attrs)
    return np.full(_ints(shape), value.reshape(-1)[0], dtype=value.dtype)


def _range_work_dtype(dtype: np.dtype, attrs) -> np.dtype:
    """fp16/bf16 ranges compute in stash_type (float32 by default) to avoid inexact steps."""
    if dtype in (np.float16, dtypes.bfloat16.numpy) and attrs["stash_type"] is not None:
        return attrs["stash_type"].numpy
    return dtype


def _range_length(start, limit, delta, work: np.dtype) -> int:
    if np.issubdtype(work, np.integer):
        start, limit, delta = int(start), int(limit), int(delta)
        if delta == 0:
            raise ValueError("delta must not be 0")
        return max(-((start - limit) // delta), 0)  # ceil((limit - start) / delta) in integers
    start, limit, delta = (np.asarray(v).astype(work) for v in (start, limit, delta))
    return max(int(np.ceil((limit - start) / delta)), 0)


def _infer_range(ctx: InferContext) -> list[TensorType]:
    types = [ctx.input(i) for i in range(3)]
    dtype = types[0].dtype
    if any(t.dtype != dtype for t in types) or any(t.shape not in (None, ()) and t.shape != (1,) for t in types):
        raise ctx.error(f"start, limit and delta must be scalars of one type, got {', '.join(map(str, types))}")
    consts = [ctx.const(i) for i in range(3)]
    if any(c is None for c in consts):
        return [TensorType((fresh_dim("range"),), dtype)]
    work = _range_work_dtype(dtype.numpy, ctx.attrs)
    return [TensorType((_range_length(*(c.reshape(()) for c in consts), work),), dtype)]


def _ref_range(ctx, start, limit, delta):
    dtype = start.dtype
    work = _range_work_dtype(dtype, ctx.attrs)
    start, limit, delta = (v.reshape(()).astype(work) for v in (start, limit, delta))
    n = _range_length(start, limit, delta, work)
    return (start + np.arange(n, dtype=work) * delta).astype(dtype)


def _infer_eye_like(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if x.shape is not None and len(x.shape) != 2:
        raise ctx.error(f"input must be 2-D, got {x}")
    return [TensorType(x.shape if x.shape is not None else _fresh_dims(2, "eye"), ctx.attrs["dtype"] or x.dtype)]


def _ref_eye_like(ctx, x):
    dtype = (ctx.attrs["dtype"].numpy if ctx.attrs["dtype"] else x.dtype)
    return np.eye(x.shape[0], x.shape[1], k=ctx.attrs["k"], dtype=dtype)


def _infer_one_hot(ctx: InferContext) -> list[TensorType]:
    idx, values = ctx.input(0), ctx.input(2)
    depth = ctx.const(1)
    if idx.shape is None:
        return [values.with_shape(None)]
    axis = normalize_axis(ctx.attrs["axis"], len(idx.shape) + 1, ctx)
    size: Dim = fresh_dim("depth") if depth is None else int(depth.reshape(-1)[0])
    if isinstance(size, int) and size < 1:
        raise ctx.error(f"depth must be positive, got {size}")
    return [values.with_shape(idx.shape[:axis] + (size,) + idx.shape[axis:])]


def _ref_one_hot(ctx, indices, depth, values):
    depth = int(depth.reshape(-1)[0])
    axis = ctx.attrs["axis"] % (indices.ndim + 1)
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)  # out-of-range stays out of range: all "off"
    hot = np.moveaxis(idx[..., None] == np.arange(depth), -1, axis)
    off, on = values.reshape(-1)[:2]
    return np.where(hot, on, off).astype(values.dtype)


def _ref_trilu(ctx, x, k=None):
    k = 0 if k is None else int(k.reshape(-1)[0])
    # np.triu / np.tril act on the last two axes, batching over the rest, as Trilu does.
    return np.triu(x, k) if ctx.attrs["upper"] else np.tril(x, k)


def _infer_trilu(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    if x.shape is not None and len(x.shape) < 2:
        raise ctx.error(f"input must have rank >= 2, got {x}")
    return [x]


# ---- data-dependent selections ---------------------------------------------------------

def _infer_compress(ctx: InferContext) -> list[TensorType]:
    x, cond = ctx.input(0), ctx.input(1)
    if cond.dtype != dtypes.bool_:
        raise ctx.error(f"condition must be bool, got {cond.dtype}")
    value = ctx.const(1)
    axis = ctx.attrs["axis"]
    if axis is None:
        count: Dim = fresh_dim("compress") if value is None else int(np.count_nonzero(value))
        return [x.with_shape((count,))]
    if x.shape is None:
        return [x]
    axis = normalize_axis(axis, len(x.shape), ctx)
    count = fresh_dim("compress") if value is None else int(np.count_nonzero(value.reshape(-1)[:_cap(x.shape[axis])]))
    return [x.with_shape(x.shape[:axis] + (count,) + x.shape[axis + 1:])]


def _cap(dim: Dim) -> int | None:
    return dim if isinstance(dim, int) else None


def _ref_compress(ctx, x, condition):
    axis = ctx.attrs["axis"]
    return np.compress(condition.reshape(-1), x, axis=None if axis is None else axis % x.ndim)


def _infer_nonzero(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    rank: Dim = fresh_dim("rank") if x.shape is None else len(x.shape)
    return [TensorType((rank, fresh_dim("nonzero")), dtypes.int64)]


def _ref_nonzero(ctx, x):
    if x.ndim == 0:  # numpy refuses 0-d input; a scalar has no coordinates
        return np.zeros((0, int(bool(x))), np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


def _infer_unique(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    count = fresh_dim("unique")
    axis = ctx.attrs["axis"]
    index_type = TensorType((count,), dtypes.int64)
    if axis is None:
        y = x.with_shape((count,))
        inverse = (_prod(x.shape),) if x.shape is not None else (fresh_dim("numel"),)
    elif x.shape is None:
        y, inverse = x, (fresh_dim("unique_axis"),)
    else:
        axis = normalize_axis(axis, len(x.shape), ctx)
        y = x.with_shape(x.shape[:axis] + (count,) + x.shape[axis + 1:])
        inverse = (x.shape[axis],)
    return [y, index_type, TensorType(inverse, dtypes.int64), index_type]


def _ref_unique(ctx, x):
    axis = ctx.attrs["axis"]
    if axis is None:
        x, axis = x.reshape(-1), 0
    else:
        axis %= x.ndim
    y, first, inverse, counts = np.unique(x, return_index=True, return_inverse=True, return_counts=True, axis=axis)
    inverse = inverse.reshape(-1)
    if not ctx.attrs["sorted"]:
        # Reorder by first occurrence; inverse indices follow their values' new positions.
        order = np.argsort(first, kind="stable")
        new_position = np.empty_like(order)
        new_position[order] = np.arange(order.size)
        y, first, counts, inverse = np.take(y, order, axis=axis), first[order], counts[order], new_position[inverse]
    as_i64 = [a.astype(np.int64, copy=False) for a in (first, inverse, counts)]
    return (y, *as_i64)[: ctx.num_outputs] if ctx.num_outputs > 1 else y


def _infer_reverse_sequence(ctx: InferContext) -> list[TensorType]:
    x, lens = ctx.input(0), ctx.input(1)
    if lens.dtype not in (dtypes.int32, dtypes.int64):
        raise ctx.error(f"sequence_lens must be int32 or int64, got {lens.dtype}")
    if x.shape is not None:
        if len(x.shape) < 2:
            raise ctx.error(f"input must have rank >= 2, got {x}")
        axes = {normalize_axis(ctx.attrs[k], len(x.shape), ctx) for k in ("batch_axis", "time_axis")}
        if len(axes) != 2:
            raise ctx.error("batch_axis and time_axis must differ")
    return [x]


def _ref_reverse_sequence(ctx, x, sequence_lens):
    time, batch = ctx.attrs["time_axis"] % x.ndim, ctx.attrs["batch_axis"] % x.ndim
    shape_t, shape_b = [1] * x.ndim, [1] * x.ndim
    shape_t[time], shape_b[batch] = x.shape[time], x.shape[batch]
    t = np.arange(x.shape[time]).reshape(shape_t)
    lens = sequence_lens.astype(np.int64).reshape(shape_b)
    # Within each batch entry's length the time index runs backwards; past it, unchanged.
    source = np.where(t < lens, lens - 1 - t, t)
    return np.take_along_axis(x, np.broadcast_to(source, x.shape), axis=time)


# ---- depth <-> space -------------------------------------------------------------------

def _check_block_op(ctx: InferContext) -> tuple[TensorType, int]:
    x, b = ctx.input(0), ctx.attrs["blocksize"]
    if b < 1:
        raise ctx.error(f"blocksize must be positive, got {b}")
    if ctx.attrs["mode"] not in ("DCR", "CRD"):
        raise ctx.error(f"mode {ctx.attrs['mode']!r} is not DCR or CRD")
    if x.shape is not None and len(x.shape) != 4:
        raise ctx.error(f"input must be 4-D (N, C, H, W), got {x}")
    return x, b


def _infer_depth_to_space(ctx: InferContext) -> list[TensorType]:
    x, b = _check_block_op(ctx)
    if x.shape is None:
        return [x]
    n, c, h, w = x.shape
    return [x.with_shape((n, _div(c, b * b, ctx, "channels"), _mul(h, b), _mul(w, b)))]


def _ref_depth_to_space(ctx, x):
    b, (n, c, h, w) = ctx.attrs["blocksize"], x.shape
    if ctx.attrs["mode"] == "DCR":  # channel = (row offset, column offset, depth)
        tmp = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:  # CRD: channel = (depth, row offset, column offset)
        tmp = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return tmp.reshape(n, c // (b * b), h * b, w * b)


def _infer_space_to_depth(ctx: InferContext) -> list[TensorType]:
    x, b = _check_block_op(ctx)
    if x.shape is None:
        return [x]
    n, c, h, w = x.shape
    return [x.with_shape((n, _mul(c, b * b), _div(h, b, ctx, "height"), _div(w, b, ctx, "width")))]


def _ref_space_to_depth(ctx, x):
    b, (n, c, h, w) = ctx.attrs["blocksize"], x.shape
    tmp = x.reshape(n, c, h // b, b, w // b, b)
    # The inverse of DepthToSpace in the same mode: the block offsets go before (DCR) or after (CRD) depth.
    perm = (0, 3, 5, 1, 2, 4) if ctx.attrs["mode"] == "DCR" else (0, 1, 3, 5, 2, 4)
    return tmp.transpose(perm).reshape(n, c * b * b, h // b, w // b)


# ---- the table -------------------------------------------------------------------------

def _op(name, inputs, outputs, infer, reference, category=Category.INJECTIVE, attrs=None, doc="",
        shape_value=None, **facts):
    """Every op in this module moves or selects data: precision is never in question."""
    return OpDef(name=name, inputs=inputs, outputs=outputs, infer=infer, reference=reference,
                 category=category, precision=Precision.EXACT, attrs=attrs or {}, doc=doc,
                 shape_value=shape_value, **facts)


_SCATTER_ATTRS = {"reduction": Attr("string", "none")}
_BLOCK_ATTRS = {"blocksize": Attr("int"), "mode": Attr("string", "DCR")}

OPS = [
    _op("Reshape", ("data", "shape"), ("reshaped",), _infer_reshape, _ref_reshape,
        attrs={"allowzero": Attr("int", 0)}, shape_value=_shape_value_passthrough, doc="Reshape to a target shape (0 copies the input dim, -1 is inferred).",
        shape_inputs=("shape",), view=True),
    _op("Flatten", ("input",), ("output",), _infer_flatten, _ref_flatten,
        attrs={"axis": Attr("int", 1)}, doc="Reshape to 2-D: dims before `axis` and from `axis` on.", view=True),
    _op("Squeeze", ("data", "axes?"), ("squeezed",), _infer_squeeze, _ref_squeeze,
        shape_value=_shape_value_passthrough, doc="Remove size-1 axes (the given ones, or all).",
        shape_inputs=("axes",), view=True),
    _op("Unsqueeze", ("data", "axes"), ("expanded",), _infer_unsqueeze, _ref_unsqueeze,
        shape_value=_shape_value_passthrough, doc="Insert size-1 axes at the given output positions.",
        shape_inputs=("axes",), view=True),
    _op("Transpose", ("data",), ("transposed",), _infer_transpose, _ref_transpose,
        attrs={"perm": Attr("ints", None)}, doc="Permute axes (default: reverse them)."),
    _op("Concat", ("inputs+",), ("concat_result",), _infer_concat, _ref_concat,
        attrs={"axis": Attr("int")}, shape_value=_shape_value_of_concat, doc="Join tensors along an axis."),
    _op("Split", ("input", "split?"), ("outputs+",), _infer_split, _ref_split,
        attrs={"axis": Attr("int", 0), "num_outputs": Attr("int", None)},
        doc="Split along an axis into given sizes or equal chunks (the last one smaller).", shape_inputs=("split",)),
    _op("Slice", ("data", "starts", "ends", "axes?", "steps?"), ("output",), _infer_slice, _ref_slice,
        shape_value=_shape_value_of_slice, doc="Strided slice per axis, clamping out-of-range bounds; negative steps walk backwards.",
        shape_inputs=("starts", "ends", "axes", "steps")),
    _op("Gather", ("data", "indices"), ("output",), _infer_gather, _ref_gather,
        attrs={"axis": Attr("int", 0)}, shape_value=_shape_value_of_gather, doc="Take entries along an axis at the given indices."),
    _op("GatherElements", ("data", "indices"), ("output",), _infer_gather_elements, _ref_gather_elements,
        attrs={"axis": Attr("int", 0)}, doc="Elementwise gather along an axis (take_along_axis)."),
    _op("GatherND", ("data", "indices"), ("output",), _infer_gather_nd, _ref_gather_nd,
        attrs={"batch_dims": Attr("int", 0)}, doc="Gather slices addressed by index tuples in the last indices dim."),
    _op("ScatterElements", ("data", "indices", "updates"), ("output",), _infer_scatter, _ref_scatter_elements,
        Category.OPAQUE, attrs={"axis": Attr("int", 0), **_SCATTER_ATTRS},
        doc="Write updates at per-element indices along an axis, optionally reducing."),
    _op("ScatterND", ("data", "indices", "updates"), ("output",), _infer_scatter, _ref_scatter_nd,
        Category.OPAQUE, attrs=dict(_SCATTER_ATTRS), doc="Write update slices at index tuples, optionally reducing."),
    _op("Expand", ("input", "shape"), ("output",), _infer_expand, _ref_expand,
        doc="Broadcast to a shape (numpy rules in both directions).", shape_inputs=("shape",)),
    _op("Tile", ("input", "repeats"), ("output",), _infer_tile, _ref_tile,
        doc="Repeat the tensor along each axis.", shape_inputs=("repeats",)),
    _op("Pad", ("data", "pads", "constant_value?", "axes?"), ("output",), _infer_pad, _ref_pad,
        attrs={"mode": Attr("string", "constant")},
        doc="Pad (or crop, for negative pads) with a constant, reflection, edge copies or wrap-around.",
        shape_inputs=("pads", "axes")),
    _op("Shape", ("data",), ("shape",), _infer_shape, _ref_shape, Category.OPAQUE,
        attrs={"start": Attr("int", 0), "end": Attr("int", None)}, shape_value=_shape_value_of_shape, doc="The input's dims [start, end) as int64.",
        not_lowerable=PENDING_RULE),
    _op("Size", ("data",), ("size",), lambda ctx: [TensorType((), dtypes.int64)],
        lambda ctx, x: np.array(x.size, dtype=np.int64), Category.OPAQUE, shape_value=_shape_value_of_size, doc="The input's element count as int64.",
        not_lowerable=PENDING_RULE),
    _op("ConstantOfShape", ("input",), ("output",), _infer_constant_of_shape, _ref_constant_of_shape,
        Category.OPAQUE, attrs={"value": Attr("tensor", None)},
        doc="A tensor of the given shape filled with `value` (default float32 zero).",
        shape_inputs=("input",), not_lowerable=VALUE_DEPENDENT_SHAPE),  # folds once its input is known
    _op("Range", ("start", "limit", "delta"), ("output",), _infer_range, _ref_range, Category.OPAQUE,
        attrs={"stash_type": Attr("dtype", dtypes.float32)}, doc="start, start + delta, ... up to limit (exclusive).",
        shape_inputs=("start", "limit", "delta"), not_lowerable=VALUE_DEPENDENT_SHAPE),  # likewise
    _op("EyeLike", ("input",), ("output",), _infer_eye_like, _ref_eye_like,
        attrs={"dtype": Attr("dtype", None), "k": Attr("int", 0)},
        doc="Ones on the k-th diagonal of a matrix shaped like the input."),
    _op("OneHot", ("indices", "depth", "values"), ("output",), _infer_one_hot, _ref_one_hot,
        attrs={"axis": Attr("int", -1)}, doc="One-hot encode indices with [off, on] values along a new axis.",
        shape_inputs=("depth",)),
    _op("Trilu", ("input", "k?"), ("output",), _infer_trilu, _ref_trilu,
        attrs={"upper": Attr("int", 1)}, doc="Keep the upper or lower triangle (from the k-th diagonal) of the last two axes."),
    _op("Compress", ("input", "condition"), ("output",), _infer_compress, _ref_compress, Category.OPAQUE,
        attrs={"axis": Attr("int", None)}, doc="Select slices along an axis (or flattened elements) where condition holds.",
        not_lowerable=VALUE_DEPENDENT_SHAPE),
    _op("NonZero", ("X",), ("Y",), _infer_nonzero, _ref_nonzero, Category.OPAQUE,
        doc="Coordinates of the non-zero elements, one row per axis.", not_lowerable=VALUE_DEPENDENT_SHAPE),
    _op("Unique", ("X",), ("Y", "indices?", "inverse_indices?", "counts?"), _infer_unique, _ref_unique,
        Category.OPAQUE, attrs={"sorted": Attr("int", 1), "axis": Attr("int", None)},
        doc="Unique elements (or slices along an axis) with first indices, inverse indices and counts.",
        not_lowerable=VALUE_DEPENDENT_SHAPE),
    _op("ReverseSequence", ("input", "sequence_lens"), ("Y",), _infer_reverse_sequence, _ref_reverse_sequence,
        attrs={"batch_axis": Attr("int", 1), "time_axis": Attr("int", 0)},
        doc="Reverse the first sequence_lens[b] steps along the time axis of each batch entry."),
    _op("DepthToSpace", ("input",), ("output",), _infer_depth_to_space, _ref_depth_to_space,
        attrs=dict(_BLOCK_ATTRS), doc="Move channel blocks into blocksize x blocksize spatial tiles."),
    _op("SpaceToDepth", ("input",), ("output",), _infer_space_to_depth, _ref_space_to_depth,
        attrs=dict(_BLOCK_ATTRS), doc="Move blocksize x blocksize spatial tiles into channels."),
]
