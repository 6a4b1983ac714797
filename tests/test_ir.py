"""The IR core: builder, verifier, text form (print -> parse round trip), interpreter input checks."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.ir import (Graph, GraphBuilder, GraphError, InputError, Node, Value, dtypes, parse_graph,
                         print_graph, run_graph, tensor, verify_graph)
from compiler.ir.types import OptionalType, SequenceType, TensorType


def small_graph() -> Graph:
    b = GraphBuilder("small")
    x = b.input("x", tensor(["batch", 4], "f32"))
    w = b.const(np.arange(32, dtype=np.float32).reshape(8, 4)[:4], "w")
    bias = b.const(np.array([0.5, -1.0, 2.0, 0.0], np.float32), "bias")
    y = b.op("Add", x, w, name="add")
    z = b.op("Relu", b.op("Mul", y, bias, name="scale"), name="relu")
    b.output(z)
    return b.build()


def test_builder_infers_types_and_names():
    g = small_graph()
    assert [n.op for n in g.nodes] == ["Add", "Mul", "Relu"]
    assert g.outputs[0].type == tensor([4, 4], "f32")  # batch broadcast against static 4
    assert g.nodes[0].name == "add" and g.nodes[0].outputs[0].name == "add"


def test_text_round_trip_is_exact():
    g = small_graph()
    text = print_graph(g)
    assert "%w: f32[4,4] = const blob" not in text  # 16 elements print inline
    again = parse_graph(text)
    assert print_graph(again) == text


def test_large_constants_round_trip_as_blob_or_embedded():
    b = GraphBuilder()
    x = b.input("x", tensor([3, 100], "f32"))
    big = b.const(np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32), "big")
    b.output(b.op("Add", x, big))
    g = b.build()
    text = print_graph(g)
    assert "= const blob" in text
    with pytest.raises(GraphError, match="blob"):
        parse_graph(text)
    assert print_graph(parse_graph(text, blobs={"big": big.const})) == text
    embedded = print_graph(g, embed_constants=True)
    back = parse_graph(embedded)
    np.testing.assert_array_equal(back.constants[0].const, big.const)


def test_text_form_quotes_odd_names_and_keeps_attributes():
    x = Value("onnx::input/0", tensor(["N", 2], "f16"))
    y = Value("out:0", tensor(["N", 2], "f16"))
    g = Graph([x], [y], [Node("Relu", [x], [y], {}, "node with space")], [], "g")
    text = print_graph(g)
    assert '%"onnx::input/0"' in text and '@"node with space"' in text
    assert print_graph(parse_graph(text)) == text


def test_attribute_values_round_trip():
    from compiler.ir.parser import _Parser
    from compiler.ir.printer import attr_text

    values = [3, -2, 1.5, 1e-05, float("inf"), "text \"quoted\"", [1, 2, 3], [0.5, 2.0], ["a", "b"],
              dtypes.bfloat16, TensorType((2, "n"), dtypes.int8), SequenceType(tensor([2], "f32")),
              OptionalType(tensor([], "i64"))]
    for v in values:
        p = _Parser(attr_text(v, "", True), {})
        assert p.parse_attr({}) == v, attr_text(v, "", True)
    arr = np.arange(40, dtype=np.int64).reshape(5, 8)
    p = _Parser(attr_text(arr, "", True), {})
    np.testing.assert_array_equal(p.parse_attr({}), arr)


def test_verifier_rejects_use_before_definition():
    a = Value("a", tensor([2], "f32"))
    b_ = Value("b", tensor([2], "f32"))
    c = Value("c", tensor([2], "f32"))
    g = Graph([a], [c], [Node("Relu", [b_], [c], {}, "first"), Node("Relu", [a], [b_], {}, "second")])
    with pytest.raises(GraphError, match=r"node 'first' \(Relu\): input 0 %b is produced later"):
        verify_graph(g)


def test_verifier_rejects_undefined_value_and_double_definition():
    a = Value("a", tensor([2], "f32"))
    ghost = Value("ghost", tensor([2], "f32"))
    out = Value("out", tensor([2], "f32"))
    with pytest.raises(GraphError, match="%ghost is never defined"):
        verify_graph(Graph([a], [out], [Node("Add", [a, ghost], [out], {}, "add")]))
    with pytest.raises(GraphError, match="defined twice"):
        verify_graph(Graph([a], [a], [Node("Relu", [a], [a], {}, "self")]))


def test_verifier_checks_declared_types_against_inference():
    a = Value("a", tensor([2, 3], "f32"))
    wrong = Value("y", tensor([3, 2], "f32"))
    with pytest.raises(GraphError, match="declared f32\\[3,2\\] but the op infers f32\\[2,3\\]"):
        verify_graph(Graph([a], [wrong], [Node("Relu", [a], [wrong], {}, "r")]))


def test_verifier_rejects_unknown_op_and_attribute():
    a = Value("a", tensor([2], "f32"))
    y = Value("y", tensor([2], "f32"))
    with pytest.raises(GraphError, match="not registered"):
        verify_graph(Graph([a], [y], [Node("NoSuchOp", [a], [y], {}, "n")]))
    with pytest.raises(Exception, match="unknown attribute"):
        verify_graph(Graph([a], [y], [Node("Relu", [a], [y], {"alpha": 1.0}, "n")]))


def test_interpreter_runs_and_checks_inputs():
    g = small_graph()
    x = np.ones((4, 4), np.float32)
    out = run_graph(g, {"x": x}, check_types=True)["relu"]
    expected = np.maximum((x + g.constants[0].const) * g.constants[1].const, 0)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(InputError, match=r"unknown input\(s\) \['y'\]; missing input\(s\) \['x'\]"):
        run_graph(g, {"y": x})
    with pytest.raises(InputError, match="input 'x': expected element type float32, got float64"):
        run_graph(g, {"x": x.astype(np.float64)})
    with pytest.raises(InputError, match=r"input 'x': expected shape \[batch, 4\], got \[4, 5\]"):
        run_graph(g, {"x": np.ones((4, 5), np.float32)})


def test_symbolic_dims_bind_consistently():
    b = GraphBuilder()
    x = b.input("x", tensor(["n"], "f32"))
    y = b.input("y", tensor(["n"], "f32"))
    b.output(b.op("Add", x, y))
    g = b.build()
    run_graph(g, {"x": np.ones(3, np.float32), "y": np.ones(3, np.float32)})
    with pytest.raises(InputError, match="input 'y'"):
        run_graph(g, {"x": np.ones(3, np.float32), "y": np.ones(5, np.float32)})


def test_shape_arithmetic_keeps_symbols_through_reshape():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters write it, keeps `batch`."""
    b = GraphBuilder()
    x = b.input("x", tensor(["batch", "seq", 768], "f32"))
    s = b.op("Shape", x)
    dims = [b.op("Unsqueeze", b.op("Gather", s, b.const(np.array(i, np.int64))), b.const(np.array([0])))
            for i in (0, 1)]
    target = b.op("Concat", *dims, b.const(np.array([12, 64], np.int64)), axis=0)
    out = b.op("Reshape", x, target)
    b.output(out)
    g = b.build()
    assert out.type == tensor(["batch", "seq", 12, 64], "f32")
    assert run_graph(g, {"x": np.zeros((2, 5, 768), np.float32)}, check_types=True)["reshape"].shape == (2, 5, 12, 64)


def test_builder_folds_small_constant_subgraphs_but_not_without_constants():
    b = GraphBuilder()
    x = b.input("x", tensor([2, 3], "f32"))
    shape = b.op("Shape", x)  # static input: its shape is a constant
    assert shape.const is not None and shape.const.tolist() == [2, 3]
    summed = b.op("Add", b.const(np.array([1.0], np.float32)), b.const(np.array([2.0], np.float32)))
    assert summed.const.tolist() == [3.0]
    y = b.op("Relu", x)
    assert y.const is None
    b.output(b.op("Add", y, summed))
    g = b.build()
    assert [n.op for n in g.nodes] == ["Relu", "Add"]
    assert len(g.constants) == 1  # the folded operands are gone

    raw = GraphBuilder(fold_constants=False)
    x = raw.input("x", tensor([2, 3], "f32"))
    raw.output(raw.op("Shape", x))
    assert [n.op for n in raw.build().nodes] == ["Shape"]


def test_string_tensors_round_trip_inline():
    b = GraphBuilder()
    x = b.input("x", tensor([20], "str"))
    words = b.const(np.array([f"w{i}" for i in range(20)], dtype=object), "words")
    b.output(b.op("Equal", x, words))
    g = b.build()
    text = print_graph(g)
    assert '"w19"' in text and "blob" not in text
    again = parse_graph(text)
    assert list(again.constants[0].const) == list(words.const)


def test_torch_expand_pattern_keeps_symbols():
    """torch exports expand(shape) as Where(Equal(shape, -1), ones, shape): `batch` survives it."""
    b = GraphBuilder()
    ids = b.input("ids", tensor(["batch", 128], "i64"))
    shape = b.op("Reshape", b.op("Shape", ids), b.const(np.array([-1], np.int64)))
    minus_one = b.const(np.array([-1, -1], np.int64))
    ones = b.const(np.array([1, 1], np.int64))
    target = b.op("Where", b.op("Equal", shape, minus_one), ones, shape)
    out = b.op("Expand", b.const(np.zeros((1, 128), np.int64)), target)
    b.output(out)
    assert out.type == tensor(["batch", 128], "i64")
    assert run_graph(b.build(), {"ids": np.zeros((3, 128), np.int64)}, check_types=True)["expand"].shape == (3, 128)


def test_random_ops_are_never_folded():
    from compiler.ir.ops import REGISTRY

    random_ops = {"RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike", "Bernoulli", "Multinomial"}
    assert {name for name, op in REGISTRY.items() if not op.deterministic} == random_ops
    b = GraphBuilder()
    draw = b.op("RandomUniformLike", b.const(np.zeros(4, np.float32)))
    assert draw.const is None and [n.op for n in b.nodes] == ["RandomUniformLike"]
