"""Matrix products of float16 / bfloat16 tensors on tensor cores: a loop-IR template (one
launch) built around `mma.sync.m16n8k16`, registered as the cuda target's extern lowering
of MatMul (`OpDef.extern_lowering("cuda")`).

    Y[b, M, N] = A[b, M, K] @ B[b, K, N]     (B may be one [K, N] matrix for every batch;
                                             A's leading dims are then rows)
Blocks of 128 threads (4 warps, 2 x 2) own a 64 x 64 tile of Y. Per step of 16 along K,
the block stages A's 64 x 16 and B's 16 x 64 tiles in shared memory (zero past the edges),
a barrier, then each warp loads its fragments from shared memory by PTX's layout tables
(`codegen.cuda.mma`) and runs 2 x 4 instructions into float32 accumulators; a second
barrier before the tiles are overwritten. The accumulators are rounded to Y's type at the
end, under the edges' guards. The emulator checks it like any launch (barriers, races,
fragments), and NVRTC compiles it for every architecture.

Not yet here (the closing note of the CUDA issue lists them): ldmatrix, cp.async
double-buffering, swizzled shared tiles and fused epilogues.
"""
from __future__ import annotations

import math

from ...ir import dtypes
from ...ir.ops import get_op
from .. import loop_ir as L
from ..extern import ExternLoopKernel, ExternPlan
from .mma import A_OFFSETS, B_OFFSETS, C_OFFSETS

BM, BN, BK = 64, 64, 16
WARPS_M, WARPS_N = 2, 2
THREADS = 32 * WARPS_M * WARPS_N
WM, WN = BM // WARPS_M, BN // WARPS_N  # one warp's tile: 32 x 32
MI, NI = WM // 16, WN // 8  # instructions per warp tile: 2 x 4


def gemm_kernel(name: str, batches: int, m: int, n: int, k: int, dtype, a_batched: bool, b_batched: bool):
    """The template's kernel: params (A, B, Y)."""
    a = L.Buffer("A", dtype, max(1, (batches if a_batched else 1) * m * k))
    b = L.Buffer("B", dtype, max(1, (batches if b_batched else 1) * k * n))
    y = L.Buffer("Y", dtype, max(1, batches * m * n))
    tiles_m, tiles_n = -(-m // BM), -(-n // BN)
    a_tile = L.Buffer("a_tile", dtype, BM * BK, "shared")
    b_tile = L.Buffer("b_tile", dtype, BK * BN, "shared")
    blk, t = L.var("blk"), L.var("t")
    f32 = dtypes.float32
    lt, and_ = (lambda x, y_: L.binary("lt", x, y_)), (lambda x, y_: L.binary("and", x, y_))

    batch = L.div(blk, tiles_m * tiles_n)
    row0 = L.mul(L.mod(L.div(blk, tiles_n), tiles_m), BM)
    col0 = L.mul(L.mod(blk, tiles_n), BN)
    warp, lane = L.div(t, 32), L.mod(t, 32)
    wrow, wcol = L.mul(L.div(warp, WARPS_N), WM), L.mul(L.mod(warp, WARPS_N), WN)
    g, t2 = L.div(lane, 4), L.mul(L.mod(lane, 4), 2)
    a_base = L.mul(batch, m * k) if a_batched else L.const(0)
    b_base = L.mul(batch, k * n) if b_batched else L.const(0)

    acc = {(i, j): L.Buffer(f"acc{i}_{j}", f32, 4, "local") for i in range(MI) for j in range(NI)}
    af = [L.Buffer(f"af{i}", dtype, 8, "local") for i in range(MI)]
    bf = [L.Buffer(f"bf{j}", dtype, 4, "local") for j in range(NI)]
    zero = L.const(0.0, dtype)

    kt = L.var("kt")
    stage = []
    for e in range(BM * BK // THREADS):  # each thread stages 8 elements of A's tile and 8 of B's
        at = L.add(t, e * THREADS)
        r, c = L.add(row0, L.div(at, BK)), L.add(L.mul(kt, BK), L.mod(at, BK))
        stage.append(L.Store(a_tile, at, L.Load(dtype, a, L.add(a_base, L.add(L.mul(r, k), c)),
                                                and_(lt(r, L.const(m)), lt(c, L.const(k))), zero)))
        rk, cn = L.add(L.mul(kt, BK), L.div(at, BN)), L.add(col0, L.mod(at, BN))
        stage.append(L.Store(b_tile, at, L.Load(dtype, b, L.add(b_base, L.add(L.mul(rk, n), cn)),
                                                and_(lt(rk, L.const(k)), lt(cn, L.const(n))), zero)))
    frags = []
    for i in range(MI):
        for q, (dr, dc) in enumerate(A_OFFSETS):
            row = L.add(L.add(wrow, i * 16 + dr), g)
            frags.append(L.Store(af[i], L.const(q), L.Load(dtype, a_tile, L.add(L.mul(row, BK), L.add(t2, dc)))))
    for j in range(NI):
        for q, (dk, dn) in enumerate(B_OFFSETS):
            col = L.add(L.add(wcol, j * 8 + dn), g)
            frags.append(L.Store(bf[j], L.const(q), L.Load(dtype, b_tile, L.add(L.mul(L.add(t2, dk), BN), col))))
    mmas = [L.Mma("m16n8k16", acc[i, j], af[i], bf[j], acc[i, j]) for i in range(MI) for j in range(NI)]
    k_loop = L.For(kt, L.const(-(-k // BK)), L.LoopKind.SERIAL,
                   L.seq(*stage, L.Barrier(), *frags, *mmas, L.Barrier()))

    init = [L.Store(buf, L.const(q), L.const(0.0, f32)) for buf in acc.values() for q in range(4)]
    out = []
    for (i, j), buf in acc.items():
        for q, (dr, dc) in enumerate(C_OFFSETS):
            row = L.add(row0, L.add(L.add(wrow, i * 16 + dr), g))
            col = L.add(col0, L.add(L.add(wcol, j * 8 + dc), t2))
            out.append(L.IfThenElse(and_(lt(row, L.const(m)), lt(col, L.const(n))),
                                    L.Store(y, L.add(L.mul(batch, m * n), L.add(L.mul(row, n), col)),
                                            L.cast(L.Load(f32, buf, L.const(q)), dtype))))
    body: L.Stmt = L.seq(*init, k_loop, *out)
    for buf in [*acc.values(), *af, *bf]:
        body = L.Allocate(buf, body)
    launch = L.For(blk, L.const(batches * tiles_m * tiles_n), L.LoopKind.GPU_BLOCK,
                   L.Allocate(a_tile, L.Allocate(b_tile, L.For(t, L.const(THREADS), L.LoopKind.GPU_THREAD, body))))
    return ExternLoopKernel(name, (a, b, y), launch, "matmul")


def lower_matmul(node, consts, target, schedules) -> ExternPlan | None:
    """MatMul of two float16 (or two bfloat16) tensors with static shapes: either B one
    [K, N] matrix, or A and B with the same batch dims; None (the loop-IR rule) otherwise."""
    if len(node.inputs) != 2 or node.inputs[1] is None:
        return None
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    types = [v.type for v in (a, b, y)]
    if not all(t.is_static and t.dtype.name in L.MMA_INPUT_DTYPES for t in types) or len({t.dtype for t in types}) != 1:
        return None
    sa, sb, sy = (tuple(t.shape) for t in types)
    if len(sa) < 2 or len(sb) < 2 or 0 in sa or 0 in sb:
        return None
    k, n = sb[-2], sb[-1]
    if sa[-1] != k:
        return None
    if len(sb) == 2 or math.prod(sb[:-2]) == 1:
        batches, m, a_batched, b_batched = 1, math.prod(sa[:-1]), True, False
    elif sa[:-2] == sb[:-2]:
        batches, m, a_batched, b_batched = math.prod(sa[:-2]), sa[-2], True, True
    else:
        return None
    if sy != sa[:-1] + (n,) and sy != sa[:-2] + (sa[-2], n):
        return None
    kernel = gemm_kernel("gemm", batches, m, n, k, types[0].dtype, a_batched, b_batched)
    return ExternPlan(kernel, [("value", a), ("value", b), ("value", y)])


get_op("MatMul").register("extern:cuda", lower_matmul)
