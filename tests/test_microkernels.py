"""GEMM / conv microkernels (codegen/llvm/microkernels) against numpy: edge sizes, every
epilogue, 1 and 2 threads, the AVX2 target and the host; conv layers shaped like
ResNet-50's, grouped and depthwise convs; FileCheck-style checks of the emitted code.

Kernels are compiled into one library per target (module-scoped fixtures) to keep the
file fast: one O3 + link per target instead of one per case.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from compiler.codegen.llvm.target import cpu_target
from compiler.codegen.llvm.microkernels import AOperand, Epilogue, GemmProblem, GemmSchedule, default_schedule, \
    emit_gemm, pack_weights
from compiler.codegen.llvm.microkernels import epilogue as E
from compiler.codegen.llvm.microkernels.build import assembly, compile_module, new_module
from compiler.codegen.llvm.microkernels.conv import ConvProblem, DepthwiseSchedule, emit_conv
from compiler.codegen.llvm.microkernels.gemm import target_lanes
from compiler.ir.errors import CompilerError

from filecheck import FileCheck

SIZES = (1, 7, 17, 33, 100, 257)
# (M, N, K): each edge size once in each position (a Latin square), plus mixed shapes
GEMM_SHAPES = [(SIZES[i], SIZES[(i + 2) % 6], SIZES[(i + 4) % 6]) for i in range(6)] + [
    (100, 257, 100), (257, 100, 7), (64, 64, 64), (96, 48, 300), (33, 17, 17)]
EPILOGUES = {
    "bias_relu": Epilogue(bias=True, activation="relu"),
    "bn_res_relu": Epilogue(scale_shift=True, residual=True, activation="relu"),
    "clip": Epilogue(bias=True, activation="clip", clip_min=-0.5, clip_max=0.75),
    "gelu_tanh": Epilogue(bias=True, activation="gelu_tanh"),
    "gelu_erf": Epilogue(activation="gelu_erf"),
    "silu_res_after": Epilogue(bias=True, residual=True, activation="silu", residual_after_activation=True),
    "hardswish": Epilogue(bias=True, activation="hardswish"),
}
EPI_SHAPE = (37, 45, 29)

# ResNet-50-like layers, batch 1, shrunk spatially so the test stays fast, plus odd cases
CONVS = {
    "conv1_7x7_s2": ConvProblem(1, 3, 32, 32, 64, 7, 7, (2, 2), (3, 3, 3, 3)),
    "3x3_s1": ConvProblem(1, 64, 14, 14, 64, 3, 3, (1, 1), (1, 1, 1, 1)),
    "3x3_s2": ConvProblem(1, 128, 15, 15, 128, 3, 3, (2, 2), (1, 1, 1, 1)),
    "1x1_s1_bn_res_relu": ConvProblem(2, 64, 9, 9, 256, 1, 1,
                                      epilogue=Epilogue(scale_shift=True, residual=True, activation="relu")),
    "1x1_s2_downsample": ConvProblem(1, 256, 14, 14, 512, 1, 1, (2, 2)),
    "3x3_dilated_asym_pad": ConvProblem(2, 12, 11, 13, 20, 3, 3, (1, 2), (2, 0, 1, 2), (2, 1),
                                        epilogue=Epilogue(bias=True, activation="relu")),
    "grouped_3x3": ConvProblem(1, 32, 10, 10, 48, 3, 3, (1, 1), (1, 1, 1, 1), groups=4,
                               epilogue=Epilogue(bias=True)),
    "depthwise_3x3": ConvProblem(2, 40, 12, 12, 40, 3, 3, (1, 1), (1, 1, 1, 1), groups=40,
                                 epilogue=Epilogue(bias=True, activation="clip", clip_max=6.0)),
    "depthwise_5x5_s2": ConvProblem(1, 96, 15, 15, 96, 5, 5, (2, 2), (2, 2, 2, 2), groups=96,
                                    epilogue=Epilogue(scale_shift=True, residual=True, activation="silu")),
}


def gemm_name(shape, ep_key="none"):
    return "gemm_%d_%d_%d_%s" % (*shape, ep_key)


# The AVX2 target (x86-64-v3) gets a reduced set: on an AVX-512 host it covers the 8-lane
# code, on an AVX2 host the full set already ran through the host target.
REDUCED = {"gemm": [(33, 17, 17), (257, 100, 7)], "epilogue": ("bn_res_relu",),
           "conv": ("3x3_s2", "depthwise_3x3")}
TARGETS = ["host", "x86-64-v3"]


def build_library(target, reduced=False):
    mod = new_module()
    for shape in REDUCED["gemm"] if reduced else GEMM_SHAPES:
        m, n, k = shape
        prob = GemmProblem(AOperand.matrix(m, k), n)
        emit_gemm(mod, gemm_name(shape), prob, default_schedule(target, prob))
    for key in REDUCED["epilogue"] if reduced else EPILOGUES:
        m, n, k = EPI_SHAPE
        prob = GemmProblem(AOperand.matrix(m, k), n, epilogue=EPILOGUES[key])
        emit_gemm(mod, gemm_name(EPI_SHAPE, key), prob, default_schedule(target, prob))
    kernels = {key: emit_conv(mod, "conv_" + key, CONVS[key], target) for key in (REDUCED["conv"] if reduced else CONVS)}
    return compile_module(mod, target), kernels


@pytest.fixture(scope="module", params=TARGETS)
def lib(request):
    target = cpu_target() if request.param == "host" else cpu_target({"mcpu": request.param})
    if "fma" not in target.required:
        pytest.skip("host has no AVX2+FMA")
    library, kernels = build_library(target, reduced=request.param != "host")
    return target, library, kernels


def need(library, name):
    if not hasattr(library.lib, name):
        pytest.skip(f"{name} is not in the reduced set of this target")


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_matches_numpy(lib, shape, threads):
    target, library, _ = lib
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a, b = rand(rng, m, k), rand(rng, k, n)
    sched = default_schedule(target, GemmProblem(AOperand.matrix(m, k), n))
    need(library, gemm_name(shape))
    y = np.full((m, n), np.nan, np.float32)
    library.call(gemm_name(shape), dict(x=a, w=pack_weights(b, sched), y=y), threads)
    np.testing.assert_allclose(y, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * np.sqrt(k))


@pytest.mark.parametrize("key", sorted(EPILOGUES))
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_epilogues(lib, key, threads):
    target, library, _ = lib
    ep = EPILOGUES[key]
    m, n, k = EPI_SHAPE
    rng = np.random.default_rng(7)
    a, b = rand(rng, m, k) * 0.3, rand(rng, k, n) * 0.3
    vecs = {name: rand(rng, n) for name in ("bias", "scale", "shift")}
    res = rand(rng, m, n)
    sched = default_schedule(target, GemmProblem(AOperand.matrix(m, k), n))
    need(library, gemm_name(EPI_SHAPE, key))
    y = np.full((m, n), np.nan, np.float32)
    library.call(gemm_name(EPI_SHAPE, key), dict(x=a, w=pack_weights(b, sched), y=y, res=res, **vecs), threads)
    want = E.reference(ep, a.astype(np.float64) @ b, residual=res, **vecs)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=2e-5)


def test_gemm_strided_operands(lib):
    """lda > K and ldc > N: A is a column slice of a wider matrix, C a slice of a wider output
    (a concat the memory planner fused away); columns outside the slice stay untouched."""
    target, _, _ = lib
    m, n, k, lda, ldc = 19, 21, 13, 20, 30
    prob = GemmProblem(AOperand.matrix(m, k, lda), n, ldc=ldc, epilogue=Epilogue(bias=True, residual=True))
    sched = default_schedule(target, prob)
    mod = new_module()
    emit_gemm(mod, "strided", prob, sched)
    library = compile_module(mod, target)
    rng = np.random.default_rng(3)
    a_full, b, bias = rand(rng, m, lda), rand(rng, k, n), rand(rng, n)
    res = rand(rng, m, ldc)
    y = np.full((m, ldc), 7.0, np.float32)
    library.call("strided", dict(x=a_full, w=pack_weights(b, sched), y=y, bias=bias, res=res), 2)
    want = a_full[:, :k].astype(np.float64) @ b + bias + res[:, :n]
    np.testing.assert_allclose(y[:, :n], want, rtol=1e-4, atol=1e-4)
    assert (y[:, n:] == 7.0).all()


PACKED_A_CASES = {"gemm_100x257x100": (100, 257, 100), "gemm_7x17x33": (7, 17, 33),
                  "conv1_7x7_s2": CONVS["conv1_7x7_s2"], "3x3_s2": CONVS["3x3_s2"],
                  "1x1_s2_downsample": CONVS["1x1_s2_downsample"], "grouped_3x3": CONVS["grouped_3x3"]}


@pytest.fixture(scope="module")
def packed_a_lib():
    """The pack_a schedules (A copied into a contiguous per-thread block) on the host."""
    target = cpu_target()
    if "fma" not in target.required:
        pytest.skip("host has no AVX2+FMA")
    mod, specs = new_module(), {}
    for key, case in PACKED_A_CASES.items():
        prob = GemmProblem(AOperand.matrix(case[0], case[2]), case[1]) if isinstance(case, tuple) else case.gemm()
        sched = dataclasses.replace(default_schedule(target, prob), pack_a=1)
        if isinstance(case, tuple):
            emit_gemm(mod, key, prob, sched)
            specs[key] = sched
        else:
            specs[key] = emit_conv(mod, key, case, target, sched)
    return compile_module(mod, target), specs


@pytest.mark.parametrize("key", sorted(PACKED_A_CASES))
def test_packed_a_matches_numpy(packed_a_lib, key):
    library, specs = packed_a_lib
    case, rng = PACKED_A_CASES[key], np.random.default_rng(11)
    if isinstance(case, tuple):
        m, n, k = case
        a, b = rand(rng, m, k), rand(rng, k, n)
        y = np.full((m, n), np.nan, np.float32)
        library.call(key, dict(x=a, w=pack_weights(b, specs[key]), y=y), 2)
        np.testing.assert_allclose(y, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4 * np.sqrt(k))
        return
    c = case
    x, w = rand(rng, c.batch, c.in_h, c.in_w, c.in_c), rand(rng, c.out_c, c.in_c // c.groups, c.kh, c.kw)
    vecs = {name: rand(rng, c.out_c) for name in ("bias", "scale", "shift")}
    res = rand(rng, c.batch, c.out_h, c.out_w, c.out_c)
    y = np.full(res.shape, np.nan, np.float32)
    library.call(key, dict(x=x, w=specs[key].pack(w), y=y, res=res, **vecs), 2)
    want = E.reference(c.epilogue, conv_reference(x, w, c), residual=res, **vecs)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.sqrt(c.in_c * c.kh * c.kw))


@pytest.mark.parametrize("cb,owb", [(1, 3), (2, 6), (4, 1)])
def test_depthwise_schedules(cb, owb):
    """Every depthwise block shape gives the same result (odd width: a partial pixel block;
    50 channels: a masked partial channel block)."""
    target = cpu_target()
    if "fma" not in target.required:
        pytest.skip("host has no AVX2+FMA")
    c = ConvProblem(1, 50, 9, 11, 50, 3, 3, (1, 1), (1, 1, 1, 1), groups=50, epilogue=Epilogue(bias=True))
    mod = new_module()
    kernel = emit_conv(mod, "dw", c, target, DepthwiseSchedule(cb, owb, target_lanes(target)))
    library = compile_module(mod, target)
    rng = np.random.default_rng(cb * 10 + owb)
    x, w, bias = rand(rng, 1, 9, 11, 50), rand(rng, 50, 1, 3, 3), rand(rng, 50)
    y = np.full((1, c.out_h, c.out_w, 50), np.nan, np.float32)
    library.call("dw", dict(x=x, w=kernel.pack(w), y=y, bias=bias), 2)
    np.testing.assert_allclose(y, conv_reference(x, w, c) + bias, rtol=1e-4, atol=1e-4)


def test_packed_a_lets_avx512_use_13_rows():
    """With A packed, all rows share one base register: a 13x32 tile has no spills (read in
    place, 13 row pointers would not fit the 16 GPRs). 14x32 needs 31 of the 32 vector
    registers and whether LLVM's scheduler then spills one depends on the surrounding
    worker code; it stays in the tuner's space, which times it like any other point."""
    target = cpu_target({"mcpu": "x86-64-v4"})
    sched = GemmSchedule(mr=13, nr=32, kc=128, mc_tiles=16, nc_panels=4, unroll=4, lanes=16, pack_a=1)
    hot = _hot_loop(_asm(target, GemmProblem(AOperand.matrix(512, 512), 512), sched))
    FileCheck().check_count("vfmadd231ps", 13 * 2 * 4).run(hot)
    FileCheck().check_not("(%rsp").run(hot)


def conv_reference(x, w, c: ConvProblem):
    """NHWC conv in numpy (float64): one matmul per tap and group."""
    pt, pl, pb, pr = c.pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out = np.zeros((c.batch, c.out_h, c.out_w, c.out_c))
    cig, cog = c.in_c // c.groups, c.out_c // c.groups
    for i in range(c.kh):
        for j in range(c.kw):
            h0, w0 = i * c.dilation[0], j * c.dilation[1]
            patch = xp[:, h0:h0 + c.stride[0] * (c.out_h - 1) + 1:c.stride[0],
                       w0:w0 + c.stride[1] * (c.out_w - 1) + 1:c.stride[1], :]
            for g in range(c.groups):
                out[..., g * cog:(g + 1) * cog] += patch[..., g * cig:(g + 1) * cig] @ w[g * cog:(g + 1) * cog, :, i, j].T
    return out


@pytest.mark.parametrize("key", sorted(CONVS))
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_matches_numpy(lib, key, threads):
    _, library, kernels = lib
    c = CONVS[key]
    need(library, "conv_" + key)
    rng = np.random.default_rng(len(key))
    x = rand(rng, c.batch, c.in_h, c.in_w, c.in_c)
    w = rand(rng, c.out_c, c.in_c // c.groups, c.kh, c.kw)
    vecs = {name: rand(rng, c.out_c) for name in ("bias", "scale", "shift")}
    res = rand(rng, c.batch, c.out_h, c.out_w, c.out_c)
    y = np.full((c.batch, c.out_h, c.out_w, c.out_c), np.nan, np.float32)
    library.call("conv_" + key, dict(x=x, w=kernels[key].pack(w), y=y, res=res, **vecs), threads)
    want = E.reference(c.epilogue, conv_reference(x, w, c), residual=res, **vecs)
    k = c.in_c // c.groups * c.kh * c.kw
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_conv_kinds():
    """1x1 stride-1 convs are direct GEMMs on the activations; depthwise has its own kernel."""
    assert CONVS["1x1_s1_bn_res_relu"].gemm().a.pointwise
    assert not CONVS["1x1_s2_downsample"].gemm().a.pointwise
    assert not CONVS["3x3_s1"].gemm().a.pointwise
    assert CONVS["depthwise_3x3"].depthwise and not CONVS["grouped_3x3"].depthwise


def _asm(target, prob, sched=None):
    mod = new_module()
    emit_gemm(mod, "g", prob, sched or default_schedule(target, prob))
    return assembly(mod, target)


def _hot_loop(text: str) -> str:
    """The loop block with the most FMAs (the microkernel's unrolled k loop), up to its back edge."""
    blocks = re.split(r"\n(?=\.LBB)", text)
    hot = max(blocks, key=lambda blk: blk.count("vfmadd"))
    label = hot.split(":", 1)[0]
    return hot[:hot.index("\t" + label) + len(label) + 1] if ("\t" + label) in hot else hot


def test_avx512_code_uses_zmm_fma():
    """The x86-64-v4 path (numerics need an AVX-512 host; this one checks the code):
    512-bit FMAs fed by broadcasts, a 6x64 tile with no spills in the k loop, masked edges."""
    target = cpu_target({"mcpu": "x86-64-v4"})
    sched = default_schedule(target, GemmProblem(AOperand.matrix(64, 64), 64))
    assert (sched.mr, sched.nr, sched.lanes) == (6, 64, 16)
    hot = _hot_loop(_asm(target, GemmProblem(AOperand.matrix(512, 512), 512)))
    FileCheck().check_count("vfmadd231ps", 6 * 4 * sched.unroll).run(hot)
    FileCheck().check("%zmm").run(hot)
    assert hot.count("vbroadcastss") + hot.count("{1to16}") >= 6 * sched.unroll
    FileCheck().check_not("(%rsp").run(hot)  # accumulators and row pointers stay in registers
    text = _asm(target, GemmProblem(AOperand.matrix(30, 40), 40))
    FileCheck().check(re.compile(r"\{%k[1-7]\}")).run(text)  # the 40-column edge is stored under an AVX-512 mask


def test_avx2_code_uses_ymm_fma_only():
    target = cpu_target({"mcpu": "x86-64-v3"})
    text = _asm(target, GemmProblem(AOperand.matrix(30, 40), 43))
    FileCheck().check("vfmadd231ps").check("%ymm").run(text)
    FileCheck().check_not("%zmm").run(text)
    FileCheck().check("vmaskmovps").run(text)  # the 43 % 8 column edge: masked load/store
    hot = _hot_loop(_asm(target, GemmProblem(AOperand.matrix(512, 512), 512)))
    FileCheck().check_count("vfmadd231ps", 6 * 2 * 4).run(hot)  # 6x16 tile, unroll 4
    FileCheck().check_not("(%rsp").run(hot)  # no spills


def test_schedule_space_is_checked():
    with pytest.raises(CompilerError, match="vector registers"):
        GemmSchedule(mr=8, nr=16, kc=256, mc_tiles=16, nc_panels=4, unroll=4, lanes=8)
    with pytest.raises(CompilerError, match="multiple"):
        GemmSchedule(mr=4, nr=24, kc=256, mc_tiles=16, nc_panels=4, unroll=4, lanes=16)
    with pytest.raises(CompilerError, match="outside"):
        GemmSchedule(mr=4, nr=16, kc=100, mc_tiles=16, nc_panels=4, unroll=4, lanes=8)
    GemmSchedule(mr=14, nr=32, kc=256, mc_tiles=16, nc_panels=4, unroll=4, lanes=16)
    with pytest.raises(CompilerError, match="vector registers"):
        DepthwiseSchedule(4, 4, 8)
    DepthwiseSchedule(4, 4, 16)


def test_conv_rejects_a_schedule_for_another_target():
    avx512 = GemmSchedule(mr=8, nr=48, kc=128, mc_tiles=16, nc_panels=4, unroll=4, lanes=16)
    with pytest.raises(CompilerError, match="lanes=8"):
        emit_conv(new_module(), "c", CONVS["3x3_s1"], cpu_target({"mcpu": "x86-64-v3"}), avx512)
    with pytest.raises(CompilerError, match="DepthwiseSchedule"):
        emit_conv(new_module(), "c", CONVS["depthwise_3x3"], cpu_target({"mcpu": "x86-64-v3"}),
                  GemmSchedule(mr=6, nr=16, kc=256, mc_tiles=16, nc_panels=4, unroll=4, lanes=8))


def test_epilogue_rejects_unknown_activation():
    with pytest.raises(CompilerError, match="activation"):
        Epilogue(activation="tanh")
