"""Invalid ONNX files are refused at import with our own message naming what is wrong
(`frontend/onnx_validate.py` and the importer's declared-type check), instead of being
compiled and run or failing inside numpy: the opset imports, duplicate names, initializer
dims and raw data sizes, tensors over the size limit, and graph outputs whose declared type
contradicts what the graph computes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.ir.errors import CompilerError

F = TensorProto.FLOAT


def _model(nodes=None, inputs=None, outputs=None, inits=(), opsets=(("", 17),)):
    nodes = nodes if nodes is not None else [helper.make_node("Add", ["x", "w"], ["y"], name="add")]
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", F, [2, 3])]
    outputs = outputs if outputs is not None else [helper.make_tensor_value_info("y", F, [2, 3])]
    inits = list(inits) or [numpy_helper.from_array(np.ones((2, 3), np.float32), "w")]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def _raw(name, dims, data: bytes, data_type=F):
    t = onnx.TensorProto(name=name, data_type=data_type, dims=dims)
    t.raw_data = data
    return t


CASES = {
    "no default opset": (lambda: _model(opsets=(("ai.onnx.ml", 3),)), "ai.onnx nodes but no opset import for the default ONNX domain"),
    "opset from the future": (lambda: _model(opsets=(("", 999),)), "opset 999; this build knows opsets up to"),
    "duplicate initializers": (lambda: _model(inits=[numpy_helper.from_array(np.ones((2, 3), np.float32), "w")] * 2),
                               "two initializers are named 'w'"),
    "duplicate inputs": (lambda: _model(inputs=[helper.make_tensor_value_info("x", F, [2, 3])] * 2),
                         "two graph inputs are named 'x'"),
    "negative dim": (lambda: _model(inits=[_raw("w", [2, -3], b"")]), "initializer 'w' has a negative dim"),
    "raw data too short": (lambda: _model(inits=[_raw("w", [2, 3], b"\0" * 20)]),
                           "initializer 'w' of shape \\[2, 3\\].*needs 24 bytes of raw data, the file holds 20"),
    "raw data too long": (lambda: _model(inits=[_raw("w", [2, 3], b"\0" * 28)]), "needs 24 bytes.*holds 28"),
    "huge initializer": (lambda: _model(inits=[_raw("w", [1000000, 1000000], b"")]),
                         "initializer 'w' of shape \\[1000000, 1000000\\] takes 4,000,000,000,000 bytes, over the limit"),
    "huge input": (lambda: _model(inputs=[helper.make_tensor_value_info("x", F, [1000000, 1000000])],
                                  outputs=[helper.make_tensor_value_info("y", F, [1000000, 1000000])]),
                   "input 'x' of shape \\[1000000, 1000000\\].*over the limit"),
    "declared type wrong": (lambda: _model(outputs=[helper.make_tensor_value_info("y", TensorProto.INT64, [2, 3])]),
                            "output 'y' is declared int64 but computes float32"),
    "declared shape wrong": (lambda: _model(outputs=[helper.make_tensor_value_info("y", F, [3, 2])]),
                             "output 'y' is declared with shape \\[3, 2\\] but computes"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_models_are_refused_by_name(case):
    make, message = CASES[case]
    with pytest.raises(CompilerError, match=message):
        compiler.compile(make(), target="reference", cache=False)


def test_the_size_limit_is_configurable(monkeypatch):
    monkeypatch.setenv("COMPILER_MAX_TENSOR_BYTES", "16")
    with pytest.raises(CompilerError, match="initializer 'w' of shape \\[2, 3\\] takes 24 bytes, over the limit of 16"):
        compiler.compile(_model(), target="reference", cache=False)


def test_valid_models_and_re_shaped_inputs_still_import():
    """Declared output shapes are not held against a model whose inputs the caller re-shaped."""
    m = _model(nodes=[helper.make_node("Relu", ["x"], ["y"])], inits=[numpy_helper.from_array(np.ones(1, np.float32), "w")])
    cm = compiler.compile(m, input_shapes={"x": [4, 3]}, cache=False)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(cm.run({"x": x})["y"], np.maximum(x, 0))


@pytest.mark.parametrize("target", ["reference", "llvm"])
def test_constant_outputs_keep_their_names(target):
    """A graph output that folds to a constant (Shape of a static input) or is an initializer
    comes back under its own name, not a suffixed one."""
    c = numpy_helper.from_array(np.arange(3, dtype=np.float32), "c")
    graph = helper.make_graph([helper.make_node("Shape", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", F, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, [2]),
                               helper.make_tensor_value_info("c", F, [3])], [c])
    cm = compiler.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), target=target,
                          cache=False)
    assert [s.name for s in cm.outputs] == ["y", "c"]
    out = cm.run({"x": np.zeros((2, 3), np.float32)})
    np.testing.assert_array_equal(out["y"], [2, 3])
    np.testing.assert_array_equal(out["c"], np.arange(3, dtype=np.float32))
