"""The loop IR's text form: a stable, C-like listing of a kernel, used in tests and dumps.

    kernel add_0(A: f32[12], B: f32[12], C: f32[12]) class=elementwise {
      parallel for i0 in 0..3 {
        vectorized for i1 in 0..4 {
          C[i0 * 4 + i1] = A[i0 * 4 + i1] + B[i0 * 4 + i1]
        }
      }
    }

GPU constructs print as `blockIdx.x`, `threadIdx.y`, `shfl_xor(v, 16)`, `barrier` and
`shared buf: f32[256]`. `TextRenderer` is a `Renderer` like every backend's, so it walks
the IR the way they do.
"""
from __future__ import annotations

from . import loop_ir as L
from .renderer import LineRenderer

_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "and": "&", "or": "|",
            "xor": "^", "shl": "<<", "shr": ">>", "eq": "==", "ne": "!=", "lt": "<", "le": "<=",
            "gt": ">", "ge": ">="}
_THREAD_INDEX = {"block": "blockIdx", "thread": "threadIdx", "block_dim": "blockDim", "grid_dim": "gridDim"}


class TextRenderer(LineRenderer):
    """Expressions render to strings; statements append indented lines to `lines`."""

    name = "the loop-IR printer"

    # ------------------------------------------------------------------ expressions
    def render_Const(self, e: L.Const) -> str:
        return repr(e.value) if e.dtype is L.INDEX else f"{e.value!r}:{e.dtype.short}"

    def render_Var(self, e: L.Var) -> str:
        return e.name

    def render_Load(self, e: L.Load) -> str:
        text = f"{e.buffer.name}[{self.expr(e.index)}]"
        if e.pred is not None:
            return f"({text} if {self.expr(e.pred)} else {self.expr(e.other)})"
        return text

    def render_Binary(self, e: L.Binary) -> str:
        if e.op in _SYMBOLS:
            return f"({self.expr(e.a)} {_SYMBOLS[e.op]} {self.expr(e.b)})"
        return f"{e.op}({self.expr(e.a)}, {self.expr(e.b)})"

    def render_Call(self, e: L.Call) -> str:
        return f"{e.name}({', '.join(self.expr(a) for a in e.args)})"

    def render_Cast(self, e: L.Cast) -> str:
        return f"{e.dtype.short}({self.expr(e.value)})"

    def render_Select(self, e: L.Select) -> str:
        return f"select({self.expr(e.cond)}, {self.expr(e.a)}, {self.expr(e.b)})"

    def render_ThreadIndex(self, e: L.ThreadIndex) -> str:
        return f"{_THREAD_INDEX.get(e.kind, e.kind)}.{e.axis}"

    def render_WarpShuffle(self, e: L.WarpShuffle) -> str:
        width = "" if e.width == L.WARP_SIZE else f", width={e.width}"
        return f"shfl_{e.mode}({self.expr(e.value)}, {self.expr(e.lane)}{width})"

    # ------------------------------------------------------------------- statements
    def render_For(self, s: L.For) -> None:
        self.line(f"{s.kind.value} for {s.var.name} in 0..{self.expr(s.extent)} {{")
        self.block(s.body)
        self.line("}")

    def render_Store(self, s: L.Store) -> None:
        self.line(f"{s.buffer.name}[{self.expr(s.index)}] = {self.expr(s.value)}")

    def render_Allocate(self, s: L.Allocate) -> None:
        b = s.buffer
        self.line(f"{b.scope} {b.name}: {b.dtype.short}[{b.size}]")
        self.stmt(s.body)

    def render_Barrier(self, s: L.Barrier) -> None:
        self.line("barrier")

    def render_Mma(self, s: L.Mma) -> None:
        self.line(f"mma.{s.shape}({s.d.name} = {s.a.name} @ {s.b.name} + {s.c.name})")

    def render_LoadMatrix(self, s: L.LoadMatrix) -> None:
        trans = ".trans" if s.trans else ""
        self.line(f"ldmatrix.x{s.count}{trans}({s.dst.name} <- {s.src.name}[{self.expr(s.index)}])")

    def render_Copy(self, s: L.Copy) -> None:
        kind = "copy_async" if s.asynchronous else "copy"
        pred = "" if s.pred is None else f" if {self.expr(s.pred)} else 0"
        self.line(f"{kind}.x{s.count}({s.dst.name}[{self.expr(s.dst_index)}] <- "
                  f"{s.src.name}[{self.expr(s.src_index)}]{pred})")

    def render_CopyWait(self, s: L.CopyWait) -> None:
        self.line("copy_wait")


def expr_text(e: L.Expr) -> str:
    return TextRenderer().expr(e)


def kernel_text(k: L.Kernel) -> str:
    params = ", ".join(f"{b.name}: {b.dtype.short}[{b.size}]" for b in k.params)
    knobs = "".join(f" {key}={value}" for key, value in sorted(k.schedule.items()))
    r = TextRenderer(k.name)
    r.lines.append(f"kernel {k.name}({params}) class={k.kernel_class}{knobs} {{")
    r.depth = 1
    r.stmt(k.body)
    r.lines.append("}")
    return "\n".join(r.lines) + "\n"


def stmt_text(s: L.Stmt) -> str:
    r = TextRenderer()
    r.stmt(s)
    return "\n".join(r.lines) + "\n"
