"""Opset upgrades: older ONNX forms rewritten into the newest semantics the IR's ops carry.

Each converter checks the node's opset (`ctx.opset`) and, for an old form, emits the
newest equivalent; a node already in the newest form passes through unchanged. The
table `LEGACY_CONVERTERS` at the end is the explicit list (merged into `CONVERTERS`).
Ops whose schema changes since opset 7 were only new types or new attributes with
defaults that keep the old behaviour need no converter and are not listed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from ..ir.ops import REGISTRY
from ..ir.types import TensorType

if TYPE_CHECKING:
    from .onnx_converters import ImportContext


def _since(version: int, old: Callable) -> Callable:
    """A converter applying `old` to nodes of opsets before `version`, passing newer ones through."""

    def convert(ctx: ImportContext, inputs, attrs):
        if ctx.opset < version:
            return old(ctx, inputs, attrs)
        return ctx.emit_same(inputs, attrs)

    convert.__doc__ = f"opset < {version}: {old.__doc__}"
    return convert


def _rank(v) -> int | None:
    return v.type.rank if isinstance(v.type, TensorType) else None


def _dtype(ctx: ImportContext, v):
    if not isinstance(v.type, TensorType):
        raise ctx.error(f"expected a tensor input, got {v.type}")
    return v.type.dtype


def _declares(op: str, attr: str) -> bool:
    return op in REGISTRY and attr in REGISTRY[op].attrs


# ---- attributes that became inputs -----------------------------------------------------

def _attr_to_input(name: str) -> Callable:
    """The int-list attribute `name` becomes the node's next input (absent stays absent)."""

    def old(ctx: ImportContext, inputs, attrs):
        attrs = dict(attrs)
        value = attrs.pop(name, None)
        extra = None if value is None else ctx.ints(value)
        return ctx.emit_same(list(inputs) + [extra], attrs, upgraded=True)

    old.__doc__ = f"attribute '{name}' -> input"
    return old


def _slice_old(ctx: ImportContext, inputs, attrs):
    """starts/ends/axes attributes -> inputs."""
    starts, ends, axes = attrs.get("starts"), attrs.get("ends"), attrs.get("axes")
    if starts is None or ends is None:
        raise ctx.error("needs the 'starts' and 'ends' attributes")
    return ctx.emit_same([inputs[0], ctx.ints(starts), ctx.ints(ends), None if axes is None else ctx.ints(axes)], {},
                         upgraded=True)


def _pad_old(ctx: ImportContext, inputs, attrs):
    """pads/value attributes -> inputs."""
    if "pads" not in attrs:
        raise ctx.error("needs the 'pads' attribute")
    mode = attrs.get("mode", "constant")
    value = ctx.scalar_like(attrs.get("value", 0.0), inputs[0]) if mode == "constant" else None
    return ctx.emit_same([inputs[0], ctx.ints(attrs["pads"]), value], {"mode": mode}, upgraded=True)


def _clip_old(ctx: ImportContext, inputs, attrs):
    """min/max attributes -> inputs of the data's type."""
    bounds = [None if attrs.get(k) is None else ctx.scalar_like(attrs[k], inputs[0]) for k in ("min", "max")]
    return ctx.emit_same([inputs[0], *bounds], {}, upgraded=True)


def _topk_old(ctx: ImportContext, inputs, attrs):
    """k attribute -> a one-element input."""
    attrs = dict(attrs)
    k = attrs.pop("k")
    return ctx.emit_same([inputs[0], ctx.ints([k])], attrs, upgraded=True)


def _split(ctx: ImportContext, inputs, attrs):
    """split attribute -> input (< 13); no split given -> num_outputs (< 18)."""
    attrs = dict(attrs)
    inputs = list(inputs)
    if ctx.opset < 13 and "split" in attrs:
        inputs = [inputs[0], ctx.ints(attrs.pop("split"))]
    has_split = len(inputs) > 1 and inputs[1] is not None
    if ctx.opset < 18 and not has_split:
        attrs["num_outputs"] = len(ctx.output_names)
    return ctx.emit_same(inputs[:2] if has_split else inputs[:1], attrs, upgraded=ctx.opset < 18)


def _dropout(ctx: ImportContext, inputs, attrs):
    """ratio attribute -> input (< 12); the mask had the data's type before opset 10."""
    attrs = dict(attrs)
    inputs = list(inputs)
    if ctx.opset < 12:
        ratio = attrs.pop("ratio", 0.5)
        attrs.pop("is_test", None)
        inputs = [inputs[0], ctx.const(np.float32(ratio))]
    if ctx.opset >= 10 or len(ctx.output_names) < 2 or not ctx.output_names[1]:
        return ctx.emit_same(inputs, attrs, upgraded=ctx.opset < 12)
    y, mask = ctx.emit("Dropout", inputs, attrs, num_outputs=2, output_names=[ctx.output_names[0], ""])
    return [y, ctx.emit("Cast", [mask], {"to": _dtype(ctx, inputs[0])}, output_names=[ctx.output_names[1]])[0]]


# ---- semantics that changed ------------------------------------------------------------

def _coerced_2d(ctx: ImportContext, inputs, attrs):
    """Softmax/LogSoftmax/Hardmax before 13 work on the input flattened to 2-D at `axis`."""
    x = inputs[0]
    axis = attrs.get("axis", 1)
    rank = _rank(x)
    if rank is not None and axis % max(rank, 1) == rank - 1:
        return ctx.emit_same([x], {"axis": -1}, upgraded=True)  # the 2-D view changes nothing when axis is the last
    shape = ctx.emit1("Shape", x)
    flat = ctx.emit1("Flatten", x, axis=axis)
    y = ctx.emit(ctx.op_type, [flat], {"axis": -1})[0]
    return ctx.emit("Reshape", [y, shape], output_names=list(ctx.output_names[:1]))


def _batchnorm(ctx: ImportContext, inputs, attrs):
    """spatial=0 (< 9) normalises per element; extra outputs (< 14) meant training mode."""
    attrs = dict(attrs)
    spatial = attrs.pop("spatial", 1)
    attrs.pop("is_test", None)
    attrs.pop("consumed_inputs", None)
    if ctx.opset < 9 and spatial == 0:
        return [_batchnorm_per_element(ctx, inputs, attrs.get("epsilon", 1e-5))]
    names = list(ctx.output_names)
    wanted = [i for i, n in enumerate(names) if n]
    if ctx.opset >= 14 or wanted == [0]:
        return ctx.emit("BatchNormalization", inputs, attrs, num_outputs=1 if ctx.opset < 14 else len(names),
                        output_names=names[:1] if ctx.opset < 14 else names)
    if any(i > 2 for i in wanted):
        raise ctx.error("the saved_mean/saved_var outputs of training-mode BatchNormalization are not supported")
    return ctx.emit("BatchNormalization", inputs, {**attrs, "training_mode": 1}, num_outputs=3,
                    output_names=(names + ["", ""])[:3])


def _batchnorm_per_element(ctx: ImportContext, inputs, epsilon: float):
    """(x - mean) / sqrt(var + eps) * scale + B, the statistics shaped like one sample."""
    x, scale, bias, mean, var = inputs[:5]
    std = ctx.emit1("Sqrt", ctx.emit1("Add", var, ctx.scalar_like(epsilon, var)))
    normed = ctx.emit1("Div", ctx.emit1("Sub", x, mean), std)
    return ctx.emit("Add", [ctx.emit1("Mul", normed, scale), bias], output_names=ctx.output_names[:1])[0]


def _group_norm_old(ctx: ImportContext, inputs, attrs):
    """scale/bias were per group before 21; repeat them per channel."""
    x, scale, bias = inputs[:3]
    groups = attrs["num_groups"]
    rank = _rank(x)
    channels = x.type.shape[1] if rank and rank > 1 else None
    if isinstance(channels, int):
        per_group = ctx.ints([1, channels // groups])
    else:  # channel count known only at run time
        c = ctx.emit1("Shape", x, start=1, end=2)
        per_group = ctx.emit1("Concat", ctx.ints([1]), ctx.emit1("Div", c, ctx.ints([groups])), axis=0)

    def per_channel(v):
        if v.const is not None and isinstance(channels, int):
            return ctx.const(np.repeat(v.const, channels // groups))
        column = ctx.emit1("Reshape", v, ctx.ints([-1, 1]))
        return ctx.emit1("Reshape", ctx.emit1("Expand", column, per_group), ctx.ints([-1]))

    return ctx.emit_same([x, per_channel(scale), per_channel(bias)], attrs, upgraded=True)


def _grid_sample_old(ctx: ImportContext, inputs, attrs):
    """modes bilinear/bicubic were renamed linear/cubic in 20."""
    mode = attrs.get("mode", "bilinear")
    renamed = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    return ctx.emit_same(inputs, {**attrs, "mode": renamed}, upgraded=True)


def _dft_old(ctx: ImportContext, inputs, attrs):
    """axis attribute (default 1) -> input (whose default became -2)."""
    attrs = dict(attrs)
    axis = attrs.pop("axis", 1)
    signal = inputs[0]
    length = inputs[1] if len(inputs) > 1 else None
    return ctx.emit_same([signal, length, ctx.const(np.int64(axis))], attrs, upgraded=True)


def _roi_align_old(ctx: ImportContext, inputs, attrs):
    """before 16 RoiAlign scaled boxes without the half-pixel shift."""
    attrs = {"coordinate_transformation_mode": "output_half_pixel", **attrs}
    return ctx.emit_same(inputs, attrs, upgraded=True)


def _range_old(ctx: ImportContext, inputs, attrs):
    """before 27 fp16/bf16 ranges accumulated in their own type: stash in that type."""
    extra = {"stash_type": _dtype(ctx, inputs[0]).onnx} if _declares("Range", "stash_type") else {}
    return ctx.emit_same(inputs, {**attrs, **extra}, upgraded=True)


# ---- Resize and Upsample ---------------------------------------------------------------

def _nearest_rounding(scales) -> str:
    """Resize-10 and Upsample index the input at floor(x / scale) when enlarging; runtimes
    round the other way (ceil) when shrinking, and a dim of scale 1 is exact either way."""
    if scales is not None and np.size(scales) and np.all(np.asarray(scales) <= 1) and np.any(np.asarray(scales) < 1):
        return "ceil"
    return "floor"


def _resize_from_scales(ctx: ImportContext, x, scales, mode: str):
    """Resize in the Upsample/Resize-10 sense: asymmetric coordinates, scales only."""
    mode = "linear" if mode in ("linear", "bilinear") else mode
    attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode == "nearest":
        attrs["nearest_mode"] = _nearest_rounding(scales.const)
    return ctx.emit("Resize", [x, None, scales], attrs, output_names=list(ctx.output_names[:1]))


def _upsample(ctx: ImportContext, inputs, attrs):
    """Upsample (deprecated in 10) is Resize with asymmetric coordinates; scales were an attribute before 9."""
    if len(inputs) > 1 and inputs[1] is not None:
        scales = inputs[1]
    elif "scales" in attrs:
        scales = ctx.const(np.asarray(attrs["scales"], dtype=np.float32))
    else:
        raise ctx.error("needs scales (an attribute before opset 9, an input after)")
    return _resize_from_scales(ctx, inputs[0], scales, attrs.get("mode", "nearest"))


def _empty_const(v) -> bool:
    return v is not None and v.const is not None and v.const.size == 0


def _resize(ctx: ImportContext, inputs, attrs):
    """Resize-10 had (X, scales) and Upsample's coordinates; 11-12 spelled "no roi/scales" as empty tensors."""
    if ctx.opset < 11:
        return _resize_from_scales(ctx, inputs[0], inputs[1], attrs.get("mode", "nearest"))
    if attrs.get("coordinate_transformation_mode") == "tf_half_pixel_for_nn":
        raise ctx.error("coordinate_transformation_mode 'tf_half_pixel_for_nn' (opset 11 only) is not supported")
    inputs = [None if i in (1, 2) and _empty_const(v) else v for i, v in enumerate(inputs)]
    return ctx.emit_same(inputs, attrs, upgraded=ctx.opset < 13)


# ---- ops that left the standard --------------------------------------------------------

def _scatter(ctx: ImportContext, inputs, attrs):
    """Scatter (deprecated in 11) is ScatterElements."""
    return ctx.emit_same(inputs, attrs, op="ScatterElements", upgraded=True)


def _image_scaler(ctx: ImportContext, inputs, attrs):
    """ImageScaler (experimental, opsets 1-9): y = scale * x + bias[c]."""
    x = inputs[0]
    scaled = ctx.emit1("Mul", x, ctx.scalar_like(attrs.get("scale", 1.0), x))
    bias = np.asarray(attrs.get("bias", [0.0]), dtype=_dtype(ctx, x).numpy).reshape(1, -1, 1, 1)
    return ctx.emit("Add", [scaled, ctx.const(bias)], output_names=ctx.output_names[:1])


def _affine(ctx: ImportContext, inputs, attrs):
    """Affine (experimental, opsets 1-9): y = alpha * x + beta."""
    x = inputs[0]
    scaled = ctx.emit1("Mul", x, ctx.scalar_like(attrs.get("alpha", 1.0), x))
    return ctx.emit("Add", [scaled, ctx.scalar_like(attrs.get("beta", 0.0), x)], output_names=ctx.output_names[:1])


def _scaled_tanh(ctx: ImportContext, inputs, attrs):
    """ScaledTanh (experimental, opsets 1-9): y = alpha * tanh(beta * x)."""
    x = inputs[0]
    inner = ctx.emit1("Tanh", ctx.emit1("Mul", x, ctx.scalar_like(attrs.get("beta", 1.0), x)))
    return ctx.emit("Mul", [inner, ctx.scalar_like(attrs.get("alpha", 1.0), x)], output_names=ctx.output_names[:1])


def _parametric_softplus(ctx: ImportContext, inputs, attrs):
    """ParametricSoftplus (experimental, opsets 1-9): y = alpha * ln(1 + exp(beta * x))."""
    x = inputs[0]
    inner = ctx.emit1("Softplus", ctx.emit1("Mul", x, ctx.scalar_like(attrs.get("beta", 1.0), x)))
    return ctx.emit("Mul", [inner, ctx.scalar_like(attrs.get("alpha", 1.0), x)], output_names=ctx.output_names[:1])


def _dynamic_slice(ctx: ImportContext, inputs, attrs):
    """DynamicSlice (experimental, opsets 1-9) is Slice-10 without steps."""
    return ctx.emit_same(list(inputs[:4]), {}, op="Slice", upgraded=True)


def _scan_old(ctx: ImportContext, inputs, attrs):
    """Scan-8 iterated a batch of sequences; see onnx_scan8."""
    from .onnx_scan8 import convert_scan8

    return convert_scan8(ctx, inputs, attrs)


_AXES_LATE = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
              "ReduceMin", "ReduceProd", "ReduceSumSquare")

LEGACY_CONVERTERS: dict[tuple[str, str], Callable] = {
    ("", "Slice"): _since(10, _slice_old),
    ("", "Pad"): _since(11, _pad_old),
    ("", "Clip"): _since(11, _clip_old),
    ("", "TopK"): _since(10, _topk_old),
    ("", "Split"): _split,
    ("", "Squeeze"): _since(13, _attr_to_input("axes")),
    ("", "Unsqueeze"): _since(13, _attr_to_input("axes")),
    ("", "ReduceSum"): _since(13, _attr_to_input("axes")),
    **{("", op): _since(18, _attr_to_input("axes")) for op in _AXES_LATE},
    ("", "Dropout"): _dropout,
    ("", "Softmax"): _since(13, _coerced_2d),
    ("", "LogSoftmax"): _since(13, _coerced_2d),
    ("", "Hardmax"): _since(13, _coerced_2d),
    ("", "BatchNormalization"): _batchnorm,
    ("", "GroupNormalization"): _since(21, _group_norm_old),
    ("", "GridSample"): _since(20, _grid_sample_old),
    ("", "DFT"): _since(20, _dft_old),
    ("", "RoiAlign"): _since(16, _roi_align_old),
    ("", "Range"): _since(27, _range_old),
    ("", "Resize"): _resize,
    ("", "Upsample"): _upsample,
    ("", "Scatter"): _scatter,
    ("", "Scan"): _since(9, _scan_old),
    ("", "ImageScaler"): _image_scaler,
    ("", "Affine"): _affine,
    ("", "ScaledTanh"): _scaled_tanh,
    ("", "ParametricSoftplus"): _parametric_softplus,
    ("", "DynamicSlice"): _dynamic_slice,
}

# Ops a converter emits instead of its own name: the importer checks these are supported.
CONVERTER_TARGETS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Upsample"): ("Resize",),
    ("", "Scatter"): ("ScatterElements",),
    ("", "ImageScaler"): ("Mul", "Add"),
    ("", "Affine"): ("Mul", "Add"),
    ("", "ScaledTanh"): ("Mul", "Tanh"),
    ("", "ParametricSoftplus"): ("Mul", "Softplus"),
    ("", "DynamicSlice"): ("Slice",),
    ("", "Scan"): ("Scan", "Loop", "Gather"),
}
