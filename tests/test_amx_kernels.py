"""The AMX tile kernels (`microkernels.amx`, schedule knob `amx`) for bfloat16 and int8.

On a host with AMX (Sapphire Rapids and later) every tile shape (16 or 32 rows x 16 or 32
columns) runs GEMMs with edge rows and columns, K tails that are not whole tiles, K split
into chunks (partial sums through C), and strided, padded, grouped and 3-channel convs:
  - bfloat16 against the float64 product of the bfloat16-rounded operands (the tolerance
    of `test_bf16_kernels`: only float32 accumulation order differs);
  - int8 against the vector kernel (`vpdpbusd`) bit for bit: both sum the same u8 x s8
    products exactly in int32 and share the epilogue.
The vector bfloat16 kernel is run on the same cases too, since the host's default picks
the tiles for most of them. Everywhere else (any x86 host): the emitted code for a
Sapphire Rapids target, the default's choices, and the refusals that keep tile code off
CPUs without AMX.
"""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from compiler.autotune import space
from compiler.codegen.llvm.microkernels import AOperand, Epilogue, GemmProblem, GemmSchedule, default_schedule, \
    emit_gemm, pack_weights
from compiler.codegen.llvm.microkernels.build import assembly, compile_module, new_module
from compiler.codegen.llvm.microkernels.conv import ConvProblem, emit_conv
from compiler.codegen.llvm.microkernels.gemm import check_fits_target
from compiler.codegen.llvm.target import cpu_target
from compiler.ir import int8
from compiler.ir.errors import CompilerError

from test_microkernels import conv_reference

GEMM_SHAPES = [(8, 7, 17), (33, 100, 257), (100, 257, 100), (64, 64, 64), (17, 48, 1), (40, 33, 70), (40, 50, 160)]
# K over chunks: five, none a whole tile (packed through the staging rows); two of 48
# channels (each run whole vectors: packed straight into the tile layout)
CHUNKED = {"chunked": ((37, 70, 301), 64), "chunked48": ((37, 40, 96), 64)}
CONVS = {
    "3x3_pad_odd": ConvProblem(1, 37, 15, 15, 50, 3, 3, (1, 1), (1, 1, 1, 1)),
    "3x3_s2_grouped": ConvProblem(1, 30, 9, 9, 42, 3, 3, (2, 2), (1, 1, 1, 1), groups=2),
    "7x7_s2_3ch": ConvProblem(1, 3, 20, 20, 24, 7, 7, (2, 2), (3, 3, 3, 3)),
    "1x1_residual": ConvProblem(2, 64, 6, 6, 40, 1, 1, epilogue=Epilogue(bias=True, residual=True,
                                                                         activation="relu")),
    # channels a multiple of 16: packed straight into the tile layout (`_direct_tiles`)
    "3x3_pad_32ch": ConvProblem(1, 32, 9, 9, 48, 3, 3, (1, 1), (1, 1, 1, 1)),
    "3x3_grouped_32ch": ConvProblem(1, 64, 7, 7, 40, 3, 3, (1, 1), (1, 1, 1, 1), groups=2),
    "3x3_s2_16ch_merged": ConvProblem(1, 16, 11, 11, 24, 3, 3, (2, 2), (1, 1, 1, 1)),
}
TILES = [(32, 32), (16, 16), (16, 32), (32, 16)]
QUANT = int8.activation_params(-2.5, 3.0)
SPR = {"mcpu": "sapphirerapids"}


def _amx_host():
    target = cpu_target()
    if not {"amx-bf16", "amx-int8"} <= set(target.required):
        pytest.skip("host has no AMX (or the OS did not grant its tile state)")
    return target


def _tile_schedule(target, prob, mr, nr, kc=None):
    base = default_schedule(target, prob)
    return GemmSchedule(mr=mr, nr=nr, kc=kc or base.kc, mc_tiles=4, nc_panels=1 << 30, unroll=4, lanes=16,
                        pack_a=1, amx=1)


def _vector_schedule(target, prob, kc=None):
    no_amx = dataclasses.replace(target, required=tuple(f for f in target.required if not f.startswith("amx")))
    sched = default_schedule(no_amx, prob)
    assert not sched.amx
    return dataclasses.replace(sched, kc=kc) if kc else sched


def bf16(x):
    return x.astype(ml_dtypes.bfloat16).astype(np.float64)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _variants(target, make_schedule):
    """{name: schedule-maker} for the vector kernel and every tile shape."""
    out = {"vector": lambda prob, kc=None: _vector_schedule(target, prob, kc)}
    for mr, nr in TILES:
        out[f"amx{mr}x{nr}"] = lambda prob, kc=None, mr=mr, nr=nr: _tile_schedule(target, prob, mr, nr, kc)
    return out


@pytest.fixture(scope="module")
def built():
    """Every case x every kernel variant x both precisions in one library."""
    target = _amx_host()
    mod, kernels = new_module(), {}
    for variant, make in _variants(target, None).items():
        for precision, fields in (("bf16", {"bf16": True}), ("int8", {"quant": QUANT})):
            for m, n, k in GEMM_SHAPES:
                prob = GemmProblem(AOperand.matrix(m, k), n, **fields)
                name = f"g_{m}_{n}_{k}_{precision}_{variant}"
                kernels[name] = (prob, make(prob))
                emit_gemm(mod, name, prob, kernels[name][1])
            for key, ((m, n, k), kc) in CHUNKED.items():
                prob = GemmProblem(AOperand.matrix(m, k), n, epilogue=Epilogue(bias=True), **fields)
                name = f"{key}_{precision}_{variant}"
                kernels[name] = (prob, make(prob, kc))
                emit_gemm(mod, name, prob, kernels[name][1])
            for key, conv in CONVS.items():
                conv = dataclasses.replace(conv, **fields)
                name = f"{key}_{precision}_{variant}"
                kernels[name] = emit_conv(mod, name, conv, target, make(conv.gemm()))
    return compile_module(mod, target), kernels


def _run_gemm(built, name, threads, bias=False):
    library, kernels = built
    prob, sched = kernels[name]
    m, n, k = prob.m, prob.n, prob.k
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    a, b, vec = rand(rng, m, k), rand(rng, k, n), rand(rng, n)
    y = np.full((m, n), np.nan, np.float32)
    library.call(name, dict(x=a, w=pack_weights(b, sched, prob), y=y, **({"bias": vec} if bias else {})), threads)
    return a, b, vec, y


def _run_conv(built, name):
    library, kernels = built
    c = kernels[name].problem
    rng = np.random.default_rng(c.in_c + c.out_c)
    x = rand(rng, c.batch, c.in_h, c.in_w, c.in_c)
    w = rand(rng, c.out_c, c.in_c // c.groups, c.kh, c.kw)
    bias = rand(rng, c.out_c)
    res = rand(rng, c.batch, c.out_h, c.out_w, c.out_c)
    y = np.full(res.shape, np.nan, np.float32)
    library.call(name, dict(x=x, w=kernels[name].pack(w), y=y, bias=bias, res=res), 2)
    return c, x, w, bias, res, y


VARIANTS = ["vector"] + [f"amx{mr}x{nr}" for mr, nr in TILES]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bf16_gemm(built, shape, variant):
    m, n, k = shape
    a, b, _, y = _run_gemm(built, f"g_{m}_{n}_{k}_bf16_{variant}", threads=2)
    np.testing.assert_allclose(y, bf16(a) @ bf16(b), rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("key", sorted(CHUNKED))
def test_bf16_gemm_over_k_chunks(built, key, variant):
    (m, n, k), _ = CHUNKED[key]
    a, b, bias, y = _run_gemm(built, f"{key}_bf16_{variant}", threads=1, bias=True)
    np.testing.assert_allclose(y, bf16(a) @ bf16(b) + bias, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("key", sorted(CONVS))
def test_bf16_conv(built, key, variant):
    from compiler.codegen.llvm.microkernels import epilogue as E

    c, x, w, bias, res, y = _run_conv(built, f"{key}_bf16_{variant}")
    want = E.reference(c.epilogue, conv_reference(bf16(x), bf16(w), c), residual=res, bias=bias)
    k = c.in_c // c.groups * c.kh * c.kw
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_int8_tiles_equal_the_vector_kernel(built, variant):
    """Exact int32 sums and one epilogue: the tile kernel's floats are the VNNI kernel's."""
    for m, n, k in GEMM_SHAPES:
        want = _run_gemm(built, f"g_{m}_{n}_{k}_int8_vector", threads=2)[3]
        np.testing.assert_array_equal(_run_gemm(built, f"g_{m}_{n}_{k}_int8_{variant}", threads=2)[3], want)
    for key in CHUNKED:
        want = _run_gemm(built, f"{key}_int8_vector", threads=2, bias=True)[3]
        np.testing.assert_array_equal(_run_gemm(built, f"{key}_int8_{variant}", threads=2, bias=True)[3], want)
    for key in CONVS:
        np.testing.assert_array_equal(_run_conv(built, f"{key}_int8_{variant}")[5],
                                      _run_conv(built, f"{key}_int8_vector")[5])


# ------------------------------------------------------------------ any x86 host: code and choices


def _asm(prob, sched):
    mod = new_module()
    emit_gemm(mod, "g", prob, sched)
    return assembly(mod, cpu_target(SPR))


def test_sapphire_rapids_bf16_default_is_tiles_and_the_code_is_amx():
    target = cpu_target(SPR)
    prob = GemmProblem(AOperand.matrix(100, 300), 96, bf16=True)
    sched = default_schedule(target, prob)
    assert sched.amx and (sched.mr, sched.nr) == (32, 32)
    text = _asm(prob, sched)
    for instruction in ("ldtilecfg", "tileloadd", "tdpbf16ps", "tilestored", "tilerelease"):
        assert instruction in text, instruction
    # int8 takes tiles from K 256 (measured, `gemm.amx_suits`), keeps vpdpbusd below
    q = GemmProblem(AOperand.matrix(100, 300), 96, quant=QUANT)
    assert default_schedule(target, q).amx
    assert "tdpbusd" in _asm(q, default_schedule(target, q))
    short = GemmProblem(AOperand.matrix(100, 147), 96, quant=QUANT)
    assert not default_schedule(target, short).amx
    assert "tdpbusd" in _asm(short, dataclasses.replace(default_schedule(target, prob), amx=1))


def test_few_rows_and_other_cpus_keep_vector_kernels():
    few = GemmProblem(AOperand.matrix(4, 4096), 1000, bf16=True)
    assert not default_schedule(cpu_target(SPR), few).amx
    prob = GemmProblem(AOperand.matrix(100, 300), 96, bf16=True)
    assert not default_schedule(cpu_target({"mcpu": "znver4"}), prob).amx


def test_tile_schedules_are_refused_where_there_is_no_amx():
    prob = GemmProblem(AOperand.matrix(100, 300), 96, bf16=True)
    tiles = default_schedule(cpu_target(SPR), prob)
    zen4 = cpu_target({"mcpu": "znver4"})
    with pytest.raises(CompilerError, match="AMX tile products, which target"):
        check_fits_target(zen4, prob, tiles, "g")
    with pytest.raises(CompilerError, match="AMX"):
        emit_conv(new_module(), "c", ConvProblem(1, 16, 8, 8, 32, 3, 3, (1, 1), (1, 1, 1, 1), bf16=True), zen4, tiles)
    assert not space.same_kind(tiles, prob, zen4)  # a tuning-cache entry from an AMX host: a miss here
    assert space.same_kind(tiles, prob, cpu_target(SPR))
    with pytest.raises(CompilerError, match="for bfloat16 and int8"):
        emit_gemm(new_module(), "g", GemmProblem(AOperand.matrix(100, 300), 96), tiles)


def test_tile_schedule_space():
    with pytest.raises(CompilerError, match="amx=1 needs"):
        GemmSchedule(mr=8, nr=32, kc=256, mc_tiles=4, nc_panels=4, unroll=4, lanes=16, pack_a=1, amx=1)
    with pytest.raises(CompilerError, match="amx=1 needs"):
        GemmSchedule(mr=16, nr=32, kc=256, mc_tiles=4, nc_panels=4, unroll=4, lanes=16, pack_a=0, amx=1)
    with pytest.raises(CompilerError, match="rows are for AMX"):
        GemmSchedule(mr=16, nr=16, kc=256, mc_tiles=4, nc_panels=4, unroll=4, lanes=16, pack_a=1)
    prob = GemmProblem(AOperand.matrix(100, 300), 96, bf16=True)
    cands = space.gemm_candidates(prob, cpu_target(SPR))
    tiles = {(s.mr, s.nr) for s in cands if s.amx}
    assert tiles == set(TILES) and any(not s.amx for s in cands)
    assert not any(s.amx for s in space.gemm_candidates(prob, cpu_target({"mcpu": "znver4"})))


def test_packed_k_is_whole_tile_rows_of_zeros():
    """Each K chunk's packed B rows are padded to 16 slots (32 bfloat16 k) with zeros."""
    prob = GemmProblem(AOperand.matrix(40, 70), 20, bf16=True)
    sched = GemmSchedule(mr=32, nr=32, kc=1 << 30, mc_tiles=4, nc_panels=4, unroll=4, lanes=16, pack_a=1, amx=1)
    rng = np.random.default_rng(0)
    packed = pack_weights(rand(rng, 70, 20), sched, prob)
    assert packed.shape == (1, 1, 48, 32)  # 35 pairs -> 48 slots
    assert not packed.view(np.uint32)[:, :, 35:].any()
