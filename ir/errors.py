"""Errors a user can act on. Each names the node, op, input or file and what was expected.

Everything the compiler raises on bad input is a `CompilerError`; the CLI prints its
message on one line and exits non-zero, never a traceback from deep inside.
"""
from __future__ import annotations


class CompilerError(Exception):
    """Base of every user-facing error."""


class ModelLoadError(CompilerError):
    """A model file is missing, unreadable, not ONNX, or truncated."""


class UnsupportedOpsError(CompilerError):
    """The model uses ops we do not implement. `ops` maps (domain, op_type, opset) -> node names."""

    def __init__(self, ops: dict[tuple[str, str, int], list[str]]):
        self.ops = ops
        parts = []
        for (domain, op_type, opset), names in sorted(ops.items()):
            shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"{domain or 'ai.onnx'}::{op_type} (opset {opset}) at nodes {shown}")
        super().__init__(f"{len(ops)} unsupported op(s): " + "; ".join(parts))


class GraphError(CompilerError):
    """The graph is malformed: a cycle, an undefined input, a type that does not check."""


class ShapeInferenceError(CompilerError):
    """An op's inputs do not fit its definition (shapes, dtypes, attributes)."""


class InputError(CompilerError):
    """Run-time inputs do not match the model: names, shapes or dtypes."""


class ArtifactError(CompilerError):
    """A compiled artifact is corrupt, foreign, of another version, or cannot run on this host."""


class TargetError(CompilerError):
    """An unknown or unusable compilation target."""
