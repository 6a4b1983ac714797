"""The loop IR verifier: checks a kernel is well formed, and within what its target runs,
before any renderer sees it.

It checks what renderers rely on and would otherwise miscompile silently: every variable
is bound by an enclosing loop, every buffer is a parameter or an enclosing allocation,
operand types agree, vectorized loops have constant extents and hold no branches or
nested parallel loops, and constant indices stay inside their buffer. GPU constructs:
shared buffers are allocated once per block (never inside a thread loop), barriers are
reached by every thread of a block (never under a branch that depends on the thread),
thread indices and warp shuffles are well formed. Given a target's `Capabilities`, it
refuses every loop kind, buffer scope or GPU construct the target does not run, naming it.
"""
from __future__ import annotations

from ..ir.errors import CompilerError
from . import loop_ir as L


class LoopIRError(CompilerError):
    """A kernel's loop IR is malformed, or asks for what its target cannot run (named with the kernel)."""


def verify_kernel(k: L.Kernel, capabilities=None) -> None:
    """Raise LoopIRError when `k` is malformed or, with `capabilities` (a target's
    `codegen.target.Capabilities`), uses something that target does not run."""
    _Verifier(k, capabilities).stmt(k.body, bound=frozenset(), buffers=frozenset(k.params), in_vector=False,
                                    in_parallel=False)


class _Verifier:
    def __init__(self, kernel: L.Kernel, capabilities):
        self.kernel = kernel
        self.caps = capabilities
        self.thread_vars: set[L.Var] = set()  # variables of GPU thread loops: they differ between threads
        self.divergent = 0  # depth of branches whose condition differs between threads

    def fail(self, message: str):
        raise LoopIRError(f"kernel {self.kernel.name}: {message}")

    def require_gpu(self, what: str) -> None:
        if self.caps is not None and not self.caps.gpu:
            self.fail(f"{what} is a GPU construct, which this target does not run")

    def expr(self, e: L.Expr, bound, buffers) -> None:
        if isinstance(e, L.Var):
            if e not in bound:
                self.fail(f"variable {e.name} is used outside any loop that binds it")
            return
        if isinstance(e, L.Const):
            return
        if isinstance(e, L.ThreadIndex):
            self.require_gpu(f"the thread index {e.kind}.{e.axis}")
            if e.kind not in L.THREAD_INDEX_KINDS or e.axis not in L.AXES:
                self.fail(f"thread index {e.kind}.{e.axis}: expected one of {L.THREAD_INDEX_KINDS} along {L.AXES}")
            return
        if isinstance(e, L.Load):
            self.buffer(e.buffer, buffers)
            self.index(e.buffer, e.index)
            if (e.pred is None) != (e.other is None):
                self.fail(f"load of {e.buffer.name}: a predicate needs an `other` value and vice versa")
            if e.other is not None and e.other.dtype is not e.dtype:
                self.fail(f"load of {e.buffer.name}: `other` is {e.other.dtype}, the buffer holds {e.dtype}")
        elif isinstance(e, L.Binary):
            if e.op not in L.ARITH_OPS + L.COMPARE_OPS:
                self.fail(f"unknown binary operator {e.op!r}")
            if e.a.dtype is not e.b.dtype:
                self.fail(f"operands of {e.op} have types {e.a.dtype} and {e.b.dtype}")
        elif isinstance(e, L.Call):
            if L.INTRINSICS.get(e.name) != len(e.args):
                self.fail(f"intrinsic {e.name} takes {L.INTRINSICS.get(e.name, '?')} arguments, got {len(e.args)}")
        elif isinstance(e, L.Select):
            if e.cond.dtype.kind != "bool" or e.a.dtype is not e.b.dtype:
                self.fail(f"select needs a bool condition and equal branch types, got {e.cond.dtype}, {e.a.dtype}, {e.b.dtype}")
        elif isinstance(e, L.WarpShuffle):
            self.require_gpu("a warp shuffle")
            if e.mode not in L.SHUFFLE_MODES:
                self.fail(f"warp shuffle mode {e.mode!r}; expected one of {L.SHUFFLE_MODES}")
            if e.width not in (1, 2, 4, 8, 16, 32):
                self.fail(f"warp shuffle width {e.width}: expected a power of two up to {L.WARP_SIZE}")
            if e.lane.dtype.kind != "int" or e.dtype is not e.value.dtype:
                self.fail(f"warp shuffle needs an integer lane and keeps its value's type, got {e.lane.dtype}, {e.dtype}")
        for c in L.children(e):
            self.expr(c, bound, buffers)

    def buffer(self, b: L.Buffer, buffers) -> None:
        if b not in buffers:
            self.fail(f"buffer {b.name} is neither a parameter nor allocated in an enclosing scope")

    def index(self, b: L.Buffer, index: L.Expr) -> None:
        if index.dtype is not L.INDEX:
            self.fail(f"index into {b.name} has type {index.dtype}, expected {L.INDEX}")
        if isinstance(index, L.Const) and not 0 <= index.value < b.size:
            self.fail(f"constant index {index.value} is outside {b.name}[{b.size}]")

    def varies_by_thread(self, e: L.Expr) -> bool:
        return any((isinstance(n, L.ThreadIndex) and n.kind == "thread") or n in self.thread_vars for n in L.walk(e))

    def stmt(self, s: L.Stmt, bound, buffers, in_vector: bool, in_parallel: bool) -> None:
        if isinstance(s, L.Seq):
            for x in s.stmts:
                self.stmt(x, bound, buffers, in_vector, in_parallel)
        elif isinstance(s, L.For):
            self.loop(s, bound, buffers, in_vector, in_parallel)
        elif isinstance(s, L.Store):
            self.buffer(s.buffer, buffers)
            self.index(s.buffer, s.index)
            self.expr(s.index, bound, buffers)
            self.expr(s.value, bound, buffers)
            if s.value.dtype is not s.buffer.dtype:
                self.fail(f"store of {s.value.dtype} into {s.buffer.name} which holds {s.buffer.dtype}")
        elif isinstance(s, L.IfThenElse):
            if in_vector:
                self.fail("branches inside a vectorized loop: use select or a predicated load instead")
            self.expr(s.cond, bound, buffers)
            divergent = self.varies_by_thread(s.cond)
            self.divergent += divergent
            self.stmt(s.then, bound, buffers, in_vector, in_parallel)
            if s.otherwise is not None:
                self.stmt(s.otherwise, bound, buffers, in_vector, in_parallel)
            self.divergent -= divergent
        elif isinstance(s, L.Allocate):
            self.allocate(s, bound, buffers, in_vector, in_parallel)
        elif isinstance(s, L.Mma):
            self.mma(s, buffers, in_vector)
        elif isinstance(s, L.LoadMatrix):
            self.load_matrix(s, bound, buffers, in_vector)
        elif isinstance(s, L.Copy):
            self.copy(s, bound, buffers, in_vector)
        elif isinstance(s, L.CopyWait):
            self.require_gpu("a wait for asynchronous copies")
        elif isinstance(s, L.Barrier):
            self.require_gpu("a barrier")
            if in_vector:
                self.fail("a barrier inside a vectorized loop")
            if self.divergent:
                self.fail("a barrier under a branch that differs between threads: some threads would never reach it")
        else:
            self.fail(f"unknown statement {type(s).__name__}")

    def mma(self, s: L.Mma, buffers, in_vector: bool) -> None:
        self.require_gpu(f"the tensor-core instruction mma.{s.shape}")
        if self.caps is not None and s.shape not in self.caps.mma_shapes:
            self.fail(f"mma.{s.shape}: this target runs {list(self.caps.mma_shapes) or 'no tensor-core'} shapes")
        if s.shape not in L.MMA_SHAPES:
            self.fail(f"mma shape {s.shape!r}; known: {sorted(L.MMA_SHAPES)}")
        if in_vector or self.divergent:
            self.fail(f"mma.{s.shape} under a branch that differs between threads: every lane of the warp must run it")
        sizes = dict(zip("abc", L.MMA_SHAPES[s.shape]), d=L.MMA_SHAPES[s.shape][2])
        for role in "dabc":
            buf = getattr(s, role)
            self.buffer(buf, buffers)
            want = ("float32",) if role in "cd" else L.MMA_INPUT_DTYPES
            if buf.scope != "local" or buf.size != sizes[role] or buf.dtype.name not in want:
                self.fail(f"mma.{s.shape}: fragment {role} ({buf.name}) must be a local {'/'.join(want)} buffer of "
                          f"{sizes[role]} elements, got {buf.scope} {buf.dtype.name}[{buf.size}]")
        if s.a.dtype is not s.b.dtype:
            self.fail(f"mma.{s.shape}: A is {s.a.dtype.name} and B {s.b.dtype.name}; they must match")

    def load_matrix(self, s: L.LoadMatrix, bound, buffers, in_vector: bool) -> None:
        self.require_gpu("ldmatrix")
        for b in (s.dst, s.src):
            self.buffer(b, buffers)
        self.expr(s.index, bound, buffers)
        self.index(s.src, s.index)
        if in_vector or self.divergent:
            self.fail("ldmatrix under a branch that differs between threads: every lane of the warp must run it")
        if s.count not in L.LDMATRIX_COUNTS:
            self.fail(f"ldmatrix of {s.count} matrices; it loads {L.LDMATRIX_COUNTS}")
        if s.src.scope != "shared" or s.src.dtype.bits != 16:
            self.fail(f"ldmatrix reads 16-bit elements from shared memory, not {s.src.scope} {s.src.dtype.name} "
                      f"({s.src.name})")
        if s.dst.scope != "local" or s.dst.dtype is not s.src.dtype or s.dst.size < 2 * s.count:
            self.fail(f"ldmatrix of {s.count} matrices fills {2 * s.count} {s.src.dtype.name} elements of a local "
                      f"buffer, not {s.dst.scope} {s.dst.dtype.name}[{s.dst.size}] ({s.dst.name})")

    def copy(self, s: L.Copy, bound, buffers, in_vector: bool) -> None:
        self.require_gpu("a vector copy")
        for b, i in ((s.dst, s.dst_index), (s.src, s.src_index)):
            self.buffer(b, buffers)
            self.expr(i, bound, buffers)
            self.index(b, i)
        if s.pred is not None:
            self.expr(s.pred, bound, buffers)
            if s.pred.dtype.kind != "bool":
                self.fail(f"copy into {s.dst.name}: its predicate is {s.pred.dtype}, not bool")
        if in_vector:
            self.fail("a vector copy inside a vectorized loop")
        if s.dst.dtype is not s.src.dtype or s.count * s.src.dtype.itemsize not in L.VECTOR_BYTES:
            self.fail(f"copy {s.src.name} -> {s.dst.name}: {s.count} x {s.src.dtype.name} -> {s.dst.dtype.name} is not "
                      f"one vector of {'/'.join(map(str, L.VECTOR_BYTES))} bytes of one type")
        if s.asynchronous and (s.src.scope != "global" or s.dst.scope != "shared"):
            self.fail(f"asynchronous copy {s.src.name} -> {s.dst.name}: cp.async moves global to shared memory, "
                      f"not {s.src.scope} to {s.dst.scope}")

    def loop(self, s: L.For, bound, buffers, in_vector: bool, in_parallel: bool) -> None:
        self.expr(s.extent, bound, buffers)
        if s.var in bound:
            self.fail(f"loop variable {s.var.name} is bound twice")
        if self.caps is not None and s.kind not in self.caps.loop_kinds:
            self.fail(f"{s.kind.value} loop {s.var.name}: this target runs "
                      f"{', '.join(sorted(k.value for k in self.caps.loop_kinds))} loops")
        if s.kind is L.LoopKind.VECTORIZED:
            if not isinstance(s.extent, L.Const) or s.extent.value < 1:
                self.fail(f"vectorized loop {s.var.name} needs a constant positive extent")
            if in_vector:
                self.fail(f"vectorized loop {s.var.name} is nested in another vectorized loop")
        if s.kind is L.LoopKind.PARALLEL and (in_vector or in_parallel):
            self.fail(f"parallel loop {s.var.name} is nested inside a parallel or vectorized loop")
        thread = s.kind is L.LoopKind.GPU_THREAD
        if thread:
            self.thread_vars.add(s.var)
        self.stmt(s.body, bound | {s.var}, buffers,
                  in_vector or s.kind is L.LoopKind.VECTORIZED, in_parallel or s.kind is L.LoopKind.PARALLEL)

    def allocate(self, s: L.Allocate, bound, buffers, in_vector: bool, in_parallel: bool) -> None:
        scope = s.buffer.scope
        if scope not in ("local", "shared"):
            self.fail(f"allocated buffer {s.buffer.name} must have local or shared scope, not {scope!r}")
        if self.caps is not None and scope not in self.caps.scopes:
            self.fail(f"{scope} buffer {s.buffer.name}: this target has {', '.join(sorted(self.caps.scopes))} buffers")
        if scope == "shared":
            self.require_gpu(f"the shared buffer {s.buffer.name}")
            if self.thread_vars & bound or in_vector:
                self.fail(f"shared buffer {s.buffer.name} is allocated per thread (inside a thread loop): "
                          f"allocate it once per block, outside the thread loops")
        self.stmt(s.body, bound, buffers | {s.buffer}, in_vector, in_parallel)
