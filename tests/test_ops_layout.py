"""The channels-last ops (ir/ops/layout.py): each NHWC op equals transpose . ONNX op . transpose
on random inputs, its epilogue (bias, residual before/after, every activation) included,
and inference rejects what the microkernels cannot run."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from compiler.ir import GraphBuilder, run_graph, tensor
from compiler.ir.errors import CompilerError

TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _activation(b: GraphBuilder, y, name: str, lo: float, hi: float):
    """The standalone ONNX ops an epilogue activation stands for."""
    if name == "none":
        return y
    if name == "relu":
        return b.op("Relu", y)
    if name == "clip":
        return b.op("Clip", y, b.const(np.float32(lo)), b.const(np.float32(hi)))
    if name == "gelu_tanh":
        return b.op("Gelu", y, approximate="tanh")
    if name == "gelu_erf":
        return b.op("Gelu", y)
    if name == "hardswish":
        return b.op("HardSwish", y)
    return b.op("Mul", y, b.op("Sigmoid", y))


def _conv_pair(x, w, bias, residual, attrs, activation="none", after=0, lo=0.0, hi=6.0):
    """(ConvNhwc result, the same computed by ONNX ops on NCHW) for NHWC x."""
    feeds = {"x": x} | ({"r": residual} if residual is not None else {})
    nhwc = GraphBuilder()
    xv = nhwc.input("x", tensor(x.shape, "f32"))
    rv = nhwc.input("r", tensor(residual.shape, "f32")) if residual is not None else None
    y = nhwc.op("ConvNhwc", xv, nhwc.const(w), None if bias is None else nhwc.const(bias), rv, **attrs,
                activation=activation, clip_min=lo, clip_max=hi, residual_after_activation=after)
    nhwc.output(y)
    onnx = GraphBuilder()
    xv = onnx.input("x", tensor(x.shape, "f32"))
    y = onnx.op("Conv", onnx.op("Transpose", xv, perm=TO_NCHW), onnx.const(w),
                None if bias is None else onnx.const(bias), **attrs)
    r = None
    if residual is not None:
        r = onnx.op("Transpose", onnx.input("r", tensor(residual.shape, "f32")), perm=TO_NCHW)
    if r is not None and not after:
        y = onnx.op("Add", y, r)
    y = _activation(onnx, y, activation, lo, hi)
    if r is not None and after:
        y = onnx.op("Add", y, r)
    onnx.output(onnx.op("Transpose", y, perm=TO_NHWC))
    got = list(run_graph(nhwc.build(), feeds, check_types=True).values())[0]
    want = list(run_graph(onnx.build(), feeds, check_types=True).values())[0]
    return got, want


CONV_CASES = [
    # (N, H, W, C, M, k, attrs)
    (1, 9, 9, 4, 8, 3, {}),
    (2, 10, 7, 6, 4, 3, {"strides": [2, 1], "pads": [1, 0, 2, 1]}),
    (1, 11, 11, 8, 8, 3, {"group": 8, "pads": [1, 1, 1, 1]}),  # depthwise
    (1, 12, 12, 6, 9, 3, {"group": 3, "dilations": [2, 1], "strides": [1, 2], "pads": [2, 1, 2, 1]}),
    (2, 5, 5, 16, 8, 1, {}),
    (1, 8, 8, 3, 5, 5, {"strides": [3, 3], "pads": [2, 2, 2, 2]}),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_nhwc_equals_transposed_conv(case, with_bias):
    n, h, w, c, m, k, attrs = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    weight = rng.standard_normal((m, c // attrs.get("group", 1), k, k), dtype=np.float32)
    bias = rng.standard_normal(m, dtype=np.float32) if with_bias else None
    got, want = _conv_pair(x, weight, bias, None, attrs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation, residual, after", [
    (a, r, after) for a, r, after in itertools.product(
        ["none", "relu", "clip", "gelu_tanh", "gelu_erf", "silu", "hardswish"], [False, True], [0, 1]) if r or not after])
def test_conv_nhwc_epilogue_equals_separate_ops(activation, residual, after):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 6, 4), dtype=np.float32)
    weight = rng.standard_normal((6, 4, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(6, dtype=np.float32)
    res = rng.standard_normal((2, 6, 6, 6), dtype=np.float32) if residual else None
    got, want = _conv_pair(x, weight, bias, res, {"pads": [1, 1, 1, 1]}, activation, after, lo=-0.5, hi=1.5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if activation == "clip" and not after:
        assert got.min() >= -0.5 and got.max() <= 1.5


def _pool_pair(op_nhwc: str, op: str, x, **attrs):
    nhwc = GraphBuilder()
    nhwc.output(nhwc.op(op_nhwc, nhwc.input("x", tensor(x.shape, "f32")), **attrs))
    onnx = GraphBuilder()
    y = onnx.op(op, onnx.op("Transpose", onnx.input("x", tensor(x.shape, "f32")), perm=TO_NCHW), **attrs)
    onnx.output(onnx.op("Transpose", y, perm=TO_NHWC))
    got = list(run_graph(nhwc.build(), {"x": x}, check_types=True).values())[0]
    want = list(run_graph(onnx.build(), {"x": x}, check_types=True).values())[0]
    return got, want


POOL_CASES = [
    {"kernel_shape": [3, 3], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [2, 3], "strides": [1, 2], "pads": [1, 0, 0, 1]},
    {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "dilations": [2, 1]},
    {"kernel_shape": [5, 5], "strides": [3, 3], "pads": [2, 2, 2, 2], "ceil_mode": 1},
]


@pytest.mark.parametrize("attrs", POOL_CASES)
def test_max_pool_nhwc_equals_transposed_max_pool(attrs):
    x = np.random.default_rng(2).standard_normal((2, 13, 11, 5), dtype=np.float32)
    got, want = _pool_pair("MaxPoolNhwc", "MaxPool", x, **attrs)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("attrs", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool_nhwc_equals_transposed_average_pool(attrs, count_include_pad):
    x = np.random.default_rng(3).standard_normal((2, 13, 11, 5), dtype=np.float32)
    got, want = _pool_pair("AveragePoolNhwc", "AveragePool", x, count_include_pad=count_include_pad, **attrs)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 5])
def test_lrn_nhwc_windows_over_the_last_axis(size):
    x = np.random.default_rng(4).standard_normal((2, 4, 3, 7), dtype=np.float32)
    got, want = _pool_pair("LRNNhwc", "LRN", x, size=size, alpha=1e-2, beta=0.75, bias=2.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _conv_node(x_shape, w_shape, b_shape=None, r_shape=None, **attrs):
    b = GraphBuilder()
    inputs = [b.input("x", tensor(x_shape, "f32")), b.const(np.zeros(w_shape, np.float32)),
              None if b_shape is None else b.const(np.zeros(b_shape, np.float32)),
              None if r_shape is None else b.input("r", tensor(r_shape, "f32"))]
    return b.op("ConvNhwc", *inputs, **attrs)


def test_conv_nhwc_infers_the_nhwc_output_shape():
    y = _conv_node((2, 15, 15, 4), (8, 4, 3, 3), (8,), strides=[2, 2], pads=[1, 1, 1, 1])
    assert y.type.shape == (2, 8, 8, 8)
    y = _conv_node(("batch", 7, 7, 6), (6, 2, 3, 3), group=3)
    assert y.type.shape[1:] == (5, 5, 6) and y.type.shape[0] == "batch"


@pytest.mark.parametrize("x_shape, w_shape, b_shape, r_shape, attrs, message", [
    ((1, 8, 8, 4), (8, 4, 3, 3), None, None, {"activation": "tanh"}, "activation"),
    ((1, 8, 8, 5), (8, 4, 3, 3), None, None, {}, "channels"),
    ((1, 8, 8, 4), (6, 1, 3, 3), None, None, {"group": 4}, "divide"),
    ((1, 4, 8, 8), (8, 4, 3, 3), None, None, {}, "channels"),  # an NCHW tensor by mistake
    ((1, 8, 8, 4), (8, 4, 3, 3), (4,), None, {}, "B must"),
    ((1, 8, 8, 4), (8, 4, 3, 3), None, (1, 8, 6, 6), {}, "residual"),
    ((1, 8, 8), (8, 4, 3, 3), None, None, {}, "NHWC"),
    ((1, 8, 8, 4), (8, 4, 3, 3), None, None, {"pads": [1, 1]}, "pads"),
])
def test_conv_nhwc_rejects_bad_operands(x_shape, w_shape, b_shape, r_shape, attrs, message):
    with pytest.raises(CompilerError, match=message):
        _conv_node(x_shape, w_shape, b_shape, r_shape, **attrs)


def test_pool_nhwc_infers_and_rejects():
    b = GraphBuilder()
    x = b.input("x", tensor((1, 112, 112, 64), "f32"))
    assert b.op("MaxPoolNhwc", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]).type.shape == (1, 56, 56, 64)
    with pytest.raises(CompilerError, match="kernel_shape"):
        b.op("AveragePoolNhwc", x, kernel_shape=[3, 3, 3])
    with pytest.raises(CompilerError, match="size"):
        b.op("LRNNhwc", x, size=0)


@pytest.mark.parametrize("activation", ["relu", "clip", "gelu_tanh", "gelu_erf", "silu", "hardswish"])
def test_linear_activation_equals_separate_ops(activation):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 8), dtype=np.float32)
    fused, plain = GraphBuilder(), GraphBuilder()
    wt, bias = rng.standard_normal((8, 5), dtype=np.float32), rng.standard_normal(5, dtype=np.float32)
    fused.output(fused.op("Linear", fused.input("a", tensor(a.shape, "f32")), fused.const(wt), fused.const(bias),
                          activation=activation, clip_min=-1.0, clip_max=0.5))
    y = plain.op("Linear", plain.input("a", tensor(a.shape, "f32")), plain.const(wt), plain.const(bias))
    plain.output(_activation(plain, y, activation, -1.0, 0.5))
    got = list(run_graph(fused.build(), {"a": a}, check_types=True).values())[0]
    want = list(run_graph(plain.build(), {"a": a}, check_types=True).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
