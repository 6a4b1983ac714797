"""The base class of every loop-IR renderer: the walk over a kernel's statements and
expressions, each node handed to the subclass's `render_<NodeClass>` method, and the
refusal, with a message naming the kernel and the construct, of any node a renderer has
no method for.

    Renderer
      LineRenderer       statements as indented lines (blocks, sequences, branches)
        TextRenderer     codegen/printer.py: the loop IR's text form (every construct)
        CudaRenderer     codegen/cuda/renderer.py: CUDA C (render_ThreadIndex -> "threadIdx.x",
                         render_Barrier -> "__syncthreads();", render_WarpShuffle -> "__shfl_xor_sync(...)")
      FunctionEmitter    codegen/llvm/emitter.py: LLVM IR through llvmlite (CPU constructs)

A renderer says what it is (`name`, for messages); which constructs a target runs is
declared once on the target (`codegen.target.Capabilities`) and checked by the verifier
before any renderer sees the kernel, so refusals here are a second line of defence.
"""
from __future__ import annotations

from ..ir.errors import CompilerError
from . import loop_ir as L


class CodegenError(CompilerError):
    """A kernel uses something a renderer cannot emit (named with the kernel)."""


def describe(node) -> str:
    """How a refusal names a loop-IR construct."""
    if isinstance(node, L.For):
        return f"a {node.kind.value} loop ({node.var.name})"
    if isinstance(node, L.ThreadIndex):
        return f"the GPU thread index {node.kind}.{node.axis}"
    if isinstance(node, L.Allocate):
        return f"a {node.buffer.scope} buffer ({node.buffer.name})"
    if isinstance(node, L.Barrier):
        return "a barrier"
    if isinstance(node, L.WarpShuffle):
        return f"a warp shuffle ({node.mode})"
    return type(node).__name__


class Renderer:
    """Walks loop IR; subclasses define `render_<NodeClass>(node)` for what they emit."""

    name = "renderer"  # "the llvm backend", "the CUDA renderer": what refusals call it

    def __init__(self, kernel: str):
        self.kernel = kernel

    def fail(self, message: str):
        raise CodegenError(f"kernel {self.kernel}: {message}")

    def refuse(self, node, why: str = ""):
        self.fail(f"{describe(node)} cannot be emitted by {self.name}" + (f": {why}" if why else ""))

    def stmt(self, s: L.Stmt):
        return self._dispatch(s)

    def expr(self, e: L.Expr):
        return self._dispatch(e)

    def _dispatch(self, node):
        method = getattr(self, "render_" + type(node).__name__, None)
        if method is None:
            self.refuse(node)
        return method(node)


class LineRenderer(Renderer):
    """A renderer whose statements become indented lines of text (`lines`); subclasses say
    how a branch's header reads (`if_header`) and render everything else."""

    indent = "  "

    def __init__(self, kernel: str = "", depth: int = 0):
        super().__init__(kernel)
        self.lines: list[str] = []
        self.depth = depth

    def line(self, text: str) -> None:
        self.lines.append(self.indent * self.depth + text)

    def block(self, body: L.Stmt) -> None:
        self.depth += 1
        self.stmt(body)
        self.depth -= 1

    def if_header(self, cond: str) -> str:
        return f"if {cond} {{"

    def render_Seq(self, s: L.Seq) -> None:
        for x in s.stmts:
            self.stmt(x)

    def render_IfThenElse(self, s: L.IfThenElse) -> None:
        self.line(self.if_header(self.expr(s.cond)))
        self.block(s.then)
        if s.otherwise is not None:
            self.line("} else {")
            self.block(s.otherwise)
        self.line("}")
