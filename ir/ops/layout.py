"""Channels-last (NHWC) forms of the 2-D spatial ops, which the layout pass
(`passes/to_channels_last.py`) introduces for the CPU microkernels: `ConvNhwc` (with its
fused bias / residual / activation epilogue), `MaxPoolNhwc`, `AveragePoolNhwc`, `LRNNhwc`.

Activations are [N, H, W, C]; convolution weights keep ONNX's [M, C/group, kH, kW]
layout (repacking them is the code generator's business). Padding is always explicit
(pads [top, left, bottom, right], ONNX order): the pass resolves auto_pad before it
rewrites a node. Each reference is the ONNX op's own reference run on the transposed
input, so an NHWC op means exactly transpose . op . transpose.
"""
from __future__ import annotations

import numpy as np

from .. import flops, int8
from ..registry import Attr, Category, InferContext, OpDef, Precision, RefContext
from ..types import TensorType
from .activations import ACTIVATION_ATTRS, apply_activation, check_activation
from ._window import resolve_window
from .conv import _ref_conv
from .matmul import COMPUTE_ATTR, accumulator, check_uint8_params, product_operands, product_result, product_types
from .normalization import _lrn_reference
from .pool import _ref_average_pool, _ref_max_pool
from .reduction import require_float

TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)


def channels_last_perm(rank: int) -> tuple[int, ...]:
    """The Transpose perm from channels-first to channels-last at `rank` (NCDHW -> NDHWC at 5)."""
    return (0, *range(2, rank), 1)


def channels_first_perm(rank: int) -> tuple[int, ...]:
    """The inverse of channels_last_perm (NHWC -> NCHW at 4, NDHWC -> NCDHW at 5)."""
    return (0, rank - 1, *range(1, rank - 1))

_WINDOW_ATTRS = {"strides": Attr("ints", [1, 1]), "pads": Attr("ints", [0, 0, 0, 0]),
                 "dilations": Attr("ints", [1, 1])}
# An int8 product's residual may arrive as uint8 codes of (residual_scale, residual_zero_point):
# an int8 chain's value (`passes.chain_narrow`), dequantized where it is added.
_CONV_ATTRS = {**_WINDOW_ATTRS, "group": Attr("int", 1), **ACTIVATION_ATTRS,
               "residual_after_activation": Attr("int", 0), "residual_scale": Attr("float", 0.0),
               "residual_zero_point": Attr("int", 0), **COMPUTE_ATTR}
_POOL_ATTRS = {**_WINDOW_ATTRS, "kernel_shape": Attr("ints"), "ceil_mode": Attr("int", 0)}


def _nhwc_input(ctx: InferContext) -> TensorType:
    """Input 0: a float [N, H, W, C] tensor (rank unknown is accepted until it is known)."""
    x = require_float(ctx, 0)
    if x.shape is not None and len(x.shape) != 4:
        raise ctx.error(f"X must be NHWC [N, H, W, C], got {x}")
    return x


def _check_window_attrs(ctx: InferContext, extra: tuple[str, ...] = ()) -> None:
    for key, count in [("strides", 2), ("dilations", 2), ("pads", 4)] + [(k, 2) for k in extra]:
        if len(ctx.attrs[key]) != count:
            raise ctx.error(f"'{key}' has {len(ctx.attrs[key])} values, expected {count}")


def _same_shape(a, b) -> bool:
    """Shapes equal where both dims are known (a symbol may turn out to be the size)."""
    return len(a) == len(b) and all(x == y or not (isinstance(x, int) and isinstance(y, int)) for x, y in zip(a, b))


# ---------------------------------------------------------------- ConvNhwc

def _infer_conv_nhwc(ctx: InferContext):
    x = ctx.input(0) if ctx.input(0).dtype.name == "uint8" else _nhwc_input(ctx)  # uint8: int8 codes
    if x.shape is not None and len(x.shape) != 4:
        raise ctx.error(f"X must be NHWC [N, H, W, C], got {x}")
    w = ctx.input(1)
    _check_window_attrs(ctx)
    check_activation(ctx)
    dtype, out_dtype = product_types(ctx, x.dtype, w.dtype)
    group = ctx.attrs["group"]
    if group < 1:
        raise ctx.error(f"group must be positive, got {group}")
    if w.shape is None or len(w.shape) != 4 or not all(isinstance(d, int) for d in w.shape):
        raise ctx.error(f"W must be a static [M, C/group, kH, kW] tensor, got {w}")
    m, c_per_group = w.shape[0], w.shape[1]
    if m % group:
        raise ctx.error(f"W's {m} output channels do not divide into {group} groups")
    if x.shape is None:
        return [TensorType(None, out_dtype)]
    n, h, wd, c = x.shape
    if isinstance(c, int) and c != c_per_group * group:
        raise ctx.error(f"X has {c} channels (last axis), W's {c_per_group} channels per group x {group} "
                        f"groups needs {c_per_group * group}")
    if ctx.has(2):
        b = ctx.input(2)
        if b.dtype != dtype or (b.shape is not None and not _same_shape(b.shape, (m,))):
            raise ctx.error(f"B must be a {dtype} vector of the {m} output channels, got {b}")
    out = resolve_window(ctx.attrs, (h, wd), w.shape[2:], ctx.error).out
    shape = (n, out[0], out[1], m)
    if ctx.has(3):
        r = ctx.input(3)
        codes = r.dtype.name == "uint8"
        if codes:
            compute = ctx.attrs["compute"]
            if compute is None or compute.name != "int8":
                raise ctx.error(f"a uint8 residual (int8 codes) belongs to a compute=int8 conv, got {r}")
            check_uint8_params(ctx, "residual_scale", "residual_zero_point", "the residual's uint8 codes")
        if (r.dtype != dtype and not codes) or (r.shape is not None and not _same_shape(r.shape, shape)):
            raise ctx.error(f"residual must be {dtype} (or int8 codes) of exactly the output's shape {list(shape)}, "
                            f"got {r}")
    elif ctx.attrs["residual_scale"]:
        raise ctx.error("residual_scale is set but there is no residual")
    return [TensorType(shape, out_dtype)]


def _forwarded(ctx: RefContext, attrs: dict) -> RefContext:
    """A context for calling an NCHW op's reference on behalf of this node."""
    return RefContext(ctx.op, ctx.node_name, attrs, ctx.output_types[:1], ctx.run_subgraph)


def _ref_conv_nhwc(ctx, x, w, b=None, residual=None):
    acc = accumulator(w.dtype)
    attrs = ctx.attrs
    x, w = product_operands(attrs, x, w, channel_axis=0)
    conv_attrs = {"auto_pad": "NOTSET", "kernel_shape": None, "strides": attrs["strides"], "pads": attrs["pads"],
                  "dilations": attrs["dilations"], "group": attrs["group"]}
    # Conv's reference run in the accumulation type, so the whole epilogue rounds once at the end.
    y = _ref_conv(_forwarded(ctx, conv_attrs), x.astype(acc).transpose(TO_NCHW), w.astype(acc),
                  None if b is None else b.astype(acc)).transpose(TO_NHWC)
    after = bool(attrs["residual_after_activation"])
    if residual is not None and residual.dtype == np.uint8:  # an int8 chain's codes
        residual = int8.dequantize_activation(residual, attrs["residual_scale"], attrs["residual_zero_point"])
    if residual is not None and not after:
        y = y + residual.astype(acc)
    y = apply_activation(y, attrs)
    if residual is not None and after:
        y = y + residual.astype(acc)
    return product_result(attrs, np.ascontiguousarray(y), w.dtype)


# ---------------------------------------------------------------- pools, LRN

def _infer_pool_nhwc(ctx: InferContext):
    x = _nhwc_input(ctx)
    return _pool_output(ctx, x)


def _infer_max_pool_nhwc(ctx: InferContext):
    """Max pool also takes uint8 (the codes of an int8 chain: max commutes with quantizing)."""
    x = ctx.input(0)
    if x.dtype.name != "uint8":
        x = _nhwc_input(ctx)
    elif x.shape is not None and len(x.shape) != 4:
        raise ctx.error(f"X must be NHWC [N, H, W, C], got {x}")
    return _pool_output(ctx, x)


def _pool_output(ctx: InferContext, x: TensorType):
    _check_window_attrs(ctx, ("kernel_shape",))
    if x.shape is None:
        return [TensorType(None, x.dtype)]
    n, h, w, c = x.shape
    out = resolve_window(ctx.attrs, (h, w), ctx.attrs["kernel_shape"], ctx.error, bool(ctx.attrs["ceil_mode"])).out
    return [TensorType((n, out[0], out[1], c), x.dtype)]


def _channels_first(reference, extra_attrs: dict | None = None):
    """An NHWC reference from an NCHW one: transpose in, run it, transpose back."""

    def ref(ctx, x):
        attrs = {**ctx.attrs, "auto_pad": "NOTSET", **(extra_attrs or {})}
        y = reference(_forwarded(ctx, attrs), x.transpose(TO_NCHW))
        return np.ascontiguousarray(y.transpose(TO_NHWC))

    return ref


def _infer_lrn_nhwc(ctx: InferContext):
    x = _nhwc_input(ctx)
    if ctx.attrs["size"] < 1:
        raise ctx.error(f"size must be >= 1, got {ctx.attrs['size']}")
    return [x]


OPS = [
    OpDef("ConvNhwc", ("X", "W", "B?", "residual?"), ("Y",), _infer_conv_nhwc, _ref_conv_nhwc,
          # One microkernel call with its epilogue already inside: nothing else fuses into it.
          Category.OPAQUE, Precision.ACCUMULATE_FP32, attrs=_CONV_ATTRS,
          doc="2-D grouped convolution on NHWC activations (W stays [M, C/group, kH, kW]) with a fused "
              "epilogue: + B, + residual (before the activation unless residual_after_activation), activation. "
              "`compute` (bfloat16, float16) rounds X and W to that type first, accumulating in float32.",
              kernel_class="conv", flops=flops.conv),
    OpDef("MaxPoolNhwc", ("X",), ("Y",), _infer_max_pool_nhwc, _channels_first(_ref_max_pool, {"storage_order": 0}),
          Category.REDUCTION, Precision.FOLLOW, attrs=_POOL_ATTRS,
          doc="2-D max pool over the H and W axes of an NHWC tensor (ONNX MaxPool semantics, no Indices); "
              "float, or uint8 codes in an int8 chain.",
          kernel_class="pool", flops=flops.pool),
    OpDef("AveragePoolNhwc", ("X",), ("Y",), _infer_pool_nhwc, _channels_first(_ref_average_pool),
          Category.REDUCTION, Precision.ACCUMULATE_FP32, attrs={**_POOL_ATTRS, "count_include_pad": Attr("int", 0)},
          doc="2-D average pool over the H and W axes of an NHWC tensor (ONNX AveragePool semantics).",
          kernel_class="pool", flops=flops.pool),
    OpDef("LRNNhwc", ("X",), ("Y",), _infer_lrn_nhwc, _channels_first(_lrn_reference),
          Category.REDUCTION, Precision.FP32,
          attrs={"alpha": Attr("float", 0.0001), "beta": Attr("float", 0.75), "bias": Attr("float", 1.0),
                 "size": Attr("int")},
          doc="Local response normalization across channels, the window running over the last (C) axis.",
          flops=flops.lrn),
]
