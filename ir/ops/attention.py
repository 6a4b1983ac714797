"""Ops: attention and sequence models.

Scaled dot-product `Attention` (3-D or 4-D operands, grouped-query heads, bool or additive
masks, causal and sliding-window masks, an internal or external KV cache, softcap and the
QK debug output), `preview.FlexAttention`, `RotaryEmbedding`, `LinearAttention`,
`CausalConvWithState`, `SwiGLU`, `TensorScatter`, and the recurrent layers `RNN`, `GRU`
and `LSTM`.

The references follow each ONNX spec's dataflow step by step in the operands' element
type (matmuls accumulate in fp32), so fp16/bf16 results round where the spec rounds.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import flops
from ..registry import PENDING_RULE, Attr, Category, InferContext, OpDef, Precision
from ..shape_utils import normalize_axis
from ..types import Dim, TensorType, fresh_dim

# ---- shape arithmetic on possibly symbolic dims ----------------------------------------


def _dim_add(a: Dim, b: Dim) -> Dim:
    return a + b if isinstance(a, int) and isinstance(b, int) else fresh_dim("sum")


def _dim_mul(a: Dim, b: Dim) -> Dim:
    return a * b if isinstance(a, int) and isinstance(b, int) else fresh_dim("prod")


def _dim_div(ctx: InferContext, a: Dim, b: int, what: str) -> Dim:
    if not isinstance(a, int):
        return fresh_dim("quot")
    if b <= 0 or a % b:
        raise ctx.error(f"{what} ({a}) must be a positive multiple of {b}")
    return a // b


def _check_rank(ctx: InferContext, i: int, ranks: tuple[int, ...], name: str) -> TensorType:
    t = ctx.input(i)
    if t.rank is not None and t.rank not in ranks:
        raise ctx.error(f"input {i} ({name}) must have rank {' or '.join(map(str, ranks))}, got {t}")
    return t


def _heads_divide(ctx: InferContext, q_heads: Dim, kv_heads: Dim) -> None:
    if isinstance(q_heads, int) and isinstance(kv_heads, int) and (kv_heads <= 0 or q_heads % kv_heads):
        raise ctx.error(f"query heads ({q_heads}) must be a multiple of key/value heads ({kv_heads})")


# ---- numeric helpers shared by the attention family ------------------------------------


def _matmul(a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    """a @ b rounded to `dtype`; half-precision operands accumulate in fp32 like every runtime."""
    if np.dtype(dtype).itemsize < 4:
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(dtype)
    return np.matmul(a, b).astype(dtype, copy=False)


def _grouped_matmul(a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    """(B, Hq, M, K) @ (B, Hkv, K, N) where query head h uses key/value head h // (Hq / Hkv).

    Grouping the query heads avoids materialising repeated K/V for grouped-query attention.
    """
    batch, hq, m, _ = a.shape
    hkv = b.shape[1]
    grouped = a.reshape(batch, hkv, hq // hkv, m, a.shape[-1])
    out = _matmul(grouped, b[:, :, None], dtype)
    return out.reshape(batch, hq, m, b.shape[-1])


def _shifted_exp(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exp(x - row max), row sums) over the last axis in x's type; a row that is all -inf
    (nothing to attend) has zeros and sum 0, not NaN."""
    top = np.max(x, axis=-1, keepdims=True)
    top = np.where(np.isneginf(top), np.zeros((), x.dtype), top)
    e = np.exp(x - top)
    return e, np.sum(e, axis=-1, keepdims=True)


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in x's type; a row that is all -inf is zeros."""
    e, total = _shifted_exp(x)
    return e / np.where(total == 0, np.ones((), x.dtype), total)


def _narrow_probabilities(scores: np.ndarray, v: np.ndarray, no_keys: np.ndarray, compute, dtype):
    """(Y, probabilities) of bf16 attention, as the kernels compute it: e = exp(s - max) in
    float32, rounded to `compute` before it multiplies V (also rounded), the row sum of the
    unrounded e dividing the result once (flash-attention style: the probabilities are never
    normalized in the narrow type)."""
    e, total = _shifted_exp(scores)
    inv = np.where((total == 0) | no_keys, np.zeros((), e.dtype), 1 / np.where(total == 0, 1, total))
    y = _grouped_matmul(_rounded(e, compute).astype(dtype), v, dtype) * inv.astype(dtype)
    return y, (e * inv).astype(dtype)


def _sqrt_scale(scale: float | None, head_size: int, dtype) -> np.ndarray:
    """Q and K are each scaled by sqrt(scale) (default scale 1/sqrt(head_size)) so Q.K^T cannot overflow."""
    if scale is None:
        scale = 1.0 / np.sqrt(head_size)
    return np.asarray(np.sqrt(np.float32(scale)), dtype=dtype)


def _split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(B, S, H*D) -> (B, H, S, D)."""
    b, s, hidden = x.shape
    return x.reshape(b, s, heads, hidden // heads).transpose(0, 2, 1, 3)


def _merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, H, S, D) -> (B, S, H*D)."""
    b, h, s, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, h * d)


# ---- Attention -------------------------------------------------------------------------


def _attention_infer(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    if a["qk_matmul_output_mode"] not in (0, 1, 2, 3):
        raise ctx.error(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {a['qk_matmul_output_mode']}")
    for side in ("left_window_size", "right_window_size"):
        if a[side] < -1:
            raise ctx.error(f"{side} must be -1 (unbounded) or >= 0, got {a[side]}")
    q = _check_rank(ctx, 0, (3, 4), "Q")
    k = _check_rank(ctx, 1, (3, 4), "K")
    v = _check_rank(ctx, 2, (3, 4), "V")
    ranks = {t.rank for t in (q, k, v) if t.rank is not None}
    if len(ranks) > 1:
        raise ctx.error(f"Q, K and V must have the same rank, got {q}, {k}, {v}")
    rank = ranks.pop() if ranks else None
    if rank is None:
        return [TensorType(None, q.dtype), TensorType(None, q.dtype), TensorType(None, v.dtype),
                TensorType(None, q.dtype)][: ctx.num_outputs]
    if rank == 3:
        if a["q_num_heads"] is None or a["kv_num_heads"] is None:
            raise ctx.error("3-D Q/K/V need the q_num_heads and kv_num_heads attributes")
        hq, hkv = a["q_num_heads"], a["kv_num_heads"]
        batch, sq, q_hidden = q.shape
        skv = k.shape[1]
        head = _dim_div(ctx, q_hidden, hq, "Q's hidden size")
        k_head = _dim_div(ctx, k.shape[2], hkv, "K's hidden size")
        v_head = _dim_div(ctx, v.shape[2], hkv, "V's hidden size")
    else:
        batch, hq, sq, head = q.shape
        _, hkv, skv, k_head = k.shape
        v_head = v.shape[3]
    if isinstance(head, int) and isinstance(k_head, int) and head != k_head:
        raise ctx.error(f"Q and K must have the same head size, got {head} and {k_head}")
    _heads_divide(ctx, hq, hkv)
    total = skv
    if ctx.has(4) != ctx.has(5):
        raise ctx.error("past_key and past_value must be given together")
    if ctx.has(4):
        if ctx.has(6):
            raise ctx.error("nonpad_kv_seqlen cannot be combined with past_key/past_value")
        past = _check_rank(ctx, 4, (4,), "past_key")
        total = _dim_add(past.shape[2], skv) if past.shape is not None else fresh_dim("total")
    if ctx.has(3) and ctx.input(3).dtype.kind not in ("bool", "float", "int", "uint"):
        raise ctx.error(f"attn_mask must be bool or numeric, got {ctx.input(3)}")
    compute = a["compute"]
    if compute is not None and (compute.name != "bfloat16" or any(t.dtype.name != "float32" for t in (q, k, v))):
        raise ctx.error(f"compute={compute.name} rounds float32 Q, K, V to bfloat16; got {q.dtype}, {k.dtype}, "
                        f"{v.dtype}")
    y_shape = (batch, sq, _dim_mul(hq, v_head)) if rank == 3 else (batch, hq, sq, v_head)
    return [TensorType(y_shape, q.dtype),
            TensorType((batch, hkv, total, head), q.dtype),
            TensorType((batch, hkv, total, v_head), v.dtype),
            TensorType((batch, hq, sq, total), q.dtype)][: ctx.num_outputs]


def _pad_mask(mask: np.ndarray, total: int) -> np.ndarray:
    """A mask shorter than the key length is padded with 'not allowed' (False / -inf)."""
    short = total - mask.shape[-1]
    if short <= 0:
        return mask
    fill = False if mask.dtype == np.bool_ else -np.inf
    return np.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, short)], constant_values=fill)


def _attention_bias(attrs: dict, mask, dtype, sq: int, total: int, past_len: int, nonpad) -> np.ndarray:
    """The additive bias (0 where allowed, -inf where not, plus a float mask), broadcastable
    to (batch, heads, sq, total).

    Causal and window bounds are offset-aware: query i sits at absolute position i + offset,
    where offset counts the valid keys before the query block (the past length for an
    internal cache, nonpad_kv_seqlen - sq per batch for an external one).
    """
    bias = np.zeros((sq, total), dtype)
    if mask is not None:
        mask = _pad_mask(mask, total)
        if mask.dtype == np.bool_:
            bias = bias + np.where(mask, 0, -np.inf).astype(dtype)
        else:
            bias = bias + mask.astype(dtype)
    keys = np.arange(total)
    if nonpad is None:
        offset = np.int64(past_len)
    else:
        offset = np.asarray(nonpad, np.int64).reshape(-1, 1, 1, 1) - sq
    distance = (np.arange(sq)[:, None] + offset) - keys  # how far key j lies behind query i
    allowed = np.ones(distance.shape, dtype=bool)
    if attrs["is_causal"]:
        allowed &= distance >= 0
    if attrs["left_window_size"] >= 0:
        allowed &= distance <= attrs["left_window_size"]
    if attrs["right_window_size"] >= 0:
        allowed &= -distance <= attrs["right_window_size"]
    if nonpad is not None:
        allowed = allowed & (keys < np.asarray(nonpad, np.int64).reshape(-1, 1, 1, 1))
    if not allowed.all():
        bias = bias + np.where(allowed, 0, -np.inf).astype(dtype)
    return bias


def _softcap(x: np.ndarray, cap: float) -> np.ndarray:
    cap = np.asarray(cap, x.dtype)
    return cap * np.tanh(x / cap)


def _rounded(x: np.ndarray, compute) -> np.ndarray:
    """x rounded to `compute` (bfloat16) and back to its own type."""
    return x.astype(compute.numpy).astype(x.dtype)


def _attention_reference(ctx, q, k, v, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
    a = ctx.attrs
    compute = a["compute"]
    if compute is not None:  # bf16 attention: the operands rounded here, the probabilities below
        q, k, v = _rounded(q, compute), _rounded(k, compute), _rounded(v, compute)
    packed = q.ndim == 3
    if packed:
        q = _split_heads(q, a["q_num_heads"])
        k = _split_heads(k, a["kv_num_heads"])
        v = _split_heads(v, a["kv_num_heads"])
    past_len = 0
    if past_key is not None:
        past_len = past_key.shape[2]
        k = np.concatenate([past_key, k], axis=2)
        v = np.concatenate([past_value, v], axis=2)
    dtype = q.dtype
    sq, total = q.shape[2], k.shape[2]

    root = _sqrt_scale(a["scale"], q.shape[-1], dtype)
    raw = _grouped_matmul(q * root, np.swapaxes(k * root, -1, -2), dtype)
    capped = _softcap(raw, a["softcap"]) if a["softcap"] > 0 else raw
    bias = _attention_bias(a, attn_mask, dtype, sq, total, past_len, nonpad_kv_seqlen)
    biased = capped + bias
    softmax_dtype = a["softmax_precision"].numpy if a["softmax_precision"] is not None else dtype
    # A query with no allowed key (decided on the bias, not on possibly-NaN scores) outputs zeros.
    no_keys = np.all(np.isneginf(bias), axis=-1, keepdims=True)
    if compute is not None:
        y, probs = _narrow_probabilities(biased.astype(softmax_dtype), v, no_keys, compute, dtype)
    else:
        probs = _softmax(biased.astype(softmax_dtype))
        probs = np.where(no_keys, np.zeros((), probs.dtype), probs).astype(dtype)
        y = _grouped_matmul(probs, v, dtype)

    outputs = [_merge_heads(y) if packed else y, k, v]
    if ctx.num_outputs > 3:  # the debug output is only materialised when the node has it
        qk = (raw, capped, biased, probs)[a["qk_matmul_output_mode"]]
        outputs.append(np.broadcast_to(qk, (q.shape[0], q.shape[1], sq, total)).astype(dtype))
    return tuple(outputs[: max(ctx.num_outputs, 1)])


ATTENTION = OpDef(
    name="Attention", inputs=("Q", "K", "V", "attn_mask?", "past_key?", "past_value?", "nonpad_kv_seqlen?"),
    outputs=("Y", "present_key?", "present_value?", "qk_matmul_output?"),
    infer=_attention_infer, reference=_attention_reference,
    category=Category.OUT_FUSABLE, precision=Precision.ACCUMULATE_FP32,
    attrs={"is_causal": Attr("int", 0), "scale": Attr("float", None), "softcap": Attr("float", 0.0),
           "q_num_heads": Attr("int", None), "kv_num_heads": Attr("int", None),
           "qk_matmul_output_mode": Attr("int", 0), "softmax_precision": Attr("dtype", None),
           "left_window_size": Attr("int", -1), "right_window_size": Attr("int", -1),
           # the precision pass's: bfloat16 rounds Q, K, V and the unnormalized probabilities
           # (scores, softmax and sums stay float32)
           "compute": Attr("dtype", None)},
    doc="Scaled dot-product attention softmax(Q.K^T*scale + mask).V with GQA, KV cache, causal/window masks, softcap.",
    flops=flops.attention)


# ---- FlexAttention (ai.onnx.preview) ----------------------------------------------------


def _flex_infer(ctx: InferContext) -> list[TensorType]:
    q = _check_rank(ctx, 0, (4,), "Q")
    k = _check_rank(ctx, 1, (4,), "K")
    v = _check_rank(ctx, 2, (4,), "V")
    if q.shape is None or v.shape is None:
        return [TensorType(None, q.dtype)]
    if k.shape is not None:
        _heads_divide(ctx, q.shape[1], k.shape[1])
    return [TensorType((q.shape[0], q.shape[1], q.shape[2], v.shape[3]), q.dtype)]


def _flex_compute_dtype(q_dtype, softmax_precision):
    """Scores are modified and softmaxed in softmax_precision; by default fp32 unless inputs are wider."""
    if softmax_precision is not None:
        return softmax_precision.numpy
    return np.dtype(np.float64) if q_dtype == np.float64 else np.dtype(np.float32)


def _flex_reference(ctx, q, k, v):
    a = ctx.attrs
    compute = _flex_compute_dtype(q.dtype, a["softmax_precision"])
    root = _sqrt_scale(a["scale"], q.shape[-1], q.dtype)
    scores = _grouped_matmul(q * root, np.swapaxes(k * root, -1, -2), q.dtype).astype(compute)
    if a["score_mod"] is not None:
        scores = np.asarray(ctx.run_subgraph(a["score_mod"], [scores])[0], dtype=compute)
    probs = _softmax(scores)
    if a["prob_mod"] is not None:
        probs = np.asarray(ctx.run_subgraph(a["prob_mod"], [probs])[0], dtype=compute)
    return _grouped_matmul(probs, v.astype(compute), compute).astype(q.dtype)


FLEX_ATTENTION = OpDef(
    name="preview.FlexAttention", inputs=("Q", "K", "V"), outputs=("Y",),
    infer=_flex_infer, reference=_flex_reference,
    category=Category.OUT_FUSABLE, precision=Precision.ACCUMULATE_FP32,
    attrs={"scale": Attr("float", None), "softmax_precision": Attr("dtype", None),
           "score_mod": Attr("graph", None), "prob_mod": Attr("graph", None)},
    doc="Attention whose scores and probabilities pass through user subgraphs (score_mod, prob_mod).",
    not_lowerable=PENDING_RULE)


# ---- RotaryEmbedding --------------------------------------------------------------------


def _rotary_infer(ctx: InferContext) -> list[TensorType]:
    x = _check_rank(ctx, 0, (3, 4), "X")
    if x.rank == 3 and ctx.attrs["num_heads"] is None:
        raise ctx.error("a 3-D input needs the num_heads attribute")
    for i, name in ((1, "cos_cache"), (2, "sin_cache")):
        _check_rank(ctx, i, (2,) if ctx.has(3) else (3,), name)
    return [x]


def _rotary_reference(ctx, x, cos, sin, position_ids=None):
    a = ctx.attrs
    packed = x.ndim == 3
    x4 = _split_heads(x, a["num_heads"]) if packed else x  # (B, H, S, D)
    rot = a["rotary_embedding_dim"] or x4.shape[-1]
    if position_ids is not None:
        cos, sin = cos[position_ids], sin[position_ids]  # (B, S, rot/2)
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    head, tail = x4[..., :rot], x4[..., rot:]
    if a["interleaved"]:
        x1, x2 = head[..., 0::2], head[..., 1::2]
    else:
        x1, x2 = head[..., : rot // 2], head[..., rot // 2:]
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if a["interleaved"]:
        rotated = np.stack([real, imag], axis=-1).reshape(head.shape)
    else:
        rotated = np.concatenate([real, imag], axis=-1)
    out = np.concatenate([rotated, tail], axis=-1).astype(x.dtype, copy=False)
    return _merge_heads(out) if packed else out


ROTARY_EMBEDDING = OpDef(
    name="RotaryEmbedding", inputs=("X", "cos_cache", "sin_cache", "position_ids?"), outputs=("Y",),
    infer=_rotary_infer, reference=_rotary_reference,
    category=Category.BROADCAST, precision=Precision.FOLLOW,
    attrs={"interleaved": Attr("int", 0), "rotary_embedding_dim": Attr("int", 0), "num_heads": Attr("int", None)},
    doc="Rotary position embedding: rotates (halves or interleaved pairs of) each head by cos/sin of its position.")


# ---- LinearAttention ------------------------------------------------------------------

_LINEAR_RULES = {"linear": (False, False), "gated": (True, False), "delta": (False, True),
                 "gated_delta": (True, True)}  # rule -> (decays the state, delta-rule correction)


def _linear_attention_infer(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    if a["update_rule"] not in _LINEAR_RULES:
        raise ctx.error(f"update_rule must be one of {sorted(_LINEAR_RULES)}, got {a['update_rule']!r}")
    gated, delta = _LINEAR_RULES[a["update_rule"]]
    if gated != ctx.has(4) or delta != ctx.has(5):
        raise ctx.error(f"update_rule {a['update_rule']!r} {'needs' if gated else 'forbids'} decay and "
                        f"{'needs' if delta else 'forbids'} beta")
    hq, hkv = a["q_num_heads"], a["kv_num_heads"]
    _heads_divide(ctx, hq, hkv)
    q = _check_rank(ctx, 0, (3,), "query")
    _check_rank(ctx, 1, (3,), "key")
    v = _check_rank(ctx, 2, (3,), "value")
    if q.shape is None or v.shape is None:
        return [TensorType(None, q.dtype), TensorType(None, q.dtype)]
    d_k = _dim_div(ctx, q.shape[2], hq, "query's hidden size")
    d_v = _dim_div(ctx, v.shape[2], hkv, "value's hidden size")
    state_dtype = ctx.input(3).dtype if ctx.has(3) else q.dtype
    return [TensorType((q.shape[0], q.shape[1], _dim_mul(hq, d_v)), q.dtype),
            TensorType((q.shape[0], hkv, d_k, d_v), state_dtype)]


def _per_head(x: np.ndarray, heads: int) -> np.ndarray:
    """Decay/beta (B, T, H*D) or (B, T, H) or (B, T, 1) -> (B, H or 1, T, D or 1)."""
    b, t, last = x.shape
    width = last // heads if last % heads == 0 and last >= heads else 1
    groups = last // width
    return x.reshape(b, t, groups, width).transpose(0, 2, 1, 3).astype(np.float32)


def _linear_attention_reference(ctx, query, key, value, past_state=None, decay=None, beta=None):
    """The recurrence S_t = decay * S + k (x) v' run token by token (the state carries over time)."""
    a = ctx.attrs
    hq, hkv = a["q_num_heads"], a["kv_num_heads"]
    q = _split_heads(query, hq).astype(np.float32)
    k = _split_heads(key, hkv).astype(np.float32)
    v = _split_heads(value, hkv).astype(np.float32)
    b, _, steps, d_k = q.shape
    d_v = v.shape[-1]
    state = (np.zeros((b, hkv, d_k, d_v), np.float32) if past_state is None
             else past_state.astype(np.float32))
    gate = None if decay is None else np.exp(_per_head(decay, hkv))  # (B, H or 1, T, d_k or 1)
    rate = None if beta is None else _per_head(beta, hkv)
    scale = a["scale"] or 1.0 / np.sqrt(d_k)
    out = np.empty((b, hq, steps, d_v), np.float32)
    for t in range(steps):
        if gate is not None:
            state = state * gate[:, :, t, :, None]
        v_t = v[:, :, t]
        if rate is not None:  # delta rule: write only what the state does not already recall
            recalled = np.einsum("bhkv,bhk->bhv", state, k[:, :, t])
            v_t = rate[:, :, t] * (v_t - recalled)
        state = state + k[:, :, t, :, None] * v_t[:, :, None, :]
        grouped = q[:, :, t].reshape(b, hkv, hq // hkv, d_k)
        out[:, :, t] = scale * np.einsum("bhgk,bhkv->bhgv", grouped, state).reshape(b, hq, d_v)
    state_dtype = query.dtype if past_state is None else past_state.dtype
    return _merge_heads(out).astype(query.dtype), state.astype(state_dtype)


LINEAR_ATTENTION = OpDef(
    name="LinearAttention", inputs=("query", "key", "value", "past_state?", "decay?", "beta?"),
    outputs=("output", "present_state"),
    infer=_linear_attention_infer, reference=_linear_attention_reference,
    category=Category.OPAQUE, precision=Precision.ACCUMULATE_FP32,
    attrs={"q_num_heads": Attr("int"), "kv_num_heads": Attr("int"), "update_rule": Attr("string", "gated_delta"),
           "scale": Attr("float", 0.0), "chunk_size": Attr("int", 64)},
    doc="Linear attention with a recurrent (B, H, d_k, d_v) state: linear, gated, delta or gated-delta updates.",
    not_lowerable=PENDING_RULE)


# ---- CausalConvWithState ---------------------------------------------------------------

_CONV_ACTIVATIONS = ("none", "silu", "swish")


def _causal_conv_infer(ctx: InferContext) -> list[TensorType]:
    if ctx.attrs["activation"] not in _CONV_ACTIVATIONS:
        raise ctx.error(f"activation must be one of {_CONV_ACTIVATIONS}, got {ctx.attrs['activation']!r}")
    x = _check_rank(ctx, 0, (3,), "input")
    w = _check_rank(ctx, 1, (3,), "weight")
    if x.shape is None:
        return [x, TensorType(None, x.dtype)]
    taps = w.shape[2] if w.shape is not None else None
    state_len = taps - 1 if isinstance(taps, int) else fresh_dim("state")
    return [x, TensorType((x.shape[0], x.shape[1], state_len), x.dtype)]


def _causal_conv_reference(ctx, x, weight, bias=None, past_state=None):
    batch, channels, _ = x.shape
    taps = weight.shape[2]
    history = np.zeros((batch, channels, taps - 1), x.dtype) if past_state is None else past_state
    padded = np.concatenate([history, x], axis=2)
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps, axis=2)  # (B, C, L, k)
    acc = np.einsum("bclk,ck->bcl", windows.astype(np.float32), weight[:, 0].astype(np.float32))
    if bias is not None:
        acc = acc + bias.astype(np.float32)[:, None]
    out = acc.astype(x.dtype).astype(np.float32)  # the convolution's result rounds before the activation
    if ctx.attrs["activation"] in ("silu", "swish"):
        out = out / (1.0 + np.exp(-out))
    return out.astype(x.dtype), padded[:, :, padded.shape[2] - (taps - 1):]


CAUSAL_CONV_WITH_STATE = OpDef(
    name="CausalConvWithState", inputs=("input", "weight", "bias?", "past_state?"),
    outputs=("output", "present_state"),
    infer=_causal_conv_infer, reference=_causal_conv_reference,
    category=Category.OPAQUE, precision=Precision.ACCUMULATE_FP32,
    attrs={"activation": Attr("string", "none")},
    doc="Depthwise causal 1-D convolution over [past_state, input], optional SiLU; returns the new carry state.")


# ---- SwiGLU -------------------------------------------------------------------------------


def _swiglu_infer(ctx: InferContext) -> list[TensorType]:
    a, b = ctx.input(0), ctx.input(1)
    if a.dtype != b.dtype:
        raise ctx.error(f"A and B must have one element type, got {a} and {b}")
    if a.shape is not None and b.shape is not None and (
            len(a.shape) != len(b.shape)
            or any(isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(a.shape, b.shape))):
        raise ctx.error(f"A and B must have identical shapes (no broadcasting), got {a} and {b}")
    return [a]


def _swiglu_reference(ctx, a, b):
    alpha = np.asarray(ctx.attrs["alpha"], a.dtype)
    one = np.ones((), a.dtype)
    gate = one / (one + np.exp(-alpha * a))
    return (a * gate * b).astype(a.dtype, copy=False)


SWIGLU = OpDef(
    name="SwiGLU", inputs=("A", "B"), outputs=("Y",), infer=_swiglu_infer, reference=_swiglu_reference,
    category=Category.ELEMENTWISE, precision=Precision.FP32,  # the sigmoid's exp, like Exp
    attrs={"alpha": Attr("float", 1.0)},
    doc="Gated activation Y = A * sigmoid(alpha * A) * B (Swish-gated linear unit).")


# ---- TensorScatter -----------------------------------------------------------------------


def _tensor_scatter_infer(ctx: InferContext) -> list[TensorType]:
    cache, update = ctx.input(0), ctx.input(1)
    if ctx.attrs["mode"] not in ("linear", "circular"):
        raise ctx.error(f"mode must be 'linear' or 'circular', got {ctx.attrs['mode']!r}")
    if cache.dtype != update.dtype:
        raise ctx.error(f"past_cache and update must have one element type, got {cache} and {update}")
    if cache.rank is not None:
        axis = normalize_axis(ctx.attrs["axis"], cache.rank, ctx)
        if axis == 0:
            raise ctx.error("axis cannot be the batch axis 0")
        if update.rank is not None and update.rank != cache.rank:
            raise ctx.error(f"update must have the rank of past_cache, got {update} and {cache}")
    return [cache]


def _tensor_scatter_reference(ctx, cache, update, write_indices=None):
    axis = ctx.attrs["axis"] % cache.ndim
    batch, length = cache.shape[0], cache.shape[axis]
    starts = np.zeros(batch, np.int64) if write_indices is None else write_indices.astype(np.int64)
    rows = starts[:, None] + np.arange(update.shape[axis])  # (B, S): where each update row lands
    if ctx.attrs["mode"] == "circular":
        rows = rows % length
    out = np.moveaxis(cache.copy(), axis, 1)  # (B, max_len, ...): a view, writes reach the copy
    out[np.arange(batch)[:, None], rows] = np.moveaxis(update, axis, 1)
    return np.moveaxis(out, 1, axis)


TENSOR_SCATTER = OpDef(
    name="TensorScatter", inputs=("past_cache", "update", "write_indices?"), outputs=("present_cache",),
    infer=_tensor_scatter_infer, reference=_tensor_scatter_reference,
    category=Category.OPAQUE, precision=Precision.EXACT,
    attrs={"mode": Attr("string", "linear"), "axis": Attr("int", -2)},
    doc="KV-cache update: writes `update` into `past_cache` along `axis` at each batch row's write index.")


# ---- RNN, GRU, LSTM ------------------------------------------------------------------------

# name -> (f(x, alpha, beta), default alpha, default beta); names are case-insensitive in ONNX.
_ACTIVATIONS = {
    "relu": (lambda x, a, b: np.maximum(x, 0), None, None),
    "tanh": (lambda x, a, b: np.tanh(x), None, None),
    "sigmoid": (lambda x, a, b: 1.0 / (1.0 + np.exp(-x)), None, None),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, None),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))), 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda x, a, b: np.logaddexp(0, x), None, None),
}

NUM_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}  # gate blocks stacked in W, R and B, per op
_DEFAULT_ACTIVATIONS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def _num_directions(ctx) -> int:
    direction = ctx.attrs["direction"]
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ctx.error(f"direction must be forward, reverse or bidirectional, got {direction!r}")
    return 2 if direction == "bidirectional" else 1


def recurrent_activations(op: str, attrs: dict, directions: int) -> list[list[tuple[str, float | None, float | None]]]:
    """Per direction, the cell's activation functions as (lower-case name, alpha, beta);
    ValueError naming what is wrong with the attributes.

    alpha and beta lists are consumed in order by the functions that take them (as ONNX
    Runtime reads them); a function past the end of a list gets its default.
    """
    per_dir = len(_DEFAULT_ACTIVATIONS[op])
    names = attrs["activations"] or _DEFAULT_ACTIVATIONS[op] * directions
    if len(names) == per_dir and directions == 2:
        names = names * 2
    if len(names) != per_dir * directions:
        raise ValueError(f"{op} takes {per_dir} activation(s) per direction, got {names}")
    alphas, betas = list(attrs["activation_alpha"] or []), list(attrs["activation_beta"] or [])
    specs = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTIVATIONS)}")
        _, alpha, beta = _ACTIVATIONS[key]
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        specs.append((key, alpha, beta))
    return [specs[d * per_dir:(d + 1) * per_dir] for d in range(directions)]


def _activation_fns(ctx, op: str, directions: int) -> list[list]:
    """Per direction, the cell's activation functions with their alpha/beta bound."""
    try:
        specs = recurrent_activations(op, ctx.attrs, directions)
    except ValueError as e:
        raise ctx.error(str(e)) from None
    return [[lambda x, fn=_ACTIVATIONS[name][0], alpha=alpha, beta=beta: fn(x, alpha, beta)
             for name, alpha, beta in per_dir] for per_dir in specs]


def _recurrent_infer(op: str):
    def infer(ctx: InferContext) -> list[TensorType]:
        directions = _num_directions(ctx)
        _activation_fns(ctx, op, directions)  # names and counts are checked here, not at run time
        x = _check_rank(ctx, 0, (3,), "X")
        w = _check_rank(ctx, 1, (3,), "W")
        r = _check_rank(ctx, 2, (3,), "R")
        hidden = ctx.attrs["hidden_size"]
        if hidden is None:
            hidden = r.shape[2] if r.shape is not None else fresh_dim("hidden")
        for name, t in (("W", w), ("R", r)):
            expected = (directions, _dim_mul(NUM_GATES[op], hidden))
            if t.shape is not None and any(isinstance(a, int) and isinstance(b, int) and a != b
                                           for a, b in zip(t.shape[:2], expected)):
                raise ctx.error(f"{name} must be ({directions}, {NUM_GATES[op]} * hidden_size, ...) "
                                f"for direction {ctx.attrs['direction']!r}, got {t}")
        if x.shape is None:
            return [TensorType(None, x.dtype)] * ctx.num_outputs
        seq, batch = (x.shape[1], x.shape[0]) if ctx.attrs["layout"] else (x.shape[0], x.shape[1])
        if ctx.attrs["layout"]:
            y, state = (batch, seq, directions, hidden), (batch, directions, hidden)
        else:
            y, state = (seq, directions, batch, hidden), (directions, batch, hidden)
        return [TensorType(y, x.dtype)] + [TensorType(state, x.dtype)] * (ctx.num_outputs - 1)

    return infer


def _rnn_cell(gates_x, h, c, r, rb, p, fns, clip):
    return fns[0](clip(gates_x + h @ r.T + rb)), c


def _gru_cell(gates_x, h, c, r, rb, p, fns, clip, linear_before_reset=False):
    f, g = fns
    xz, xr, xh = np.split(gates_x, 3, axis=-1)
    rz, rr, rh = np.split(r, 3, axis=0)
    bz, br, bh = np.split(rb, 3)
    z = f(clip(xz + h @ rz.T + bz))
    reset = f(clip(xr + h @ rr.T + br))
    if linear_before_reset:
        candidate = g(clip(xh + reset * (h @ rh.T + bh)))
    else:
        candidate = g(clip(xh + (reset * h) @ rh.T + bh))
    return (1 - z) * candidate + z * h, c


def _lstm_cell(gates_x, h, c, r, rb, p, fns, clip, input_forget=False):
    f, g, act_h = fns
    pre = gates_x + h @ r.T + rb
    xi, xo, xf, xc = np.split(pre, 4, axis=-1)
    pi, po, pf = np.split(p, 3)
    i = f(clip(xi + pi * c))
    forget = 1 - i if input_forget else f(clip(xf + pf * c))
    c_new = forget * c + i * g(clip(xc))
    o = f(clip(xo + po * c_new))
    return o * act_h(c_new), c_new


def _step_order(steps: int, lengths: np.ndarray, reverse: bool) -> np.ndarray:
    """(steps, batch) time index each step reads; reverse runs each sequence from its own end."""
    t = np.arange(steps)[:, None]
    if not reverse:
        return np.broadcast_to(t, (steps, lengths.size))
    return np.where(t < lengths, lengths - 1 - t, t)


def _recurrent_reference(op: str):
    cells = {"RNN": _rnn_cell, "GRU": _gru_cell, "LSTM": _lstm_cell}

    def reference(ctx, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None):
        a = ctx.attrs
        directions = _num_directions(ctx)
        fns = _activation_fns(ctx, op, directions)
        gates, hidden = NUM_GATES[op], r.shape[-1]
        if a["layout"]:  # batch-major in and out; the computation is time-major
            x = x.swapaxes(0, 1)
            initial_h = None if initial_h is None else initial_h.swapaxes(0, 1)
            initial_c = None if initial_c is None else initial_c.swapaxes(0, 1)
        steps, batch, _ = x.shape
        dtype = x.dtype
        work = np.float32 if dtype.itemsize < 4 else dtype
        clip_at = a["clip"]

        def clip(v):
            return v if clip_at is None else np.clip(v, -clip_at, clip_at)

        cell = cells[op]
        if op == "GRU":
            cell = functools.partial(cell, linear_before_reset=bool(a["linear_before_reset"]))
        if op == "LSTM":
            cell = functools.partial(cell, input_forget=bool(a["input_forget"]))
        lengths = (np.full(batch, steps, np.int64) if sequence_lens is None else sequence_lens.astype(np.int64))
        y = np.zeros((steps, directions, batch, hidden), work)
        final_h = np.zeros((directions, batch, hidden), work)
        final_c = np.zeros((directions, batch, hidden), work)
        batch_idx = np.arange(batch)
        for d in range(directions):
            reverse = a["direction"] == "reverse" or d == 1
            order = _step_order(steps, lengths, reverse)
            bias = np.zeros(2 * gates * hidden, work) if b is None else b[d].astype(work)
            wb, rb = bias[: gates * hidden], bias[gates * hidden:]
            xs = x[order, batch_idx].astype(work)  # (steps, batch, input) in processing order
            gates_x = xs @ w[d].astype(work).T + wb  # input projections for every step at once
            h = np.zeros((batch, hidden), work) if initial_h is None else initial_h[d].astype(work)
            c = np.zeros((batch, hidden), work) if initial_c is None else initial_c[d].astype(work)
            peep = np.zeros(3 * hidden, work) if p is None else p[d].astype(work)
            recurrent = r[d].astype(work)
            outs = np.zeros((steps, batch, hidden), work)
            for t in range(steps):
                live = (t < lengths)[:, None]  # finished sequences keep their state and output zeros
                h_new, c_new = cell(gates_x[t], h, c, recurrent, rb, peep, fns[d], clip)
                h = np.where(live, h_new, h)
                c = np.where(live, c_new, c)
                outs[t] = np.where(live, h_new, 0)
            y[order, d, batch_idx] = outs
            final_h[d], final_c[d] = h, c
        if a["layout"]:
            y, final_h, final_c = y.transpose(2, 0, 1, 3), final_h.swapaxes(0, 1), final_c.swapaxes(0, 1)
        results = (y.astype(dtype), final_h.astype(dtype), final_c.astype(dtype))
        return results[: ctx.num_outputs] if ctx.num_outputs > 1 else results[0]

    return reference


_RECURRENT_ATTRS = {
    "hidden_size": Attr("int", None), "direction": Attr("string", "forward"), "layout": Attr("int", 0),
    "activations": Attr("strings", None), "activation_alpha": Attr("floats", None),
    "activation_beta": Attr("floats", None), "clip": Attr("float", None),
}


def _recurrent(op: str, inputs: tuple, outputs: tuple, extra_attrs: dict, doc: str, **facts) -> OpDef:
    return OpDef(name=op, inputs=inputs, outputs=outputs, infer=_recurrent_infer(op),
                 reference=_recurrent_reference(op), category=Category.OPAQUE, precision=Precision.FP32,
                 attrs={**_RECURRENT_ATTRS, **extra_attrs}, doc=doc, **facts)


_RNN_INPUTS = ("X", "W", "R", "B?", "sequence_lens?", "initial_h?")

RNN = _recurrent("RNN", _RNN_INPUTS, ("Y?", "Y_h?"), {},
                 "Elman recurrent layer H_t = f(X_t.W^T + H_{t-1}.R^T + b), any direction.", not_lowerable=PENDING_RULE)
GRU = _recurrent("GRU", _RNN_INPUTS, ("Y?", "Y_h?"), {"linear_before_reset": Attr("int", 0)},
                 "Gated recurrent unit layer (update/reset gates), any direction.", not_lowerable=PENDING_RULE)
LSTM = _recurrent("LSTM", _RNN_INPUTS + ("initial_c?", "P?"), ("Y?", "Y_h?", "Y_c?"),
                  {"input_forget": Attr("int", 0)},
                  "Long short-term memory layer with optional peepholes and coupled input/forget gates.",
                  not_lowerable=PENDING_RULE)


OPS = [ATTENTION, FLEX_ATTENTION, ROTARY_EMBEDDING, LINEAR_ATTENTION, CAUSAL_CONV_WITH_STATE, SWIGLU,
       TENSOR_SCATTER, RNN, GRU, LSTM]
