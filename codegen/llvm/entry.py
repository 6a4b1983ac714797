"""The whole-model entry point: one function calling every kernel of a `NativeProgram` in
order, with pointers into the inputs, outputs, weights and arena. No Python between kernels.

    int cm_entry(void **inputs, void **outputs, void *weights, void *arena)

This is the one place the entry is emitted. What a caller needs around each kernel call
comes in as a `CallHook`; the profiler's is `KernelTimers`, which stamps CLOCK_MONOTONIC
before and after every call into the exported array `cm_prof_ns[2 * calls]`.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ..model_builder import NativeProgram
from . import emitter as B

ENTRY = "cm_entry"
PROFILE_SYMBOL = "cm_prof_ns"  # int64[2 * calls]: ns since boot before and after each call


class CallHook:
    """Code emitted around each kernel call of the entry (no code by default)."""

    def start(self, mb: B.ModuleBuilder, b: ir.IRBuilder, calls: int) -> None:
        """At the top of the entry, before any call (module-level state goes here)."""

    def before(self, b: ir.IRBuilder, index: int) -> None:
        """Just before call `index`."""

    def after(self, b: ir.IRBuilder, index: int) -> None:
        """Just after call `index`."""


class KernelTimers(CallHook):
    """A CLOCK_MONOTONIC read before and after each call, stored into `cm_prof_ns`."""

    def start(self, mb, b, calls):
        ticks_ty = ir.ArrayType(B.I64, 2 * max(1, calls))
        self.ticks = ir.GlobalVariable(mb.module, ticks_ty, PROFILE_SYMBOL)
        self.ticks.initializer = ir.Constant(ticks_ty, None)
        self.timespec = ir.LiteralStructType([B.I64, B.I64])
        self.clock_gettime = mb.declare("clock_gettime", B.I32, [B.I32, self.timespec.as_pointer()])
        self.ts = b.alloca(self.timespec)

    def _stamp(self, b, slot: int) -> None:
        zero = ir.Constant(B.I32, 0)
        b.call(self.clock_gettime, [ir.Constant(B.I32, 1), self.ts])  # 1 = CLOCK_MONOTONIC on Linux
        sec = b.load(b.gep(self.ts, [zero, zero]))
        nsec = b.load(b.gep(self.ts, [zero, ir.Constant(B.I32, 1)]))
        ns = b.add(b.mul(sec, ir.Constant(B.I64, 1_000_000_000)), nsec)
        b.store(ns, b.gep(self.ticks, [ir.Constant(B.I64, 0), ir.Constant(B.I64, slot)]))

    def before(self, b, index):
        self._stamp(b, 2 * index)

    def after(self, b, index):
        self._stamp(b, 2 * index + 1)


def entry_function(mb: B.ModuleBuilder) -> ir.Function:
    """Declare `int cm_entry(void** inputs, void** outputs, void* weights, void* arena)`."""
    return ir.Function(mb.module, ir.FunctionType(B.I32, [B.I8P.as_pointer(), B.I8P.as_pointer(), B.I8P, B.I8P]),
                       ENTRY)


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


def add_entry(mb: B.ModuleBuilder, program: NativeProgram, functions: dict, hook: CallHook | None = None) -> None:
    """Emit `cm_entry` into `mb`: every call of `program` in order (`functions`: kernel name
    -> the llvm function, defined or declared in this module), `hook` around each."""
    hook = hook or CallHook()
    fn = entry_function(mb)
    b = ir.IRBuilder(fn.append_basic_block())
    hook.start(mb, b, len(program.calls))
    for i, call in enumerate(program.calls):
        target = functions[call.function]
        args = kernel_call_args(b, fn, call, target)
        hook.before(b, i)
        b.call(target, args)
        hook.after(b, i)
    b.ret(ir.Constant(B.I32, 0))
