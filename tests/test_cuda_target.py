"""The cuda target without a GPU: every kernel class built into GPU launches, compiled by
NVRTC, run on the emulator and checked against the reference interpreter; what the
emitted CUDA C must and must not contain per launch shape; the artifact (cubins per
architecture, PTX, launch table) through save and load and the CLI; and the refusals a
user meets on a machine with no GPU. Real-GPU runs are in `test_cuda_gpu.py`."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler.artifact import read_artifact, write_artifact
from compiler.ir.errors import ArtifactError, InputError, TargetError

from filecheck import FileCheck

pytest.importorskip("cuda.bindings.nvrtc")

EMULATOR = "cuda -arch=sm_80 -device=emulator"
RNG = np.random.default_rng(0)


def model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                              [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def check_on_emulator(m, feeds, rtol=1e-4, atol=1e-5):
    """The model on the emulator against the reference interpreter; the compiled model back."""
    cm = compiler.compile(m, target=EMULATOR, cache=False)
    want = compiler.compile(m, target="reference").run(feeds)
    got = cm.run(feeds)
    for name, w in want.items():
        assert got[name].dtype == w.dtype and got[name].shape == w.shape, name
        np.testing.assert_allclose(got[name].astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol,
                                   err_msg=name)
    return cm


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


F = TensorProto.FLOAT


def test_elementwise_chain_is_one_launch_moving_16_bytes_per_access():
    """x (the output's shape) arrives by 128-bit loads and z leaves by 128-bit stores, four
    elements a thread; y, broadcast along rows, is read element by element."""
    m = model([helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Mul", ["a", "x"], ["b"]),
               helper.make_node("Tanh", ["b"], ["z"])], [("x", F, [3, 1000]), ("y", F, [1000])], [("z", F, [3, 1000])])
    cm = check_on_emulator(m, {"x": f32(3, 1000), "y": f32(1000)})
    assert [len(c["launches"]) for c in json.loads(cm._sections["launches.json"])] == [1]
    src = cm.cuda_source
    FileCheck().check("__global__ void __launch_bounds__(256)").check("threadIdx.x").check("< 750LL").check(
        "*(const uint4*)(&p0[").check_not("*(const uint4*)(&p1[").check("tanhf(").check(
        "*(uint4*)(&p2[").check_not("__syncthreads").check_not("__shared__").run(src)
    odd = model([helper.make_node("Tanh", ["x"], ["z"])], [("x", F, [3, 999])], [("z", F, [3, 999])])
    cm = check_on_emulator(odd, {"x": f32(3, 999)})
    FileCheck().check("< 2997LL").check_not("uint4").run(cm.cuda_source)  # not whole vectors: one element a thread


def test_softmax_rows_are_block_reductions_with_warp_shuffles_and_shared_memory():
    m = model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], [("x", F, [6, 700])], [("y", F, [6, 700])])
    cm = check_on_emulator(m, {"x": f32(6, 700) * 4})
    FileCheck().check("__shared__ __align__(16) float").check("__shfl_xor_sync(0xffffffffu").check("__syncthreads();").check(
        "__shfl_xor_sync").check("expf(").run(cm.cuda_source)


def test_layer_norm_and_reductions_over_every_axis_kind():
    x, s, b = f32(4, 8, 300), f32(300), f32(300)
    m = model([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1, epsilon=1e-5),
               helper.make_node("ReduceMean", ["x", "ax0"], ["m0"], keepdims=0),
               helper.make_node("ReduceMax", ["x", "ax1"], ["m1"], keepdims=1),
               helper.make_node("ReduceSum", ["x", "ax2"], ["m2"], keepdims=0)],
              [("x", F, [4, 8, 300])],
              [("y", F, [4, 8, 300]), ("m0", F, [8, 300]), ("m1", F, [4, 1, 300]), ("m2", F, [4, 8])],
              [("s", s), ("b", b), ("ax0", np.array([0], np.int64)), ("ax1", np.array([1], np.int64)),
               ("ax2", np.array([2], np.int64))])
    check_on_emulator(m, {"x": x}, rtol=2e-4, atol=2e-5)


def test_integer_reductions_and_indexing_ops():
    I64 = TensorProto.INT64
    m = model([helper.make_node("ReduceSum", ["x", "ax"], ["s"], keepdims=0),
               helper.make_node("Gather", ["x", "idx"], ["g"], axis=1),
               helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
               helper.make_node("Concat", ["x", "x"], ["c"], axis=0),
               helper.make_node("ArgMax", ["x"], ["am"], axis=1, keepdims=0)],
              [("x", I64, [5, 400])],
              [("s", I64, [5]), ("g", I64, [5, 3]), ("t", I64, [400, 5]), ("c", I64, [10, 400]), ("am", I64, [5])],
              [("ax", np.array([1], np.int64)), ("idx", np.array([0, 399, -1], np.int64))])
    check_on_emulator(m, {"x": RNG.integers(-1000, 1000, (5, 400)).astype(np.int64)}, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["max", "avg", "global"])
def test_pooling(kind):
    op = {"max": "MaxPool", "avg": "AveragePool", "global": "GlobalAveragePool"}[kind]
    attrs = {} if kind == "global" else {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    out = [2, 5, 1, 1] if kind == "global" else [2, 5, 8, 8]
    m = model([helper.make_node(op, ["x"], ["y"], **attrs)], [("x", F, [2, 5, 15, 15])], [("y", F, out)])
    check_on_emulator(m, {"x": f32(2, 5, 15, 15)})


@pytest.mark.parametrize("group", [1, 3])
def test_convolution_with_padding_stride_groups_and_fused_relu(group):
    w, b = f32(6, 6 // group, 3, 3) * 0.2, f32(6)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 1], group=group),
               helper.make_node("Relu", ["c"], ["y"])],
              [("x", F, [1, 6, 9, 11])], [("y", F, [1, 6, 5, 11])], [("w", w), ("b", b)])
    check_on_emulator(m, {"x": f32(1, 6, 9, 11)})


def test_matrix_products_gemm_and_batched_matmul():
    a, wt, bias = f32(2, 3, 40, 64), f32(64, 50), f32(50)
    m = model([helper.make_node("MatMul", ["a", "w"], ["mm"]),
               helper.make_node("Gemm", ["g", "w", "bias"], ["gy"], alpha=0.5, beta=2.0),
               helper.make_node("MatMul", ["a", "at"], ["bmm"])],
              [("a", F, [2, 3, 40, 64]), ("g", F, [7, 64]), ("at", F, [2, 3, 64, 40])],
              [("mm", F, [2, 3, 40, 50]), ("gy", F, [7, 50]), ("bmm", F, [2, 3, 40, 40])],
              [("w", wt), ("bias", bias)])
    check_on_emulator(m, {"a": a, "g": f32(7, 64), "at": f32(2, 3, 64, 40)}, rtol=2e-4, atol=1e-4)


def test_attention_as_exported_from_torch():
    """softmax(Q K^T / sqrt(d) + mask) V, recognised as attention by the passes."""
    q, k, v = f32(2, 4, 16, 32), f32(2, 4, 16, 32), f32(2, 4, 16, 32)
    m = model([helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
               helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["ss"]),
               helper.make_node("Softmax", ["ss"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["y"])],
              [("q", F, [2, 4, 16, 32]), ("k", F, [2, 4, 16, 32]), ("v", F, [2, 4, 16, 32])],
              [("y", F, [2, 4, 16, 32])], [("scale", np.array(32 ** -0.5, np.float32))])
    check_on_emulator(m, {"q": q, "k": k, "v": v}, rtol=2e-4, atol=2e-5)


def test_half_precision_models_store_16_bits_and_compute_in_float32():
    H = TensorProto.FLOAT16
    m = model([helper.make_node("Mul", ["x", "x"], ["a"]), helper.make_node("Softmax", ["a"], ["y"], axis=-1)],
              [("x", H, [4, 256])], [("y", H, [4, 256])])
    check_on_emulator(m, {"x": f32(4, 256).astype(np.float16)}, rtol=2e-3, atol=1e-3)


def test_nvrtc_builds_a_cubin_per_architecture_and_ptx(tmp_path):
    m = model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], [("x", F, [2, 300])], [("y", F, [2, 300])])
    path = tmp_path / "m.cmod"
    cm = compiler.compile(m, target="cuda -arch=sm_90,sm_80", cache=False)  # cross-compiled: no GPU touched
    cm.save(path)
    manifest, sections = read_artifact(path)
    assert manifest["archs"] == ["sm_80", "sm_90"] and manifest["min_compute_capability"] == [8, 0]
    assert manifest["nvrtc_version"] and manifest["launch_abi"] == "cuda-launch-v1"
    assert manifest["ptx_min_driver"] == ".".join(manifest["nvrtc_version"].split(".")[:2])
    assert "build_driver_version" in manifest  # None here: cross-compiled on a machine with no driver
    for arch in ("sm_80", "sm_90"):
        assert sections[f"{arch}.cubin"][:4] == b"\x7fELF"
    FileCheck().check(".target sm_80").check(".entry k0_softmax_l0").run(sections["model.ptx"].decode())


def test_artifact_round_trip_on_the_emulator_and_corrupt_sections(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [3, 70])], [("y", F, [3, 70])])
    path = tmp_path / "m.cmod"
    compiler.compile(m, target=EMULATOR, cache=False).save(path)
    loaded = compiler.load(path)
    x = f32(3, 70)
    np.testing.assert_array_equal(loaded.run({"x": x})["y"], np.maximum(x, 0))
    with pytest.raises(InputError, match="input 'x': expected element type float32, got float64"):
        loaded.run({"x": x.astype(np.float64)})
    manifest, sections = read_artifact(path)
    manifest = {k: v for k, v in manifest.items() if k not in ("sections", "format_version")}
    write_artifact(path, manifest, {**sections, "kernels.json": b"[{]"})
    with pytest.raises(ArtifactError, match="corrupt or missing kernels.json"):
        compiler.load(path)
    write_artifact(path, manifest, {**sections, "launches.json": b'[{"args": [["disk", 0, 0]], "launches": []}]'})
    with pytest.raises(ArtifactError, match="corrupt launch table"):
        compiler.load(path)


def test_command_line_compiles_for_a_gpu_and_runs_on_the_emulator(tmp_path):
    from compiler.cli import main

    m = model([helper.make_node("Sigmoid", ["x"], ["y"])], [("x", F, [2, 50])], [("y", F, [2, 50])])
    onnx.save(m, str(tmp_path / "m.onnx"))
    x = f32(2, 50)
    np.savez(tmp_path / "in.npz", x=x)
    assert main([str(tmp_path / "m.onnx"), "--target", "cuda -arch=sm_90", "-o", str(tmp_path / "gpu.cmod")]) == 0
    assert read_artifact(tmp_path / "gpu.cmod")[0]["archs"] == ["sm_90"]
    assert main([str(tmp_path / "m.onnx"), "--target", EMULATOR, "-o", str(tmp_path / "emu.cmod")]) == 0
    assert main(["run", str(tmp_path / "emu.cmod"), "--inputs", str(tmp_path / "in.npz"),
                 "-o", str(tmp_path / "out.npz")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["y"], 1 / (1 + np.exp(-x)), rtol=1e-6)


def _no_gpu() -> bool:
    from compiler.runtime.cuda_driver import open_device

    try:
        open_device()
        return False
    except ArtifactError:
        return True


@pytest.mark.skipif(not _no_gpu(), reason="this machine has a GPU")
def test_without_a_gpu_the_local_target_and_gpu_artifacts_are_refused_with_words(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [4])], [("y", F, [4])])
    with pytest.raises(TargetError, match="target 'cuda' means the local GPU, and there is none usable here.*"
                                          "give -arch=sm_80"):
        compiler.compile(m, target="cuda", cache=False)
    path = tmp_path / "m.cmod"
    compiler.compile(m, target="cuda -arch=sm_80", cache=False).save(path)
    with pytest.raises(ArtifactError, match="no NVIDIA driver on this machine.*-device=emulator"):
        compiler.load(path)


def test_a_gpu_older_or_a_driver_older_than_the_artifact_is_refused():
    from compiler.runtime.cuda_driver import choose_image

    manifest = {"archs": ["sm_80", "sm_90"], "min_compute_capability": [8, 0], "nvrtc_version": "13.5"}
    sections = {"sm_80.cubin": b"80", "sm_90.cubin": b"90", "model.ptx": b"ptx"}
    assert choose_image(manifest, sections, (8, 6), 13050, "m") == (b"80", "cubin sm_80")  # same major, newer minor
    assert choose_image(manifest, sections, (9, 0), 12000, "m") == (b"90", "cubin sm_90")
    assert choose_image(manifest, sections, (10, 0), 13050, "m") == (b"ptx", "ptx")  # newer GPU: the PTX
    with pytest.raises(ArtifactError, match="compiled for compute capability 8.0 and newer .*this GPU has 7.5"):
        choose_image(manifest, sections, (7, 5), 13050, "m")
    with pytest.raises(ArtifactError, match="written by NVRTC 13.5, and the driver \\(CUDA 12.4\\) is older"):
        choose_image(manifest, sections, (10, 0), 12040, "m")


@pytest.mark.parametrize("a_shape, b_shape, dtype", [
    ((70, 40), (40, 90), TensorProto.FLOAT16),  # tails on every side of the 64 x 64 x 32 tiles
    ((2, 3, 33, 24), (2, 3, 24, 17), TensorProto.BFLOAT16),  # batched
    ((5, 130, 64), (64, 72), TensorProto.FLOAT16),  # one B for every row of a 3-D A
])
def test_half_precision_matmul_runs_on_tensor_cores(a_shape, b_shape, dtype):
    import ml_dtypes

    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else ml_dtypes.bfloat16
    y_shape = a_shape[:-1] + (b_shape[-1],)
    m = model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", dtype, a_shape), ("b", dtype, b_shape)],
              [("y", dtype, y_shape)])
    a, b = f32(*a_shape).astype(np_dtype), f32(*b_shape).astype(np_dtype)
    cm = compiler.compile(m, target="cuda -arch=sm_80,sm_90 -device=emulator", cache=False)
    # staged by cp.async (A's rows are 16-byte multiples), fragments by ldmatrix, one barrier a step
    FileCheck().check("mma.sync.aligned.m16n8k16.row.col.f32.").check("ldmatrix.sync.aligned.m8n8.x4.shared.b16").check(
        "__shared__ __align__(16)").check("cm_cp_async16(").check("cm_cp_async_wait();").check("__syncthreads();").check(
        "cm_ldmatrix_x4(").check("cm_ldmatrix_x2_trans(").check("cm_mma_m16n8k16_").check_not("__syncthreads();").run(
        cm.cuda_source)
    y = cm.run({"a": a, "b": b})["y"].astype(np.float32)
    want = (a.astype(np.float64) @ b.astype(np.float64))
    ulp = 2.0 ** (-10 if dtype == TensorProto.FLOAT16 else -7)  # the output's rounding, fp32 accumulation before it
    np.testing.assert_allclose(y, want, rtol=ulp, atol=ulp * np.abs(want).max() * 1e-2)


def test_a_convolution_its_bias_and_activation_are_one_launch():
    w, b = f32(4, 3, 3, 3), f32(4)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
              [("x", F, [1, 3, 8, 8])], [("y", F, [1, 4, 6, 6])], [("w", w), ("b", b)])
    cm = check_on_emulator(m, {"x": f32(1, 3, 8, 8)})
    assert [len(c["launches"]) for c in json.loads(cm._sections["launches.json"])] == [1]
    FileCheck().check("__global__").check("acc").check("cm_fmax(").check_not("__global__").run(cm.cuda_source)


def test_launches_are_not_merged_where_a_thread_reads_another_threads_result():
    """A reduction then a transpose of its result: thread i of the second stage reads what
    thread j != i of the first wrote, so they stay two launches (a grid-wide order between)."""
    m = model([helper.make_node("ReduceSum", ["x", "ax"], ["s"], keepdims=0),
               helper.make_node("Transpose", ["s"], ["y"], perm=[1, 0])],
              [("x", F, [16, 24, 5])], [("y", F, [24, 16])], [("ax", np.array([2], np.int64))])
    cm = check_on_emulator(m, {"x": f32(16, 24, 5)})
    assert sum(len(c["launches"]) for c in json.loads(cm._sections["launches.json"])) == 2


def test_the_native_emulator_path_agrees_with_the_emulator():
    """-device=emulator-native runs thread-independent launches as CPU code (here the
    convolution); the softmax's block reduction (shared memory, shuffles) stays emulated."""
    w = f32(8, 3, 3, 3)
    m = model([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Flatten", ["c"], ["f"]),
               helper.make_node("Softmax", ["f"], ["y"], axis=-1)],
              [("x", F, [2, 3, 12, 12])], [("y", F, [2, 800])], [("w", w)])
    x = f32(2, 3, 12, 12)
    exact = compiler.compile(m, target=EMULATOR, cache=False).run({"x": x})["y"]
    fast = compiler.compile(m, target="cuda -arch=sm_80 -device=emulator-native", cache=False)
    assert any(name in fast._native for name in fast.kernels) and not all(name in fast._native for name in fast.kernels)
    np.testing.assert_allclose(fast.run({"x": x})["y"], exact, rtol=1e-5, atol=1e-7)


def test_big_convolutions_are_register_tiled():
    """Below the shared-memory template's sizes (16 output channels), a convolution with
    many outputs still gets 4 x 4 register tiles per thread (weights shared along the
    columns, input pixels along the channels); a width that the tile does not divide has
    its tail guarded."""
    w, b = f32(16, 16, 3, 3) * 0.2, f32(16)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
              [("x", F, [1, 16, 128, 66])], [("y", F, [1, 16, 128, 66])], [("w", w), ("b", b)])
    cm = check_on_emulator(m, {"x": f32(1, 16, 128, 66)}, rtol=2e-4, atol=2e-5)
    FileCheck().check(re.compile(r"float acc\d+\[16\];")).check("cm_fmax(").check_not("__syncthreads").run(cm.cuda_source)


@pytest.mark.parametrize("group, strides, dilations, pads", [
    (1, [1, 1], [1, 1], [1, 1, 1, 1]),
    (2, [2, 1], [1, 2], [0, 2, 1, 0]),  # asymmetric pads, a stride and a dilation, two groups
    (1, [1, 1], [1, 1], [0, 0, 0, 0]),  # 1 x 1 below: the image staged by 16-byte cp.async
])
def test_convolutions_are_implicit_gemms_on_shared_memory_tiles(group, strides, dilations, pads):
    kernel = 1 if not any(pads) else 3
    w, b = f32(64, 32 // group, kernel, kernel) * 0.2, f32(64)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group, strides=strides, dilations=dilations,
                                pads=pads)],
              [("x", F, [2, 32, 13, 20])], [("y", F, None)], [("w", w), ("b", b)])
    cm = check_on_emulator(m, {"x": f32(2, 32, 13, 20)}, rtol=2e-4, atol=2e-5)
    FileCheck().check("__shared__ __align__(16) float").check("cm_cp_async16(").check("cm_cp_async_wait();").check(
        "__syncthreads();").check("fmaf(").check_not("__syncthreads();").run(cm.cuda_source)
    if kernel == 1:  # B staged by vectors too: two cp.async per step
        FileCheck().check("cm_cp_async16(").check("cm_cp_async16(").check("cm_cp_async_wait();").run(cm.cuda_source)
    native = compiler.compile(m, target="cuda -arch=sm_80 -device=emulator-native", cache=False)
    assert all(name in native._native for name in native.kernels)  # barriers split into thread loops
    x = f32(2, 32, 13, 20)
    np.testing.assert_allclose(native.run({"x": x})["y"], cm.run({"x": x})["y"], rtol=1e-5, atol=1e-6)


def test_half_precision_convolution_runs_on_tensor_cores():
    import ml_dtypes

    H = TensorProto.BFLOAT16
    w = (f32(48, 16, 3, 3) * 0.2).astype(ml_dtypes.bfloat16)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [("x", H, [1, 16, 10, 12])],
              [("y", H, [1, 48, 10, 12])], [("w", w)])
    x = f32(1, 16, 10, 12).astype(ml_dtypes.bfloat16)
    cm = compiler.compile(m, target="cuda -arch=sm_80,sm_90 -device=emulator", cache=False)
    FileCheck().check("cm_ldmatrix_x4(").check("cm_mma_m16n8k16_bf16_f32(").run(cm.cuda_source)
    import torch

    want = torch.nn.functional.conv2d(torch.tensor(x.astype(np.float64)), torch.tensor(w.astype(np.float64)),
                                      padding=1).numpy()
    got = cm.run({"x": x})["y"].astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=2 ** -7 * np.abs(want).max() * 1e-2)


@pytest.mark.parametrize("trans_a, trans_b, c_shape", [(0, 0, [96]), (1, 0, [130, 1]), (0, 1, [130, 96]), (1, 1, [])])
def test_gemm_reads_transposed_operands_in_place_and_broadcasts_c(trans_a, trans_b, c_shape):
    a = f32(*([88, 130] if trans_a else [130, 88]))
    bm = f32(*([96, 88] if trans_b else [88, 96]))
    c = f32(*c_shape) if c_shape else np.array(0.7, np.float32)
    m = model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=1.5, transA=trans_a, transB=trans_b)],
              [("a", F, list(a.shape)), ("b", F, list(bm.shape))], [("y", F, [130, 96])], [("c", c)])
    cm = check_on_emulator(m, {"a": a, "b": bm}, rtol=2e-4, atol=1e-4)
    assert "__syncthreads();" in cm.cuda_source  # the shared-memory template, not the loop-IR rule


def test_dlpack_tensors_are_read_in_place():
    """What the GPU runtime reads off a tensor that offers only DLPack (here torch's CPU
    tensors; on a GPU the same structs carry a device pointer): address, shape, type, and
    whether it is contiguous."""
    torch = pytest.importorskip("torch")
    from compiler.runtime.dlpack import DEVICE_CPU, DLPackError, view

    t = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    v = view(t)
    assert (v.ptr, v.shape, v.dtype, v.contiguous, v.device_type, v.on_gpu) == (
        t.data_ptr(), (2, 3, 4), "float32", True, DEVICE_CPU, False)
    assert view(t[1]).ptr == t.data_ptr() + 12 * 4  # an offset view: its first element's address
    assert not view(t.transpose(1, 2)).contiguous
    assert view(torch.zeros(3, dtype=torch.bfloat16)).dtype == "bfloat16"
    assert view(torch.zeros(3, dtype=torch.int64)).dtype == "int64"
    with pytest.raises(DLPackError, match="does not export DLPack"):
        view([1, 2])


ATTENTION_CASES = {
    # name: (q, k, v shapes, attributes, mask shape or None, mask type)
    "heads": ((2, 4, 20, 32), (2, 4, 45, 32), (2, 4, 45, 24), {}, None, None),
    "causal-grouped": ((1, 4, 33, 16), (1, 2, 33, 16), (1, 2, 33, 40), {"is_causal": 1}, None, None),
    "float-mask": ((2, 2, 17, 8), (2, 2, 70, 8), (2, 2, 70, 8), {"scale": 0.3}, (2, 1, 17, 70), TensorProto.FLOAT),
    "bool-mask-packed": ((2, 9, 3 * 16), (2, 40, 3 * 16), (2, 40, 3 * 8), {"q_num_heads": 3, "kv_num_heads": 3},
                         (9, 40), TensorProto.BOOL),
}


@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_attention_is_one_fused_launch(case):
    """ONNX Attention (opset 23) as one launch: keys in tiles through shared memory, the
    softmax online across each warp, never a [B, H, S, T] score tensor in memory."""
    qs, ks, vs, attrs, mask_shape, mask_type = ATTENTION_CASES[case]
    packed = len(qs) == 3
    y_shape = list(qs[:-1]) + [vs[-1] // attrs["kv_num_heads"] * attrs["q_num_heads"]] if packed else \
        list(qs[:-1]) + [vs[-1]]
    inputs = [("q", F, list(qs)), ("k", F, list(ks)), ("v", F, list(vs))]
    feeds = {"q": f32(*qs), "k": f32(*ks), "v": f32(*vs)}
    names = ["q", "k", "v"]
    if mask_shape is not None:
        inputs.append(("mask", mask_type, list(mask_shape)))
        names.append("mask")
        if mask_type == TensorProto.BOOL:
            allowed = RNG.random(mask_shape) < 0.7
            allowed[3] = False  # a row with no allowed key: zeros, like the reference
            feeds["mask"] = allowed
        else:
            feeds["mask"] = f32(*mask_shape)
    m = model([helper.make_node("Attention", names, ["y"], **attrs)], inputs, [("y", F, y_shape)], opset=23)
    cm = check_on_emulator(m, feeds, rtol=2e-4, atol=2e-5)
    calls = json.loads(cm._sections["launches.json"])
    assert len(calls) == 1 and len(calls[0]["launches"]) == 1, calls
    FileCheck().check("__shared__").check("__syncthreads();").check("__shfl_xor_sync").check("expf(").check(
        "__shfl_sync").check("__syncthreads();").run(cm.cuda_source)


def test_half_precision_attention_computes_in_float32():
    H = TensorProto.FLOAT16
    q, k, v = (f32(1, 2, 24, 32).astype(np.float16) for _ in range(3))
    m = model([helper.make_node("Attention", ["q", "k", "v"], ["y"], is_causal=1)],
              [(n, H, [1, 2, 24, 32]) for n in "qkv"], [("y", H, [1, 2, 24, 32])], opset=23)
    cm = compiler.compile(m, target=EMULATOR, cache=False)
    assert "cm_h2f(" in cm.cuda_source and len(json.loads(cm._sections["launches.json"])) == 1
    got = cm.run({"q": q, "k": k, "v": v})["y"].astype(np.float64)
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    s = q64 @ k64.transpose(0, 1, 3, 2) / np.sqrt(32) + np.triu(np.full((24, 24), -np.inf), 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ v64
    np.testing.assert_allclose(got, want, rtol=2 ** -10, atol=2e-3)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("multiprocessors", [1, 10 ** 6])  # 64 x 64 tiles, then 32 x 32 ones
def test_product_template_tile_sizes(dtype, multiprocessors):
    """The template at both tile sizes, straight through the emulator: a batched product
    with tails on every side (rows, columns, k) and B contiguous enough for cp.async."""
    from compiler.codegen import loop_ir as L
    from compiler.codegen.cuda.igemm import GemmSpec, Operand, gemm_kernel, vector_aligned
    from compiler.ir import dtypes
    from compiler.runtime.gpu_emulator import run_kernel

    dt = getattr(dtypes, dtype)
    batches, m, n, k = 2, 70, 72, 40
    A, B, Y = L.Buffer("A", dt, batches * m * k), L.Buffer("B", dt, k * n), L.Buffer("Y", dt, batches * m * n)
    spec = GemmSpec("t", batches, m, n, k,
                    Operand(A, lambda b, r, kk: (L.add(L.mul(b, m * k), L.add(L.mul(r, k), kk)), None),
                            vector_aligned(dt, k)),
                    Operand(B, lambda b, kk, c: (L.add(L.mul(kk, n), c), None), vector_aligned(dt, n)),
                    Y, lambda b, r, c: L.add(L.mul(b, m * n), L.add(L.mul(r, n), c)), (A, B, Y))
    kernel = gemm_kernel(spec, multiprocessors)
    from compiler.codegen.gpu_schedule import launches_of

    (_, geo), = launches_of(kernel)
    tile = 64 if multiprocessors == 1 else 32
    assert geo.grid == batches * -(-m // tile) * -(-n // tile)
    a, b = f32(batches, m, k).astype(dt.numpy), f32(k, n).astype(dt.numpy)
    y = np.zeros(batches * m * n, dt.numpy)
    run_kernel(kernel, [a.reshape(-1), b.reshape(-1), y])
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == "float32" else 2 ** -10
    np.testing.assert_allclose(y.reshape(batches, m, n).astype(np.float64), want, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("activation", [
    ("Relu", [], {}), ("Clip", ["lo", "hi"], {}), ("Gelu", [], {"approximate": "tanh"})])
def test_an_activation_after_a_product_is_its_epilogue(activation):
    """Conv then an activation that alone reads it: one template launch writes the
    activation's output; the conv's result is never stored."""
    op, extra, attrs = activation
    w, b = f32(64, 32, 3, 3) * 0.2, f32(64)
    inits = [("w", w), ("b", b), ("lo", np.array(-0.5, np.float32)), ("hi", np.array(0.5, np.float32))]
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
               helper.make_node(op, ["c", *extra], ["y"], **attrs)],
              [("x", F, [2, 32, 13, 20])], [("y", F, [2, 64, 13, 20])], inits, opset=20)
    cm = check_on_emulator(m, {"x": f32(2, 32, 13, 20)}, rtol=2e-4, atol=2e-5)
    calls = json.loads(cm._sections["calls.json"])
    assert [c["ops"] for c in calls] == [["Conv", op]], calls
    assert "__syncthreads();" in cm.cuda_source


def test_a_product_whose_result_has_other_readers_keeps_its_activation_apart():
    w = f32(64, 64)
    m = model([helper.make_node("MatMul", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
               helper.make_node("Add", ["c", "r"], ["y"])],
              [("x", F, [256, 64])], [("y", F, [256, 64])], [("w", w)])
    cm = check_on_emulator(m, {"x": f32(256, 64)}, rtol=2e-4, atol=1e-4)
    assert json.loads(cm._sections["calls.json"])[0]["ops"] == ["MatMul"]
