"""`--input-shape NAME=D1,D2,...`: the one parser of an input-shape override on the command
line (`compile`, `compile inspect`, `compile tune`, `compile bench`)."""
from __future__ import annotations

from .ir.errors import CompilerError


def shape_override(text: str) -> tuple[str, list]:
    """`name=1,3,224,224` (symbol names allowed: `x=batch,3,224,224`)."""
    if "=" not in text:
        raise CompilerError(f"--input-shape {text!r}: expected NAME=D1,D2,... (e.g. input=1,3,224,224)")
    name, dims = text.rsplit("=", 1)
    parsed = []
    for d in dims.split(","):
        d = d.strip()
        if not d:
            continue
        parsed.append(int(d) if d.lstrip("-").isdigit() else d)
    if any(isinstance(d, int) and d < 0 for d in parsed):
        raise CompilerError(f"--input-shape {text!r}: dims must be non-negative")
    return name, parsed
