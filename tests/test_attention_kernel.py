"""The fused attention kernel (`codegen/llvm/microkernels/attention.py`): numerics against a
float64 numpy reference over layouts, grouped heads, masks, causal bands and edge sizes;
the code generator sends Attention nodes to it (and the cases it does not cover to the
loop-IR rule); scores never take a [B, H, S, T] buffer in the arena."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.codegen.extern import EXTERN
from compiler.codegen.llvm.target import cpu_target
from compiler.codegen.llvm.microkernels.attention import PARAMS, AttentionProblem, emit_attention, supported
from compiler.codegen.llvm.microkernels.build import compile_module, new_module
from compiler.codegen.llvm.microkernels.gemm import target_lanes
from compiler.codegen.model_builder import LOOP_IR, build_program
from compiler.ir import GraphBuilder, run_graph, tensor

from native import compile_graph_for

HOST = cpu_target()
pytestmark = pytest.mark.skipif(HOST.vector_bits < 256 or "fma" not in HOST.required,
                                reason="the microkernels need AVX2+FMA")


def reference(q, k, v, mask, p: AttentionProblem, rounded=lambda x: x.astype(np.float64)):
    """4-D heads in, 4-D heads out, float64; a row with no allowed key gives zeros.
    `rounded` is applied to Q, K, V and to the unnormalized exp before it multiplies V
    (bf16 attention rounds those to bfloat16; `bf16_reference`)."""
    group = p.q_heads // p.kv_heads
    k, v = np.repeat(rounded(k), group, axis=1), np.repeat(rounded(v), group, axis=1)
    s = np.einsum("bhid,bhjd->bhij", rounded(q), k) * p.scale
    if mask is not None:
        s = s + mask
    if p.causal:
        s = np.where(np.arange(p.seq_kv)[None] <= np.arange(p.seq_q)[:, None], s, -np.inf)
    top = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isinf(top), 0, top))
    total = e.sum(-1, keepdims=True)
    return np.where(total == 0, 0, (rounded(e.astype(np.float32)) @ v) / np.where(total == 0, 1, total))


def _heads_to_packed(t):
    return np.ascontiguousarray(t.transpose(0, 2, 1, 3).reshape(t.shape[0], t.shape[2], -1))


CASES = {  # B, Hq, Hkv, S, T, D, Dv, packed, causal, mask ("keys": [B,1,1,T] padding mask, "rows": [1,H,S,1])
    "bert_like": (1, 12, 12, 128, 128, 32, 32, True, False, "keys"),
    "grouped_causal_odd": (2, 4, 2, 13, 21, 8, 24, False, True, None),
    "row_mask_wide_values": (1, 2, 1, 7, 32, 16, 40, False, False, "rows"),
    "tiny_packed_causal": (1, 3, 3, 5, 16, 4, 4, True, True, "keys"),
    "one_query": (1, 2, 2, 1, 9, 8, 8, False, False, None),
}


def _mask_for(masked, rng, b, hq, s, t, lanes):
    """(key count, mask, mask strides) of a case: "keys" a [B,1,1,T] padding mask (T whole
    vectors of keys, every row keeping one), "rows" a [1,H,S,1] additive one, else none."""
    if masked == "keys":
        t = -(-t // lanes) * lanes  # a per-key mask needs whole vectors of keys
        mask = np.where(rng.random((b, 1, 1, t)) < 0.25, -1e9, 0).astype(np.float32)
        mask[..., 0] = 0  # every row keeps a key
        return t, mask, (t, 0, 0, 1)
    if masked == "rows":
        return t, rng.standard_normal((1, hq, s, 1)).astype(np.float32), (0, s, 1, 0)
    return t, None, None


@pytest.mark.parametrize("case", CASES)
def test_kernel_matches_reference(case):
    b, hq, hkv, s, t, d, dv, packed, causal, masked = CASES[case]
    lanes = target_lanes(HOST)
    rng = np.random.default_rng(len(case))
    t, mask, strides = _mask_for(masked, rng, b, hq, s, t, lanes)
    p = AttentionProblem(b, hq, hkv, s, t, d, dv, packed, 1 / np.sqrt(d), causal, strides)
    for got, want in _run_kernel(p, lanes, rng, mask, reference):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


def _run_kernel(p: AttentionProblem, lanes: int, rng, mask, reference_of):
    """[(kernel output, `reference_of`'s answer)] at 1 and 2 threads, on seeded Q, K, V in
    the problem's layout (outputs back as 4-D heads)."""
    assert supported(p, lanes) is None
    module = new_module()
    emit_attention(module, "att", p, lanes)
    library = compile_module(module, HOST)
    b, hq, hkv, s, t, d, dv = p.batch, p.q_heads, p.kv_heads, p.seq_q, p.seq_kv, p.head_dim, p.v_head_dim
    q = rng.standard_normal((b, hq, s, d)).astype(np.float32)
    k = rng.standard_normal((b, hkv, t, d)).astype(np.float32)
    v = rng.standard_normal((b, hkv, t, dv)).astype(np.float32)
    want = reference_of(q, k, v, mask, p)
    layout = _heads_to_packed if p.packed else (lambda x: x)
    out = []
    for threads in (1, 2):
        y = np.full(layout(want.astype(np.float32)).shape, np.nan, np.float32)
        library.call("att", dict(q=layout(q), k=layout(k), v=layout(v), mask=mask, y=y), threads, PARAMS)
        out.append((y.reshape(b, s, hq, dv).transpose(0, 2, 1, 3) if p.packed else y, want))
    return out


def test_fully_masked_rows_give_zeros():
    p = AttentionProblem(1, 1, 1, 3, 16, 4, 4, False, 0.5, False, (0, 0, 1, 0))
    module = new_module()
    emit_attention(module, "att", p, target_lanes(HOST))
    library = compile_module(module, HOST)
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, 1, n, 4)).astype(np.float32) for n in (3, 16, 16))
    mask = np.array([0, -np.inf, 0], np.float32).reshape(1, 1, 3, 1)
    y = np.full((1, 1, 3, 4), np.nan, np.float32)
    library.call("att", dict(q=q, k=k, v=v, mask=mask, y=y), 1, PARAMS)
    assert np.all(y[0, 0, 1] == 0) and np.isfinite(y).all()


def _attention_graph(packed: bool, mask_dtype: str | None = "f32", **attrs):
    b = GraphBuilder()
    if packed:
        shapes = {"q": [2, 24, 64], "k": [2, 32, 64], "v": [2, 32, 64]}
        attrs = {"q_num_heads": 4, "kv_num_heads": 4, **attrs}
    else:
        shapes = {"q": [2, 4, 24, 16], "k": [2, 2, 32, 16], "v": [2, 2, 32, 16]}
    ins = [b.input(n, tensor(shape, "f32")) for n, shape in shapes.items()]
    if mask_dtype is not None:
        ins.append(b.input("mask", tensor([2, 1, 1, 32], mask_dtype)))
    b.output(b.op("Attention", *ins, name="att", **attrs))
    rng = np.random.default_rng(5)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    if mask_dtype == "f32":
        feeds["mask"] = np.where(rng.random((2, 1, 1, 32)) < 0.3, -1e4, 0).astype(np.float32)
    elif mask_dtype == "bool":
        feeds["mask"] = rng.random((2, 1, 1, 32)) < 0.7
    return b.build(), feeds


@pytest.mark.parametrize("packed, causal", [(True, 0), (False, 1)])
def test_attention_nodes_take_the_fused_kernel(packed, causal):
    graph, feeds = _attention_graph(packed, is_causal=causal)
    program = build_program(graph, HOST)
    assert {n.name: kind for n, kind in program.paths.items()}["att"] == EXTERN
    # no score buffer: the arena holds nothing of size B*H*S*T floats (2*4*24*32*4 bytes)
    assert program.arena_size < 2 * 4 * 24 * 32 * 4
    got = compile_graph_for(graph).run(feeds)
    for name, want in run_graph(graph, feeds).items():
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["softcap", "bool_mask"])
def test_cases_the_kernel_does_not_cover_use_the_loop_ir_rule(variant):
    graph, feeds = (_attention_graph(False, softcap=5.0) if variant == "softcap"
                    else _attention_graph(False, mask_dtype="bool"))
    program = build_program(graph, HOST)
    assert {n.name: kind for n, kind in program.paths.items()}["att"] == LOOP_IR
    got = compile_graph_for(graph).run(feeds)
    for name, want in run_graph(graph, feeds).items():
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- bf16 (compute=bfloat16)

def bf16_reference(q, k, v, mask, p: AttentionProblem):
    """What bf16 attention computes (the op's reference, `ir.ops.attention`): Q, K, V and
    the unnormalized exp rounded to bfloat16, scores and softmax in float64 here, divided by
    the unrounded row sum."""
    import ml_dtypes

    return reference(q, k, v, mask, p, rounded=lambda x: x.astype(ml_dtypes.bfloat16).astype(np.float64))


def _bf16_variants():
    out = []
    if "avx512bf16" in HOST.required:
        out.append("vector")
    if "amx-bf16" in HOST.required:
        out.append("amx")
    return out or ["none"]


@pytest.mark.parametrize("variant", _bf16_variants())
@pytest.mark.parametrize("case", CASES)
def test_bf16_kernel_matches_the_rounded_reference(case, variant):
    """Both bf16 kernels (`vdpbf16ps`; AMX tiles) against the reference of the rounding they
    do: exact but where float32 exp/summation order moves an exp across a bfloat16 rounding
    boundary (a few elements in a thousand, by at most one bfloat16 step of a probability)."""
    if variant == "none":
        pytest.skip("host has no AVX512-BF16")
    b, hq, hkv, s, t, d, dv, packed, causal, masked = CASES[case]
    rng = np.random.default_rng(len(case) + 7)
    t, mask, strides = _mask_for(masked, rng, b, hq, s, t, 16)
    p = AttentionProblem(b, hq, hkv, s, t, d, dv, packed, 1 / np.sqrt(d), causal, strides, bf16=True,
                         amx=variant == "amx")
    for got, want in _run_kernel(p, 16, rng, mask, bf16_reference):
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
        assert np.mean(np.isclose(got, want, rtol=1e-5, atol=1e-5)) > 0.98


def test_bf16_attention_is_lowered_and_matches_its_reference():
    """precision="bf16" lowers an Attention node (the report says so); compiled (the AMX or
    vector kernel, else the loop-IR rule) matches the reference of the lowered graph, which
    is within bf16 error of fp32."""
    from compiler.backends import BuildOptions, parse_target
    from compiler.passes.core import PassContext

    graph, feeds = _attention_graph(False, None, is_causal=1)
    lowered = parse_target("llvm").backend.optimize(graph, 2, PassContext(verify=True), BuildOptions(precision="bf16"))
    att = [n for n in lowered.nodes if n.op == "Attention"]
    assert len(att) == 1 and att[0].attrs["compute"].name == "bfloat16"
    if "avx512bf16" not in HOST.required:
        pytest.skip("host has no AVX512-BF16")
    cm = compile_graph_for(graph, level=3, precision="bf16")
    assert [n["reason"] for n in cm.manifest["precision"]["nodes"] if n["op"] == "Attention"] == \
        ["attention: bf16 Q, K, V and probabilities, fp32 scores, softmax and accumulation"]
    got = next(iter(cm.run(feeds).values()))
    want = next(iter(run_graph(lowered, feeds).values()))
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
    assert np.mean(np.isclose(got, want, rtol=1e-5, atol=1e-5)) > 0.98
    fp32 = next(iter(compile_graph_for(graph, level=3).run(feeds).values()))
    np.testing.assert_allclose(got, fp32, rtol=0, atol=0.05)


def test_bf16_attention_loop_ir_rule_rounds_like_the_reference():
    """A softcap keeps the node off the fused kernels: the loop-IR rule does the same
    rounding (Q, K, V and the unnormalized exp) as the reference."""
    from compiler.ir import dtypes

    graph, feeds = _attention_graph(False, None, softcap=30.0, compute=dtypes.bfloat16)
    program = build_program(graph, HOST)
    assert {n.name: kind for n, kind in program.paths.items()}["att"] == LOOP_IR
    got = compile_graph_for(graph).run(feeds)
    for name, want in run_graph(graph, feeds).items():
        np.testing.assert_allclose(got[name], want, rtol=1e-2, atol=1e-2)
        assert np.mean(np.isclose(got[name], want, rtol=1e-5, atol=1e-5)) > 0.98
        fp32 = run_graph(_attention_graph(False, None, softcap=30.0)[0], feeds)[name]
        assert 0 < np.abs(got[name] - fp32).max() < 0.05  # rounded, by bf16's error


# ---------------------------------------------------------------- KV caches (the loop-IR rule)

KV_CASES = {  # Hq, Hkv, Sq, past (P) or nonpad lengths, causal, packed, qk output mode
    "decode_step_gqa_causal": (4, 2, 1, 37, True, False, 3),
    "prefill_after_cache_packed": (4, 4, 6, 11, True, True, 2),
    "external_cache_causal": (4, 2, 3, [9, 4], True, False, 0),
    "cache_window_softcap": (2, 1, 5, 7, False, False, 1),
}


@pytest.mark.parametrize("case", sorted(KV_CASES))
def test_attention_with_kv_cache_compiles_to_the_reference(case):
    """Attention with an internal cache (past_key/past_value -> present_key/present_value)
    or an external one (nonpad_kv_seqlen), natively: every output, qk_matmul_output
    included, against the reference interpreter; the cache's concatenation exactly."""
    from compiler.ir import dtypes
    from compiler.ir.types import TensorType

    hq, hkv, sq, cache, causal, packed, mode = KV_CASES[case]
    rng = np.random.default_rng(len(case))
    b, d, skv = 2, 8, 5
    internal = isinstance(cache, int)
    skv = skv if internal else 12  # an external cache: K and V hold the whole buffer
    randn = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    q, k, v = randn(b, hq, sq, d), randn(b, hkv, skv, d), randn(b, hkv, skv, d)
    if packed:
        q, k, v = (_heads_to_packed(t) for t in (q, k, v))
    arrays = [q, k, v, None]
    attrs = {"is_causal": int(causal), "qk_matmul_output_mode": mode}
    if packed:
        attrs.update(q_num_heads=hq, kv_num_heads=hkv)
    if case == "cache_window_softcap":
        attrs.update(softcap=2.0, left_window_size=3)
    if internal:
        arrays += [randn(b, hkv, cache, d), randn(b, hkv, cache, d), None]
    else:
        arrays += [None, None, np.array(cache, np.int64)]
    g = GraphBuilder()
    inputs = [None if a is None else g.input(f"x{i}", TensorType(a.shape, dtypes.from_numpy(a.dtype)))
              for i, a in enumerate(arrays)]
    outs = g.node("Attention", inputs, attrs, num_outputs=4)
    g.output(*outs)
    graph = g.build()
    feeds = {f"x{i}": a for i, a in enumerate(arrays) if a is not None}
    want = run_graph(graph, feeds)
    got = compile_graph_for(graph).run(feeds)
    for v_out in outs:
        np.testing.assert_allclose(got[v_out.name], want[v_out.name], rtol=1e-4, atol=1e-5, err_msg=v_out.name)
    if internal:  # present = past then new, bit for bit
        assert got[outs[1].name].shape[2] == cache + skv
        np.testing.assert_array_equal(got[outs[1].name][:, :, :cache], arrays[4])
