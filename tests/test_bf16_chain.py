"""bfloat16 chains (`passes.chain_narrow`): a bf16 product read only by bf16 products writes
bfloat16 (`GemmProblem.out_bf16`), and its readers take bfloat16 as it is (`a_bf16`).

Kernels (hosts with AVX512-BF16; the tile variants with AMX): the vector kernel and the
tile shapes, GEMMs with one-lane edge vectors and convs packed through the staging rows
(3 or 37 channels) and straight into the tile layout (32 channels), against the float64
product of the bfloat16 operands rounded once to bfloat16; the bytes past the output are
never written. Graphs (any host for the pass, AVX512-BF16 to run): which values narrow,
pools on bfloat16, what stays float32 (graph outputs, residual reads), and compiled equal
to the reference of the lowered graph.
"""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.api import import_model
from compiler.backends import BuildOptions, parse_target
from compiler.codegen.llvm.microkernels import AOperand, Epilogue, GemmProblem, default_schedule, emit_gemm, pack_weights
from compiler.codegen.llvm.microkernels.build import compile_module, new_module
from compiler.codegen.llvm.microkernels.conv import ConvProblem, emit_conv
from compiler.codegen.llvm.target import cpu_target
from compiler.ir import dtypes
from compiler.ir.errors import CompilerError
from compiler.ir.interpreter import run_graph
from compiler.passes.core import PassContext

from test_amx_kernels import _tile_schedule, _vector_schedule, bf16, rand
from test_microkernels import conv_reference

BF = ml_dtypes.bfloat16
GEMMS = [(33, 17, 100), (5, 40, 64), (40, 33, 70)]  # 17 and 33 columns: one-lane edge vectors
CONVS = {
    "3x3_pad_37ch": ConvProblem(1, 37, 9, 9, 33, 3, 3, (1, 1), (1, 1, 1, 1)),
    "3x3_pad_32ch": ConvProblem(1, 32, 9, 9, 48, 3, 3, (1, 1), (1, 1, 1, 1)),
    "7x7_s2_3ch": ConvProblem(1, 3, 20, 20, 24, 7, 7, (2, 2), (3, 3, 3, 3)),
    "1x1_residual_relu": ConvProblem(2, 64, 6, 6, 40, 1, 1, epilogue=Epilogue(bias=True, residual=True,
                                                                              activation="relu")),
}
SENTINEL = 0x7E7E  # bytes past the output: edge stores must leave them


def _bf16_host():
    target = cpu_target()
    if "avx512bf16" not in target.required:
        pytest.skip("host has no AVX512-BF16")
    return target


def _variants(target):
    out = {"vector": lambda prob: _vector_schedule(target, prob)}
    if {"amx-bf16"} <= set(target.required):
        for mr, nr in ((32, 32), (16, 16)):
            out[f"amx{mr}x{nr}"] = lambda prob, mr=mr, nr=nr: _tile_schedule(target, prob, mr, nr)
    return out


@pytest.fixture(scope="module")
def chain_lib():
    target = _bf16_host()
    mod, kernels = new_module(), {}
    narrow = {"bf16": True, "a_bf16": True, "out_bf16": True}
    for variant, make in _variants(target).items():
        for m, n, k in GEMMS:
            prob = GemmProblem(AOperand.matrix(m, k), n, **narrow)
            name = f"g_{m}_{n}_{k}_{variant}"
            kernels[name] = (prob, make(prob))
            emit_gemm(mod, name, prob, kernels[name][1])
        for key, conv in CONVS.items():
            conv = dataclasses.replace(conv, **narrow)
            kernels[f"{key}_{variant}"] = emit_conv(mod, f"{key}_{variant}", conv, target, make(conv.gemm()))
    return compile_module(mod, target), kernels


def _with_tail(shape) -> tuple[np.ndarray, np.ndarray]:
    """A bfloat16 output of `shape` followed by 32 sentinel values, and its view."""
    size = int(np.prod(shape))
    buf = np.full(size + 32, SENTINEL, np.uint16)
    return buf, buf[:size].view(BF).reshape(shape)


def _close(got: np.ndarray, want: np.ndarray, k: int) -> None:
    """Rounded once to bfloat16: within one bfloat16 step of the float64 result (float32
    summation order can move a value across a rounding boundary), and mostly exact."""
    got = got.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=2 ** -8, atol=1e-5 * np.sqrt(k))
    assert np.mean(got == want.astype(np.float32).astype(BF).astype(np.float64)) > 0.95


def _variant_names():
    target = cpu_target()
    names = ["vector"]
    if "amx-bf16" in target.required:
        names += ["amx32x32", "amx16x16"]
    return names


@pytest.mark.parametrize("variant", _variant_names())
@pytest.mark.parametrize("shape", GEMMS, ids=lambda s: "x".join(map(str, s)))
def test_bf16_chain_gemm_reads_and_writes_bfloat16(chain_lib, shape, variant):
    library, kernels = chain_lib
    m, n, k = shape
    prob, sched = kernels[f"g_{m}_{n}_{k}_{variant}"]
    rng = np.random.default_rng(m + n + k)
    a, b = rand(rng, m, k).astype(BF), rand(rng, k, n)
    buf, y = _with_tail((m, n))
    packed = pack_weights(b, sched, prob)  # held: ctypes takes only its address
    library.function(f"g_{m}_{n}_{k}_{variant}")(a.ctypes.data, packed.ctypes.data, buf.ctypes.data,
                                                   None, None, None, None, 2)
    _close(y, a.astype(np.float64) @ bf16(b), k)
    assert (buf[m * n:] == SENTINEL).all()


@pytest.mark.parametrize("variant", _variant_names())
@pytest.mark.parametrize("key", sorted(CONVS))
def test_bf16_chain_conv_reads_and_writes_bfloat16(chain_lib, key, variant):
    """Padding taps read bfloat16 zeros; the epilogue (bias, float32 residual, relu) runs
    in float32 before the one rounding."""
    from compiler.codegen.llvm.microkernels import epilogue as E

    library, kernels = chain_lib
    kernel = kernels[f"{key}_{variant}"]
    c = kernel.problem
    rng = np.random.default_rng(c.in_c * 3 + c.out_c)
    x = rand(rng, c.batch, c.in_h, c.in_w, c.in_c).astype(BF)
    w = rand(rng, c.out_c, c.in_c // c.groups, c.kh, c.kw)
    bias, res = rand(rng, c.out_c), rand(rng, c.batch, c.out_h, c.out_w, c.out_c)
    buf, y = _with_tail(res.shape)
    packed = kernel.pack(w)
    library.function(f"{key}_{variant}")(x.ctypes.data, packed.ctypes.data, buf.ctypes.data, bias.ctypes.data,
                                         None, None, res.ctypes.data, 2)
    want = E.reference(c.epilogue, conv_reference(x.astype(np.float64), bf16(w), c), residual=res, bias=bias)
    _close(y, want, c.in_c // c.groups * c.kh * c.kw)
    assert (buf[y.size:] == SENTINEL).all()


def test_bf16_output_refuses_k_in_chunks_and_float_problems():
    """A bfloat16 C has no room for float32 partial sums, and narrow A or C belong to
    bfloat16 problems."""
    target = cpu_target({"mcpu": "sapphirerapids"})
    prob = GemmProblem(AOperand.matrix(20, 512), 64, bf16=True, out_bf16=True)
    sched = default_schedule(target, prob)
    assert sched.kc >= 512  # the default keeps K whole
    with pytest.raises(CompilerError, match="bfloat16 output needs K in one chunk"):
        emit_gemm(new_module(), "g", prob, dataclasses.replace(sched, kc=128))
    with pytest.raises(CompilerError, match="belong to bfloat16 problems"):
        emit_gemm(new_module(), "g", GemmProblem(AOperand.matrix(20, 64), 64, a_bf16=True),
                  default_schedule(target, GemmProblem(AOperand.matrix(20, 64), 64)))


# ---------------------------------------------------------------- graphs

def _init(rng, name, shape):
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name)


def _chain_model() -> onnx.ModelProto:
    """conv -> relu -> max pool -> conv -> conv (graph output) -> also read by a residual
    Add with a fourth conv: what narrows and what must not."""
    rng = np.random.default_rng(3)
    inits = [_init(rng, "w1", (32, 5, 3, 3)), _init(rng, "w2", (17, 32, 3, 3)), _init(rng, "w3", (24, 17, 1, 1)),
             _init(rng, "w4", (24, 24, 1, 1))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c2", "w3"], ["c3"]),
             helper.make_node("Conv", ["c3", "w4"], ["c4"]), helper.make_node("Add", ["c4", "c3"], ["y"])]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 14, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("c2", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _lowered(model):
    return parse_target("llvm").backend.optimize(import_model(model), 2, PassContext(verify=True),
                                                 BuildOptions(precision="bf16"))


def assert_only_the_first_conv_narrows(graph, dtype) -> None:
    """The first conv writes `dtype` (out_dtype set) into a max pool that runs on it and
    feeds the second conv; every later conv writes float32."""
    convs = [n for n in graph.nodes if n.op == "ConvNhwc"]
    pool = next(n for n in graph.nodes if n.op == "MaxPoolNhwc")
    assert convs[0].outputs[0].type.dtype is dtype and convs[0].attrs["out_dtype"] is dtype
    assert pool.inputs[0].type.dtype is dtype and pool.outputs[0].type.dtype is dtype
    assert convs[1].inputs[0] is pool.outputs[0]
    assert [c.outputs[0].type.dtype for c in convs[1:]] == [dtypes.float32] * (len(convs) - 1)
    assert all(c.attrs.get("out_dtype") is None for c in convs[1:])


def test_bf16_chain_narrows_only_values_every_reader_rounds():
    """conv1 (through the pool) hands conv2 bfloat16; conv2 is a graph output and conv3 is
    read by a residual Add, so both stay float32; the last conv reads float32."""
    assert_only_the_first_conv_narrows(_lowered(_chain_model()), dtypes.bfloat16)


def test_bf16_chain_compiled_equals_the_lowered_reference():
    _bf16_host()
    model = _chain_model()
    x = np.random.default_rng(0).standard_normal((2, 5, 14, 14)).astype(np.float32)
    cm = compiler.compile(model, precision="bf16")
    got = cm.run({"x": x})
    want = run_graph(_lowered(model), {"x": x})
    for name in ("y", "c2"):
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
    assert len(cm.manifest["precision"]["bfloat16_values"]) == 2  # conv1's output and the pool's
    fp32 = compiler.compile(model).run({"x": x})["y"]
    cosine = float(np.sum(got["y"] * fp32) / np.linalg.norm(got["y"]) / np.linalg.norm(fp32))
    assert cosine > 0.999


def test_tuner_keeps_k_whole_for_a_bfloat16_output():
    """Every candidate the autotuner would time for a bfloat16-output problem keeps K in one
    chunk; the same problem with a float32 C may split it."""
    from compiler.autotune import space
    from compiler.codegen.llvm.microkernels.gemm import k_chunks

    target = cpu_target({"mcpu": "sapphirerapids"})
    prob = GemmProblem(AOperand.matrix(100, 1200), 96, bf16=True)
    split = [len(k_chunks(prob.a, s.kc)) for s in space.gemm_candidates(prob, target)]
    assert max(split) > 1
    narrow = dataclasses.replace(prob, a_bf16=True, out_bf16=True)
    assert all(len(k_chunks(narrow.a, s.kc)) == 1 for s in space.gemm_candidates(narrow, target))


def _dense_block_model() -> onnx.ModelProto:
    """DenseNet's pre-activation pattern after two stem convs: concat -> BatchNorm -> ReLU
    -> conv, twice, the second concat also taking the first conv's output; the input's
    Transpose feeds the stem convs directly (a copy kernel of its own: it stays float32)."""
    rng = np.random.default_rng(5)
    c = 8
    inits = [_init(rng, "w1", (c, 2 * c, 1, 1)), _init(rng, "w2", (c, 3 * c, 3, 3)), _init(rng, "wa", (c, 3, 3, 3)),
             _init(rng, "wb", (c, 3, 1, 1))]
    for i, ch in ((1, 2 * c), (2, 3 * c)):
        inits += [numpy_helper.from_array(rng.uniform(0.5, 1.5, ch).astype(np.float32), f"s{i}"),
                  numpy_helper.from_array(rng.standard_normal(ch).astype(np.float32), f"b{i}"),
                  numpy_helper.from_array(rng.standard_normal(ch).astype(np.float32) * 0.1, f"m{i}"),
                  numpy_helper.from_array(rng.uniform(0.5, 1.5, ch).astype(np.float32), f"v{i}")]
    nodes = [helper.make_node("Conv", ["image", "wa"], ["x"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["image", "wb"], ["x2"]),
             helper.make_node("Concat", ["x", "x2"], ["cat1"], axis=1),
             helper.make_node("BatchNormalization", ["cat1", "s1", "b1", "m1", "v1"], ["bn1"]),
             helper.make_node("Relu", ["bn1"], ["r1"]), helper.make_node("Conv", ["r1", "w1"], ["f1"]),
             helper.make_node("Concat", ["cat1", "f1"], ["cat2"], axis=1),
             helper.make_node("BatchNormalization", ["cat2", "s2", "b2", "m2", "v2"], ["bn2"]),
             helper.make_node("Relu", ["bn2"], ["r2"]), helper.make_node("Conv", ["r2", "w2"], ["y"], pads=[1, 1, 1, 1])]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 10, 10])]
    graph = helper.make_graph(nodes, "dense", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_elementwise_outputs_read_only_by_bf16_products_are_rounded_in_their_kernel():
    """Each ReLU that only a bf16 conv reads gets a Cast to bfloat16, and fusion ends the
    ReLU's kernel with it (no kernel of its own); the input Transposes stay float32."""
    model = _dense_block_model()
    graph = _lowered(model)
    casts = [n for n in graph.nodes if n.op == "Cast"]
    producers = {n.outputs[0]: n.op for n in graph.nodes}
    assert [producers[n.inputs[0]] for n in casts] == ["Relu", "Relu"]
    assert all(n.attrs["to"] is dtypes.bfloat16 for n in casts)
    convs = [n for n in graph.nodes if n.op == "ConvNhwc"]
    assert [c.inputs[0] for c in convs[2:]] == [n.outputs[0] for n in casts]  # after the two stem convs
    assert all(n.outputs[0].type.dtype is dtypes.float32 for n in graph.nodes if n.op == "Transpose")
    fused = parse_target("llvm").backend.optimize(import_model(model), 3, PassContext(verify=True),
                                                  BuildOptions(precision="bf16"))
    bodies = [[m.op for m in n.attrs["body"].nodes] for n in fused.nodes if n.op == "FusedKernel"]
    assert not [ops for ops in bodies if ops == ["Cast"]], bodies
    assert sum(ops[-2:] == ["Relu", "Cast"] for ops in bodies) == 2, bodies
    _bf16_host()
    rng = np.random.default_rng(1)
    feeds = {"image": rng.standard_normal((1, 3, 10, 10)).astype(np.float32)}
    got = compiler.compile(model, precision="bf16").run(feeds)["y"]
    np.testing.assert_allclose(got, run_graph(graph, feeds)["y"], rtol=1e-5, atol=1e-5)
