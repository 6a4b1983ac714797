"""The emulator's native path (`-device=emulator-native`): launches whose threads never
meet, run as CPU code instead of lane by lane.

A launch with no shared memory, barrier, warp shuffle, tensor-core instruction or thread
index (every thread-per-output launch of `codegen.gpu_schedule`) means "run the body once
per (block, thread), in any order": the same loop IR with the block loop made a parallel
loop and the thread loop a serial one says exactly that to the LLVM backend, which
compiles it for this CPU. Kernels with any other launch, and kernels holding float16 or
bfloat16 values (the CPU backend computes those in half precision, the CUDA renderer in
float32), stay on the emulator. What is lost on this path is the emulator's check of each
access against its buffer, which is why `-device=emulator` keeps every launch emulated.
"""
from __future__ import annotations

import ctypes

from ..codegen import loop_ir as L

_SYNCING = (L.Barrier, L.WarpShuffle, L.Mma, L.ThreadIndex)


def thread_independent(kernel: L.Kernel) -> bool:
    for n in L.walk(kernel.body):
        if isinstance(n, _SYNCING) or (isinstance(n, L.Allocate) and n.buffer.scope == "shared"):
            return False
        if isinstance(n, L.Expr) and n.dtype.name in ("float16", "bfloat16"):
            return False
    return not any(b.dtype.name in ("float16", "bfloat16") for b in L.buffers_used(kernel.body) + list(kernel.params))


def _relabel(node):
    """GPU block loops -> parallel loops, thread loops -> serial ones."""
    if isinstance(node, L.For):
        kind = {L.LoopKind.GPU_BLOCK: L.LoopKind.PARALLEL, L.LoopKind.GPU_THREAD: L.LoopKind.SERIAL}.get(node.kind,
                                                                                                      node.kind)
        return L.For(node.var, node.extent, kind, _relabel(node.body))
    if isinstance(node, L.Seq):
        return L.Seq(tuple(_relabel(s) for s in node.stmts))
    if isinstance(node, L.IfThenElse):
        return L.IfThenElse(node.cond, _relabel(node.then), _relabel(node.otherwise))
    if isinstance(node, L.Allocate):
        return L.Allocate(node.buffer, _relabel(node.body))
    return node


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
            mb.add_kernel(L.Kernel(k.name, k.params, _relabel(k.body), k.kernel_class))
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
