"""Reduction ops: the Reduce* family (axes as an optional input), ArgMax/ArgMin, the softmax
family (Softmax, LogSoftmax, Hardmax), cumulative sums and products, TopK and Det.

References compute fp16/bf16 data in float32 and round once at the end, the way the
precision policies below promise a lowered kernel will.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from .. import flops
from ..registry import PENDING_RULE, Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import normalize_axes, normalize_axis
from ..types import TensorType, fresh_dim


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The type a reference computes in: float32 for floats narrower than 32 bits, else `dtype`."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OUS":
        return dtype
    return np.dtype(np.float32) if dtypes.from_numpy(dtype).is_float and dtype.itemsize < 4 else dtype


def require_float(ctx: InferContext, i: int = 0) -> TensorType:
    """Input i, which must hold a floating-point type (Softmax, norms, losses)."""
    t = ctx.input(i)
    if not t.dtype.is_float:
        raise ctx.error(f"input {i} must be a floating-point tensor, got {t.dtype}")
    return t


def _axis_of(ctx: InferContext, t: TensorType, axis: int) -> int | None:
    """`axis` normalised against t's rank (None when the rank is unknown); errors name the node."""
    if t.rank is None:
        return None
    if t.rank == 0:
        raise ctx.error(f"needs a tensor of rank >= 1 for axis {axis}, got a scalar")
    return normalize_axis(axis, t.rank, ctx)


# --- Reduce*: axes is an optional int64 input --------------------------------------------------

def reduction_axes(axes: np.ndarray | None, rank: int, noop_with_empty_axes: int, ctx=None) -> tuple[int, ...]:
    """The axes a Reduce* node reduces. No (or empty) axes means all axes, or none at all when
    noop_with_empty_axes is set (numpy's `axis=()`: composite reductions still apply their
    elementwise steps, so ReduceSumSquare then returns the squares)."""
    if axes is None or np.asarray(axes).size == 0:
        return () if noop_with_empty_axes else tuple(range(rank))
    return tuple(sorted(set(normalize_axes(np.asarray(axes).reshape(-1).tolist(), rank, ctx))))


def reduced_shape(shape, axes, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _infer_reduce(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    keepdims, noop = ctx.attrs["keepdims"], ctx.attrs["noop_with_empty_axes"]
    if ctx.has(1) and ctx.input(1).rank not in (None, 1):
        raise ctx.error(f"axes must be a 1-D int64 tensor, got {ctx.input(1)}")
    if x.shape is None:
        return [x]
    if not ctx.has(1) or ctx.const(1) is not None:
        axes = reduction_axes(ctx.const(1) if ctx.has(1) else None, x.rank, noop, ctx)
        return [x.with_shape(reduced_shape(x.shape, axes, keepdims))]
    # Axes known only at run time: each kept dim is either itself or 1.
    if keepdims:
        return [x.with_shape(d if d == 1 else fresh_dim("reduced") for d in x.shape)]
    n_axes = ctx.input(1).shape[0]
    if not isinstance(n_axes, int):
        return [x.with_shape(None)]
    if n_axes == 0:
        return [x if noop else x.with_shape(())]
    return [x.with_shape(fresh_dim("reduced") for _ in range(x.rank - n_axes))]


def _lowest(dtype: np.dtype):
    """Identity of max: -inf for floats, the smallest value for ints, False for bool."""
    if dtype == np.bool_:
        return False
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return -np.inf


def _highest(dtype: np.dtype):
    if dtype == np.bool_:
        return True
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    return np.inf


def _sum(x, axes, keepdims):
    return np.sum(x, axis=axes, keepdims=keepdims)


def _mean(x, axes, keepdims):
    if x.dtype.kind in "iu":  # integer mean: true mean, truncated back by the caller's cast
        x = x.astype(np.float64)
    return np.mean(x, axis=axes, keepdims=keepdims)


def _max(x, axes, keepdims):
    return np.max(x, axis=axes, keepdims=keepdims, initial=_lowest(x.dtype))


def _min(x, axes, keepdims):
    return np.min(x, axis=axes, keepdims=keepdims, initial=_highest(x.dtype))


def _log_sum_exp(x, axes, keepdims):
    # Shift by the max for stability; an all -inf (or empty) slice keeps shift 0 so the result is -inf.
    shift = np.max(x, axis=axes, keepdims=True, initial=-np.inf)
    shift = np.where(np.isfinite(shift), shift, 0)
    total = np.sum(np.exp(x - shift), axis=axes, keepdims=True)
    out = np.log(total) + shift
    return out if keepdims else np.squeeze(out, axis=axes)


def _reduce(name: str, fn, precision: Precision, doc: str, *, floats_only: bool = False) -> OpDef:
    """A Reduce* op: `fn(x, axes, keepdims)` on the data in its compute type, cast back after."""

    def reference(ctx, data, axes=None):
        axes = reduction_axes(axes, data.ndim, ctx.attrs["noop_with_empty_axes"])
        x = data.astype(compute_dtype(data.dtype), copy=False)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # empty sets give -inf, nan
            out = fn(x, axes, bool(ctx.attrs["keepdims"]))
        return np.asarray(out).astype(data.dtype, copy=False)

    def infer(ctx):
        if floats_only:
            require_float(ctx, 0)
        return _infer_reduce(ctx)

    return OpDef(name=name, inputs=("data", "axes?"), outputs=("reduced",), infer=infer, reference=reference,
                 category=Category.REDUCTION, precision=precision, doc=doc, shape_inputs=("axes",),
                 attrs={"keepdims": Attr("int", 1), "noop_with_empty_axes": Attr("int", 0)})


_REDUCE_OPS = [
    _reduce("ReduceSum", _sum, Precision.ACCUMULATE_FP32, "Sum over the given axes (all by default)."),
    _reduce("ReduceMean", _mean, Precision.ACCUMULATE_FP32, "Arithmetic mean over the given axes."),
    _reduce("ReduceMax", _max, Precision.FOLLOW, "Maximum over the given axes; an empty set gives -inf (lowest)."),
    _reduce("ReduceMin", _min, Precision.FOLLOW, "Minimum over the given axes; an empty set gives +inf (highest)."),
    _reduce("ReduceProd", lambda x, a, k: np.prod(x, axis=a, keepdims=k), Precision.FP32,
            "Product over the given axes; an empty set gives 1."),
    _reduce("ReduceL1", lambda x, a, k: _sum(np.abs(x), a, k), Precision.ACCUMULATE_FP32,
            "Sum of absolute values over the given axes."),
    _reduce("ReduceL2", lambda x, a, k: np.sqrt(_sum(x * x, a, k)), Precision.ACCUMULATE_FP32,
            "Euclidean norm over the given axes."),
    _reduce("ReduceSumSquare", lambda x, a, k: _sum(x * x, a, k), Precision.ACCUMULATE_FP32,
            "Sum of squares over the given axes."),
    _reduce("ReduceLogSum", lambda x, a, k: np.log(_sum(x, a, k)), Precision.FP32,
            "Natural log of the sum over the given axes.", floats_only=True),
    _reduce("ReduceLogSumExp", _log_sum_exp, Precision.FP32,
            "log(sum(exp(x))) over the given axes, computed stably.", floats_only=True),
]


# --- ArgMax / ArgMin ---------------------------------------------------------------------------

def _infer_arg(ctx: InferContext) -> list[TensorType]:
    x = ctx.input(0)
    axis = _axis_of(ctx, x, ctx.attrs["axis"])
    shape = None if axis is None else reduced_shape(x.shape, (axis,), ctx.attrs["keepdims"])
    if x.is_static and x.shape[axis] == 0:
        raise ctx.error(f"cannot take the arg of an empty axis {axis} of {x}")
    return [TensorType(shape, dtypes.int64)]


def _arg(name: str, pick, doc: str) -> OpDef:
    """ArgMax/ArgMin: `pick` is np.argmax or np.argmin (which return the first index of ties)."""

    def reference(ctx, x):
        axis = normalize_axis(ctx.attrs["axis"], x.ndim)
        if ctx.attrs["select_last_index"]:
            idx = x.shape[axis] - 1 - pick(np.flip(x, axis), axis=axis)
        else:
            idx = pick(x, axis=axis)
        if ctx.attrs["keepdims"]:
            idx = np.expand_dims(idx, axis)
        return np.asarray(idx, dtype=np.int64)

    return OpDef(name=name, inputs=("data",), outputs=("reduced",), infer=_infer_arg, reference=reference,
                 category=Category.REDUCTION, precision=Precision.EXACT, doc=doc,
                 attrs={"axis": Attr("int", 0), "keepdims": Attr("int", 1), "select_last_index": Attr("int", 0)})


# --- Softmax family ----------------------------------------------------------------------------

def _infer_along_axis(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    _axis_of(ctx, x, ctx.attrs["axis"])
    return [x]


def _softmax(x, axis):
    # A row that is all -inf (fully masked attention) is NaN by definition: -inf - -inf.
    with np.errstate(invalid="ignore"):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis):
    with np.errstate(invalid="ignore"):  # all -inf rows give NaN, as for Softmax
        shifted = x - np.max(x, axis=axis, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _hardmax(x, axis):
    # One-hot of the first maximum along the axis.
    out = np.zeros_like(x)
    np.put_along_axis(out, np.expand_dims(np.argmax(x, axis=axis), axis), 1, axis=axis)
    return out


def _along_axis(name: str, fn, precision: Precision, doc: str, **facts) -> OpDef:
    def reference(ctx, x):
        axis = normalize_axis(ctx.attrs["axis"], x.ndim)
        return fn(x.astype(compute_dtype(x.dtype), copy=False), axis).astype(x.dtype, copy=False)

    return OpDef(name=name, inputs=("input",), outputs=("output",), infer=_infer_along_axis, reference=reference,
                 category=Category.REDUCTION, precision=precision, doc=doc, attrs={"axis": Attr("int", -1)}, **facts)


# --- CumSum / CumProd --------------------------------------------------------------------------

def _infer_cumulative(ctx: InferContext) -> list[TensorType]:
    x, axis_t = ctx.input(0), ctx.input(1)
    if axis_t.shape is not None and axis_t.numel() not in (None, 1):
        raise ctx.error(f"axis must be a scalar (or 1-element) int tensor, got {axis_t}")
    if not axis_t.dtype.is_int:
        raise ctx.error(f"axis must be int32 or int64, got {axis_t.dtype}")
    if ctx.const(1) is not None:
        _axis_of(ctx, x, int(np.asarray(ctx.const(1)).reshape(-1)[0]))
    return [x]


def _shift_along(a: np.ndarray, axis: int, fill) -> np.ndarray:
    """a shifted one step forward along `axis`, `fill` entering at the front (exclusive scans)."""
    head = np.full_like(np.take(a, [0], axis=axis), fill)
    body = np.take(a, np.arange(a.shape[axis] - 1), axis=axis)
    return np.concatenate([head, body], axis=axis)


def _cumulative(name: str, scan, identity, precision: Precision, doc: str) -> OpDef:
    """CumSum/CumProd: `scan` is np.cumsum or np.cumprod; `identity` fills exclusive scans."""

    def reference(ctx, x, axis):
        axis = normalize_axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim)
        y = x.astype(compute_dtype(x.dtype), copy=False)
        if ctx.attrs["reverse"]:
            y = np.flip(y, axis)
        y = scan(y, axis=axis)
        if ctx.attrs["exclusive"] and y.shape[axis] > 0:
            y = _shift_along(y, axis, identity)
        if ctx.attrs["reverse"]:
            y = np.flip(y, axis)
        return np.ascontiguousarray(y).astype(x.dtype, copy=False)

    return OpDef(name=name, inputs=("x", "axis"), outputs=("y",), infer=_infer_cumulative, reference=reference,
                 category=Category.REDUCTION, precision=precision, doc=doc, shape_inputs=("axis",),
                 attrs={"exclusive": Attr("int", 0), "reverse": Attr("int", 0)})


# --- TopK --------------------------------------------------------------------------------------

def _infer_topk(ctx: InferContext) -> list[TensorType]:
    x, k_t = ctx.input(0), ctx.input(1)
    if k_t.shape is not None and k_t.numel() not in (None, 1):
        raise ctx.error(f"K must be a 1-element int64 tensor, got {k_t}")
    axis = _axis_of(ctx, x, ctx.attrs["axis"])
    if axis is None:
        return [x, TensorType(None, dtypes.int64)]
    k = ctx.const(1)
    if k is None:
        k = fresh_dim("k")
    else:
        k = int(np.asarray(k).reshape(-1)[0])
        if k < 0 or (isinstance(x.shape[axis], int) and k > x.shape[axis]):
            raise ctx.error(f"K={k} must lie in [0, {x.shape[axis]}] (the size of axis {axis} of {x})")
    shape = x.shape[:axis] + (k,) + x.shape[axis + 1:]
    return [x.with_shape(shape), TensorType(shape, dtypes.int64)]


def _stable_order(x: np.ndarray, axis: int, largest: bool) -> np.ndarray:
    """Indices sorting x along axis; ties keep the lower index first in both directions."""
    if not largest:
        return np.argsort(x, axis=axis, kind="stable")
    # Sorting the reversed axis ascending and reading it backwards gives descending order
    # with the lower original index first among equals (negation would break unsigned ints).
    n = x.shape[axis]
    return n - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)


def _topk_reference(ctx, x, k):
    k = int(np.asarray(k).reshape(-1)[0])
    axis = normalize_axis(ctx.attrs["axis"], x.ndim)
    if not 0 <= k <= x.shape[axis]:
        raise ctx.error(f"K={k} must lie in [0, {x.shape[axis]}] for input shape {list(x.shape)}")
    order = _stable_order(x, axis, bool(ctx.attrs["largest"]))
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


# --- Det ---------------------------------------------------------------------------------------

def _infer_det(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    if x.shape is None:
        return [x]
    if x.rank < 2:
        raise ctx.error(f"expects [..., M, M] matrices, got {x}")
    m, n = x.shape[-2:]
    if isinstance(m, int) and isinstance(n, int) and m != n:
        raise ctx.error(f"expects square matrices in the last two dims, got {x}")
    return [x.with_shape(x.shape[:-2])]


def _det_reference(ctx, x):
    # LAPACK has no fp16/bf16 kernels; float32 is at least as precise.
    return np.asarray(np.linalg.det(x.astype(compute_dtype(x.dtype), copy=False))).astype(x.dtype)


OPS = _REDUCE_OPS + [
    _arg("ArgMax", np.argmax, "Index of the maximum along an axis (first or last among ties)."),
    _arg("ArgMin", np.argmin, "Index of the minimum along an axis (first or last among ties)."),
    _along_axis("Softmax", _softmax, Precision.FP32, "exp(x) / sum(exp(x)) along one axis.",
    flops=flops.per_input_element(5)),
    _along_axis("LogSoftmax", log_softmax, Precision.FP32, "x - log(sum(exp(x))) along one axis.",
    flops=flops.per_input_element(5)),
    _along_axis("Hardmax", _hardmax, Precision.EXACT, "One-hot of the first maximum along one axis."),
    _cumulative("CumSum", np.cumsum, 0, Precision.ACCUMULATE_FP32,
                "Running sum along an axis (optionally exclusive and/or reversed)."),
    _cumulative("CumProd", np.cumprod, 1, Precision.FP32,
                "Running product along an axis (optionally exclusive and/or reversed)."),
    OpDef(name="TopK", inputs=("X", "K"), outputs=("Values", "Indices"), infer=_infer_topk,
          reference=_topk_reference, category=Category.OPAQUE, precision=Precision.EXACT,
          doc="The K largest (or smallest) elements along an axis and their indices; ties by lower index.",
          attrs={"axis": Attr("int", -1), "largest": Attr("int", 1), "sorted": Attr("int", 1)},
          shape_inputs=("K",)),
    OpDef(name="Det", inputs=("X",), outputs=("Y",), infer=_infer_det, reference=_det_reference,
          category=Category.OPAQUE, precision=Precision.FP32, doc="Determinant of each square matrix in [..., M, M].",
          not_lowerable=PENDING_RULE),
]
