"""Constant indices out of range are refused when the model is compiled, naming the node,
the bad index and the valid range (the kernels would otherwise read or write out of
bounds): Gather, GatherElements, GatherND, ScatterElements and ScatterND, negative
indices counting from the end as ONNX says."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.ir.errors import CompilerError

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(node, data_shape, out_shape, indices, updates_shape=None):
    inputs = [helper.make_tensor_value_info("x", F, data_shape)]
    inits = [numpy_helper.from_array(np.asarray(indices, np.int64), "i")]
    if updates_shape is not None:
        inputs.append(helper.make_tensor_value_info("u", F, updates_shape))
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", F, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


CASES = {
    "gather": (helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=1), [2, 5], [2, 2], [1, 5], None),
    "gather_negative": (helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=1), [2, 5], [2, 2], [-6, 0],
                        None),
    "gather_elements": (helper.make_node("GatherElements", ["x", "i"], ["y"], name="pick", axis=0), [2, 3], [1, 3],
                        [[0, 2, 1]], None),
    "gather_nd": (helper.make_node("GatherND", ["x", "i"], ["y"], name="pick"), [2, 3], [2], [[1, 2], [0, 3]], None),
    "scatter_elements": (helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], name="pick", axis=1), [2, 3],
                         [2, 3], [[0], [3]], [2, 1]),
    "scatter_nd": (helper.make_node("ScatterND", ["x", "i", "u"], ["y"], name="pick"), [2, 3], [2, 3], [[2]], [1, 3]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("target", ["llvm", "reference"])
def test_out_of_range_constant_indices_are_refused_by_name(case, target):
    node, data_shape, out_shape, indices, updates = CASES[case]
    with pytest.raises(CompilerError, match=r"pick.*indices.*out of range for a dim of size \d+ \(valid: -\d+\.\.\d+\)"):
        compiler.compile(_model(node, data_shape, out_shape, indices, updates), target=target, cache=False)


def test_in_range_constant_indices_still_compile_and_count_from_the_end():
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=1)
    cm = compiler.compile(_model(node, [2, 5], [2, 2], [-5, 4]), cache=False)
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_array_equal(cm.run({"x": x})["y"], x[:, [0, 4]])
