"""Linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, and the
saturating requantization the QLinear* ops share.

Quantized types include the sub-byte ints (int4/uint4/int2/uint2) and the float8/float4
families, held in numpy arrays through ml_dtypes. Scales and zero points come per tensor
(a scalar), per axis (a 1-D vector along `axis`) or per block (the input's shape with the
`axis` dim divided into blocks of `block_size`).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from .. import dtypes
from ..dtypes import DType
from ..registry import Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import normalize_axis
from ..types import TensorType

_QUANTIZED = (dtypes.uint8, dtypes.int8, dtypes.uint16, dtypes.int16, dtypes.uint4, dtypes.int4, dtypes.uint2,
              dtypes.int2, dtypes.float8e4m3fn, dtypes.float8e4m3fnuz, dtypes.float8e5m2, dtypes.float8e5m2fnuz,
              dtypes.float4e2m1)


def saturate_cast(values: np.ndarray, dtype: np.dtype, saturate: bool = True) -> np.ndarray:
    """Already-rounded values into a quantized type, clamped to its range.

    Integers always clamp. Float8 clamps to +-max (infinities included) when `saturate`;
    otherwise out-of-range values become inf or NaN as the type encodes them. float4 has
    no inf/NaN, so it always clamps.
    """
    dt = dtypes.from_numpy(dtype)
    if dt.is_int:
        info = ml_dtypes.iinfo(dt.numpy)
        return np.clip(values, info.min, info.max).astype(dt.numpy)
    values = np.asarray(values, dtype=np.float32)
    if saturate or dt is dtypes.float4e2m1:
        limit = float(ml_dtypes.finfo(dt.numpy).max)
        values = np.clip(values, -limit, limit)  # NaN stays NaN
    return values.astype(dt.numpy)


def requantize(acc: np.ndarray, multiplier, zero_point: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """round_half_even(acc * multiplier) + zero_point, saturated to dtype (QLinearConv/MatMul's epilogue)."""
    zp = 0.0 if zero_point is None else zero_point.astype(np.float64)
    return saturate_cast(np.rint(acc * multiplier) + zp, dtype)


def _is_per_tensor(shape, block_size: int) -> bool:
    return not block_size and len(shape) <= 1 and all(d == 1 for d in shape)


def broadcast_param(p: np.ndarray, x_shape: tuple[int, ...], axis: int, block_size: int, fail) -> np.ndarray:
    """A scale or zero point shaped to broadcast against x: per tensor, per axis or per block.

    `axis` only matters (and is only checked) for the per-axis and blocked forms.
    """
    if _is_per_tensor(p.shape, block_size):
        return p.reshape(())
    rank = len(x_shape)
    axis = normalize_axis(axis, rank) if rank else 0
    if block_size:
        if p.ndim != rank:
            raise fail(f"blocked quantization needs a parameter of rank {rank}, got shape {list(p.shape)}")
        return np.repeat(p, block_size, axis=axis)[(slice(None),) * axis + (slice(0, x_shape[axis]),)]
    if p.ndim != 1 or p.shape[0] != x_shape[axis]:
        raise fail(f"per-axis parameter of shape {list(p.shape)} does not match axis {axis} of shape {list(x_shape)}")
    return p.reshape([1] * axis + [-1] + [1] * (rank - axis - 1))


def _check_params(ctx: InferContext, x: TensorType) -> None:
    """Inference-time version of broadcast_param's checks on inputs 1 and 2, where shapes are static."""
    block_size = ctx.attrs["block_size"]
    for i in (1, 2):
        p = ctx.input(i) if ctx.has(i) else None
        if p is None or not (x.is_static and p.is_static) or _is_per_tensor(p.shape, block_size):
            continue
        axis = normalize_axis(ctx.attrs["axis"], x.rank, ctx)
        want = list(x.shape)
        if block_size:
            want[axis] = -(-x.shape[axis] // block_size)
        else:
            want = [x.shape[axis]]
        if list(p.shape) != want:
            form = f"block_size {block_size}" if block_size else "per-axis quantization"
            raise ctx.error(f"input {i} has shape {list(p.shape)}; {form} on axis {axis} of {x} needs {want}")


# ---------------------------------------------------------------- QuantizeLinear

def _quantized_dtype(ctx: InferContext) -> DType:
    """output_dtype, else the zero point's type, else uint8; both given must agree."""
    declared = ctx.attrs["output_dtype"]
    zp = ctx.input(2).dtype if ctx.has(2) else None
    if declared is not None and zp is not None and declared != zp:
        raise ctx.error(f"output_dtype is {declared} but y_zero_point is {zp}")
    out = declared or zp or dtypes.uint8
    if out not in _QUANTIZED:
        raise ctx.error(f"cannot quantize to {out}; expected one of {', '.join(str(d) for d in _QUANTIZED)}")
    return out


def _infer_quantize(ctx: InferContext):
    x, scale = ctx.input(0), ctx.input(1)
    if not scale.dtype.is_float:
        raise ctx.error(f"y_scale must be a float tensor, got {scale}")
    out = _quantized_dtype(ctx)
    _check_params(ctx, x)
    return [TensorType(x.shape, out)]


def _ref_quantize(ctx, x, y_scale, y_zero_point=None):
    out = ctx.output_types[0].dtype.numpy  # inference resolved output_dtype / y_zero_point / uint8
    axis, block = ctx.attrs["axis"], ctx.attrs["block_size"]
    # The division runs in `precision` (default: the scale's type), as the spec asks.
    precision = ctx.attrs["precision"].numpy if ctx.attrs["precision"] is not None else y_scale.dtype
    scale = broadcast_param(y_scale, x.shape, axis, block, ctx.error).astype(precision)
    q = (x.astype(precision) / scale).astype(np.float64)
    if dtypes.from_numpy(out).is_int:
        q = np.rint(q)
    if y_zero_point is not None:
        q = q + broadcast_param(y_zero_point, x.shape, axis, block, ctx.error).astype(np.float64)
    return saturate_cast(q, out, bool(ctx.attrs["saturate"]))


# ---------------------------------------------------------------- DequantizeLinear

def _infer_dequantize(ctx: InferContext):
    x, scale = ctx.input(0), ctx.input(1)
    if ctx.has(2) and ctx.input(2).dtype != x.dtype:
        raise ctx.error(f"x_zero_point is {ctx.input(2).dtype}, expected x's type {x.dtype}")
    out = ctx.attrs["output_dtype"] or scale.dtype
    if not out.is_float:
        raise ctx.error(f"the output type must be a float type, got {out}")
    _check_params(ctx, x)
    return [TensorType(x.shape, out)]


def _ref_dequantize(ctx, x, x_scale, x_zero_point=None):
    out = ctx.output_types[0].dtype.numpy  # output_dtype, else the scale's type
    axis, block = ctx.attrs["axis"], ctx.attrs["block_size"]
    # float64 holds (x - zp) * scale exactly for every quantized type, so the one rounding is to `out`.
    y = x.astype(np.float64)
    if x_zero_point is not None:
        y = y - broadcast_param(x_zero_point, x.shape, axis, block, ctx.error).astype(np.float64)
    return (y * broadcast_param(x_scale, x.shape, axis, block, ctx.error).astype(np.float64)).astype(out)


# ---------------------------------------------------------------- DynamicQuantizeLinear

def _infer_dynamic_quantize(ctx: InferContext):
    x = ctx.input(0)
    if not x.dtype.is_float:
        raise ctx.error(f"x must be a float tensor, got {x}")
    return [TensorType(x.shape, dtypes.uint8), TensorType((), dtypes.float32), TensorType((), dtypes.uint8)]


def _ref_dynamic_quantize(ctx, x):
    x = x.astype(np.float32, copy=False)
    # The range is widened to include 0 so that 0 quantizes exactly.
    lo = np.minimum(np.float32(0), x.min(initial=np.float32(0)))
    hi = np.maximum(np.float32(0), x.max(initial=np.float32(0)))
    scale = np.float32((hi - lo) / np.float32(255))
    if scale == 0:  # an all-zero input: any scale works; zeros quantize to 0
        return np.zeros(x.shape, np.uint8), np.array(scale), np.array(0, np.uint8)
    zero_point = np.clip(np.rint(-lo / scale), 0, 255).astype(np.uint8)
    y = saturate_cast(np.rint(x / scale) + np.float32(zero_point), np.uint8)
    return y, np.array(scale, np.float32), np.array(zero_point, np.uint8)


OPS = [
    OpDef("QuantizeLinear", ("x", "y_scale", "y_zero_point?"), ("y",), _infer_quantize, _ref_quantize,
          Category.BROADCAST, Precision.EXACT,
          attrs={"axis": Attr("int", 1), "block_size": Attr("int", 0), "output_dtype": Attr("dtype", None),
                 "saturate": Attr("int", 1), "precision": Attr("dtype", None)},
          doc="y = saturate(round_half_even(x / y_scale) + y_zero_point), per tensor, axis or block."),
    OpDef("DequantizeLinear", ("x", "x_scale", "x_zero_point?"), ("y",), _infer_dequantize, _ref_dequantize,
          Category.BROADCAST, Precision.EXACT,
          attrs={"axis": Attr("int", 1), "block_size": Attr("int", 0), "output_dtype": Attr("dtype", None)},
          doc="y = (x - x_zero_point) * x_scale, per tensor, axis or block."),
    OpDef("DynamicQuantizeLinear", ("x",), ("y", "y_scale", "y_zero_point"), _infer_dynamic_quantize,
          _ref_dynamic_quantize, Category.REDUCTION, Precision.EXACT,  # min/max over the whole tensor
          injective_prologue=False,
          doc="Quantize a float tensor to uint8 with a scale and zero point computed from its range."),
]
