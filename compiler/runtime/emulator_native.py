"""The emulator's native path (`-device=emulator-native`): launches whose threads only meet
at barriers, run as CPU code instead of lane by lane.

A launch with no warp-wide work (shuffles, tensor-core instructions, ldmatrix) and no
thread index is rewritten as plain loop IR the LLVM backend compiles for this CPU, the
way CUDA-on-CPU compilers do it (loop fission at barriers):

    gpu_block b:                         parallel b:
      shared s[S]                          local s[S]                (one per block)
      gpu_thread t:                        local acc'[T * A]         (a local live across
        local acc[A]                       serial k:                  a barrier: one per thread)
        serial k:                            serial t: part 1 (acc[i] -> acc'[t * A + i])
          part 1; barrier; part 2            serial t: part 2

Each barrier-free stretch runs for every thread before the next begins, which is what a
barrier guarantees; loops and branches around barriers must be the same for every
thread of a block (the verifier already refuses barriers under divergent branches).
Vector copies become element loops, asynchronous ones land at once (a valid order), and
waits vanish. Kernels with any other launch, and kernels holding float16 or bfloat16
values (the CPU backend computes those in half precision, the CUDA renderer in float32),
stay on the emulator. What is lost on this path is the emulator's checks (bounds, races,
waits), which is why `-device=emulator` keeps every launch emulated.
"""
from __future__ import annotations

import ctypes

from ..codegen import loop_ir as L
from ..codegen.gpu_schedule import launch_of

_WARP_WIDE = (L.WarpShuffle, L.Mma, L.LoadMatrix, L.ThreadIndex)


def thread_independent(kernel: L.Kernel) -> bool:
    """Whether every launch of `kernel` can run as CPU code (see the module docstring)."""
    for n in L.walk(kernel.body):
        if isinstance(n, _WARP_WIDE):
            return False
        if isinstance(n, L.Expr) and n.dtype.name in ("float16", "bfloat16"):
            return False
    if any(b.dtype.name in ("float16", "bfloat16") for b in L.buffers_used(kernel.body) + list(kernel.params)):
        return False
    try:
        cpu_body(kernel)
    except _NotUniform:
        return False
    return True


class _NotUniform(Exception):
    """A barrier under a loop or branch that may differ between threads."""


def _has_barrier(node) -> bool:
    return any(isinstance(n, L.Barrier) for n in L.walk(node))


class _Fission:
    """One launch's thread body as loops over the threads between barriers."""

    def __init__(self, thread: L.Var, threads: int):
        self.t, self.T = thread, threads
        self.buffers: dict = {}  # shared or promoted local Buffer -> (its per-block Buffer, per-thread size or 0)

    def uniform(self, e: L.Expr) -> None:
        if self.t in L.free_vars(e):
            raise _NotUniform

    def stmt(self, s: L.Stmt) -> L.Stmt:
        """`s` for every thread of the block."""
        if not _has_barrier(s):
            return L.For(self.t, L.const(self.T), L.LoopKind.SERIAL, self.rewrite(s))
        if isinstance(s, L.Barrier):
            return L.seq()
        if isinstance(s, L.Seq):
            out, run = [], []
            for x in s.stmts:
                if _has_barrier(x):
                    if run:
                        out.append(self.stmt(L.seq(*run)))
                        run = []
                    out.append(self.stmt(x))
                else:
                    run.append(x)
            if run:
                out.append(self.stmt(L.seq(*run)))
            return L.seq(*out)
        if isinstance(s, L.For):
            self.uniform(s.extent)
            return L.For(s.var, s.extent, L.LoopKind.SERIAL, self.stmt(s.body))
        if isinstance(s, L.IfThenElse):
            self.uniform(s.cond)
            return L.IfThenElse(s.cond, self.stmt(s.then), None if s.otherwise is None else self.stmt(s.otherwise))
        if isinstance(s, L.Allocate):  # a local live across a barrier: one copy per thread
            b = s.buffer
            self.buffers[b] = (L.Buffer(b.name, b.dtype, b.size * self.T, "local"), b.size)
            return self.stmt(s.body)
        raise _NotUniform

    def rewrite(self, node):
        """Barrier-free code with shared and promoted buffers remapped, copies as element
        loops, waits dropped."""
        if node is None:
            return None
        if isinstance(node, L.Load):
            buf, index = self.remap(node.buffer, self.rewrite(node.index))
            return L.Load(node.dtype, buf, index, self.rewrite(node.pred), self.rewrite(node.other))
        if isinstance(node, L.Store):
            buf, index = self.remap(node.buffer, self.rewrite(node.index))
            return L.Store(buf, index, self.rewrite(node.value))
        if isinstance(node, L.Copy):
            j = L.var("j")
            zero = L.const(0, node.src.dtype)
            pred = node.pred if node.pred is not None else None
            value = L.Load(node.src.dtype, node.src, L.add(node.src_index, j), pred, zero if pred is not None else None)
            return self.rewrite(L.For(j, L.const(node.count), L.LoopKind.SERIAL,
                                      L.Store(node.dst, L.add(node.dst_index, j), value)))
        if isinstance(node, L.CopyWait):
            return L.seq()
        if isinstance(node, (L.Const, L.Var)):
            return node
        if isinstance(node, L.Binary):
            return L.Binary(node.dtype, node.op, self.rewrite(node.a), self.rewrite(node.b))
        if isinstance(node, L.Call):
            return L.Call(node.dtype, node.name, tuple(self.rewrite(a) for a in node.args))
        if isinstance(node, L.Cast):
            return L.Cast(node.dtype, self.rewrite(node.value))
        if isinstance(node, L.Select):
            return L.Select(node.dtype, self.rewrite(node.cond), self.rewrite(node.a), self.rewrite(node.b))
        if isinstance(node, L.For):  # unrolling pays on a GPU; on this path it only lengthens the LLVM compile
            kind = L.LoopKind.SERIAL if node.kind is L.LoopKind.UNROLLED else node.kind
            return L.For(node.var, self.rewrite(node.extent), kind, self.rewrite(node.body))
        if isinstance(node, L.Seq):
            return L.Seq(tuple(self.rewrite(x) for x in node.stmts))
        if isinstance(node, L.IfThenElse):
            return L.IfThenElse(self.rewrite(node.cond), self.rewrite(node.then), self.rewrite(node.otherwise))
        if isinstance(node, L.Allocate):
            return L.Allocate(node.buffer, self.rewrite(node.body))
        raise _NotUniform

    def remap(self, buf: L.Buffer, index: L.Expr):
        if buf not in self.buffers:
            return buf, index
        new, per_thread = self.buffers[buf]
        return new, (L.add(L.mul(self.t, per_thread), index) if per_thread else index)


def _cpu_launch(stmt: L.Stmt) -> L.Stmt:
    geo = launch_of(stmt)
    f = _Fission(geo.thread_loop.var, geo.block)
    for b in geo.shared:
        f.buffers[b] = (L.Buffer(b.name, b.dtype, b.size, "local"), 0)
    body = f.stmt(geo.thread_loop.body)
    for new, _ in f.buffers.values():
        body = L.Allocate(new, body)
    return L.For(geo.block_var, L.const(geo.grid), L.LoopKind.PARALLEL, body)


def cpu_body(kernel: L.Kernel) -> L.Stmt:
    """The kernel's launches as CPU loop IR (block loops parallel); _NotUniform if a
    barrier sits under thread-dependent control flow."""
    stmts = kernel.body.stmts if isinstance(kernel.body, L.Seq) else (kernel.body,)
    return L.seq(*[_cpu_launch(s) for s in stmts])


class NativeLaunches:
    """The thread-independent kernels among `kernels`, compiled for this CPU once."""

    def __init__(self, kernels: list[L.Kernel]):
        from ..codegen.llvm import emitter
        from ..codegen.llvm.target import cpu_target
        from ..codegen.llvm.toolchain import emit_object, link_shared
        from .native import _open_library

        chosen = [k for k in kernels if thread_independent(k)]
        self._functions: dict[str, ctypes._CFuncPtr] = {}
        if not chosen:
            return
        mb = emitter.ModuleBuilder("emulated", runtime=True, internal=False)
        for k in chosen:
            mb.add_kernel(L.Kernel(k.name, k.params, cpu_body(k), k.kernel_class))
        self._lib = _open_library(link_shared(emit_object(str(mb.module), cpu_target())))
        self._lib.cm_set_num_threads(ctypes.c_int(0))
        for k in chosen:
            fn = getattr(self._lib, k.name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * len(k.params)
            self._functions[k.name] = fn

    def __contains__(self, name: str) -> bool:
        return name in self._functions

    def run(self, name: str, arrays: list) -> None:
        self._functions[name](*[a.ctypes.data for a in arrays])
