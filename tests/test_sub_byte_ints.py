"""4 and 2-bit integers on the llvm target: a byte per element in memory, as ml_dtypes keeps
them (the value in the low bits, the rest zero). Cast to them truncates toward zero and wraps
to the width, as ml_dtypes does; from them it widens exactly; QuantizeLinear saturates to
their range."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import compiler

TYPES = {"INT4": ml_dtypes.int4, "UINT4": ml_dtypes.uint4, "INT2": ml_dtypes.int2, "UINT2": ml_dtypes.uint2}


def _model(nodes, inputs, outputs, opset=25):
    graph = helper.make_graph(nodes, "narrow", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("source", [np.float32, np.int32])
def test_cast_to_a_narrow_integer_wraps_like_ml_dtypes_and_widens_back_exactly(name, source):
    t = TYPES[name]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(203) * 12).astype(source)  # odd count: vector lanes and a scalar tail
    if source is np.float32:
        x[:6] = [2.5, -2.5, 7.9, -8.9, 0.0, -0.4]
    proto = getattr(TensorProto, name)
    src_proto = TensorProto.FLOAT if source is np.float32 else TensorProto.INT32
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=proto), helper.make_node("Cast", ["y"], ["z"], to=TensorProto.INT8)],
                   [helper.make_tensor_value_info("x", src_proto, [x.size])],
                   [helper.make_tensor_value_info("y", proto, [x.size]), helper.make_tensor_value_info("z", TensorProto.INT8, [x.size])])
    out = compiler.compile(model).run({"x": x})
    want = x.astype(t)
    assert out["y"].dtype == np.dtype(t)
    np.testing.assert_array_equal(out["y"].view(np.uint8), want.view(np.uint8))  # the same bytes, high bits zero
    np.testing.assert_array_equal(out["z"], want.astype(np.int8))


@pytest.mark.parametrize("name", TYPES)
def test_quantize_to_a_narrow_integer_saturates_like_the_onnx_reference(name):
    proto = getattr(TensorProto, name)
    x = np.linspace(-20, 20, 101, dtype=np.float32)
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [1.5])
    zero = helper.make_tensor("z", proto, [], [1])
    model = _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"]),
                    helper.make_node("DequantizeLinear", ["y", "s", "z"], ["w"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
                   [helper.make_tensor_value_info("y", proto, [x.size]), helper.make_tensor_value_info("w", TensorProto.FLOAT, [x.size])])
    model.graph.initializer.extend([scale, zero])
    got = compiler.compile(model).run({"x": x})
    want_y, want_w = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(got["y"].astype(np.int8), np.asarray(want_y).astype(np.int8))
    np.testing.assert_array_equal(got["w"], want_w)
