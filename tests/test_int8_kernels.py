"""The int8 GEMM and conv microkernels (AVX512-VNNI, the scheme of `ir.int8`) against a
float64 reference on the same integer codes: every shape class the fp32 kernels have (edge
tiles, K tails that are not whole quads, K split into chunks, grouped, strided, dilated
and padded convs, 3-channel first layers with merged kernel rows), activation ranges with
and without a zero point, and the emitted code (vpdpbusd in the hot loop).

Tolerance: the kernel's sum of u8 x s8 products is exact in int32; the only roundings are
the int32 -> float32 conversion and the float32 dequantization scale, so the result agrees
with the float64 reference to a few float32 ulps (rtol 2e-6 plus a tiny atol for values
that cancel to near zero).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compiler.codegen.llvm.microkernels import AOperand, ConvProblem, Epilogue, GemmProblem, default_schedule, pack_weights
from compiler.codegen.llvm.microkernels import epilogue as E
from compiler.codegen.llvm.target import cpu_target
from compiler.ir import int8

from filecheck import FileCheck
from test_bf16_kernels import CHUNKED, CONVS, build_library, hot_loop_of, run_conv, run_gemm
from test_microkernels import conv_reference

# (M, N, K): edge rows and columns, K of every remainder mod 4, K below one quad
GEMM_SHAPES = [(1, 7, 17), (7, 17, 33), (33, 100, 258), (100, 257, 99), (64, 64, 64), (13, 48, 1), (5, 129, 2)]
# K chunks and convolutions: the bf16 file's (the fp32 convs but depthwise, plus odd channels)
# activation quantization: a signed range (zero point inside) and a ReLU-like one (zero point 0)
SIGNED = int8.activation_params(-2.5, 3.0)
UNSIGNED = int8.activation_params(0.0, 4.0)


def _host():
    target = cpu_target()
    if "avx512vnni" not in target.required:
        pytest.skip("host has no AVX512-VNNI")
    return target


def quantized_product(a: np.ndarray, quant) -> np.ndarray:
    """A as the kernel multiplies it: its uint8 codes minus the zero point (float64)."""
    scale, zp = quant
    return int8.quantize_activation(a, scale, zp).astype(np.float64) - zp


@pytest.fixture(scope="module")
def lib():
    # each kind of kernel alternates a signed and a ReLU-like activation range
    return build_library(_host(), GEMM_SHAPES, CHUNKED, CONVS, lambda i: {"quant": (SIGNED, UNSIGNED)[i % 2]})


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def gemm_reference(a, b, quant):
    qb, sb = int8.quantize_weights(b, axis=1)
    return (quantized_product(a, quant) @ qb.astype(np.float64)) * (np.float32(quant[0]) * sb)


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("threads", [1, 2])
def test_int8_gemm_matches_integer_reference(lib, shape, threads):
    prob, a, b, y = run_gemm(lib, shape, threads)
    want = gemm_reference(a, b, prob.quant)
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-6 * np.abs(want).max())
    if prob.quant == SIGNED:  # a range covering the data: the int8 error is there, and small
        exact = (a.astype(np.float64) @ b).ravel()
        assert not np.array_equal(y.ravel(), exact)
        assert exact @ y.ravel() / (np.linalg.norm(exact) * np.linalg.norm(y)) > 0.995


@pytest.mark.parametrize("key", sorted(CHUNKED))
def test_int8_gemm_over_k_chunks(lib, key):
    """Partial sums cross chunks as int32 bits in C; each chunk's quads restart at its own slot."""
    library, kernels = lib
    prob, sched = kernels[key]
    m, n, k = CHUNKED[key][0]
    rng = np.random.default_rng(k)
    a, b, bias = rand(rng, m, k), rand(rng, k, n), rand(rng, n)
    y = np.full((m, n), np.nan, np.float32)
    library.call(key, dict(x=a, w=pack_weights(b, sched, prob), y=y, bias=bias), 2)
    want = gemm_reference(a, b, prob.quant) + bias
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("key", sorted(CONVS))
def test_int8_conv_matches_integer_reference(lib, key):
    """Padding taps read float zeros, which quantize to the zero point: they add nothing
    (with a ReLU-like range, the negative inputs clip to zero, on both sides alike)."""
    c, x, w, vecs, res, y = run_conv(lib, key)
    qw, sw = int8.quantize_weights(w, axis=0)
    acc = conv_reference(quantized_product(x, c.quant), qw.astype(np.float64), c) * (np.float32(c.quant[0]) * sw)
    want = E.reference(c.epilogue, acc, residual=res, **vecs)
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-5 * np.abs(want).max())


def test_int8_weights_pack_as_quads_with_compensation():
    """B's k rows group by four per column in one 32-bit slot (k order in the bytes), a K
    that is not a multiple of four is padded with zero rows, and the compensation and
    dequantization vectors follow the panels."""
    target = cpu_target({"mcpu": "znver4"})
    scale, zp = 0.5, 7
    prob = GemmProblem(AOperand.matrix(4, 5), 16, quant=(scale, zp))
    sched = default_schedule(target, prob)
    b = (np.arange(5 * 16, dtype=np.float32).reshape(5, 16) - 40) / 8
    packed = pack_weights(b, sched, prob)
    q, sw = int8.quantize_weights(b, axis=1)
    quads = packed[:2 * sched.nr].view(np.int8).reshape(2, sched.nr, 4)
    np.testing.assert_array_equal(quads[0, :16].T, q[0:4])
    np.testing.assert_array_equal(quads[1, :16, 0], q[4])
    assert not quads[1, :, 1:].any() and not quads[:, 16:].any()
    comp = packed[2 * sched.nr:2 * sched.nr + 16].view(np.int32)
    np.testing.assert_array_equal(comp, -zp * q.astype(np.int32).sum(axis=0))
    np.testing.assert_array_equal(packed[2 * sched.nr + 16:], np.float32(scale) * sw)


def test_int8_code_uses_vpdpbusd():
    """Checked on the emitted code, so on any host: the hot loop is 512-bit vpdpbusd fed by
    32-bit broadcasts of A quads, and A's codes come from vector converts (no scalar loop)."""
    text, hot = hot_loop_of(512, "vpdpbusd", quant=SIGNED)
    assert "(%rsp)" not in hot, "the hot loop spills"
    FileCheck().check("vrndscaleps").check("vcvttps2dq").check("vpmovdb").run(text)


# int8 chains: A given as uint8 codes, C written as uint8 codes (`GemmProblem.a_codes`, `out_quant`)
OUT = int8.activation_params(-1.0, 6.0)
CHAIN_CONVS = {key: CONVS[key] for key in ("3x3_s1", "3x3_s2_odd_channels", "grouped_odd", "1x1_s2_downsample",
                                           "conv1_7x7_s2")}


@pytest.fixture(scope="module")
def chain_lib():
    return build_library(_host(), [(33, 100, 258), (5, 129, 2)], {}, CHAIN_CONVS,
                         lambda i: {"quant": SIGNED, "a_codes": True, "out_quant": OUT})


def _codes_close(got: np.ndarray, want_float: np.ndarray) -> None:
    """uint8 output codes against the reference's float result quantized the same way: equal
    but where float32 summation order moves a value across a rounding boundary (one code)."""
    want = int8.quantize_activation(want_float.astype(np.float32), *OUT)
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.99, (diff.max(), np.mean(diff == 0))


@pytest.mark.parametrize("shape", [(33, 100, 258), (5, 129, 2)], ids=lambda s: "x".join(map(str, s)))
def test_int8_chain_gemm_reads_and_writes_codes(chain_lib, shape):
    library, kernels = chain_lib
    m, n, k = shape
    prob, sched = kernels[shape]
    rng = np.random.default_rng(k)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rand(rng, k, n)
    y = np.full((m, n), 7, np.uint8)
    pad = np.full(m * n, 0xEE, np.uint8)  # bytes past the output: a masked edge store leaves them
    out = np.concatenate([y.ravel(), pad])
    fn = library.function(f"g_{m}_{n}_{k}")  # byte buffers: past the float32-only `Library.call`
    packed = pack_weights(b, sched, prob)  # held: ctypes takes only its address
    fn(a.ctypes.data, packed.ctypes.data, out.ctypes.data, None, None, None, None, 2)
    qb, sb = int8.quantize_weights(b, axis=1)
    want = ((a.astype(np.float64) - SIGNED[1]) @ qb.astype(np.float64)) * (np.float32(SIGNED[0]) * sb)
    _codes_close(out[:m * n].reshape(m, n), want)
    assert (out[m * n:] == 0xEE).all()


@pytest.mark.parametrize("key", sorted(CHAIN_CONVS))
def test_int8_chain_conv_reads_and_writes_codes(chain_lib, key):
    """Padding taps read the zero point's code (the code of 0.0), so they add nothing."""
    c = chain_lib[1][key].problem
    rng = np.random.default_rng(len(key))
    res = rand(rng, c.batch, c.out_h, c.out_w, c.out_c)
    y, acc, vecs = _run_codes_conv(chain_lib, key, rng, res, np.uint8)
    _codes_close(y, E.reference(c.epilogue, acc, residual=res, **vecs))


def _run_codes_conv(lib, key, rng, res, out_dtype):
    """Run conv `key` of `lib` on seeded uint8 codes with residual `res`: (its output, the
    float64 reference accumulator before the epilogue, the epilogue vectors)."""
    library, kernels = lib
    c = kernels[key].problem
    x = rng.integers(0, 256, (c.batch, c.in_h, c.in_w, c.in_c), dtype=np.uint8)
    w = rand(rng, c.out_c, c.in_c // c.groups, c.kh, c.kw)
    vecs = {name: rand(rng, c.out_c) for name in ("bias", "scale", "shift")}
    y = np.zeros(res.shape, out_dtype)
    ptr = {name: vecs[name].ctypes.data for name in ("bias", "scale", "shift")}
    packed = kernels[key].pack(w)  # held: ctypes takes only its address
    library.function(key)(x.ctypes.data, packed.ctypes.data, y.ctypes.data, ptr["bias"], ptr["scale"], ptr["shift"],
                          res.ctypes.data, 2)
    qw, sw = int8.quantize_weights(w, axis=0)
    acc = conv_reference(x.astype(np.float64) - SIGNED[1], qw.astype(np.float64), c) * (np.float32(SIGNED[0]) * sw)
    return y, acc, vecs


# int8 chains: the residual given as uint8 codes too (`GemmProblem.res_quant`), with the
# output as codes or as float32; odd channel counts leave masked tails in every row.
RES = int8.activation_params(-0.5, 2.0)
RESIDUAL_CONVS = {
    "1x1_res_relu_odd": (ConvProblem(2, 24, 7, 9, 37, 1, 1, epilogue=Epilogue(bias=True, residual=True,
                                                                                 activation="relu")), True),
    "3x3_res_after_relu": (ConvProblem(1, 16, 10, 10, 20, 3, 3, (1, 1), (1, 1, 1, 1),
                                       epilogue=Epilogue(scale_shift=True, residual=True, activation="relu",
                                                         residual_after_activation=True)), True),
    "3x3_s2_res_float_out": (ConvProblem(1, 32, 11, 11, 48, 3, 3, (2, 2), (1, 1, 1, 1),
                                         epilogue=Epilogue(residual=True)), False),
}


@pytest.fixture(scope="module")
def residual_lib():
    from compiler.codegen.llvm.microkernels import emit_conv
    from compiler.codegen.llvm.microkernels.build import compile_module, new_module

    target, mod, kernels = _host(), new_module(), {}
    for key, (conv, codes_out) in RESIDUAL_CONVS.items():
        fields = {"quant": SIGNED, "a_codes": True, "res_quant": RES, "out_quant": OUT if codes_out else None}
        kernels[key] = emit_conv(mod, key, dataclasses.replace(conv, **fields), target)
    return compile_module(mod, target), kernels


@pytest.mark.parametrize("key", sorted(RESIDUAL_CONVS))
def test_int8_chain_conv_adds_a_residual_given_as_codes(residual_lib, key):
    """The residual's codes are dequantized as they are loaded ((code - zero point) * scale)."""
    c = residual_lib[1][key].problem
    codes_out = RESIDUAL_CONVS[key][1]
    rng = np.random.default_rng(len(key) + 3)
    res = rng.integers(0, 256, (c.batch, c.out_h, c.out_w, c.out_c), dtype=np.uint8)
    y, acc, vecs = _run_codes_conv(residual_lib, key, rng, res, np.uint8 if codes_out else np.float32)
    want = E.reference(c.epilogue, acc, residual=int8.dequantize_activation(res, *RES), **vecs)
    if codes_out:
        _codes_close(y, want)
    else:
        np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)


def test_residual_codes_belong_to_int8_problems_with_a_residual():
    from compiler.codegen.llvm.microkernels import emit_gemm
    from compiler.codegen.llvm.microkernels.build import new_module
    from compiler.ir.errors import CompilerError

    target = cpu_target({"mcpu": "znver4"})
    for prob, why in ((GemmProblem(AOperand.matrix(8, 32), 16, epilogue=Epilogue(residual=True), res_quant=RES),
                       "belong to int8 problems"),
                      (GemmProblem(AOperand.matrix(8, 32), 16, quant=SIGNED, res_quant=RES), "does not add")):
        with pytest.raises(CompilerError, match=why):
            emit_gemm(new_module(), "g", prob, default_schedule(target, prob))


def test_int8_chain_refuses_k_in_chunks():
    """A uint8 C has no room for int32 partial sums: a schedule splitting K is refused."""
    import dataclasses

    from compiler.codegen.llvm.microkernels import emit_gemm
    from compiler.codegen.llvm.microkernels.build import new_module
    from compiler.ir.errors import CompilerError

    target = cpu_target({"mcpu": "znver4"})
    prob = GemmProblem(AOperand.matrix(20, 512), 64, quant=SIGNED, a_codes=True, out_quant=OUT)
    sched = default_schedule(target, prob)
    assert sched.kc >= 512  # the default keeps K whole
    with pytest.raises(CompilerError, match="uint8 output needs K in one chunk"):
        emit_gemm(new_module(), "g", prob, dataclasses.replace(sched, kc=128))
