"""The LLVM target's extern kernels: graph nodes computed by the hand-blocked microkernels
(`microkernels/`) instead of a loop-IR kernel (see `codegen.extern` for the plan they sit in).

An `ExternKernel` has one float32 buffer per argument. `ModuleBuilder.add_kernel` hands it
to its `emit`, which adds the microkernel to the module plus a small wrapper

    void NAME(float* p0, float* p1, ...)        ; one pointer per binding, in order

that calls the microkernel entry with its epilogue pointers (NULL where unused) and
`nthreads = load @cm_num_threads` (0 = libgomp's default, all cores), so `cm_entry`
calls it exactly as it calls a loop-IR kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import llvmlite.ir as ir
import numpy as np

from ...ir import dtypes
from .. import loop_ir as L
from ..extern import ExternPlan
from .microkernels import ConvProblem, GemmProblem, emit_conv, emit_gemm
from .microkernels.attention import PARAMS as ATTENTION_PARAMS
from .microkernels.attention import AttentionProblem, emit_attention
from .microkernels.gemm import PARAMS, check_fits_target, target_lanes


def params_of(problem) -> tuple[str, ...]:
    """The microkernel entry's pointer parameters, in order, for this kind of problem."""
    return ATTENTION_PARAMS if isinstance(problem, AttentionProblem) else PARAMS

F32P = ir.FloatType().as_pointer()
MICROKERNEL = "microkernel"  # the kernel class of every extern kernel of this target


@dataclass(frozen=True, eq=False)
class ExternKernel:
    """One microkernel call site shape: the problem, its schedule, and which microkernel
    pointer (`params_of(problem)`: x, w, y, bias, scale, shift, res for GEMM/conv; q, k, v,
    mask, y for attention) each wrapper parameter feeds."""

    name: str
    problem: ConvProblem | GemmProblem | AttentionProblem
    schedule: object  # GemmSchedule | DepthwiseSchedule | None (attention has no knobs)
    roles: tuple[str, ...]  # `params_of(problem)` name per wrapper parameter
    target: object  # the CPUTarget the schedule was chosen for
    params: tuple[L.Buffer, ...] = field(default=())
    kernel_class: str = MICROKERNEL

    def __post_init__(self):
        if not self.params:
            object.__setattr__(self, "params", tuple(L.Buffer(f"p{i}", dtypes.float32, 1)
                                                     for i in range(len(self.roles))))

    @property
    def entry_name(self) -> str:
        return f"{self.name}.mk"

    def emit(self, mb) -> ir.Function:
        """Add the microkernel and its wrapper to `mb` (an emitter.ModuleBuilder)."""
        module = mb.module
        if isinstance(self.problem, ConvProblem):
            entry = module.get_global(emit_conv(module, self.entry_name, self.problem, self.target,
                                                self.schedule).name)
        elif isinstance(self.problem, AttentionProblem):
            entry = emit_attention(module, self.entry_name, self.problem, target_lanes(self.target))
        else:
            check_fits_target(self.target, self.problem, self.schedule, self.entry_name)
            entry = emit_gemm(module, self.entry_name, self.problem, self.schedule)
        entry.linkage = "internal"  # only the wrapper below calls it
        wrapper = ir.Function(module, ir.FunctionType(ir.VoidType(), [F32P] * len(self.roles)), self.name)
        if mb.internal:
            wrapper.linkage = "internal"
        by_role = {}
        for arg, role in zip(wrapper.args, self.roles):
            arg.name = role
            by_role[role] = arg
        b = ir.IRBuilder(wrapper.append_basic_block("entry"))
        pointers = [by_role.get(p, ir.Constant(F32P, None)) for p in params_of(self.problem)]
        b.call(entry, pointers + [b.load(mb.num_threads)])
        b.ret_void()
        return wrapper

    def listing(self) -> str:
        """The kernel's entry in the model's kernel listing (kernels.txt)."""
        params = ", ".join(f"{p.name}: {role}" for p, role in zip(self.params, self.roles))
        return f"extern {self.name}({params}) = {self.identity()}\n"

    def identity(self) -> str:
        """Everything that determines the emitted code (not the name)."""
        return f"{MICROKERNEL} {self.problem!r} schedule={self.schedule!r} roles={self.roles}"

    def code_size(self) -> int:
        """A rough size of the emitted code in loop-IR nodes (emit_modules balances its
        modules by it). Measured at O3: a microkernel takes 0.01-0.08 s to compile, about
        what a loop-IR kernel of a thousand or two nodes takes (a 100-node one: ~0.005 s)."""
        return 2000

    def into_channel_slice(self, channels: int) -> "ExternKernel | None":
        """This conv writing its output channels into a wider NHWC tensor of `channels`
        channels (a Concat's output; the caller offsets `y`): the GEMM's row stride becomes
        `channels`. None for what assumes a packed output (depthwise stores, a residual read
        at the output's stride) and for problems other than convolutions."""
        conv = self.problem
        if not isinstance(conv, ConvProblem) or conv.depthwise or conv.epilogue.residual:
            return None
        return replace(self, problem=replace(conv.gemm(), ldc=channels))


def extern_plan(problem, schedule, target, bindings: dict) -> ExternPlan:
    """A plan from `bindings`: PARAMS name -> binding (("value", v) or ("packed", array));
    the wrapper's parameters follow PARAMS order. The name is given later (`named`)."""
    roles = tuple(p for p in params_of(problem) if p in bindings)
    args = []
    for role in roles:
        kind, what = bindings[role]
        if kind == "packed":
            what = np.ascontiguousarray(what, np.float32)
        args.append((kind, what))
    return ExternPlan(ExternKernel("", problem, schedule, roles, target), args)
