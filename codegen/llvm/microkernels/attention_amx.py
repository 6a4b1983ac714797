"""bf16 attention on AMX tiles (`AttentionProblem.amx`): the fused kernel of `attention.py`
with both products as tile products (`tdpbf16ps`).

Why: on Sapphire Rapids `vdpbf16ps` retires no more multiply-adds per cycle than float32
FMAs, so the vector bf16 kernel ran BERT's attention no faster than float32 (12 heads,
128 x 128 x 64: 386 against 373 us, 2 threads); the tiles do 16 x 16 x 32 per instruction.

One unit is 16 query rows of one (batch, head) - one tile of rows:
  1. Q: the rows converted to bfloat16, head dims zero-padded to whole 32-value tile rows;
  2. scores: per group of up to four 16-key C tiles, for each 32 head dims, the Q tile times
     the Kt tile (16 pairs of head dims x 16 keys: the `_pair_k` layout, whose rows are tile
     rows at a stride of the padded key count), stored to the float score rows; then scale,
     mask and causal band as in the vector kernel;
  3. softmax per row (float32), the exp rows converted to bfloat16 (`_pair_probabilities`);
  4. output: per group of up to four 16-column C tiles, for each 32 keys, the P tile times
     the V-pairs tile (16 pairs of keys x 16 value dims: the `_pair_v` layout), stored to a
     float block, scaled by 1 / row sum and stored (valid rows, valid columns only).
Keys are padded to a multiple of 32 and head dims to whole tiles of pairs: the padding of
Kt and V pairs is zeroed once per call, and padded keys' scores are -inf, so their
probabilities are 0. The tile configuration is loaded once per worker and released at its
end (`amx.load_config` / `amx.release`).
"""
from __future__ import annotations

import llvmlite.ir as ir

from . import amx as AMX
from .attention import PARAMS, _Gen
from .irutil import F32, F32P, I8, I8P, I16, I64, VOID, broadcast, counted_loop, declare, entry_alloca, fconst, \
    i64, load_vec, new_function, store_vec, to_bf16

TILE = AMX.TILE_ROWS  # 16: query rows per unit, keys and value dims per C tile
PAIR_ROWS = AMX.TILE_SLOTS  # 16 pairs (32 bfloat16) of k per tile row


def _padded(n: int, to: int) -> int:
    return -(-n // to) * to


def _layout(p) -> dict:
    """Padded sizes: keys (tp, a multiple of 32), head-dim pair rows of Kt, the converted Q
    row (bfloat16 values), V pair rows' width (value dims in whole tiles)."""
    tp = _padded(p.seq_kv, 2 * PAIR_ROWS)
    return {"tp": tp, "kt_rows": _padded(-(-p.head_dim // 2), PAIR_ROWS), "q_row": _padded(p.head_dim, 2 * PAIR_ROWS),
            "dvp": _padded(p.v_head_dim, TILE)}


def amx_scratch_bytes(p) -> int:
    s = _layout(p)
    tp, dvp = s["tp"], s["dvp"]
    return (4 * (s["kt_rows"] * tp + TILE * tp + tp // 2 * dvp + TILE * dvp + TILE)
            + 2 * TILE * (s["q_row"] + tp))


class AmxGen(_Gen):
    def __init__(self, module: ir.Module, name: str, p, lanes: int):
        super().__init__(module, name, p, lanes)
        layout = _layout(p)
        self.tp, self.kt_rows, self.q_row, self.dvp = layout["tp"], layout["kt_rows"], layout["q_row"], layout["dvp"]
        self.rows = TILE
        self.blocks = -(-p.seq_q // TILE)

    def worker(self) -> ir.Function:
        fn, b = new_function(self.module, f"{self.name}.worker",
                             [(n, F32P) for n in PARAMS] + [("tid", I64), ("nt", I64)])
        A = {a.name: a for a in fn.args}

        def scratch(ty, count, name):
            block = entry_alloca(b, ir.ArrayType(ty, count), name)
            block.align = 64
            return block

        kt_block = scratch(F32, self.kt_rows * self.tp, "kt")
        vp_block = scratch(F32, self.tp // 2 * self.dvp, "vpairs")
        kt, self.vp = b.bitcast(kt_block, F32P), b.bitcast(vp_block, F32P)
        sc = b.bitcast(scratch(F32, TILE * self.tp, "scores"), F32P)
        self.osc = b.bitcast(scratch(F32, TILE * self.dvp, "out"), F32P)
        inv = scratch(F32, TILE, "inv")
        self.qp = b.bitcast(scratch(I16, TILE * self.q_row, "qrows"), I16.as_pointer())
        self.pp = b.bitcast(scratch(I16, TILE * self.tp, "prows"), I16.as_pointer())
        memset = declare(self.module, "llvm.memset.p0.i64", VOID, [I8P, I8, I64, ir.IntType(1)])
        for block, count in ((kt_block, self.kt_rows * self.tp), (vp_block, self.tp // 2 * self.dvp)):
            # the padding (keys past T, head dims past D, key pairs past T/2) multiplies as zeros
            b.call(memset, [b.bitcast(block, I8P), ir.Constant(I8, 0), i64(4 * count), ir.Constant(ir.IntType(1), 0)])
        AMX.load_config(b)

        def new_head(bi, hk):
            self._pair_k(b, A, kt, bi, hk)
            self._pair_v(b, A, bi, hk)

        def unit(bi, h, hk, i0, rows):
            self._q_rows(b, A, bi, h, rows)
            # scores: Q rows (32 head dims a k step) times Kt's pair rows, per 16 keys
            self._tile_product(b, self.qp, self.q_row, kt, self.tp, self.tp // TILE, self.kt_rows // PAIR_ROWS,
                               sc, self.tp)
            self._scale_and_mask(b, A, sc, bi, h, rows)
            self._softmax(b, sc, inv)
            self._pair_probabilities(b, sc)
            # output: P rows (32 keys a k step) times V's pair rows, per 16 value dims
            self._tile_product(b, self.pp, self.tp, self.vp, self.dvp, self.dvp // TILE, self.tp // (2 * PAIR_ROWS),
                               self.osc, self.dvp)
            self._store_rows(b, A, inv, bi, h, i0, rows)

        self._units(b, A, new_head, unit)
        AMX.release(b)
        b.ret_void()
        return fn

    def _q_rows(self, b, A, bi, h, rows):
        """The unit's Q rows as bfloat16, zero past the head dim (whole tile rows)."""
        p, L = self.p, self.L
        sb, sh, ss = p.strides(p.q_heads, p.seq_q, p.head_dim)
        v16 = ir.VectorType(I16, L).as_pointer()
        for r, i in enumerate(rows):
            row = b.gep(A["q"], [b.add(b.add(b.mul(bi, i64(sb)), b.mul(h, i64(sh))), b.mul(i, i64(ss)))])
            for d0 in range(0, self.q_row, L):
                n = max(0, min(L, p.head_dim - d0))
                bits = to_bf16(b, load_vec(b, b.gep(row, [i64(d0)]), L, n)) if n else ir.Constant(ir.VectorType(I16, L),
                                                                                                  [0] * L)
                b.store(bits, b.bitcast(b.gep(self.qp, [i64(r * self.q_row + d0)]), v16), align=2)

    def _tile_product(self, b, a, a_row: int, bmat, b_row: int, tiles: int, k_steps: int, out, out_row: int):
        """out[16 rows, 16 t .. 16 t + 15] = A . B for each column tile t, four C tiles at
        a time. A: bfloat16 rows `a_row` values apart, 32 values a k step; B: rows of pair
        slots `b_row` apart, 16 pair rows a k step; out: float rows `out_row` apart."""
        for first in range(0, tiles, len(AMX.C_TILES)):
            group = range(first, min(tiles, first + len(AMX.C_TILES)))
            for t in range(len(group)):
                AMX.zero(b, AMX.C_TILES[t])

            def k_step(ks, group=group):
                AMX.load(b, AMX.A_TILES[0], b.gep(a, [b.mul(ks, i64(2 * PAIR_ROWS))]), a_row * 2)
                for t, col in enumerate(group):
                    at = b.add(b.mul(ks, i64(PAIR_ROWS * b_row)), i64(col * TILE))
                    tile = AMX.B_TILES[t % 2]
                    AMX.load(b, tile, b.gep(bmat, [at]), b_row * 4)
                    AMX.dot(b, AMX.C_TILES[t], AMX.A_TILES[0], tile, False)
            counted_loop(b, i64(0), i64(k_steps), k_step, name="ks")
            for t, col in enumerate(group):
                AMX.store(b, AMX.C_TILES[t], b.gep(out, [i64(col * TILE)]), out_row * 4)

    def _scale_and_mask(self, b, A, sc, bi, h, rows):
        """Scores times the scale, plus the mask; -inf past the keys and outside the causal band."""
        p, L = self.p, self.L
        iota = ir.Constant(ir.VectorType(I64, L), list(range(L)))
        keys = ir.Constant(ir.VectorType(I64, L), [p.seq_kv] * L)
        minus_inf = fconst(float("-inf"), L)
        for r, i in enumerate(rows):
            def chunk(j0, r=r, i=i):
                at = b.gep(sc, [b.add(i64(r * self.tp), j0)])
                s = b.fmul(load_vec(b, at, L), fconst(p.scale, L))
                if p.mask_strides is not None:
                    # keys past T read no mask (a per-key mask has T a multiple of 16: `supported`)
                    inside = b.icmp_signed("<", j0, i64(p.seq_kv))
                    with b.if_then(inside):
                        b.store(b.fadd(s, self._mask(b, A, bi, h, i, j0)), b.bitcast(at, s.type.as_pointer()))
                    s = load_vec(b, at, L)
                jv = b.add(broadcast(b, j0, L), iota)
                allowed = b.icmp_signed("<", jv, keys)
                if p.causal:
                    allowed = b.and_(allowed, b.icmp_signed("<=", jv, broadcast(b, i, L)))
                store_vec(b, b.select(allowed, s, minus_inf), at, L)
            counted_loop(b, 0, self.tp, chunk, step=L, name="sm")

    def _store_rows(self, b, A, inv, bi, h, i0, rows):
        """Y rows = the output block's rows / row sum (valid rows and value dims only)."""
        p, L = self.p, self.L
        yb, yh, ys = p.strides(p.q_heads, p.seq_q, p.v_head_dim)
        for r in range(TILE):
            with b.if_then(b.icmp_signed("<", b.add(i0, i64(r)), i64(p.seq_q))):
                scale = broadcast(b, b.load(b.gep(inv, [i64(0), i64(r)])), L)
                yrow = b.add(b.add(b.mul(bi, i64(yb)), b.mul(h, i64(yh))), b.mul(rows[r], i64(ys)))
                for c0 in range(0, p.v_head_dim, L):
                    value = b.fmul(load_vec(b, b.gep(self.osc, [i64(r * self.dvp + c0)]), L), scale)
                    store_vec(b, value, b.gep(A["y"], [b.add(yrow, i64(c0))]), L, min(L, p.v_head_dim - c0))
