"""Simplification passes: constant and shape folding, dead code, common subexpressions,
algebraic identities and BatchNorm folding. Each rewrite has a case where it fires and
one where it must not, written as Before and Expected graphs (`ir_text.check_rewrite`);
every rewritten graph is also run against the original."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.ir import GraphBuilder, parse_graph, print_graph, run_graph, tensor
from compiler.passes import PassContext
from compiler.passes.eliminate_common_subexpressions import eliminate_common_subexpressions
from compiler.passes.eliminate_dead_code import eliminate_dead_code
from compiler.passes.fold_batchnorm import fold_batchnorm
from compiler.passes.fold_constants import fold_constants
from compiler.passes.fold_shapes import fold_shapes
from compiler.passes.pipeline import SIMPLIFY

from ir_text import assert_same_results, check_rewrite, random_feeds

RNG = np.random.default_rng(0)


def ops(graph) -> list[str]:
    return [n.op for n in graph.nodes]


def run(p, graph, **ctx):
    return p(graph, PassContext(verify=True, **ctx))


def simplify(text: str):
    before = parse_graph(text)
    after = run(SIMPLIFY, before)
    assert_same_results(before, after)
    return after


# ---- dead code and common subexpressions ----------------------------------------------

def test_dead_code_removes_unread_nodes_and_constants():
    check_rewrite(eliminate_dead_code, """graph g(%x: f32[2]) {
      %c: f32[] = const [2.0]
      %dead: f32[2] = Mul(%x, %c) @dead
      %y: f32[2] = Relu(%x) @keep
      return %y
    }""", """graph g(%x: f32[2]) {
      %y: f32[2] = Relu(%x)
      return %y
    }""")


def test_dead_code_reports_no_change_by_returning_the_same_graph():
    g = parse_graph("graph g(%x: f32[2]) {\n %y: f32[2] = Relu(%x)\n return %y\n}")
    assert run(eliminate_dead_code, g) is g


def test_cse_merges_identical_nodes_and_equal_constants():
    check_rewrite(SIMPLIFY, """graph g(%x: f32[2]) {
      %a: f32[] = const [3.0]
      %b: f32[] = const [3.0]
      %y1: f32[2] = Mul(%x, %a) @m1
      %y2: f32[2] = Mul(%x, %b) @m2
      %z: f32[2] = Add(%y1, %y2) @add
      return %z
    }""", """graph g(%x: f32[2]) {
      %three: f32[] = const [3.0]
      %y: f32[2] = Mul(%x, %three)
      %z: f32[2] = Add(%y, %y)
      return %z
    }""")


def test_cse_keeps_nodes_that_differ_in_attributes():
    g = parse_graph("""graph g(%x: f32[2,3]) {
      %s2: f32[2,3] = Softmax(%x) {axis=0} @s1
      %s3: f32[2,3] = Softmax(%x) {axis=1} @s2
      %t: f32[2,3] = Add(%s2, %s3) @add
      return %t
    }""")
    assert run(eliminate_common_subexpressions, g) is g


def test_cse_does_not_merge_random_ops():
    check_rewrite(eliminate_common_subexpressions, """graph g(%x: f32[2]) {
      %a: f32[2] = RandomUniformLike(%x) @r1
      %b: f32[2] = RandomUniformLike(%x) @r2
      %c: f32[2] = Add(%a, %b) @add
      return %c
    }""", None)


# ---- constant folding -------------------------------------------------------------------

def test_constant_folding_evaluates_constant_subgraphs():
    after = simplify("""graph g(%x: f32[3]) {
      %a: f32[3] = const [1.0, 2.0, 3.0]
      %b: f32[3] = Exp(%a) @e
      %c: f32[3] = Mul(%b, %b) @m
      %y: f32[3] = Add(%x, %c) @add
      return %y
    }""")
    assert ops(after) == ["Add"]
    np.testing.assert_allclose(after.nodes[0].inputs[1].const, np.exp([1.0, 2.0, 3.0]) ** 2, rtol=1e-6)


def test_constant_folding_respects_the_size_cap():
    b = GraphBuilder(fold_constants=False)
    x = b.input("x", tensor([64, 64], "f32"))
    w = b.const(RNG.standard_normal((64, 64)).astype(np.float32), "w")
    b.output(b.op("Add", x, b.op("Transpose", w, perm=[1, 0])))
    g = b.build()
    assert ops(run(fold_constants, g, fold_limit_bytes=1024)) == ["Transpose", "Add"]
    folded = run(fold_constants, g)
    assert ops(folded) == ["Add"]
    assert_same_results(g, folded)


def test_constant_folding_keeps_random_ops():
    check_rewrite(fold_constants, """graph g(%x: f32[2]) {
      %r: f32[2] = RandomNormal() {shape=[2]} @rn
      %y: f32[2] = Add(%x, %r) @add
      return %y
    }""", None)


# ---- shape arithmetic ---------------------------------------------------------------------

def shape_chain_graph(batch):
    b = GraphBuilder(fold_constants=False)
    x = b.input("x", tensor([batch, 4, 6], "f32"))
    shape = b.op("Shape", x)
    n = b.op("Unsqueeze", b.op("Gather", shape, b.const(np.array(0, np.int64), "zero")), b.const(np.array([0], np.int64), "ax"))
    new_shape = b.op("Concat", n, b.const(np.array([24], np.int64), "rest"), axis=0)
    b.output(b.op("Relu", b.op("Reshape", x, new_shape)))
    return b.build()


def test_shape_chain_folds_to_a_constant_shape_when_dims_are_static():
    g = shape_chain_graph(3)
    after = run(SIMPLIFY, g)
    assert ops(after) == ["Reshape", "Relu"]
    assert after.nodes[0].inputs[1].const.tolist() == [3, 24]
    assert_same_results(g, after)


def test_shape_chain_stays_when_the_batch_is_symbolic():
    after = run(SIMPLIFY, shape_chain_graph("batch"))
    assert "Shape" in ops(after) and "Reshape" in ops(after)


def test_symbolic_sizes_are_read_from_the_graph_input_and_shared():
    b = GraphBuilder(fold_constants=False)
    x = b.input("x", tensor(["batch", 4, 6], "f32"))
    zero, ax = b.const(np.array(0, np.int64), "zero"), b.const(np.array([0], np.int64), "ax")
    y = x
    for i in range(3):  # three reshapes, each reading the batch from its own input's shape
        y = b.op("Relu", y)
        n = b.op("Unsqueeze", b.op("Gather", b.op("Shape", y), zero), ax)
        y = b.op("Reshape", y, b.op("Concat", n, b.const(np.array([24], np.int64)), axis=0))
        y = b.op("Reshape", y, b.op("Concat", n, b.const(np.array([4, 6], np.int64)), axis=0))
    b.output(y)
    g = b.build()
    after = run(SIMPLIFY, g)
    shapes = [n for n in after.nodes if n.op == "Shape"]
    assert len(shapes) == 1 and shapes[0].inputs[0] is after.inputs[0]
    assert ops(after).count("Concat") == 2  # [batch, 24] and [batch, 4, 6]: the same for all three
    assert_same_results(g, after, {"x": np.ones((3, 4, 6), np.float32)})


def test_fold_shapes_replaces_shape_of_a_static_tensor():
    check_rewrite(fold_shapes, """graph g(%x: f32[2,5]) {
      %s: i64[2] = Shape(%x) @shape
      %y: f32[2,5] = Expand(%x, %s) @ex
      return %y
    }""", """graph g(%x: f32[2,5]) {
      %s: i64[2] = const [2, 5]
      %y: f32[2,5] = Expand(%x, %s)
      return %y
    }""")


# ---- algebraic identities -------------------------------------------------------------

NEUTRAL_CASES = [
    ("Mul", "%x, %one"), ("Mul", "%one, %x"), ("Add", "%x, %zero"), ("Add", "%zero, %x"),
    ("Sub", "%x, %zero"), ("Div", "%x, %one"), ("Pow", "%x, %one"),
]


@pytest.mark.parametrize("op,args", NEUTRAL_CASES)
def test_neutral_operands_disappear(op, args):
    check_rewrite(SIMPLIFY, f"""graph g(%x: f32[2,3]) {{
      %one: f32[] = const [1.0]
      %zero: f32[] = const [0.0]
      %y: f32[2,3] = {op}({args}) @n
      %z: f32[2,3] = Relu(%y) @r
      return %z
    }}""", """graph g(%x: f32[2,3]) {
      %z: f32[2,3] = Relu(%x)
      return %z
    }""")


@pytest.mark.parametrize("op,args", [("Sub", "%zero, %x"), ("Div", "%one, %x"), ("Mul", "%x, %two")])
def test_non_neutral_operands_stay(op, args):
    after = simplify(f"""graph g(%x: f32[2,3]) {{
      %one: f32[] = const [1.0]
      %zero: f32[] = const [0.0]
      %two: f32[] = const [2.0]
      %y: f32[2,3] = {op}({args}) @n
      return %y
    }}""")
    assert ops(after) == [op]


def test_neutral_operand_that_broadcasts_is_kept():
    after = simplify("""graph g(%x: f32[3]) {
      %zeros: f32[2,3] = const [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
      %y: f32[2,3] = Add(%x, %zeros) @n
      return %y
    }""")
    assert ops(after) == ["Add"]


def test_identity_dropout_and_same_type_cast_disappear():
    check_rewrite(SIMPLIFY, """graph g(%x: f32[2,3]) {
      %a: f32[2,3] = Identity(%x) @id
      %b: f32[2,3] = Dropout(%a) @drop
      %c: f32[2,3] = Cast(%b) {to=dtype(f32)} @cast
      %d: f32[2,3] = Relu(%c) @r
      return %d
    }""", """graph g(%x: f32[2,3]) {
      %d: f32[2,3] = Relu(%x)
      return %d
    }""")


def test_training_dropout_and_real_casts_stay():
    g = parse_graph("""graph g(%x: f32[2,3], %train: bool[]) {
      %a: f32[2,3] = Dropout(%x, _, %train) {seed=1} @drop
      %b: f16[2,3] = Cast(%a) {to=dtype(f16)} @cast
      return %b
    }""")
    assert run(SIMPLIFY, g) is g


@pytest.mark.parametrize("line,remaining", [
    ("%y: f32[2,3] = CastLike(%x, %x) @n", []),
    ("%y: f16[2,3] = CastLike(%x, %h) @n", ["CastLike"]),
    ("%y: f32[2,3] = Expand(%x, %same) @n", []),
    ("%y: f32[4,2,3] = Expand(%x, %bigger) @n", ["Expand"]),
    ("%y: f32[2,3] = Concat(%x) {axis=0} @n", []),
    ("%y: f32[4,3] = Concat(%x, %x) {axis=0} @n", ["Concat"]),
    ("%y: f32[2,3] = Transpose(%x) {perm=[0, 1]} @n", []),
    ("%y: f32[3,2] = Transpose(%x) {perm=[1, 0]} @n", ["Transpose"]),
])
def test_more_identities(line, remaining):
    y_type = line.split(": ")[1].split(" ")[0]
    after = simplify(f"""graph g(%x: f32[2,3], %h: f16[1]) {{
      %same: i64[2] = const [2, 3]
      %bigger: i64[3] = const [4, 2, 3]
      {line}
      %z: {y_type} = Neg(%y) @neg
      return %z
    }}""")
    assert ops(after) == remaining + ["Neg"]


def test_graph_output_keeps_its_name_when_its_node_disappears():
    check_rewrite(SIMPLIFY, """graph g(%x: f32[2]) {
      %r: f32[2] = Relu(%x) @r
      %out: f32[2] = Identity(%r) @id
      return %out
    }""", """graph g(%x: f32[2]) {
      %out: f32[2] = Relu(%x)
      return %out
    }""")


def test_identity_between_input_and_output_stays():
    check_rewrite(SIMPLIFY, """graph g(%x: f32[2]) {
      %out: f32[2] = Identity(%x) @id
      return %out
    }""", None)


def test_transpose_pairs_cancel_or_compose():
    check_rewrite(SIMPLIFY, """graph g(%x: f32[2,3,4]) {
      %a: f32[3,4,2] = Transpose(%x) {perm=[1, 2, 0]} @t1
      %b: f32[2,3,4] = Transpose(%a) {perm=[2, 0, 1]} @t2
      %c: f32[2,3,4] = Relu(%b) @r
      return %c
    }""", """graph g(%x: f32[2,3,4]) {
      %c: f32[2,3,4] = Relu(%x)
      return %c
    }""")
    check_rewrite(SIMPLIFY, """graph g(%x: f32[2,3,4]) {
      %a: f32[3,4,2] = Transpose(%x) {perm=[1, 2, 0]} @t1
      %b: f32[4,3,2] = Transpose(%a) {perm=[1, 0, 2]} @t2
      return %b
    }""", """graph g(%x: f32[2,3,4]) {
      %b: f32[4,3,2] = Transpose(%x) {perm=[2, 1, 0]}
      return %b
    }""")


def test_reshape_chains_collapse_and_noop_reshapes_vanish():
    check_rewrite(SIMPLIFY, """graph g(%x: f32[2,3,4]) {
      %s1: i64[2] = const [6, 4]
      %ax: i64[1] = const [0]
      %same: i64[1] = const [24]
      %a: f32[6,4] = Reshape(%x, %s1) @r1
      %b: f32[1,24] = Flatten(%a) {axis=0} @f
      %c: f32[24] = Squeeze(%b, %ax) @sq
      %d: f32[24] = Reshape(%c, %same) @noop
      return %d
    }""", """graph g(%x: f32[2,3,4]) {
      %shape: i64[1] = const [24]
      %d: f32[24] = Reshape(%x, %shape)
      return %d
    }""")


def test_reshapes_of_unknown_rank_are_not_taken_for_no_ops():
    # Both values print as f32[*]: equal types, but nothing says their shapes are equal.
    g = parse_graph("""graph g(%x: f32[2,6], %s: i64[k]) {
      %y: f32[*] = Reshape(%x, %s) @r
      %z: f32[*] = Squeeze(%y) @sq
      return %z
    }""")
    after = run(SIMPLIFY, g)
    assert ops(after) == ["Reshape", "Squeeze"]
    feeds = {"x": np.ones((2, 6), np.float32), "s": np.array([1, 12], np.int64)}
    assert run_graph(after, feeds)["z"].shape == (12,)


def test_sum_of_two_becomes_add():
    check_rewrite(SIMPLIFY, """graph g(%x: f32[2], %y: f32[2]) {
      %s: f32[2] = Sum(%x, %y) @sum
      return %s
    }""", """graph g(%x: f32[2], %y: f32[2]) {
      %s: f32[2] = Add(%x, %y)
      return %s
    }""")


# ---- BatchNorm folding ------------------------------------------------------------------

def conv_bn_graph(extra_reader=False, training=0):
    """x -> Conv -> BatchNorm -> Mul(per-channel) -> Add(per-channel) -> Relu."""
    b = GraphBuilder()
    x = b.input("x", tensor([1, 3, 8, 8], "f32"))
    w = b.const(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bias = b.const(RNG.standard_normal(4).astype(np.float32), "b")
    conv = b.op("Conv", x, w, bias, pads=[1, 1, 1, 1])
    params = [b.const(a.astype(np.float32), n) for a, n in (
        (RNG.uniform(0.5, 2, 4), "scale"), (RNG.standard_normal(4), "shift"),
        (RNG.standard_normal(4), "mean"), (RNG.uniform(0.5, 2, 4), "var"))]
    y = b.op("BatchNormalization", conv, *params, epsilon=1e-3, training_mode=training)
    y = b.op("Mul", y, b.const(RNG.standard_normal((4, 1, 1)).astype(np.float32), "mul_c"))
    y = b.op("Add", y, b.const(RNG.standard_normal((1, 4, 1, 1)).astype(np.float32), "add_c"))
    b.output(b.op("Relu", y, name="relu"))
    if extra_reader:
        b.output(conv)
    return b.build()


def test_batchnorm_and_per_channel_affine_fold_into_conv():
    g = conv_bn_graph()
    after = run(fold_batchnorm, g)
    assert ops(after) == ["Conv", "Relu"]
    assert_same_results(g, after)


def test_batchnorm_does_not_fold_when_the_conv_output_is_read_elsewhere():
    g = conv_bn_graph(extra_reader=True)
    after = run(fold_batchnorm, g)
    assert ops(after) == ["Conv", "BatchNormalization", "Relu"]  # Mul and Add still fold into the BN
    assert_same_results(g, after)


def test_training_mode_batchnorm_is_not_folded():
    g = conv_bn_graph(training=1)
    after = run(fold_batchnorm, g)
    assert ops(after)[:2] == ["Conv", "BatchNormalization"]
    assert_same_results(g, after)


def test_batchnorm_folds_into_gemm_and_matmul():
    for op, attrs in (("Gemm", {"transB": 1}), ("MatMul", {})):
        b = GraphBuilder()
        x = b.input("x", tensor([5, 6], "f32"))
        w = b.const(RNG.standard_normal((4, 6) if op == "Gemm" else (6, 4)).astype(np.float32), "w")
        y = b.node(op, [x, w] + ([b.const(RNG.standard_normal(4).astype(np.float32), "c")] if op == "Gemm" else []), attrs)[0]
        params = [b.const(RNG.uniform(0.5, 2, 4).astype(np.float32), f"p{i}") for i in range(4)]
        b.output(b.op("BatchNormalization", y, *params))
        g = b.build()
        after = run(fold_batchnorm, g)
        assert "BatchNormalization" not in ops(after), op
        assert_same_results(g, after)


def test_printed_text_of_simplified_graph_parses_back():
    g = conv_bn_graph()
    after = run(SIMPLIFY, run(fold_batchnorm, g))
    text = print_graph(after, embed_constants=True)
    assert print_graph(parse_graph(text), embed_constants=True) == text
