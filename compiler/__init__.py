"""compiler: an ML graph compiler. ONNX and torch.fx in; LLVM (CPU) and CUDA code out.

    import compiler
    cm = compiler.compile("model.onnx", target="reference")
    out = cm.run({"input": x})
    cm.save("model.cmod")
    model = compiler.load("model.cmod")
    fast = compiler.jit(torch_module, (x,), target="llvm")       # torch tensors in and out
    opt = torch.compile(torch_module, backend="compiler")

Heavy imports (onnx, llvmlite, torch) happen inside the functions that need them, so
serving code that only calls `load` pulls in numpy and little else.
"""
from __future__ import annotations

__version__ = "0.1.0"


def compile(model, target: str = "llvm", **options):
    """Compile a model for `target`; see `compiler.api.compile`."""
    from .api import compile as _compile

    return _compile(model, target, **options)


def load(path):
    """Load a compiled artifact; see `compiler.model.load`."""
    from .model import load as _load

    return _load(path)


def jit(module, example_inputs, target: str = "llvm", **options):
    """Compile a torch module; returns a callable on torch tensors. See `compiler.torch_jit.jit`."""
    from .torch_jit import jit as _jit

    return _jit(module, example_inputs, target=target, **options)


def _register_torch_backend_if_loaded() -> None:
    """backend="compiler" for torch.compile: registered here when torch is already imported;
    otherwise torch finds it through the `torch_dynamo_backends` entry point (pyproject.toml),
    so `import compiler` never imports torch itself."""
    import sys

    if "torch" in sys.modules:
        from .torch_jit import register_torch_backend

        register_torch_backend(only_if_torch_imported=True)


_register_torch_backend_if_loaded()

__all__ = ["compile", "jit", "load", "__version__"]
