"""`passes.conv_forms`: 1-D convolutions as 2-D ones over a height of 1, 3-D ones as sums
of 2-D ones, transposed convolutions whose stride equals their kernel as one matrix product
plus depth-to-space and the others as one convolution over the stride's phases plus an
interleave, so all reach the microkernels. Each form is checked against onnxruntime over
the attributes that change the arithmetic (stride, dilation, pads, groups, bias), and the
case the rewrite leaves alone (weights known only at run time) still runs correctly."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.passes.core import PassContext


def _model(op, x_shape, w, b=None, **attrs):
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if b is not None else [])
    node = helper.make_node(op, ["x", "w"] + (["b"] if b is not None else []), ["y"], name="conv", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _check(model, x_shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(x_shape).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = compiler.compile(model).run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _ops(model):
    graph = parse_target("llvm").backend.optimize(import_model(model), 2, PassContext(verify=True), BuildOptions())
    return [n.op for n in graph.nodes]


CONV1D = {
    "plain": dict(),
    "strided_padded": dict(strides=[3], pads=[2, 1]),
    "dilated": dict(dilations=[2], pads=[2, 2]),
    "grouped": dict(group=2),
    "depthwise": dict(group=8),
}


@pytest.mark.parametrize("case", sorted(CONV1D))
def test_conv1d_runs_as_a_2d_conv_and_matches_onnxruntime(case):
    attrs = CONV1D[case]
    group = attrs.get("group", 1)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 8 // group, 5)).astype(np.float32)
    model = _model("Conv", (2, 8, 50), w, rng.standard_normal(16).astype(np.float32), **attrs)
    ops = _ops(model)
    assert "Conv" not in ops and "ConvNhwc" in ops, ops
    _check(model, (2, 8, 50))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel", [(2, 2), (3, 2)])
def test_non_overlapping_transposed_conv_is_a_matmul_and_matches_onnxruntime(kernel, bias):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 5) + kernel).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32) if bias else None
    model = _model("ConvTranspose", (2, 6, 7, 9), w, b, strides=list(kernel))
    ops = _ops(model)
    assert "ConvTranspose" not in ops and ("MatMul" in ops or "Linear" in ops), ops
    _check(model, (2, 6, 7, 9))


PHASED = {
    "k3_s2": (dict(strides=[2, 2]), 3),
    "k4_s2_p1 (GAN/FCN upsampling)": (dict(strides=[2, 2], pads=[1, 1, 1, 1]), 4),
    "k3_s2_p1_outpad1": (dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), 3),
    "k5_s3_uneven_pads": (dict(strides=[3, 2], pads=[2, 0, 1, 3]), 5),
    "k2_s3_sparse": (dict(strides=[3, 3]), 2),
    "k3_s1": (dict(pads=[1, 1, 1, 1]), 3),
    "grouped": (dict(strides=[2, 2], group=2, pads=[1, 0, 0, 1]), 3),
    "dilated_s2_d2 (phases without taps)": (dict(strides=[2, 2], dilations=[2, 2]), 3),
    "dilated_s2_d3": (dict(strides=[2, 2], dilations=[3, 3], pads=[1, 2, 0, 1]), 3),
    "dilated_s3_d2_outpad": (dict(strides=[3, 2], dilations=[2, 3], output_padding=[1, 1]), 2),
    "dilated_s1_d2": (dict(dilations=[2, 2], pads=[2, 2, 2, 2]), 3),
    "output_shape": (dict(strides=[2, 2], output_shape=[9, 12]), 3),
    "auto_pad_same_upper": (dict(strides=[2, 2], auto_pad="SAME_UPPER"), 3),
    "auto_pad_same_lower": (dict(strides=[2, 2], auto_pad="SAME_LOWER"), 4),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", sorted(PHASED))
def test_other_transposed_convs_are_one_conv_over_phases_and_match_onnxruntime(case, bias):
    attrs, k = PHASED[case]
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 3 if "group" in attrs else 5, k, k)).astype(np.float32)  # [Cin, Cout / group, k, k]
    b = rng.standard_normal(6 if "group" in attrs else 5).astype(np.float32) if bias else None
    model = _model("ConvTranspose", (2, 6, 5, 7), w, b, **attrs)
    ops = _ops(model)
    assert "ConvTranspose" not in ops and "ConvNhwc" in ops, ops
    _check(model, (2, 6, 5, 7))


def test_transposed_convs_with_run_time_weights_are_left_alone_and_stay_right():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 5, 3, 3)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="conv", strides=[2, 2], dilations=[2, 2])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 5, 5]),
                                            helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert "ConvTranspose" in _ops(model)
    feeds = {"x": rng.standard_normal((1, 6, 5, 5)).astype(np.float32), "w": w}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(compiler.compile(model).run(feeds)["y"], want, rtol=1e-4, atol=1e-4)


CONV3D = {
    "plain": dict(),
    "padded_strided": dict(pads=[1, 1, 0, 1, 0, 1], strides=[2, 1, 2]),
    "depth_dilated": dict(dilations=[2, 1, 1], pads=[2, 1, 1, 2, 1, 1]),
    "grouped": dict(group=2, pads=[1, 1, 1, 1, 1, 1]),
}


@pytest.mark.parametrize("case", sorted(CONV3D))
def test_conv3d_is_a_sum_of_2d_convs_over_depth_taps_and_matches_onnxruntime(case):
    attrs = CONV3D[case]
    group = attrs.get("group", 1)
    rng = np.random.default_rng(4)
    w = rng.standard_normal((6, 4 // group, 3, 3, 3)).astype(np.float32)
    model = _model("Conv", (2, 4, 7, 9, 8), w, rng.standard_normal(6).astype(np.float32), **attrs)
    ops = _ops(model)
    assert "Conv" not in ops and ops.count("ConvNhwc") == 3, ops  # one per depth tap
    _check(model, (2, 4, 7, 9, 8))


def _video_model(batch: int):
    """Conv3d -> BN -> Relu -> strided Conv3d -> Relu: a video network's stem."""
    rng = np.random.default_rng(5)
    arrays = {"w1": rng.standard_normal((8, 3, 3, 3, 3)).astype(np.float32),
              "w2": rng.standard_normal((16, 8, 3, 3, 3)).astype(np.float32) * 0.2,
              "scale": rng.uniform(0.5, 1.5, 8).astype(np.float32), "shift": rng.standard_normal(8).astype(np.float32),
              "mean": rng.standard_normal(8).astype(np.float32), "var": rng.uniform(0.5, 2, 8).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 6, strides=[1, 2, 2]),
             helper.make_node("BatchNormalization", ["c1", "scale", "shift", "mean", "var"], ["b1"]),
             helper.make_node("Relu", ["b1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1] * 6, strides=[2, 2, 2]),
             helper.make_node("Relu", ["c2"], ["y"])]
    graph = helper.make_graph(nodes, "video", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 6, 20, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, k) for k, a in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("batch", [1, 2])
def test_a_video_stem_stays_channels_last_from_conv_to_conv(batch):
    """Each 3-D conv runs in NDHWC; the move back to NCDHW after the first sinks through the
    BN and Relu and cancels against the second's move to NDHWC: one Transpose in, one out."""
    model = _video_model(batch)
    ops = _ops(model)
    assert "Conv" not in ops and ops.count("ConvNhwc") == 6, ops
    assert ops.count("Transpose") == 2, ops
    _check(model, (batch, 3, 6, 20, 20))


def _audio_model(pool: str):
    """Conv1d -> Relu -> 1-D pool -> Conv1d -> Sigmoid: an audio network's stem."""
    rng = np.random.default_rng(6)
    arrays = {"w1": rng.standard_normal((8, 2, 9)).astype(np.float32),
              "w2": rng.standard_normal((16, 8, 3)).astype(np.float32) * 0.3,
              "b2": rng.standard_normal(16).astype(np.float32)}
    pool_attrs = dict(kernel_shape=[3], strides=[2], pads=[1, 1]) if pool == "MaxPool" else \
        dict(kernel_shape=[2], strides=[2], count_include_pad=1)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2], pads=[4, 4]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node(pool, ["r1"], ["p1"], **pool_attrs),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1]),
             helper.make_node("Sigmoid", ["c2"], ["y"])]
    graph = helper.make_graph(nodes, "audio", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 101])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, k) for k, a in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
def test_a_1d_stem_stays_channels_last_from_conv_to_conv(pool):
    """1-D pools take the 2-D form too, and the Relu moves before the view back to 1-D, so
    the views between the convs cancel: one Transpose in, one out, no 1-D kernel left."""
    model = _audio_model(pool)
    ops = _ops(model)
    assert ops.count("Transpose") == 2 and f"{pool}Nhwc" in ops and pool not in ops, ops
    _check(model, (1, 2, 101))
