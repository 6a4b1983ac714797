"""The loop IR's text form: a stable, C-like listing of a kernel, used in tests and dumps.

    kernel add_0(A: f32[12], B: f32[12], C: f32[12]) class=elementwise {
      parallel for i0 in 0..3 {
        vectorized for i1 in 0..4 {
          C[i0 * 4 + i1] = A[i0 * 4 + i1] + B[i0 * 4 + i1]
        }
      }
    }
"""
from __future__ import annotations

from . import loop_ir as L

_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "and": "&", "or": "|",
            "xor": "^", "shl": "<<", "shr": ">>", "eq": "==", "ne": "!=", "lt": "<", "le": "<=",
            "gt": ">", "ge": ">="}


def expr_text(e: L.Expr) -> str:
    if isinstance(e, L.Const):
        return repr(e.value) if e.dtype is L.INDEX else f"{e.value!r}:{e.dtype.short}"
    if isinstance(e, L.Var):
        return e.name
    if isinstance(e, L.Load):
        text = f"{e.buffer.name}[{expr_text(e.index)}]"
        if e.pred is not None:
            text += f" if {expr_text(e.pred)} else {expr_text(e.other)}"
            return f"({text})"
        return text
    if isinstance(e, L.Binary):
        if e.op in _SYMBOLS:
            return f"({expr_text(e.a)} {_SYMBOLS[e.op]} {expr_text(e.b)})"
        return f"{e.op}({expr_text(e.a)}, {expr_text(e.b)})"
    if isinstance(e, L.Call):
        return f"{e.name}({', '.join(expr_text(a) for a in e.args)})"
    if isinstance(e, L.Cast):
        return f"{e.dtype.short}({expr_text(e.value)})"
    if isinstance(e, L.Select):
        return f"select({expr_text(e.cond)}, {expr_text(e.a)}, {expr_text(e.b)})"
    raise TypeError(f"unknown expression {type(e).__name__}")


def _stmt_lines(s: L.Stmt, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    if isinstance(s, L.Seq):
        for x in s.stmts:
            _stmt_lines(x, depth, out)
    elif isinstance(s, L.For):
        out.append(f"{pad}{s.kind.value} for {s.var.name} in 0..{expr_text(s.extent)} {{")
        _stmt_lines(s.body, depth + 1, out)
        out.append(f"{pad}}}")
    elif isinstance(s, L.Store):
        out.append(f"{pad}{s.buffer.name}[{expr_text(s.index)}] = {expr_text(s.value)}")
    elif isinstance(s, L.IfThenElse):
        out.append(f"{pad}if {expr_text(s.cond)} {{")
        _stmt_lines(s.then, depth + 1, out)
        if s.otherwise is not None:
            out.append(f"{pad}}} else {{")
            _stmt_lines(s.otherwise, depth + 1, out)
        out.append(f"{pad}}}")
    elif isinstance(s, L.Allocate):
        b = s.buffer
        out.append(f"{pad}local {b.name}: {b.dtype.short}[{b.size}]")
        _stmt_lines(s.body, depth, out)
    else:
        raise TypeError(f"unknown statement {type(s).__name__}")


def kernel_text(k: L.Kernel) -> str:
    params = ", ".join(f"{b.name}: {b.dtype.short}[{b.size}]" for b in k.params)
    knobs = "".join(f" {key}={value}" for key, value in sorted(k.schedule.items()))
    lines = [f"kernel {k.name}({params}) class={k.kernel_class}{knobs} {{"]
    _stmt_lines(k.body, 1, lines)
    lines.append("}")
    return "\n".join(lines) + "\n"


def stmt_text(s: L.Stmt) -> str:
    lines: list[str] = []
    _stmt_lines(s, 0, lines)
    return "\n".join(lines) + "\n"
