"""float16 chains (`passes.chain_narrow` under precision="fp16"): on the CPU fp16 is a storage
type for activations too. An fp16 product read only by fp16 products writes float16
(`GemmProblem.out_f16`, rounded once in the epilogue), and its readers widen float16 as
they pack it (`a_f16`); arithmetic stays float32.

Kernels (hosts with F16C; AVX-512 and AVX2 code): GEMMs with one-lane edge vectors and
convs with padding taps, odd channel counts and a float32 residual, against the float64
product of the float16 operands rounded once to float16; the bytes past the output are
never written. Schedules: a float16 A needs pack_a and a float16 C keeps K whole, in the
defaults and in every candidate the tuner times. Graphs: which values narrow (only into
readers that widen float16 cheaply, `passes.widen_products.reads_float16_cheaply`),
compiled equal to the reference of the lowered graph, the manifest naming the float16
values; a float16 model's products write float16 and read it where that is cheap.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.codegen.llvm.microkernels import AOperand, Epilogue, GemmProblem, default_schedule, emit_gemm, pack_weights
from compiler.codegen.llvm.microkernels import epilogue as E
from compiler.codegen.llvm.microkernels.build import compile_module, new_module
from compiler.codegen.llvm.microkernels.conv import ConvProblem, emit_conv
from compiler.codegen.llvm.microkernels.gemm import k_chunks
from compiler.codegen.llvm.target import cpu_target
from compiler.ir import dtypes
from compiler.ir.errors import CompilerError
from compiler.ir.interpreter import run_graph
from compiler.passes.core import PassContext

from test_amx_kernels import rand
from test_bf16_chain import _dense_block_model, _init, assert_only_the_first_conv_narrows
from test_microkernels import conv_reference

GEMMS = [(33, 17, 100), (5, 40, 64), (40, 33, 70)]  # 17 and 33 columns: one-lane edge vectors
CONVS = {
    "3x3_pad_37ch": ConvProblem(1, 37, 9, 9, 33, 3, 3, (1, 1), (1, 1, 1, 1)),
    "3x3_s2_pad_20ch": ConvProblem(2, 20, 11, 11, 24, 3, 3, (2, 2), (1, 1, 1, 1)),
    "1x1_residual_relu": ConvProblem(2, 64, 6, 6, 40, 1, 1, epilogue=Epilogue(bias=True, residual=True,
                                                                              activation="relu")),
}
NARROW = {"fp16": True, "a_f16": True, "out_f16": True}
SENTINEL = 0x7E7E  # bytes past the output: edge stores must leave them
TARGETS = {"avx512": {"mcpu": "sapphirerapids"}, "avx2": {"mcpu": "haswell"}}


def _f16_host():
    target = cpu_target()
    if "f16c" not in target.required or "avx512f" not in target.required:
        pytest.skip("host has no F16C and AVX-512")
    return target


def f16(x):
    return np.asarray(x).astype(np.float16).astype(np.float64)


@pytest.fixture(scope="module", params=sorted(TARGETS))
def chain_lib(request):
    _f16_host()
    target = cpu_target(TARGETS[request.param])
    mod, kernels = new_module(), {}
    for m, n, k in GEMMS:
        prob = GemmProblem(AOperand.matrix(m, k), n, **NARROW)
        name = f"g_{m}_{n}_{k}"
        kernels[name] = (prob, default_schedule(target, prob))
        emit_gemm(mod, name, prob, kernels[name][1])
    for key, conv in CONVS.items():
        kernels[key] = emit_conv(mod, key, dataclasses.replace(conv, **NARROW), target)
    return compile_module(mod, target), kernels


def _with_tail(shape) -> tuple[np.ndarray, np.ndarray]:
    """A float16 output of `shape` followed by 32 sentinel values, and its view."""
    size = int(np.prod(shape))
    buf = np.full(size + 32, SENTINEL, np.uint16)
    return buf, buf[:size].view(np.float16).reshape(shape)


def _close(got: np.ndarray, want: np.ndarray, k: int) -> None:
    """Rounded once to float16: within one float16 step of the float64 result (float32
    summation order can move a value across a rounding boundary), and mostly exact."""
    got = got.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=2 ** -10, atol=1e-5 * np.sqrt(k))
    assert np.mean(got == f16(want.astype(np.float32))) > 0.95


@pytest.mark.parametrize("shape", GEMMS, ids=lambda s: "x".join(map(str, s)))
def test_fp16_chain_gemm_reads_and_writes_float16(chain_lib, shape):
    library, kernels = chain_lib
    m, n, k = shape
    prob, sched = kernels[f"g_{m}_{n}_{k}"]
    assert sched.pack_a and len(k_chunks(prob.a, sched.kc)) == 1
    rng = np.random.default_rng(m + n + k)
    a, b = rand(rng, m, k).astype(np.float16), rand(rng, k, n)
    buf, y = _with_tail((m, n))
    packed = pack_weights(b, sched, prob)  # held: ctypes takes only its address
    library.function(f"g_{m}_{n}_{k}")(a.ctypes.data, packed.ctypes.data, buf.ctypes.data, None, None, None, None, 2)
    _close(y, a.astype(np.float64) @ f16(b), k)
    assert (buf[m * n:] == SENTINEL).all()


@pytest.mark.parametrize("key", sorted(CONVS))
def test_fp16_chain_conv_reads_and_writes_float16(chain_lib, key):
    """Padding taps read float16 zeros; the epilogue (bias, float32 residual, relu) runs in
    float32 before the one rounding."""
    library, kernels = chain_lib
    kernel = kernels[key]
    c = kernel.problem
    rng = np.random.default_rng(c.in_c * 3 + c.out_c)
    x = rand(rng, c.batch, c.in_h, c.in_w, c.in_c).astype(np.float16)
    w = rand(rng, c.out_c, c.in_c // c.groups, c.kh, c.kw)
    bias, res = rand(rng, c.out_c), rand(rng, c.batch, c.out_h, c.out_w, c.out_c)
    buf, y = _with_tail(res.shape)
    packed = kernel.pack(w)
    library.function(key)(x.ctypes.data, packed.ctypes.data, buf.ctypes.data, bias.ctypes.data,
                          None, None, res.ctypes.data, 2)
    want = E.reference(c.epilogue, conv_reference(x.astype(np.float64), f16(w), c), residual=res, bias=bias)
    _close(y, want, c.in_c // c.groups * c.kh * c.kw)
    assert (buf[y.size:] == SENTINEL).all()


def test_fp16_chain_schedules_pack_a_and_keep_k_whole():
    """A float16 A is widened where it is packed and a float16 C has no room for partial
    sums: the defaults and every tuning candidate pack A and keep K in one chunk, and a
    schedule that does neither is refused by name; narrow A or C belong to fp16 problems."""
    from compiler.autotune import space

    target = cpu_target(TARGETS["avx512"])
    prob = GemmProblem(AOperand.matrix(100, 1200), 96, fp16=True)
    assert max(len(k_chunks(prob.a, s.kc)) for s in space.gemm_candidates(prob, target)) > 1
    narrow = dataclasses.replace(prob, a_f16=True, out_f16=True)
    candidates = space.gemm_candidates(narrow, target)
    assert candidates and all(s.pack_a and len(k_chunks(narrow.a, s.kc)) == 1 for s in candidates)
    sched = default_schedule(target, narrow)
    with pytest.raises(CompilerError, match="float16 output needs K in one chunk"):
        emit_gemm(new_module(), "g", narrow, dataclasses.replace(sched, kc=128))
    with pytest.raises(CompilerError, match="widened as it is packed"):
        emit_gemm(new_module(), "g", dataclasses.replace(narrow, out_f16=False), dataclasses.replace(sched, pack_a=0))
    with pytest.raises(CompilerError, match="belong to float16 problems"):
        emit_gemm(new_module(), "g", GemmProblem(AOperand.matrix(20, 64), 64, out_f16=True),
                  default_schedule(target, GemmProblem(AOperand.matrix(20, 64), 64)))


# ---------------------------------------------------------------- graphs

def _lowered(model, level=2):
    return parse_target("llvm").backend.optimize(import_model(model), level, PassContext(verify=True),
                                                 BuildOptions(precision="fp16"))


def _chain_model() -> onnx.ModelProto:
    """conv1 (3x3) -> relu -> max pool -> conv2 (1x1) -> conv3 (3x3) -> conv4 (1x1) + conv3
    (a residual Add) -> y: which values narrow and which must not."""
    rng = np.random.default_rng(3)
    inits = [_init(rng, "w1", (32, 5, 3, 3)), _init(rng, "w2", (24, 32, 1, 1)), _init(rng, "w3", (16, 24, 3, 3)),
             _init(rng, "w4", (16, 16, 1, 1))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"]),
             helper.make_node("Conv", ["c2", "w3"], ["c3"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c3", "w4"], ["c4"]), helper.make_node("Add", ["c4", "c3"], ["y"])]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 14, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fp16_chain_narrows_only_values_every_reader_widens_cheaply():
    """conv1 (through the pool) hands the pointwise conv2 float16; conv2's reader is a 3x3
    conv over 24 channels, which would widen float16 once per tap (`reads_float16_cheaply`),
    and conv3 is read by a residual Add: both stay float32."""
    assert_only_the_first_conv_narrows(_lowered(_chain_model()), dtypes.float16)


def test_fp16_chain_compiled_equals_the_lowered_reference():
    _f16_host()
    model = _chain_model()
    x = np.random.default_rng(0).standard_normal((2, 5, 14, 14)).astype(np.float32)
    cm = compiler.compile(model, precision="fp16")
    got = cm.run({"x": x})["y"]
    want = run_graph(_lowered(model), {"x": x})["y"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(cm.manifest["precision"]["float16_values"]) == 2  # conv1's output and the pool's
    fp32 = compiler.compile(model).run({"x": x})["y"]
    cosine = float(np.sum(got * fp32) / np.linalg.norm(got) / np.linalg.norm(fp32))
    assert cosine > 0.9999


def test_fp16_elementwise_outputs_read_only_by_fp16_products_are_rounded_in_their_kernel():
    """The ReLU that only the pointwise fp16 conv reads gets a Cast to float16 that fusion
    ends the ReLU's kernel with (the one the 3x3 conv reads does not); compiled equals the
    lowered reference."""
    model = _dense_block_model()
    graph = _lowered(model)
    casts = [n for n in graph.nodes if n.op == "Cast"]
    producers = {n.outputs[0]: n for n in graph.nodes}
    assert [producers[n.inputs[0]].op for n in casts] == ["Relu"]
    assert casts[0].attrs["to"] is dtypes.float16
    readers = [n for n in graph.nodes if casts[0].outputs[0] in n.inputs]
    assert [n.op for n in readers] == ["ConvNhwc"] and readers[0].inputs[1].const.shape[2:] == (1, 1)
    fused = _lowered(model, 3)
    bodies = [[m.op for m in n.attrs["body"].nodes] for n in fused.nodes if n.op == "FusedKernel"]
    assert not [ops for ops in bodies if ops == ["Cast"]], bodies
    _f16_host()
    feeds = {"image": np.random.default_rng(1).standard_normal((1, 3, 10, 10)).astype(np.float32)}
    got = compiler.compile(model, precision="fp16").run(feeds)["y"]
    np.testing.assert_allclose(got, run_graph(graph, feeds)["y"], rtol=1e-5, atol=1e-5)


def _float16_model() -> onnx.ModelProto:
    """A float16 model: conv -> relu -> conv (+ residual) -> flatten -> gemm."""
    rng = np.random.default_rng(7)

    def init(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float16),
                                       name)
    inits = [init("w1", (24, 5, 3, 3)), init("w2", (24, 24, 3, 3)), init("wg", (24 * 25, 10)),
             numpy_helper.from_array(rng.standard_normal(24).astype(np.float16), "b1")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"]),
             helper.make_node("Flatten", ["s"], ["f"]), helper.make_node("Gemm", ["f", "wg"], ["y"])]
    graph = helper.make_graph(nodes, "f16", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 5, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_float16_model_products_write_float16_and_read_it_where_cheap():
    """A float16 model's products write float16 (no Cast behind), and read it as it is where
    that is cheap (the 3x3 conv over 5 channels packs its rows anyway, the dense layer); the
    3x3 conv over 24 channels reads a float32 copy. Computed as the reference does: within
    float16 rounding of it."""
    model = _float16_model()
    graph = parse_target("llvm").backend.optimize(import_model(model), 2, PassContext(verify=True), BuildOptions())
    products = [n for n in graph.nodes if n.op in ("ConvNhwc", "Linear")]
    assert [n.op for n in products] == ["ConvNhwc", "ConvNhwc", "Linear"]
    for n in products:
        assert n.outputs[0].type.dtype is dtypes.float16
        assert n.attrs["compute"] is dtypes.float16 and n.attrs["out_dtype"] is dtypes.float16
    assert [n.inputs[0].type.dtype for n in products] == [dtypes.float16, dtypes.float32, dtypes.float16]
    _f16_host()
    x = np.random.default_rng(2).standard_normal((2, 5, 5, 5)).astype(np.float16)
    backend, target = parse_target("llvm").backend, parse_target("llvm")
    plan = backend.plan(import_model(model), target, BuildOptions())
    assert plan.details["nodes_by_path"].get("extern", 0) == 3, plan.details["nodes_by_path"]  # all on the microkernels
    got = compiler.compile(model).run({"x": x})["y"]
    want = compiler.compile(model, target="reference").run({"x": x})["y"]
    assert got.dtype == np.float16
    # the fused residual Add rounds once where the reference rounds the conv first: within
    # two float16 steps at the output's scale (onnxruntime differs from the reference as much)
    want = want.astype(np.float32)
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=0, atol=2 ** -9 * np.abs(want).max())
