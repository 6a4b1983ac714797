"""Lowering rule of scaled dot-product `Attention` (what recognize_patterns makes of BERT's
softmax(Q K^T * scale + mask) V), on 4-D heads or packed (B, S, H*D) operands.

Stages (scratch in the accumulator type; K/V heads shared by Hq/Hkv query heads):
    kt[b, hk, d, j]    = K transposed, so score rows read keys contiguously
    scores[b, h, i, j] = softcap(scale * sum_d q[b, h, i, d] * kt[b, hk, d, j]) + mask + causal/window bias
    max[b, h, i]       = max_j scores                      (vectorized row reduction)
    e[b, h, i, j]      = exp(scores - max)                 (exp once per score)
    inv[b, h, i]       = 1 / sum_j e  (0 for a row with no allowed key: it outputs zeros)
    y[b, h, i, c]      = inv * sum_j e[b, h, i, j] * v[b, hk, j, c]   (vectorized over c)
Packed operands add a final copy of y into (B, S, H*Dv). The scores and e scratch are the
whole [B, H, S, T]: the tensor-expression layer has no per-thread scratch (one score row
per thread would need it). The fp32 cases without a KV cache, softcap or window go to the
fused kernel instead (`llvm/microkernels/attention.py`, via `llvm/extern_lowering.lower_attention`),
whose scores live in a per-thread block of rows; this rule covers the rest.

KV caches: an internal one (past_key/past_value, 4-D) is read as the keys and values before
the new ones (key j < P from the cache, the rest from K and V: both loads clamped in range),
and query i sits at position i + P for the causal and window bounds; present_key and
present_value are that concatenation, written out. An external one (nonpad_kv_seqlen[b]
valid keys of K and V) masks the keys past it and offsets query i to nonpad - Sq + i. The
qk_matmul_output output is the scores at the stage its mode names (scaled products, after
softcap, after the bias, or the probabilities).

Refused with NotLowerable naming the attribute: a softmax_precision narrower than the
accumulator type.
"""
from __future__ import annotations

import math

from ...ir import dtypes
from .. import loop_ir as L
from ..te import Compute, Reduce, compute_operand, is_narrow_float, wide
from .context import LowerContext, NotLowerable
from .injective import index_value
from .rowreduce import row_reduce


def _acc(dt):
    return dtypes.float32 if is_narrow_float(dt) else dt


def _accumulator(ctx: LowerContext, dt):
    """The type scores, softmax and sums compute in: float32 for 16-bit floats, else the
    operands' own, or a wider softmax_precision the node asks for (float64: every stage in
    it, which is at least as exact as a float64 softmax of float32 scores)."""
    acc = _acc(dt)
    precision = ctx.attrs.get("softmax_precision")
    if precision is None or precision is acc:
        return acc
    if precision.is_float and precision.bits > acc.bits:
        return precision
    raise NotLowerable(f"softmax_precision={precision} (the accumulator type {acc} or a wider float is lowered)")


def mask_strides(mask_shape: tuple, b: int, h: int, s: int, t: int) -> tuple[int, int, int, int] | None:
    """Element offsets per (b, h, i, j) of a mask broadcast to [B, H, S, T] (0 along
    broadcast dims), for the targets' fused kernels; None when it does not broadcast that
    way (a mask shorter than the keys is padded with -inf by ONNX: this module's rule
    handles it)."""
    shape = (1,) * (4 - len(mask_shape)) + tuple(mask_shape)
    full = (b, h, s, t)
    if len(shape) != 4 or any(d not in (1, f) for d, f in zip(shape, full)):
        return None
    strides, step = [], 1
    for d in reversed(shape):
        strides.insert(0, 0 if d == 1 else step)
        step *= d
    return tuple(strides)


def _operand(t, packed: bool, heads: int):
    """(b, head, s, d) -> element of a 4-D head tensor or of a packed (B, S, H*D) one."""
    if not packed:
        return lambda b, h, s, d: t[[b, h, s, d]]
    width = t.shape[2] // heads
    return lambda b, h, s, d: t[[b, s, L.add(L.mul(h, width), d)]]


def _bias(ctx: LowerContext, mask, idx, total: int, acc, past: int = 0, nonpad=None, sq: int = 0):
    """Additive bias at score index (b, h, i, j): the mask (bool: 0 / -inf; shorter than the
    keys: padded with -inf) plus -inf outside the causal/window band, whose query i sits at
    i + `past` (an internal cache) or i + nonpad[b] - sq (an external one, whose keys from
    nonpad[b] on are masked too). None when there is none."""
    i, j = idx[2], idx[3]
    terms = []
    minus_inf = L.const(float("-inf"), acc)
    allowed = None

    def both(a, b):
        return b if a is None else L.binary("and", a, b)

    if mask is not None:
        short = mask.shape[-1] not in (1, total)
        at = list(idx)
        if short:
            inside = L.binary("lt", j, L.const(mask.shape[-1]))
            at[3] = L.select(inside, j, L.const(0))
            value = mask.bcast(at, 4)
            allowed = inside
        else:
            value = mask.bcast(at, 4)
        if mask.dtype.kind == "bool":
            allowed = both(allowed, value)
        else:
            terms.append(L.cast(wide(value), acc))
    if nonpad is not None:
        valid = L.cast(nonpad[[idx[0]]], L.INDEX)
        allowed = both(allowed, L.binary("lt", j, valid))
        position = L.add(i, L.sub(valid, L.const(sq)))
    else:
        position = L.add(i, L.const(past)) if past else i
    distance = L.sub(position, j)  # how far key j lies behind query i
    if ctx.attrs["is_causal"]:
        allowed = both(allowed, L.binary("ge", distance, L.const(0)))
    if ctx.attrs["left_window_size"] >= 0:
        allowed = both(allowed, L.binary("le", distance, L.const(ctx.attrs["left_window_size"])))
    if ctx.attrs["right_window_size"] >= 0:
        allowed = both(allowed, L.binary("le", L.sub(j, i), L.const(ctx.attrs["right_window_size"])))
    if allowed is not None:
        terms.append(L.select(allowed, L.const(0.0, acc), minus_inf))
    if not terms:
        return None
    total_bias = terms[0]
    for t in terms[1:]:
        total_bias = L.add(total_bias, t)
    return total_bias


def _attention(ctx: LowerContext):
    q, k, v = ctx.input(0), ctx.input(1), ctx.input(2)
    acc = _accumulator(ctx, q.dtype)
    packed = q.rank == 3
    if packed:
        hq, hkv = ctx.attrs["q_num_heads"], ctx.attrs["kv_num_heads"]
        if hq is None or hkv is None:
            raise NotLowerable("3-D operands need q_num_heads and kv_num_heads")
        batch, sq = q.shape[0], q.shape[1]
        head, total, v_head = q.shape[2] // hq, k.shape[1], v.shape[2] // hkv
    else:
        batch, hq, sq, head = q.shape
        hkv, total, v_head = k.shape[1], k.shape[2], v.shape[3]
    group = hq // hkv
    scale = ctx.attrs["scale"] if ctx.attrs["scale"] is not None else 1.0 / math.sqrt(head)
    softcap = float(ctx.attrs["softcap"] or 0.0)
    mask = ctx.inputs[3] if ctx.has(3) else None
    nonpad = ctx.input(6) if ctx.has(6) else None
    q_at, k_at, v_at = _operand(q, packed, hq), _operand(k, packed, hkv), _operand(v, packed, hkv)
    past = 0
    if ctx.has(4):  # an internal KV cache: its keys and values come first
        past_k, past_v = ctx.input(4), ctx.input(5)
        past = past_k.shape[2]
        k_at, v_at = _after_cache(past_k, k_at, past), _after_cache(past_v, v_at, past)
        total += past
    # bf16 attention (the precision pass's compute=bfloat16): Q, K, V and the unnormalized
    # probabilities rounded to bfloat16 where they enter a product, as the reference does
    narrow = compute_operand(ctx.attrs.get("compute"), acc)

    def kv_head(h):
        return L.div(h, group) if group > 1 else h

    kt = ctx.temp(Compute((batch, hkv, head, total), acc, lambda idx: narrow(k_at(idx[0], idx[1], idx[3], idx[2])),
                          name="kt"))

    def score(idx, capped: bool = True, biased: bool = True):
        """scale * Q.K^T at score index (b, h, i, j), then softcap and the bias; without them
        for qk_matmul_output's modes 0 (neither) and 1 (softcap only)."""
        b, h, i, j = idx

        def product(r):
            qv = narrow(q_at(b, h, i, r[0]))
            return L.mul(qv, kt[[b, kv_head(h), r[0], j]])

        def finalize(s):
            s = L.mul(s, L.const(scale, acc))
            if capped and softcap > 0:
                cap = L.const(softcap, acc)
                s = L.mul(cap, L.call("tanh", L.div(s, cap)))
            bias = _bias(ctx, mask, idx, total, acc, past, nonpad, sq) if biased else None
            return s if bias is None else L.add(s, bias)

        return Reduce("sum", (head,), product, finalize, acc)

    rows = (batch, hq, sq)
    scores = ctx.temp(Compute(rows + (total,), acc, score, name="scores"))
    top = ctx.temp(row_reduce(ctx, rows + (1,), total, "max", lambda idx, j: scores[list(idx[:3]) + [j]], acc,
                              name="rowmax"))

    def shifted_exp(idx):
        m = top[list(idx[:3]) + [L.const(0)]]
        safe = L.select(L.call("isinf", m), L.const(0.0, acc), m)  # a row of only -inf: every e is 0
        return L.call("exp", L.sub(scores[idx], safe))

    e = ctx.temp(Compute(rows + (total,), acc, shifted_exp, name="exp"))

    def reciprocal(s):
        zero = L.binary("eq", s, L.const(0.0, acc))
        return L.select(zero, L.const(0.0, acc), L.div(L.const(1.0, acc), L.select(zero, L.const(1.0, acc), s)))

    inv = ctx.temp(row_reduce(ctx, rows + (1,), total, "sum", lambda idx, j: e[list(idx[:3]) + [j]], acc, reciprocal,
                              name="rowsum"))

    def weighted(idx):
        b, h, i, c = idx
        scale_row = inv[[b, h, i, L.const(0)]]
        return Reduce("sum", (total,), lambda r: L.mul(narrow(e[[b, h, i, r[0]]]), narrow(v_at(b, kv_head(h), r[0], c))),
                      lambda s: L.mul(s, scale_row), acc)

    if not packed:
        outs = [Compute(ctx.out_shape(), ctx.out_dtype(), weighted)]
    else:
        y = ctx.temp(Compute(rows + (v_head,), acc, weighted, name="heads"))
        outs = [Compute(ctx.out_shape(), ctx.out_dtype(),
                        lambda idx: y[[idx[0], L.div(idx[2], v_head), idx[1], L.mod(idx[2], v_head)]])]
    for i, operand in ((1, k_at), (2, v_at)):  # present_key / present_value: cache and new, 4-D
        outs.append(_present(ctx, i, operand))
    if _wants(ctx, 3):
        mode = ctx.attrs["qk_matmul_output_mode"]
        probability = lambda idx: L.mul(e[idx], inv[list(idx[:3]) + [L.const(0)]])  # noqa: E731
        element = {0: lambda idx: score(idx, False, False), 1: lambda idx: score(idx, True, False),
                   2: lambda idx: scores[idx], 3: probability}[mode]
        outs.append(Compute(ctx.out_shape(3), ctx.out_dtype(3), element))
    return outs


def _wants(ctx: LowerContext, i: int) -> bool:
    return len(ctx.out_types) > i and ctx.out_types[i] is not None


def _present(ctx: LowerContext, i: int, operand):
    """present_key (i=1) or present_value (i=2) when the node has it: [B, Hkv, P + T, D]."""
    if not _wants(ctx, i):
        return None
    return Compute(ctx.out_shape(i), ctx.out_dtype(i), lambda idx: operand(*idx))


def _joined(j, length: int, earlier, later):
    """Element j of `length` earlier elements followed by later ones (a cache or state, then
    the new steps): `earlier(k)` / `later(k)` load position k of each, every index clamped
    into its own tensor, the select keeping the one that is right."""
    if length == 0:
        return later(j)
    return L.select(L.binary("lt", j, L.const(length)), earlier(L.binary("min", j, L.const(length - 1))),
                    later(L.binary("max", L.sub(j, L.const(length)), L.const(0))))


def _after_cache(past, new_at, length: int):
    """(b, head, j, d) -> key/value j of the cache (`past`, 4-D, `length` long) followed by
    the new ones (`new_at`)."""
    return lambda b, h, j, d: _joined(j, length, lambda k: past[[b, h, k, d]], lambda k: new_at(b, h, k, d))


def _rotary_embedding(ctx: LowerContext):
    """RotaryEmbedding: each output element is its own input element, or one of the two
    rotated values of its pair (halves, or interleaved neighbours) with the position's cos
    and sin. Every index a lane computes is clamped into range (the select keeps the lane
    that is right; position_ids graph inputs are checked before the run, `passes/index_guards`)."""
    x, cos, sin = ctx.input(0), ctx.input(1), ctx.input(2)
    pos = ctx.input(3) if ctx.has(3) else None
    a = ctx.attrs
    shape = ctx.out_shape()
    packed = x.rank == 3
    d_head = shape[-1] // a["num_heads"] if packed else shape[-1]
    rot = a["rotary_embedding_dim"] or d_head
    half = rot // 2
    if rot % 2 or rot > d_head or cos.shape[-1] < half:
        raise NotLowerable(f"rotary_embedding_dim {rot} against heads of {d_head} and caches of {cos.shape[-1]}")
    acc = _acc(x.dtype)

    def clamp(i, hi):
        return L.binary("min", L.binary("max", i, L.const(0)), L.const(hi - 1))

    def element(idx):
        if packed:
            b, s, hd = idx
            d, base = L.mod(hd, d_head), L.mul(L.div(hd, d_head), d_head)

            def at(dd):
                return wide(x[[b, s, L.add(base, dd)]])
        else:
            b, h, s, d = idx

            def at(dd):
                return wide(x[[b, h, s, dd]])
        if a["interleaved"]:
            i = L.div(d, 2)
            real = L.binary("eq", L.mod(d, 2), L.const(0))
            first, second = L.mul(i, 2), L.add(L.mul(i, 2), 1)
        else:
            real = L.binary("lt", d, L.const(half))
            i = L.select(real, d, L.sub(d, half))
            first, second = i, L.add(i, half)
        i = clamp(i, half)
        first, second = clamp(first, d_head), clamp(second, d_head)
        if pos is not None:
            p = index_value(pos, [b, s], cos.shape[0])  # negative counts from the end, as numpy's does
            c, sn = wide(cos[[p, i]]), wide(sin[[p, i]])
        else:
            c, sn = wide(cos[[b, s, i]]), wide(sin[[b, s, i]])
        x1, x2 = L.cast(at(first), acc), L.cast(at(second), acc)
        c, sn = L.cast(c, acc), L.cast(sn, acc)
        rotated = L.select(real, L.sub(L.mul(c, x1), L.mul(sn, x2)), L.add(L.mul(sn, x1), L.mul(c, x2)))
        y = L.select(L.binary("lt", d, L.const(rot)), rotated, L.cast(at(clamp(d, d_head)), acc))
        return L.cast(y, x.dtype)

    return [Compute(shape, x.dtype, element)]


def _causal_conv_with_state(ctx: LowerContext):
    """CausalConvWithState: a depthwise causal conv over [state, input] along time, the state
    being past_state (zeros without one), plus bias, the sum rounded to the input's type,
    then SiLU if asked; present_state is the last taps-1 steps of [state, input]."""
    x, w = ctx.input(0), ctx.input(1)
    bias = ctx.input(2) if ctx.has(2) else None
    past = ctx.input(3) if ctx.has(3) else None
    length, taps = x.shape[2], w.shape[2]
    keep = taps - 1
    acc = _acc(x.dtype)

    def joined(b, c, u):  # [state, input] at time u
        state = (lambda k: past[[b, c, k]]) if past is not None else (lambda k: L.const(0, x.dtype))
        return _joined(u, keep, state, lambda k: x[[b, c, k]])

    def element(idx):
        b, c, t = idx

        def finalize(s):
            if bias is not None:
                s = L.add(s, L.cast(wide(bias[[c]]), acc))
            s = L.cast(wide(L.cast(s, x.dtype)), acc)  # the convolution rounds before the activation
            if ctx.attrs["activation"] in ("silu", "swish"):
                s = L.div(s, L.add(L.const(1.0, acc), L.call("exp", L.call("neg", s))))
            return s
        return Reduce("sum", (taps,), lambda r: L.mul(L.cast(wide(w[[c, L.const(0), r[0]]]), acc),
                                                      L.cast(wide(joined(b, c, L.add(t, r[0]))), acc)), finalize, acc)

    outs = [Compute(ctx.out_shape(), ctx.out_dtype(), element)]
    if _wants(ctx, 1):
        outs.append(Compute(ctx.out_shape(1), ctx.out_dtype(1), lambda idx: joined(idx[0], idx[1],
                                                                                   L.add(idx[2], L.const(length)))))
    return outs


RULES = {"Attention": _attention, "RotaryEmbedding": _rotary_embedding, "CausalConvWithState": _causal_conv_with_state}
