"""The IR-level FLOP counters (compiler.ir.flops, declared on each op): each counting rule against a hand count."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.api import import_model
from compiler.ir.flops import count_flops, graph_flops, node_flops


def _graph(nodes, inputs, outputs, inits=(), opset=21):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    return import_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]))


def _only(graph, op):
    return next(n for n in graph.nodes if n.op == op)


def test_conv_counts_two_flops_per_multiply_add_plus_bias():
    w = np.zeros((8, 2, 3, 3), np.float32)  # group 2: each output sums 2 * 3 * 3 products
    g = _graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], group=2)],
               [("x", [1, 4, 5, 5])], [("y", [1, 8, 5, 5])], [("w", w), ("b", np.zeros(8, np.float32))])
    y = 8 * 5 * 5
    assert node_flops(_only(g, "Conv")) == 2 * y * 2 * 3 * 3 + y


@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm_uses_the_contracted_dim(trans_a):
    a_shape = [7, 3] if trans_a else [3, 7]  # M=3, K=7
    g = _graph([helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=trans_a)],
               [("a", a_shape)], [("y", [3, 5])], [("b", np.zeros((7, 5), np.float32)), ("c", np.zeros(5, np.float32))])
    assert node_flops(_only(g, "Gemm")) == 2 * 3 * 5 * 7 + 3 * 5


def test_batched_matmul():
    g = _graph([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", [2, 4, 6]), ("b", [2, 6, 3])], [("y", [2, 4, 3])])
    assert node_flops(_only(g, "MatMul")) == 2 * (2 * 4 * 3) * 6


def test_elementwise_is_one_per_output_and_movement_is_free():
    g = _graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
                helper.make_node("Add", ["t", "t"], ["y"])], [("x", [3, 4])], [("y", [4, 3])])
    assert node_flops(_only(g, "Relu")) == 12
    assert node_flops(_only(g, "Transpose")) == 0
    cast = _graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], [("x", [3, 4])], [("y", [3, 4])])
    assert node_flops(_only(cast, "Cast")) == 0  # a conversion, not arithmetic
    report = count_flops(g)
    assert report.total == 24 and report.exact and report.by_op == {"Relu": 12, "Add": 12}


def test_softmax_and_pooling():
    g = _graph([helper.make_node("Softmax", ["x"], ["s"], axis=-1),
                helper.make_node("MaxPool", ["s"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
               [("x", [1, 2, 4, 4])], [("y", [1, 2, 2, 2])])
    assert node_flops(_only(g, "Softmax")) == 5 * 32
    assert node_flops(_only(g, "MaxPool")) == 8 * 4


def test_attention_counts_both_products():
    b, h, s, d = 1, 2, 8, 4
    g = _graph([helper.make_node("Attention", ["q", "k", "v"], ["y"], domain="")],
               [("q", [b, h, s, d]), ("k", [b, h, s, d]), ("v", [b, h, s, d])], [("y", [b, h, s, d])], opset=23)
    scores = b * h * s * s
    assert node_flops(_only(g, "Attention")) == 2 * scores * d * 2 + 5 * scores


def test_symbolic_shapes_are_listed_not_guessed():
    g = _graph([helper.make_node("Relu", ["x"], ["y"])], [("x", ["batch", 4])], [("y", ["batch", 4])])
    report = count_flops(g)
    assert not report.exact and report.total == 0 and "Relu" in report.uncounted[0]
    assert graph_flops(g) == 0


def test_resnet50_matches_the_published_count():
    # ResNet-50 at 224x224: ~4.1 G multiply-adds (He et al.), i.e. ~8.2 GFLOP.
    from compiler.zoo.light import light_model_path

    report = count_flops(import_model(onnx.load(str(light_model_path("resnet50")))))
    assert report.exact
    assert 8.0e9 < report.by_op["Conv"] < 8.4e9
