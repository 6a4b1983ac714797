"""The bfloat16 GEMM and conv microkernels (AVX512-BF16) against a float64 reference on
bfloat16-rounded operands: every shape class the fp32 kernels have (edge tiles, K tails of
odd length, K split into chunks, grouped, strided, dilated and padded convs, 3-channel
first layers with merged kernel rows), and the emitted code (vdpbf16ps in the hot loop).

Tolerance: both sides multiply the same bfloat16 values exactly; only the float32
accumulation order differs, so the error is float32 rounding of a K-term sum (rtol 1e-5,
atol 1e-5 * sqrt(K) on unit-normal data), a thousand times tighter than bfloat16's own
rounding, which the comparison with unrounded operands shows is really there.
"""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from compiler.codegen.llvm.microkernels import AOperand, Epilogue, GemmProblem, GemmSchedule, default_schedule, \
    emit_gemm, pack_weights
from compiler.codegen.llvm.microkernels import epilogue as E
from compiler.codegen.llvm.microkernels.build import assembly, compile_module, new_module
from compiler.codegen.llvm.microkernels.conv import ConvProblem, emit_conv
from compiler.codegen.llvm.target import cpu_target
from compiler.ir.errors import CompilerError

from filecheck import FileCheck
from test_microkernels import CONVS as FP32_CONVS
from test_microkernels import conv_reference

# (M, N, K): edge rows and columns, odd K (a zero half pair), K below one pair
GEMM_SHAPES = [(1, 7, 17), (7, 17, 33), (33, 100, 257), (100, 257, 100), (64, 64, 64), (13, 48, 1), (5, 129, 2)]
# kc small enough to split K into chunks of odd lengths
CHUNKED = {"k_chunks_odd": ((37, 70, 301), 64), "k_chunks_even": ((20, 64, 512), 128)}
# the fp32 file's convolutions (depthwise ones stay fp32: no bf16 kernel), plus odd channels
CONVS = {key: conv for key, conv in FP32_CONVS.items() if not conv.depthwise}
CONVS.update({
    "3x3_s2_odd_channels": ConvProblem(1, 37, 15, 15, 50, 3, 3, (2, 2), (1, 1, 1, 1)),
    "grouped_odd": ConvProblem(1, 30, 9, 9, 42, 3, 3, (1, 1), (1, 1, 1, 1), groups=2),
    # AlexNet's conv1: merged kernel rows of 33 values, so each ends with a one-value tail
    "11x11_s4_3ch": ConvProblem(1, 3, 23, 23, 96, 11, 11, (4, 4), (0, 0, 0, 0)),
})


def _host():
    target = cpu_target()
    if "avx512bf16" not in target.required:
        pytest.skip("host has no AVX512-BF16")
    return target


def bf16(x: np.ndarray) -> np.ndarray:
    return x.astype(ml_dtypes.bfloat16).astype(np.float64)


@pytest.fixture(scope="module")
def lib():
    return build_library(_host(), GEMM_SHAPES, CHUNKED, CONVS, lambda i: {"bf16": True})


def build_library(target, gemm_shapes, chunked, convs, precision):
    """(the compiled library, {key: (problem, schedule) or ConvKernel}) of every GEMM shape
    (named g_M_N_K), every chunked GEMM (bias epilogue, the given kc) and every conv, each
    with the precision fields `precision(index)` returns ({"bf16": True}, {"quant": ...})."""
    mod, kernels = new_module(), {}
    for i, (m, n, k) in enumerate(gemm_shapes):
        prob = GemmProblem(AOperand.matrix(m, k), n, **precision(i))
        kernels[(m, n, k)] = (prob, default_schedule(target, prob))
        emit_gemm(mod, f"g_{m}_{n}_{k}", prob, kernels[(m, n, k)][1])
    for i, (key, ((m, n, k), kc)) in enumerate(chunked.items()):
        prob = GemmProblem(AOperand.matrix(m, k), n, epilogue=Epilogue(bias=True), **precision(i))
        kernels[key] = (prob, dataclasses.replace(default_schedule(target, prob), kc=kc))
        emit_gemm(mod, key, prob, kernels[key][1])
    for i, (key, conv) in enumerate(convs.items()):
        kernels[key] = emit_conv(mod, key, dataclasses.replace(conv, **precision(i)), target)
    return compile_module(mod, target), kernels


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def run_gemm(lib, shape, threads):
    """Run GEMM `shape` of the library on seeded data: (its problem, A, B, the output)."""
    library, kernels = lib
    m, n, k = shape
    prob, sched = kernels[shape]
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    a, b = rand(rng, m, k), rand(rng, k, n)
    y = np.full((m, n), np.nan, np.float32)
    library.call(f"g_{m}_{n}_{k}", dict(x=a, w=pack_weights(b, sched, prob), y=y), threads)
    return prob, a, b, y


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_gemm_matches_rounded_reference(lib, shape, threads):
    prob, a, b, y = run_gemm(lib, shape, threads)
    m, n, k = shape
    np.testing.assert_allclose(y, bf16(a) @ bf16(b), rtol=1e-5, atol=1e-5 * np.sqrt(k))
    if k >= 16:  # the rounding is really bfloat16's: unrounded operands differ far beyond that
        assert np.abs(y - a.astype(np.float64) @ b).max() > 1e-3


@pytest.mark.parametrize("key", sorted(CHUNKED))
def test_bf16_gemm_over_k_chunks(lib, key):
    """K split into chunks (each padded to whole pairs on its own): partial sums through C."""
    library, kernels = lib
    (m, n, k), _ = CHUNKED[key]
    prob, sched = kernels[key]
    rng = np.random.default_rng(5)
    a, b, bias = rand(rng, m, k), rand(rng, k, n), rand(rng, n)
    y = np.full((m, n), np.nan, np.float32)
    library.call(key, dict(x=a, w=pack_weights(b, sched, prob), y=y, bias=bias), 2)
    np.testing.assert_allclose(y, bf16(a) @ bf16(b) + bias, rtol=1e-5, atol=1e-5 * np.sqrt(k))


def run_conv(lib, key):
    """Run conv `key` of the library on seeded data (2 threads): (its problem, x, w, the
    epilogue vectors, the residual, the output)."""
    library, kernels = lib
    c = kernels[key].problem
    rng = np.random.default_rng(len(key))
    x = rand(rng, c.batch, c.in_h, c.in_w, c.in_c)
    w = rand(rng, c.out_c, c.in_c // c.groups, c.kh, c.kw)
    vecs = {name: rand(rng, c.out_c) for name in ("bias", "scale", "shift")}
    res = rand(rng, c.batch, c.out_h, c.out_w, c.out_c)
    y = np.full(res.shape, np.nan, np.float32)
    library.call(key, dict(x=x, w=kernels[key].pack(w), y=y, res=res, **vecs), 2)
    return c, x, w, vecs, res, y


@pytest.mark.parametrize("key", sorted(CONVS))
def test_bf16_conv_matches_rounded_reference(lib, key):
    c, x, w, vecs, res, y = run_conv(lib, key)
    want = E.reference(c.epilogue, conv_reference(bf16(x), bf16(w), c), residual=res, **vecs)
    k = c.in_c // c.groups * c.kh * c.kw
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_bf16_weights_pack_as_pairs():
    """B's k rows pair up per column in one 32-bit slot, low half first; an odd K gets a
    zero second half."""
    target = cpu_target({"mcpu": "znver4"})
    prob = GemmProblem(AOperand.matrix(4, 3), 16, bf16=True)
    sched = default_schedule(target, prob)
    b = np.arange(3 * 16, dtype=np.float32).reshape(3, 16)
    packed = pack_weights(b, sched, prob)
    assert packed.shape == (1, 1, 2, sched.nr) and packed.dtype == np.float32
    halves = packed.view(np.uint16).reshape(1, 1, 2, sched.nr, 2).view(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(halves[0, 0, 0, :16, 0], b[0])
    np.testing.assert_array_equal(halves[0, 0, 0, :16, 1], b[1])
    np.testing.assert_array_equal(halves[0, 0, 1, :16, 0], b[2])
    assert not halves[0, 0, 1, :, 1].any() and not halves[0, 0, :, 16:].any()


def hot_loop_of(size: int, instruction: str, **precision) -> tuple[str, str]:
    """(the Zen 4 assembly of a size^3 GEMM with `precision` fields, its block issuing the
    most `instruction`s), having checked that block issues one per accumulator and
    unrolled k step."""
    target = cpu_target({"mcpu": "znver4"})
    prob = GemmProblem(AOperand.matrix(size, size), size, **precision)
    sched = default_schedule(target, prob)
    mod = new_module()
    emit_gemm(mod, "g", prob, sched)
    text = assembly(mod, target)
    hot = max(text.split("\n.LBB"), key=lambda blk: blk.count(instruction))
    FileCheck().check_count(instruction, sched.mr * sched.nv * sched.unroll).run(hot)
    return text, hot


def test_bf16_code_uses_vdpbf16ps():
    """Checked on the emitted code, so on any host: the hot loop is 512-bit vdpbf16ps fed
    by 32-bit broadcasts of A pairs, with no spills; A is converted by vcvtneps2bf16."""
    text, hot = hot_loop_of(512, "vdpbf16ps", bf16=True)
    FileCheck().check("%zmm").run(hot)
    assert "vfmadd" not in hot
    FileCheck().check("vcvtneps2bf16").run(text)


def test_bf16_schedule_must_pack_a():
    """A is converted while it is packed: a bfloat16 problem refuses pack_a=0, and the
    tuner's space never offers it."""
    from compiler.autotune.space import pack_a_fits

    target = cpu_target({"mcpu": "znver4"})
    prob = GemmProblem(AOperand.matrix(64, 64), 64, bf16=True)
    sched = default_schedule(target, prob)
    assert sched.pack_a == 1
    unpacked = dataclasses.replace(sched, pack_a=0)
    assert not pack_a_fits(prob, unpacked)
    with pytest.raises(CompilerError, match="pack_a=1"):
        emit_gemm(new_module(), "g", prob, unpacked)
    with pytest.raises(CompilerError, match="16 lanes"):
        emit_gemm(new_module(), "g", prob, GemmSchedule(mr=6, nr=16, kc=1 << 30, mc_tiles=16, nc_panels=4,
                                                        unroll=4, lanes=8, pack_a=1))
