"""Convolutions: Conv, ConvTranspose, DeformConv, Col2Im, and the integer / quantized
ConvInteger and QLinearConv.

A forward convolution is im2col + one batched matmul: `_window.windows` gives the
(N, C, O..., K...) patches as a strided view, they are laid out once as (N, G, C/G*K, P)
columns, and a single np.matmul with the (G, M/G, C/G*K) weights runs every group at
once (depthwise convolutions included, no loop over channels). ConvTranspose is the
adjoint: one matmul spreads each input pixel over a kernel patch, then col2im sums them.
"""
from __future__ import annotations

import itertools

import numpy as np

from .. import dtypes
from .. import flops
from ..registry import PENDING_RULE, Attr, Category, InferContext, OpDef, Precision
from ..types import TensorType, fresh_dim
from ._window import (crop_or_pad, kernel_from, numel, pad_for, resolve_window, scatter_windows, spatial_ints,
                      windows)
from .matmul import accumulator, wrap_int32
from .quant import requantize

_WINDOW_ATTRS = {"auto_pad": Attr("string", "NOTSET"), "dilations": Attr("ints", None),
                 "kernel_shape": Attr("ints", None), "pads": Attr("ints", None), "strides": Attr("ints", None)}
_CONV_ATTRS = {**_WINDOW_ATTRS, "group": Attr("int", 1)}


# ---------------------------------------------------------------- inference

def _check_conv_operands(ctx: InferContext, x: TensorType, w: TensorType, transposed: bool = False) -> None:
    """X is (N, C, spatial...); W is (M, C/group, K...), or (C, M/group, K...) when transposed."""
    if len(x.shape) < 3:
        raise ctx.error(f"X must be (N, C, spatial...), got {x}")
    if w.shape is None:
        return
    if len(w.shape) != len(x.shape):
        raise ctx.error(f"W must have X's rank {len(x.shape)}, got {w}")
    group, c = ctx.attrs["group"], x.shape[1]
    if group < 1:
        raise ctx.error(f"group must be positive, got {group}")
    want_c = w.shape[0] if transposed else (w.shape[1] * group if isinstance(w.shape[1], int) else None)
    if isinstance(c, int) and isinstance(want_c, int) and c != want_c:
        what = "W's first dim" if transposed else f"W's {w.shape[1]} channels per group x {group} groups"
        raise ctx.error(f"X has {c} channels, {what} needs {want_c}")
    if not transposed and isinstance(w.shape[0], int) and w.shape[0] % group:
        raise ctx.error(f"W's {w.shape[0]} output channels do not divide into {group} groups")


def _check_bias(ctx: InferContext, i: int, channels) -> None:
    if ctx.has(i) and ctx.input(i).shape is not None:
        b = ctx.input(i).shape
        if len(b) != 1 or (isinstance(b[0], int) and isinstance(channels, int) and b[0] != channels):
            raise ctx.error(f"bias must be a vector of the {channels} output channels, got {ctx.input(i)}")


def _conv_infer(w_index: int, out_dtype, bias_index: int | None = None):
    """Inference for forward convolutions: X is input 0, W input `w_index`; out_dtype(ctx) -> DType."""

    def infer(ctx: InferContext):
        x, w, dtype = ctx.input(0), ctx.input(w_index), out_dtype(ctx)
        if x.shape is None:
            return [TensorType(None, dtype)]
        _check_conv_operands(ctx, x, w)
        n = len(x.shape) - 2
        m = w.shape[0] if w.shape is not None else fresh_dim("m")
        if bias_index is not None:
            _check_bias(ctx, bias_index, m)
        kernel = kernel_from(ctx.attrs, w.shape, n, ctx.error)
        if kernel is None:
            return [TensorType((x.shape[0], m) + tuple(fresh_dim("out") for _ in range(n)), dtype)]
        out = resolve_window(ctx.attrs, x.shape[2:], kernel, ctx.error).out
        return [TensorType((x.shape[0], m) + tuple(out), dtype)]

    return infer


def _same_float_type(*indices: int):
    def dtype(ctx: InferContext):
        first = ctx.input(indices[0]).dtype
        for i in indices[1:]:
            if ctx.has(i) and ctx.input(i).dtype != first:
                raise ctx.error(f"input {i} is {ctx.input(i).dtype}, expected {first} like input {indices[0]}")
        if not first.is_float:
            raise ctx.error(f"expected a float tensor, got {first}")
        return first

    return dtype


# ---------------------------------------------------------------- forward convolution

def _columns(patches: np.ndarray, n: int) -> np.ndarray:
    """(N, C, O..., K...) patches -> contiguous (N, C, K, P) columns (the one im2col copy)."""
    N, C = patches.shape[:2]
    o_axes = tuple(range(2, 2 + n))
    k_axes = tuple(range(2 + n, 2 + 2 * n))
    return patches.transpose((0, 1) + k_axes + o_axes).reshape(N, C, numel(patches.shape[2 + n:]), -1)


def _apply_weights(cols: np.ndarray, w: np.ndarray, group: int, out_spatial) -> np.ndarray:
    """(N, C, K, P) columns x (M, C/G, K...) weights -> (N, M, O...): one matmul for all groups."""
    N, C, K, P = cols.shape
    M = w.shape[0]
    y = np.matmul(w.reshape(group, M // group, -1), cols.reshape(N, group, (C // group) * K, P))
    return y.reshape((N, M) + tuple(out_spatial))


def _forward_conv(ctx, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Convolution of x by w (both already in the accumulation type), without bias."""
    n = x.ndim - 2
    win = resolve_window(ctx.attrs, x.shape[2:], kernel_from(ctx.attrs, w.shape, n, ctx.error), ctx.error)
    cols = _columns(windows(pad_for(x, win), win), n)
    return _apply_weights(cols, w, ctx.attrs["group"], win.out)


def _per_channel(v: np.ndarray, spatial_rank: int) -> np.ndarray:
    """A per-channel vector (or a scalar) shaped to broadcast over (N, C, spatial...)."""
    return v.reshape(()) if v.size == 1 else v.reshape((-1,) + (1,) * spatial_rank)


def _ref_conv(ctx, x, w, b=None):
    acc = accumulator(x.dtype)
    y = _forward_conv(ctx, x.astype(acc, copy=False), w.astype(acc, copy=False))
    if b is not None:
        y += _per_channel(b.astype(acc), x.ndim - 2)
    return y.astype(x.dtype, copy=False)


def _shifted(v: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """v - zero_point in float64; a 1-D zero point is per output channel (the weights' axis 0)."""
    v = v.astype(np.float64)
    if zero_point is None:
        return v
    return v - _per_channel(zero_point.astype(np.float64), v.ndim - 1)


def _ref_conv_integer(ctx, x, w, x_zero_point=None, w_zero_point=None):
    # Shifting before padding makes the padding equal the zero point, i.e. a real 0.
    return wrap_int32(_forward_conv(ctx, _shifted(x, x_zero_point), _shifted(w, w_zero_point)))


def _ref_qlinear_conv(ctx, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, b=None):
    n = x.ndim - 2
    acc = _forward_conv(ctx, _shifted(x, x_zero_point), _shifted(w, w_zero_point))
    if b is not None:
        acc += _per_channel(b.astype(np.float64), n)
    multiplier = (x_scale.astype(np.float64).reshape(()) * _per_channel(w_scale.astype(np.float64), n)
                  / y_scale.astype(np.float64).reshape(()))
    return requantize(acc, multiplier, y_zero_point, y_zero_point.dtype)


# ---------------------------------------------------------------- ConvTranspose

def transpose_geometry(attrs: dict, spatial, kernel, fail):
    """(pads at the beginning, output sizes) of a transposed convolution.

    The natural size is stride * (in - 1) + output_padding + extent; an explicit
    output_shape or auto_pad SAME fixes the size instead and the padding follows from it.
    """
    n = len(spatial)
    strides = spatial_ints(attrs, "strides", n, 1, fail)
    dilations = spatial_ints(attrs, "dilations", n, 1, fail)
    out_pad = spatial_ints(attrs, "output_padding", n, 0, fail)
    auto_pad = attrs["auto_pad"] or "NOTSET"
    pads = attrs["pads"] or [0] * (2 * n)
    if len(pads) != 2 * n:
        raise fail(f"'pads' has {len(pads)} values, expected {2 * n}")
    requested = list(attrs["output_shape"] or [])[-n:] if attrs["output_shape"] else None
    begins, outs = [], []
    for i, size in enumerate(spatial):
        if not isinstance(size, int):
            begins.append(None)
            outs.append(requested[i] if requested else fresh_dim("out"))
            continue
        natural = strides[i] * (size - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
        if requested or auto_pad.startswith("SAME"):
            out = int(requested[i]) if requested else size * strides[i]
            total = natural - out
            begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        elif auto_pad == "VALID":
            begin, out = 0, natural
        else:
            begin, out = int(pads[i]), natural - int(pads[i]) - int(pads[i + n])
        if out < 1:
            raise fail(f"spatial axis {i} would have size {out}")
        begins.append(begin)
        outs.append(out)
    return begins, outs, strides, dilations


def _infer_conv_transpose(ctx: InferContext):
    x, w = ctx.input(0), ctx.input(1)
    dtype = _same_float_type(0, 1, 2)(ctx)
    if x.shape is None:
        return [TensorType(None, dtype)]
    _check_conv_operands(ctx, x, w, transposed=True)
    n = len(x.shape) - 2
    m = w.shape[1] * ctx.attrs["group"] if w.shape is not None and isinstance(w.shape[1], int) else fresh_dim("m")
    _check_bias(ctx, 2, m)
    kernel = kernel_from(ctx.attrs, w.shape, n, ctx.error)
    if kernel is None:
        return [TensorType((x.shape[0], m) + tuple(fresh_dim("out") for _ in range(n)), dtype)]
    _, outs, _, _ = transpose_geometry(ctx.attrs, x.shape[2:], kernel, ctx.error)
    return [TensorType((x.shape[0], m) + tuple(outs), dtype)]


def _ref_conv_transpose(ctx, x, w, b=None):
    acc = accumulator(x.dtype)
    x_a, w_a = x.astype(acc, copy=False), w.astype(acc, copy=False)
    N, C = x.shape[:2]
    group, kernel, spatial = ctx.attrs["group"], w.shape[2:], x.shape[2:]
    m_per_group = w.shape[1]
    # Every input pixel spreads a (M/G, K...) patch: one matmul yields all patches at once.
    w_t = w_a.reshape(group, C // group, -1).transpose(0, 2, 1)
    cols = np.matmul(w_t, x_a.reshape(N, group, C // group, -1))
    cols = cols.reshape((N, group * m_per_group) + kernel + spatial)
    begins, outs, strides, dilations = transpose_geometry(ctx.attrs, spatial, kernel, ctx.error)
    full = [s * (i - 1) + (k - 1) * d + 1 for s, i, k, d in zip(strides, spatial, kernel, dilations)]
    y = crop_or_pad(scatter_windows(cols, full, strides, dilations), begins, outs)
    if b is not None:
        y = y + _per_channel(b.astype(acc), len(spatial))
    return y.astype(x.dtype)


# ---------------------------------------------------------------- DeformConv

def _sample_multilinear(x: np.ndarray, spatial, coords: list[np.ndarray]) -> np.ndarray:
    """x (N, G, Cg, prod(spatial)) sampled at fractional coords (each (N, G, K, P)) -> (N, G, Cg, K, P).

    Multilinear interpolation over the 2**n corners; corners outside the input read 0.
    Gathers run on a channels-last copy, so each sample fetches one contiguous row of Cg.
    """
    N, G, Cg, _ = x.shape
    K, P = coords[0].shape[2:]
    rows = np.ascontiguousarray(x.transpose(0, 1, 3, 2))
    batch, group = np.arange(N)[:, None, None], np.arange(G)[None, :, None]
    floors = [np.floor(c) for c in coords]
    result = np.zeros((N, G, K * P, Cg), dtype=x.dtype)
    for corner in itertools.product((0, 1), repeat=len(spatial)):
        weight = np.ones(coords[0].shape, dtype=x.dtype)
        flat = np.zeros(coords[0].shape, dtype=np.int64)
        for bit, size, c, f in zip(corner, spatial, coords, floors):
            idx = f.astype(np.int64) + bit
            weight *= np.where((idx >= 0) & (idx < size), (c - f) if bit else (1 - (c - f)), 0)
            flat = flat * size + np.clip(idx, 0, size - 1)
        result += rows[batch, group, flat.reshape(N, G, K * P)] * weight.reshape(N, G, K * P, 1)
    return result.reshape(N, G, K, P, Cg).transpose(0, 1, 4, 2, 3)


def _ref_deform_conv(ctx, x, w, offset, b=None, mask=None):
    acc = accumulator(x.dtype)
    n = x.ndim - 2
    N, C = x.shape[:2]
    spatial = x.shape[2:]
    win = resolve_window(ctx.attrs, spatial, kernel_from(ctx.attrs, w.shape, n, ctx.error), ctx.error)
    groups, K, P = ctx.attrs["offset_group"], numel(win.kernel), numel(win.out)
    offset = offset.astype(acc).reshape(N, groups, K, n, P)
    k_pos = np.indices(win.kernel).reshape(n, K)
    o_pos = np.indices(win.out).reshape(n, P)
    # The undeformed sampling grid is o * stride - pad + k * dilation; the offsets move it.
    coords = [(o_pos[i] * win.strides[i] - win.pads_begin[i])[None, :] + (k_pos[i] * win.dilations[i])[:, None]
              + offset[:, :, :, i] for i in range(n)]
    cols = _sample_multilinear(x.astype(acc).reshape(N, groups, C // groups, -1), spatial, coords)
    if mask is not None:
        cols = cols * mask.astype(acc).reshape(N, groups, 1, K, P)
    y = _apply_weights(np.ascontiguousarray(cols).reshape(N, C, K, P), w.astype(acc), ctx.attrs["group"], win.out)
    if b is not None:
        y += _per_channel(b.astype(acc), n)
    return y.astype(x.dtype)


# ---------------------------------------------------------------- Col2Im

def _infer_col2im(ctx: InferContext):
    x = ctx.input(0)
    if x.shape is not None and len(x.shape) != 3:
        raise ctx.error(f"input must be (N, C * prod(block_shape), L), got {x}")
    image, block = ctx.const(1), ctx.const(2)
    if image is None:
        n = ctx.input(1).shape[0] if ctx.input(1).is_static and ctx.input(1).rank == 1 else None
        if n is None:
            return [TensorType(None, x.dtype)]
        spatial = tuple(fresh_dim("img") for _ in range(n))
    else:
        spatial = tuple(int(v) for v in image)
    batch = x.shape[0] if x.shape is not None else fresh_dim("n")
    channels = fresh_dim("c")
    if block is not None and x.shape is not None and isinstance(x.shape[1], int):
        block = [int(b) for b in block]
        if len(block) != len(spatial) or x.shape[1] % numel(block):
            raise ctx.error(f"block_shape {list(block)} does not fit {x} and image_shape {list(spatial)}")
        channels = x.shape[1] // numel(block)
        if image is not None and isinstance(x.shape[2], int):
            win = resolve_window(ctx.attrs, spatial, block, ctx.error)
            if numel(win.out) != x.shape[2]:
                raise ctx.error(f"{x.shape[2]} columns, but image_shape {list(spatial)} and block_shape "
                                f"{list(block)} give {numel(win.out)} block positions")
    return [TensorType((batch, channels) + spatial, x.dtype)]


def _ref_col2im(ctx, cols, image_shape, block_shape):
    image, block = tuple(int(v) for v in image_shape), tuple(int(v) for v in block_shape)
    acc = accumulator(cols.dtype)
    win = resolve_window(ctx.attrs, image, block, ctx.error)
    N = cols.shape[0]
    blocks = cols.astype(acc, copy=False).reshape((N, -1) + block + tuple(win.out))
    padded = [i + b + e for i, b, e in zip(image, win.pads_begin, win.pads_end)]
    canvas = scatter_windows(blocks, padded, win.strides, win.dilations)
    return crop_or_pad(canvas, win.pads_begin, image).astype(cols.dtype)


# ---------------------------------------------------------------- registry entries

_ACCUMULATING = dict(category=Category.OUT_FUSABLE, precision=Precision.ACCUMULATE_FP32, kernel_class="conv")

OPS = [
    OpDef("Conv", ("X", "W", "B?"), ("Y",), _conv_infer(1, _same_float_type(0, 1, 2), bias_index=2), _ref_conv,
          attrs=_CONV_ATTRS, **_ACCUMULATING, flops=flops.conv,
          doc="N-D grouped convolution with strides, dilations, pads / auto_pad and an optional bias."),
    OpDef("ConvInteger", ("x", "w", "x_zero_point?", "w_zero_point?"), ("y",),
          _conv_infer(1, lambda ctx: dtypes.int32), _ref_conv_integer, attrs=_CONV_ATTRS, **_ACCUMULATING,
          flops=flops.conv,
          doc="Convolution of zero-point-shifted 8-bit tensors accumulated to int32."),
    OpDef("QLinearConv", ("x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale",
                          "y_zero_point", "B?"), ("y",),
          _conv_infer(3, lambda ctx: ctx.input(7).dtype, bias_index=8), _ref_qlinear_conv,
          attrs=_CONV_ATTRS, **_ACCUMULATING,
          doc="Quantized convolution: integer conv plus int32 bias, requantized to y's scale and zero point.",
          not_lowerable=PENDING_RULE),
    OpDef("ConvTranspose", ("X", "W", "B?"), ("Y",), _infer_conv_transpose, _ref_conv_transpose,
          attrs={**_CONV_ATTRS, "output_padding": Attr("ints", None), "output_shape": Attr("ints", None)},
          **_ACCUMULATING, flops=flops.conv_transpose,
          doc="Transposed (fractionally strided) convolution, with output_padding or an explicit output_shape."),
    OpDef("DeformConv", ("X", "W", "offset", "B?", "mask?"), ("Y",),
          _conv_infer(1, _same_float_type(0, 1, 2, 3, 4), bias_index=3), _ref_deform_conv,
          attrs={k: v for k, v in _CONV_ATTRS.items() if k != "auto_pad"} | {"offset_group": Attr("int", 1)},
          category=Category.OPAQUE, precision=Precision.ACCUMULATE_FP32, kernel_class="conv",
          not_lowerable=PENDING_RULE,
          doc="Deformable convolution: kernel taps sampled at learned offsets (multilinear), optionally masked."),
    OpDef("Col2Im", ("input", "image_shape", "block_shape"), ("output",), _infer_col2im, _ref_col2im,
          Category.OPAQUE, Precision.ACCUMULATE_FP32,
          attrs={"dilations": Attr("ints", None), "pads": Attr("ints", None), "strides": Attr("ints", None)},
          doc="Sum sliding-window columns back into a batched N-D image (torch.nn.Fold).",
          shape_inputs=("image_shape", "block_shape")),
]
