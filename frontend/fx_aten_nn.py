"""ATen converters for neural-network layers: convolution, normalization (inference),
dropout (identity in eval), pooling, upsampling, embedding and scaled-dot-product attention.
See `fx_aten.py` for the calling convention; `NN_CONVERTERS` is this module's part of the table.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..ir import dtypes
from ..ir.graph import Value
from .fx_aten_math import transpose_last2
from .fx_aten_shape import reshape
from .fx_context import FxEmitter, Unsupported, spatial

aten = torch.ops.aten


# -- convolution, normalization, pooling -----------------------------------------------------
def _conv_attrs(weight_shape, stride, padding, dilation, groups) -> dict:
    n = len(weight_shape) - 2
    attrs = {"strides": spatial(stride, n), "dilations": spatial(dilation, n), "group": int(groups),
             "kernel_shape": list(weight_shape[2:])}
    if isinstance(padding, str):  # conv2d(padding="same"): torch puts the odd pixel at the end
        attrs["auto_pad"] = {"same": "SAME_UPPER", "valid": "VALID"}[padding]
    else:
        attrs["pads"] = spatial(padding, n) * 2
    return attrs


def _convolution(cx: FxEmitter, x, weight, bias=None, stride=1, padding=0, dilation=1, transposed=False,
                 output_padding=0, groups=1, **_):
    attrs = _conv_attrs(cx.shape(weight), stride, padding, dilation, groups)
    if transposed:
        attrs["output_padding"] = spatial(output_padding, len(attrs["strides"]))
        return cx.op("ConvTranspose", x, weight, bias, **attrs)
    return cx.op("Conv", x, weight, bias, **attrs)


def _conv_transpose(cx: FxEmitter, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                    dilation=1, **_):
    return _convolution(cx, x, weight, bias, stride, padding, dilation, True, output_padding, groups)


def _param_or(cx: FxEmitter, v, size: int, fill: float, like: Value) -> Value:
    """An optional per-channel weight/bias; torch's None means ones/zeros."""
    return v if v is not None else cx.const(np.full(size, fill, dtype=cx.dtype(like).numpy))


def _batch_norm(cx: FxEmitter, x, weight=None, bias=None, running_mean=None, running_var=None, training=False,
                momentum=0.1, eps=1e-5, **_):
    if training or running_mean is None:
        raise Unsupported("batch_norm in training mode (batch statistics); call model.eval() first")
    c = cx.shape(x)[1]
    return cx.op("BatchNormalization", x, _param_or(cx, weight, c, 1.0, x), _param_or(cx, bias, c, 0.0, x),
                 running_mean, running_var, epsilon=float(eps))


def _native_batch_norm(cx: FxEmitter, **kwargs):
    """Three outputs (y, saved mean, saved rstd); inference only ever reads y."""
    return _batch_norm(cx, **kwargs), None, None


def _layer_norm(cx: FxEmitter, x, normalized_shape, weight=None, bias=None, eps=1e-5, **_):
    shape = list(normalized_shape)
    if math.prod(shape) == 0:
        raise Unsupported("layer_norm over an empty shape")
    scale = weight if weight is not None else cx.const(np.ones(shape, dtype=cx.dtype(x).numpy))
    return cx.op("LayerNormalization", x, scale, bias, axis=-len(shape), epsilon=float(eps))


def _native_layer_norm(cx: FxEmitter, **kwargs):
    return _layer_norm(cx, **kwargs), None, None


def _group_norm(cx: FxEmitter, x, num_groups, weight=None, bias=None, eps=1e-5, **_):
    c = cx.shape(x)[1]
    return cx.op("GroupNormalization", x, _param_or(cx, weight, c, 1.0, x), _param_or(cx, bias, c, 0.0, x),
                 num_groups=int(num_groups), epsilon=float(eps))


def _native_group_norm(cx: FxEmitter, x, weight=None, bias=None, group=1, eps=1e-5, **_):
    return _group_norm(cx, x, group, weight, bias, eps), None, None


def _prelu(cx: FxEmitter, x, weight, **_):
    """torch's weight is per channel (axis 1); PRelu broadcasts numpy-style, from the last axis."""
    if cx.rank(x) >= 2 and cx.rank(weight) == 1:
        weight = reshape(cx, weight, [-1] + [1] * (cx.rank(x) - 2))
    return cx.op("PRelu", x, weight)


def _pixel_shuffle(cx: FxEmitter, x, upscale_factor, **_):
    return cx.op("DepthToSpace", x, blocksize=int(upscale_factor), mode="CRD")  # torch's channel order


def _dropout(cx: FxEmitter, x, p=0.5, train=False, **_):
    if train and p > 0:
        raise Unsupported("dropout in training mode; call model.eval() first")
    return x


def _native_dropout(cx: FxEmitter, x, p=0.5, train=False, **_):
    return _dropout(cx, x, p, train), None


def _pool_attrs(nd: int, kernel_size, stride, padding, ceil_mode) -> dict:
    kernel = spatial(kernel_size, nd)
    strides = spatial(stride, nd) if stride not in (None, []) else kernel  # torch: stride defaults to kernel
    return {"kernel_shape": kernel, "strides": strides, "pads": spatial(padding, nd) * 2,
            "ceil_mode": int(bool(ceil_mode))}


def _max_pool(nd: int, with_indices: bool = False) -> Callable:
    def convert(cx: FxEmitter, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, **_):
        y = cx.op("MaxPool", x, dilations=spatial(dilation, nd), **_pool_attrs(nd, kernel_size, stride, padding,
                                                                              ceil_mode))
        return (y, None) if with_indices else y
    return convert


def _avg_pool(nd: int) -> Callable:
    def convert(cx: FxEmitter, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None, **_):
        if divisor_override is not None:
            raise Unsupported("avg_pool with divisor_override")
        return cx.op("AveragePool", x, count_include_pad=int(bool(count_include_pad)),
                     **_pool_attrs(nd, kernel_size, stride, padding, ceil_mode))
    return convert


def _adaptive_pool(nd: int, op: str, global_op: str, with_indices: bool = False) -> Callable:
    """Adaptive pooling is plain pooling when each output cell covers an equal, disjoint window."""
    def convert(cx: FxEmitter, x, output_size, **_):
        in_sizes = cx.shape(x)[-nd:]
        out = [s if o is None else o for s, o in zip(in_sizes, spatial(output_size, nd))]
        if all(o == 1 for o in out):
            y = cx.op(global_op, x)
        elif all(isinstance(s, int) and s % o == 0 for s, o in zip(in_sizes, out)):
            kernel = [s // o for s, o in zip(in_sizes, out)]
            y = cx.op(op, x, kernel_shape=kernel, strides=kernel)
        else:
            raise Unsupported(f"adaptive pooling from {list(in_sizes)} to {out} (windows of unequal size)")
        return (y, None) if with_indices else y
    return convert


def _upsample(mode: str) -> Callable:
    """F.interpolate: nearest (torch's legacy floor rule = ONNX asymmetric + floor) and bilinear."""
    def convert(cx: FxEmitter, x, output_size=None, scale_factors=None, align_corners=False, scales_h=None,
                scales_w=None, **_):
        if scale_factors is None and scales_h is not None and scales_w is not None:
            scale_factors = [scales_h, scales_w]
        if mode == "nearest":
            transform = "asymmetric"
        else:
            transform = "align_corners" if align_corners else "pytorch_half_pixel"
        attrs = {"mode": mode, "coordinate_transformation_mode": transform, "nearest_mode": "floor"}
        if scale_factors is not None:  # torch maps back with 1/scale, as Resize does with `scales`
            scales = cx.const(np.asarray([1.0, 1.0, *scale_factors], dtype=np.float32))
            return cx.op("Resize", x, None, scales, None, **attrs)
        return cx.op("Resize", x, None, None, cx.ints([*cx.shape(x)[:2], *output_size]), **attrs)
    return convert


def _embedding(cx: FxEmitter, weight, indices, **_):
    return cx.op("Gather", weight, indices, axis=0)


def _repeat_kv_heads(cx: FxEmitter, kv: Value, groups: int) -> Value:
    """GQA: each key/value head serves `groups` consecutive query heads (repeat_interleave on dim -3)."""
    shape = list(cx.shape(kv))
    wide = cx.op("Unsqueeze", kv, cx.ints([len(shape) - 2]))
    wide = cx.op("Expand", wide, cx.ints([*shape[:-2], groups, *shape[-2:]]))
    return reshape(cx, wide, [*shape[:-3], shape[-3] * groups, *shape[-2:]])


def _sdpa(cx: FxEmitter, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False, **_):
    """softmax(Q.K^T * scale + mask).V as MatMul/Softmax primitives (what torch's math kernel does),
    so every target that runs a matmul runs attention; passes may re-fuse the pattern."""
    if dropout_p:
        raise Unsupported("scaled_dot_product_attention with dropout_p > 0")
    q_len, head = cx.shape(query)[-2:]
    k_len = cx.shape(key)[-2]
    if enable_gqa and cx.shape(key)[-3] != cx.shape(query)[-3]:
        groups = cx.shape(query)[-3] // cx.shape(key)[-3]
        key, value = _repeat_kv_heads(cx, key, groups), _repeat_kv_heads(cx, value, groups)
    dt = cx.dtype(query)
    factor = 1.0 / math.sqrt(head) if scale is None else scale
    scores = cx.op("Mul", cx.op("MatMul", query, transpose_last2(cx, key)), cx.tensor(factor, dt))
    masks = [attn_mask] if attn_mask is not None else []
    if is_causal:  # top-left aligned lower triangle, as torch's is_causal
        masks.append(cx.const(np.tril(np.ones((q_len, k_len), dtype=np.bool_))))
    for mask in masks:
        if cx.dtype(mask) == dtypes.bool_:
            scores = cx.op("Where", mask, scores, cx.tensor(-np.inf, dt))
        else:
            scores = cx.op("Add", scores, cx.cast(mask, dt))
    return cx.op("MatMul", cx.op("Softmax", scores, axis=-1), value)


NN_CONVERTERS: dict = {
    # convolution, normalization, pooling, attention
    aten.convolution: _convolution, aten._convolution: _convolution, aten.conv1d: _convolution,
    aten.conv2d: _convolution, aten.conv3d: _convolution, aten.conv_transpose1d: _conv_transpose,
    aten.conv_transpose2d: _conv_transpose, aten.conv_transpose3d: _conv_transpose,
    aten.batch_norm: _batch_norm, aten._native_batch_norm_legit_no_training: _native_batch_norm,
    aten.native_batch_norm: _native_batch_norm, aten.layer_norm: _layer_norm,
    aten.native_layer_norm: _native_layer_norm, aten.group_norm: _group_norm,
    aten.native_group_norm: _native_group_norm, aten.prelu: _prelu, aten._prelu_kernel: _prelu,
    aten.pixel_shuffle: _pixel_shuffle,
    aten.dropout: _dropout, aten.native_dropout: _native_dropout,
    aten.max_pool1d: _max_pool(1), aten.max_pool2d: _max_pool(2), aten.max_pool3d: _max_pool(3),
    aten.max_pool2d_with_indices: _max_pool(2, with_indices=True),
    aten.avg_pool1d: _avg_pool(1), aten.avg_pool2d: _avg_pool(2), aten.avg_pool3d: _avg_pool(3),
    aten.adaptive_avg_pool1d: _adaptive_pool(1, "AveragePool", "GlobalAveragePool"),
    aten.adaptive_avg_pool2d: _adaptive_pool(2, "AveragePool", "GlobalAveragePool"),
    aten._adaptive_avg_pool2d: _adaptive_pool(2, "AveragePool", "GlobalAveragePool"),
    aten.adaptive_max_pool2d: _adaptive_pool(2, "MaxPool", "GlobalMaxPool", with_indices=True),
    aten.upsample_nearest2d: _upsample("nearest"), aten.upsample_bilinear2d: _upsample("linear"),
    aten.embedding: _embedding, aten.scaled_dot_product_attention: _sdpa,
}
