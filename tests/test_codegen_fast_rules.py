"""Loop-IR rules of the fast CPU path, compiled to native code and compared with the
reference interpreter: the NHWC pools/LRN/conv fallback, Linear's activations, the
vectorized row reductions (Softmax, LayerNorm, Reduce* over the last axis) and Attention."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.codegen.llvm.build import compile_graph
from compiler.codegen.llvm.target import cpu_target
from compiler.ir import GraphBuilder, run_graph, tensor
from compiler.zoo.tolerances import assert_close

from filecheck import FileCheck

from native import compile_graph_for, fused

RNG = np.random.default_rng(7)
NUM_THREADS = None  # all cores


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILER_CACHE_DIR", str(tmp_path / "cache"))


def native(graph):
    """The graph as native code (one kernel per node, no graph passes) and its kernel listing."""
    model = compile_graph_for(graph, num_threads=NUM_THREADS)
    return model, model.kernel_listing


def check(graph, feeds, dtype=None, end_to_end=False):
    """Native run vs the reference interpreter; returns the kernel listing."""
    model, listing = native(graph)
    got, want = model.run(feeds), run_graph(graph, feeds)
    for name in want:
        assert_close(got[name], want[name], dtype, name, end_to_end=end_to_end)
    return listing


def one_op(op, shapes, dtype="f32", consts=(), **attrs):
    """A graph of one node over inputs x0.. (or constants for the indices in `consts`) and random feeds."""
    b = GraphBuilder()
    np_dtype = {"f32": np.float32, "f64": np.float64}[dtype]
    feeds, values = {}, []
    for i, shape in enumerate(shapes):
        if shape is None:
            values.append(None)
            continue
        data = RNG.standard_normal(shape).astype(np_dtype)
        if i in consts:
            values.append(b.const(data, f"c{i}"))
        else:
            values.append(b.input(f"x{i}", tensor(list(shape), dtype)))
            feeds[f"x{i}"] = data
    b.output(b.op(op, *values, **attrs))
    return b.build(), feeds


# ---- NHWC pools and LRN ---------------------------------------------------------------------

WINDOWS = [  # (input NHWC, kernel, strides, pads, dilations, ceil_mode)
    ([2, 7, 9, 5], [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0),
    ([1, 8, 7, 11], [2, 3], [2, 1], [0, 1, 1, 0], [2, 1], 1),
    ([1, 6, 6, 8], [3, 3], [2, 2], [0, 0, 0, 0], [1, 1], 1),
    ([1, 5, 6, 19], [2, 2], [1, 1], [1, 1, 0, 0], [1, 1], 0),
    ([1, 9, 9, 3], [3, 2], [3, 2], [1, 0, 1, 1], [2, 2], 1),
]


@pytest.mark.parametrize("shape, kernel, strides, pads, dilations, ceil_mode", WINDOWS)
def test_max_pool_nhwc(shape, kernel, strides, pads, dilations, ceil_mode):
    g, feeds = one_op("MaxPoolNhwc", [shape], kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations,
                      ceil_mode=ceil_mode)
    listing = check(g, feeds)
    (FileCheck().check("vectorized") if shape[-1] >= 8 else FileCheck().check_not("vectorized")).run(listing)  # lanes over C


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("shape, kernel, strides, pads, dilations, ceil_mode", WINDOWS)
def test_average_pool_nhwc(shape, kernel, strides, pads, dilations, ceil_mode, count_include_pad):
    g, feeds = one_op("AveragePoolNhwc", [shape], kernel_shape=kernel, strides=strides, pads=pads,
                      dilations=dilations, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    check(g, feeds)


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("channels", [8, 13])
def test_lrn_nhwc(size, channels):
    g, feeds = one_op("LRNNhwc", [[2, 3, 5, channels]], size=size, alpha=2e-3, beta=0.75, bias=1.5)
    check(g, feeds)


def test_global_average_pool_nhwc_vectorizes_over_channels():
    b = GraphBuilder()
    x = b.input("x", tensor([2, 7, 7, 20], "f32"))
    b.output(b.op("ReduceMean", x, b.const(np.array([1, 2], np.int64), "axes"), keepdims=1))
    feeds = {"x": RNG.standard_normal((2, 7, 7, 20)).astype(np.float32)}
    listing = check(b.build(), feeds)
    FileCheck().check("vectorized").run(listing)


# ---- ConvNhwc fallback (float64) and Linear's activations -------------------------------------

ACTS = ["none", "relu", "clip", "gelu_tanh", "gelu_erf", "silu", "hardswish"]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("residual", ["none", "before", "after"])
def test_conv_nhwc_fallback_float64(activation, residual):
    shapes = [[1, 6, 7, 6], [8, 3, 3, 3], [8], [1, 3, 4, 8] if residual != "none" else None]
    g, feeds = one_op("ConvNhwc", shapes, "f64", consts=(1, 2), strides=[2, 2], pads=[1, 0, 1, 2], dilations=[1, 1],
                      group=2, activation=activation, clip_min=-0.5, clip_max=0.7,
                      residual_after_activation=int(residual == "after"))
    check(g, feeds, end_to_end=True)


def test_conv_nhwc_fallback_runtime_weights_dilated_no_bias():
    g, feeds = one_op("ConvNhwc", [[2, 8, 8, 3], [5, 3, 2, 3]], "f64", strides=[1, 2], pads=[2, 1, 0, 1],
                      dilations=[2, 1], activation="relu")
    check(g, feeds, end_to_end=True)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_linear_activations(activation, dtype):
    g, feeds = one_op("Linear", [[3, 5, 16], [16, 11], [11]], dtype, consts=(1, 2), activation=activation,
                      clip_min=-0.25, clip_max=0.5)
    check(g, feeds, end_to_end=True)


# ---- vectorized row reductions -----------------------------------------------------------------

ROWS = [7, 8, 128, 384, 1000]


def extreme_rows(shape):
    """Random rows with +-80 spikes: exp overflows float32 unless the maximum is subtracted."""
    x = RNG.standard_normal(shape).astype(np.float32) * 4
    x.reshape(-1)[:: 13] = 80.0
    x.reshape(-1)[5:: 17] = -80.0
    return x


@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_rows(op, n):
    b = GraphBuilder()
    x = b.input("x", tensor([3, 2, n], "f32"))
    b.output(b.op(op, x, axis=-1))
    listing = check(b.build(), {"x": extreme_rows((3, 2, n))})
    if n >= 16:
        assert "rowmax" in listing or "vectorized" in listing


@pytest.mark.parametrize("n", ROWS)
def test_layer_norm_rows(n):
    g, feeds = one_op("LayerNormalization", [[4, n], [n], [n]], consts=(1, 2), axis=-1, epsilon=1e-5)
    feeds["x0"] = extreme_rows((4, n))
    check(g, feeds)


def test_layer_norm_over_two_trailing_axes():
    g, feeds = one_op("LayerNormalization", [[2, 3, 6, 7], [6, 7]], consts=(1,), axis=2, epsilon=1e-5)
    check(g, feeds)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceLogSumExp"])
@pytest.mark.parametrize("n, keepdims", [(7, 1), (128, 0), (1000, 1), (37, 0)])
def test_reduce_last_axis(op, n, keepdims):
    b = GraphBuilder()
    x = b.input("x", tensor([5, n], "f32"))
    b.output(b.op(op, x, b.const(np.array([-1], np.int64), "axes"), keepdims=keepdims))
    feeds = {"x": np.abs(RNG.standard_normal((5, n))).astype(np.float32) + 0.1}
    check(b.build(), feeds)


def test_reduce_over_trailing_axes_of_a_fused_producer():
    b = GraphBuilder()
    x = b.input("x", tensor([3, 4, 10], "f32"))
    y = b.op("ReduceSum", b.op("Exp", x), b.const(np.array([1, 2], np.int64), "axes"), keepdims=0)
    b.output(y)
    graph = b.build()
    feeds = {"x": RNG.standard_normal((3, 4, 10)).astype(np.float32)}
    model = compile_graph_for(fused(graph, list(graph.nodes)))  # one kernel: Exp inlined into the reduction
    got = model.run(feeds)
    assert model.manifest["kernels"] == 1
    assert_close(got[y.name], run_graph(graph, feeds)[y.name])


# ---- Attention ---------------------------------------------------------------------------------

def attention_graph(q_shape, kv_shape, mask_shape=None, mask_dtype="f32", **attrs):
    b = GraphBuilder()
    q = b.input("q", tensor(q_shape, "f32"))
    k = b.input("k", tensor(kv_shape, "f32"))
    v = b.input("v", tensor(kv_shape, "f32"))
    feeds = {n: RNG.standard_normal(s).astype(np.float32) for n, s in (("q", q_shape), ("k", kv_shape), ("v", kv_shape))}
    inputs = [q, k, v]
    if mask_shape is not None:
        inputs.append(b.input("mask", tensor(mask_shape, mask_dtype)))
        if mask_dtype == "bool":
            feeds["mask"] = RNG.random(mask_shape) > 0.3
        else:  # BERT's additive mask: 0 where attended, -10000 on padding
            feeds["mask"] = np.where(RNG.random(mask_shape) > 0.25, 0.0, -10000.0).astype(np.float32)
    b.output(b.op("Attention", *inputs, **attrs))
    return b.build(), feeds


@pytest.mark.parametrize("masked", [False, True])
def test_attention_bert_4d(masked):
    g, feeds = attention_graph([2, 12, 128, 32], [2, 12, 128, 32], [2, 1, 1, 128] if masked else None, scale=0.125)
    check(g, feeds)


@pytest.mark.parametrize("masked", [False, True])
def test_attention_bert_packed_heads(masked):
    g, feeds = attention_graph([2, 128, 384], [2, 128, 384], [2, 1, 1, 128] if masked else None, scale=0.125,
                               q_num_heads=12, kv_num_heads=12)
    check(g, feeds)


def test_attention_causal_grouped_query_bool_mask_shorter_than_keys():
    g, feeds = attention_graph([1, 4, 9, 8], [1, 2, 11, 8], [9, 10], "bool", is_causal=1)
    check(g, feeds)


def test_attention_softcap_and_window_default_scale():
    g, feeds = attention_graph([2, 2, 20, 16], [2, 2, 20, 16], softcap=3.0, left_window_size=4, right_window_size=2)
    check(g, feeds)


def test_attention_with_kv_cache_runs_on_the_loop_ir_rule():
    """A KV cache is not the fused kernel's case: the loop-IR rule reads the cache before
    the new keys (more cases in test_attention_kernel.py)."""
    b = GraphBuilder()
    q = b.input("q", tensor([1, 2, 4, 8], "f32"))
    k = b.input("k", tensor([1, 2, 4, 8], "f32"))
    v = b.input("v", tensor([1, 2, 4, 8], "f32"))
    pk = b.input("pk", tensor([1, 2, 3, 8], "f32"))
    pv = b.input("pv", tensor([1, 2, 3, 8], "f32"))
    b.output(b.node("Attention", [q, k, v, None, pk, pv], num_outputs=1)[0])
    graph = b.build()
    feeds = {name: RNG.standard_normal(shape).astype(np.float32)
             for name, shape in (("q", (1, 2, 4, 8)), ("k", (1, 2, 4, 8)), ("v", (1, 2, 4, 8)),
                                 ("pk", (1, 2, 3, 8)), ("pv", (1, 2, 3, 8)))}
    got = compile_graph_for(graph).run(feeds)
    want = run_graph(graph, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


# ---- vector exp / tanh / erf -------------------------------------------------------------------

def _math_graph(n):
    b = GraphBuilder()
    x = b.input("x", tensor([n], "f32"))
    for op in ("Exp", "Tanh", "Erf"):
        b.output(b.op(op, x, name=op.lower()))
    return b.build()


def test_vector_exp_tanh_erf_accuracy_and_ieee_edges():
    import math

    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.5, 88.72, 89.0, -87.0, -120.0], np.float32)
    xs = np.concatenate([np.linspace(-90, 90, 4000), np.geomspace(1e-20, 6, 2000), -np.geomspace(1e-20, 6, 2000),
                         specials]).astype(np.float32)
    xs = np.concatenate([xs, np.zeros((-xs.size) % 8, np.float32)])  # whole vectors: every value takes the SIMD path
    model, _ = native(_math_graph(xs.size))
    got = model.run({"x": xs})
    x64 = xs.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        want = {"exp": np.exp(x64), "tanh": np.tanh(x64), "erf": np.vectorize(math.erf)(x64)}
    for name, ref in want.items():
        y = got[name].astype(np.float64)
        with np.errstate(over="ignore"):
            normal = np.isfinite(ref.astype(np.float32)) & (np.abs(ref) > 1e-37)
        rel = np.abs(y[normal] - ref[normal]) / np.abs(ref[normal])
        assert rel.max() < 5e-7, (name, xs[normal][np.argmax(rel)], rel.max())
        assert np.all(np.abs(y[~normal & np.isfinite(y)] - np.nan_to_num(ref[~normal & np.isfinite(y)])) < 1.2e-38)
        assert np.isnan(y[np.isnan(xs)]).all()
    e = got["exp"]
    assert e[xs == np.inf].item() == np.inf and e[xs == -np.inf].item() == 0.0 and e[xs == 89.0].item() == np.inf
    assert np.isfinite(e[xs == np.float32(88.72)]).all()
    assert got["tanh"][xs == np.inf].item() == 1.0 and got["tanh"][xs == -np.inf].item() == -1.0
    assert got["erf"][xs == np.inf].item() == 1.0 and got["erf"][xs == -np.inf].item() == -1.0


def test_vector_math_makes_no_libm_call_per_lane():
    from compiler.codegen.llvm.toolchain import emit_assembly

    b = GraphBuilder()
    x = b.input("x", tensor([4, 384], "f32"))
    b.output(b.op("Softmax", b.op("Gelu", b.op("Tanh", x)), axis=-1))
    build = compile_graph(b.build(), cpu_target())
    asm = emit_assembly(build.llvm_ir, build.target)
    for fn in ("expf", "tanhf", "erff"):
        FileCheck().check_not(f"call\t{fn}").check_not(f"{fn}@PLT").run(asm)


def test_vector_log_accuracy_and_ieee_edges():
    """Within 3 ulp everywhere (subnormals included); log(0) = -inf, log(<0) = NaN, log(inf) = inf."""
    specials = np.array([0.0, -0.0, 1e-45, 1e-40, 1.1754944e-38, 1.0, np.sqrt(2), 2.0, 3.4e38, np.inf, -1.0,
                         -np.inf, np.nan], np.float32)
    rng = np.random.default_rng(0)
    xs = np.concatenate([specials, np.exp(rng.uniform(-103, 88.7, 20000)), rng.uniform(0.5, 2, 20000)]).astype(np.float32)
    xs = np.concatenate([xs, np.ones((-xs.size) % 16, np.float32)])
    b = GraphBuilder()
    b.output(b.op("Log", b.input("x", tensor([xs.size], "f32")), name="log"))
    model, _ = native(b.build())
    y = model.run({"x": xs})["log"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = np.log(xs.astype(np.float64))
    finite = np.isfinite(ref)
    ulps = np.abs(y[finite] - ref[finite]) / np.spacing(np.abs(ref[finite]).astype(np.float32))
    assert ulps.max() < 3, (xs[finite][np.argmax(ulps)], ulps.max())
    np.testing.assert_array_equal(y[~finite], ref[~finite].astype(np.float32))


def test_vector_pow_inline_where_it_is_accurate_and_libm_elsewhere():
    """x^y inline as exp(y log x) for positive x and |y log x| < 4 (LRN's x^-0.75), within
    4e-7 relative; a vector with a negative, zero or infinite base, or a larger product,
    takes powf per lane and keeps its exact semantics (odd powers of negatives)."""
    from compiler.codegen.llvm.toolchain import emit_assembly

    rng = np.random.default_rng(1)
    n = 4096
    x = rng.uniform(0.05, 3, n).astype(np.float32)
    y = rng.uniform(-1.5, 1.5, n).astype(np.float32)
    b = GraphBuilder()
    b.output(b.op("Pow", b.input("x", tensor([n], "f32")), b.input("y", tensor([n], "f32")), name="p"))
    graph = b.build()
    model, _ = native(graph)
    got = model.run({"x": x, "y": y})["p"]
    want = np.power(x.astype(np.float64), y.astype(np.float64))
    assert (np.abs(got - want) / want).max() < 4e-7
    x2 = x.copy()
    x2[:3] = [-2.0, 0.0, np.inf]
    y2 = np.full(n, 3.0, np.float32)
    y2[5] = 40.0  # 0.05..3 ** 40: far outside the inline range
    got = model.run({"x": x2, "y": y2})["p"]
    want = np.power(x2.astype(np.float64), y2.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=4e-7)
    assert got[0] == -8.0 and got[1] == 0.0 and got[2] == np.inf
    asm = emit_assembly(compile_graph(graph, cpu_target()).llvm_ir, cpu_target())
    FileCheck().check("powf").run(asm)  # the per-lane fallback exists, behind the inline path


# ---- cosine windows: folded when their size is a constant, so the rule is run here unfolded

@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
def test_cosine_window_rule_matches_the_reference(op, periodic, monkeypatch):
    import compiler.codegen.model_builder as MB

    monkeypatch.setattr(MB, "fold_constants", lambda graph: {c: c.const for c in graph.constants})
    b = GraphBuilder(fold_constants=False)
    b.output(b.op(op, b.const(np.array(10, np.int64)), periodic=periodic))
    graph = b.build()
    model, listing = native(graph)
    assert "cos" in listing  # computed by the kernel, not folded
    got, want = model.run({}), run_graph(graph, {})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7)
