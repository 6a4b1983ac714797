"""Extern kernels: the code generator calls the GEMM / conv microkernels for ConvNhwc,
Linear, MatMul and Gemm with constant weights, falls back to loop IR for everything else,
and the compiled results match the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.codegen.extern import EXTERN, ExternPlan
from compiler.codegen.llvm.build import NativeBuild, compile_graph, emit_modules
from compiler.codegen.model_builder import kernel_listing
from compiler.codegen.llvm.microkernels import GemmProblem
from compiler.codegen.llvm.target import cpu_target
from compiler.codegen.model_builder import LOOP_IR, build_program
from compiler.ir import GraphBuilder, run_graph, tensor

from filecheck import FileCheck

from native import compile_graph_for, fused, load_build

HOST = cpu_target()
needs_avx2 = pytest.mark.skipif(HOST.vector_bits < 256 or "fma" not in HOST.required,
                                reason="the microkernels need AVX2+FMA")
pytestmark = needs_avx2


def _rng(seed=0):
    return np.random.default_rng(seed)


def _check(graph, feeds, build=None):
    """Compiled outputs vs the interpreter's, fp32 tolerances scaled to the magnitudes."""
    got = (compile_graph_for(graph) if build is None else load_build(graph, build)).run(feeds)
    want = run_graph(graph, feeds)
    for name, ref in want.items():
        ref = np.asarray(ref)
        scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-4 * scale, err_msg=name)
    return got


def _paths(graph, target=HOST) -> dict:
    """op name (or node name) -> which path it took."""
    program = build_program(graph, target)
    return {n.name: kind for n, kind in program.paths.items()}, program


# ------------------------------------------------------------------ ConvNhwc

CONV_CASES = {
    # name: (N, H, W, C, M, kh, kw, strides, pads, dilations, group, extra attrs / flags)
    "1x1": (1, 8, 8, 16, 24, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, {}),
    "3x3_pad1": (2, 9, 7, 5, 12, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, {}),
    "7x7_s2_p3": (1, 20, 18, 3, 16, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1, {}),
    "11x11_s4_alexnet": (1, 35, 35, 3, 8, 11, 11, (4, 4), (2, 2, 2, 2), (1, 1), 1, {}),
    "grouped3": (1, 6, 6, 6, 9, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 3, {}),
    "depthwise": (2, 7, 9, 20, 20, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 20, {}),
    "depthwise_s2": (1, 10, 10, 13, 13, 3, 3, (2, 2), (1, 0, 1, 1), (1, 1), 13, {}),
    "dilation2": (1, 12, 11, 8, 10, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1, {}),
    "no_bias": (1, 6, 6, 4, 10, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, {"bias": False}),
    "residual_before": (1, 6, 6, 8, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1,
                        {"residual": True, "activation": "relu"}),
    "residual_after": (1, 6, 6, 8, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1,
                       {"residual": True, "activation": "relu", "residual_after_activation": 1}),
    **{f"act_{a}": (1, 5, 6, 7, 11, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, {"activation": a})
       for a in ("none", "relu", "clip", "gelu_tanh", "gelu_erf", "silu", "hardswish")},
}


def _conv_graph(n, h, w, c, m, kh, kw, strides, pads, dilations, group, extra, seed=0):
    rng = _rng(seed)
    extra = dict(extra)
    with_bias = extra.pop("bias", True)
    with_residual = extra.pop("residual", False)
    b = GraphBuilder()
    x = b.input("x", tensor([n, h, w, c], "f32"))
    weights = b.const((rng.standard_normal((m, c // group, kh, kw)) / np.sqrt(c // group * kh * kw)).astype(np.float32), "w")
    bias = b.const(rng.standard_normal(m).astype(np.float32), "bias") if with_bias else None
    attrs = dict(strides=list(strides), pads=list(pads), dilations=list(dilations), group=group, **extra)
    if extra.get("activation") == "clip":
        attrs.update(clip_min=-0.5, clip_max=0.75)
    inputs = [x, weights, bias]
    feeds = {"x": rng.standard_normal((n, h, w, c)).astype(np.float32)}
    if with_residual:
        # residual has the output's shape: infer it from a conv without one
        probe = GraphBuilder()
        out = probe.op("ConvNhwc", probe.input("x", tensor([n, h, w, c], "f32")), probe.const(weights.const), **attrs)
        r = b.input("r", tensor(list(out.type.shape), "f32"))
        feeds["r"] = rng.standard_normal(out.type.shape).astype(np.float32)
        inputs.append(r)
    y = b.op("ConvNhwc", *inputs, name="conv", **attrs)
    b.output(y)
    return b.build(), feeds


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_nhwc_runs_on_the_microkernels(case):
    graph, feeds = _conv_graph(*CONV_CASES[case])
    paths, program = _paths(graph)
    assert paths["conv"] == EXTERN
    assert all(isinstance(c.plan, ExternPlan) for c in program.calls)
    _check(graph, feeds)


def test_identical_convs_share_one_kernel():
    rng = _rng(1)
    b = GraphBuilder()
    h = b.input("x", tensor([1, 8, 8, 16], "f32"))
    for i in range(3):  # same problem, different weights: one function, three calls
        w = b.const((rng.standard_normal((16, 16, 3, 3)) / 12).astype(np.float32), f"w{i}")
        bias = b.const(rng.standard_normal(16).astype(np.float32), f"b{i}")
        h = b.op("ConvNhwc", h, w, bias, pads=[1, 1, 1, 1], activation="relu", name=f"conv{i}")
    b.output(h)
    graph = b.build()
    program = build_program(graph, HOST)
    assert len(program.calls) == 3 and len(program.kernels) == 1
    assert len({c.function for c in program.calls}) == 1
    _check(graph, {"x": rng.standard_normal((1, 8, 8, 16)).astype(np.float32)})


def test_loop_ir_kernels_of_other_element_types_are_not_shared():
    """Same loops over f32 and f64 are two functions (their canonical keys once renamed
    the dtype words away, and the f64 MatMul ran the f32 code)."""
    b = GraphBuilder()
    outs = [b.op("Neg", b.input(f"x_{dt}", tensor([4, 5], dt)), name=f"neg_{dt}") for dt in ("f32", "f64", "i32")]
    b.output(*outs)
    graph = b.build()
    program = build_program(graph, HOST)
    assert len({c.function for c in program.calls}) == 3
    rng = _rng(3)
    _check(graph, {"x_f32": rng.standard_normal((4, 5)).astype(np.float32), "x_f64": rng.standard_normal((4, 5)),
                   "x_i32": rng.integers(-9, 9, (4, 5)).astype(np.int32)})


# ------------------------------------------------------------------ Linear / MatMul / Gemm


def _linear_graph(a_shape, k, n, op="Linear", bias_shape=None, seed=0, **attrs):
    rng = _rng(seed)
    b = GraphBuilder()
    a = b.input("a", tensor(list(a_shape), "f32"))
    w = b.const((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), "w")
    inputs = [a, w]
    if bias_shape is not None:
        inputs.append(b.const(rng.standard_normal(bias_shape).astype(np.float32), "bias"))
    b.output(b.op(op, *inputs, name="mm", **attrs))
    return b.build(), {"a": rng.standard_normal(a_shape).astype(np.float32)}


@pytest.mark.parametrize("a_shape, k, n, op, bias_shape, attrs", [
    ((1, 256), 256, 100, "Linear", (100,), {}),  # batch-1 FC
    ((64, 48), 48, 64, "Linear", (1, 64), {"activation": "relu"}),
    ((13, 37), 37, 24, "Linear", (24,), {"activation": "gelu_erf"}),  # K not a multiple of 8
    ((9, 16), 16, 19, "Linear", (19,), {"activation": "clip", "clip_min": -0.2, "clip_max": 0.3}),  # N ragged
    ((5, 16), 16, 12, "Linear", (5, 12), {"activation": "silu"}),  # bias of the output's shape: residual
    ((5, 16), 16, 12, "Linear", None, {"activation": "gelu_tanh"}),
    ((2, 7, 48), 48, 40, "MatMul", None, {}),  # BERT-like [B, S, H] @ [H, N]
    ((64, 40), 40, 33, "MatMul", None, {}),
    ((40,), 40, 9, "MatMul", None, {}),  # a vector: one row
])
def test_linear_and_matmul_run_on_the_microkernels(a_shape, k, n, op, bias_shape, attrs):
    graph, feeds = _linear_graph(a_shape, k, n, op, bias_shape, **attrs)
    paths, _ = _paths(graph)
    assert paths["mm"] == EXTERN
    _check(graph, feeds)


def _gemm_graph(m, k, n, c_shape=None, c_const=True, seed=0, **attrs):
    rng = _rng(seed)
    b = GraphBuilder()
    a = b.input("a", tensor([k, m] if attrs.get("transA") else [m, k], "f32"))
    w_shape = (n, k) if attrs.get("transB") else (k, n)
    inputs = [a, b.const((rng.standard_normal(w_shape) / np.sqrt(k)).astype(np.float32), "w")]
    feeds = {"a": rng.standard_normal(a.type.shape).astype(np.float32)}
    if c_shape is not None:
        c = rng.standard_normal(c_shape).astype(np.float32)
        if c_const:
            inputs.append(b.const(c, "c"))
        else:
            inputs.append(b.input("c", tensor(list(c_shape), "f32")))
            feeds["c"] = c
    b.output(b.op("Gemm", *inputs, name="gemm", **attrs))
    return b.build(), feeds


@pytest.mark.parametrize("m, k, n, c_shape, c_const, attrs", [
    (1, 64, 10, (10,), True, {"transB": 1}),
    (64, 37, 19, (1, 19), True, {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    (6, 20, 30, (), True, {"beta": -1.5}),  # scalar C
    (6, 20, 30, (6, 1), True, {"alpha": 2.0}),  # a column C: broadcast to a residual
    (6, 20, 30, (6, 30), True, {"beta": 0.25}),
    (6, 20, 30, (30,), False, {}),  # run-time C: the bias pointer
    (6, 20, 30, (6, 30), False, {"transB": 1}),  # run-time full C: the residual pointer
    (7, 9, 11, None, True, {"alpha": 3.0}),
])
def test_gemm_runs_on_the_microkernels(m, k, n, c_shape, c_const, attrs):
    graph, feeds = _gemm_graph(m, k, n, c_shape, c_const, **attrs)
    paths, _ = _paths(graph)
    assert paths["gemm"] == EXTERN
    _check(graph, feeds)


def test_unsupported_cases_fall_back_to_loop_ir():
    rng = _rng(2)
    b = GraphBuilder()
    a = b.input("a", tensor([6, 8], "f32"))
    w_runtime = b.input("w", tensor([8, 5], "f32"))
    a64 = b.input("a64", tensor([6, 8], "f64"))
    w64 = b.const(rng.standard_normal((8, 5)), "w64")
    b.output(b.op("MatMul", a, w_runtime, name="runtime_b"),
             b.op("MatMul", a64, w64, name="float64"),
             b.op("Gemm", b.op("Transpose", a, perm=[1, 0], name="at"), b.const(rng.standard_normal((8, 5)).astype(np.float32)),
                  transA=1, name="trans_a"),
             b.op("Gemm", a, b.const(rng.standard_normal((8, 5)).astype(np.float32)), b.input("c", tensor([6, 5], "f32")),
                  beta=0.5, name="scaled_runtime_c"))
    graph = b.build()
    paths, _ = _paths(graph)
    for name in ("runtime_b", "float64", "trans_a", "scaled_runtime_c"):
        assert paths[name] == LOOP_IR, name
    feeds = {"a": rng.standard_normal((6, 8)).astype(np.float32), "w": rng.standard_normal((8, 5)).astype(np.float32),
             "a64": rng.standard_normal((6, 8)), "c": rng.standard_normal((6, 5)).astype(np.float32)}
    _check(graph, feeds)


def test_targets_without_avx2_fall_back_to_loop_ir():
    graph, feeds = _conv_graph(*CONV_CASES["residual_after"])
    paths, _ = _paths(graph, cpu_target({"mcpu": "x86-64-v2"}))
    assert paths["conv"] == LOOP_IR
    _check(graph, feeds, build=compile_graph(graph, cpu_target({"mcpu": "x86-64-v2"})))
    graph, _ = _linear_graph((4, 16), 16, 8, "MatMul")
    paths, _ = _paths(graph, cpu_target({"mcpu": "x86-64-v2"}))
    assert paths["mm"] == LOOP_IR


# ------------------------------------------------------------------ whole programs


def _nhwc_model(seed=0):
    """NCHW image -> NHWC -> conv+relu -> conv + residual -> depthwise -> NCHW -> pooled -> Linear."""
    rng = _rng(seed)
    b = GraphBuilder()
    image = b.input("image", tensor([2, 3, 16, 16], "f32"))
    h = b.op("Transpose", image, perm=[0, 2, 3, 1], name="to_nhwc")

    def conv(x, cin, cout, k, name, **attrs):
        w = b.const((rng.standard_normal((cout, cin // attrs.get("group", 1), k, k)) / np.sqrt(cin * k * k)).astype(np.float32))
        bias = b.const(rng.standard_normal(cout).astype(np.float32) * 0.1)
        return b.op("ConvNhwc", x, w, bias, pads=[k // 2] * 4, name=name, **attrs)

    c1 = conv(h, 3, 16, 3, "conv1", activation="relu", strides=[2, 2])
    c2 = conv(c1, 16, 16, 3, "conv2")
    c3 = b.op("ConvNhwc", c2, b.const((rng.standard_normal((16, 16, 1, 1)) / 4).astype(np.float32)), None, c1,
              activation="relu", name="conv3")
    c4 = conv(c3, 16, 16, 3, "dw", group=16, activation="clip")
    back = b.op("Transpose", c4, perm=[0, 3, 1, 2], name="to_nchw")
    pooled = b.op("ReduceMean", back, b.const(np.array([2, 3], np.int64)), keepdims=0, name="pool")
    w = b.const((rng.standard_normal((16, 10)) / 4).astype(np.float32))
    logits = b.op("Linear", pooled, w, b.const(rng.standard_normal(10).astype(np.float32)), name="fc")
    b.output(b.op("Softmax", logits, axis=-1, name="probs"))
    graph = b.build()
    return graph, {"image": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}


def test_hand_built_nhwc_model_mixes_extern_and_loop_ir_kernels():
    graph, feeds = _nhwc_model()
    paths, program = _paths(graph)
    assert [paths[n] for n in ("conv1", "conv2", "conv3", "dw", "fc")] == [EXTERN] * 5
    assert paths["to_nhwc"] == paths["pool"] == paths["probs"] == LOOP_IR
    listing = kernel_listing(program)
    FileCheck().check("kernel k0_transpose(").check("extern k1_convnhwc(").run(listing)
    _check(graph, feeds)


def test_fusion_group_is_split_around_the_extern_node():
    graph, feeds = _nhwc_model(seed=3)
    graph = fused(graph, list(graph.nodes))  # everything in one kernel: the externs cut it into pieces
    assert [n.op for n in graph.nodes] == ["FusedKernel"]
    paths, program = _paths(graph)
    assert sum(1 for c in program.calls if isinstance(c.plan, ExternPlan)) == 5
    assert paths["fc"] == EXTERN and paths["pool"] == LOOP_IR
    _check(graph, feeds)


def test_externs_and_loop_ir_kernels_link_across_split_modules():
    from compiler.codegen.llvm.toolchain import emit_object, link_shared

    graph, feeds = _nhwc_model(seed=5)
    program = build_program(graph, HOST)
    parts = 3
    assert len(program.kernels) >= 2 * parts
    texts = emit_modules(program, parts)
    assert len(texts) == parts and sum("cm_parallel" in t for t in texts) >= 2
    library = link_shared([emit_object(t, HOST) for t in texts])
    build = NativeBuild(library, HOST, "", program)
    _check(graph, feeds, build=build)
    _check(graph, feeds)  # and compile_graph's own split (one module per core where there are enough kernels)


def test_profiler_times_extern_kernels(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from compiler import bench
    from compiler.codegen.llvm.extern import ExternKernel

    emitted = []
    real_emit = ExternKernel.emit

    def spy(self, mb):  # the real emission, noting which kernels went through it
        emitted.append(self.name)
        return real_emit(self, mb)

    monkeypatch.setattr(ExternKernel, "emit", spy)

    rng = _rng(4)
    w1 = rng.standard_normal((32, 20)).astype(np.float32)
    w2 = rng.standard_normal((10, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Gemm", ["r", "w2"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    events = bench.profile_native(str(path), None, {"x": rng.standard_normal((4, 20)).astype(np.float32)}, runs=2,
                                  threads=1)
    # the graph passes may have turned Gemm + Relu into Linear(activation=relu): either way two
    # matrix-product calls per run, each timed and credited with its FLOPs
    products = [e for e in events if any(op.startswith(("Gemm", "Linear")) for op in e.ops)]
    assert len(products) == 4 and all(e.flops > 0 and e.dur_ns > 0 for e in products), events
    assert {e.name for e in products} == set(emitted) and len(emitted) == 2


# ------------------------------------------------------------------ Concat written in place


def _branchy_graph(seed=0, spoil=None):
    """An Inception-style block: three convs on one input concatenated on the channels,
    then a conv over the concatenation (so it lives in the arena) and a Relu of it as a
    second graph output. `spoil` makes one branch ineligible for writing in place."""
    rng = _rng(seed)
    b = GraphBuilder()
    x = b.input("x", tensor([2, 9, 8, 6], "f32"))

    def conv(inp, cout, k, name, cin=6, **attrs):
        w = b.const((rng.standard_normal((cout, cin // attrs.get("group", 1), k, k)) / np.sqrt(cin * k * k)).astype(np.float32))
        bias = b.const(rng.standard_normal(cout).astype(np.float32))
        return b.op("ConvNhwc", inp, w, bias, *attrs.pop("extra", []), pads=[k // 2] * 4, name=name, **attrs)

    widths = (6, 6, 6) if spoil == "axis" else (5, 12, 7)  # a concat on H needs equal channels
    y1 = conv(x, widths[0], 1, "b1", activation="relu")
    y2 = conv(x, widths[1], 3, "b2")
    if spoil == "depthwise":
        y3 = conv(x, 6, 3, "b3", group=6)
    elif spoil == "residual":
        y3 = conv(x, 6, 3, "b3", extra=[x])
    else:
        y3 = b.op("ConvNhwc", x, b.const(rng.standard_normal((widths[2], 6, 5, 5)).astype(np.float32) / 10), pads=[2, 2, 2, 2],
                  name="b3")
    z = b.op("Concat", y1, y2, y3, axis=3 if spoil != "axis" else 1, name="cat")
    outs = [b.op("Relu", z, name="relu")]
    if spoil != "axis":
        outs.append(conv(z, 4, 3, "after", cin=z.type.shape[-1]))
    if spoil == "conv_reader":  # a target's own kernel reads its input packed
        outs.append(conv(y2, 4, 1, "other_reader", cin=widths[1]))
    b.output(*outs)
    return b.build(), {"x": rng.standard_normal((2, 9, 8, 6)).astype(np.float32)}


def test_concat_of_convs_is_written_in_place():
    from compiler.codegen.model_builder import IN_PLACE

    graph, feeds = _branchy_graph()
    paths, program = _paths(graph)
    assert paths["cat"] == IN_PLACE
    assert not any("concat" in c.plan.kernel.name for c in program.calls)
    sliced = [c.plan.kernel.problem for c in program.calls if c.plan.kernel.name.split("_")[-1] == "convnhwc"
              and isinstance(c.plan.kernel.problem, GemmProblem)]
    assert [p.out_stride for p in sliced] == [5 + 12 + 7] * 3  # the branches store rows at the concatenation's width
    _check(graph, feeds)


def test_concat_written_in_place_into_a_graph_output():
    from compiler.codegen.model_builder import IN_PLACE

    rng = _rng(7)
    b = GraphBuilder()
    x = b.input("x", tensor([1, 5, 5, 8], "f32"))
    ys = [b.op("ConvNhwc", x, b.const(rng.standard_normal((c, 8, 1, 1)).astype(np.float32)), name=f"c{c}") for c in (3, 9)]
    b.output(b.op("Concat", *ys, axis=-1, name="cat"))
    graph = b.build()
    paths, program = _paths(graph)
    assert paths["cat"] == IN_PLACE and {s.offset for c in program.calls for s in c.storages} == {0, 3 * 4}
    _check(graph, {"x": rng.standard_normal((1, 5, 5, 8)).astype(np.float32)})


@pytest.mark.parametrize("shared", [True, False], ids=["equal_weights", "distinct_weights"])
def test_equal_packed_weights_are_stored_once(shared):
    """Two products whose weights hold equal bytes (an unrolled recurrent layer's R at every
    step) store one packed copy, so it stays in cache; distinct weights keep their own."""
    rng = _rng(4)
    w = rng.standard_normal((64, 96)).astype(np.float32)
    b = GraphBuilder()
    x = b.input("x", tensor([1, 64], "f32"))
    h = b.op("MatMul", x, b.const(w.copy()), name="first")
    y = b.op("MatMul", b.op("Slice", h, b.const(np.array([0])), b.const(np.array([64])), b.const(np.array([1])),
                            name="cut"), b.const(w.copy() if shared else w[::-1].copy()), name="second")
    b.output(y)
    graph = b.build()
    paths, program = _paths(graph)
    assert paths["first"] == EXTERN and paths["second"] == EXTERN
    packed = 64 * 96 * 4
    assert (len(program.weights) < 2 * packed) == shared, len(program.weights)
    _check(graph, {"x": rng.standard_normal((1, 64)).astype(np.float32)})


def _stack_graph(leading: tuple, axis: int, from_input: bool = False):
    """Three kernels' outputs stacked along `axis` (every axis before it of size 1), the
    first also read by another kernel, and the stack read by one more."""
    rng = _rng(3)
    b = GraphBuilder()
    x = b.input("x", tensor([*leading, 3, 5], "f32"))
    parts = [x if from_input else b.op("Relu", x, name="a"), b.op("Sigmoid", x, name="b"), b.op("Tanh", x, name="c")]
    z = b.op("Concat", *parts, axis=axis, name="cat")
    b.output(b.op("Exp", z, name="after"), b.op("Neg", parts[0], name="other_reader"))
    return b.build(), {"x": rng.standard_normal((*leading, 3, 5)).astype(np.float32)}


@pytest.mark.parametrize("leading, axis", [((), 0), ((1,), 1), ((1, 1), 2)], ids=["axis0", "after_1", "after_1x1"])
def test_stacking_kernel_outputs_is_written_in_place(leading, axis):
    """Each input of a Concat whose earlier axes are all 1 is a contiguous slab of its
    output: its kernel stores it there, and its other reader reads it there."""
    from compiler.codegen.model_builder import IN_PLACE

    graph, feeds = _stack_graph(leading, axis)
    paths, program = _paths(graph)
    assert paths["cat"] == IN_PLACE
    assert not any("concat" in c.plan.kernel.name for c in program.calls)
    _check(graph, feeds)


def test_stacking_a_graph_input_is_copied():
    graph, feeds = _stack_graph((), 0, from_input=True)
    paths, _ = _paths(graph)
    assert paths["cat"] == LOOP_IR
    _check(graph, feeds)


@pytest.mark.parametrize("second_reader", [False, True])
def test_loop_ir_branches_write_their_channel_slices_too(second_reader):
    """Branches computed by loop-IR kernels (a pool with a fused Relu, an elementwise op)
    store their rows at the Concat's width beside a conv's; a loop-IR kernel that reads a
    branch too reads it there, rows apart."""
    from compiler.codegen.model_builder import IN_PLACE

    rng = _rng(8)
    b = GraphBuilder()
    x = b.input("x", tensor([2, 7, 6, 5], "f32"))
    conv = b.op("ConvNhwc", x, b.const(rng.standard_normal((4, 5, 3, 3)).astype(np.float32) / 5), pads=[1, 1, 1, 1],
                name="conv")
    pooled = b.op("Relu", b.op("MaxPoolNhwc", x, kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="pool"), name="relu")
    gate = b.op("Sigmoid", x, name="gate")
    z = b.op("Concat", conv, pooled, gate, axis=3, name="cat")
    outs = [b.op("Exp", z, name="after")]
    if second_reader:
        outs.append(b.op("Neg", pooled, name="other_reader"))
    b.output(*outs)
    graph = b.build()
    paths, _ = _paths(graph)
    assert paths["cat"] == IN_PLACE
    _check(graph, {"x": rng.standard_normal((2, 7, 6, 5)).astype(np.float32)})


@pytest.mark.parametrize("reader", ["elementwise", "row_reduction"])
def test_a_chain_of_concats_lives_in_the_last_one(reader):
    """A DenseNet block: each layer concatenates the previous concatenation with a new conv
    output, and each concatenation is also read by the next layer (a BN-Relu, here an
    affine map and a Relu, or a scaling by a mean over the last two axes, whose rows are
    not contiguous there). All of them
    live in the last concatenation's buffer: the convs store their channels there, the
    readers read the prefixes there, rows apart, and no Concat copies anything."""
    from compiler.codegen.model_builder import IN_PLACE

    rng = _rng(9)
    b = GraphBuilder()
    x = b.input("x", tensor([1, 6, 5, 8], "f32"))
    z = b.op("MaxPoolNhwc", x, kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="pool")
    for i in range(3):
        c = z.type.shape[-1]
        if reader == "elementwise":
            pre = b.op("Relu", b.op("Add", b.op("Mul", z, b.const(rng.standard_normal(c).astype(np.float32))),
                                    b.const(rng.standard_normal(c).astype(np.float32))), name=f"bn{i}")
        else:
            pre = b.op("Mul", z, b.op("ReduceMean", z, b.const(np.array([2, 3], np.int64)), name=f"mean{i}"), name=f"scale{i}")
        new = b.op("ConvNhwc", pre, b.const(rng.standard_normal((4, c, 3, 3)).astype(np.float32) / c), pads=[1, 1, 1, 1],
                   name=f"conv{i}")
        z = b.op("Concat", z, new, axis=3, name=f"cat{i}")
    b.output(b.op("Relu", z, name="out"))
    graph = b.build()
    paths, program = _paths(graph)
    assert [paths[f"cat{i}"] for i in range(3)] == [IN_PLACE] * 3
    assert not any("concat" in c.plan.kernel.name for c in program.calls)
    _check(graph, {"x": rng.standard_normal((1, 6, 5, 8)).astype(np.float32)})


@pytest.mark.parametrize("spoil", ["depthwise", "residual", "conv_reader", "axis"])
def test_concat_is_copied_when_a_branch_cannot_write_in_place(spoil):
    graph, feeds = _branchy_graph(seed=1, spoil=spoil)
    paths, _ = _paths(graph)
    assert paths["cat"] == LOOP_IR and paths["b1"] == EXTERN
    _check(graph, feeds)


@pytest.mark.parametrize("a_shape, k, n", [((0, 8), 8, 5), ((3, 0), 0, 5), ((3, 8), 8, 0)])
def test_empty_products_leave_the_microkernels_out(a_shape, k, n):
    graph, feeds = _linear_graph(a_shape, k, n, "MatMul")
    paths, _ = _paths(graph)
    assert paths["mm"] == LOOP_IR
    got = _check(graph, feeds)
    assert got["mm"].shape == a_shape[:-1] + (n,)
