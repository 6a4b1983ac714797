"""The loop IR verifier: checks a kernel is well formed before any backend sees it.

It checks what backends rely on and would otherwise miscompile silently: every variable
is bound by an enclosing loop, every buffer is a parameter or an enclosing allocation,
operand types agree, vectorized loops have constant extents and hold no branches or
nested parallel loops, and constant indices stay inside their buffer.
"""
from __future__ import annotations

from ..ir.errors import CompilerError
from . import loop_ir as L


class LoopIRError(CompilerError):
    """A kernel's loop IR is malformed (a compiler bug, reported with the kernel's name)."""


def verify_kernel(k: L.Kernel) -> None:
    _Verifier(k).stmt(k.body, bound=frozenset(), buffers=frozenset(k.params), in_vector=False, in_parallel=False)


class _Verifier:
    def __init__(self, kernel: L.Kernel):
        self.kernel = kernel

    def fail(self, message: str):
        raise LoopIRError(f"kernel {self.kernel.name}: {message}")

    def expr(self, e: L.Expr, bound, buffers) -> None:
        if isinstance(e, L.Var):
            if e not in bound:
                self.fail(f"variable {e.name} is used outside any loop that binds it")
            return
        if isinstance(e, L.Const):
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

    def stmt(self, s: L.Stmt, bound, buffers, in_vector: bool, in_parallel: bool) -> None:
        if isinstance(s, L.Seq):
            for x in s.stmts:
                self.stmt(x, bound, buffers, in_vector, in_parallel)
        elif isinstance(s, L.For):
            self.expr(s.extent, bound, buffers)
            if s.var in bound:
                self.fail(f"loop variable {s.var.name} is bound twice")
            if s.kind is L.LoopKind.VECTORIZED:
                if not isinstance(s.extent, L.Const) or s.extent.value < 1:
                    self.fail(f"vectorized loop {s.var.name} needs a constant positive extent")
                if in_vector:
                    self.fail(f"vectorized loop {s.var.name} is nested in another vectorized loop")
            if s.kind is L.LoopKind.PARALLEL and (in_vector or in_parallel):
                self.fail(f"parallel loop {s.var.name} is nested inside a parallel or vectorized loop")
            self.stmt(s.body, bound | {s.var}, buffers,
                      in_vector or s.kind is L.LoopKind.VECTORIZED, in_parallel or s.kind is L.LoopKind.PARALLEL)
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
            self.stmt(s.then, bound, buffers, in_vector, in_parallel)
            if s.otherwise is not None:
                self.stmt(s.otherwise, bound, buffers, in_vector, in_parallel)
        elif isinstance(s, L.Allocate):
            if s.buffer.scope != "local":
                self.fail(f"allocated buffer {s.buffer.name} must have local scope")
            self.stmt(s.body, bound, buffers | {s.buffer}, in_vector, in_parallel)
        else:
            self.fail(f"unknown statement {type(s).__name__}")
