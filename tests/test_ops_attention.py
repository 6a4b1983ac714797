"""Attention, sequence and recurrent ops: references against independent loop-by-loop numpy
versions (and onnxruntime for the recurrent layers), inference with symbolic dims, and the
errors invalid inputs raise."""
from __future__ import annotations

import numpy as np
import pytest

from compiler.ir import dtypes
from compiler.ir.builder import GraphBuilder
from compiler.ir.errors import ShapeInferenceError
from compiler.ir.interpreter import run_graph
from compiler.ir.types import TensorType

F32 = dtypes.float32
RNG = np.random.default_rng(0)


def _infer(op, input_types, attrs=None, num_outputs=None):
    b = GraphBuilder()
    inputs = [None if t is None else b.input(f"x{i}", t) for i, t in enumerate(input_types)]
    return [v.type for v in b.node(op, inputs, attrs or {}, num_outputs=num_outputs)]


def _run(op, arrays, attrs=None, num_outputs=None):
    """Run one node on arrays (graph inputs) with run-time type checks; returns the outputs."""
    b = GraphBuilder()
    inputs = [None if a is None else b.input(f"x{i}", TensorType(a.shape, dtypes.from_numpy(a.dtype)))
              for i, a in enumerate(arrays)]
    outs = b.node(op, inputs, attrs or {}, num_outputs=num_outputs)
    b.output(*outs)
    result = run_graph(b.build(), {f"x{i}": a for i, a in enumerate(arrays) if a is not None}, check_types=True)
    return [result[v.name] for v in outs]


def _randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ---- Attention against a per-(batch, head, query) loop -----------------------------------


def _naive_attention(q, k, v, mask=None, past=None, causal=False, scale=None, softcap=0.0,
                     left=-1, right=-1, nonpad=None):
    """4-D inputs; one query row at a time, written straight from the spec's definition."""
    if past is not None:
        k = np.concatenate([past[0], k], axis=2)
        v = np.concatenate([past[1], v], axis=2)
    b, hq, sq, d = q.shape
    hkv, total = k.shape[1], k.shape[2]
    scale = 1 / np.sqrt(d) if scale is None else scale
    y = np.zeros((b, hq, sq, v.shape[-1]))
    for n in range(b):
        offset = past[0].shape[2] if past is not None else (nonpad[n] - sq if nonpad is not None else 0)
        for h in range(hq):
            kv = h // (hq // hkv)
            for i in range(sq):
                s = (q[n, h, i].astype(np.float64) @ k[n, kv].T.astype(np.float64)) * scale
                if softcap:
                    s = softcap * np.tanh(s / softcap)
                allowed = np.ones(total, bool)
                pos = i + offset
                j = np.arange(total)
                if causal:
                    allowed &= j <= pos
                if left >= 0:
                    allowed &= j >= pos - left
                if right >= 0:
                    allowed &= j <= pos + right
                if nonpad is not None:
                    allowed &= j < nonpad[n]
                if mask is not None:
                    row = np.broadcast_to(mask, (b, hq, sq, total))[n, h, i]
                    if row.dtype == bool:
                        allowed &= row
                    else:
                        s = s + row
                if not allowed.any():
                    continue  # a query with nothing to attend outputs zeros
                s = np.where(allowed, s, -np.inf)
                p = np.exp(s - s.max())
                y[n, h, i] = (p / p.sum()) @ v[n, kv]
    return y


@pytest.mark.parametrize("hq, hkv, case", [
    (4, 4, {}),
    (4, 2, {"causal": True}),
    (6, 2, {"mask": "bool"}),
    (4, 1, {"mask": "float", "softcap": 1.5}),
    (4, 2, {"past": True, "causal": True}),
    (4, 4, {"causal": True, "left": 1}),
    (2, 2, {"left": 1, "right": 2, "scale": 0.3}),
    (4, 2, {"nonpad": True, "causal": True}),
])
def test_attention_matches_loop_reference(hq, hkv, case):
    b, sq, skv, d, dv = 2, 3, 5, 8, 6
    q, k, v = _randn(b, hq, sq, d), _randn(b, hkv, skv, d), _randn(b, hkv, skv, dv)
    past = (_randn(b, hkv, 4, d), _randn(b, hkv, 4, dv)) if case.get("past") else None
    total = skv + (4 if past else 0)
    mask = {"bool": RNG.uniform(size=(sq, total)) > 0.3, "float": _randn(b, 1, sq, total)}.get(case.get("mask"))
    nonpad = np.array([5, 3], np.int64) if case.get("nonpad") else None
    attrs = {"is_causal": int(case.get("causal", False)), "softcap": case.get("softcap", 0.0),
             "left_window_size": case.get("left", -1), "right_window_size": case.get("right", -1)}
    if "scale" in case:
        attrs["scale"] = case["scale"]
    arrays = [q, k, v, mask, *(past or (None, None)), nonpad]
    (y,) = _run("Attention", arrays, attrs)
    expected = _naive_attention(q, k, v, mask, past, attrs["is_causal"], case.get("scale"), attrs["softcap"],
                                attrs["left_window_size"], attrs["right_window_size"], nonpad)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_attention_3d_inputs_split_and_merge_heads():
    b, sq, skv, hq, hkv, d = 2, 3, 4, 4, 2, 8
    q4, k4, v4 = _randn(b, hq, sq, d), _randn(b, hkv, skv, d), _randn(b, hkv, skv, d)
    pack = lambda t: t.transpose(0, 2, 1, 3).reshape(t.shape[0], t.shape[2], -1)  # noqa: E731
    y3, present_k, present_v = _run("Attention", [pack(q4), pack(k4), pack(v4)],
                                    {"q_num_heads": hq, "kv_num_heads": hkv}, num_outputs=3)
    (y4,) = _run("Attention", [q4, k4, v4])
    np.testing.assert_allclose(y3, pack(y4), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(present_k, k4)  # the cache comes back in 4-D
    np.testing.assert_array_equal(present_v, v4)


def test_attention_qk_output_modes_and_fully_masked_rows():
    q, k, v = _randn(1, 2, 2, 4), _randn(1, 2, 3, 4), _randn(1, 2, 3, 4)
    mask = np.array([[True, False, True], [False, False, False]])  # the second query sees nothing
    outs = {}
    for mode in range(4):
        y, qk = _run("Attention", [q, k, v, mask], {"qk_matmul_output_mode": mode, "softcap": 2.0},
                     num_outputs=4)[::3]
        outs[mode] = qk
    raw = np.einsum("bhqd,bhkd->bhqk", q, k) / 2.0
    np.testing.assert_allclose(outs[0], raw, rtol=1e-5)
    np.testing.assert_allclose(outs[1], 2.0 * np.tanh(raw / 2.0), rtol=1e-5)
    assert np.isneginf(outs[2][..., 1, :]).all() and np.isneginf(outs[2][..., 0, 1]).all()
    np.testing.assert_allclose(outs[3].sum(-1)[..., 0], 1.0, rtol=1e-5)
    assert not outs[3][..., 1, :].any() and not y[..., 1, :].any()  # zeros, not NaN


def test_attention_fp16_stays_fp16():
    q = _randn(1, 2, 3, 8, dtype=np.float16)
    (y,) = _run("Attention", [q, q, q], {"is_causal": 1})
    assert y.dtype == np.float16
    expected = _naive_attention(q.astype(np.float32), q.astype(np.float32), q.astype(np.float32), causal=True)
    np.testing.assert_allclose(y, expected, rtol=5e-3, atol=5e-3)


def test_attention_inference_keeps_symbolic_dims():
    q = TensorType(("B", 12, "S", 64), F32)
    kv = TensorType(("B", 4, "T", 64), F32)
    past = TensorType(("B", 4, "P", 64), F32)
    y, pk, pv, qk = _infer("Attention", [q, kv, kv, None, past, past], num_outputs=4)
    assert y.shape == ("B", 12, "S", 64)
    assert pk.shape[:2] == ("B", 4) and isinstance(pk.shape[2], str) and pk.shape[3] == 64
    assert qk.shape[:3] == ("B", 12, "S") and qk.shape[3] == pk.shape[2]
    (y3,) = _infer("Attention", [TensorType(("B", "S", 768), F32)] * 3, {"q_num_heads": 12, "kv_num_heads": 12})
    assert y3.shape == ("B", "S", 768)


@pytest.mark.parametrize("types, attrs, message", [
    ([(2, 6, 3, 8), (2, 4, 5, 8), (2, 4, 5, 8)], {}, "multiple"),
    ([(2, 3, 24), (2, 5, 24), (2, 5, 24)], {}, "q_num_heads"),
    ([(2, 3, 24), (2, 5, 24), (2, 5, 24)], {"q_num_heads": 5, "kv_num_heads": 3}, "multiple of 5"),
    ([(2, 4, 3, 8), (2, 4, 5, 6), (2, 4, 5, 8)], {}, "head size"),
])
def test_attention_rejects_inconsistent_heads(types, attrs, message):
    with pytest.raises(ShapeInferenceError, match=message):
        _infer("Attention", [TensorType(t, F32) for t in types], attrs)


# ---- rotary embedding, linear attention, causal conv, SwiGLU, TensorScatter ------------


@pytest.mark.parametrize("interleaved, rot", [(0, 0), (1, 0), (0, 4), (1, 4)])
def test_rotary_embedding_is_a_complex_rotation(interleaved, rot):
    b, h, s, d = 2, 3, 4, 8
    x = _randn(b, h, s, d)
    half = (rot or d) // 2
    angles = RNG.uniform(0, 6, (10, half))
    pos = RNG.integers(0, 10, (b, s))
    (y,) = _run("RotaryEmbedding", [x, np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32), pos],
                {"interleaved": interleaved, "rotary_embedding_dim": rot})
    part = x[..., : rot or d]
    pairs = (part[..., 0::2] + 1j * part[..., 1::2]) if interleaved else (part[..., :half] + 1j * part[..., half:])
    turned = pairs * np.exp(1j * angles[pos])[:, None]
    if interleaved:
        expected = np.stack([turned.real, turned.imag], -1).reshape(part.shape)
    else:
        expected = np.concatenate([turned.real, turned.imag], -1)
    np.testing.assert_allclose(y[..., : rot or d], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y[..., rot or d:], x[..., rot or d:])


def test_linear_attention_linear_rule_is_causal_kernel_attention():
    b, t, h, d = 2, 5, 2, 4
    q, k, v = _randn(b, t, h * d), _randn(b, t, h * d), _randn(b, t, h * d)
    out, state = _run("LinearAttention", [q, k, v], {"q_num_heads": h, "kv_num_heads": h, "update_rule": "linear"},
                      num_outputs=2)
    split = lambda x: x.reshape(b, t, h, d).transpose(0, 2, 1, 3)  # noqa: E731
    qs, ks, vs = split(q), split(k), split(v)
    scores = np.tril(np.einsum("bhtd,bhsd->bhts", qs, ks))  # o_t = sum_{s<=t} (q_t.k_s) v_s
    expected = np.einsum("bhts,bhsd->bhtd", scores, vs) / np.sqrt(d)
    np.testing.assert_allclose(out, expected.transpose(0, 2, 1, 3).reshape(b, t, -1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state, np.einsum("bhtk,bhtv->bhkv", ks, vs), rtol=1e-4, atol=1e-5)


def test_causal_conv_with_state_matches_convolve_and_chains():
    x, w, bias = _randn(2, 3, 7), _randn(3, 1, 4), _randn(3)
    out, state = _run("CausalConvWithState", [x, w, bias], num_outputs=2)
    for n in range(2):
        for c in range(3):
            full = np.convolve(x[n, c], w[c, 0][::-1])[:7] + bias[c]
            np.testing.assert_allclose(out[n, c], full, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(state, x[:, :, -3:])
    first, mid = _run("CausalConvWithState", [x[:, :, :4], w, bias], num_outputs=2)
    second, _ = _run("CausalConvWithState", [x[:, :, 4:], w, bias, mid], num_outputs=2)
    np.testing.assert_allclose(np.concatenate([first, second], -1), out, rtol=1e-5, atol=1e-6)


def test_swiglu_and_its_shape_check():
    a, b = _randn(3, 4), _randn(3, 4)
    (y,) = _run("SwiGLU", [a, b], {"alpha": 0.5})
    np.testing.assert_allclose(y, a / (1 + np.exp(-0.5 * a)) * b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeInferenceError, match="identical shapes"):
        _infer("SwiGLU", [TensorType((3, 4), F32), TensorType((1, 4), F32)])


@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_tensor_scatter_writes_each_batch_row_at_its_index(mode):
    cache, update = _randn(2, 3, 6, 4), _randn(2, 3, 2, 4)
    starts = np.array([1, 5 if mode == "circular" else 4], np.int64)
    (out,) = _run("TensorScatter", [cache, update, starts], {"mode": mode})
    expected = cache.copy()
    for n in range(2):
        for s in range(2):
            expected[n, :, (starts[n] + s) % 6] = update[n, :, s]
    np.testing.assert_array_equal(out, expected)


# ---- RNN, GRU, LSTM against onnxruntime ------------------------------------------------------


def _onnxruntime_recurrent(op, arrays, attrs, outputs):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"][: len(arrays)]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in zip(names, arrays) if a is not None]
    node = helper.make_node(op, [n if a is not None else "" for n, a in zip(names, arrays)], outputs, **attrs)
    graph = helper.make_graph([node], "g", inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)], ir_version=10)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {n: a for n, a in zip(names, arrays) if a is not None})


@pytest.mark.parametrize("op, gates", [("RNN", 1), ("GRU", 3), ("LSTM", 4)])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]])
def test_recurrent_layers_match_onnxruntime(op, gates, direction, lengths):
    steps, batch, inp, hidden = 4, 3, 5, 6
    dirs = 2 if direction == "bidirectional" else 1
    arrays = [_randn(steps, batch, inp), _randn(dirs, gates * hidden, inp) * 0.5,
              _randn(dirs, gates * hidden, hidden) * 0.5, _randn(dirs, 2 * gates * hidden),
              None if lengths is None else np.array(lengths, np.int32), _randn(dirs, batch, hidden)]
    attrs = {"hidden_size": hidden, "direction": direction, "clip": 2.5}
    outputs = ["Y", "Y_h"]
    if op == "LSTM":
        arrays += [_randn(dirs, batch, hidden), _randn(dirs, 3 * hidden)]
        outputs.append("Y_c")
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    expected = _onnxruntime_recurrent(op, arrays, attrs, outputs)
    got = _run(op, arrays, attrs, num_outputs=len(outputs))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_recurrent_batch_major_layout_transposes_inputs_and_outputs():
    x, w, r = _randn(3, 4, 2), _randn(1, 4, 2), _randn(1, 4, 4)
    y_bm, h_bm = _run("RNN", [x, w, r], {"hidden_size": 4, "layout": 1}, num_outputs=2)
    y_tm, h_tm = _run("RNN", [x.swapaxes(0, 1), w, r], {"hidden_size": 4}, num_outputs=2)
    np.testing.assert_allclose(y_bm, y_tm.transpose(2, 0, 1, 3), rtol=1e-6)
    np.testing.assert_allclose(h_bm, h_tm.swapaxes(0, 1), rtol=1e-6)


def test_recurrent_inference_and_bad_activation():
    x = TensorType(("T", "B", 8), F32)
    y, h = _infer("GRU", [x, TensorType((2, 48, 8), F32), TensorType((2, 48, 16), F32)],
                  {"direction": "bidirectional"}, num_outputs=2)
    assert y.shape == ("T", 2, "B", 16) and h.shape == (2, "B", 16)
    with pytest.raises(ShapeInferenceError, match="direction"):
        _infer("RNN", [x, TensorType((1, 4, 8), F32), TensorType((1, 4, 4), F32)], {"direction": "sideways"})
    with pytest.raises(ShapeInferenceError, match="unknown activation 'Swish'"):
        _infer("RNN", [x, TensorType((1, 4, 8), F32), TensorType((1, 4, 4), F32)], {"activations": ["Swish"]})
    with pytest.raises(ShapeInferenceError, match="W must be"):
        _infer("LSTM", [x, TensorType((1, 12, 8), F32), TensorType((1, 16, 4), F32)], {"hidden_size": 4})
