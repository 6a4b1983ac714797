"""compiler: an ML graph compiler. ONNX and torch.fx in; LLVM (CPU) and CUDA code out.

    import compiler
    cm = compiler.compile("model.onnx", target="reference")
    out = cm.run({"input": x})
    cm.save("model.cmod")
    model = compiler.load("model.cmod")

Heavy imports (onnx, llvmlite, torch) happen inside the functions that need them, so
serving code that only calls `load` pulls in numpy and little else.
"""
from __future__ import annotations

__version__ = "0.1.0"


def compile(model, target: str = "reference", **options):
    """Compile a model for `target`; see `compiler.api.compile`."""
    from .api import compile as _compile

    return _compile(model, target, **options)


def load(path):
    """Load a compiled artifact; see `compiler.model.load`."""
    from .model import load as _load

    return _load(path)


__all__ = ["compile", "load", "__version__"]
