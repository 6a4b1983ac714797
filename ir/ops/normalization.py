"""Normalization and loss ops: BatchNormalization, LayerNormalization, RMSNormalization,
GroupNormalization, InstanceNormalization, LpNormalization, MeanVarianceNormalization, LRN,
NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Statistics are computed in float32 for fp16/bf16 inputs (or in the node's `stash_type`
where the op has one); the normalized result is cast back to the input type before the
affine scale and shift, as the ONNX function bodies do.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from .. import flops
from ..registry import Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import normalize_axes, normalize_axis
from ..types import TensorType
from .reduction import compute_dtype, log_softmax, require_float


def _require_rank_at_least(ctx: InferContext, t: TensorType, rank: int, what: str) -> None:
    if t.rank is not None and t.rank < rank:
        raise ctx.error(f"expects {what} of rank >= {rank}, got {t}")


def _require_broadcast_to(ctx: InferContext, i: int, x: TensorType) -> None:
    """Input i (Scale, B) must broadcast to x without changing x's shape (unidirectional)."""
    p = ctx.input(i)
    if p.shape is None or x.shape is None:
        return
    # Only a definite mismatch is an error: a symbol may turn out to be the right size.
    pairs = zip(reversed(x.shape), reversed(p.shape))
    fits = len(p.shape) <= len(x.shape) and all(
        pd == 1 or pd == xd or not (isinstance(pd, int) and isinstance(xd, int)) for xd, pd in pairs)
    if not fits:
        raise ctx.error(f"input {i} {p} must broadcast to the input's shape {x}")


def _per_channel(param: np.ndarray, rank: int) -> np.ndarray:
    """A (C,) parameter shaped (C, 1, ..., 1) to broadcast against (N, C, D1, ...)."""
    return param.reshape((-1,) + (1,) * (rank - 2))


def _standardize(x: np.ndarray, axes: tuple[int, ...], epsilon: float):
    """(x - mean) / sqrt(var + epsilon) over `axes`, with the mean and 1/stddev (kept dims)."""
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    inv_std = 1 / np.sqrt(np.mean(centered * centered, axis=axes, keepdims=True) + epsilon)
    return centered * inv_std, mean, inv_std


def _stats(x: np.ndarray) -> np.ndarray:
    """x in the type its statistics are computed in (float32 for fp16/bf16)."""
    return x.astype(compute_dtype(x.dtype), copy=False)


def _infer_channel_first(ctx: InferContext) -> list[TensorType]:
    """(N, C, D1, ...) input with per-channel (C,) parameters in inputs 1.."""
    x = require_float(ctx, 0)
    _require_rank_at_least(ctx, x, 2, "input (N, C, ...)")
    channels = x.shape[1] if x.shape is not None else None
    for i in range(1, len(ctx.inputs)):
        if not ctx.has(i):
            continue
        p = ctx.input(i)
        if p.shape is not None and (len(p.shape) != 1 or (isinstance(channels, int) and isinstance(p.shape[0], int)
                                                         and p.shape[0] != channels)):
            raise ctx.error(f"input {i} must be a per-channel vector of length {channels}, got {p}")
    return [x]


# --- BatchNormalization ------------------------------------------------------------------------

def _infer_batchnorm(ctx: InferContext) -> list[TensorType]:
    y = _infer_channel_first(ctx)[0]
    if ctx.num_outputs > 1 and not ctx.attrs["training_mode"]:
        raise ctx.error("outputs running_mean and running_var exist only with training_mode=1")
    return [y, ctx.input(3), ctx.input(4)]


def _batchnorm_reference(ctx, x, scale, bias, mean, var):
    eps, momentum = ctx.attrs["epsilon"], ctx.attrs["momentum"]
    xs = _stats(x)
    if ctx.attrs["training_mode"]:
        # Batch statistics (population variance) normalize; the running ones are blended.
        axes = (0,) + tuple(range(2, x.ndim))
        batch_mean, batch_var = np.mean(xs, axis=axes), np.var(xs, axis=axes)
        running_mean = (mean * momentum + batch_mean * (1 - momentum)).astype(mean.dtype)
        running_var = (var * momentum + batch_var * (1 - momentum)).astype(var.dtype)
        use_mean, use_var = batch_mean, batch_var
    else:
        use_mean, use_var = _stats(mean), _stats(var)
        running_mean, running_var = mean, var
    inv_std = 1 / np.sqrt(_per_channel(use_var, x.ndim) + eps)
    y = (xs - _per_channel(use_mean, x.ndim)) * inv_std * _per_channel(_stats(scale), x.ndim) \
        + _per_channel(_stats(bias), x.ndim)
    return y.astype(x.dtype), running_mean, running_var


# --- LayerNormalization / RMSNormalization: normalize over axes [axis, rank) ------------------

def _trailing_axes(axis: int, rank: int) -> tuple[int, ...]:
    return tuple(range(normalize_axis(axis, rank), rank))


def _infer_layernorm(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    stash = ctx.attrs["stash_type"]
    for i in (1, 2):
        if ctx.has(i):
            _require_broadcast_to(ctx, i, x)
    if x.shape is None:
        return [x, TensorType(None, stash), TensorType(None, stash)]
    if x.rank == 0:
        raise ctx.error(f"needs an input of rank >= 1, got {x}")
    axis = normalize_axis(ctx.attrs["axis"], x.rank, ctx)
    stat_shape = x.shape[:axis] + (1,) * (x.rank - axis)
    return [x, TensorType(stat_shape, stash), TensorType(stat_shape, stash)]


def _layernorm_reference(ctx, x, scale, bias=None):
    stash = ctx.attrs["stash_type"].numpy
    axes = _trailing_axes(ctx.attrs["axis"], x.ndim)
    normalized, mean, inv_std = _standardize(x.astype(stash), axes, ctx.attrs["epsilon"])
    y = normalized.astype(x.dtype) * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype), mean.astype(stash), inv_std.astype(stash)


def _infer_rmsnorm(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    if x.rank == 0:
        raise ctx.error(f"needs an input of rank >= 1, got {x}")
    if x.rank is not None:
        normalize_axis(ctx.attrs["axis"], x.rank, ctx)
    _require_broadcast_to(ctx, 1, x)
    return [x.with_dtype(ctx.input(1).dtype)]  # Y has the scale's type (V)


def _rmsnorm_reference(ctx, x, scale):
    xs = x.astype(ctx.attrs["stash_type"].numpy)
    axes = _trailing_axes(ctx.attrs["axis"], x.ndim)
    rms = np.sqrt(np.mean(xs * xs, axis=axes, keepdims=True) + ctx.attrs["epsilon"])
    return ((xs / rms).astype(x.dtype) * scale).astype(scale.dtype)


# --- GroupNormalization / InstanceNormalization ----------------------------------------------

def _infer_groupnorm(ctx: InferContext) -> list[TensorType]:
    x = _infer_channel_first(ctx)[0]
    groups = ctx.attrs["num_groups"]
    channels = x.shape[1] if x.shape is not None else None
    if groups < 1 or (isinstance(channels, int) and channels % groups):
        raise ctx.error(f"num_groups={groups} must divide the channel count {channels}")
    return [x]


def _groupnorm_reference(ctx, x, scale, bias):
    n, c = x.shape[:2]
    groups = ctx.attrs["num_groups"]
    grouped = x.astype(ctx.attrs["stash_type"].numpy).reshape((n, groups, c // groups) + x.shape[2:])
    normalized, _, _ = _standardize(grouped, tuple(range(2, grouped.ndim)), ctx.attrs["epsilon"])
    y = normalized.reshape(x.shape).astype(x.dtype) * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)
    return y.astype(x.dtype)


def _instancenorm_reference(ctx, x, scale, bias):
    normalized, _, _ = _standardize(_stats(x), tuple(range(2, x.ndim)), ctx.attrs["epsilon"])
    y = normalized * _per_channel(_stats(scale), x.ndim) + _per_channel(_stats(bias), x.ndim)
    return y.astype(x.dtype)


# --- LpNormalization, MeanVarianceNormalization, LRN ------------------------------------------

def _infer_lpnorm(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    if ctx.attrs["p"] not in (1, 2):
        raise ctx.error(f"p must be 1 or 2, got {ctx.attrs['p']}")
    if x.rank is not None:
        normalize_axis(ctx.attrs["axis"], max(x.rank, 1), ctx)
    return [x]


def _lpnorm_reference(ctx, x):
    xs = _stats(x)
    axis = normalize_axis(ctx.attrs["axis"], x.ndim)
    p = ctx.attrs["p"]
    norm = np.sum(np.abs(xs), axis=axis, keepdims=True) if p == 1 else np.sqrt(np.sum(xs * xs, axis=axis, keepdims=True))
    # An all-zero slice normalizes to zeros rather than 0/0.
    return np.where(norm == 0, 0, xs / np.where(norm == 0, 1, norm)).astype(x.dtype)


def _infer_mvn(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    if x.rank is not None:
        normalize_axes(ctx.attrs["axes"], x.rank, ctx)
    return [x]


def _mvn_reference(ctx, x):
    xs = _stats(x)
    axes = tuple(normalize_axes(ctx.attrs["axes"], x.ndim))
    mean = np.mean(xs, axis=axes, keepdims=True)
    # E[x^2] - E[x]^2 as ONNX's function body; rounding can push it just below 0, so clamp.
    var = np.maximum(np.mean(xs * xs, axis=axes, keepdims=True) - mean * mean, 0)
    return ((xs - mean) / (np.sqrt(var) + 1e-9)).astype(x.dtype)


def _infer_lrn(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    _require_rank_at_least(ctx, x, 2, "input (N, C, ...)")
    if ctx.attrs["size"] < 1:
        raise ctx.error(f"size must be >= 1, got {ctx.attrs['size']}")
    return [x]


def _lrn_reference(ctx, x):
    size = ctx.attrs["size"]
    xs = _stats(x)
    # Window over channels [c - floor((size-1)/2), c + ceil((size-1)/2)], zero outside.
    before = (size - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[1] = (before, size - 1 - before)
    padded = np.pad(xs * xs, pad)
    channels = x.shape[1]
    square_sum = sum(padded[:, i:i + channels] for i in range(size))  # `size` shifted slices, not elements
    scale = ctx.attrs["bias"] + ctx.attrs["alpha"] / size * square_sum
    return (xs / scale ** ctx.attrs["beta"]).astype(x.dtype)


# --- Losses --------------------------------------------------------------------------------------

def _infer_loss(ctx: InferContext) -> list[TensorType]:
    """(N, C, d1..dk) scores and (N, d1..dk) integer targets; the loss is per-target or a scalar."""
    x, target = require_float(ctx, 0), ctx.input(1)
    _require_rank_at_least(ctx, x, 2, "scores (N, C, ...)")
    if not target.dtype.is_int:
        raise ctx.error(f"target must be int32 or int64, got {target.dtype}")
    if x.rank is not None and target.rank is not None and target.rank != x.rank - 1:
        raise ctx.error(f"target must have rank {x.rank - 1} for scores {x}, got {target}")
    reduction = ctx.attrs["reduction"]
    if reduction not in ("none", "sum", "mean"):
        raise ctx.error(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    loss = target.with_dtype(x.dtype) if reduction == "none" else TensorType((), x.dtype)
    return [loss, x]


def _nll(ctx, log_prob: np.ndarray, target: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """Weighted negative log likelihood of the targets; ignored targets weigh 0."""
    ignore = ctx.attrs["ignore_index"]
    keep = np.ones(target.shape, bool) if ignore is None else target != ignore
    classes = log_prob.shape[1]
    if np.any(keep & ((target < 0) | (target >= classes))):
        raise ctx.error(f"target values must lie in [0, {classes}) or equal ignore_index={ignore}")
    safe = np.where(keep, target, 0)
    picked = np.take_along_axis(log_prob, np.expand_dims(safe, 1), axis=1).squeeze(1)
    w = (np.ones(target.shape, log_prob.dtype) if weight is None else _stats(weight)[safe]) * keep
    loss = -picked * w
    reduction = ctx.attrs["reduction"]
    if reduction == "sum":
        return np.sum(loss)
    if reduction == "mean":  # weighted mean: ignored targets leave both sums
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sum(loss) / np.sum(w)
    return loss


def _nll_reference(ctx, x, target, weight=None):
    return np.asarray(_nll(ctx, _stats(x), target, weight)).astype(x.dtype)


def _sce_reference(ctx, scores, labels, weights=None):
    log_prob = log_softmax(_stats(scores), axis=1)
    loss = np.asarray(_nll(ctx, log_prob, labels, weights)).astype(scores.dtype)
    return loss, log_prob.astype(scores.dtype)


_LOSS_ATTRS = {"reduction": Attr("string", "mean"), "ignore_index": Attr("int", None)}

_STASH = Attr("dtype", dtypes.float32)  # ONNX's stash_type: the element type of the statistics

OPS = [
    OpDef(name="BatchNormalization", inputs=("X", "scale", "B", "input_mean", "input_var"),
          outputs=("Y", "running_mean?", "running_var?"), infer=_infer_batchnorm, reference=_batchnorm_reference,
          category=Category.REDUCTION, precision=Precision.FP32,
          doc="Per-channel normalization with given statistics, or batch statistics in training mode.",
          attrs={"epsilon": Attr("float", 1e-5), "momentum": Attr("float", 0.9), "training_mode": Attr("int", 0)},
          flops=flops.per_input_element(2)),  # at inference: one scale and one shift
    OpDef(name="LayerNormalization", inputs=("X", "Scale", "B?"), outputs=("Y", "Mean?", "InvStdDev?"),
          infer=_infer_layernorm, reference=_layernorm_reference, category=Category.REDUCTION,
          precision=Precision.FP32, doc="Normalize over axes [axis, rank) then scale and shift.",
          attrs={"axis": Attr("int", -1), "epsilon": Attr("float", 1e-5), "stash_type": _STASH},
          flops=flops.per_input_element(8)),
    OpDef(name="RMSNormalization", inputs=("X", "scale"), outputs=("Y",), infer=_infer_rmsnorm,
          reference=_rmsnorm_reference, category=Category.REDUCTION, precision=Precision.FP32,
          doc="Divide by the root mean square over axes [axis, rank), then scale.",
          attrs={"axis": Attr("int", -1), "epsilon": Attr("float", 1e-5), "stash_type": _STASH},
          flops=flops.per_input_element(5)),
    OpDef(name="GroupNormalization", inputs=("X", "scale", "bias"), outputs=("Y",), infer=_infer_groupnorm,
          reference=_groupnorm_reference, category=Category.REDUCTION, precision=Precision.FP32,
          doc="Normalize each group of channels per instance, then per-channel scale and shift.",
          attrs={"num_groups": Attr("int"), "epsilon": Attr("float", 1e-5), "stash_type": _STASH},
          flops=flops.per_input_element(8)),
    OpDef(name="InstanceNormalization", inputs=("input", "scale", "B"), outputs=("output",),
          infer=_infer_channel_first, reference=_instancenorm_reference, category=Category.REDUCTION,
          precision=Precision.FP32, doc="Normalize each channel of each instance over its spatial dims.",
          attrs={"epsilon": Attr("float", 1e-5)}, flops=flops.per_input_element(8)),
    OpDef(name="LpNormalization", inputs=("input",), outputs=("output",), infer=_infer_lpnorm,
          reference=_lpnorm_reference, category=Category.REDUCTION, precision=Precision.FP32,
          doc="Divide by the L1 or L2 norm along an axis (zero norms give zeros).",
          attrs={"axis": Attr("int", -1), "p": Attr("int", 2)}),
    OpDef(name="MeanVarianceNormalization", inputs=("X",), outputs=("Y",), infer=_infer_mvn,
          reference=_mvn_reference, category=Category.REDUCTION, precision=Precision.FP32,
          doc="(X - mean) / (stddev + 1e-9) over the given axes.", attrs={"axes": Attr("ints", [0, 2, 3])}),
    OpDef(name="LRN", inputs=("X",), outputs=("Y",), infer=_infer_lrn, reference=_lrn_reference,
          category=Category.REDUCTION, precision=Precision.FP32,
          doc="Local response normalization across a window of neighbouring channels.",
          attrs={"size": Attr("int"), "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75),
                 "bias": Attr("float", 1.0)}, flops=flops.lrn),
    OpDef(name="NegativeLogLikelihoodLoss", inputs=("input", "target", "weight?"), outputs=("loss",),
          infer=_infer_loss, reference=_nll_reference, category=Category.REDUCTION, precision=Precision.FP32,
          doc="Negative log likelihood of target classes, optionally weighted and reduced.", attrs=_LOSS_ATTRS),
    OpDef(name="SoftmaxCrossEntropyLoss", inputs=("scores", "labels", "weights?"), outputs=("output", "log_prob?"),
          infer=_infer_loss, reference=_sce_reference, category=Category.REDUCTION, precision=Precision.FP32,
          doc="Cross entropy of softmax(scores) against labels, optionally weighted and reduced.",
          attrs=_LOSS_ATTRS),
]
