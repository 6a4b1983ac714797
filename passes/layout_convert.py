"""First step of the channels-last layout pass: every 2-D Conv, MaxPool, AveragePool, LRN
and global pool becomes its NHWC form (ir/ops/layout.py) between two Transposes:

    y = Op(x)   ->   y = Transpose(OpNhwc(Transpose(x, [0,2,3,1])), [0,3,1,2])

Each node is rewritten on its own, whatever its neighbours are; `layout_sinking` then
cancels the Transposes between neighbours. auto_pad is resolved into explicit pads here,
because the NHWC ops only take explicit ones. A node whose geometry cannot be resolved
at compile time (SAME padding over a symbolic size), a Conv whose weights are not
constant, or anything not 4-D float is left as it is.
"""
from __future__ import annotations

import numpy as np

from ..ir.errors import CompilerError
from ..ir.graph import Node, Value
from ..ir.ops._window import resolve_window
from ..ir.ops.layout import TO_NHWC, channels_first_perm
from .match import compatible, const_of
from .rewriter import Rewriter, Rule, rule_table


def _is_4d_float(v: Value) -> bool:
    t = v.type
    return getattr(t, "rank", None) == 4 and t.dtype.is_float


def explicit_pads(attrs: dict, spatial, kernel) -> list[int] | None:
    """[top, left, bottom, right] the node's padding amounts to, None when unknown at compile time."""
    auto_pad = attrs.get("auto_pad") or "NOTSET"
    if auto_pad == "NOTSET":
        pads = attrs.get("pads") or [0, 0, 0, 0]
        return [int(p) for p in pads] if len(pads) == 4 else None
    try:
        win = resolve_window(attrs, spatial, kernel, CompilerError)
    except CompilerError:
        return None
    if any(p is None for p in win.pads_begin + win.pads_end):
        return None
    return [int(p) for p in win.pads_begin + win.pads_end]


def _pair(attrs: dict, key: str) -> list[int] | None:
    value = attrs.get(key) or [1, 1]
    return [int(v) for v in value] if len(value) == 2 else None


def in_nhwc(rw: Rewriter, x: Value) -> Value:
    return rw.op("Transpose", x, perm=list(TO_NHWC))


def back_to_nchw(rw: Rewriter, y: Value, original: Value) -> Value | None:
    """y (channels-last, NHWC or NDHWC) transposed back; None (the rule gives up) when that is
    not the original's type."""
    out = rw.op("Transpose", y, perm=list(channels_first_perm(y.type.rank)))
    return out if compatible(out, original) else None


def _result(rw: Rewriter, node: Node, y: Value) -> list[Value | None] | None:
    back = back_to_nchw(rw, y, node.outputs[0])
    return None if back is None else [back] + [None] * (len(node.outputs) - 1)


def conv_to_nhwc(node: Node, rw: Rewriter):
    x, w = node.inputs[0], node.inputs[1]
    weights = const_of(w)
    if weights is None or weights.ndim != 4 or not _is_4d_float(x) or x.type.shape is None:
        return None
    kernel = tuple(int(k) for k in weights.shape[2:])
    if node.attrs.get("kernel_shape") and tuple(node.attrs["kernel_shape"]) != kernel:
        return None
    pads = explicit_pads({**node.attrs, "kernel_shape": list(kernel)}, x.type.shape[2:], kernel)
    strides, dilations = _pair(node.attrs, "strides"), _pair(node.attrs, "dilations")
    if pads is None or strides is None or dilations is None:
        return None
    operands = [in_nhwc(rw, x), w] + [v for v in node.inputs[2:3] if v is not None]
    attrs = {"strides": strides, "pads": pads, "dilations": dilations, "group": int(node.attrs.get("group", 1))}
    y = rw.emit("ConvNhwc", operands, attrs, name=node.name)[0]
    return _result(rw, node, y)


def _pool_attrs(node: Node, x: Value) -> dict | None:
    """kernel_shape, strides, pads, dilations and ceil_mode of a 2-D pool, with auto_pad resolved."""
    kernel = node.attrs.get("kernel_shape")
    if not _is_4d_float(x) or x.type.shape is None or not kernel or len(kernel) != 2:
        return None
    pads = explicit_pads(node.attrs, x.type.shape[2:], kernel)
    strides, dilations = _pair(node.attrs, "strides"), _pair(node.attrs, "dilations")
    if pads is None or strides is None or dilations is None:
        return None
    # SAME/VALID already fix the output size; as explicit pads they need no ceil_mode.
    ceil_mode = int(node.attrs.get("ceil_mode", 0)) if (node.attrs.get("auto_pad") or "NOTSET") == "NOTSET" else 0
    return {"kernel_shape": [int(k) for k in kernel], "strides": strides, "pads": pads, "dilations": dilations,
            "ceil_mode": ceil_mode}


def max_pool_to_nhwc(node: Node, rw: Rewriter):
    attrs = _pool_attrs(node, node.inputs[0])
    if attrs is None or (len(node.outputs) > 1 and rw.used(node.outputs[1])):
        return None
    return _result(rw, node, rw.op("MaxPoolNhwc", in_nhwc(rw, node.inputs[0]), name=node.name, **attrs))


def average_pool_to_nhwc(node: Node, rw: Rewriter):
    attrs = _pool_attrs(node, node.inputs[0])
    if attrs is None:
        return None
    y = rw.op("AveragePoolNhwc", in_nhwc(rw, node.inputs[0]), name=node.name,
              count_include_pad=int(node.attrs.get("count_include_pad", 0)), **attrs)
    return _result(rw, node, y)


def lrn_to_nhwc(node: Node, rw: Rewriter):
    if not _is_4d_float(node.inputs[0]):
        return None
    attrs = {k: node.attrs[k] for k in ("alpha", "beta", "bias", "size") if k in node.attrs}
    return _result(rw, node, rw.op("LRNNhwc", in_nhwc(rw, node.inputs[0]), name=node.name, **attrs))


def _global_pool(reduce_op: str):
    def rule(node: Node, rw: Rewriter):
        if not _is_4d_float(node.inputs[0]):
            return None
        # Reduce* take their axes as an input (opset 18 form), as the importer builds them.
        axes = rw.constant(np.array([1, 2], np.int64), f"{node.name}_axes")
        return _result(rw, node, rw.op(reduce_op, in_nhwc(rw, node.inputs[0]), axes, keepdims=1, name=node.name))

    return rule


RULES = rule_table([
    Rule("Conv", conv_to_nhwc, "Conv = NCHW<-ConvNhwc<-NHWC: the same convolution on transposed activations"),
    Rule("MaxPool", max_pool_to_nhwc, "a 2-D max pool reads the same windows in either layout"),
    Rule("AveragePool", average_pool_to_nhwc, "a 2-D average pool reads the same windows in either layout"),
    Rule("LRN", lrn_to_nhwc, "LRN's channel window runs over C wherever C sits"),
    Rule("GlobalAveragePool", _global_pool("ReduceMean"), "a global average pool is a mean over H and W"),
    Rule("GlobalMaxPool", _global_pool("ReduceMax"), "a global max pool is a max over H and W"),
])
