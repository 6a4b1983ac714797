"""The ONNX frontend: what it accepts (paths, bytes, protos, external data, shape overrides,
symbolic dims, subgraphs, function ops, every opset from 7), what it refuses and how it
says so, and the opset upgrades, each checked against onnxruntime or numpy on a small
hand-built model of the old opset.
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.frontend.onnx_import import import_onnx
from compiler.onnx_backend import backend_for
from compiler.ir import REGISTRY, run_graph
from compiler.ir.errors import GraphError, InputError, ModelLoadError, UnsupportedOpsError
from compiler.ir.types import TensorType

F = TensorProto.FLOAT
RNG = np.random.default_rng(0)


# ---- helpers -----------------------------------------------------------------------------

def model(nodes, inputs, outputs, opset=18, initializers=(), functions=(), ir_version=8, extra_opsets=()):
    """A one-graph model; `inputs`/`outputs` are (name, elem_type, shape) triples."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, v) for d, v in extra_opsets]]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version, functions=list(functions))


def ours(m, feeds, **import_kwargs):
    graph = import_onnx(m, **import_kwargs)
    out = run_graph(graph, feeds, check_types=True)
    return [out[o.name] for o in graph.outputs]


def onnxruntime(m, feeds):
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_matches_ort(m, feeds, rtol=1e-5, atol=1e-6):
    for got, want in zip(ours(m, feeds), onnxruntime(m, feeds)):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text, f"error message spans lines: {text!r}"
    return text


def randn(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def relu_model(opset=18):
    return model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", F, [2, 3])], [("y", F, [2, 3])], opset)


# ---- what the importer accepts -------------------------------------------------------------

def test_path_bytes_and_proto_import_the_same(tmp_path):
    m = relu_model()
    path = tmp_path / "relu.onnx"
    onnx.save(m, path)
    x = randn(2, 3)
    for source in (m, m.SerializeToString(), str(path), path):
        np.testing.assert_array_equal(ours(source, {"x": x})[0], np.maximum(x, 0))


def test_external_data_is_loaded_from_the_model_directory(tmp_path):
    w = randn(64, 64)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", F, [2, 64])], [("y", F, [2, 64])],
              initializers=[numpy_helper.from_array(w, "w")])
    path = tmp_path / "big.onnx"
    onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size >= w.nbytes
    x = randn(2, 64)
    np.testing.assert_allclose(ours(str(path), {"x": x})[0], x @ w, rtol=1e-5)


def test_missing_external_data_file_is_named(tmp_path):
    m = model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", F, [4])], [("y", F, [4])],
              initializers=[numpy_helper.from_array(randn(4), "w")])
    path = tmp_path / "m.onnx"
    onnx.save(m, path, save_as_external_data=True, location="w.bin", size_threshold=0)
    (tmp_path / "w.bin").unlink()
    with pytest.raises(ModelLoadError) as e:
        import_onnx(str(path))
    assert one_line(e) == f"{path}: external data file 'w.bin' of tensor 'w' is missing (looked in {tmp_path})"


def test_external_data_needs_the_models_path(tmp_path):
    m = model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", F, [4])], [("y", F, [4])],
              initializers=[numpy_helper.from_array(randn(4), "w")])
    path = tmp_path / "m.onnx"
    onnx.save(m, path, save_as_external_data=True, location="w.bin", size_threshold=0)
    unloaded = onnx.load(str(path), load_external_data=False)
    with pytest.raises(ModelLoadError) as e:
        import_onnx(unloaded.SerializeToString())
    assert "external files" in one_line(e)


def test_input_shape_override_with_ints_and_symbols():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, ["N", 3, "H", "W"])], [("y", F, None)])
    g = import_onnx(m, input_shapes={"x": [1, 3, 224, 224]})
    assert g.inputs[0].type.shape == (1, 3, 224, 224)
    assert g.outputs[0].type.shape == (1, 3, 224, 224)
    g = import_onnx(m, input_shapes={"x": ["batch", 3, 32, 32]})
    assert g.inputs[0].type.shape == ("batch", 3, 32, 32)


def test_input_shape_override_of_an_unknown_input_is_refused():
    with pytest.raises(ModelLoadError) as e:
        import_onnx(relu_model(), input_shapes={"image": [1, 3]})
    assert one_line(e) == "input_shapes names unknown input(s) ['image']; the model's inputs are ['x']"


def test_input_shape_override_with_a_bad_dim_is_refused():
    with pytest.raises(ModelLoadError) as e:
        import_onnx(relu_model(), input_shapes={"x": [2, -1]})
    assert one_line(e) == ("graph 'g' input 'x': shape override [2, -1] has dim -1; "
                           "expected a size >= 0 or a symbol name")


def test_numpy_ints_are_fine_in_a_shape_override():
    g = import_onnx(relu_model(), input_shapes={"x": np.array([2, 3])})
    assert g.inputs[0].type.shape == (2, 3)


def test_symbolic_dims_stay_symbolic():
    m = model([helper.make_node("Add", ["x", "x"], ["y"])], [("x", F, ["batch", 8])], [("y", F, ["batch", 8])])
    g = import_onnx(m)
    assert g.inputs[0].type.shape == ("batch", 8)
    assert g.outputs[0].type.shape == ("batch", 8)
    for n in (1, 5):
        assert ours(m, {"x": np.ones((n, 8), np.float32)})[0].shape == (n, 8)


def test_initializers_become_constants():
    w = randn(3)
    m = model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", F, [2, 3])], [("y", F, [2, 3])],
              initializers=[numpy_helper.from_array(w, "w")])
    g = import_onnx(m)
    assert [v.name for v in g.inputs] == ["x"]
    (const,) = [v for v in g.constants if v.name == "w"]
    np.testing.assert_array_equal(const.const, w)


def test_initializer_listed_as_input_stays_a_constant():
    """IR version 3 models list every initializer among the graph inputs too."""
    w = randn(3)
    m = model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", F, [3]), ("w", F, [3])], [("y", F, [3])],
              initializers=[numpy_helper.from_array(w, "w")], opset=8, ir_version=3)
    assert [v.name for v in import_onnx(m).inputs] == ["x"]


def test_subgraphs_read_outer_values():
    outer = randn(3)
    then_g = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", F, [3])])
    else_g = helper.make_graph([helper.make_node("Sub", ["x", "bias"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", F, [3])])
    m = model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
              [("c", TensorProto.BOOL, []), ("x", F, [3])], [("y", F, [3])],
              initializers=[numpy_helper.from_array(outer, "bias")])
    x = randn(3)
    np.testing.assert_allclose(ours(m, {"c": np.array(True), "x": x})[0], x + outer)
    np.testing.assert_allclose(ours(m, {"c": np.array(False), "x": x})[0], x - outer)


def test_loop_body_with_untyped_carried_values():
    """ONNX lets a Loop body leave its carried inputs untyped; they take the loop inputs' types."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "step"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.ValueInfoProto(name="acc_in")],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", F, [2])])
    m = model([helper.make_node("Loop", ["n", "", "acc0"], ["acc"], body=body)],
              [("n", TensorProto.INT64, []), ("acc0", F, [2]), ("step", F, [2])], [("acc", F, [2])])
    feeds = {"n": np.array(4, np.int64), "acc0": randn(2), "step": randn(2)}
    np.testing.assert_allclose(ours(m, feeds)[0], feeds["acc0"] + 4 * feeds["step"], rtol=1e-6)


def test_nodes_out_of_order_are_sorted():
    nodes = [helper.make_node("Relu", ["t"], ["y"]), helper.make_node("Neg", ["x"], ["t"])]
    m = model(nodes, [("x", F, [3])], [("y", F, [3])])
    x = randn(3)
    np.testing.assert_array_equal(ours(m, {"x": x})[0], np.maximum(-x, 0))


# ---- function ops --------------------------------------------------------------------------

def test_schema_function_op_is_expanded_when_not_registered(monkeypatch):
    """Selu has a function body in its schema: without a registry entry it becomes that body."""
    monkeypatch.delitem(REGISTRY, "Selu")
    m = model([helper.make_node("Selu", ["x"], ["y"], alpha=1.5)], [("x", F, [4, 5])], [("y", F, [4, 5])], opset=13)
    g = import_onnx(m)
    assert "Selu" not in g.op_counts()
    assert_matches_ort(m, {"x": randn(4, 5)})


def test_context_dependent_function_op_is_expanded(monkeypatch):
    """LayerNormalization's body depends on the input types (a context-dependent function)."""
    monkeypatch.delitem(REGISTRY, "LayerNormalization")
    m = model([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1, epsilon=1e-3)],
              [("x", F, [2, 3, 8]), ("s", F, [8]), ("b", F, [8])], [("y", F, [2, 3, 8])], opset=17)
    assert "LayerNormalization" not in import_onnx(m).op_counts()
    assert_matches_ort(m, {"x": randn(2, 3, 8), "s": randn(8), "b": randn(8)}, rtol=1e-4, atol=1e-5)


def test_model_local_function_is_expanded():
    fn = helper.make_function(
        "custom", "AddTwiceScaled", ["a", "b"], ["out"],
        [helper.make_node("Add", ["a", "b"], ["s"]),
         helper.make_node("Constant", [], ["k"], value_float=1.0),
         helper.make_node("Mul", ["s", "k"], ["scaled"]),
         helper.make_node("Add", ["scaled", "s"], ["out"])],
        opset_imports=[helper.make_opsetid("", 18)])
    m = model([helper.make_node("AddTwiceScaled", ["x", "y"], ["z"], domain="custom")],
              [("x", F, [3]), ("y", F, [3])], [("z", F, [3])], functions=[fn], extra_opsets=[("custom", 1)])
    x, y = randn(3), randn(3)
    np.testing.assert_allclose(ours(m, {"x": x, "y": y})[0], 2 * (x + y), rtol=1e-6)


def test_local_function_attributes_are_substituted():
    scale = helper.make_attribute_ref("alpha", onnx.AttributeProto.FLOAT)
    leaky = helper.make_node("LeakyRelu", ["a"], ["out"])
    leaky.attribute.append(scale)
    fn = helper.make_function("custom", "Leaky", ["a"], ["out"], [leaky],
                              opset_imports=[helper.make_opsetid("", 18)], attributes=["alpha"])
    m = model([helper.make_node("Leaky", ["x"], ["y"], domain="custom", alpha=0.25)],
              [("x", F, [4])], [("y", F, [4])], functions=[fn], extra_opsets=[("custom", 1)])
    x = np.array([-4.0, -1.0, 0.0, 2.0], np.float32)
    np.testing.assert_allclose(ours(m, {"x": x})[0], np.where(x < 0, 0.25 * x, x))


# ---- bad input: one line, saying what is wrong --------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError) as e:
        import_onnx(str(tmp_path / "nope.onnx"))
    assert re.fullmatch(r".*nope\.onnx: no such file", one_line(e))


def test_random_bytes_are_not_onnx(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError) as e:
        import_onnx(str(path))
    assert "noise.onnx: not" in one_line(e) and "ONNX model" in str(e.value)


def test_text_file_is_not_onnx(tmp_path):
    path = tmp_path / "readme.onnx"
    path.write_text("This is not a model, just some text.\n" * 10)
    with pytest.raises(ModelLoadError) as e:
        import_onnx(str(path))
    assert "readme.onnx: not" in one_line(e) and "ONNX model" in str(e.value)


def test_truncated_file(tmp_path):
    data = model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", F, [256])], [("y", F, [256])],
                 initializers=[numpy_helper.from_array(randn(256), "w")]).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ModelLoadError) as e:
        import_onnx(str(path))
    assert "cut.onnx" in one_line(e) and "truncated" in str(e.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError) as e:
        import_onnx(str(path))
    assert "empty.onnx: file is empty" in one_line(e)


def test_graph_with_a_cycle_names_its_nodes():
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Neg", ["a"], ["y"], name="out")]
    with pytest.raises(GraphError) as e:
        import_onnx(model(nodes, [("x", F, [2])], [("y", F, [2])]))
    assert "cycle" in one_line(e) and "'first'" in str(e.value) and "'second'" in str(e.value)


def test_value_produced_twice():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Neg", ["x"], ["y"], name="b")]
    with pytest.raises(GraphError) as e:
        import_onnx(model(nodes, [("x", F, [2])], [("y", F, [2])]))
    assert one_line(e) == "graph 'g': value 'y' is produced twice, by nodes 'a' and 'b'"


def test_node_reading_an_undefined_input():
    m = model([helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")], [("x", F, [2])], [("y", F, [2])])
    with pytest.raises(GraphError) as e:
        import_onnx(m)
    assert one_line(e) == ("node 'adder' (Add): input 'ghost' is not defined by any node, "
                           "initializer or graph input")


def test_unsupported_ops_are_all_listed_with_node_names():
    nodes = [helper.make_node("FancyOp", ["x"], ["a"], name="fancy1", domain="vendor"),
             helper.make_node("Relu", ["a"], ["b"], name="ok"),
             helper.make_node("OtherOp", ["b"], ["c"], name="other", domain="vendor"),
             helper.make_node("FancyOp", ["c"], ["y"], name="fancy2", domain="vendor")]
    m = model(nodes, [("x", F, [2])], [("y", F, [2])], extra_opsets=[("vendor", 3)])
    with pytest.raises(UnsupportedOpsError) as e:
        import_onnx(m)
    text = one_line(e)
    assert text.startswith("2 unsupported op(s): ")
    assert "vendor::FancyOp (opset 3) at nodes 'fancy1', 'fancy2'" in text
    assert "vendor::OtherOp (opset 3) at nodes 'other'" in text
    assert set(e.value.ops) == {("vendor", "FancyOp", 3), ("vendor", "OtherOp", 3)}


def test_unsupported_op_inside_a_subgraph_is_found_up_front():
    body = helper.make_graph([helper.make_node("Mystery", ["x"], ["t"], name="deep", domain="vendor")], "then", [],
                             [helper.make_tensor_value_info("t", F, [2])])
    m = model([helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)],
              [("c", TensorProto.BOOL, []), ("x", F, [2])], [("y", F, [2])], extra_opsets=[("vendor", 1)])
    with pytest.raises(UnsupportedOpsError) as e:
        import_onnx(m)
    assert "vendor::Mystery (opset 1) at nodes 'deep'" in one_line(e)


def test_opset_below_7_is_refused_when_its_ops_changed_since():
    with pytest.raises(ModelLoadError) as e:
        import_onnx(relu_model(opset=5))  # Relu-1 had consumed_inputs; Relu-6 is the one opset 7 knows
    assert one_line(e).startswith("model uses ai.onnx opset 5; the oldest supported is 7, and Relu changed since")


def test_opset_below_7_imports_when_its_ops_read_the_same_at_7():
    graph = import_onnx(relu_model(opset=6))  # Relu-6 is still Relu at opset 7
    assert [n.op for n in graph.nodes] == ["Relu"]


def test_not_a_model_object():
    with pytest.raises(ModelLoadError) as e:
        import_onnx(12345)
    assert one_line(e) == "expected a path, bytes or onnx.ModelProto, got int"


def test_run_time_input_names_are_checked():
    g = import_onnx(relu_model())
    with pytest.raises(InputError) as e:
        run_graph(g, {"X": np.zeros((2, 3), np.float32)})
    assert one_line(e) == "unknown input(s) ['X']; missing input(s) ['x']; the model takes ['x']"


def test_run_time_input_shapes_are_checked():
    g = import_onnx(relu_model())
    with pytest.raises(InputError) as e:
        run_graph(g, {"x": np.zeros((3, 2), np.float32)})
    assert one_line(e) == "input 'x': expected shape [2, 3], got [3, 2]"


def test_run_time_input_dtypes_are_checked():
    g = import_onnx(relu_model())
    with pytest.raises(InputError) as e:
        run_graph(g, {"x": np.zeros((2, 3), np.float64)})
    assert one_line(e) == "input 'x': expected element type float32, got float64"


def test_run_time_symbolic_dims_must_agree():
    m = model([helper.make_node("Add", ["a", "b"], ["y"])], [("a", F, ["n"]), ("b", F, ["n"])], [("y", F, ["n"])])
    with pytest.raises(InputError) as e:
        run_graph(import_onnx(m), {"a": np.zeros(3, np.float32), "b": np.zeros(4, np.float32)})
    assert one_line(e) == "input 'b': expected shape [n], got [4]"


# ---- opset upgrades, each against onnxruntime (or numpy where ORT lacks the old op) --------

def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


def test_slice_9_attributes():
    m = model([node("Slice", ["x"], starts=[1, 0], ends=[3, -1], axes=[0, 2])], [("x", F, [4, 3, 5])],
              [("y", F, None)], opset=9)
    assert_matches_ort(m, {"x": randn(4, 3, 5)})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_10_attributes(mode):
    attrs = {"value": 1.5} if mode == "constant" else {}
    m = model([node("Pad", ["x"], pads=[0, 1, 2, 0, 2, 1], mode=mode, **attrs)], [("x", F, [2, 3, 4])],
              [("y", F, None)], opset=10)
    assert_matches_ort(m, {"x": randn(2, 3, 4)})


@pytest.mark.parametrize("bounds", [{"min": -0.5, "max": 0.5}, {"min": 0.0}, {}])
def test_clip_10_attributes(bounds):
    m = model([node("Clip", ["x"], **bounds)], [("x", F, [3, 4])], [("y", F, None)], opset=10)
    assert_matches_ort(m, {"x": randn(3, 4)})


def test_topk_9_k_attribute():
    m = model([node("TopK", ["x"], ["v", "i"], k=2, axis=1)], [("x", F, [3, 5])],
              [("v", F, None), ("i", TensorProto.INT64, None)], opset=9)
    assert_matches_ort(m, {"x": randn(3, 5)})


@pytest.mark.parametrize("opset,attrs", [(12, {"split": [1, 3]}), (12, {}), (13, {}), (11, {"axis": -1})])
def test_split_before_18(opset, attrs):
    m = model([node("Split", ["x"], ["a", "b"], **attrs)], [("x", F, [4, 4])], [("a", F, None), ("b", F, None)],
              opset=opset)
    assert_matches_ort(m, {"x": randn(4, 4)})


@pytest.mark.parametrize("op,attrs,shape", [("Squeeze", {"axes": [0, 2]}, [1, 3, 1, 2]), ("Squeeze", {}, [1, 3, 1]),
                                             ("Unsqueeze", {"axes": [0, 3]}, [2, 3])])
def test_squeeze_unsqueeze_11_axes(op, attrs, shape):
    m = model([node(op, ["x"], **attrs)], [("x", F, shape)], [("y", F, None)], opset=11)
    assert_matches_ort(m, {"x": randn(*shape)})


@pytest.mark.parametrize("op,opset", [("ReduceSum", 12), ("ReduceMean", 13), ("ReduceMax", 17), ("ReduceL2", 11),
                                      ("ReduceLogSumExp", 13), ("ReduceSumSquare", 9)])
@pytest.mark.parametrize("attrs", [{"axes": [1], "keepdims": 0}, {"axes": [-1, 0]}, {}])
def test_reductions_with_axes_attribute(op, opset, attrs):
    m = model([node(op, ["x"], **attrs)], [("x", F, [3, 4, 2])], [("y", F, None)], opset=opset)
    assert_matches_ort(m, {"x": randn(3, 4, 2)}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1])
def test_softmax_family_before_13_coerces_to_2d(op, axis):
    attrs = {} if axis is None else {"axis": axis}
    m = model([node(op, ["x"], **attrs)], [("x", F, [2, 3, 4])], [("y", F, None)], opset=11)
    assert_matches_ort(m, {"x": randn(2, 3, 4)}, atol=1e-6)


def test_softmax_before_13_on_unknown_rank_input():
    m = model([node("Softmax", ["x"], axis=1)], [("x", F, None)], [("y", F, None)], opset=9)
    assert_matches_ort(m, {"x": randn(2, 3, 4)}, atol=1e-6)


@pytest.mark.parametrize("opset", [7, 10, 11])
def test_dropout_before_12_is_identity_with_mask(opset):
    m = model([node("Dropout", ["x"], ["y", "mask"], ratio=0.3)], [("x", F, [3, 4])], [("y", F, None)], opset=opset)
    m.graph.output.append(helper.make_tensor_value_info("mask", TensorProto.BOOL if opset >= 10 else F, None))
    x = randn(3, 4)
    y, mask = ours(m, {"x": x})
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == (np.bool_ if opset >= 10 else np.float32) and np.all(mask)


def test_batchnorm_7_spatial_default():
    c = 3
    params = [numpy_helper.from_array(a, n) for a, n in
              [(randn(c), "s"), (randn(c), "b"), (randn(c), "m"), (np.abs(randn(c)) + 0.5, "v")]]
    m = model([node("BatchNormalization", ["x", "s", "b", "m", "v"], spatial=1, epsilon=1e-3)],
              [("x", F, [2, c, 4, 4])], [("y", F, None)], opset=7, initializers=params)
    assert_matches_ort(m, {"x": randn(2, c, 4, 4)}, atol=1e-5)


def test_batchnorm_7_spatial_0_normalises_per_element():
    shape = (3, 2, 2)
    s, b, mean, var = randn(*shape), randn(*shape), randn(*shape), np.abs(randn(*shape)) + 0.5
    params = [numpy_helper.from_array(a, n) for a, n in [(s, "s"), (b, "b"), (mean, "m"), (var, "v")]]
    m = model([node("BatchNormalization", ["x", "s", "b", "m", "v"], spatial=0, epsilon=1e-3)],
              [("x", F, [2, *shape])], [("y", F, None)], opset=7, initializers=params)
    x = randn(2, *shape)
    np.testing.assert_allclose(ours(m, {"x": x})[0], (x - mean) / np.sqrt(var + 1e-3) * s + b, rtol=1e-5, atol=1e-5)


def test_group_normalization_18_per_group_scale():
    groups, c = 2, 4
    scale, bias = randn(groups), randn(groups)
    m = model([node("GroupNormalization", ["x", "s", "b"], num_groups=groups, epsilon=1e-5)],
              [("x", F, [2, c, 3]), ("s", F, [groups]), ("b", F, [groups])], [("y", F, None)], opset=18)
    x = randn(2, c, 3)
    g = x.reshape(2, groups, -1)
    normed = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    want = normed * np.repeat(scale, c // groups)[:, None] + np.repeat(bias, c // groups)[:, None]
    np.testing.assert_allclose(ours(m, {"x": x, "s": scale, "b": bias})[0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
def test_grid_sample_16_mode_names(mode):
    m = model([node("GridSample", ["x", "grid"], mode=mode, align_corners=0)],
              [("x", F, [1, 2, 4, 5]), ("grid", F, [1, 3, 3, 2])], [("y", F, None)], opset=16)
    feeds = {"x": randn(1, 2, 4, 5), "grid": RNG.uniform(-1, 1, (1, 3, 3, 2)).astype(np.float32)}
    assert_matches_ort(m, feeds, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [{}, {"axis": 2}, {"axis": 1, "onesided": 1}])
def test_dft_17_axis_attribute(attrs):
    m = model([node("DFT", ["x"], **attrs)], [("x", F, [2, 6, 5, 1])], [("y", F, None)], opset=17)
    assert_matches_ort(m, {"x": randn(2, 6, 5, 1)}, rtol=1e-4, atol=1e-4)


def test_roi_align_10_has_no_half_pixel_shift():
    m = model([node("RoiAlign", ["x", "rois", "idx"], output_height=2, output_width=2, sampling_ratio=2,
                    spatial_scale=0.5)],
              [("x", F, [1, 2, 8, 8]), ("rois", F, [2, 4]), ("idx", TensorProto.INT64, [2])], [("y", F, None)],
              opset=10)
    feeds = {"x": randn(1, 2, 8, 8), "rois": np.array([[0, 0, 9, 9], [2, 3, 12, 14]], np.float32),
             "idx": np.zeros(2, np.int64)}
    assert_matches_ort(m, feeds, rtol=1e-4, atol=1e-5)


def test_scatter_9_is_scatter_elements():
    m = model([node("Scatter", ["x", "i", "u"], axis=1)],
              [("x", F, [3, 4]), ("i", TensorProto.INT64, [3, 2]), ("u", F, [3, 2])], [("y", F, None)], opset=9)
    feeds = {"x": randn(3, 4), "i": np.array([[0, 3], [1, 2], [3, 0]], np.int64), "u": randn(3, 2)}
    assert_matches_ort(m, feeds)


@pytest.mark.parametrize("mode,scales", [("nearest", [1, 1, 2, 3]), ("linear", [1, 1, 2, 2]),
                                         ("nearest", [1, 1, 0.5, 0.5])])
def test_resize_10_scales(mode, scales):
    m = model([node("Resize", ["x", "scales"], mode=mode)], [("x", F, [1, 2, 4, 6])], [("y", F, None)], opset=10,
              initializers=[numpy_helper.from_array(np.array(scales, np.float32), "scales")])
    assert_matches_ort(m, {"x": randn(1, 2, 4, 6)}, rtol=1e-5, atol=1e-5)


def test_resize_11_empty_roi_and_scales_with_sizes():
    inits = [numpy_helper.from_array(np.array([], np.float32), "roi"),
             numpy_helper.from_array(np.array([], np.float32), "scales"),
             numpy_helper.from_array(np.array([1, 2, 7, 9], np.int64), "sizes")]
    m = model([node("Resize", ["x", "roi", "scales", "sizes"], mode="linear")], [("x", F, [1, 2, 4, 6])],
              [("y", F, None)], opset=11, initializers=inits)
    assert_matches_ort(m, {"x": randn(1, 2, 4, 6)}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_7_scales_attribute(mode):
    m = model([node("Upsample", ["x"], mode=mode, scales=[1.0, 1.0, 2.0, 3.0])], [("x", F, [1, 1, 3, 2])],
              [("y", F, None)], opset=7)
    assert_matches_ort(m, {"x": randn(1, 1, 3, 2)}, rtol=1e-5, atol=1e-5)


def test_upsample_9_scales_input():
    m = model([node("Upsample", ["x", "scales"], mode="nearest")], [("x", F, [1, 2, 2, 3])], [("y", F, None)],
              opset=9, initializers=[numpy_helper.from_array(np.array([1, 1, 3, 2], np.float32), "scales")])
    assert_matches_ort(m, {"x": randn(1, 2, 2, 3)})


def test_scan_8_with_batch_axis():
    body = helper.make_graph(
        [node("Add", ["acc_in", "x_t"], ["acc_out"]), node("Mul", ["acc_out", "x_t"], ["y_t"])], "body",
        [helper.make_tensor_value_info("acc_in", F, [2]), helper.make_tensor_value_info("x_t", F, [2])],
        [helper.make_tensor_value_info("acc_out", F, [2]), helper.make_tensor_value_info("y_t", F, [2])])
    m = model([node("Scan", ["", "acc0", "xs"], ["acc", "ys"], num_scan_inputs=1, body=body)],
              [("acc0", F, [3, 2]), ("xs", F, [3, 5, 2])], [("acc", F, [3, 2]), ("ys", F, [3, 5, 2])], opset=8)
    assert_matches_ort(m, {"acc0": randn(3, 2), "xs": randn(3, 5, 2)}, rtol=1e-5, atol=1e-5)


def test_scan_8_reverse_direction():
    body = helper.make_graph(
        [node("Add", ["acc_in", "x_t"], ["acc_out"]), node("Identity", ["acc_out"], ["y_t"])], "body",
        [helper.make_tensor_value_info("acc_in", F, [1]), helper.make_tensor_value_info("x_t", F, [1])],
        [helper.make_tensor_value_info("acc_out", F, [1]), helper.make_tensor_value_info("y_t", F, [1])])
    m = model([node("Scan", ["", "acc0", "xs"], ["acc", "ys"], num_scan_inputs=1, directions=[1], body=body)],
              [("acc0", F, [2, 1]), ("xs", F, [2, 4, 1])], [("acc", F, None), ("ys", F, None)], opset=8)
    assert_matches_ort(m, {"acc0": randn(2, 1), "xs": randn(2, 4, 1)}, rtol=1e-5, atol=1e-5)


def test_image_scaler_and_affine_experimental_ops():
    bias = [0.5, -1.0, 2.0]
    m = model([node("ImageScaler", ["x"], ["s"], scale=2.0, bias=bias), node("Affine", ["s"], alpha=3.0, beta=-1.0)],
              [("x", F, [1, 3, 2, 2])], [("y", F, None)], opset=8)
    x = randn(1, 3, 2, 2)
    want = 3.0 * (2.0 * x + np.array(bias, np.float32).reshape(1, 3, 1, 1)) - 1.0
    np.testing.assert_allclose(ours(m, {"x": x})[0], want, rtol=1e-6)


def test_scaled_tanh_parametric_softplus_and_dynamic_slice_experimental_ops():
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for v, n in [([1], "st"), ([3], "en"), ([1], "ax")]]
    m = model([node("ScaledTanh", ["x"], ["t"], alpha=2.0, beta=0.5),
               node("ParametricSoftplus", ["t"], ["p"], alpha=1.5, beta=2.0),
               node("DynamicSlice", ["p", "st", "en", "ax"])],
              [("x", F, [2, 4])], [("y", F, None)], opset=9, initializers=inits)
    x = randn(2, 4)
    t = 2.0 * np.tanh(0.5 * x)
    want = (1.5 * np.log1p(np.exp(2.0 * t)))[:, 1:3]
    np.testing.assert_allclose(ours(m, {"x": x})[0], want, rtol=1e-5)


def test_range_11_in_float16_accumulates_in_its_own_type():
    m = model([node("Range", ["a", "b", "d"])], [("a", TensorProto.FLOAT16, []), ("b", TensorProto.FLOAT16, []),
                                                 ("d", TensorProto.FLOAT16, [])], [("y", TensorProto.FLOAT16, None)],
              opset=11)
    feeds = {"a": np.float16(0), "b": np.float16(3), "d": np.float16(0.1)}
    feeds = {k: np.asarray(v) for k, v in feeds.items()}
    y = ours(m, feeds)[0]
    assert y.dtype == np.float16 and y.shape == (30,)


@pytest.mark.parametrize("opset", [7, 9, 11, 13, 15, 17, 19, 21])
def test_small_cnn_imports_at_every_opset(opset):
    """Conv -> BatchNorm -> Relu -> MaxPool -> Flatten -> Gemm -> Softmax, as an exporter of that opset writes it."""
    w, bw = randn(4, 3, 3, 3) * 0.3, randn(4)
    bn = [randn(4), randn(4), randn(4), np.abs(randn(4)) + 0.5]
    fc, fb = randn(10, 64) * 0.1, randn(10)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w, "w"), (bw, "bw"), (bn[0], "s"), (bn[1], "b"), (bn[2], "m"), (bn[3], "v"), (fc, "fc"), (fb, "fb")]]
    nodes = [node("Conv", ["x", "w", "bw"], ["c"], pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
             node("Relu", ["n"], ["r"]),
             node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Flatten", ["p"], ["f"]),
             node("Gemm", ["f", "fc", "fb"], ["g"], transB=1),
             node("Softmax", ["g"], ["y"], axis=1)]
    m = model(nodes, [("x", F, [2, 3, 8, 8])], [("y", F, None)], opset=opset, initializers=inits)
    assert_matches_ort(m, {"x": randn(2, 3, 8, 8)}, rtol=1e-4, atol=1e-5)


def test_import_types_outputs():
    g = import_onnx(relu_model())
    assert g.outputs[0].type == TensorType((2, 3), g.inputs[0].type.dtype)
    assert g.outputs[0].name == "y"


def test_backend_run_node_wraps_one_node_in_a_model():
    backend = backend_for("reference")
    softmax = helper.make_node("Softmax", ["a"], ["c"], axis=0)
    (out,) = backend.run_node(softmax, [np.zeros((2, 2), np.float32)], opset_version=11)
    np.testing.assert_allclose(out, np.full((2, 2), 0.25, np.float32))  # opset 11: softmax over the 2-D view


def test_if_with_a_condition_known_at_import_becomes_its_taken_branch():
    """Exporters branch on shapes; a constant condition inlines the taken branch, and the
    other branch (which need not type-check for this model) is never imported."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, None)
    else_out = helper.make_tensor_value_info("e", TensorProto.FLOAT, None)
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [then_out])
    # Splitting a dim of 3 in two equal parts cannot type-check: importing it would fail.
    else_g = helper.make_graph([helper.make_node("Split", ["x"], ["e", "e2"], axis=1, num_outputs=2)],
                               "else", [], [else_out])
    nodes = [
        helper.make_node("Size", ["x"], ["n"]),
        helper.make_node("Constant", [], ["six"], value=helper.make_tensor("six", TensorProto.INT64, [], [6])),
        helper.make_node("Equal", ["n", "six"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    graph = import_onnx(model)
    assert "If" not in [n.op for n in graph.nodes] and "Split" not in [n.op for n in graph.nodes]
    data = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.testing.assert_array_equal(run_graph(graph, {"x": data})["y"], np.maximum(data, 0))


@pytest.mark.parametrize("target", ["reference", "llvm"])
def test_an_output_that_is_an_input_keeps_its_name(target, tmp_path):
    """ONNX lets a graph output be one of its inputs, under the same name; the IR gives each
    value one name, so the graph keeps the callers' names apart (`Graph.output_names`):
    run(), the interpreter and a saved and reloaded artifact all answer under 'x'."""
    import compiler

    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], [("x", F, [2]), ("y", F, [2])])
    x = np.array([-1, 2], np.float32)
    graph = import_onnx(m)
    assert graph.output_name_list() == ["x", "y"] and graph.outputs[0].name != "x"
    assert sorted(run_graph(graph, {"x": x})) == ["x", "y"]
    cm = compiler.compile(m, target=target)
    for runner in (cm, (cm.save(str(tmp_path / "m.cmod")), compiler.load(str(tmp_path / "m.cmod")))[1]):
        out = runner.run({"x": x})
        assert sorted(out) == ["x", "y"]
        np.testing.assert_array_equal(out["x"], x)
        np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
        assert [s.name for s in runner.outputs] == ["x", "y"]
