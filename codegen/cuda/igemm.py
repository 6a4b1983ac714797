"""The cuda target's matrix-product template: one launch computing

    Y[b, m, n] = epilogue(sum_k A[b, m, k] * B[b, k, n], b, m, n)

where A and B are *read through index functions*, so the same kernel is a plain or
batched matrix product, a Gemm with transposed operands, or a convolution as an
implicit GEMM (B's elements gathered from the image on the fly, padding as predicated
loads; nothing is materialised). `GemmSpec` says how; `gemm_kernel` builds the loop IR.

Blocks own a BM x BN tile of Y (64 x 64, or 32 x 32 when the big tiles would leave some of
the GPU's multiprocessors without a block: `_pick`) and walk K in steps of BK. Each step's A and B tiles are
staged in shared memory, double-buffered: while the block computes on one pair of tiles
it is already loading the next into the other, and one barrier per step separates the
two. An operand whose elements are contiguous along the staged row (A along k, B along
n; `Operand.vector`) is staged with 16-byte copies, asynchronous (cp.async) so the load
overlaps the math; a gathered one (a convolution's image) element by element. Shared
rows are padded so the fragment reads below hit distinct banks.

Two ways to do the math, by element type:
- float16 / bfloat16 (`_tensor_core_kernel`): a warp per 32 x 32 piece of the tile (2 x 2 warps):
  per 16-deep slice, A's fragments come from one ldmatrix.x4 per 16 rows and B's from one
  ldmatrix.x2.trans per 8 columns, then 2 x 4 mma.sync.m16n8k16 into float32 accumulators;
- float32 (`_fma_kernel`): a thread per 4 x 4 register tile (rows blocked, columns
  strided by 16 so a warp's shared reads and global stores stay contiguous), 16 fused
  multiply-adds per pair of 4 shared reads.

The epilogue (bias, Gemm's alpha and beta * C, Linear's activation) is applied to each
float32 sum before the one rounding to Y's type, under the edge guards. The emulator runs
the template like any launch (barriers, races, cp.async, ldmatrix, mma), and NVRTC
compiles it for every architecture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...ir import dtypes
from .. import loop_ir as L
from ..extern import ExternLoopKernel
from .mma import C_OFFSETS

IndexFn = Callable[..., tuple]  # (batch, outer, inner) -> (flat index, extra predicate or None)


@dataclass(frozen=True)
class Operand:
    """One input of the product: its buffer, where element (batch, i, j) lives (A: i = row,
    j = k; B: i = k, j = column) with an optional predicate (a convolution's padding), and
    whether consecutive j are consecutive in memory from aligned starts (vector staging)."""

    buffer: L.Buffer
    at: IndexFn
    vector: bool = False


@dataclass(frozen=True)
class GemmSpec:
    """A product over `batches` independent [m, k] x [k, n] problems into `y` at
    `y_at(batch, row, col)`; `epilogue(sum, batch, row, col)` maps the float32 sum (None:
    unchanged). `params` are the kernel's parameters in binding order."""

    name: str
    batches: int
    m: int
    n: int
    k: int
    a: Operand
    b: Operand
    y: L.Buffer
    y_at: Callable
    params: tuple
    epilogue: Callable | None = None
    kernel_class: str = "matmul"


def _and(*conds):
    conds = [c for c in conds if c is not None]
    out = conds[0] if conds else None
    for c in conds[1:]:
        out = L.binary("and", out, c)
    return out


def _lt(x, bound: int):
    return L.binary("lt", x, L.const(bound))


@dataclass(frozen=True)
class _Shape:
    """A math variant's tile sizes and thread count, and its shared rows' padding."""

    bm: int
    bn: int
    bk: int
    threads: int
    pad: int  # elements added to each shared row (bank spread; keeps rows 16-byte aligned)
    warps_m: int = 1  # tensor cores: the warps' grid over the tile (each warp 32 x 32)
    warps_n: int = 1

    def blocks(self, spec: "GemmSpec") -> int:
        return spec.batches * -(-spec.m // self.bm) * -(-spec.n // self.bn)


def _pick(shapes: tuple, spec: "GemmSpec", multiprocessors: int) -> _Shape:
    """The biggest tile that still gives every multiprocessor a block (products with few
    output tiles, such as late convolutions at batch 1, take smaller ones), else the smallest."""
    for shape in shapes:
        if shape.blocks(spec) >= multiprocessors:
            return shape
    return shapes[-1]


class _Staging:
    """Loads of one operand tile ([rows][cols] of the operand, cols the contiguous side)
    into one of two shared buffers, by vector copies or element by element."""

    def __init__(self, spec: GemmSpec, op: Operand, tile: L.Buffer, rows: int, cols: int, stride: int,
                 threads: int, is_a: bool):
        self.spec, self.op, self.tile = spec, op, tile
        self.rows, self.cols, self.stride, self.threads, self.is_a = rows, cols, stride, threads, is_a
        self.vec = 16 // op.buffer.dtype.itemsize if op.vector else 1
        self.size = rows * stride  # one of the two buffers

    def stmts(self, t, batch, row0, col0, kt, which) -> list[L.Stmt]:
        """Thread t's share of loading step kt's tile into buffer `which` (0 or 1)."""
        s, per_row = self.spec, self.cols // self.vec
        count = self.rows * per_row
        out = []
        for e in range(-(-count // self.threads)):
            v = L.add(t, e * self.threads)
            r, c = L.div(v, per_row), L.mul(L.mod(v, per_row), self.vec)
            if self.is_a:  # rows of A are m, columns k
                gi, gj, bound_i, bound_j = L.add(row0, r), L.add(L.mul(kt, self.cols), c), s.m, s.k
            else:  # rows of B are k, columns n
                gi, gj, bound_i, bound_j = L.add(L.mul(kt, self.rows), r), L.add(col0, c), s.k, s.n
            index, extra = self.op.at(batch, gi, gj)
            pred = _and(_lt(gi, bound_i), _lt(gj, bound_j), extra)
            dst = L.add(L.mul(which, self.size), L.add(L.mul(r, self.stride), c))
            if self.vec > 1:
                step = L.Copy(self.tile, dst, self.op.buffer, index, self.vec, pred, asynchronous=True)
            else:
                dt = self.op.buffer.dtype
                step = L.Store(self.tile, dst, L.Load(dt, self.op.buffer, index, pred, L.const(0, dt)))
            if count % self.threads and e == count // self.threads:
                step = L.IfThenElse(_lt(v, count), step)
            out.append(step)
        return out


class _Tiles:
    """What both math variants share: the block's place in Y, the double-buffered shared
    tiles (rows padded to sa / sb elements) and their staging, and the launch around a body."""

    def __init__(self, spec: GemmSpec, sh: _Shape):
        self.spec, self.sh = spec, sh
        dt = spec.a.buffer.dtype
        self.sa, self.sb = sh.bk + sh.pad, sh.bn + sh.pad
        self.a_tile = L.Buffer(L.var("a_tile").name, dt, 2 * sh.bm * self.sa, "shared")
        self.b_tile = L.Buffer(L.var("b_tile").name, dt, 2 * sh.bk * self.sb, "shared")
        self.blk, self.t = L.var("blk"), L.var("t")
        tiles_m, tiles_n = -(-spec.m // sh.bm), -(-spec.n // sh.bn)
        self.grid = spec.batches * tiles_m * tiles_n
        self.batch = L.div(self.blk, tiles_m * tiles_n)
        self.row0 = L.mul(L.mod(L.div(self.blk, tiles_n), tiles_m), sh.bm)
        self.col0 = L.mul(L.mod(self.blk, tiles_n), sh.bn)
        self.a_stage = _Staging(spec, spec.a, self.a_tile, sh.bm, sh.bk, self.sa, sh.threads, True)
        self.b_stage = _Staging(spec, spec.b, self.b_tile, sh.bk, sh.bn, self.sb, sh.threads, False)

    def a_at(self, which, row, k):
        """Shared index of A's (row, k) in buffer `which`."""
        return L.add(L.mul(which, self.sh.bm * self.sa), L.add(L.mul(row, self.sa), k))

    def b_at(self, which, k, col):
        return L.add(L.mul(which, self.sh.bk * self.sb), L.add(L.mul(k, self.sb), col))

    def launch(self, init: list, compute, out: list, local: list) -> L.Stmt:
        body: L.Stmt = L.seq(*init, _pipeline(self.spec, self.sh, self.a_stage, self.b_stage, self.t, self.batch,
                                              self.row0, self.col0, compute), *out)
        for buf in local:
            body = L.Allocate(buf, body)
        thread = L.For(self.t, L.const(self.sh.threads), L.LoopKind.GPU_THREAD, body)
        return L.For(self.blk, L.const(self.grid), L.LoopKind.GPU_BLOCK,
                     L.Allocate(self.a_tile, L.Allocate(self.b_tile, thread)))


def _finish(spec: GemmSpec, acc_value: L.Expr, batch, row, col) -> L.Stmt:
    value = acc_value if spec.epilogue is None else spec.epilogue(acc_value, batch, row, col)
    store = L.Store(spec.y, spec.y_at(batch, row, col), L.cast(value, spec.y.dtype))
    return L.IfThenElse(_and(_lt(row, spec.m), _lt(col, spec.n)), store)


def _pipeline(spec: GemmSpec, shape: _Shape, a_stage: _Staging, b_stage: _Staging, t, batch, row0, col0,
              compute: Callable) -> L.Stmt:
    """Stage step 0; then per step: wait for its copies, barrier, start loading the next
    step into the other buffers, compute on this one."""
    steps = -(-spec.k // shape.bk)
    kt = L.var("kt")
    which = L.mod(kt, 2)
    nxt = L.add(kt, 1)

    def stage(step, buf):
        return [*a_stage.stmts(t, batch, row0, col0, step, buf), *b_stage.stmts(t, batch, row0, col0, step, buf)]

    body = [L.CopyWait(), L.Barrier()]
    if steps > 1:
        body.append(L.IfThenElse(_lt(nxt, steps), L.seq(*stage(nxt, L.mod(nxt, 2)))))
    body.append(compute(which))
    return L.seq(*stage(L.const(0), L.const(0)), L.For(kt, L.const(steps), L.LoopKind.SERIAL, L.seq(*body)))


# ------------------------------------------------------------------- tensor cores

HALF_SHAPES = (_Shape(bm=64, bn=64, bk=32, threads=128, pad=8, warps_m=2, warps_n=2),
               _Shape(bm=32, bn=32, bk=32, threads=32, pad=8))


def _tensor_core_kernel(spec: GemmSpec, sh: _Shape) -> L.Stmt:
    dt, f32 = spec.a.buffer.dtype, dtypes.float32
    tl = _Tiles(spec, sh)
    wm, wn = sh.bm // sh.warps_m, sh.bn // sh.warps_n  # a warp's 32 x 32
    mi, ni = wm // 16, wn // 8
    warp, lane = L.div(tl.t, 32), L.mod(tl.t, 32)
    wrow, wcol = L.mul(L.div(warp, sh.warps_n), wm), L.mul(L.mod(warp, sh.warps_n), wn)
    acc = {(i, j): L.Buffer(L.var(f"acc{i}{j}").name, f32, 4, "local") for i in range(mi) for j in range(ni)}
    af = [L.Buffer(L.var(f"af{i}").name, dt, 8, "local") for i in range(mi)]
    bf = [L.Buffer(L.var(f"bf{j}").name, dt, 4, "local") for j in range(ni)]
    # ldmatrix row addresses: lane l gives row l % 8 of matrix l // 8 (see codegen.cuda.mma)
    quarter_row = L.add(L.mod(lane, 8), L.mul(L.mod(L.div(lane, 8), 2), 8))
    a_col = L.mul(L.div(lane, 16), 8)

    def compute(which):
        ks = L.var("ks")
        loads = [L.LoadMatrix(af[i], tl.a_tile, tl.a_at(which, L.add(L.add(wrow, i * 16), quarter_row),
                                                         L.add(L.mul(ks, 16), a_col)), 4) for i in range(mi)]
        loads += [L.LoadMatrix(bf[j], tl.b_tile, tl.b_at(which, L.add(L.mul(ks, 16), quarter_row), L.add(wcol, j * 8)),
                               2, trans=True) for j in range(ni)]
        mmas = [L.Mma("m16n8k16", acc[i, j], af[i], bf[j], acc[i, j]) for i in range(mi) for j in range(ni)]
        return L.For(ks, L.const(sh.bk // 16), L.LoopKind.UNROLLED, L.seq(*loads, *mmas))

    g, t2 = L.div(lane, 4), L.mul(L.mod(lane, 4), 2)
    init = [L.Store(buf, L.const(q), L.const(0.0, f32)) for buf in acc.values() for q in range(4)]
    out = []
    for (i, j), buf in acc.items():
        for q, (dr, dc) in enumerate(C_OFFSETS):
            row = L.add(tl.row0, L.add(L.add(wrow, i * 16 + dr), g))
            col = L.add(tl.col0, L.add(L.add(wcol, j * 8 + dc), t2))
            out.append(_finish(spec, L.Load(f32, buf, L.const(q)), tl.batch, row, col))
    return tl.launch(init, compute, out, [*acc.values(), *af, *bf])


# ------------------------------------------------------------------- float32 FMA

FLOAT_SHAPES = (_Shape(bm=64, bn=64, bk=16, threads=256, pad=4), _Shape(bm=32, bn=32, bk=16, threads=64, pad=4))
TM = TN = 4  # a thread's register tile


def _fma_kernel(spec: GemmSpec, sh: _Shape) -> L.Stmt:
    dt, f32 = spec.a.buffer.dtype, dtypes.float32
    tl = _Tiles(spec, sh)
    cols_per_pass = sh.bn // TN  # 16 threads across a row of the tile
    tr, tc = L.div(tl.t, cols_per_pass), L.mod(tl.t, cols_per_pass)
    acc = L.Buffer(L.var("acc").name, f32, TM * TN, "local")
    ar = L.Buffer(L.var("ar").name, f32, TM, "local")
    br = L.Buffer(L.var("br").name, f32, TN, "local")

    def compute(which):
        kk = L.var("kk")
        loads = [L.Store(ar, L.const(i), L.cast(L.Load(dt, tl.a_tile, tl.a_at(which, L.add(L.mul(tr, TM), i), kk)), f32))
                 for i in range(TM)]
        loads += [L.Store(br, L.const(j), L.cast(L.Load(dt, tl.b_tile, tl.b_at(which, kk, L.add(tc, j * cols_per_pass))),
                                                 f32)) for j in range(TN)]
        fmas = [L.Store(acc, L.const(i * TN + j),
                        L.call("fma", L.Load(f32, ar, L.const(i)), L.Load(f32, br, L.const(j)),
                               L.Load(f32, acc, L.const(i * TN + j))))
                for i in range(TM) for j in range(TN)]
        return L.For(kk, L.const(sh.bk), L.LoopKind.UNROLLED, L.seq(*loads, *fmas))

    init = [L.Store(acc, L.const(q), L.const(0.0, f32)) for q in range(TM * TN)]
    out = []
    for i in range(TM):
        for j in range(TN):
            row = L.add(tl.row0, L.add(L.mul(tr, TM), i))
            col = L.add(tl.col0, L.add(tc, j * cols_per_pass))
            out.append(_finish(spec, L.Load(f32, acc, L.const(i * TN + j)), tl.batch, row, col))
    return tl.launch(init, compute, out, [acc, ar, br])


def gemm_kernel(spec: GemmSpec, multiprocessors: int = 132) -> ExternLoopKernel:
    """The template's kernel for `spec`: tensor cores for 16-bit floats, FMA for float32;
    tiles as big as still fill `multiprocessors` with blocks."""
    dt = spec.a.buffer.dtype
    if dt is not spec.b.buffer.dtype or dt.name not in (*L.MMA_INPUT_DTYPES, "float32"):
        raise ValueError(f"{spec.name}: operands {dt.name} and {spec.b.buffer.dtype.name}; the template multiplies "
                         f"two float32, float16 or bfloat16 operands")
    if dt is dtypes.float32:
        launch = _fma_kernel(spec, _pick(FLOAT_SHAPES, spec, multiprocessors))
    else:
        launch = _tensor_core_kernel(spec, _pick(HALF_SHAPES, spec, multiprocessors))
    return ExternLoopKernel(spec.name, spec.params, launch, spec.kernel_class)


def vector_aligned(dtype, *extents: int) -> bool:
    """Whether rows of these lengths start 16-byte aligned (vector staging is possible)."""
    vec = 16 // dtype.itemsize
    return all(e % vec == 0 for e in extents)
