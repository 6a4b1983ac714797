"""Fusion: epilogues into conv/matmul, elementwise chains, reductions with their
neighbours; no value computed twice, no cycle between kernels; kernels print."""
from __future__ import annotations

import numpy as np

from compiler.ir import GraphBuilder, parse_graph, print_graph, run_graph, tensor, verify_graph
from compiler.passes import PassContext
from compiler.passes.fuse import fuse, fuse_graph

RNG = np.random.default_rng(2)


def kernels(graph):
    fused, report = fuse_graph(graph)
    verify_graph(fused)
    feeds = {v.name: RNG.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs}
    want, got = run_graph(graph, feeds), run_graph(fused, feeds, check_types=True)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6)
    assert all(n.op == "FusedKernel" for n in fused.nodes)
    return [r["ops"] for r in report], fused


def conv(b, x, cin, cout):
    w = b.const(RNG.standard_normal((cout, cin, 3, 3)).astype(np.float32))
    return b.op("Conv", x, w, b.const(RNG.standard_normal(cout).astype(np.float32)), pads=[1, 1, 1, 1])


def test_conv_absorbs_bias_activation_and_residual_add():
    b = GraphBuilder()
    x = b.input("x", tensor([1, 4, 6, 6], "f32"))
    y = b.op("Relu", b.op("Add", conv(b, b.op("Relu", conv(b, x, 4, 4)), 4, 4), x))
    b.output(y)
    groups, _ = kernels(b.build())
    assert groups == [["Conv", "Relu"], ["Conv", "Add", "Relu"]]


def test_two_convs_never_share_a_kernel():
    b = GraphBuilder()
    x = b.input("x", tensor([1, 4, 6, 6], "f32"))
    b.output(b.op("Add", conv(b, x, 4, 4), conv(b, x, 4, 4)))
    groups, _ = kernels(b.build())
    assert sorted(map(tuple, groups)) == [("Conv",), ("Conv", "Add")]


def test_elementwise_diamond_fuses_whole():
    b = GraphBuilder()
    x = b.input("x", tensor([8, 8], "f32"))
    a = b.op("Exp", x)
    b.output(b.op("Mul", b.op("Sigmoid", a), b.op("Tanh", a)))
    groups, _ = kernels(b.build())
    assert groups == [["Exp", "Sigmoid", "Tanh", "Mul"]]


def test_value_read_by_two_kernels_is_computed_once():
    """Exp feeds a conv-free chain and a reduction elsewhere: it cannot be duplicated into both."""
    b = GraphBuilder()
    x = b.input("x", tensor([8, 8], "f32"))
    e = b.op("Exp", x)
    w = b.const(RNG.standard_normal((8, 8)).astype(np.float32))
    b.output(b.op("MatMul", e, w), b.op("Neg", e))
    groups, fused = kernels(b.build())
    assert sum(ops.count("Exp") for ops in groups) == 1
    assert len(fused.outputs) == 2


def test_no_cycle_through_an_opaque_node():
    """x -> Exp -> {TopK (opaque) -> Add, Add}: fusing Exp with Add would need TopK both before and after."""
    g = parse_graph("""graph g(%x: f32[4,6]) {
      %k: i64[1] = const [6]
      %e: f32[4,6] = Exp(%x) @exp
      %t: f32[4,6], %i: i64[4,6] = TopK(%e, %k) {axis=-1} @topk
      %y: f32[4,6] = Add(%e, %t) @add
      return %y
    }""")
    groups, _ = kernels(g)
    assert groups == [["Exp"], ["TopK"], ["Add"]]


def test_reduction_takes_its_elementwise_producers_and_consumers():
    b = GraphBuilder()
    x = b.input("x", tensor([4, 16], "f32"))
    s = b.op("Softmax", b.op("Mul", x, b.const(np.float32(0.125))), axis=-1)
    b.output(b.op("Relu", s))
    groups, _ = kernels(b.build())
    assert groups == [["Mul", "Softmax", "Relu"]]


def test_matmul_epilogue_and_view_prologue():
    b = GraphBuilder()
    x = b.input("x", tensor([2, 3, 4], "f32"))
    flat = b.op("Reshape", x, b.const(np.array([2, 12], np.int64)))
    y = b.op("Gemm", flat, b.const(RNG.standard_normal((12, 5)).astype(np.float32)),
             b.const(RNG.standard_normal(5).astype(np.float32)))
    b.output(b.op("Softmax", b.op("Relu", y), axis=-1))
    groups, _ = kernels(b.build())
    assert groups == [["Reshape", "Gemm", "Relu"], ["Softmax"]]


def test_fused_graph_prints_with_each_kernel_body():
    b = GraphBuilder()
    x = b.input("x", tensor([1, 4, 6, 6], "f32"))
    b.output(b.op("Relu", conv(b, x, 4, 4)))
    fused = fuse(b.build(), PassContext(verify=True))
    text = print_graph(fused)
    assert text.count("FusedKernel(") == 1 and "Conv(" in text and "Relu(" in text
    assert 'kind="Conv+Relu"' in text
    embedded = print_graph(fused, embed_constants=True)
    assert print_graph(parse_graph(embedded), embed_constants=True) == embedded


def test_requantize_is_a_conv_epilogue():
    b = GraphBuilder()
    x = b.input("x", tensor([1, 4, 6, 6], "f32"))
    y = b.op("Relu", conv(b, x, 4, 4))
    b.output(b.op("QuantizeLinear", y, b.const(np.float32(0.05)), b.const(np.uint8(128))))
    groups, _ = kernels(b.build())
    assert groups == [["Conv", "Relu", "QuantizeLinear"]]


def test_fused_kernel_is_the_expected_graph():
    """Before/Expected: an elementwise diamond and the softmax after it become one kernel
    whose body is the original chain; only the softmax's result leaves it."""
    from ir_text import check_rewrite

    check_rewrite(fuse, """graph g(%x: f32[8,8]) {
      %a: f32[8,8] = Exp(%x) @exp
      %s: f32[8,8] = Sigmoid(%a) @sig
      %t: f32[8,8] = Tanh(%a) @tanh
      %y: f32[8,8] = Mul(%s, %t) @mul
      %w: f32[8,8] = Softmax(%y) {axis=-1} @sm
      return %w
    }""", """graph g(%x: f32[8,8]) {
      %w: f32[8,8] = FusedKernel(%x) {body=graph kernel_exp(%x: f32[8,8]) {
        %a: f32[8,8] = Exp(%x)
        %s: f32[8,8] = Sigmoid(%a)
        %t: f32[8,8] = Tanh(%a)
        %y: f32[8,8] = Mul(%s, %t)
        %w: f32[8,8] = Softmax(%y) {axis=-1}
        return %w
      }, kind="Exp+Sigmoid+Tanh+Mul+Softmax"}
      return %w
    }""")


def test_fusion_leaves_a_lone_opaque_node_its_own_kernel():
    """An opaque op fuses with nothing; a small constant it reads travels into its body."""
    from ir_text import check_rewrite

    check_rewrite(fuse, """graph g(%x: f32[4,6]) {
      %k: i64[1] = const [2]
      %t: f32[4,2], %i: i64[4,2] = TopK(%x, %k) {axis=-1} @topk
      return %t
    }""", """graph g(%x: f32[4,6]) {
      %t: f32[4,2] = FusedKernel(%x) {body=graph kernel_topk(%x: f32[4,6]) {
        %k: i64[1] = const [2]
        %t: f32[4,2], %i: i64[4,2] = TopK(%x, %k) {axis=-1}
        return %t
      }, kind="TopK"}
      return %t
    }""")


def test_a_very_long_chain_compiles_in_kernels_of_bounded_size():
    """3,000 elementwise ops in a chain (50,000 overflowed Python's recursion limit when fused
    into one kernel, whose body is built as one expression tree): kernels stop growing at
    MAX_KERNEL_NODES, and the compiled chain computes what the reference does."""
    import compiler
    from onnx import TensorProto, helper

    from compiler.passes.fuse import MAX_KERNEL_NODES

    n = 3000
    nodes = [helper.make_node("Relu" if i % 2 else "Neg", [f"v{i}"], [f"v{i + 1}"]) for i in range(n)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info(f"v{n}", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    cm = compiler.compile(model, cache=False)
    x = np.array([1, -2, 3, -4], np.float32)
    want = compiler.compile(model, target="reference").run({"v0": x})[f"v{n}"]
    np.testing.assert_array_equal(cm.run({"v0": x})[f"v{n}"], want)
    assert cm.manifest["kernel_calls"] >= n // MAX_KERNEL_NODES


def test_a_gate_read_broadcast_stays_its_own_kernel():
    """An SE gate (Sigmoid of a [1, C] vector) scaling a [64, C] map: fused, the Sigmoid
    would run once per element of the map; apart, once per channel."""
    b = GraphBuilder()
    x = b.input("x", tensor([64, 16], "f32"))
    s = b.input("s", tensor([1, 16], "f32"))
    b.output(b.op("Mul", x, b.op("Sigmoid", s)))
    groups, _ = kernels(b.build())
    assert groups == [["Sigmoid"], ["Mul"]]


def test_a_value_read_at_its_own_size_or_slightly_broadcast_still_fuses():
    b = GraphBuilder()
    x = b.input("x", tensor([4, 16], "f32"))
    s = b.input("s", tensor([1, 16], "f32"))
    b.output(b.op("Mul", x, b.op("Sigmoid", s)))  # 4x: below BROADCAST_SPLIT
    groups, _ = kernels(b.build())
    assert groups == [["Sigmoid", "Mul"]]
