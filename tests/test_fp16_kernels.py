"""The float16-weight GEMM and conv microkernels (F16C) against a float64 reference on
float16-rounded weights and float32 activations (`ir.ops.matmul.rounds_activation`), on
AVX-512 and on AVX2 code (both run on any host that has AVX-512; AVX2 alone runs the AVX2
half), with B kept in float16 (`half_b`) and widened at compile time, A read in place or
packed as the default schedule says: every shape class the fp32 kernels have (edge tiles,
K tails, K split into chunks, grouped, strided, dilated and padded convs, 3-channel first
layers with merged kernel rows, odd channel counts), the packed layout, the default's
choice of B storage, and the emitted code (vcvtph2ps feeding the FMAs of the hot loop).

Tolerance: both sides multiply the same values (float16 weights are exact in float32);
only the float32 accumulation order differs, so the error is float32 rounding of a K-term
sum (rtol 1e-5, atol 1e-5 * sqrt(K) on unit-normal data), far tighter than float16's own
rounding, which the comparison with unrounded weights shows is there.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compiler.codegen.llvm.microkernels import AOperand, GemmProblem, GemmSchedule, default_schedule, emit_gemm, \
    pack_weights
from compiler.codegen.llvm.microkernels import epilogue as E
from compiler.codegen.llvm.microkernels.build import compile_module, new_module
from compiler.codegen.llvm.microkernels.conv import emit_conv
from compiler.codegen.llvm.microkernels.gemm import HALF_B_MAX_ROWS
from compiler.codegen.llvm.target import cpu_target
from compiler.ir.errors import CompilerError

from filecheck import FileCheck
from test_bf16_kernels import CHUNKED, CONVS, GEMM_SHAPES, hot_loop_of, run_conv, run_gemm
from test_microkernels import conv_reference

TARGETS = {"avx512": {}, "avx2": {"mcpu": "haswell"}}


def half(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float64)


@pytest.fixture(scope="module", params=[(t, hb) for t in sorted(TARGETS) for hb in (0, 1)],
                ids=lambda p: f"{p[0]}-{'half' if p[1] else 'float'}_b")
def lib(request):
    """Every problem of the bf16 file's lists as float16, B stored as `half_b` says."""
    name, half_b = request.param
    target = cpu_target(TARGETS[name])
    if not set(target.required) <= set(cpu_target().required):
        pytest.skip(f"host cannot run {name} code")

    def schedule(prob, **changes):
        return dataclasses.replace(default_schedule(target, prob), half_b=half_b, **changes)

    mod, kernels = new_module(), {}
    for m, n, k in GEMM_SHAPES:
        prob = GemmProblem(AOperand.matrix(m, k), n, fp16=True)
        kernels[(m, n, k)] = (prob, schedule(prob))
        emit_gemm(mod, f"g_{m}_{n}_{k}", prob, kernels[(m, n, k)][1])
    for key, ((m, n, k), kc) in CHUNKED.items():
        prob = GemmProblem(AOperand.matrix(m, k), n, epilogue=E.Epilogue(bias=True), fp16=True)
        kernels[key] = (prob, schedule(prob, kc=kc))
        emit_gemm(mod, key, prob, kernels[key][1])
    for key, conv in CONVS.items():
        conv = dataclasses.replace(conv, fp16=True)
        kernels[key] = emit_conv(mod, key, conv, target, schedule(conv.gemm()))
    return compile_module(mod, target), kernels


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("threads", [1, 2])
def test_fp16_gemm_matches_rounded_reference(lib, shape, threads):
    prob, a, b, y = run_gemm(lib, shape, threads)
    m, n, k = shape
    np.testing.assert_allclose(y, a.astype(np.float64) @ half(b), rtol=1e-5, atol=1e-5 * np.sqrt(k))
    if k >= 16:  # the rounding is really float16's: unrounded operands differ beyond that
        assert np.abs(y - a.astype(np.float64) @ b).max() > 1e-4


@pytest.mark.parametrize("key", sorted(CHUNKED))
def test_fp16_gemm_over_k_chunks(lib, key):
    """K split into chunks: partial sums through C, each chunk's B rows at their offset in
    halves."""
    library, kernels = lib
    (m, n, k), _ = CHUNKED[key]
    prob, sched = kernels[key]
    rng = np.random.default_rng(5)
    a, b, bias = (rng.standard_normal(s).astype(np.float32) for s in ((m, k), (k, n), (n,)))
    y = np.full((m, n), np.nan, np.float32)
    library.call(key, dict(x=a, w=pack_weights(b, sched, prob), y=y, bias=bias), 2)
    np.testing.assert_allclose(y, a.astype(np.float64) @ half(b) + bias, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("key", sorted(CONVS))
def test_fp16_conv_matches_rounded_reference(lib, key):
    c, x, w, vecs, res, y = run_conv(lib, key)
    want = E.reference(c.epilogue, conv_reference(x.astype(np.float64), half(w), c), residual=res, **vecs)
    k = c.in_c // c.groups * c.kh * c.kw
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_fp16_weights_pack_in_half_the_bytes():
    """The fp32 panel layout [groups, panels, K, NR] of B rounded to float16, zero-padded
    past N: as float16 values with half_b (half the bytes), else widened to float32."""
    target = cpu_target({"mcpu": "znver4"})
    prob = GemmProblem(AOperand.matrix(4, 3), 20, fp16=True)
    sched = default_schedule(target, prob)
    assert sched.half_b == 1  # 4 rows: the weights stream
    b = np.arange(3 * 20, dtype=np.float32).reshape(3, 20) / 7
    packed = pack_weights(b, sched, prob)
    fp32 = pack_weights(b, sched, GemmProblem(AOperand.matrix(4, 3), 20))
    assert packed.dtype == np.float32 and packed.nbytes * 2 == fp32.nbytes
    values = packed.view(np.float16).reshape(fp32.shape)
    np.testing.assert_array_equal(values, fp32.astype(np.float16))
    assert not values[0, 0, :, 20:].any()
    wide = pack_weights(b, dataclasses.replace(sched, half_b=0), prob)
    np.testing.assert_array_equal(wide, values.astype(np.float32))


def test_fp16_default_keeps_float16_b_where_the_weights_stream():
    """Few rows (matrix-vector products, small batches): float16 B; many rows (the
    convolutions of a CNN): float32 B, no conversions in the k loop; float32 problems
    never take half_b."""
    target = cpu_target({"mcpu": "znver4"})
    few = GemmProblem(AOperand.matrix(HALF_B_MAX_ROWS, 4096), 4096, fp16=True)
    many = GemmProblem(AOperand.matrix(HALF_B_MAX_ROWS + 1, 4096), 4096, fp16=True)
    assert default_schedule(target, few).half_b == 1 and default_schedule(target, many).half_b == 0
    fp32 = GemmProblem(AOperand.matrix(1, 4096), 4096)
    assert default_schedule(target, fp32).half_b == 0
    with pytest.raises(CompilerError, match="half_b=1"):
        emit_gemm(new_module(), "g", fp32, dataclasses.replace(default_schedule(target, fp32), half_b=1))


def test_fp16_code_widens_b_in_the_hot_loop():
    """Checked on the emitted code, so on any host: the hot loop widens each B vector once
    (vcvtph2ps, from memory) and feeds it to the tile's FMAs."""
    text, hot = hot_loop_of(HALF_B_MAX_ROWS, "vfmadd231ps", fp16=True)
    prob = GemmProblem(AOperand.matrix(HALF_B_MAX_ROWS, HALF_B_MAX_ROWS), HALF_B_MAX_ROWS, fp16=True)
    sched = default_schedule(cpu_target({"mcpu": "znver4"}), prob)
    assert sched.half_b
    FileCheck().check_count("vcvtph2ps", sched.nv * sched.unroll).run(hot)
    FileCheck().check("%zmm").run(hot)
    assert "vcvtps2ph" not in text  # A stays float32: nothing is narrowed


def test_fp16_schedules_are_the_fp32_ones_but_for_b():
    """A stays float32, so a float16 problem takes the fp32 default's tile and A handling,
    read in place or packed; AVX2 schedules are fine (F16C is part of x86-64-v3); bfloat16
    or int8 problems cannot also be float16."""
    for target in (cpu_target({"mcpu": "znver4"}), cpu_target({"mcpu": "haswell"})):
        for a in (AOperand.matrix(64, 64), AOperand(1, 28, 28, 64, 28, 28, 64, 3, 3, pad=(1, 1))):
            fp32 = default_schedule(target, GemmProblem(a, 128))
            fp16 = default_schedule(target, GemmProblem(a, 128, fp16=True))
            assert dataclasses.replace(fp16, half_b=0) == fp32
    prob = GemmProblem(AOperand.matrix(64, 64), 64, fp16=True)
    emit_gemm(new_module(), "g", prob, GemmSchedule(mr=6, nr=16, kc=1 << 30, mc_tiles=16, nc_panels=4, unroll=4,
                                                    lanes=8, pack_a=0, half_b=1))
    with pytest.raises(CompilerError, match="float16 weights go with float32 A"):
        emit_gemm(new_module(), "g", dataclasses.replace(prob, bf16=True), default_schedule(cpu_target(
            {"mcpu": "znver4"}), dataclasses.replace(prob, bf16=True)))
