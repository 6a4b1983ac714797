"""Extern plans: graph nodes a target computes with kernels of its own (the LLVM target's
hand-blocked microkernels, a GPU target's tensor-core kernels) instead of a loop-IR kernel.

Each target registers, against the ops it can take this way, a rule
`rule(node, consts, target, schedules) -> ExternPlan | None` (`OpDef.extern_lowering`);
None means "not this way", and the node takes its loop-IR rule like any other. An
`ExternPlan` stands beside `kernel_builder.KernelPlan` and looks the same to the model
builder: `kernel` (with `name` and `params`), `args` (the bindings, same kinds as
KernelPlan's: ("value", Value), ("packed", ndarray)) and `key()` (equal keys =
interchangeable code, so identical convolutions share one function).

What the model builder asks of an extern kernel (the target's class implements it):
    name, params, kernel_class     like a loop-IR kernel's
    identity()                     everything that decides the emitted code (not the name)
    listing()                      its line in the artifact's kernel listing
    code_size()                    a rough size, to balance parallel compilation
    into_channel_slice(channels)   the same kernel writing its NHWC output into a wider
                                   tensor (a Concat's), or None when it cannot
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from . import loop_ir as L

EXTERN = "extern"  # the `paths` entry (and plan kind) of a node computed by a target's own kernel


@dataclass
class ExternPlan:
    """A node computed by a target's own kernel: the kernel and what each parameter is bound to."""

    kernel: object
    args: list  # ("value", Value) | ("packed", ndarray), one per kernel parameter
    kind: str = EXTERN
    # (node) -> this plan with `node`, an elementwise node that alone reads the plan's
    # output, folded into the kernel's epilogue (writing the node's output); None: it cannot
    absorb: object = None

    def key(self) -> str:
        return self.kernel.identity()

    def named(self, name: str) -> "ExternPlan":
        return ExternPlan(replace(self.kernel, name=name), self.args, self.kind)

    def into_channel_slice(self, channels: int) -> "ExternPlan | None":
        """This plan writing its output channels into a tensor of `channels` channels (the
        caller offsets the output), or None when the kernel cannot."""
        kernel = self.kernel.into_channel_slice(channels)
        return None if kernel is None else ExternPlan(kernel, self.args, self.kind)


@dataclass(frozen=True, eq=False)
class ExternLoopKernel(L.Kernel):
    """An extern kernel written as loop IR (a GPU target's template, e.g. its tensor-core
    GEMM): a `loop_ir.Kernel` that also answers the extern-kernel questions, so renderers,
    the emulator and the listing treat it like any loop-IR kernel."""

    def identity(self) -> str:
        from .kernel_builder import canonical_text
        from .printer import kernel_text

        text = kernel_text(self)
        return canonical_text(text[text.index("("):])

    def listing(self) -> str:
        from .printer import kernel_text

        return kernel_text(self)

    def code_size(self) -> int:
        return sum(1 for _ in L.walk(self.body))

    def into_channel_slice(self, channels: int):
        return None  # writes its whole output
