"""Control flow, sequences, optionals, strings, ONNX-ML, random, training and ImageDecoder ops:
inference (fresh symbols where branches or iterations disagree), references against plain
numpy or onnxruntime as the oracle, and the errors invalid nodes raise."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

from compiler.frontend.onnx_import import import_onnx
from compiler.ir import dtypes
from compiler.ir.builder import GraphBuilder
from compiler.ir.errors import CompilerError, ShapeInferenceError
from compiler.ir.interpreter import Interpreter, run_graph
from compiler.ir.ops.control import body_input_types
from compiler.ir.types import OptionalType, SequenceType, TensorType

F32, I64, BOOL, STR = dtypes.float32, dtypes.int64, dtypes.bool_, dtypes.string


# ---- helpers ---------------------------------------------------------------------------

def _const_body(name: str, *arrays) -> "GraphBuilder":
    """A body with no inputs returning constants (through Identity, so each output is a node's)."""
    b = GraphBuilder(name)
    b.output(*[b.op("Identity", b.const(np.asarray(a))) for a in arrays])
    return b.build(verify=False)


def _run_node(op, arrays, attrs=None, num_outputs=None, types=None):
    """One node on graph inputs, run with run-time type checks; returns (outputs, output types)."""
    b = GraphBuilder()
    inputs = []
    for i, a in enumerate(arrays):
        if a is None:
            inputs.append(None)
            continue
        t = types[i] if types and types[i] is not None else TensorType(np.shape(a), dtypes.from_numpy(np.asarray(a).dtype))
        inputs.append(b.input(f"x{i}", t))
    outs = b.node(op, inputs, attrs or {}, num_outputs=num_outputs)
    b.output(*outs)
    result = run_graph(b.build(), {f"x{i}": a for i, a in enumerate(arrays) if a is not None}, check_types=True)
    return [result[v.name] for v in outs], [v.type for v in outs]


def _onnx_model(nodes, inputs, outputs, opsets=(("", 21),), initializers=()):
    graph = oh.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 10
    return model


def _ours(model, feeds):
    graph = import_onnx(model)
    out = Interpreter(check_types=True).run(graph, feeds)
    return [out[v.name] for v in graph.outputs]


def _ort(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _assert_matches_ort(model, feeds, rtol=1e-6):
    for ours, theirs in zip(_ours(model, feeds), _ort(model, feeds), strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-6)


def _vi(name, elem, shape):
    return oh.make_tensor_value_info(name, elem, shape)


# ---- If --------------------------------------------------------------------------------

def test_if_joins_branch_shapes_with_a_fresh_symbol():
    b = GraphBuilder()
    cond = b.input("cond", TensorType((), BOOL))
    then_b = _const_body("then", np.ones((2, 3), np.float32))
    else_b = _const_body("else", np.zeros((4, 3), np.float32))
    (out,) = b.node("If", [cond], {"then_branch": then_b, "else_branch": else_b})
    assert isinstance(out.type.shape[0], str) and out.type.shape[1] == 3
    b.output(out)
    g = b.build()
    for flag, rows in ((True, 2), (False, 4)):
        result = run_graph(g, {"cond": np.array(flag)}, check_types=True)
        assert result[out.name].shape == (rows, 3)


def test_if_with_a_constant_condition_takes_the_branch_types():
    b = GraphBuilder()
    attrs = {"then_branch": _const_body("t", np.ones(2, np.float32)), "else_branch": _const_body("e", np.ones(5, np.float32))}
    (out,) = b.node("If", [b.const(np.array(False))], attrs)
    assert out.type == TensorType((5,), F32)


def test_if_rejects_branches_of_different_element_types():
    b = GraphBuilder()
    cond = b.input("cond", TensorType((), BOOL))
    attrs = {"then_branch": _const_body("t", np.ones(2, np.float32)), "else_branch": _const_body("e", np.ones(2, np.int64))}
    with pytest.raises(ShapeInferenceError, match="element types"):
        b.node("If", [cond], attrs)


def test_if_branches_read_outer_values():
    b = GraphBuilder()
    cond, x = b.input("cond", TensorType((), BOOL)), b.input("x", TensorType((3,), F32))
    then_b = GraphBuilder("then")
    then_b.output(then_b.op("Relu", x))
    else_b = GraphBuilder("else")
    else_b.output(else_b.op("Neg", x))
    (out,) = b.node("If", [cond], {"then_branch": then_b.build(verify=False), "else_branch": else_b.build(verify=False)})
    b.output(out)
    g = b.build()
    x_val = np.array([-1, 0, 2], np.float32)
    np.testing.assert_array_equal(run_graph(g, {"cond": np.array(False), "x": x_val})[out.name], -x_val)


# ---- Loop ------------------------------------------------------------------------------

def _counting_body():
    """Body (i, cond, acc) -> (cond, acc + i, acc * 2): a loop-carried sum and a scan of doubles."""
    b = GraphBuilder("body")
    i = b.input("i", TensorType((), I64))
    cond = b.input("cond_in", TensorType((), BOOL))
    acc = b.input("acc", TensorType((2,), I64))
    b.output(b.op("Identity", cond), b.op("Add", acc, i), b.op("Mul", acc, b.const(np.array(2, np.int64))))
    return b.build(verify=False)


def test_loop_with_constant_trip_count_has_a_static_scan_length():
    b = GraphBuilder()
    acc = b.input("acc", TensorType((2,), I64))
    final, scanned = b.node("Loop", [b.const(np.array(4, np.int64)), None, acc], {"body": _counting_body()},
                            num_outputs=2)
    assert final.type == TensorType((2,), I64) and scanned.type == TensorType((4, 2), I64)
    b.output(final, scanned)
    out = run_graph(b.build(), {"acc": np.array([1, 10])}, check_types=True)
    np.testing.assert_array_equal(out[final.name], [1 + 0 + 1 + 2 + 3, 10 + 6])
    np.testing.assert_array_equal(out[scanned.name][:, 0], [2, 2, 4, 8])  # 2 * (1, 1, 2, 4)


def test_loop_with_zero_trips_returns_initial_values_and_empty_scans():
    b = GraphBuilder()
    m = b.input("m", TensorType((), I64))
    acc = b.input("acc", TensorType((2,), I64))
    final, scanned = b.node("Loop", [m, None, acc], {"body": _counting_body()}, num_outputs=2)
    assert isinstance(scanned.type.shape[0], str)
    b.output(final, scanned)
    out = run_graph(b.build(), {"m": np.array(0), "acc": np.array([1, 2])}, check_types=True)
    np.testing.assert_array_equal(out[final.name], [1, 2])
    assert out[scanned.name].shape == (0, 2) and out[scanned.name].dtype == np.int64


def test_loop_while_condition_matches_onnxruntime():
    # while (min(x) < 50 and i < M) x = x * 3, scanning x before each step.
    body = oh.make_graph(
        [oh.make_node("Mul", ["x_in", "three"], ["x_out"]),
         oh.make_node("ReduceMin", ["x_out"], ["x_min"], keepdims=0),
         oh.make_node("Less", ["x_min", "limit"], ["cond_out"]),
         oh.make_node("Identity", ["x_in"], ["seen"])],
        "body",
        [_vi("i", TP.INT64, []), _vi("cond_in", TP.BOOL, []), _vi("x_in", TP.FLOAT, [2])],
        [_vi("cond_out", TP.BOOL, []), _vi("x_out", TP.FLOAT, [2]), _vi("seen", TP.FLOAT, [2])],
        initializer=[oh.make_tensor("three", TP.FLOAT, [], [3.0]), oh.make_tensor("limit", TP.FLOAT, [], [50.0])])
    model = _onnx_model([oh.make_node("Loop", ["M", "cond", "x"], ["final", "trace"], body=body)],
                        [_vi("M", TP.INT64, []), _vi("cond", TP.BOOL, []), _vi("x", TP.FLOAT, [2])],
                        [_vi("final", TP.FLOAT, [2]), _vi("trace", TP.FLOAT, None)])
    for trips in (10, 2):
        feeds = {"M": np.array(trips, np.int64), "cond": np.array(True), "x": np.array([1.0, 2.0], np.float32)}
        _assert_matches_ort(model, feeds)


def test_loop_without_trip_count_or_condition_is_rejected():
    b = GraphBuilder()
    acc = b.input("acc", TensorType((2,), I64))
    with pytest.raises(ShapeInferenceError, match="never end"):
        b.node("Loop", [None, None, acc], {"body": _counting_body()}, num_outputs=2)


# ---- Scan ------------------------------------------------------------------------------

@pytest.mark.parametrize("in_axis, in_dir, out_axis, out_dir", [(0, 0, 0, 0), (1, 1, 1, 0), (-1, 0, -1, 1), (1, 1, 0, 1)])
def test_scan_axes_and_directions_match_onnxruntime(in_axis, in_dir, out_axis, out_dir):
    body = oh.make_graph(
        [oh.make_node("Add", ["s_in", "x_t"], ["s_out"]), oh.make_node("Mul", ["s_out", "x_t"], ["y_t"])],
        "body", [_vi("s_in", TP.FLOAT, [3]), _vi("x_t", TP.FLOAT, [3])],
        [_vi("s_out", TP.FLOAT, [3]), _vi("y_t", TP.FLOAT, [3])])
    x_shape = [4, 3] if in_axis == 0 else [3, 4]
    node = oh.make_node("Scan", ["s", "x"], ["s_final", "ys"], body=body, num_scan_inputs=1,
                        scan_input_axes=[in_axis], scan_input_directions=[in_dir],
                        scan_output_axes=[out_axis], scan_output_directions=[out_dir])
    model = _onnx_model([node], [_vi("s", TP.FLOAT, [3]), _vi("x", TP.FLOAT, x_shape)],
                        [_vi("s_final", TP.FLOAT, [3]), _vi("ys", TP.FLOAT, None)])
    x = np.arange(12, dtype=np.float32).reshape(x_shape) / 7
    _assert_matches_ort(model, {"s": np.array([1, -1, 0.5], np.float32), "x": x}, rtol=1e-5)


def test_scan_output_type_inserts_the_sequence_length():
    b = GraphBuilder()
    s = b.input("s", TensorType((3,), F32))
    x = b.input("x", TensorType((3, "T"), F32))
    body = GraphBuilder("body")
    s_in, x_t = body.input("s_in", TensorType((3,), F32)), body.input("x_t", TensorType((3,), F32))
    total = body.op("Add", s_in, x_t)
    body.output(total, body.op("Identity", total))
    final, ys = b.node("Scan", [s, x], {"body": body.build(verify=False), "num_scan_inputs": 1,
                                        "scan_input_axes": [1], "scan_output_axes": [1]}, num_outputs=2)
    assert final.type == TensorType((3,), F32) and ys.type == TensorType((3, "T"), F32)


# ---- SequenceMap and the sequence ops --------------------------------------------------

def test_sequence_map_pairs_each_element_with_the_tensor_inputs():
    b = GraphBuilder()
    seq = b.input("seq", SequenceType(TensorType(("n",), F32)))
    bias = b.input("bias", TensorType((), F32))
    body = GraphBuilder("body")
    x, c = body.input("x", TensorType(("n",), F32)), body.input("c", TensorType((), F32))
    body.output(body.op("Add", x, c), body.op("Shape", x))
    out, shapes = b.node("SequenceMap", [seq, bias], {"body": body.build(verify=False)}, num_outputs=2)
    assert out.type == SequenceType(TensorType(("n",), F32)) and shapes.type.elem.dtype == I64
    b.output(out, shapes)
    items = [np.arange(3, dtype=np.float32), np.ones(5, np.float32)]
    result = run_graph(b.build(), {"seq": items, "bias": np.array(10, np.float32)}, check_types=True)
    np.testing.assert_array_equal(result[out.name][0], items[0] + 10)
    assert [s.tolist() for s in result[shapes.name]] == [[3], [5]]


def _seq_type(shape=None, dtype=I64):
    return SequenceType(TensorType(shape, dtype))


@pytest.mark.parametrize("op, extra, expected", [
    ("SequenceInsert", [np.array([9]), np.array(-1)], [[1], [2, 2], [9], [3, 3, 3]]),
    ("SequenceInsert", [np.array([9]), np.array(3)], [[1], [2, 2], [3, 3, 3], [9]]),
    ("SequenceErase", [np.array(-3)], [[2, 2], [3, 3, 3]]),
    ("SequenceErase", [], [[1], [2, 2]]),
])
def test_sequence_insert_and_erase_positions(op, extra, expected):
    seq = [np.array([1]), np.array([2, 2]), np.array([3, 3, 3])]
    (out,), _ = _run_node(op, [seq, *extra], types=[_seq_type(("k",))] + [None] * len(extra))
    assert [a.tolist() for a in out] == expected


def test_sequence_at_length_and_out_of_range_positions():
    seq = [np.array([1]), np.array([2, 2])]
    types = [_seq_type(("k",)), None]
    (at,), (at_type,) = _run_node("SequenceAt", [seq, np.array(-1)], types=types)
    assert at.tolist() == [2, 2] and at_type == TensorType(("k",), I64)
    (length,), _ = _run_node("SequenceLength", [seq], types=types[:1])
    assert length.dtype == np.int64 and length.shape == () and int(length) == 2
    with pytest.raises(CompilerError, match="out of range"):
        _run_node("SequenceAt", [seq, np.array(2)], types=types)


def test_sequence_insert_joins_element_shapes_and_checks_dtypes():
    b = GraphBuilder()
    seq = b.input("s", _seq_type((2, 3)))
    (out,) = b.node("SequenceInsert", [seq, b.input("t", TensorType((4, 3), I64))])
    assert isinstance(out.type.elem.shape[0], str) and out.type.elem.shape[1] == 3
    with pytest.raises(ShapeInferenceError, match="element types"):
        b.node("SequenceInsert", [seq, b.input("u", TensorType((2, 3), F32))])


def test_sequence_empty_and_construct():
    (empty,), (t,) = _run_node("SequenceEmpty", [], {"dtype": dtypes.int32})
    assert empty == [] and t == SequenceType(TensorType(None, dtypes.int32))
    (seq,), (t,) = _run_node("SequenceConstruct", [np.zeros((2, 3), np.float32), np.ones((2, 5), np.float32)])
    assert len(seq) == 2 and t.elem.shape[0] == 2 and isinstance(t.elem.shape[1], str)


@pytest.mark.parametrize("split, attrs, sizes, static_dim", [
    (None, {"axis": 1}, [1] * 5, 1),
    (None, {"axis": 1, "keepdims": 0}, [None] * 5, None),
    (np.array(2), {"axis": 1}, [2, 2, 1], None),  # 5 is not a multiple of 2: the last part is smaller
    (np.array([2, 3]), {"axis": -1}, [2, 3], None),
    (np.array([1, 1]), {"axis": 0}, None, 1),
])
def test_split_to_sequence(split, attrs, sizes, static_dim):
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    b = GraphBuilder()
    inputs = [b.input("x", TensorType((2, 5), F32))] + ([] if split is None else [b.const(split)])
    (out,) = b.node("SplitToSequence", inputs, attrs)
    axis = attrs["axis"] % 2
    if static_dim is not None:
        assert out.type.elem.shape[axis] == static_dim
    b.output(out)
    parts = run_graph(b.build(), {"x": x}, check_types=True)[out.name]
    if sizes is not None and attrs.get("keepdims", 1):
        assert [p.shape[axis] for p in parts] == sizes
    elif sizes is not None:
        assert all(p.shape == (2,) for p in parts) and len(parts) == len(sizes)
    np.testing.assert_array_equal(np.concatenate(parts, axis=axis) if parts[0].ndim == 2 else np.stack(parts, 1), x)


@pytest.mark.parametrize("axis, new_axis, expected_shape", [(0, 0, (4, 3)), (1, 1, (2, 2, 3)), (-1, 1, (2, 3, 2))])
def test_concat_from_sequence(axis, new_axis, expected_shape):
    seq = [np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)]
    (out,), (t,) = _run_node("ConcatFromSequence", [seq], {"axis": axis, "new_axis": new_axis},
                             types=[SequenceType(TensorType((2, 3), F32))])
    assert out.shape == expected_shape and t.rank == len(expected_shape)


# ---- optionals -------------------------------------------------------------------------

def test_empty_optional_and_its_queries():
    b = GraphBuilder()
    (empty,) = b.node("Optional", [], {"type": TensorType((2,), F32)})
    assert empty.type == OptionalType(TensorType((2,), F32))
    has = b.op("OptionalHasElement", empty)
    b.output(has)
    assert not run_graph(b.build(), {}, check_types=True)[has.name]
    with pytest.raises(ShapeInferenceError, match="'type' attribute"):
        GraphBuilder().node("Optional", [], {})


def test_optional_get_element_of_an_empty_optional_fails():
    b = GraphBuilder()
    x = b.input("x", OptionalType(TensorType((2,), F32)))
    out = b.op("OptionalGetElement", x)
    assert out.type == TensorType((2,), F32)
    b.output(out)
    g = b.build()
    np.testing.assert_array_equal(run_graph(g, {"x": np.ones(2, np.float32)})[out.name], [1, 1])
    with pytest.raises(CompilerError, match="empty"):
        run_graph(g, {"x": None})


def test_body_input_types_follow_the_node_inputs():
    seq, x = SequenceType(TensorType(("n",), F32)), TensorType((3, 7, 2), F32)
    assert body_input_types("Loop", [None, None, x], {}) == {"body": [TensorType((), I64), TensorType((), BOOL), x]}
    assert body_input_types("Scan", [TensorType((2,), F32), x], {"num_scan_inputs": 1, "scan_input_axes": [1]}) == \
        {"body": [TensorType((2,), F32), TensorType((3, 2), F32)]}
    assert body_input_types("SequenceMap", [seq, x], {}) == {"body": [seq.elem, x]}
    assert body_input_types("If", [TensorType((), BOOL)], {}) == {}


# ---- strings ---------------------------------------------------------------------------

def _strs(*values):
    return np.array(values, dtype=object)


def test_string_concat_broadcasts_and_keeps_zero_dim():
    (out,), _ = _run_node("StringConcat", [_strs("a", "b"), np.array("!", dtype=object)])
    assert out.tolist() == ["a!", "b!"]
    (out,), _ = _run_node("StringConcat", [np.array("x", dtype=object), np.array("y", dtype=object)])
    assert out.shape == () and out.dtype == object and out.item() == "xy"


@pytest.mark.parametrize("attrs, parts, counts", [
    ({"delimiter": "::"}, [["a", "b", ""], ["c", "", ""]], [3, 1]),
    ({"maxsplit": 1}, [["a", "b  c"], ["c", ""]], [2, 1]),
])
def test_string_split(attrs, parts, counts):
    x = _strs("a::b::" if "delimiter" in attrs else " a b  c", "c")
    (y, z), _ = _run_node("StringSplit", [x], attrs, num_outputs=2)
    assert y.tolist() == parts and z.tolist() == counts


def test_string_normalizer_case_insensitive_and_all_stopwords():
    attrs = {"stopwords": ["THE"], "case_change_action": "LOWER"}
    (out,), _ = _run_node("StringNormalizer", [_strs("The", "Cat", "the")], attrs)
    assert out.tolist() == ["cat"]
    (out,), _ = _run_node("StringNormalizer", [_strs("the", "THE").reshape(1, 2)], attrs)
    assert out.tolist() == [[""]]
    with pytest.raises(ShapeInferenceError, match=r"\[C\] or \[1, C\]"):
        _run_node("StringNormalizer", [_strs("a", "b", "c", "d").reshape(2, 2)], attrs)


def test_regex_full_match_and_bad_patterns():
    (out,), _ = _run_node("RegexFullMatch", [_strs("ab12", "ab", "xab1")], {"pattern": r"ab\d*"})
    assert out.tolist() == [True, True, False] and out.dtype == np.bool_
    with pytest.raises(ShapeInferenceError, match="not a valid regex"):
        _run_node("RegexFullMatch", [_strs("a")], {"pattern": "(a"})


@pytest.mark.parametrize("mode, weights", [("TF", None), ("IDF", [0.5, 2.0, 1.0, 3.0]), ("TFIDF", [0.5, 2.0, 1.0, 3.0])])
def test_tfidf_on_strings_matches_onnxruntime(mode, weights):
    attrs = dict(mode=mode, min_gram_length=1, max_gram_length=2, max_skip_count=1, ngram_counts=[0, 2],
                 ngram_indexes=[3, 0, 1, 2], pool_strings=["a", "b", "a", "b", "b", "c"])
    if weights:
        attrs["weights"] = weights
    model = _onnx_model([oh.make_node("TfIdfVectorizer", ["X"], ["Y"], **attrs)], [_vi("X", TP.STRING, [2, 5])],
                        [_vi("Y", TP.FLOAT, None)])
    x = _strs("a", "b", "a", "b", "c", "b", "b", "c", "a", "a").reshape(2, 5)
    _assert_matches_ort(model, {"X": x})


@pytest.mark.parametrize("skip", [0, 2])
def test_tfidf_on_integers_matches_onnxruntime(skip):
    rng = np.random.default_rng(skip)
    bigrams = rng.choice(36, 10, replace=False)  # distinct n-grams over tokens 0..5, as ONNX requires
    trigrams = rng.choice(216, 5, replace=False)
    pool = (list(range(1, 7)) + np.stack([bigrams // 6, bigrams % 6], 1).reshape(-1).tolist()
            + np.stack([trigrams // 36, trigrams // 6 % 6, trigrams % 6], 1).reshape(-1).tolist())
    attrs = dict(mode="TF", min_gram_length=1, max_gram_length=3, max_skip_count=skip, ngram_counts=[0, 6, 26],
                 ngram_indexes=list(range(6 + 10 + 5))[::-1], pool_int64s=pool)
    model = _onnx_model([oh.make_node("TfIdfVectorizer", ["X"], ["Y"], **attrs)], [_vi("X", TP.INT64, [3, 40])],
                        [_vi("Y", TP.FLOAT, None)])
    _assert_matches_ort(model, {"X": rng.integers(0, 7, (3, 40))})


# ---- ONNX-ML ---------------------------------------------------------------------------

def test_label_encoder_float_keys_nan_and_repeated_keys():
    attrs = {"keys_floats": [1.0, float("nan"), 2.0, 1.0], "values_strings": ["one", "nan", "two", "uno"],
             "default_string": "?"}
    (out,), (t,) = _run_node("ml.LabelEncoder", [np.array([1.0, np.nan, 3.0, 2.0], np.float32)], attrs)
    assert t.dtype == STR and out.tolist() == ["uno", "nan", "?", "two"]


def test_label_encoder_int_keys_default_and_key_type_check():
    attrs = {"keys_int64s": [5, 7], "values_floats": [0.5, 0.7]}
    (out,), _ = _run_node("ml.LabelEncoder", [np.array([[7, 1], [5, 5]], np.int64)], attrs)
    np.testing.assert_array_equal(out, np.array([[0.7, -0.0], [0.5, 0.5]], np.float32))
    with pytest.raises(ShapeInferenceError, match="keys are"):
        _run_node("ml.LabelEncoder", [_strs("a")], attrs)


def test_array_feature_extractor_one_dimensional_input_is_one_row():
    (out,), (t,) = _run_node("ml.ArrayFeatureExtractor", [np.array([10, 11, 12], np.int64), np.array([2, 0])])
    assert out.tolist() == [[12, 10]] and t.shape == (1, 2)


def _tree_ensemble_model(aggregate, transform):
    # Two trees over two features; the second tree tests set membership and NaN tracking.
    attrs = dict(
        n_targets=3, tree_roots=[0, 2], aggregate_function=aggregate, post_transform=transform,
        nodes_featureids=[0, 1, 1, 0], nodes_truenodeids=[1, 0, 3, 2], nodes_falsenodeids=[1, 2, 3, 4],
        nodes_trueleafs=[0, 1, 1, 1], nodes_falseleafs=[1, 1, 0, 1],
        nodes_modes=oh.make_tensor("m", TP.UINT8, [4], [2, 1, 6, 3]),
        nodes_splits=oh.make_tensor("s", TP.FLOAT, [4], [0.5, 1.0, float("nan"), -1.0]),
        nodes_missing_value_tracks_true=[0, 1, 0, 0],
        membership_values=oh.make_tensor("mv", TP.FLOAT, [3], [2.0, 3.0, float("nan")]),
        leaf_targetids=[0, 1, 2, 0, 1], leaf_weights=oh.make_tensor("w", TP.FLOAT, [5], [1.0, -2.0, 0.5, 3.0, 0.25]))
    node = oh.make_node("TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", **attrs)
    return _onnx_model([node], [_vi("X", TP.FLOAT, [6, 2])], [_vi("Y", TP.FLOAT, [6, 3])],
                       opsets=(("", 21), ("ai.onnx.ml", 5)))


_TREE_X = np.array([[0.7, 0.2], [0.1, 2.0], [0.9, np.nan], [0.0, 3.0], [np.nan, -4.0], [0.6, 5.0]], np.float32)


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
def test_tree_ensemble_matches_onnxruntime(aggregate):
    _assert_matches_ort(_tree_ensemble_model(aggregate, 0), {"X": _TREE_X})


def _softmax(s, axis=1):
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# onnxruntime numbers post_transform differently from the ONNX spec (its 1 is LOGISTIC), and
# onnx.reference ignores it: the transforms are checked against their formulas instead.
@pytest.mark.parametrize("transform, formula", [
    (1, _softmax),
    (2, lambda s: 1 / (1 + np.exp(-s))),
    (3, lambda s: np.where(s == 0, 0, _softmax(np.where(s == 0, -np.inf, s)))),
])
def test_tree_ensemble_post_transforms(transform, formula):
    (raw,) = _ours(_tree_ensemble_model(1, 0), {"X": _TREE_X})
    (out,) = _ours(_tree_ensemble_model(1, transform), {"X": _TREE_X})
    np.testing.assert_allclose(out, formula(raw.astype(np.float64)), rtol=1e-6)


def test_tree_ensemble_probit_inverts_the_normal_cdf():
    from compiler.ir.ops.elementwise import erf

    (probit,) = _ours(_tree_ensemble_model(0, 4), {"X": _TREE_X})  # AVERAGE scores lie in (-1, 1)
    (raw,) = _ours(_tree_ensemble_model(0, 0), {"X": _TREE_X})
    inside = (raw > 0) & (raw < 1)
    assert inside.any() and np.isnan(probit[raw < 0]).all() and np.isneginf(probit[raw == 0]).all()
    cdf = 0.5 * (1 + erf(probit[inside].astype(np.float64) / np.sqrt(2)))
    np.testing.assert_allclose(cdf, raw[inside], rtol=1e-6)


# ---- random ----------------------------------------------------------------------------

def test_seeded_random_ops_repeat_and_respect_shape_dtype_and_bounds():
    attrs = {"shape": [3, 4], "dtype": dtypes.float16, "low": 2.0, "high": 3.0, "seed": 1.5}
    (a,), (t,) = _run_node("RandomUniform", [], attrs)
    (b,), _ = _run_node("RandomUniform", [], attrs)
    assert t == TensorType((3, 4), dtypes.float16) and a.dtype == np.float16
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 2) & (a <= 3))
    (n,), (t,) = _run_node("RandomNormalLike", [np.zeros((500,), np.float64)], {"mean": 5.0, "scale": 0.1, "seed": 0.0})
    assert t.dtype == dtypes.float64 and abs(n.mean() - 5) < 0.05


def test_bernoulli_and_multinomial_are_exact_at_certain_probabilities():
    p = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
    (out,), (t,) = _run_node("Bernoulli", [p], {"dtype": dtypes.int32})
    assert t.dtype == dtypes.int32 and out.tolist() == [0, 1, 1, 0]
    logits = np.log(np.array([[1e-30, 1.0, 1e-30], [1.0, 1e-30, 1e-30]], np.float32))
    (out,), (t,) = _run_node("Multinomial", [logits], {"sample_size": 5, "dtype": dtypes.int64})
    assert t == TensorType((2, 5), I64) and out.tolist() == [[1] * 5, [0] * 5]


def test_multinomial_frequencies_follow_softmax():
    logits = np.log(np.array([[0.2, 0.3, 0.5]], np.float32))
    (out,), _ = _run_node("Multinomial", [logits], {"sample_size": 20000, "seed": 3.0})
    np.testing.assert_allclose(np.bincount(out[0], minlength=3) / 20000, [0.2, 0.3, 0.5], atol=0.02)


# ---- training optimizers ---------------------------------------------------------------

def _optimizer_inputs(*tensors):
    return [np.array(0.1, np.float32), np.array(3, np.int64), *[np.asarray(t, np.float32) for t in tensors]]


def test_momentum_nesterov_and_standard():
    x, g, v = [1.0, -2.0], [0.5, 0.25], [0.1, 0.2]
    attrs = {"alpha": 0.9, "beta": 0.5, "norm_coefficient": 0.01, "mode": "nesterov"}
    (x_new, v_new), _ = _run_node("training.Momentum", _optimizer_inputs(x, g, v), attrs, num_outputs=2)
    g_reg = 0.01 * np.array(x) + g
    v_ref = 0.9 * np.array(v) + 0.5 * g_reg
    np.testing.assert_allclose(v_new, v_ref, rtol=1e-6)
    np.testing.assert_allclose(x_new, np.array(x) - 0.1 * (g_reg + 0.9 * v_ref), rtol=1e-6)
    (x_std, _), _ = _run_node("training.Momentum", _optimizer_inputs(x, g, v), {**attrs, "mode": "standard"},
                              num_outputs=2)
    np.testing.assert_allclose(x_std, np.array(x) - 0.1 * v_ref, rtol=1e-6)
    with pytest.raises(ShapeInferenceError, match="nesterov"):
        _run_node("training.Momentum", _optimizer_inputs(x, g, v), {**attrs, "mode": "heavy"}, num_outputs=2)


def test_adam_bias_correction_after_the_first_step():
    x, g, v, h = [1.0], [0.5], [0.1], [0.2]
    attrs = {"alpha": 0.9, "beta": 0.99, "epsilon": 1e-3, "norm_coefficient_post": 0.1}
    (x_new, v_new, h_new), types = _run_node("training.Adam", _optimizer_inputs(x, g, v, h), attrs, num_outputs=3)
    v_ref, h_ref = 0.9 * 0.1 + 0.1 * 0.5, 0.99 * 0.2 + 0.01 * 0.25
    rate = 0.1 * np.sqrt(1 - 0.99 ** 3) / (1 - 0.9 ** 3)
    np.testing.assert_allclose(x_new, 0.9 * (1 - rate * v_ref / (np.sqrt(h_ref) + 1e-3)), rtol=1e-5)
    np.testing.assert_allclose([v_new[0], h_new[0]], [v_ref, h_ref], rtol=1e-6)
    assert all(t == TensorType((1,), F32) for t in types)


def test_optimizer_rejects_uneven_tensor_blocks():
    with pytest.raises(ShapeInferenceError, match="equal blocks"):
        _run_node("training.Adagrad", _optimizer_inputs([1.0], [2.0]), num_outputs=2)


# ---- ImageDecoder ----------------------------------------------------------------------

_IMAGE = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _bmp(rgb: np.ndarray) -> bytes:
    h, w, _ = rgb.shape
    stride = (w * 3 + 3) // 4 * 4
    rows = np.zeros((h, stride), np.uint8)
    rows[:, :w * 3] = rgb[::-1, :, ::-1].reshape(h, -1)
    header = b"BM" + struct.pack("<IHHI", 54 + rows.size, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, rows.size, 0, 0, 0, 0)
    return header + info + rows.tobytes()


def _ppm(rgb: np.ndarray) -> bytes:
    h, w, _ = rgb.shape
    return f"P6\n# comment\n{w} {h}\n255\n".encode() + rgb.tobytes()


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _png(rgb: np.ndarray) -> bytes:
    """A PNG whose rows cycle through all five filter types (an encoder for the test only)."""
    h, w, c = rgb.shape
    raw = b""
    prev = np.zeros(w * c, np.int64)
    for y in range(h):
        row = rgb[y].reshape(-1).astype(np.int64)
        kind = y % 5
        left = np.concatenate([np.zeros(c, np.int64), row[:-c]])
        upleft = np.concatenate([np.zeros(c, np.int64), prev[:-c]])
        pred = {0: 0 * row, 1: left, 2: prev, 3: (left + prev) // 2,
                4: np.array([_paeth(a, b, d) for a, b, d in zip(left, prev, upleft)])}[kind]
        raw += bytes([kind]) + ((row - pred) % 256).astype(np.uint8).tobytes()
        prev = row

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("encode", [_bmp, _ppm, _png])
def test_image_decoder_formats_and_pixel_formats(encode):
    stream = np.frombuffer(encode(_IMAGE), np.uint8)
    (rgb,), (t,) = _run_node("ImageDecoder", [stream])
    np.testing.assert_array_equal(rgb, _IMAGE)
    assert t.shape[2] == 3 and t.dtype == dtypes.uint8
    (bgr,), _ = _run_node("ImageDecoder", [stream], {"pixel_format": "BGR"})
    np.testing.assert_array_equal(bgr, _IMAGE[:, :, ::-1])
    (gray,), _ = _run_node("ImageDecoder", [stream], {"pixel_format": "Grayscale"})
    luma = _IMAGE.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert gray.shape == (5, 7, 1) and np.abs(gray[:, :, 0] - luma).max() <= 1


def test_image_decoder_undecodable_and_unsupported_streams():
    (out,), _ = _run_node("ImageDecoder", [np.frombuffer(b"not an image", np.uint8)])
    assert out.shape == (0, 0, 3)
    (out,), _ = _run_node("ImageDecoder", [np.frombuffer(_png(_IMAGE)[:-40], np.uint8)], {"pixel_format": "Grayscale"})
    assert out.shape == (0, 0, 1)  # a truncated stream decodes to an empty image, as ONNX specifies
    with pytest.raises(CompilerError, match="16-bit"):
        _run_node("ImageDecoder", [np.frombuffer(b"P6 1 1 65535 " + bytes(6), np.uint8)])
    with pytest.raises(CompilerError, match="JPEG"):
        _run_node("ImageDecoder", [np.frombuffer(b"\xff\xd8\xff\xe0" + bytes(20), np.uint8)])
