"""Pattern recognition: decomposed LayerNorm, GELU (erf and tanh), Softmax, attention and
MatMul + bias become single ops; each also has a case where it must not fire. Where the
result is small it is compared with an Expected graph (`ir_text.assert_graph_equal`)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from compiler.ir import GraphBuilder, run_graph, tensor
from compiler.passes import PassContext
from compiler.passes.pipeline import PIPELINES, SIMPLIFY
from compiler.passes.recognize_patterns import recognize_patterns

from ir_text import assert_graph_equal

RNG = np.random.default_rng(1)


def f32(a):
    return np.asarray(a, np.float32)


def optimize2(graph):
    ctx = PassContext(verify=True)
    for p in PIPELINES[2]:
        graph = p(graph, ctx)
    return graph


def check(graph, feeds=None, rtol=1e-5):
    """Optimize at -O2, compare outputs with the original, return the optimized op list."""
    feeds = feeds or {v.name: RNG.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs}
    after = optimize2(graph)
    want, got = run_graph(graph, feeds), run_graph(after, feeds, check_types=True)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=1e-5)
    return sorted(n.op for n in after.nodes)


# ---- LayerNorm -----------------------------------------------------------------------------

def layer_norm_graph(square="Pow", affine=True, leak_mean=False, axes=(-1,)):
    b = GraphBuilder()
    x = b.input("x", tensor([2, 5, 8], "f32"))
    ax = b.const(np.array(axes, np.int64), "axes")
    mean = b.op("ReduceMean", x, ax)
    d = b.op("Sub", x, mean)
    sq = b.op("Pow", d, b.const(f32(2.0), "two")) if square == "Pow" else b.op("Mul", d, d)
    var = b.op("ReduceMean", sq, ax)
    std = b.op("Sqrt", b.op("Add", var, b.const(f32(1e-5), "eps")))
    y = b.op("Div", d, std)
    if affine:
        y = b.op("Add", b.op("Mul", y, b.const(RNG.standard_normal(8).astype(np.float32), "gamma")),
                 b.const(RNG.standard_normal(8).astype(np.float32), "beta"))
    b.output(y)
    if leak_mean:
        b.output(b.op("Relu", mean))
    return b.build()


@pytest.mark.parametrize("square", ["Pow", "Mul"])
def test_layer_norm_is_recognized_with_its_affine(square):
    assert check(layer_norm_graph(square)) == ["LayerNormalization"]


def test_layer_norm_without_affine():
    g = layer_norm_graph(affine=False)
    check(g)
    y = g.outputs[0].name
    assert_graph_equal(optimize2(g), f"""graph main(%x: f32[2,5,8]) {{
      %ones: f32[8] = const [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
      %{y}: f32[2,5,8] = LayerNormalization(%x, %ones) {{axis=2, epsilon=9.999999747378752e-06}}
      return %{y}
    }}""")


def test_layer_norm_whose_mean_is_used_elsewhere_stays_decomposed():
    ops = check(layer_norm_graph(leak_mean=True))
    assert "LayerNormalization" not in ops and ops.count("ReduceMean") == 2


def test_normalization_over_a_leading_axis_is_not_layer_norm():
    assert "LayerNormalization" not in check(layer_norm_graph(axes=(1,)))


# ---- GELU -------------------------------------------------------------------------------

def gelu_graph(form="erf", half_first=False, wrong_constant=False):
    b = GraphBuilder()
    x = b.input("x", tensor([4, 16], "f32"))
    one, half = b.const(f32(1.0), "one"), b.const(f32(0.5), "half")
    if form == "erf":
        root2 = b.const(f32(1.5 if wrong_constant else math.sqrt(2)), "root2")
        inner = b.op("Add", b.op("Erf", b.op("Div", x, root2)), one)
    else:
        cube = b.op("Pow", x, b.const(f32(3.0), "three"))
        u = b.op("Add", x, b.op("Mul", cube, b.const(f32(0.044715), "c")))
        t = b.op("Tanh", b.op("Mul", u, b.const(f32(math.sqrt(2 / math.pi)), "k")))
        inner = b.op("Add", one, t)
    y = b.op("Mul", b.op("Mul", x, half), inner) if half_first else b.op("Mul", b.op("Mul", x, inner), half)
    b.output(y)
    return b.build()


@pytest.mark.parametrize("form", ["erf", "tanh"])
@pytest.mark.parametrize("half_first", [False, True])
def test_gelu_forms_are_recognized(form, half_first):
    g = gelu_graph(form, half_first)
    check(g)
    y, approximate = g.outputs[0].name, "none" if form == "erf" else "tanh"
    assert_graph_equal(optimize2(g), f"""graph main(%x: f32[4,16]) {{
      %{y}: f32[4,16] = Gelu(%x) {{approximate="{approximate}"}}
      return %{y}
    }}""")


def test_gelu_with_a_different_constant_stays():
    assert "Gelu" not in check(gelu_graph(wrong_constant=True))


# ---- Softmax ------------------------------------------------------------------------------

def softmax_graph(subtract_max=True, axis=-1, leak_exp=False):
    b = GraphBuilder()
    x = b.input("x", tensor([3, 7], "f32"))
    ax = b.const(np.array([axis], np.int64), "ax")
    z = b.op("Sub", x, b.op("ReduceMax", x, ax)) if subtract_max else x
    e = b.op("Exp", z)
    b.output(b.op("Div", e, b.op("ReduceSum", e, ax)))
    if leak_exp:
        b.output(b.op("Neg", e))
    return b.build()


@pytest.mark.parametrize("subtract_max", [True, False])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_is_recognized(subtract_max, axis):
    g = softmax_graph(subtract_max, axis)
    check(g)
    assert_graph_equal(optimize2(g), f"""graph main(%x: f32[3,7]) {{
      %div: f32[3,7] = Softmax(%x) {{axis={axis % 2}}}
      return %div
    }}""")


def test_softmax_whose_exp_is_read_elsewhere_stays():
    assert "Softmax" not in check(softmax_graph(leak_exp=True))


# ---- attention -------------------------------------------------------------------------

def attention_graph(mask=True, scale_op="Div", extra_scores_reader=False):
    b = GraphBuilder()
    B, H, S, D = 2, 3, 5, 4
    q = b.input("q", tensor([B, H, S, D], "f32"))
    k = b.input("k", tensor([B, S, H, D], "f32"))  # as exporters have it: before the head transpose
    v = b.input("v", tensor([B, H, S, D], "f32"))
    kt = b.op("Transpose", k, perm=[0, 2, 3, 1])
    scores = b.op("MatMul", q, kt)
    c = b.const(f32(math.sqrt(D) if scale_op == "Div" else 1 / math.sqrt(D)), "scale")
    scores = b.op(scale_op, scores, c)
    if mask:
        m = np.zeros((B, 1, 1, S), np.float32)
        m[1, ..., 3:] = -10000.0
        scores = b.op("Add", scores, b.const(m, "mask"))
    probs = b.op("Softmax", scores, axis=-1)
    b.output(b.op("MatMul", probs, v))
    if extra_scores_reader:
        b.output(probs)
    return b.build()


@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("scale_op", ["Div", "Mul"])
def test_attention_is_recognized(mask, scale_op):
    g = attention_graph(mask, scale_op)
    ops = check(g)
    assert ops == ["Attention", "Transpose"]
    att = next(n for n in optimize2(g).nodes if n.op == "Attention")
    assert len(att.inputs) == (4 if mask else 3)
    assert att.attrs["scale"] == pytest.approx(0.5)


def test_attention_whose_probabilities_are_an_output_stays():
    assert "Attention" not in check(attention_graph(extra_scores_reader=True))


def packed_attention_graph(merge_heads=True):
    """x (B, S, H*D) -> three projections split into heads -> attention -> heads merged back."""
    B, S, H, D = 2, 5, 3, 4
    b = GraphBuilder()
    x = b.input("x", tensor([B, S, H * D], "f32"))
    split_shape = b.const(np.array([B, S, H, D], np.int64), "split")

    def heads(name, perm):
        w = b.const(RNG.standard_normal((H * D, H * D)).astype(np.float32), f"w_{name}")
        return b.op("Transpose", b.op("Reshape", b.op("MatMul", x, w), split_shape), perm=perm)

    q, kt, v = heads("q", [0, 2, 1, 3]), heads("k", [0, 2, 3, 1]), heads("v", [0, 2, 1, 3])
    probs = b.op("Softmax", b.op("Div", b.op("MatMul", q, kt), b.const(f32(2.0), "c")), axis=-1)
    y = b.op("MatMul", probs, v)
    if merge_heads:
        y = b.op("Reshape", b.op("Transpose", y, perm=[0, 2, 1, 3]), b.const(np.array([B, S, H * D], np.int64)))
    b.output(y)
    return b.build()


def test_head_split_and_merge_fold_into_packed_attention():
    g = packed_attention_graph()
    assert check(g) == ["Attention", "MatMul", "MatMul", "MatMul"]
    att = next(n for n in optimize2(g).nodes if n.op == "Attention")
    assert att.attrs["q_num_heads"] == 3 and att.inputs[0].type.shape == (2, 5, 12)


def test_heads_stay_split_when_the_output_keeps_its_heads():
    ops = check(packed_attention_graph(merge_heads=False))
    assert "Attention" in ops and ops.count("Transpose") == 3


# ---- MatMul + bias ------------------------------------------------------------------------

def linear_graph(bias_kind="const"):
    b = GraphBuilder()
    x = b.input("x", tensor([2, 3, 8], "f32"))
    y = b.op("MatMul", x, b.const(RNG.standard_normal((8, 6)).astype(np.float32), "w"))
    if bias_kind == "const":
        bias = b.const(RNG.standard_normal(6).astype(np.float32), "bias")
    elif bias_kind == "rows":
        bias = b.const(RNG.standard_normal((3, 1)).astype(np.float32), "bias")
    else:
        bias = b.input("residual", tensor([2, 3, 6], "f32"))
    b.output(b.op("Add", y, bias))
    return b.build()


def test_matmul_plus_bias_is_linear():
    assert check(linear_graph()) == ["Linear"]


@pytest.mark.parametrize("bias_kind", ["rows", "activation"])
def test_matmul_plus_non_bias_stays(bias_kind):
    assert check(linear_graph(bias_kind)) == ["Add", "MatMul"]


def test_recognition_reports_no_change_on_a_graph_without_patterns():
    g = linear_graph("activation")
    assert recognize_patterns(g, PassContext()) is g
    assert SIMPLIFY(g, PassContext()) is g
