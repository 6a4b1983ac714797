"""compiler.codegen.llvm: the LLVM CPU target's code generator.

    target.py           CPUTarget (host / -mcpu), the CPU features an artifact needs, capabilities
    emitter.py          loop IR -> LLVM IR with llvmlite.ir (a `codegen.renderer.Renderer`):
                        vectors, parallel loops on our thread pool
    entry.py            the whole-model entry `cm_entry` calling every kernel, with per-call hooks
                        (the profiler's timers)
    build.py            compile_graph: Graph -> NativeBuild (library, weights, arena, listing)
    toolchain.py        O3 (new pass manager), object code, link to a shared library
    extern.py           ExternKernel: a node computed by a microkernel, as the entry calls it
    extern_lowering.py  which nodes the microkernels take (registered against their ops)
    vector_math.py      exp/tanh/erf polynomials on float32 vectors
    parallel_abi.py     the thread pool's entry points; csrc/thread_pool.c, linked into every model
    microkernels/       register-blocked GEMM / conv / depthwise / attention kernels

Importing this package registers the microkernels' extern lowerings against their ops, so
any build holding a `CPUTarget` sees them.
"""
from . import extern_lowering  # noqa: F401 - registers "extern:llvm" on ConvNhwc, Linear, MatMul, Gemm, Attention
