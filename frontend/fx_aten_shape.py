"""ATen converters for shapes and data movement (view, permute, cat, split, slice, index...),
copies and type conversions, and tensor factories. Shapes are specialized, so sizes are
Python ints here and factories become constants.
See `fx_aten.py` for the calling convention; `SHAPE_CONVERTERS` is this module's part of the table.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..ir import dtypes
from ..ir.graph import Value
from .fx_context import FxEmitter, Unsupported, ir_dtype

aten = torch.ops.aten
INT64_MAX = np.iinfo(np.int64).max


# -- shapes and data movement --------------------------------------------------------------
def reshape(cx: FxEmitter, x, size=None, shape=None, **_):
    size = list(size if shape is None else shape)
    return cx.op("Reshape", x, cx.ints(size), allowzero=int(0 in size))  # torch's 0 is a real 0


def _flatten(cx: FxEmitter, x, start_dim=0, end_dim=-1, **_):
    if cx.rank(x) == 0:
        return reshape(cx, x, [1])
    shape = cx.shape(x)
    s, e = cx.axis(start_dim, x), cx.axis(end_dim, x)
    return reshape(cx, x, [*shape[:s], -1, *shape[e + 1:]])


def _unflatten(cx: FxEmitter, x, dim, sizes, **_):
    shape = cx.shape(x)
    d = cx.axis(dim, x)
    return reshape(cx, x, [*shape[:d], *sizes, *shape[d + 1:]])


def _permute(cx: FxEmitter, x, dims, **_):
    return cx.op("Transpose", x, perm=[cx.axis(d, x) for d in dims])


def _transpose(cx: FxEmitter, x, dim0, dim1, **_):
    perm = list(range(cx.rank(x)))
    a, b = cx.axis(dim0, x), cx.axis(dim1, x)
    perm[a], perm[b] = perm[b], perm[a]
    return x if a == b else cx.op("Transpose", x, perm=perm)


def _expand(cx: FxEmitter, x, size, **_):
    shape = cx.shape(x)
    offset = len(size) - len(shape)
    target = [shape[i - offset] if s == -1 else s for i, s in enumerate(size)]
    return cx.op("Expand", x, cx.ints(target))


def _expand_as(cx: FxEmitter, x, other, **_):
    return cx.op("Expand", x, cx.ints(cx.shape(other)))


def _cat(cx: FxEmitter, tensors, dim=0, **_):
    tensors = [t for t in tensors if not (cx.rank(t) == 1 and cx.shape(t)[0] == 0)]  # torch skips empty 1-D
    parts = cx.promote(*tensors)
    return parts[0] if len(parts) == 1 else cx.op("Concat", *parts, axis=cx.axis(dim, parts[0]))


def _stack(cx: FxEmitter, tensors, dim=0, **_):
    parts = cx.promote(*tensors)
    axis = dim % (cx.rank(parts[0]) + 1)
    parts = [cx.op("Unsqueeze", p, cx.ints([axis])) for p in parts]
    return parts[0] if len(parts) == 1 else cx.op("Concat", *parts, axis=axis)


def _split_sizes(cx: FxEmitter, x: Value, sizes: list[int], dim: int) -> list[Value]:
    return cx.ops("Split", x, cx.ints(sizes), axis=cx.axis(dim, x), num_outputs=len(sizes))


def _split(cx: FxEmitter, x, split_size=None, split_sizes=None, dim=0, **_):
    sizes = split_sizes if split_sizes is not None else split_size
    if isinstance(sizes, int):
        total = cx.shape(x)[cx.axis(dim, x)]
        sizes = [sizes] * (total // sizes) + ([total % sizes] if total % sizes else [])
    return _split_sizes(cx, x, list(sizes), dim)


def _chunk(cx: FxEmitter, x, chunks, dim=0, **_):
    total = cx.shape(x)[cx.axis(dim, x)]
    return _split(cx, x, split_size=-(-total // chunks), dim=dim)


def _unbind(cx: FxEmitter, x, dim=0, **_):
    axis = cx.axis(dim, x)
    parts = _split_sizes(cx, x, [1] * cx.shape(x)[axis], axis)
    return [cx.op("Squeeze", p, cx.ints([axis])) for p in parts]


def _slice(cx: FxEmitter, x, dim=0, start=None, end=None, step=1, **_):
    start = 0 if start is None else start
    end = INT64_MAX if end is None else end
    if start == 0 and end >= INT64_MAX and step == 1:
        return x
    return cx.op("Slice", x, cx.ints([start]), cx.ints([min(end, INT64_MAX)]), cx.ints([cx.axis(dim, x)]),
                 cx.ints([step]))


def _select(cx: FxEmitter, x, dim, index, **_):
    return cx.op("Gather", x, cx.const(np.int64(index)), axis=cx.axis(dim, x))


def _index(cx: FxEmitter, x, indices, **_):
    """x[..., i, j, ...] with index tensors (None = a full slice), numpy's advanced indexing."""
    used = [(axis, idx) for axis, idx in enumerate(indices) if idx is not None]
    if any(cx.dtype(idx) == dtypes.bool_ for _, idx in used):
        raise Unsupported("boolean-mask indexing (its result size depends on the data)")
    if len(used) == 1:
        axis, idx = used[0]
        return cx.op("Gather", x, idx, axis=axis)
    return _index_many(cx, x, [a for a, _ in used], [i for _, i in used])


def _index_many(cx: FxEmitter, x: Value, axes: list[int], idx: list[Value]) -> Value:
    """Several index tensors: bring the indexed axes to the front, GatherND on the stacked
    (broadcast) indices, then put the result's index dims where numpy does: in place of the
    indexed axes when those are adjacent, first otherwise."""
    rank = cx.rank(x)
    rest = [a for a in range(rank) if a not in axes]
    if axes + rest != list(range(rank)):
        x = cx.op("Transpose", x, perm=axes + rest)
    shape = list(np.broadcast_shapes(*(cx.shape(i) for i in idx)))
    stacked = [cx.op("Unsqueeze", cx.op("Expand", cx.cast(i, dtypes.int64), cx.ints(shape)), cx.ints([-1]))
               for i in idx]
    out = cx.op("GatherND", x, cx.op("Concat", *stacked, axis=-1))
    adjacent = axes == list(range(axes[0], axes[0] + len(axes)))
    if not adjacent or axes[0] == 0:
        return out
    nb = len(shape)
    before = list(range(nb, nb + axes[0]))
    after = list(range(nb + axes[0], nb + len(rest)))
    return cx.op("Transpose", out, perm=before + list(range(nb)) + after)


def _index_select(cx: FxEmitter, x, dim, index, **_):
    return cx.op("Gather", x, index, axis=cx.axis(dim, x))


def _gather(cx: FxEmitter, x, dim, index, **_):
    return cx.op("GatherElements", x, index, axis=cx.axis(dim, x))


def _flip(cx: FxEmitter, x, dims, **_):
    axes = [cx.axis(d, x) for d in dims]
    n = len(axes)
    return cx.op("Slice", x, cx.ints([-1] * n), cx.ints([-INT64_MAX] * n), cx.ints(axes), cx.ints([-1] * n))


def _repeat_interleave(cx: FxEmitter, x, repeats, dim=None, **_):
    """Each element repeated `repeats` times along `dim` (flattened when None): expand a new axis."""
    if isinstance(repeats, Value):
        raise Unsupported("repeat_interleave with a tensor of repeats")
    if dim is None:
        x, dim = reshape(cx, x, [-1]), 0
    shape = list(cx.shape(x))
    axis = cx.axis(dim, x)
    wide = cx.op("Unsqueeze", x, cx.ints([axis + 1]))
    wide = cx.op("Expand", wide, cx.ints(shape[:axis + 1] + [repeats] + shape[axis + 1:]))
    return reshape(cx, wide, shape[:axis] + [shape[axis] * repeats] + shape[axis + 1:])


def _squeeze(cx: FxEmitter, x, dim=None, **_):
    shape = cx.shape(x)
    dims = range(len(shape)) if dim is None else ([dim] if isinstance(dim, int) else dim)
    axes = sorted({cx.axis(d, x) for d in dims if shape and shape[cx.axis(d, x)] == 1})  # torch skips non-1 dims
    return cx.op("Squeeze", x, cx.ints(axes)) if axes else x


def _unsqueeze(cx: FxEmitter, x, dim, **_):
    return cx.op("Unsqueeze", x, cx.ints([dim % (cx.rank(x) + 1)]))


def _repeat(cx: FxEmitter, x, repeats, **_):
    extra = len(repeats) - cx.rank(x)
    if extra > 0:
        x = reshape(cx, x, [1] * extra + list(cx.shape(x)))
    return cx.op("Tile", x, cx.ints(repeats))


def _constant_pad_nd(cx: FxEmitter, x, pad, value=0, **_):
    return _pad(cx, x, pad, "constant", value)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad(cx: FxEmitter, x, pad, mode="constant", value=None, **_):
    if mode not in _PAD_MODES:
        raise Unsupported(f"pad mode {mode!r}")
    n = len(pad) // 2
    axes = [cx.rank(x) - 1 - i for i in range(n)]
    pads = [pad[2 * i] for i in range(n)] + [pad[2 * i + 1] for i in range(n)]
    fill = cx.tensor(0 if value is None else value, cx.dtype(x)) if mode == "constant" else None
    return cx.op("Pad", x, cx.ints(pads), fill, cx.ints(axes), mode=_PAD_MODES[mode])


def _trilu(upper: int) -> Callable:
    def convert(cx: FxEmitter, x, diagonal=0, **_):
        return cx.op("Trilu", x, cx.const(np.int64(diagonal)), upper=upper)
    return convert


def _cast_to(cx: FxEmitter, x, dtype=None, other=None, **_):
    """_to_copy / to / type_as: only the element type matters on one device."""
    if other is not None:
        return cx.cast(x, cx.dtype(other))
    return x if dtype is None else cx.cast(x, ir_dtype(dtype))


def _identity(cx: FxEmitter, x, **_):
    return x


def _no_op(cx: FxEmitter, *args, **kwargs):
    """Run-time assertions export adds (_assert_tensor_metadata...): nothing to compute."""
    return None


# -- tensor factories (shapes are static after specialization, so these are constants) ------
def _factory_dtype(dtype, fill, like: Value | None = None) -> np.dtype:
    if dtype is not None:
        return ir_dtype(dtype).numpy
    if like is not None:
        return like.type.dtype.numpy
    return np.dtype(np.bool_ if isinstance(fill, bool) else np.int64 if isinstance(fill, int) else np.float32)


def _full(cx: FxEmitter, size, fill_value, dtype=None, **_):
    return cx.const(np.full(list(size), fill_value, dtype=_factory_dtype(dtype, fill_value)))


def _filled(fill) -> Callable:
    def convert(cx: FxEmitter, size=None, x=None, dtype=None, **_):
        shape = list(size) if size is not None else list(cx.shape(x))
        dt = ir_dtype(dtype).numpy if dtype is not None else (cx.dtype(x).numpy if x is not None else np.float32)
        return cx.const(np.full(shape, fill, dtype=dt))
    return convert


def _full_like(cx: FxEmitter, x, fill_value, dtype=None, **_):
    return cx.const(np.full(list(cx.shape(x)), fill_value, dtype=_factory_dtype(dtype, fill_value, x)))


def _scalar_tensor(cx: FxEmitter, s, dtype=None, **_):
    return cx.const(np.asarray(s, dtype=_factory_dtype(dtype, 0.0)))


def _arange(cx: FxEmitter, end, start=0, step=1, dtype=None, **_):
    integral = all(isinstance(v, int) for v in (start, end, step))
    dt = ir_dtype(dtype).numpy if dtype is not None else (np.int64 if integral else np.float32)
    return cx.const(np.arange(start, end, step).astype(dt))


def _sym_size(cx: FxEmitter, x, dim=None, **_):
    return cx.shape(x) if dim is None else cx.shape(x)[cx.axis(dim, x)]


SHAPE_CONVERTERS: dict = {
    # shapes and data movement
    aten.view: reshape, aten._unsafe_view: reshape, aten.reshape: reshape, aten.flatten: _flatten,
    aten.unflatten: _unflatten, aten.permute: _permute, aten.transpose: _transpose, aten.expand: _expand,
    aten.expand_as: _expand_as, aten.cat: _cat, aten.concat: _cat, aten.stack: _stack, aten.split: _split,
    aten.split_with_sizes: _split, aten.chunk: _chunk, aten.unbind: _unbind, aten.slice: _slice,
    aten.select: _select, aten.index: _index, aten.index_select: _index_select, aten.gather: _gather,
    aten.squeeze: _squeeze, aten.unsqueeze: _unsqueeze, aten.repeat: _repeat, aten.constant_pad_nd: _constant_pad_nd,
    aten.pad: _pad,
    aten.tril: _trilu(0), aten.triu: _trilu(1), aten.flip: _flip, aten.repeat_interleave: _repeat_interleave,
    # copies and conversions: one device, so only the element type can change
    aten.clone: _identity, aten.contiguous: _identity, aten.alias: _identity, aten.detach: _identity,
    aten.lift_fresh_copy: _identity, aten._to_copy: _cast_to, aten.to: _cast_to, aten.type_as: _cast_to,
    # factories
    aten.full: _full, aten.zeros: _filled(0), aten.ones: _filled(1), aten.new_zeros: _filled(0),
    aten.new_ones: _filled(1), aten.zeros_like: _filled(0), aten.ones_like: _filled(1),
    aten.full_like: _full_like, aten.scalar_tensor: _scalar_tensor, aten.arange: _arange,
    aten.empty: _filled(0), aten.empty_like: _filled(0),  # contents undefined in torch: zeros are one valid choice
    # sizes and run-time checks
    aten.sym_size: _sym_size, aten._assert_tensor_metadata: _no_op, aten._assert_scalar: _no_op,
    aten.sym_constrain_range_for_size: _no_op,
}
