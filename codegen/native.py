"""The whole-model native library: kernels + the `cm_entry` function, compiled and linked.

    int cm_entry(void **inputs, void **outputs, void *weights, void *arena)
    void cm_set_num_threads(int n)      # 0 = all cores

`compile_graph` is the llvm target's compile step: Graph -> `NativeBuild` (the shared
library bytes, the weights blob, the arena size and the CPU features the code needs).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import llvmlite.ir as ir

from ..ir.graph import Graph
from . import llvm_backend as B
from .llvm_compile import emit_object, link_shared
from .llvm_target import CPUTarget, cpu_target
from .model_builder import NativeProgram, build_program
from .printer import kernel_text


@dataclass
class NativeBuild:
    library: bytes
    weights: bytes
    arena_size: int
    target: CPUTarget
    kernel_listing: str
    llvm_ir: str
    timings: dict = field(default_factory=dict)
    num_kernels: int = 0
    num_calls: int = 0


def emit_module(program: NativeProgram) -> str:
    """The whole model as one module (kernels internal to it). `add_kernel` emits loop-IR
    kernels and extern (microkernel) ones alike."""
    mb = B.ModuleBuilder()
    functions = {name: mb.add_kernel(plan.kernel) for name, plan in program.kernels.items()}
    _add_entry(mb, program, functions)
    return str(mb.module)


def emit_modules(program: NativeProgram, parts: int) -> list[str]:
    """The model split into `parts` modules to compile in parallel: the entry and the runtime
    hooks in the first, kernels spread over all of them by size (largest first)."""
    if parts <= 1 or len(program.kernels) < 2 * parts:
        return [emit_module(program)]
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
    _add_entry(entry, program, functions)
    return [str(b.module) for b in builders]


def _weight(kernel) -> int:
    """A rough size of the code a kernel becomes (its loop IR node count; an extern
    kernel's estimate)."""
    from .loop_ir import Kernel, walk

    if not isinstance(kernel, Kernel):
        return kernel.code_size()
    return sum(1 for _ in walk(kernel.body))


def kernel_listing(program: NativeProgram) -> str:
    """Every unique kernel as text: loop-IR kernels in full, extern kernels by their problem."""
    from .loop_ir import Kernel

    return "".join(kernel_text(p.kernel) if isinstance(p.kernel, Kernel) else p.kernel.listing()
                   for p in program.kernels.values())


def entry_function(mb) -> ir.Function:
    """Declare `int cm_entry(void** inputs, void** outputs, void* weights, void* arena)`."""
    return ir.Function(mb.module, ir.FunctionType(B.I32, [B.I8P.as_pointer(), B.I8P.as_pointer(), B.I8P, B.I8P]),
                       "cm_entry")


def kernel_call_args(b: ir.IRBuilder, entry: ir.Function, call, target: ir.Function) -> list:
    """The pointers one kernel call takes: input/output table entries, or weight/arena offsets."""
    inputs, outputs, weights, arena = entry.args
    args = []
    for storage, ty in zip(call.storages, target.function_type.args):
        if storage.kind in ("input", "output"):
            table = inputs if storage.kind == "input" else outputs
            ptr = b.load(b.gep(table, [ir.Constant(B.I64, storage.index)]))
            if storage.offset:  # a value stored inside this input/output
                ptr = b.gep(ptr, [ir.Constant(B.I64, storage.offset)])
        else:
            base = weights if storage.kind == "weight" else arena
            ptr = b.gep(base, [ir.Constant(B.I64, storage.index)])
        args.append(b.bitcast(ptr, ty))
    return args


def _add_entry(mb, program: NativeProgram, functions: dict) -> None:
    fn = entry_function(mb)
    b = ir.IRBuilder(fn.append_basic_block())
    for call in program.calls:
        target = functions[call.function]
        b.call(target, kernel_call_args(b, fn, call, target))
    b.ret(ir.Constant(B.I32, 0))


def compile_graph(graph: Graph, options: dict | None = None, groups: list | None = None) -> NativeBuild:
    """`groups`: lists of nodes to fuse into one kernel each (the fusion pass's partition);
    default one kernel per node."""
    timings = {}
    t0 = time.perf_counter()
    target = cpu_target(options)
    program = build_program(graph, target, groups)
    timings["lower"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    texts = emit_modules(program, os.cpu_count() or 1)
    timings["emit_llvm"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    # LLVM releases the GIL (llvmlite calls it through ctypes): the parts optimise in parallel.
    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        objects = list(pool.map(lambda text: emit_object(text, target), texts))
    timings["llvm_o3_codegen"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    lib = link_shared(objects)
    timings["link"] = time.perf_counter() - t3
    listing = kernel_listing(program)
    return NativeBuild(lib, program.weights, program.arena_size, target, listing, "\n".join(texts), timings,
                       len(program.kernels), len(program.calls))
