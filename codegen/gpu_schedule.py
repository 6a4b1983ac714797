"""GPU schedules: a tensor-expression stage as one launch of thread blocks in loop IR.

A GPU kernel's body is a sequence of launches, each one stage, run in order (a launch
ends before the next begins, which is how one stage sees all of the previous one):

    for b in gpu_block(G):                    # blockIdx.x
      [allocate shared ...]                   # one copy per block
        for t in gpu_thread(T):               # threadIdx.x, T a multiple of the warp size
          body

Three shapes of launch, chosen per stage from its sizes (knobs in `GPU_SPACES`):
- one thread per output element (elementwise, injective, small reductions): G = ceil(N / T),
  each thread guarded by `flat < N`, a reduction accumulated serially in a local buffer;
- register tiles (reductions with many outputs whose operands are shared along two output
  axes: convolutions, matrix products): a thread computes tile x tile outputs, so each
  operand it loads feeds several multiply-adds (`_tile_axes` finds the axes by reading
  which output indices each load depends on);
- one block per output element (reductions with few outputs and long rows: softmax and
  normalisation statistics, global pooling, matrix-vector products): the T threads stride
  the reduce domain, combine their partials with warp shuffles (xor butterfly), the warp
  leaders meet in shared memory across a barrier, and warp 0 combines those.

`launch_of` reads the launch geometry back off a launch statement; the CUDA renderer,
the build's launch table and the emulator all use it, so they agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.errors import CompilerError
from . import loop_ir as L
from .schedule import Knob, _reduce_body
from .te import COMBINERS, Compute, Reduce, Tensor, numel

WARP = L.WARP_SIZE

GPU_SPACES: dict[str, tuple[Knob, ...]] = {
    "threads": (Knob("threads", (64, 128, 256, 512), "threads per block of a thread-per-output launch"),),
    "tiling": (Knob("tile", (1, 2, 4), "outputs per thread along each of two axes sharing operand loads"),
               Knob("tile_min_reduce", (8, 16, 64), "reduce length from which outputs are register-tiled"),
               Knob("tile_min_threads", (1 << 11, 1 << 13, 1 << 15), "threads a tiled launch must still have")),
    "reduce": (Knob("reduce_threads", (32, 64, 128, 256, 512), "threads cooperating on one output"),
               Knob("block_reduce_min", (64, 128, 256, 1024), "reduce length from which a block takes one output"),
               Knob("block_reduce_max_outputs", (1 << 12, 1 << 14, 1 << 16),
                    "outputs up to which a block takes one output")),
}

GPU_SPACES["vector"] = (Knob("vector", (0, 1), "elementwise launches move 16 bytes per thread per access"),)

DEFAULT_KNOBS = {"vector": 1, "threads": 256, "reduce_threads": 256, "block_reduce_min": 128, "block_reduce_max_outputs": 1 << 14,
                 "tile": 4, "tile_min_reduce": 16, "tile_min_threads": 1 << 13}


@dataclass(frozen=True)
class Launch:
    """The geometry of one launch statement: G blocks of T threads, the shared buffers
    allocated per block, and the thread loop (whose body every thread runs)."""

    grid: int
    block: int
    block_var: L.Var
    shared: tuple[L.Buffer, ...]
    thread_loop: L.For

    @property
    def shared_bytes(self) -> int:
        return sum(b.size * b.dtype.itemsize for b in self.shared)


def launch_of(stmt: L.Stmt, kernel: str = "?") -> Launch:
    """The launch a top-level statement of a GPU kernel describes; CompilerError when it is
    not of the form block loop -> shared allocations -> thread loop, with constant extents."""
    if not (isinstance(stmt, L.For) and stmt.kind is L.LoopKind.GPU_BLOCK and isinstance(stmt.extent, L.Const)):
        raise CompilerError(f"kernel {kernel}: a GPU kernel's top level must be launches "
                            f"(constant-extent gpu_block loops), found {type(stmt).__name__}")
    shared, body = [], stmt.body
    while isinstance(body, L.Allocate) and body.buffer.scope == "shared":
        shared.append(body.buffer)
        body = body.body
    if not (isinstance(body, L.For) and body.kind is L.LoopKind.GPU_THREAD and isinstance(body.extent, L.Const)):
        raise CompilerError(f"kernel {kernel}: launch {stmt.var.name} needs one constant-extent gpu_thread loop "
                            f"under its shared allocations")
    return Launch(int(stmt.extent.value), int(body.extent.value), stmt.var, tuple(shared), body)


def launches_of(kernel: L.Kernel) -> list[tuple[L.Stmt, Launch]]:
    """(statement, geometry) of every launch of a GPU kernel, in order."""
    body = kernel.body.stmts if isinstance(kernel.body, L.Seq) else (kernel.body,)
    return [(s, launch_of(s, kernel.name)) for s in body]


# ------------------------------------------------------------------------------ lowering


def unravel(flat: L.Expr, shape: tuple[int, ...]) -> list[L.Expr]:
    """The row-major multi-index of flat position `flat` in `shape` (0 along size-1 dims)."""
    idx, rest = [], flat
    for k in range(len(shape) - 1, -1, -1):
        d = shape[k]
        idx.insert(0, L.const(0) if d == 1 else (L.mod(rest, d) if k else rest))
        if d != 1:
            rest = L.div(rest, d)
    return idx


class _Unroll:
    """The knobs `schedule._reduce_body` reads (independent accumulators per thread)."""

    def __init__(self, unroll: int):
        self.knobs = {"unroll": unroll}


def _launch(grid: int, threads: int, body_of, shared: tuple = ()) -> L.Stmt:
    b, t = L.var("blk"), L.var("thr")
    inner: L.Stmt = L.For(t, L.const(threads), L.LoopKind.GPU_THREAD, body_of(b, t))
    for buf in reversed(shared):
        inner = L.Allocate(buf, inner)
    return L.For(b, L.const(grid), L.LoopKind.GPU_BLOCK, inner)


def lower_stage_gpu(stage: Compute, out: Tensor, knobs: dict | None = None) -> L.Stmt:
    """One launch that fills `out` with `stage` (see the module docstring for its shapes)."""
    knobs = {**DEFAULT_KNOBS, **(knobs or {})}
    n = numel(stage.shape)
    if n == 0:
        return L.seq()
    probe = stage.fn([L.const(0)] * len(stage.shape))
    if isinstance(probe, Reduce):
        length = numel(probe.extents)
        acc = probe.dtype or stage.dtype
        if (probe.extents and length >= knobs["block_reduce_min"] and n <= knobs["block_reduce_max_outputs"]
                and acc.kind in ("float", "int", "uint")):
            return _block_reduce(stage, out, n, length, acc, knobs["reduce_threads"])
        axes = _tile_axes(stage, probe) if length >= knobs["tile_min_reduce"] else None
        for tm, tn in ((knobs["tile"], knobs["tile"]), (2, 2)) if axes else ():
            if n // (tm * tn) >= knobs["tile_min_threads"]:
                return _register_tiled(stage, out, probe, axes, tm, tn, knobs["threads"])
    elif knobs["vector"]:
        vectorized = _vectorized(stage, out, n, knobs["threads"])
        if vectorized is not None:
            return vectorized
    threads = min(knobs["threads"], max(WARP, -(-n // WARP) * WARP))
    grid = -(-n // threads)

    def body(b, t):
        flat = L.add(L.mul(b, threads), t)
        idx = unravel(flat, stage.shape)
        value = stage.fn(idx)
        if isinstance(value, Reduce):
            work = _reduce_body(value, value.dtype or stage.dtype, out, out.flat_index(idx), _Unroll(1))
        else:
            work = L.Store(out.buffer, out.flat_index(idx), L.cast(value, out.dtype))
        return work if grid * threads == n else L.IfThenElse(L.binary("lt", flat, L.const(n)), work)

    return _launch(grid, threads, body)


def _replace_loads(e: L.Expr, swap) -> L.Expr:
    """`e` with every Load for which swap(load) gives an expression replaced by it."""
    if isinstance(e, L.Load):
        got = swap(e)
        if got is not None:
            return got
    return L.map_children(e, lambda x: _replace_loads(x, swap))


def _vectorized(stage: Compute, out: Tensor, n: int, threads: int) -> L.Stmt | None:
    """An elementwise stage with each thread on `vec` consecutive outputs, moving 16 bytes
    at a time: the outputs leave through one vector store, and every input read at the
    output's own position (an operand of the output's shape) arrives by one vector load;
    other reads (broadcast operands, gathers) stay scalar. None when the output's element
    size or count does not allow it. Every buffer starts 64-byte aligned (the memory plan),
    so a vector at a multiple of `vec` elements is aligned."""
    size = out.dtype.itemsize
    if size not in (2, 4) or n % (16 // size) or n < 16 // size * WARP or not out.contiguous:
        return None  # (a strided view's elements are not `vec` apart in its buffer)
    vec = 16 // size
    count = n // vec
    threads = min(threads, max(WARP, -(-count // WARP) * WARP))
    grid = -(-count // threads)

    def body(b, t):
        base = L.mul(L.add(L.mul(b, threads), t), vec)
        staged: dict = {}  # input buffer -> its local copy of this thread's vector
        values = []
        for j in range(vec):
            idx = unravel(L.add(base, j), stage.shape)
            at = _text(out.flat_index(idx))

            def swap(load, j=j, at=at):
                if (load.pred is not None or load.buffer.scope != "global" or load.buffer.size < n
                        or vec * load.buffer.dtype.itemsize not in L.VECTOR_BYTES or _text(load.index) != at):
                    return None
                if load.buffer not in staged:
                    staged[load.buffer] = L.Buffer(L.var("vin").name, load.buffer.dtype, vec, "local")
                return L.Load(load.dtype, staged[load.buffer], L.const(j))

            values.append(_replace_loads(stage.fn(idx), swap))
        result = L.Buffer(L.var("vout").name, out.dtype, vec, "local")
        stmts = [L.Copy(local, L.const(0), buf, base, vec) for buf, local in staged.items()]
        stmts += [L.Store(result, L.const(j), L.cast(v, out.dtype)) for j, v in enumerate(values)]
        stmts.append(L.Copy(out.buffer, base, result, L.const(0), vec))
        work: L.Stmt = L.seq(*stmts)
        for local in [result, *staged.values()]:
            work = L.Allocate(local, work)
        if grid * threads != count:
            work = L.IfThenElse(L.binary("lt", L.add(L.mul(b, threads), t), L.const(count)), work)
        return work

    return _launch(grid, threads, body)


def _block_reduce(stage: Compute, out: Tensor, n: int, length: int, acc_dtype, threads: int) -> L.Stmt:
    """One block per output: strided partials, a warp-shuffle butterfly, warp leaders
    through shared memory, and warp 0's butterfly over them."""
    threads = min(threads, max(WARP, 1 << (length - 1).bit_length()))  # no more threads than elements
    warps = threads // WARP
    op = COMBINERS[stage.fn([L.const(0)] * len(stage.shape)).combiner]
    steps = -(-length // threads)
    partial = L.Buffer(L.var("partial").name, acc_dtype, warps, "shared")

    def butterfly(acc: L.Buffer, width: int) -> list[L.Stmt]:
        out_steps, offset = [], width // 2
        while offset >= 1:
            mine = L.Load(acc_dtype, acc, L.const(0))
            out_steps.append(L.Store(acc, L.const(0), L.binary(op, mine, L.shuffle("xor", mine, offset))))
            offset //= 2
        return out_steps

    def body(b, t):
        idx = unravel(b, stage.shape)
        red = stage.fn(idx)
        accb = L.Buffer(L.var("acc").name, acc_dtype, 1, "local")
        mine = L.Load(acc_dtype, accb, L.const(0))
        r = L.var("r")
        rr = L.add(L.mul(r, threads), t)
        rvars = unravel(rr, red.extents)
        update = L.Store(accb, L.const(0), L.binary(op, mine, L.cast(red.body(rvars), acc_dtype)))
        guarded = update if steps * threads == length else L.IfThenElse(L.binary("lt", rr, L.const(length)), update)
        loop = L.For(r, L.const(steps), L.LoopKind.SERIAL, guarded) if steps > 1 else L.substitute(guarded, {r: L.const(0)})
        lane, warp = L.mod(t, WARP), L.div(t, WARP)
        stmts = [L.Store(accb, L.const(0), red.init(acc_dtype)), loop, *butterfly(accb, WARP)]
        result: L.Expr = mine
        if red.finalize is not None:
            result = red.finalize(result)
        store_out = L.Store(out.buffer, out.flat_index(idx), L.cast(result, out.dtype))
        if warps == 1:
            stmts.append(L.IfThenElse(L.binary("eq", t, L.const(0)), store_out))
        else:
            stmts.append(L.IfThenElse(L.binary("eq", lane, L.const(0)), L.Store(partial, warp, mine)))
            stmts.append(L.Barrier())
            gather = L.Store(accb, L.const(0), L.Load(acc_dtype, partial, t, L.binary("lt", t, L.const(warps)),
                                                       red.init(acc_dtype)))
            stmts.append(L.IfThenElse(L.binary("lt", t, L.const(WARP)),
                                      L.seq(gather, *butterfly(accb, 1 << (warps - 1).bit_length()),
                                            L.IfThenElse(L.binary("eq", t, L.const(0)), store_out))))
        return L.Allocate(accb, L.seq(*stmts))

    return _launch(n, threads, body, (partial,) if warps > 1 else ())


# ------------------------------------------------------------------- register tiling


def _tile_axes(stage: Compute, red: Reduce) -> tuple[int, int] | None:
    """(p, q): two output axes along which one thread's outputs share operand loads, or
    None. q is the last axis when some load of the reduction does not depend on it (the
    weights of a convolution, A of a matrix product); p an axis that a load depending on
    q does not depend on (the output channels, the rows). Found by probing the rule with
    one variable per output axis and reading which variables each load's index holds."""
    rank = len(stage.shape)
    if rank < 2 or stage.shape[-1] < 2:
        return None
    probe = [L.var("ax") for _ in range(rank)]
    body = stage.fn(probe).body([L.var("rp") for _ in red.extents])
    loads = [n for n in L.walk(body) if isinstance(n, L.Load)]
    deps = [{k for k, v in enumerate(probe) for m in L.walk(ld.index) if m is v} for ld in loads]
    q = rank - 1
    if not deps or all(q in d for d in deps):
        return None
    for p in sorted(range(rank - 1), key=lambda a: -stage.shape[a]):
        if stage.shape[p] >= 2 and any(q in d and p not in d for d in deps):
            return p, q
    return None


def _register_tiled(stage: Compute, out: Tensor, red: Reduce, axes: tuple[int, int], tm: int, tn: int,
                    threads: int) -> L.Stmt:
    """Each thread computes tm x tn outputs: rows p*tm + i (blocked: a warp shares them) and
    columns q + j * Q (interleaved: a warp's loads and stores along the last axis stay
    contiguous), so every operand load serves tm or tn multiply-adds."""
    p, q = axes
    shape = stage.shape
    tiles = list(shape)
    tiles[p], tiles[q] = -(-shape[p] // tm), -(-shape[q] // tn)
    count = numel(tiles)
    threads = min(threads, max(WARP, -(-count // WARP) * WARP))
    grid = -(-count // threads)
    acc_dtype = red.dtype or stage.dtype
    op = COMBINERS[red.combiner]

    def body(b, t):
        flat = L.add(L.mul(b, threads), t)
        tile = unravel(flat, tuple(tiles))
        acc = L.Buffer(L.var("acc").name, acc_dtype, tm * tn, "local")
        cells = []
        for i in range(tm):
            for j in range(tn):
                idx = list(tile)
                idx[p] = L.add(L.mul(tile[p], tm), i)
                idx[q] = L.add(tile[q], j * tiles[q])
                checks = [L.binary("lt", idx[a], L.const(shape[a])) for a, f in ((p, tm), (q, tn)) if shape[a] % f]
                valid = checks[0] if len(checks) == 1 else (L.binary("and", *checks) if checks else None)
                safe = idx if valid is None else [L.select(valid, x, L.const(0)) if k in (p, q) else x
                                                  for k, x in enumerate(idx)]
                cells.append((i * tn + j, idx, valid, stage.fn(safe)))  # never reads out of bounds
        rvars = [L.var("r") for _ in red.extents]
        update = L.seq(*[L.Store(acc, L.const(c), L.binary(op, L.Load(acc_dtype, acc, L.const(c)),
                                                          L.cast(cell.body(rvars), acc_dtype)))
                         for c, _, _, cell in cells])
        for rv, ext in reversed(list(zip(rvars, red.extents))):
            update = L.For(rv, L.const(ext), L.LoopKind.SERIAL, update)
        init = [L.Store(acc, L.const(c), red.init(acc_dtype)) for c, _, _, _ in cells]
        stores = []
        for c, idx, valid, cell in cells:
            value: L.Expr = L.Load(acc_dtype, acc, L.const(c))
            if cell.finalize is not None:
                value = cell.finalize(value)
            store = L.Store(out.buffer, out.flat_index(idx), L.cast(value, out.dtype))
            stores.append(store if valid is None else L.IfThenElse(valid, store))
        work = L.Allocate(acc, L.seq(*init, update, *stores))
        return work if grid * threads == count else L.IfThenElse(L.binary("lt", flat, L.const(count)), work)

    return _launch(grid, threads, body)


# ------------------------------------------------------------------------ launch merging


def _text(node) -> str:
    from .printer import expr_text, stmt_text

    return expr_text(node) if isinstance(node, L.Expr) else stmt_text(node)


def _guarded(launch: Launch) -> tuple[L.Expr | None, L.Stmt]:
    body = launch.thread_loop.body
    if isinstance(body, L.IfThenElse) and body.otherwise is None:
        return body.cond, body.then
    return None, body


def _accesses(stmt: L.Stmt):
    """("read" | "write", buffer, index) of every load, store and vector copy under `stmt`."""
    for n in L.walk(stmt):
        if isinstance(n, L.Load):
            yield "read", n.buffer, n.index
        elif isinstance(n, L.Store):
            yield "write", n.buffer, n.index
        elif isinstance(n, L.Copy):
            yield "read", n.src, n.src_index
            yield "write", n.dst, n.dst_index


def _merge_pair(first: L.Stmt, second: L.Stmt) -> L.Stmt | None:
    """`second`'s work appended to `first`'s threads, or None when that could change what
    any thread reads. Both must be plain thread-per-output launches of the same geometry
    under the same guard; `second` may read what `first` wrote only at the index the same
    thread wrote it, and nothing `second` writes may be read or written by `first`."""
    g1, g2 = launch_of(first), launch_of(second)
    if g1.shared or g2.shared or (g1.grid, g1.block) != (g2.grid, g2.block):
        return None
    if any(isinstance(n, (L.Barrier, L.WarpShuffle, L.Mma)) for s in (first, second) for n in L.walk(s)):
        return None
    renamed = L.substitute(second, {g2.block_var: g1.block_var, g2.thread_loop.var: g1.thread_loop.var})
    g2 = launch_of(renamed)
    (c1, w1), (c2, w2) = _guarded(g1), _guarded(g2)
    if (c1 is None) != (c2 is None) or (c1 is not None and _text(c1) != _text(c2)):
        return None
    written1: dict = {}
    read1 = set()
    for kind, buf, index in _accesses(w1):
        if kind == "read":
            read1.add(buf)
        elif buf.scope == "global":
            written1.setdefault(buf, set()).add(_text(index))
    if any(len(v) != 1 for v in written1.values()):
        return None
    for kind, buf, index in _accesses(w2):
        if kind == "write" and buf.scope == "global" and (buf in written1 or buf in read1):
            return None
        if kind == "read" and buf in written1 and _text(index) not in written1[buf]:
            return None
    work = L.seq(w1, w2)
    body = work if c1 is None else L.IfThenElse(c1, work)
    return L.For(first.var, first.extent, L.LoopKind.GPU_BLOCK,
                 L.For(g1.thread_loop.var, g1.thread_loop.extent, L.LoopKind.GPU_THREAD, body))


def _merge_runs(stmts: list) -> list[list[int]]:
    """Which launches `merge_launches` would join: runs of positions."""
    runs: list[list[int]] = []
    joined = None
    for i, s in enumerate(stmts):
        both = _merge_pair(joined, s) if joined is not None else None
        if both is None:
            runs.append([i])
            joined = s
        else:
            runs[-1].append(i)
            joined = both
    return runs


def lower_stages_gpu(stages, knobs: dict | None = None) -> list:
    """One kernel's stages as launches. An elementwise stage moves 16 bytes per access
    (`_vectorized`) unless that would keep it from merging with a neighbour (a launch of
    another shape cannot share threads): per run of launches that merge as scalar ones,
    the vector form is taken when every launch of the run has one."""
    knobs = {**DEFAULT_KNOBS, **(knobs or {})}
    scalar = [lower_stage_gpu(stage, out, {**knobs, "vector": 0}) for stage, out in stages]
    if not knobs["vector"]:
        return scalar
    vector = [lower_stage_gpu(stage, out, knobs) for stage, out in stages]
    chosen = list(scalar)
    flat = [s for s in scalar if not (isinstance(s, L.Seq) and not s.stmts)]  # empty stages launch nothing
    where = [i for i, s in enumerate(scalar) if not (isinstance(s, L.Seq) and not s.stmts)]
    for run in _merge_runs(flat):
        members = [where[k] for k in run]
        if all(any(isinstance(n, L.Copy) for n in L.walk(vector[i])) for i in members):
            for i in members:
                chosen[i] = vector[i]
    return chosen


def merge_launches(kernel: L.Kernel) -> L.Kernel:
    """The kernel with each run of mergeable launches (`_merge_pair`) made one launch: a
    convolution and its bias and activation, a chain of elementwise stages, become one
    pass over memory and one launch instead of several."""
    stmts = kernel.body.stmts if isinstance(kernel.body, L.Seq) else (kernel.body,)
    merged: list[L.Stmt] = []
    for s in stmts:
        joined = _merge_pair(merged[-1], s) if merged else None
        if joined is None:
            merged.append(s)
        else:
            merged[-1] = joined
    if len(merged) == len(stmts):
        return kernel
    return L.Kernel(kernel.name, kernel.params, L.seq(*merged), kernel.kernel_class, kernel.schedule)
