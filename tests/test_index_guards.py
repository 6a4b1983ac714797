"""Indices out of range that arrive at run time: a graph input used as indices (directly or
through reshapes and widening casts) is checked by run() before anything computes, on every
target, with a message naming the input, the node and the bad index; indices the graph
computes itself are clamped by the kernels, so native code never reads past a buffer."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.ir.errors import InputError

TARGETS = ["llvm", "reference", "cuda -arch=sm_80 -device=emulator"]


def _embedding(cast=False):
    """input_ids [2, 3] (int32 through a Cast, or int64) -> rows of a 10 x 4 table."""
    table = numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
    nodes = [helper.make_node("Gather", ["table", "ids64" if cast else "ids"], ["y"], name="embed", axis=0)]
    elem = TensorProto.INT32 if cast else TensorProto.INT64
    if cast:
        nodes.insert(0, helper.make_node("Cast", ["ids"], ["ids64"], to=TensorProto.INT64))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", elem, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])], [table])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("target", TARGETS, ids=["llvm", "reference", "cuda"])
@pytest.mark.parametrize("cast", [False, True], ids=["int64", "int32_cast"])
def test_token_ids_past_the_vocabulary_are_refused_by_name(target, cast):
    if target.startswith("cuda"):
        pytest.importorskip("cuda.bindings.nvrtc")
    cm = compiler.compile(_embedding(cast), target=target, cache=False)
    dt = np.int32 if cast else np.int64
    good = np.array([[0, 9, -1], [-10, 3, 4]], dt)
    np.testing.assert_array_equal(cm.run({"ids": good})["y"], np.arange(40, dtype=np.float32).reshape(10, 4)[good])
    for bad, value in ((10, 10), (-11, -11)):
        ids = good.copy()
        ids[1, 2] = bad
        with pytest.raises(InputError, match=f"input 'ids': index {value} is out of range for node 'embed' \\(Gather\\), "
                                             f"which indexes a dim of size 10 \\(valid: -10..9\\)"):
            cm.run({"ids": ids})


def test_guards_survive_save_and_load(tmp_path):
    path = tmp_path / "m.cmod"
    compiler.compile(_embedding(), cache=False).save(path)
    with pytest.raises(InputError, match="index 12 is out of range"):
        compiler.load(path).run({"ids": np.full((2, 3), 12, np.int64)})


def test_computed_indices_are_clamped_never_read_out_of_bounds():
    """ArgMax + 7 indexes past a 10-row table for most rows: the kernel clamps (reads row 9)
    rather than reading memory it does not own."""
    table = numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
    seven = numpy_helper.from_array(np.array(7, np.int64), "seven")
    nodes = [helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=0), helper.make_node("Add", ["i", "seven"], ["j"]),
             helper.make_node("Gather", ["table", "j"], ["y"], axis=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 4])], [table, seven])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.eye(5, 6, dtype=np.float32)
    y = compiler.compile(model, cache=False).run({"x": x})["y"]
    rows = np.minimum(np.argmax(x, 1) + 7, 9)
    np.testing.assert_array_equal(y, np.arange(40, dtype=np.float32).reshape(10, 4)[rows])


def _rotary(interleaved=0):
    """RotaryEmbedding of x [1, 2, 3, 8] (B, H, S, D) with position_ids [1, 3] a graph input
    into caches of 6 positions."""
    rng = np.random.default_rng(0)
    cos = numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "cos")
    sin = numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "sin")
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], name="rope", interleaved=interleaved)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 8]),
                                            helper.make_tensor_value_info("pos", TensorProto.INT64, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 8])], [cos, sin])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


@pytest.mark.parametrize("target", TARGETS, ids=["llvm", "reference", "cuda"])
@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_positions_past_the_caches_are_refused_by_name(target, interleaved):
    if target.startswith("cuda"):
        pytest.importorskip("cuda.bindings.nvrtc")
    model = _rotary(interleaved)
    cm = compiler.compile(model, target=target, cache=False)
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 8)).astype(np.float32)
    good = np.array([[0, 5, -1]], np.int64)  # negative positions count from the end, as numpy's do
    want = compiler.compile(model, target="reference").run({"x": x, "pos": good})["y"]
    np.testing.assert_allclose(cm.run({"x": x, "pos": good})["y"], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="input 'pos': index 6 is out of range for node 'rope' \\(RotaryEmbedding\\)"):
        cm.run({"x": x, "pos": np.array([[0, 6, 1]], np.int64)})
