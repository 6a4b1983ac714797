"""compiler: an ML graph compiler. ONNX and torch.fx in; LLVM (CPU) and CUDA code out.

Public API (see README): `compile`, `load`, `jit`.
"""
from __future__ import annotations

__version__ = "0.1.0"
