"""The whole-model native library: kernels + the `cm_entry` function, compiled and linked.

    int cm_entry(void **inputs, void **outputs, void *weights, void *arena)
    void cm_set_num_threads(int n)      # 0 = all cores

`compile_program` is the llvm target's code generation for a planned `NativeProgram`
(`codegen.model_builder.build_program`): LLVM modules (split to compile in parallel), O3,
object code, one shared library -> `NativeBuild` (the library bytes, the weights blob, the
arena size and the CPU features the code needs). `compile_graph` plans and compiles.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ...ir.graph import Graph
from ..model_builder import NativeProgram, build_program
from ..printer import kernel_text
from ..schedule import HEURISTIC, Schedules
from . import emitter as B
from .entry import CallHook, add_entry
from .target import CPUTarget
from .toolchain import emit_object, link_shared


@dataclass
class NativeBuild:
    """The shared library of a planned program; everything else about it is the program's."""

    library: bytes
    target: CPUTarget
    llvm_ir: str
    program: NativeProgram
    timings: dict = field(default_factory=dict)


def emit_module(program: NativeProgram, hook: CallHook | None = None) -> str:
    """The whole model as one module (kernels internal to it). `add_kernel` emits loop-IR
    kernels and extern (microkernel) ones alike."""
    mb = B.ModuleBuilder()
    functions = {name: mb.add_kernel(plan.kernel) for name, plan in program.kernels.items()}
    add_entry(mb, program, functions, hook)
    return str(mb.module)


def emit_modules(program: NativeProgram, parts: int, hook: CallHook | None = None) -> list[str]:
    """The model split into `parts` modules to compile in parallel: the entry and the runtime
    hooks in the first, kernels spread over all of them by size (largest first)."""
    if parts <= 1 or len(program.kernels) < 2 * parts:
        return [emit_module(program, hook)]
    builders = [B.ModuleBuilder(f"model{i}", runtime=(i == 0), internal=False) for i in range(parts)]
    load = [0] * parts
    owner = {}
    for name, plan in sorted(program.kernels.items(), key=lambda kv: -_weight(kv[1].kernel)):
        i = load.index(min(load))
        builders[i].add_kernel(plan.kernel)
        load[i] += _weight(plan.kernel)
        owner[name] = i
    entry = builders[0]
    functions = {}
    for name, plan in program.kernels.items():
        if owner[name] == 0:
            functions[name] = entry.module.get_global(name)
        else:
            types = [B.memory_type(b.dtype).as_pointer() for b in plan.kernel.params]
            functions[name] = entry.declare(name, B.VOID, types)
    add_entry(entry, program, functions, hook)
    return [str(b.module) for b in builders]


def _weight(kernel) -> int:
    """A rough size of the code a kernel becomes (its loop IR node count; an extern
    kernel's estimate)."""
    from ..loop_ir import Kernel, walk

    if not isinstance(kernel, Kernel):
        return kernel.code_size()
    return sum(1 for _ in walk(kernel.body))


def compile_program(program: NativeProgram, target: CPUTarget, hook: CallHook | None = None) -> NativeBuild:
    """The program's kernels and entry (with `hook` around each call) as one shared library."""
    timings = {}
    t1 = time.perf_counter()
    texts = emit_modules(program, os.cpu_count() or 1, hook)
    timings["emit_llvm"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    # LLVM releases the GIL (llvmlite calls it through ctypes): the parts optimise in parallel.
    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        objects = list(pool.map(lambda text: emit_object(text, target), texts))
    timings["llvm_o3_codegen"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    lib = link_shared(objects)
    timings["link"] = time.perf_counter() - t3
    return NativeBuild(lib, target, "\n".join(texts), program, timings)


def compile_graph(graph: Graph, target: CPUTarget, schedules: Schedules = HEURISTIC,
                  hook: CallHook | None = None) -> NativeBuild:
    """Plan `graph` (each FusedKernel node one kernel, every other node one) and compile it."""
    t0 = time.perf_counter()
    program = build_program(graph, target, schedules)
    lower_s = time.perf_counter() - t0
    build = compile_program(program, target, hook)
    build.timings = {"lower": lower_s, **build.timings}
    return build
