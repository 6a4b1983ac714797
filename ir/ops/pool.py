"""Pooling: MaxPool (with its optional argmax Indices), AveragePool, LpPool, their Global
forms, and MaxUnpool.

A windowed pool reduces `_window.windows`' strided view of the padded input over its
window axes (`reduce_windows`, one vectorized step per kernel tap): no copy of the
patches, no Python loop over output positions.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from .. import flops
from ..registry import PENDING_RULE, Attr, Category, InferContext, OpDef, Precision
from ..types import TensorType, fresh_dim
from ._window import (Window, crop_or_pad, numel, pad_for, pad_spatial, reduce_windows, resolve_window, spatial_ints,
                      windows)
from .matmul import accumulator

_POOL_ATTRS = {"auto_pad": Attr("string", "NOTSET"), "ceil_mode": Attr("int", 0), "dilations": Attr("ints", None),
               "kernel_shape": Attr("ints"), "pads": Attr("ints", None), "strides": Attr("ints", None)}


def _spatial_rank(ctx, x_shape) -> int:
    if len(x_shape) < 3:
        raise ctx.error(f"X must be (N, C, spatial...), got shape {list(x_shape)}")
    return len(x_shape) - 2


def _pool_window(ctx, spatial) -> Window:
    return resolve_window(ctx.attrs, spatial, ctx.attrs["kernel_shape"], ctx.error, bool(ctx.attrs["ceil_mode"]))


def _infer_pool(ctx: InferContext):
    x = ctx.input(0)
    if x.shape is None:
        shape = None
    else:
        _spatial_rank(ctx, x.shape)
        shape = x.shape[:2] + tuple(_pool_window(ctx, x.shape[2:]).out)
    return [TensorType(shape, x.dtype), TensorType(shape, dtypes.int64)][: max(ctx.num_outputs, 1)]


# ---------------------------------------------------------------- MaxPool

def _lowest(dtype: np.dtype):
    """The padding value that never wins a max."""
    return -np.inf if dtypes.from_numpy(dtype).is_float else np.iinfo(dtype).min


def _argmax_indices(patches: np.ndarray, win: Window, shape, column_major: bool) -> np.ndarray:
    """Flat indices into x (over N, C and the spatial axes) of each window's maximum.

    Spatial axes are flattened row-major, or column-major when storage_order is 1.
    """
    n = len(win.kernel)
    N, C, spatial = shape[0], shape[1], shape[2:]
    taps = np.argmax(patches.reshape(patches.shape[: 2 + n] + (-1,)), axis=-1)
    k_pos = np.unravel_index(taps, win.kernel)
    o_pos = np.indices(win.out)
    flat = np.zeros(taps.shape, dtype=np.int64)
    order = range(n - 1, -1, -1) if column_major else range(n)
    for i in order:
        pos = o_pos[i] * win.strides[i] - win.pads_begin[i] + k_pos[i] * win.dilations[i]
        flat = flat * spatial[i] + pos
    plane = (np.arange(N)[:, None] * C + np.arange(C)[None, :]) * numel(spatial)
    return flat + plane.reshape((N, C) + (1,) * n)


def _ref_max_pool(ctx, x):
    n = x.ndim - 2
    win = _pool_window(ctx, x.shape[2:])
    patches = windows(pad_for(x, win, _lowest(x.dtype)), win)
    y = reduce_windows(patches, n, np.maximum)
    if ctx.num_outputs < 2:
        return y
    return y, _argmax_indices(patches, win, x.shape, ctx.attrs["storage_order"] == 1)


# ---------------------------------------------------------------- AveragePool, LpPool

def _window_counts(win: Window, spatial, include_pad: bool) -> np.ndarray:
    """How many elements each window averages: the input's, plus the explicit padding when
    count_include_pad, never the overhang that ceil_mode adds."""
    n = len(spatial)
    if include_pad:
        padded = [s + b + e for s, b, e in zip(spatial, win.pads_begin, win.pads_end)]
        ones = pad_spatial(np.ones(padded, np.float32), [0] * n, win.extra_end)
    else:
        ones = pad_for(np.ones(spatial, np.float32), win)
    return reduce_windows(windows(ones, win), n, np.add)


def _ref_average_pool(ctx, x):
    n = x.ndim - 2
    acc = accumulator(x.dtype)
    win = _pool_window(ctx, x.shape[2:])
    sums = reduce_windows(windows(pad_for(x.astype(acc, copy=False), win), win), n, np.add)
    return (sums / _window_counts(win, x.shape[2:], bool(ctx.attrs["count_include_pad"]))).astype(x.dtype)


def _ref_lp_pool(ctx, x):
    n, p = x.ndim - 2, float(ctx.attrs["p"])
    acc = accumulator(x.dtype)
    win = _pool_window(ctx, x.shape[2:])
    powered = np.abs(x.astype(acc, copy=False)) ** p
    return (reduce_windows(windows(pad_for(powered, win), win), n, np.add) ** (1.0 / p)).astype(x.dtype)


# ---------------------------------------------------------------- Global pools

def _infer_global_pool(ctx: InferContext):
    x = ctx.input(0)
    if x.shape is None:
        return [x]
    n = _spatial_rank(ctx, x.shape)
    return [TensorType(x.shape[:2] + (1,) * n, x.dtype)]


def _global_pool(name: str, reduce, doc: str, precision=Precision.ACCUMULATE_FP32, attrs=None) -> OpDef:
    """A pool over all spatial axes at once: reduce(ctx, x in the accumulation type, axes)."""

    def reference(ctx, x):
        axes = tuple(range(2, x.ndim))
        return reduce(ctx, x.astype(accumulator(x.dtype), copy=False), axes).astype(x.dtype)

    return OpDef(name, ("X",), ("Y",), _infer_global_pool, reference, Category.REDUCTION, precision,
                 attrs=attrs or {}, doc=doc)


def _global_lp(ctx, x, axes):
    p = float(ctx.attrs["p"])
    return (np.abs(x) ** p).sum(axis=axes, keepdims=True) ** (1.0 / p)


# ---------------------------------------------------------------- MaxUnpool

def _unpool_default_shape(ctx, x_shape) -> tuple:
    n = _spatial_rank(ctx, x_shape)
    kernel = ctx.attrs["kernel_shape"]
    if len(kernel) != n:
        raise ctx.error(f"kernel_shape has {len(kernel)} values, expected {n}")
    strides = spatial_ints(ctx.attrs, "strides", n, 1, ctx.error)
    pads = ctx.attrs["pads"] or [0] * (2 * n)
    return tuple(x_shape[:2]) + tuple(
        (d - 1) * s + k - pads[i] - pads[i + n] if isinstance(d, int) else fresh_dim("out")
        for i, (d, s, k) in enumerate(zip(x_shape[2:], strides, kernel)))


def _infer_max_unpool(ctx: InferContext):
    x = ctx.input(0)
    if ctx.has(2):
        shape = ctx.const(2)
        if shape is not None:
            return [TensorType(tuple(int(d) for d in shape), x.dtype)]
        return [TensorType(None if x.shape is None else tuple(fresh_dim("out") for _ in x.shape), x.dtype)]
    return [TensorType(None if x.shape is None else _unpool_default_shape(ctx, x.shape), x.dtype)]


def _ref_max_unpool(ctx, x, indices, output_shape=None):
    default = _unpool_default_shape(ctx, x.shape)
    flat = np.zeros(numel(default), dtype=x.dtype)
    flat[indices.ravel()] = x.ravel()
    y = flat.reshape(default)
    if output_shape is None:
        return y
    # Indices address the default layout; a larger requested shape adds zeros at the end.
    return crop_or_pad(y, [0] * x.ndim, [int(d) for d in output_shape])


OPS = [
    OpDef("MaxPool", ("X",), ("Y", "Indices?"), _infer_pool, _ref_max_pool, Category.REDUCTION, Precision.FOLLOW,
          attrs={**_POOL_ATTRS, "storage_order": Attr("int", 0)},
          doc="Max over sliding windows; the optional Indices output gives each maximum's flat position.",
          kernel_class="pool", flops=flops.pool),
    OpDef("AveragePool", ("X",), ("Y",), _infer_pool, _ref_average_pool, Category.REDUCTION,
          Precision.ACCUMULATE_FP32, attrs={**_POOL_ATTRS, "count_include_pad": Attr("int", 0)},
          doc="Mean over sliding windows, counting the padding or not (count_include_pad).",
          kernel_class="pool", flops=flops.pool),
    OpDef("LpPool", ("X",), ("Y",), _infer_pool, _ref_lp_pool, Category.REDUCTION, Precision.FP32,
          attrs={**_POOL_ATTRS, "p": Attr("int", 2)},
          doc="p-norm over sliding windows: (sum |x|^p)^(1/p).", flops=flops.pool),
    _global_pool("GlobalAveragePool", lambda ctx, x, axes: x.mean(axis=axes, keepdims=True),
                 "Mean over all spatial axes, keeping them as size 1."),
    _global_pool("GlobalMaxPool", lambda ctx, x, axes: x.max(axis=axes, keepdims=True),
                 "Max over all spatial axes, keeping them as size 1.", Precision.FOLLOW),
    _global_pool("GlobalLpPool", _global_lp, "p-norm over all spatial axes, keeping them as size 1.",
                 Precision.FP32, attrs={"p": Attr("int", 2)}),
    OpDef("MaxUnpool", ("X", "I", "output_shape?"), ("output",), _infer_max_unpool, _ref_max_unpool,
          Category.OPAQUE, Precision.EXACT,
          attrs={"kernel_shape": Attr("ints"), "pads": Attr("ints", None), "strides": Attr("ints", None)},
          doc="Scatter pooled values back to the positions MaxPool's Indices recorded; zeros elsewhere.",
          not_lowerable=PENDING_RULE),
]
