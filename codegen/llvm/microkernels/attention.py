"""Fused fp32 scaled dot-product attention, generated with llvmlite.ir:

    Y[b, h, i, :] = softmax_j(scale * Q[b, h, i, :] . K[b, hk, j, :] + mask[b, h, i, j]) @ V[b, hk, :, :]

One task unit is a block of `ROWS` query rows of one (batch, head). Its scores live only
in a per-thread scratch of ROWS x T floats (L1-resident for the sequence lengths this
path accepts), never in a [B, H, S, T] tensor: the loop-IR rule (`lowering/attention.py`)
writes the whole score and exp matrices to the arena, which this kernel replaces.

Per unit:
  1. scores: a register tile of ROWS rows x `nvs` key vectors accumulates Q[i, d] (broadcast)
     times Kt[d, j..j+L) over d. Kt is K of the unit's head transposed into per-thread
     scratch once per head a task visits, so keys are the contiguous vector dimension;
     then scale, the additive mask (a vector load, or a broadcast when the mask does not
     vary over keys) and the causal band (-inf for j > i), stored to the score scratch;
  2. softmax per row: max, exp(s - max) in place (our vector exp polynomial), sum, 1/sum
     (0 for a row whose keys are all masked: it outputs zeros, as the loop-IR rule does);
  3. output: a tile of ROWS rows x up to `nvo` value vectors accumulates P[i, j] (broadcast)
     times V[j, c..c+L) over j, scaled by 1/sum and stored (masked past Dv).
Edge rows (S not a multiple of ROWS) compute a clamped duplicate row and store only the
valid ones. Units are split evenly over the thread pool's tasks.

Operands are 4-D (B, H, S, D) or packed 3-D (B, S, H*D) with the heads named by
q_num_heads/kv_num_heads; grouped-query heads share K/V (hk = h / (Hq / Hkv)).

bf16 (`AttentionProblem.bf16`, the precision pass's compute=bfloat16): the same steps on
`vdpbf16ps`, two k per 32-bit slot. Kt holds bfloat16 pairs of head dims (slot (d/2, j) =
K[j, d], K[j, d+1]) and a second per-head scratch holds V in pairs of keys (slot (j/2, c) =
V[j, c], V[j+1, c]); each unit converts its Q rows to pairs of head dims, and after the
softmax its exp rows to pairs of keys. Scores, softmax, sums and the final scaling stay
float32: the probabilities are rounded unnormalized, as the reference (`ir.ops.attention`)
does.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from ....ir.errors import CompilerError
from ..vector_math import vexp
from .gemm import entry_point
from .irutil import F32, F32P, I16, I32, I64, broadcast, counted_loop, declare, dot_bf16, entry_alloca, fconst, fma, \
    i64, imin, load_vec, new_function, store_vec, to_bf16, vec_type

PARAMS = ("q", "k", "v", "mask", "y")  # the entry point's pointer arguments
ROWS = 4  # query rows per register tile (4 x 4 vectors = 16 accumulators on AVX-512, 4 x 2 on AVX2)
SCRATCH_LIMIT = 256 << 10  # bytes of per-thread scratch (Kt + scores); longer sequences use the loop-IR rule


@dataclass(frozen=True)
class AttentionProblem:
    batch: int
    q_heads: int
    kv_heads: int
    seq_q: int
    seq_kv: int
    head_dim: int
    v_head_dim: int
    packed: bool  # (B, S, H*D) operands, else (B, H, S, D)
    scale: float
    causal: bool = False
    mask_strides: tuple[int, int, int, int] | None = None  # float offsets per (b, h, i, j); None: no mask
    bf16: bool = False  # Q.K^T and P.V on bfloat16 pairs (`vdpbf16ps`, AVX512-BF16); see `_Gen` below
    amx: bool = False  # bf16 on AMX tiles (`attention_amx`): 16-row units, both products as tile products

    def __post_init__(self):
        if self.q_heads % self.kv_heads:
            raise CompilerError(f"attention: kv_heads={self.kv_heads} must divide q_heads={self.q_heads}")
        if self.mask_strides is not None and self.mask_strides[3] not in (0, 1):
            raise CompilerError("attention: the mask must be contiguous over keys or constant along them")

    def strides(self, heads: int, seq: int, dim: int) -> tuple[int, int, int]:
        """Float offsets of (batch, head, position) in an operand with `heads` heads of `dim`."""
        if self.packed:
            return seq * heads * dim, dim, heads * dim
        return heads * seq * dim, seq * dim, dim

    @property
    def flops(self) -> int:
        per_head = 2 * self.seq_q * self.seq_kv * (self.head_dim + self.v_head_dim)
        return self.batch * self.q_heads * per_head


def scratch_bytes(p: AttentionProblem, lanes: int) -> int:
    if p.amx:
        from .attention_amx import amx_scratch_bytes

        return amx_scratch_bytes(p)
    tp = -(-p.seq_kv // lanes) * lanes
    if not p.bf16:
        return 4 * tp * (p.head_dim + ROWS)
    # Kt and V in 32-bit slots of bfloat16 pairs, the float scores, the Q and P pair rows
    dvp = -(-p.v_head_dim // lanes) * lanes
    return 4 * (tp * -(-p.head_dim // 2) + tp // 2 * dvp + ROWS * tp) + 2 * ROWS * (_q_row(p, lanes) + tp)


def _q_row(p: AttentionProblem, lanes: int) -> int:
    """bfloat16 values in one converted Q row: the head dim in whole vectors."""
    return -(-p.head_dim // lanes) * lanes


def supported(p: AttentionProblem, lanes: int) -> str | None:
    """None when the kernel handles `p` on this vector width, else why not."""
    if p.amx and not p.bf16:
        return "amx=True is for bfloat16 attention"
    if p.bf16 and lanes != 16:
        return "bfloat16 attention needs 16-lane vectors (AVX-512)"
    if scratch_bytes(p, lanes) > SCRATCH_LIMIT:
        return f"scratch of {scratch_bytes(p, lanes)} bytes exceeds {SCRATCH_LIMIT}"
    if p.mask_strides is not None and p.mask_strides[3] == 1 and p.seq_kv % lanes:
        return f"a per-key mask needs the key count ({p.seq_kv}) to be a multiple of {lanes}"
    return None


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if n % d == 0)


class _Gen:
    def __init__(self, module: ir.Module, name: str, p: AttentionProblem, lanes: int):
        self.module, self.name, self.p, self.L = module, name, p, lanes
        self.tp = -(-p.seq_kv // lanes) * lanes  # keys padded to whole vectors
        self.nvec = self.tp // lanes
        wide = 4 if lanes == 16 else 2  # accumulator vectors per row (ROWS x wide fits the registers)
        self.nvs = _largest_divisor(self.nvec, wide)
        self.nvo = min(wide, -(-p.v_head_dim // lanes))
        self.rows = ROWS  # query rows per unit
        self.blocks = -(-p.seq_q // ROWS)
        self.kt_rows = -(-p.head_dim // 2) if p.bf16 else p.head_dim  # rows of Kt: head dims (bf16: their pairs)
        self.dvp = -(-p.v_head_dim // lanes) * lanes  # a V pair row: the value dims in whole vectors

    def worker(self) -> ir.Function:
        p = self.p
        fn, b = new_function(self.module, f"{self.name}.worker",
                             [(n, F32P) for n in PARAMS] + [("tid", I64), ("nt", I64)])
        A = {a.name: a for a in fn.args}
        kt = b.bitcast(entry_alloca(b, ir.ArrayType(F32, self.kt_rows * self.tp), "kt"), F32P)
        sc = b.bitcast(entry_alloca(b, ir.ArrayType(F32, ROWS * self.tp), "scores"), F32P)
        inv = entry_alloca(b, ir.ArrayType(F32, ROWS), "inv")
        if p.bf16:  # V in pairs of keys; Q rows and exp rows as bfloat16
            self.vp = b.bitcast(entry_alloca(b, ir.ArrayType(F32, self.tp // 2 * self.dvp), "vpairs"), F32P)
            self.qp = b.bitcast(entry_alloca(b, ir.ArrayType(I16, ROWS * _q_row(p, self.L)), "qpairs"), I16.as_pointer())
            self.pp = b.bitcast(entry_alloca(b, ir.ArrayType(I16, ROWS * self.tp), "ppairs"), I16.as_pointer())
        if self.tp > p.seq_kv:  # padded keys of Kt are zero (their scores are set to -inf anyway)
            def zero_pad(d):
                counted_loop(b, p.seq_kv, self.tp, lambda j: b.store(ir.Constant(F32, 0.0),
                                                                       b.gep(kt, [b.add(b.mul(d, i64(self.tp)), j)])),
                             name="pad")
            counted_loop(b, 0, self.kt_rows, zero_pad, name="padd")
        def new_head(bi, hk):
            if p.bf16:
                self._pair_k(b, A, kt, bi, hk)
                self._pair_v(b, A, bi, hk)
            else:
                self._transpose_k(b, A, kt, bi, hk)

        def unit(bi, h, hk, i0, rows):
            self._scores(b, A, kt, sc, bi, h, rows)
            self._softmax(b, sc, inv)
            if p.bf16:
                self._pair_probabilities(b, sc)
            self._output(b, A, sc, inv, bi, h, hk, i0, rows)

        self._units(b, A, new_head, unit)
        b.ret_void()
        return fn

    def _units(self, b, A, new_head, unit) -> None:
        """This task's share of the (batch, head, row block) units: `new_head(bi, hk)` where
        a unit starts a head (or the task), then `unit(bi, h, hk, i0, rows)` with the block's
        first row and its `self.rows` row indices (past the last query: the last, again)."""
        p = self.p
        units = p.batch * p.q_heads * self.blocks
        lo = b.udiv(b.mul(A["tid"], i64(units)), A["nt"])
        hi = b.udiv(b.mul(b.add(A["tid"], i64(1)), i64(units)), A["nt"])

        def each(u):
            bh, blk = b.udiv(u, i64(self.blocks)), b.urem(u, i64(self.blocks))
            bi, h = b.udiv(bh, i64(p.q_heads)), b.urem(bh, i64(p.q_heads))
            hk = b.udiv(h, i64(p.q_heads // p.kv_heads))
            with b.if_then(b.or_(b.icmp_signed("==", u, lo), b.icmp_signed("==", blk, i64(0)))):
                new_head(bi, hk)
            i0 = b.mul(blk, i64(self.rows))
            unit(bi, h, hk, i0, [imin(b, b.add(i0, i64(r)), i64(p.seq_q - 1)) for r in range(self.rows)])

        counted_loop(b, lo, hi, each, name="unit")

    def _transpose_k(self, b, A, kt, bi, hk):
        p = self.p
        sb, sh, ss = p.strides(p.kv_heads, p.seq_kv, p.head_dim)
        base = b.add(b.mul(bi, i64(sb)), b.mul(hk, i64(sh)))

        def key(j):
            row = b.gep(A["k"], [b.add(base, b.mul(j, i64(ss)))])
            for d in range(p.head_dim):  # head dims are small and static: unrolled
                b.store(b.load(b.gep(row, [i64(d)])), b.gep(kt, [b.add(i64(d * self.tp), j)]))

        counted_loop(b, 0, p.seq_kv, key, name="kt")

    def _pair_k(self, b, A, kt, bi, hk):
        """bf16 Kt: slot (d/2, j) holds K[j, d] and K[j, d+1] as bfloat16 (an odd head dim
        pairs its last with zero), each key row converted a vector at a time."""
        p, L = self.p, self.L
        sb, sh, ss = p.strides(p.kv_heads, p.seq_kv, p.head_dim)
        base = b.add(b.mul(bi, i64(sb)), b.mul(hk, i64(sh)))
        slots = b.bitcast(kt, I32.as_pointer())
        half = ir.VectorType(I32, L // 2)

        def key(j):
            row = b.gep(A["k"], [b.add(base, b.mul(j, i64(ss)))])
            for d0 in range(0, p.head_dim, L):
                n = min(L, p.head_dim - d0)
                pairs = b.bitcast(to_bf16(b, load_vec(b, b.gep(row, [i64(d0)]), L, n)), half)
                for t in range(-(-n // 2)):  # head dims are small and static: unrolled
                    b.store(b.extract_element(pairs, ir.Constant(I32, t)),
                            b.gep(slots, [b.add(i64((d0 // 2 + t) * self.tp), j)]))

        counted_loop(b, 0, p.seq_kv, key, name="kt")

    def _pair_v(self, b, A, bi, hk):
        """bf16 V pairs: slot (j/2, c) holds V[j, c] and V[j+1, c] as bfloat16 (an odd key
        count pairs its last key with zero), value dims padded to whole vectors with zeros."""
        p, L = self.p, self.L
        vb, vh, vs = p.strides(p.kv_heads, p.seq_kv, p.v_head_dim)
        vbase = b.gep(A["v"], [b.add(b.mul(bi, i64(vb)), b.mul(hk, i64(vh)))])
        wide = ir.VectorType(I16, 2 * L)
        interleave = ir.Constant(ir.VectorType(I32, 2 * L), [x for t in range(L) for x in (t, L + t)])

        def pair(jp, last_alone=False):
            j0 = b.mul(jp, i64(2))
            for c in range(0, self.dvp, L):
                n = min(L, p.v_head_dim - c)
                first = to_bf16(b, load_vec(b, b.gep(vbase, [b.add(b.mul(j0, i64(vs)), i64(c))]), L, n))
                if last_alone:
                    second = ir.Constant(first.type, [0] * L)
                else:
                    second = to_bf16(b, load_vec(b, b.gep(vbase, [b.add(b.mul(b.add(j0, i64(1)), i64(vs)), i64(c))]),
                                                 L, n))
                both = b.shuffle_vector(first, second, interleave)
                at = b.gep(self.vp, [b.add(b.mul(jp, i64(self.dvp)), i64(c))])
                b.store(both, b.bitcast(at, wide.as_pointer()), align=4)

        counted_loop(b, 0, p.seq_kv // 2, pair, name="vp")
        if p.seq_kv % 2:
            pair(i64(p.seq_kv // 2), last_alone=True)

    def _pair_probabilities(self, b, sc):
        """bf16: each row's exp values (unnormalized) as bfloat16, read back as pairs of keys."""
        L = self.L
        for r in range(self.rows):
            def convert(j, r=r):
                bits = to_bf16(b, load_vec(b, b.gep(sc, [b.add(i64(r * self.tp), j)]), L))
                b.store(bits, b.bitcast(b.gep(self.pp, [b.add(i64(r * self.tp), j)]),
                                        ir.VectorType(I16, L).as_pointer()), align=2)
            counted_loop(b, 0, self.tp, convert, step=L, name="pp")

    def _scores(self, b, A, kt, sc, bi, h, rows):
        p, L, nvs = self.p, self.L, self.nvs
        sb, sh, ss = p.strides(p.q_heads, p.seq_q, p.head_dim)
        qrow = [b.gep(A["q"], [b.add(b.add(b.mul(bi, i64(sb)), b.mul(h, i64(sh))), b.mul(i, i64(ss)))]) for i in rows]
        iota = ir.Constant(ir.VectorType(I64, L), list(range(L)))
        keys = ir.Constant(ir.VectorType(I64, L), [p.seq_kv] * L)
        if p.bf16:  # the rows' Q as bfloat16, read back as pairs of head dims (32-bit slots)
            qr = _q_row(p, L)
            for r in range(ROWS):
                for d0 in range(0, p.head_dim, L):
                    vec = load_vec(b, b.gep(qrow[r], [i64(d0)]), L, min(L, p.head_dim - d0))
                    b.store(to_bf16(b, vec), b.bitcast(b.gep(self.qp, [i64(r * qr + d0)]),
                                                       ir.VectorType(I16, L).as_pointer()), align=2)
            qslots = b.bitcast(self.qp, F32P)

        def chunk(jc):
            acc = [[entry_alloca(b, vec_type(L), f"s{r}_{v}") for v in range(nvs)] for r in range(ROWS)]
            for r in range(ROWS):
                for v in range(nvs):
                    b.store(fconst(0.0, L), acc[r][v])

            def dim(d):  # one head dim (bf16: one pair of them)
                kv = [load_vec(b, b.gep(kt, [b.add(b.mul(d, i64(self.tp)), b.add(jc, i64(v * L)))]), L)
                      for v in range(nvs)]
                for r in range(ROWS):
                    if p.bf16:
                        qv = broadcast(b, b.load(b.gep(qslots, [b.add(i64(r * _q_row(p, L) // 2), d)])), L)
                        for v in range(nvs):
                            b.store(dot_bf16(b, b.load(acc[r][v]), qv, kv[v]), acc[r][v])
                        continue
                    qv = broadcast(b, b.load(b.gep(qrow[r], [d])), L)
                    for v in range(nvs):
                        b.store(fma(b, qv, kv[v], b.load(acc[r][v])), acc[r][v])

            counted_loop(b, 0, self.kt_rows, dim, name="d")
            minus_inf = fconst(float("-inf"), L)
            for r in range(ROWS):
                for v in range(nvs):
                    j0 = b.add(jc, i64(v * L))
                    s = b.fmul(b.load(acc[r][v]), fconst(p.scale, L))
                    if p.mask_strides is not None:
                        s = b.fadd(s, self._mask(b, A, bi, h, rows[r], j0))
                    jv = b.add(broadcast(b, j0, L), iota)
                    allowed = b.icmp_signed("<", jv, keys)
                    if p.causal:
                        allowed = b.and_(allowed, b.icmp_signed("<=", jv, broadcast(b, rows[r], L)))
                    s = b.select(allowed, s, minus_inf)
                    store_vec(b, s, b.gep(sc, [b.add(i64(r * self.tp), j0)]), L)

        counted_loop(b, 0, self.tp, chunk, step=nvs * L, name="jc")

    def _mask(self, b, A, bi, h, i, j0):
        sb, sh, si, sj = self.p.mask_strides
        at = b.add(b.add(b.mul(bi, i64(sb)), b.mul(h, i64(sh))), b.mul(i, i64(si)))
        if sj == 0:
            return broadcast(b, b.load(b.gep(A["mask"], [at])), self.L)
        return load_vec(b, b.gep(A["mask"], [b.add(at, j0)]), self.L)

    def _softmax(self, b, sc, inv):
        L = self.L
        vty = vec_type(L)
        vmax = declare(self.module, f"llvm.vector.reduce.fmax.v{L}f32", F32, [vty])
        vadd = declare(self.module, f"llvm.vector.reduce.fadd.v{L}f32", F32, [F32, vty])
        fmax = declare(self.module, f"llvm.maxnum.v{L}f32", vty, [vty, vty])
        for r in range(self.rows):
            row = b.gep(sc, [i64(r * self.tp)])
            top = entry_alloca(b, vty, f"max{r}")
            b.store(fconst(float("-inf"), L), top)
            counted_loop(b, 0, self.tp, lambda j: b.store(b.call(fmax, [b.load(top), load_vec(b, b.gep(row, [j]), L)]),
                                                          top), step=L, name="mx")
            m = b.call(vmax, [b.load(top)])
            m = b.select(b.fcmp_ordered("==", m, ir.Constant(F32, float("-inf"))), ir.Constant(F32, 0.0), m)
            mv = broadcast(b, m, L)
            total = entry_alloca(b, vty, f"sum{r}")
            b.store(fconst(0.0, L), total)

            def expo(j):
                e = vexp(b, b.fsub(load_vec(b, b.gep(row, [j]), L), mv), L)
                store_vec(b, e, b.gep(row, [j]), L)
                b.store(b.fadd(b.load(total), e), total)

            counted_loop(b, 0, self.tp, expo, step=L, name="ex")
            s = b.call(vadd, [ir.Constant(F32, 0.0), b.load(total)])
            zero = b.fcmp_ordered("==", s, ir.Constant(F32, 0.0))
            recip = b.fdiv(ir.Constant(F32, 1.0), b.select(zero, ir.Constant(F32, 1.0), s))
            b.store(b.select(zero, ir.Constant(F32, 0.0), recip), b.gep(inv, [i64(0), i64(r)]))

    def _output(self, b, A, sc, inv, bi, h, hk, i0, rows):
        p, L = self.p, self.L
        vb, vh, vs = p.strides(p.kv_heads, p.seq_kv, p.v_head_dim)
        yb, yh, ys = p.strides(p.q_heads, p.seq_q, p.v_head_dim)
        vbase = b.gep(A["v"], [b.add(b.mul(bi, i64(vb)), b.mul(hk, i64(vh)))])
        nv_total = -(-p.v_head_dim // L)
        for c0 in range(0, nv_total, self.nvo):  # value vectors in groups (Dv is static)
            nv = min(self.nvo, nv_total - c0)
            active = [min(L, p.v_head_dim - (c0 + v) * L) for v in range(nv)]
            acc = [[entry_alloca(b, vec_type(L), f"o{r}_{v}") for v in range(nv)] for r in range(ROWS)]
            for r in range(ROWS):
                for v in range(nv):
                    b.store(fconst(0.0, L), acc[r][v])

            def key(j):
                vrow = b.gep(vbase, [b.mul(j, i64(vs))])
                vv = [load_vec(b, b.gep(vrow, [i64((c0 + v) * L)]), L, active[v]) for v in range(nv)]
                for r in range(ROWS):
                    pr = broadcast(b, b.load(b.gep(sc, [b.add(i64(r * self.tp), j)])), L)
                    for v in range(nv):
                        b.store(fma(b, pr, vv[v], b.load(acc[r][v])), acc[r][v])

            def key_pair(jp):  # bf16: keys 2jp and 2jp+1 in one slot of P and of the V pairs
                vv = [load_vec(b, b.gep(self.vp, [b.add(b.mul(jp, i64(self.dvp)), i64((c0 + v) * L))]), L)
                      for v in range(nv)]
                pslots = b.bitcast(self.pp, F32P)
                for r in range(ROWS):
                    pr = broadcast(b, b.load(b.gep(pslots, [b.add(i64(r * self.tp // 2), jp)])), L)
                    for v in range(nv):
                        b.store(dot_bf16(b, b.load(acc[r][v]), pr, vv[v]), acc[r][v])

            if p.bf16:
                counted_loop(b, 0, -(-p.seq_kv // 2), key_pair, name="jp")
            else:
                counted_loop(b, 0, p.seq_kv, key, name="j")
            for r in range(ROWS):
                with b.if_then(b.icmp_signed("<", b.add(i0, i64(r)), i64(p.seq_q))):
                    scale = broadcast(b, b.load(b.gep(inv, [i64(0), i64(r)])), L)
                    yrow = b.add(b.add(b.mul(bi, i64(yb)), b.mul(h, i64(yh))), b.mul(rows[r], i64(ys)))
                    for v in range(nv):
                        store_vec(b, b.fmul(b.load(acc[r][v]), scale),
                                  b.gep(A["y"], [b.add(yrow, i64((c0 + v) * L))]), L, active[v])


def emit_attention(module: ir.Module, name: str, problem: AttentionProblem, lanes: int) -> ir.Function:
    """Add attention `name` to `module`: `void name(float *q, float *k, float *v, float *mask,
    float *y, int nthreads)` (mask may be NULL when the problem has none)."""
    why = supported(problem, lanes)
    if why is not None:
        raise CompilerError(f"attention {name}: {why}")
    if problem.amx:
        from .attention_amx import AmxGen

        gen = AmxGen(module, name, problem, lanes)
    else:
        gen = _Gen(module, name, problem, lanes)
    return entry_point(module, name, gen.worker(), problem.flops < (1 << 20), PARAMS)

