"""Fused attention for the cuda target: softmax(scale * Q K^T + mask) V in one launch, the
scores never written to memory (the online softmax of FlashAttention), registered as the
cuda extern lowering of `Attention` (what the passes make of softmax(Q K^T) V).

A block of 4 warps owns 16 query rows of one (batch, head), 4 rows per warp, and walks
the keys in tiles of 32:
    stage   Q's 16 rows once; per tile K's and V's 32 rows (zeros past the last key),
            by all threads, into shared memory; a barrier;
    score   lane j of a warp scores key j of the tile against each of its rows (K's shared
            rows padded by one element, so the 32 lanes' reads hit 32 banks);
    softmax the row's running max and sum across the warp by xor shuffles; the partial
            output is rescaled by exp(old max - new max), as is the sum;
    values  each lane owns output columns lane, lane + 32, ...: for each key j it takes
            p_j from lane j (a shuffle) and adds p_j * V[j, column];
    a barrier before the next tile overwrites K and V.
The output is the accumulator over the sum (0 for a row every key of which is masked,
like the loop-IR rule). Computation is float32 for every input type; 16-bit inputs are
widened on load and the output rounded once.

Taken: no KV cache, only the Y output, no softcap or sliding window, a float mask (added)
or a bool one (True = attend) that broadcasts to [B, H, S, T], causal or not, grouped
query heads, 4-D or packed (B, S, H*D) operands, and K + V tiles that fit 40 KiB of
shared memory (head sizes up to about 150 for float32). Anything else: the loop-IR rule.
"""
from __future__ import annotations

import math

from ...ir import dtypes
from ...ir.ops import REGISTRY, get_op
from .. import loop_ir as L
from ..extern import ExternLoopKernel, ExternPlan
from ..lowering.attention import mask_strides

WARPS, ROWS_PER_WARP, KEYS = 4, 4, 32
THREADS = WARPS * 32
BLOCK_ROWS = WARPS * ROWS_PER_WARP
SHARED_LIMIT = 40 * 1024
F32 = dtypes.float32
DTYPES = ("float32", "float16", "bfloat16")


def _c(x):
    return L.const(x, F32)


def _max(a, b):
    return L.binary("max", a, b)


class _Layout:
    """Where element (b, head, s, d) of a 4-D head tensor or a packed (B, S, H*D) one lives."""

    def __init__(self, shape: tuple, packed: bool, heads: int):
        self.shape, self.packed, self.heads = shape, packed, heads
        self.width = shape[2] // heads if packed else shape[3]
        self.seq = shape[1] if packed else shape[2]

    def at(self, b, h, s, d):
        if self.packed:
            return L.add(L.mul(L.add(L.mul(b, self.seq), s), self.heads * self.width), L.add(L.mul(h, self.width), d))
        return L.add(L.mul(L.add(L.mul(L.add(L.mul(b, self.heads), h), self.seq), s), self.width), d)


def attention_kernel(batch, hq, hkv, sq, total, q_l: _Layout, k_l: _Layout, v_l: _Layout, y_l: _Layout,
                     dtype, scale: float, causal: bool, mask=None, strides=None) -> ExternLoopKernel:
    head, v_head = q_l.width, v_l.width
    n = lambda shape: max(1, math.prod(shape))  # noqa: E731
    Q, K, V = (L.Buffer(nm, dtype, n(lay.shape)) for nm, lay in (("Q", q_l), ("K", k_l), ("V", v_l)))
    Y = L.Buffer("Y", dtype, n(y_l.shape))
    M = None if mask is None else L.Buffer("mask", mask.type.dtype, n(tuple(mask.type.shape)))
    cols = -(-v_head // 32)  # output columns per lane
    ks_stride, vs_stride = head + 1, cols * 32
    qs = L.Buffer(L.var("q_tile").name, F32, BLOCK_ROWS * head, "shared")
    ks = L.Buffer(L.var("k_tile").name, F32, KEYS * ks_stride, "shared")
    vs = L.Buffer(L.var("v_tile").name, F32, KEYS * vs_stride, "shared")
    blk, t = L.var("blk"), L.var("t")
    q_blocks = -(-sq // BLOCK_ROWS)
    b = L.div(blk, hq * q_blocks)
    h = L.mod(L.div(blk, q_blocks), hq)
    q0 = L.mul(L.mod(blk, q_blocks), BLOCK_ROWS)
    hk = L.div(h, hq // hkv) if hq != hkv else h
    warp, lane = L.div(t, 32), L.mod(t, 32)
    lt = lambda x, y: L.binary("lt", x, y if isinstance(y, L.Expr) else L.const(y))  # noqa: E731
    wide = lambda buf, idx, pred=None: L.cast(  # noqa: E731
        L.Load(buf.dtype, buf, idx, pred, None if pred is None else L.const(0, buf.dtype)), F32)

    def strided(count, fn):
        """Thread t's share of `count` elements: fn(element number) for t, t + 128, ..."""
        out = []
        for e in range(-(-count // THREADS)):
            i = L.add(t, e * THREADS)
            step = fn(i)
            out.append(step if (e + 1) * THREADS <= count else L.IfThenElse(lt(i, count), step))
        return out

    # Q's rows once (rows past the end: zeros, their outputs are never stored)
    def stage_q(i):
        r, d = L.div(i, head), L.mod(i, head)
        row = L.add(q0, r)
        return L.Store(qs, i, wide(Q, q_l.at(b, h, L.binary("min", row, L.const(sq - 1)), d)))

    kt = L.var("kt")

    def stage_k(i):
        j, d = L.div(i, head), L.mod(i, head)
        key = L.add(L.mul(kt, KEYS), j)
        return L.Store(ks, L.add(L.mul(j, ks_stride), d), wide(K, k_l.at(b, hk, key, d), lt(key, total)))

    def stage_v(i):
        j, c = L.div(i, vs_stride), L.mod(i, vs_stride)
        key = L.add(L.mul(kt, KEYS), j)
        return L.Store(vs, i, wide(V, v_l.at(b, hk, key, L.binary("min", c, L.const(v_head - 1))),
                                   L.binary("and", lt(key, total), lt(c, v_head))))

    m = L.Buffer(L.var("m").name, F32, ROWS_PER_WARP, "local")  # running max per row
    s_sum = L.Buffer(L.var("l").name, F32, ROWS_PER_WARP, "local")  # running sum
    acc = L.Buffer(L.var("acc").name, F32, ROWS_PER_WARP * cols, "local")
    sc = L.Buffer(L.var("s").name, F32, 1, "local")
    p = L.Buffer(L.var("p").name, F32, 1, "local")
    corr = L.Buffer(L.var("corr").name, F32, 1, "local")
    red = L.Buffer(L.var("red").name, F32, 1, "local")
    minus_inf = _c(float("-inf"))

    def warp_all(buf, op):
        return [L.Store(buf, L.const(0), L.binary(op, L.Load(F32, buf, L.const(0)),
                                                  L.shuffle("xor", L.Load(F32, buf, L.const(0)), off)))
                for off in (16, 8, 4, 2, 1)]

    def row_step(r):
        """One of the warp's rows against the tile's 32 keys."""
        local_row = L.add(L.mul(warp, ROWS_PER_WARP), r)
        row = L.add(q0, local_row)
        key = L.add(L.mul(kt, KEYS), lane)
        d = L.var("d")
        dot = [L.Store(sc, L.const(0), _c(0.0)),
               L.For(d, L.const(head), L.LoopKind.SERIAL, L.Store(sc, L.const(0), L.call(
                   "fma", L.Load(F32, qs, L.add(L.mul(local_row, head), d)),
                   L.Load(F32, ks, L.add(L.mul(lane, ks_stride), d)), L.Load(F32, sc, L.const(0)))))]
        score = L.mul(L.Load(F32, sc, L.const(0)), _c(scale))
        allowed = lt(key, total)
        if causal:
            allowed = L.binary("and", allowed, L.binary("le", key, L.binary("min", row, L.const(sq - 1))))
        if M is not None:
            safe_row, safe_key = L.binary("min", row, L.const(sq - 1)), L.binary("min", key, L.const(total - 1))
            at = L.add(L.add(L.mul(b, strides[0]), L.mul(h, strides[1])),
                       L.add(L.mul(safe_row, strides[2]), L.mul(safe_key, strides[3])))
            value = L.Load(M.dtype, M, at)
            if M.dtype.kind == "bool":
                allowed = L.binary("and", allowed, value)
            else:
                score = L.add(score, L.cast(value, F32))
        stmts = [*dot, L.Store(sc, L.const(0), L.select(allowed, score, minus_inf)),
                 L.Store(red, L.const(0), L.Load(F32, sc, L.const(0))), *warp_all(red, "max")]
        old = L.Load(F32, m, L.const(r))
        new = _max(old, L.Load(F32, red, L.const(0)))
        # a row with no allowed key yet keeps max -inf: shift by 0 then, so every exp is 0, not NaN
        shift = L.select(L.call("isinf", new), _c(0.0), new)
        stmts += [L.Store(p, L.const(0), L.call("exp", L.sub(L.Load(F32, sc, L.const(0)), shift))),
                  L.Store(corr, L.const(0), L.call("exp", L.sub(old, shift))),
                  L.Store(m, L.const(r), new),
                  L.Store(red, L.const(0), L.Load(F32, p, L.const(0))), *warp_all(red, "add"),
                  L.Store(s_sum, L.const(r), L.add(L.mul(L.Load(F32, s_sum, L.const(r)), L.Load(F32, corr, L.const(0))),
                                                   L.Load(F32, red, L.const(0))))]
        for c in range(cols):
            slot = L.const(r * cols + c)
            stmts.append(L.Store(acc, slot, L.mul(L.Load(F32, acc, slot), L.Load(F32, corr, L.const(0)))))
        j = L.var("j")
        pj = L.shuffle("idx", L.Load(F32, p, L.const(0)), j)
        stmts.append(L.For(j, L.const(KEYS), L.LoopKind.SERIAL, L.seq(*[
            L.Store(acc, L.const(r * cols + c), L.call("fma", pj, L.Load(F32, vs, L.add(L.mul(j, vs_stride),
                                                                                        L.add(lane, 32 * c))),
                                                           L.Load(F32, acc, L.const(r * cols + c))))
            for c in range(cols)])))
        return stmts

    tiles = -(-total // KEYS)
    tile_body = [*strided(KEYS * head, stage_k), *strided(KEYS * vs_stride, stage_v), L.Barrier()]
    for r in range(ROWS_PER_WARP):
        tile_body += row_step(r)
    tile_body.append(L.Barrier())
    init = [L.Store(m, L.const(r), minus_inf) for r in range(ROWS_PER_WARP)]
    init += [L.Store(s_sum, L.const(r), _c(0.0)) for r in range(ROWS_PER_WARP)]
    init += [L.Store(acc, L.const(i), _c(0.0)) for i in range(ROWS_PER_WARP * cols)]
    out = []
    for r in range(ROWS_PER_WARP):
        row = L.add(q0, L.add(L.mul(warp, ROWS_PER_WARP), r))
        total_r = L.Load(F32, s_sum, L.const(r))
        inv = L.select(L.binary("eq", total_r, _c(0.0)), _c(0.0), L.div(_c(1.0), total_r))
        for c in range(cols):
            col = L.add(lane, 32 * c)
            value = L.mul(L.Load(F32, acc, L.const(r * cols + c)), inv)
            out.append(L.IfThenElse(L.binary("and", lt(row, sq), lt(col, v_head)),
                                    L.Store(Y, y_l.at(b, h, row, col), L.cast(value, dtype))))
    body: L.Stmt = L.seq(*init, *strided(BLOCK_ROWS * head, stage_q),
                         L.For(kt, L.const(tiles), L.LoopKind.SERIAL, L.seq(*tile_body)), *out)
    for buf in (m, s_sum, acc, sc, p, corr, red):
        body = L.Allocate(buf, body)
    launch = L.For(blk, L.const(batch * hq * q_blocks), L.LoopKind.GPU_BLOCK,
                   L.Allocate(qs, L.Allocate(ks, L.Allocate(vs, L.For(t, L.const(THREADS), L.LoopKind.GPU_THREAD,
                                                                      body)))))
    params = (Q, K, V) + ((M,) if M is not None else ()) + (Y,)
    return ExternLoopKernel("attention", params, launch, "attention")


def lower_attention(node, consts, target, schedules) -> ExternPlan | None:
    q, k, v, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    if any(len(node.inputs) > i and node.inputs[i] is not None for i in (4, 5, 6)):
        return None  # a KV cache
    if any(o is not None for o in node.outputs[1:]):
        return None
    types = [x.type for x in (q, k, v, y)]
    if not all(t.is_static and t.dtype.name in DTYPES for t in types) or len({t.dtype for t in types}) != 1:
        return None
    if mask is not None and (not mask.type.is_static or mask.type.dtype not in (q.type.dtype, dtypes.bool_)):
        return None
    attrs = REGISTRY[node.op].resolve_attrs(node.attrs, node.describe())
    if attrs["softcap"] or attrs["left_window_size"] >= 0 or attrs["right_window_size"] >= 0:
        return None
    if attrs["softmax_precision"] is not None and attrs["softmax_precision"].name != "float32":
        return None
    packed = q.type.rank == 3
    if q.type.rank not in (3, 4) or any(x.type.rank != q.type.rank for x in (k, v, y)):
        return None
    if packed:
        hq, hkv = attrs["q_num_heads"], attrs["kv_num_heads"]
        if not hq or not hkv:
            return None
    else:
        hq, hkv = q.type.shape[1], k.type.shape[1]
    shapes = [tuple(x.type.shape) for x in (q, k, v, y)]
    if any(0 in s for s in shapes) or hq % hkv:
        return None
    q_l, k_l, v_l = _Layout(shapes[0], packed, hq), _Layout(shapes[1], packed, hkv), _Layout(shapes[2], packed, hkv)
    y_l = _Layout(shapes[3], packed, hq)
    batch, sq, total = shapes[0][0], q_l.seq, k_l.seq
    if k_l.width != q_l.width or y_l.width != v_l.width or v_l.seq != total or y_l.seq != sq:
        return None
    head, cols = q_l.width, -(-v_l.width // 32)
    shared = 4 * (BLOCK_ROWS * head + KEYS * (head + 1) + KEYS * cols * 32)
    if shared > SHARED_LIMIT:
        return None
    strides = None
    if mask is not None:
        strides = mask_strides(tuple(mask.type.shape), batch, hq, sq, total)
        if strides is None:
            return None
    scale = attrs["scale"] if attrs["scale"] is not None else 1.0 / math.sqrt(head)
    kernel = attention_kernel(batch, hq, hkv, sq, total, q_l, k_l, v_l, y_l, q.type.dtype, float(scale),
                              bool(attrs["is_causal"]), mask, strides)
    args = [("value", q), ("value", k), ("value", v)] + ([("value", mask)] if mask is not None else []) + [("value", y)]
    return ExternPlan(kernel, args)


get_op("Attention").register("extern:cuda", lower_attention)
